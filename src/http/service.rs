//! [`ObsService`]: opens the request's server span and scope.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::extract::MatchedPath;
use http::{Request, Response};
use tower_service::Service;
use tracing::field::Empty;

use super::{
    RequestId, ResponseBody, ResponseFuture,
    access::cap_path,
    pending::{Caught, Pending},
    route_metrics,
    settings::Settings,
};
use crate::{
    config::Settings as Shared,
    ids::response::ResponseSource,
    logging::scope::{self, RequestScope},
};

/// The service produced by [`ObsLayer`](crate::ObsLayer); axum users never name it. Wrapping
/// any tower service whose responses are `http::Response`:
///
/// ```
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), std::convert::Infallible> {
/// let svc = glimpse_obs::layer().layer(service_fn(|_req: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
/// }));
/// let _inner = svc.get_ref(); // also get_mut(), into_inner()
/// let res = svc.oneshot(http::Request::new(String::new())).await?;
/// assert!(res.headers().contains_key("x-request-id"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ObsService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> ObsService<S> {
    pub(super) fn new(inner: S, settings: Arc<Settings>) -> Self {
        Self { inner, settings }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwrap the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ObsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let settings = &self.settings;
        let entry = {
            let matched = req.extensions().get::<MatchedPath>().map(|m| m.as_str());
            let excluded_key = matched.unwrap_or_else(|| req.uri().path());
            if settings.excluded.iter().any(|e| e == excluded_key) {
                None
            } else {
                let route: &str = matched.unwrap_or(&settings.unmatched);
                Some(
                    settings
                        .routes
                        .entry(route, route_metrics::method_index(req.method())),
                )
            }
        };
        let Some(entry) = entry else {
            return ResponseFuture::passthrough(self.inner.call(req));
        };

        let start = Instant::now();
        let shared = shared_settings(settings);
        let (request_id, client_request_id) = if settings.trust_request_id {
            (
                RequestId::from_headers(req.headers(), &settings.header),
                None,
            )
        } else {
            let client = RequestId::from_caller(req.headers(), &settings.header);
            (RequestId::generate(), client)
        };
        entry.active.increment(1.0);
        // A clone of the URI shares its bytes: no copy of the path.
        let uri = req.uri().clone();
        let masked = crate::logging::redact::mask_personal_data(uri.path());
        let path = cap_path(&masked);
        let method_original =
            (entry.method == route_metrics::OTHER_METHOD).then(|| req.method().as_str());
        // Absent when no route matched (semantic conventions).
        let route = route_metrics::is_template(&entry.route).then_some(&*entry.route);
        let scheme = req.uri().scheme_str().unwrap_or("http");
        let protocol = protocol_version(req.version());
        let user_agent = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let scope = Arc::new(
            RequestScope::new(request_id.clone()).with_client_request_id(client_request_id),
        );
        let create = || {
            tracing::info_span!(
                target: "glimpse_obs::http",
                "request",
                otel.name = &*entry.span_name,
                otel.kind = "server",
                otel.status_code = Empty,
                "http.request.method" = entry.method,
                // The method as sent when it is not one of the known nine.
                "http.request.method_original" = method_original,
                "http.route" = route,
                "url.path" = path,
                "url.scheme" = scheme,
                "network.protocol.version" = protocol,
                "user_agent.original" = user_agent,
                "http.response.status_code" = Empty,
                "enduser.id" = Empty,
                "glimpse.request_id" = request_id.as_str(),
                "error.type" = Empty,
            )
        };
        // Exporting: the span's attributes handed to the trace layer as
        // encoded here (`trace::server`), not visited field by field, and
        // with them where it reads the response when the span closes
        // (`ids::response`).
        let response: Option<Arc<dyn ResponseSource>> = shared
            .response_direct()
            .then(|| scope.clone() as Arc<dyn ResponseSource>);
        let (span, response_taken) = if shared.exporting {
            let attrs = crate::trace::server::ServerAttrs {
                name: &entry.span_name,
                method: entry.method,
                method_original,
                route,
                path,
                scheme,
                protocol,
                user_agent,
                request_id: request_id.as_str(),
                response,
            };
            crate::trace::server::create_with(attrs, create)
        } else {
            (create(), false)
        };
        if settings.public_endpoint || !shared.trust_traceparent {
            crate::trace::link_from_headers(&span, req.headers(), shared.exporting);
        } else {
            crate::trace::set_parent_from_headers(&span, req.headers());
        }
        let request_bytes = if settings.body_sizes {
            req.headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
        } else {
            None
        };
        let attached = scope::attach(
            &span,
            scope.clone(),
            shared.response_direct() && !response_taken,
        );
        req.extensions_mut().insert(request_id);

        // The access line writes the same masked path: kept, not redone.
        let masked_path = match masked {
            std::borrow::Cow::Owned(p) => Some(p.into_boxed_str()),
            std::borrow::Cow::Borrowed(_) => None,
        };
        let called = span.in_scope(|| crate::ids::panic::catch(|| self.inner.call(req)));
        let pending = Box::new(Pending::new(
            start,
            span,
            scope,
            entry,
            uri,
            masked_path,
            settings.clone(),
            shared,
            attached,
            request_bytes,
        ));
        match called {
            Ok(inner) => ResponseFuture::new(inner, pending),
            Err(payload) => ResponseFuture::panicked(pending, Caught::new(&*payload)),
        }
    }
}

fn protocol_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_11 => "1.1",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "unknown",
    }
}

/// The telemetry settings this request follows: the bound telemetry's, or
/// those of the telemetry whose tracing layer is in the current subscriber
/// (one `downcast_ref` through the subscriber's layers), or the defaults.
fn shared_settings(settings: &Settings) -> Arc<Shared> {
    static DEFAULTS: std::sync::LazyLock<Arc<Shared>> =
        std::sync::LazyLock::new(|| Arc::new(Shared::default()));
    if let Some(bound) = &settings.bound {
        return bound.clone();
    }
    tracing::dispatcher::get_default(crate::trace::settings_of).unwrap_or_else(|| DEFAULTS.clone())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{Layer, ServiceExt, service_fn};

    use crate::http::ObsLayer;

    fn echo_request_id(
        req: http::Request<String>,
    ) -> impl Future<Output = Result<http::Response<String>, Infallible>> {
        let id = req
            .extensions()
            .get::<crate::RequestId>()
            .map(|id| id.to_string())
            .unwrap_or_default();
        async move { Ok(http::Response::new(id)) }
    }

    #[tokio::test]
    async fn the_callers_valid_request_id_is_kept_and_echoed() {
        let svc = ObsLayer::new().layer(service_fn(echo_request_id));
        let req = http::Request::builder()
            .uri("/a")
            .header("x-request-id", "req-42")
            .body(String::new())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()["x-request-id"], "req-42");
        assert_eq!(
            res.body().get_ref().unwrap(),
            "req-42",
            "the handler sees the same ID"
        );
    }

    #[tokio::test]
    async fn a_malformed_request_id_is_replaced_not_reflected() {
        let svc = ObsLayer::new().layer(service_fn(echo_request_id));
        let req = http::Request::builder()
            .uri("/a")
            .header("x-request-id", "bad id with spaces")
            .body(String::new())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, "bad id with spaces");
        assert_eq!(id.len(), 36, "a fresh UUID v7: {id}");
        assert_eq!(res.body().get_ref().unwrap(), &id);
    }

    #[tokio::test]
    async fn excluded_paths_pass_through_untouched() {
        let svc = ObsLayer::new().layer(service_fn(echo_request_id));
        let res = svc
            .oneshot(
                http::Request::builder()
                    .uri("/health")
                    .body(String::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(!res.headers().contains_key("x-request-id"));
        assert_eq!(
            res.body().get_ref().unwrap(),
            "",
            "no RequestId extension either"
        );
    }

    #[tokio::test]
    async fn a_custom_request_id_header_is_read_and_written() {
        let svc = ObsLayer::new()
            .request_id_header(http::HeaderName::from_static("x-correlation-id"))
            .layer(service_fn(echo_request_id));
        let req = http::Request::builder()
            .uri("/a")
            .header("x-correlation-id", "corr-1")
            .body(String::new())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()["x-correlation-id"], "corr-1");
        assert!(!res.headers().contains_key("x-request-id"));
    }
}

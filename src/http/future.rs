//! [`ResponseFuture`]: finishes the request when the inner service answers
//! (or the future is dropped): metrics, span status, the access line, the
//! response headers.

use std::{
    cell::Cell,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use http::{HeaderName, HeaderValue, Response};
use pin_project_lite::pin_project;
use tracing::{Level, Span};

use super::{
    ACCESS_TARGET, CANCELLED_STATUS,
    access::{access_fields, cap_path},
    route_metrics,
    settings::Settings,
};
use crate::{
    config::Settings as Shared,
    logging::{LogType, scope::RequestScope},
};

pin_project! {
    /// Response future of [`ObsService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // Inline, not boxed: one allocation less per request (the caller
        // usually boxes the whole future anyway).
        state: Option<Pending>,
    }
}

pub(super) struct Pending {
    start: Instant,
    span: Span,
    scope: Arc<RequestScope>,
    entry: Arc<route_metrics::RouteEntry>,
    uri: http::Uri,
    settings: Arc<Settings>,
    shared: Arc<Shared>,
    /// The response's `traceparent`, when known at the start (light layer).
    traceparent: Option<HeaderValue>,
    done: bool,
}

impl<F> ResponseFuture<F> {
    /// A request the layer does not instrument (an excluded route).
    pub(super) fn passthrough(inner: F) -> Self {
        Self { inner, state: None }
    }

    pub(super) fn new(inner: F, pending: Pending) -> Self {
        Self {
            inner,
            state: Some(pending),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(state) = this.state.as_mut() else {
            return this.inner.poll(cx);
        };
        let result = {
            let _entered = state.span.enter();
            std::task::ready!(this.inner.poll(cx))
        };
        let mut result = result;
        match &mut result {
            Ok(resp) => {
                state.finish(resp.status().as_u16());
                if let Ok(v) = HeaderValue::from_str(state.scope.request_id.as_str()) {
                    resp.headers_mut().insert(state.settings.header.clone(), v);
                }
                let tp = state
                    .traceparent
                    .take()
                    .or_else(|| crate::trace::traceparent(&state.span));
                if let Some(tp) = tp {
                    resp.headers_mut()
                        .insert(HeaderName::from_static("traceparent"), tp);
                }
            }
            Err(_) => state.finish(500),
        }
        *this.state = None;
        Poll::Ready(result)
    }
}

impl Pending {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        start: Instant,
        span: Span,
        scope: Arc<RequestScope>,
        entry: Arc<route_metrics::RouteEntry>,
        uri: http::Uri,
        settings: Arc<Settings>,
        shared: Arc<Shared>,
        traceparent: Option<HeaderValue>,
    ) -> Self {
        Self {
            start,
            span,
            scope,
            entry,
            uri,
            settings,
            shared,
            traceparent,
            done: false,
        }
    }

    fn finish(&mut self, status: u16) {
        self.done = true;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.start);
        self.entry.active.decrement(1.0);
        // Exemplar: the sampled request's IDs, kept in its duration bucket;
        // read from the response's traceparent when the light layer gave
        // it at the start (no registry look-up for any request then).
        let exemplar = if self.entry.keeps_exemplars() {
            match &self.traceparent {
                Some(tp) => crate::ids::SpanIds::sampled_from_traceparent(tp.as_bytes()),
                None => crate::metrics::exemplar::span_ids(&self.span),
            }
        } else {
            None
        }
        .map(|ids| (ids, now));
        self.entry
            .record_duration(status, elapsed.as_secs_f64(), exemplar);

        let span = &self.span;
        let user = self.scope.user();
        // The span's response fields are read by the OpenTelemetry layer and
        // the pretty format only: the JSON lines of a request never repeat
        // its server span's fields, and the ID-only trace layer exports
        // nothing. Recording them costs a registry walk per field.
        let json_only = !self.shared.record_span_fields;
        if !json_only {
            span.record("http.response.status_code", status);
            if status >= 500 {
                span.record("otel.status_code", "error");
                // A string, as the semantic conventions define `error.type`.
                span.record("error.type", itoa::Buffer::new().format(status));
            }
            if let Some(u) = &user {
                span.record("enduser.id", &*u.raw);
            }
        }

        let level = if status >= 500 {
            Level::ERROR
        } else if elapsed > self.slow_threshold() || status == CANCELLED_STATUS {
            Level::WARN
        } else {
            Level::INFO
        };
        if level == Level::INFO && !self.sampled_in() {
            return;
        }
        let log_type_enum = if user.is_some() {
            LogType::UserActivity
        } else {
            LogType::System
        };
        let log_type = log_type_enum.as_str();
        // Milliseconds with microsecond precision (1.43).
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let path = cap_path(self.uri.path());
        let cancelled = status == CANCELLED_STATUS;
        // INFO and WARN lines straight into the JSON log when the span's
        // subscriber has our JSON layer and its filter's answer is known;
        // otherwise (ERROR lines, which OpenTelemetry also records on the
        // span; the pretty format; a subscriber not ours) an event with the
        // access fields, which the JSON layer writes as the same line.
        if level != Level::ERROR
            && crate::logging::layer::write_access_line(span, level, log_type_enum, |out| {
                access_fields(
                    out,
                    &self.entry.access_json,
                    path,
                    status,
                    micros,
                    cancelled,
                )
            })
        {
            return;
        }
        // An explicit parent rather than `in_scope`: the line gets the
        // request's fields without entering and exiting the span again.
        let (method, route) = (self.entry.method, &*self.entry.route);
        let ms = micros as f64 / 1000.0;
        match level {
            Level::ERROR => {
                tracing::error!(target: ACCESS_TARGET, parent: span, method, route, path, http_status = status, response_time = ms, log_type, "request completed")
            }
            Level::WARN if cancelled => {
                tracing::warn!(target: ACCESS_TARGET, parent: span, method, route, path, http_status = status, response_time = ms, log_type, cancelled = true, "request completed")
            }
            Level::WARN => {
                tracing::warn!(target: ACCESS_TARGET, parent: span, method, route, path, http_status = status, response_time = ms, log_type, "request completed")
            }
            _ => {
                tracing::info!(target: ACCESS_TARGET, parent: span, method, route, path, http_status = status, response_time = ms, log_type, "request completed")
            }
        }
    }

    fn slow_threshold(&self) -> Duration {
        self.settings.slow.unwrap_or(self.shared.slow_request)
    }

    fn sampled_in(&self) -> bool {
        let route = &*self.entry.route;
        let rate = self
            .settings
            .sample
            .iter()
            .chain(self.shared.log_sample.iter())
            .find(|(r, _)| **r == *route);
        match rate {
            None => true,
            Some((_, rate)) if *rate >= 1.0 => true,
            Some((_, rate)) if *rate <= 0.0 => false,
            Some((_, rate)) => random_unit() < *rate,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            // The response future was dropped: client gone or timeout. Keep
            // the in-flight gauge right and record the request as 499.
            self.finish(CANCELLED_STATUS);
        }
    }
}

/// A uniform number in `[0, 1)` from a per-thread xorshift generator: sampling
/// needs speed, not cryptographic quality.
fn random_unit() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            (t.as_nanos() as u64) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

// Needs the `testing` feature's `SharedBuffer` (and serde_json).
#[cfg(all(test, feature = "testing"))]
mod tests {
    use std::{convert::Infallible, time::Duration};

    use tower::{Layer, ServiceExt, service_fn};
    use tracing_subscriber::layer::SubscriberExt;

    use crate::{Config, Telemetry, testing::SharedBuffer};

    fn telemetry(logs: &SharedBuffer) -> Telemetry {
        Config::default()
            .service("future-test")
            .metrics_addr(None)
            .process_metrics(false)
            .slow_request(Duration::from_millis(30))
            .log_writer(logs.clone())
            .build()
            .unwrap()
    }

    /// Drive `svc` with one request to `/x` on a current-thread runtime under
    /// `telemetry`'s subscriber; `cancel_after` drops the future early.
    fn drive<S>(telemetry: &Telemetry, svc: S, cancel_after: Option<Duration>)
    where
        S: tower_service::Service<
                http::Request<String>,
                Response = http::Response<String>,
                Error = Infallible,
            >,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let subscriber = tracing_subscriber::registry().with(telemetry.tracing_layer());
        tracing::subscriber::with_default(subscriber, || {
            rt.block_on(async {
                let call = svc.oneshot(http::Request::get("/x").body(String::new()).unwrap());
                match cancel_after {
                    Some(after) => {
                        let _ = tokio::time::timeout(after, call).await;
                    }
                    None => {
                        call.await.unwrap();
                    }
                }
            });
        });
        assert!(telemetry.flush(Duration::from_secs(5)));
    }

    fn access_line(logs: &SharedBuffer) -> serde_json::Value {
        logs.contents()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|l| l["message"] == "request completed")
            .unwrap_or_else(|| panic!("no access line in {}", logs.contents()))
    }

    #[test]
    fn a_5xx_response_is_an_error_line_and_counted_under_its_status() {
        let logs = SharedBuffer::new();
        let t = telemetry(&logs);
        let svc = t
            .http_layer()
            .layer(service_fn(|_req: http::Request<String>| async {
                let mut res = http::Response::new(String::new());
                *res.status_mut() = http::StatusCode::BAD_GATEWAY;
                Ok::<_, Infallible>(res)
            }));
        drive(&t, svc, None);
        let line = access_line(&logs);
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["http_status"], 502);
        assert!(t.render_metrics().lines().any(|l| {
            l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains("status=\"502\"")
        }),);
    }

    #[test]
    fn a_request_slower_than_the_threshold_is_a_warn_line() {
        let logs = SharedBuffer::new();
        let t = telemetry(&logs);
        let svc = t
            .http_layer()
            .layer(service_fn(|_req: http::Request<String>| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, Infallible>(http::Response::new(String::new()))
            }));
        drive(&t, svc, None);
        let line = access_line(&logs);
        assert_eq!(line["level"], "WARN");
        assert!(line["response_time"].as_f64().unwrap() >= 50.0, "{line}");
    }

    #[test]
    fn a_dropped_response_future_is_recorded_as_cancelled() {
        let logs = SharedBuffer::new();
        let t = telemetry(&logs);
        let svc = t
            .http_layer()
            .layer(service_fn(|_req: http::Request<String>| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, Infallible>(http::Response::new(String::new()))
            }));
        drive(&t, svc, Some(Duration::from_millis(20)));
        let line = access_line(&logs);
        assert_eq!(line["http_status"], 499);
        assert_eq!(line["cancelled"], true);
        assert_eq!(line["level"], "WARN");
        let text = t.render_metrics();
        assert!(
            text.lines()
                .any(|l| l.starts_with("http_server_active_requests{") && l.ends_with(" 0")),
            "the in-flight gauge is back to 0:\n{text}"
        );
    }
}

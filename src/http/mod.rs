//! The tower layer: request ID, user-ID slot, server span with W3C context,
//! HTTP metrics and one access line per request.
//!
//! ```
//! use axum::{Router, routing::get};
//! use std::time::Duration;
//!
//! let app: Router = Router::new()
//!     .route("/feed", get(|| async { "[]" }))
//!     .layer(
//!         glimpse_obs::layer()
//!             .slow_request(Duration::from_millis(300))
//!             .sample("/feed", 0.1),
//!     );
//! ```

mod request_id;
mod route_metrics;

use std::{
    cell::Cell,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::extract::MatchedPath;
use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Level, Span, field::Empty};

pub use request_id::{RequestId, X_REQUEST_ID};

use crate::logging::{
    LogType,
    scope::{self, RequestScope},
};

pub(crate) const REQUEST_SPAN_NAME: &str = "request";
pub(crate) const REQUEST_SPAN_TARGET: &str = "glimpse_obs::http";
/// Target of the access line, so a filter can tune it: `glimpse_obs::access=warn`.
pub const ACCESS_TARGET: &str = "glimpse_obs::access";
/// Label of the `route` of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// Status recorded for requests whose future was dropped before a response
/// (client gone, timeout): nginx's "client closed request".
pub const CANCELLED_STATUS: u16 = 499;
/// Longest `path` written on the access line and span; longer ones are cut
/// (after card numbers and e-mail addresses in it are masked).
const MAX_PATH: usize = 256;

/// The request ID of the current request, for outbound propagation.
pub(crate) fn current_request_id() -> Option<RequestId> {
    RequestId::current()
}

/// The glimpse_obs tower layer with the settings of `init()` (or defaults):
/// request ID, server span, HTTP metrics and one access line per request.
/// Same as [`ObsLayer::new`]. It may be built before or after
/// [`init`](crate::init): what the builder methods do not set is read from
/// `init`'s settings at request time.
///
/// ```
/// use axum::{Router, routing::get};
///
/// let app: Router = Router::new()
///     .route("/matches/{id}", get(|| async { "a match" }))
///     .layer(glimpse_obs::layer());
/// ```
pub fn layer() -> ObsLayer {
    ObsLayer::new()
}

#[derive(Debug, Clone)]
struct Settings {
    header: HeaderName,
    excluded: Vec<String>,
    /// Rates set with [`ObsLayer::sample`]; other routes follow
    /// `GLIMPSE_LOG_SAMPLE` as `init` read it.
    sample: Vec<(String, f64)>,
    /// Set with [`ObsLayer::slow_request`]; else `GLIMPSE_SLOW_REQUEST_MS`.
    slow: Option<Duration>,
    unmatched: String,
    /// Set with [`ObsLayer::trust_request_id`].
    trust_request_id: bool,
}

/// Tower layer for axum routers: request ID, user-ID slot, server span with
/// W3C context, HTTP metrics and one access line per request. Build it with
/// [`layer`] or [`ObsLayer::new`], then adjust it with the methods below.
///
/// ```
/// use axum::{Router, routing::get};
/// use std::time::Duration;
///
/// let app: Router = Router::new()
///     .route("/feed", get(|| async { "[]" }))
///     .layer(
///         glimpse_obs::layer()
///             .slow_request(Duration::from_millis(300))
///             .sample("/feed", 0.1),
///     );
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ObsLayer {
    settings: Arc<Settings>,
}

impl Default for ObsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ObsLayer {
    /// A layer with the settings `init()` read (slow threshold, sampling),
    /// excluding `/health` and `/metrics`.
    ///
    /// ```
    /// let layer = glimpse_obs::ObsLayer::new();
    /// ```
    pub fn new() -> Self {
        Self {
            settings: Arc::new(Settings {
                header: X_REQUEST_ID,
                excluded: vec!["/health".into(), "/metrics".into()],
                sample: Vec::new(),
                slow: None,
                unmatched: UNMATCHED_ROUTE.into(),
                trust_request_id: true,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(Arc::make_mut(&mut self.settings));
        self
    }

    /// The header carrying the request ID in and out. Defaults to `x-request-id`.
    ///
    /// ```
    /// let layer = glimpse_obs::layer().request_id_header(http::HeaderName::from_static("x-correlation-id"));
    /// ```
    pub fn request_id_header(self, name: HeaderName) -> Self {
        self.edit(|s| s.header = name)
    }

    /// Exclude requests to `route` (a route template such as `/health`, or a
    /// path for unmatched requests) from logs, metrics and spans together.
    /// Defaults to `/health` and `/metrics`.
    ///
    /// ```
    /// let layer = glimpse_obs::layer().exclude("/ready");
    /// ```
    pub fn exclude(self, route: impl Into<String>) -> Self {
        let route = route.into();
        self.edit(|s| s.excluded.push(route))
    }

    /// Instrument every route, `/health` and `/metrics` included.
    ///
    /// ```
    /// let layer = glimpse_obs::layer().include_all();
    /// ```
    pub fn include_all(self) -> Self {
        self.edit(|s| s.excluded.clear())
    }

    /// Keep this fraction (`0..=1`, clamped) of INFO access lines of `route`;
    /// ERROR and WARN lines are always kept. Defaults to `GLIMPSE_LOG_SAMPLE`.
    ///
    /// ```
    /// let layer = glimpse_obs::layer().sample("/feed", 0.1); // 10 % of INFO lines
    /// ```
    pub fn sample(self, route: impl Into<String>, rate: f64) -> Self {
        let route = route.into();
        self.edit(|s| {
            s.sample.retain(|(r, _)| *r != route);
            s.sample.push((route, rate.clamp(0.0, 1.0)));
        })
    }

    /// Access lines of requests slower than this are WARN. Defaults to
    /// `GLIMPSE_SLOW_REQUEST_MS` (1 s).
    ///
    /// ```
    /// let layer = glimpse_obs::layer().slow_request(std::time::Duration::from_millis(300));
    /// ```
    pub fn slow_request(self, threshold: Duration) -> Self {
        self.edit(|s| s.slow = Some(threshold))
    }

    /// Whether the caller's request ID (a valid `x-request-id`) becomes the
    /// request's ID, logged as `requestId` and echoed. With `false` (public
    /// edges, where any caller can send any ID), every request gets an ID
    /// of our own and the caller's is kept only as `clientRequestId` on
    /// its lines, as Envoy does for external requests: nobody can write
    /// another request's ID into audit lines. Defaults to `true`.
    ///
    /// ```
    /// let layer = glimpse_obs::layer().trust_request_id(false);
    /// ```
    pub fn trust_request_id(self, trust: bool) -> Self {
        self.edit(|s| s.trust_request_id = trust)
    }

    /// The `route` label of requests that matched no route. Defaults to `unmatched`.
    ///
    /// ```
    /// let layer = glimpse_obs::layer().unmatched_route("no_route");
    /// ```
    pub fn unmatched_route(self, label: impl Into<String>) -> Self {
        let label = label.into();
        self.edit(|s| s.unmatched = label)
    }
}

impl<S> Layer<S> for ObsLayer {
    type Service = ObsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ObsService {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service produced by [`ObsLayer`]; axum users never name it. Wrapping
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
{
    type Response = S::Response;
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
                Some(route_metrics::entry(
                    route,
                    route_metrics::method_index(req.method()),
                ))
            }
        };
        let Some(entry) = entry else {
            return ResponseFuture {
                inner: self.inner.call(req),
                state: None,
            };
        };

        let start = Instant::now();
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
        let path = crate::logging::redact::mask_personal_data(uri.path());
        let path = cap_path(&path);
        let span = tracing::info_span!(
            target: "glimpse_obs::http",
            "request",
            otel.name = &*entry.span_name,
            otel.kind = "server",
            otel.status_code = Empty,
            "http.request.method" = entry.method,
            // The method as sent when it is not one of the known nine.
            "http.request.method_original" = (entry.method == route_metrics::OTHER_METHOD)
                .then(|| req.method().as_str()),
            // Absent when no route matched (semantic conventions).
            "http.route" = route_metrics::is_template(&entry.route).then_some(&*entry.route),
            "url.path" = path,
            "url.scheme" = req.uri().scheme_str().unwrap_or("http"),
            "network.protocol.version" = protocol_version(req.version()),
            "user_agent.original" = req.headers().get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()),
            "http.response.status_code" = Empty,
            "enduser.id" = Empty,
            "glimpse.request_id" = request_id.as_str(),
            "error.type" = Empty,
        );
        crate::trace::set_parent_from_headers(&span, req.headers());
        let scope = Arc::new(
            RequestScope::new(request_id.clone()).with_client_request_id(client_request_id),
        );
        let traceparent = scope::attach(&span, scope.clone());
        req.extensions_mut().insert(request_id);

        let inner = span.in_scope(|| self.inner.call(req));
        ResponseFuture {
            inner,
            state: Some(Pending {
                start,
                span,
                scope,
                entry,
                uri,
                settings: settings.clone(),
                traceparent,
                done: false,
            }),
        }
    }
}

/// The access line's fields as `,"key":value` runs, in the order the
/// event-field form writes them; `entry_json` is the entry's pre-rendered
/// method and route.
fn access_fields(
    out: &mut Vec<u8>,
    entry_json: &[u8],
    path: &str,
    status: u16,
    micros: u64,
    cancelled: bool,
) {
    use crate::logging::json;
    out.extend_from_slice(entry_json);
    out.extend_from_slice(b",\"path\":");
    json::string_into(out, path);
    out.extend_from_slice(b",\"http_status\":");
    json::int_into(out, status);
    out.extend_from_slice(b",\"response_time\":");
    json::millis_into(out, micros);
    if cancelled {
        out.extend_from_slice(b",\"cancelled\":true");
    }
}

fn cap_path(path: &str) -> &str {
    if path.len() <= MAX_PATH {
        return path;
    }
    let mut end = MAX_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
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

struct Pending {
    start: Instant,
    span: Span,
    scope: Arc<RequestScope>,
    entry: Arc<route_metrics::RouteEntry>,
    uri: http::Uri,
    settings: Arc<Settings>,
    /// The response's `traceparent`, when known at the start (light layer).
    traceparent: Option<HeaderValue>,
    done: bool,
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
    fn finish(&mut self, status: u16) {
        self.done = true;
        let elapsed = self.start.elapsed();
        self.entry.active.decrement(1.0);
        self.entry.record_duration(status, elapsed.as_secs_f64());

        let span = &self.span;
        let user = self.scope.user();
        // The span's response fields are read by the OpenTelemetry layer and
        // the pretty format only: the JSON lines of a request never repeat
        // its server span's fields, and the ID-only trace layer exports
        // nothing. Recording them costs a registry walk per field.
        let json_only = crate::logging::layer::JSON_INSTALLED
            .load(std::sync::atomic::Ordering::Relaxed)
            && !crate::trace::EXPORTING.load(std::sync::atomic::Ordering::Relaxed);
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
        let path = crate::logging::redact::mask_personal_data(self.uri.path());
        let path = cap_path(&path);
        let cancelled = status == CANCELLED_STATUS;
        // An explicit parent rather than `in_scope`: the line gets the
        // request's fields without entering and exiting the span again.
        if crate::logging::layer::JSON_INSTALLED.load(std::sync::atomic::Ordering::Relaxed) {
            // INFO and WARN lines straight into the JSON log; ERROR lines are
            // events, so OpenTelemetry also records them on the span.
            let fields = |out: &mut Vec<u8>| {
                access_fields(
                    out,
                    &self.entry.access_json,
                    path,
                    status,
                    micros,
                    cancelled,
                )
            };
            if level != Level::ERROR
                && crate::logging::layer::write_access_line(span, level, log_type_enum, fields)
            {
                return;
            }
            crate::logging::layer::stage_access_fields(fields, || match level {
                Level::ERROR => {
                    tracing::error!(target: ACCESS_TARGET, parent: span, log_type, "request completed")
                }
                Level::WARN => {
                    tracing::warn!(target: ACCESS_TARGET, parent: span, log_type, "request completed")
                }
                _ => {
                    tracing::info!(target: ACCESS_TARGET, parent: span, log_type, "request completed")
                }
            });
            return;
        }
        // The pretty format: the access fields as event fields.
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
        self.settings
            .slow
            .unwrap_or_else(|| crate::init::settings().slow_request)
    }

    fn sampled_in(&self) -> bool {
        let route = &*self.entry.route;
        let rate = self
            .settings
            .sample
            .iter()
            .chain(crate::init::settings().log_sample.iter())
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

//! [`ObsLayer`]: the builder of the tower layer and its settings.

use std::{sync::Arc, time::Duration};

use http::HeaderName;
use tower_layer::Layer;

use super::{
    ObsService, UNMATCHED_ROUTE, X_REQUEST_ID, route_metrics::RouteCache, settings::Settings,
};
use crate::{config::Settings as Shared, metrics::SharedRecorder};

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
    /// excluding `/health`, `/health/live`, `/health/ready` and `/metrics`.
    ///
    /// ```
    /// let layer = glimpse_obs::ObsLayer::new();
    /// ```
    pub fn new() -> Self {
        Self {
            settings: Arc::new(Settings {
                header: X_REQUEST_ID,
                excluded: vec![
                    "/health".into(),
                    "/metrics".into(),
                    crate::ids::LIVE_PATH.into(),
                    crate::ids::READY_PATH.into(),
                ],
                sample: Vec::new(),
                slow: None,
                unmatched: UNMATCHED_ROUTE.into(),
                trust_request_id: true,
                bound: None,
                routes: Arc::new(RouteCache::new(None)),
                public_endpoint: false,
                response_traceparent: true,
                body_sizes: false,
            }),
        }
    }

    /// A layer bound to a telemetry's settings and recorder.
    pub(crate) fn bound(shared: Arc<Shared>, recorder: SharedRecorder) -> Self {
        Self::new().edit(|s| {
            s.bound = Some(shared);
            s.routes = Arc::new(RouteCache::new(Some(recorder)));
        })
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
    /// Defaults to `/health`, `/health/live`, `/health/ready` and `/metrics`.
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

    /// Treat callers as untrusted (a service on the public internet): an
    /// incoming `traceparent` no longer becomes the server span's parent.
    /// The span starts a new trace, takes our own sampling decision, and
    /// keeps the caller's context as a span link (what OpenTelemetry Go's
    /// `WithPublicEndpointFn` does), so outsiders can neither force sampling
    /// nor join our traces; their `tracestate` and `baggage` are ignored.
    /// Defaults to `false`, or `true` when `GLIMPSE_TRUST_TRACEPARENT=false`.
    ///
    /// ```
    /// let layer = glimpse_obs::layer().public_endpoint(true);
    /// ```
    pub fn public_endpoint(self, public: bool) -> Self {
        self.edit(|s| s.public_endpoint = public)
    }

    /// Whether responses carry the server span's `traceparent`; turn it off
    /// on public edges that should not reveal trace IDs. Defaults to `true`.
    ///
    /// ```
    /// let layer = glimpse_obs::layer().public_endpoint(true).response_traceparent(false);
    /// ```
    pub fn response_traceparent(self, on: bool) -> Self {
        self.edit(|s| s.response_traceparent = on)
    }

    /// Record `http_server_request_body_size_bytes` (from the request's
    /// `Content-Length`; requests without one are not recorded) and
    /// `http_server_response_body_size_bytes` (bytes of the body sent, for
    /// requests that were not cancelled), labelled `method` and `route`.
    /// Off by default: two histogram records cost more than the 30 ns per
    /// request the layer allows itself for optional metrics (see
    /// `docs/performance.md`). Defaults to `false`.
    ///
    /// ```
    /// let layer = glimpse_obs::layer().body_sizes(true);
    /// ```
    pub fn body_sizes(self, on: bool) -> Self {
        self.edit(|s| s.body_sizes = on)
    }
}

impl<S> Layer<S> for ObsLayer {
    type Service = ObsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ObsService::new(inner, self.settings.clone())
    }
}

//! The layer's own settings, shared by the layer, its services and their
//! response futures.

use std::{sync::Arc, time::Duration};

use http::HeaderName;

use super::route_metrics::RouteCache;
use crate::config::Settings as Shared;

/// What [`ObsLayer`](super::ObsLayer)'s builder methods set.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) header: HeaderName,
    pub(super) excluded: Vec<String>,
    /// Rates set with [`ObsLayer::sample`]; other routes follow
    /// `GLIMPSE_LOG_SAMPLE` as `init` read it.
    pub(super) sample: Vec<(String, f64)>,
    /// Set with [`ObsLayer::slow_request`]; else `GLIMPSE_SLOW_REQUEST_MS`.
    pub(super) slow: Option<Duration>,
    pub(super) unmatched: String,
    /// Set with [`ObsLayer::trust_request_id`](super::ObsLayer::trust_request_id).
    pub(super) trust_request_id: bool,
    /// The telemetry settings of [`Telemetry::http_layer`](crate::Telemetry::http_layer);
    /// `None` for [`layer`], which finds them through the dispatcher.
    pub(super) bound: Option<Arc<Shared>>,
    /// Metric handles per route and method, against the bound telemetry's
    /// recorder or the global one.
    pub(super) routes: Arc<RouteCache>,
    /// Set with [`ObsLayer::public_endpoint`]; `GLIMPSE_TRUST_TRACEPARENT=false`
    /// has the same effect.
    pub(super) public_endpoint: bool,
    /// Set with [`ObsLayer::response_traceparent`].
    pub(super) response_traceparent: bool,
    /// Set with [`ObsLayer::body_sizes`].
    pub(super) body_sizes: bool,
}

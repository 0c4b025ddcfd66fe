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

//! The parts, the tower-http way: [`layer`] (the [`ObsLayer`] builder),
//! [`service`] (the [`ObsService`] that opens the span), [`future`] (the
//! [`ResponseFuture`] that answers, with a `500` when the handler panics),
//! [`body`] (the [`ResponseBody`] that finishes the request at the body's
//! end), `pending` (the request between its start and its end: metrics,
//! span status, the access line), `access` (the access line's fields) and
//! `route_metrics` (cached metric handles per route).

mod access;
mod body;
mod future;
mod layer;
mod pending;
mod route_metrics;
mod service;
mod settings;

pub use crate::ids::{ACCESS_TARGET, CANCELLED_STATUS, RequestId, UNMATCHED_ROUTE, X_REQUEST_ID};
pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::{ObsLayer, layer};
pub use service::ObsService;

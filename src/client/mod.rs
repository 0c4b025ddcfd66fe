//! Outbound HTTP calls: one CLIENT span per call, the call's own
//! `traceparent`, and `http_client_request_duration_seconds`.
//!
//! [`propagation::inject`](crate::propagation::inject) alone writes the
//! *current* span into the headers, so three calls made by one request all
//! name the server span as their parent, and nothing times them. The two
//! wrappers here open a span for each call first and inject from inside it:
//!
//! - `Middleware` (feature `reqwest`) for a `reqwest-middleware` client;
//! - [`ClientLayer`], a tower layer for any `http::Request` client
//!   (hyper-util's `Client`, a tonic `Channel`, a `tower::Service` of your own).
//!
//! ```
//! use tower::ServiceBuilder;
//!
//! // Any tower service of `http::Request`s, here a stand-in for a hyper-util client.
//! let client = ServiceBuilder::new()
//!     .layer(glimpse_obs::client::ClientLayer::new())
//!     .service_fn(|_req: http::Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//!     });
//! # let _ = client;
//! ```
//!
//! ## What each call records
//!
//! **Span** `{method}` (`GET`, `POST`, `HTTP` for a method outside the
//! semantic conventions' list), `otel.kind = "client"`, a child of the span
//! the call is made in, with the OpenTelemetry HTTP client attributes:
//! `http.request.method`, `server.address`, `server.port`, `url.full`
//! (scheme, host, port and path: never the query string or credentials),
//! `http.response.status_code`, and `error.type` (the status code for a
//! response of 400 or more, `timeout`, `connect` or `_OTHER` when no
//! response came). Its status is *error* from 400 on, as the conventions ask
//! of client spans. Without an exporter (IDs only) the span carries no
//! attributes: nothing would read them.
//!
//! **Headers**: `traceparent` naming the client span, with the trace's
//! `tracestate` and `baggage`, and the request's `x-request-id`, exactly as
//! [`propagation::inject`](crate::propagation::inject) writes them (values
//! already on the request are replaced).
//!
//! **Metric** `http_client_request_duration_seconds{method,server_address,status}`:
//! `server_address` is the host alone (never the URL), capped by the
//! cardinality guard like every caller-fed label (past the cap: `other`);
//! `status` is the response's status code, or
//!
//! | `status` | when |
//! |---|---|
//! | `timeout` | no response in time (the client's timeout, a `tower` `Timeout` inside the layer, an I/O timeout) |
//! | `error` | no response for any other reason (connection refused, reset, DNS, TLS) |
//! | `cancelled` | the call's future was dropped before an answer (the caller gave up) |
//!
//! **Log line**: a 5xx response, a timeout or a transport error logs one
//! WARN line, target `glimpse_obs::client`, in the caller's span (so it
//! carries the request's `requestId` and `traceId`):
//!
//! | message | fields |
//! |---|---|
//! | `outbound call failed` | `peer` (`host:port`), `method`, `url` (as `url.full`), `duration_ms`, then `http_status` for a 5xx, or `error_type` (`timeout`, `connect`, `_OTHER`) and `error` (its message, without the URL) |
//!
//! 4xx answers are ordinary outcomes of a call: counted and on the span, not logged.

mod call;
mod layer;
#[cfg(feature = "reqwest")]
mod middleware;

pub use layer::{ClientFuture, ClientLayer, ClientService};
#[cfg(feature = "reqwest")]
pub use middleware::Middleware;

/// Target of the client spans and of the WARN line of a failed call, so a
/// filter can tune it: `glimpse_obs::client=error`.
pub const CLIENT_TARGET: &str = "glimpse_obs::client";

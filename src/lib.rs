//! # glimpse_obs
//!
//! One-call observability for Glimpse's axum services: structured JSON logs,
//! Prometheus metrics and OpenTelemetry traces that the Glimpse monitoring
//! stack (Prometheus, Grafana, Jaeger, Elasticsearch/Logstash/Kibana,
//! Alertmanager) understands with no extra work.
//!
//! ## Quickstart
//!
//! ```no_run
//! use axum::{Router, routing::get};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let _obs = glimpse_obs::init()?; // everything from the environment
//!     let app: Router = Router::new()
//!         .route("/matches/{id}", get(|| async { "a match" }))
//!         .layer(glimpse_obs::layer());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(()) // dropping `_obs` flushes logs and spans
//! }
//! ```
//!
//! Every request then logs one access line, counts in
//! `http_server_request_duration_seconds`, carries an `x-request-id` and
//! opens a server span continuing the caller's W3C trace.
//!
//! ## Configuration
//!
//! | env var | meaning | default |
//! |---|---|---|
//! | `OTEL_SERVICE_NAME` (or `GLIMPSE_SERVICE`) | `service` in logs, metrics, traces | executable name |
//! | `GLIMPSE_SERVICE_VERSION` | `service.version` on traces, `glimpse_build_info{version}` | `unknown` |
//! | `GLIMPSE_ENV` | `production` / `staging` / `development` | `development` |
//! | `GLIMPSE_LOG` (or `RUST_LOG`) | level filter (`EnvFilter` syntax) | `info` |
//! | `GLIMPSE_LOG_FORMAT` | `json` or `pretty` | `json` |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` | OTLP collector (gRPC 4317, `http/protobuf` 4318) | unset: no export, IDs still generated |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | traces-only OTLP URL; wins over `OTEL_EXPORTER_OTLP_ENDPOINT`, used verbatim for `http/protobuf` | unset |
//! | `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_EXPORT_TIMEOUT` | span export batching: spans waiting (more are dropped and counted), ms between exports, spans per export, ms one export may take | `2048`, `5000`, `512`, `30000` |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | sampling | `parentbased_always_on` |
//! | `GLIMPSE_METRICS_ADDR` | Prometheus scrape listener, or `off` | `0.0.0.0:9464` |
//! | `GLIMPSE_SLOW_QUERY_MS` | slow-query threshold | `500` |
//! | `GLIMPSE_SLOW_REQUEST_MS` | access line becomes WARN above | `1000` |
//! | `GLIMPSE_LOG_SAMPLE` | per-route access-log sampling, `/health=0,/feed=0.1` | `/health=0` |
//!
//! Code wins over the environment, which wins over defaults; see [`Config`].
//! An invalid value is an [`Error`] naming the variable and the value.
//!
//! ## Feature flags
//!
//! | Name | Description | Default |
//! |---|---|---|
//! | `reqwest` | `client::Middleware` for `reqwest-middleware` clients: a CLIENT span, `traceparent` and `http_client_request_duration_seconds` per outbound call ([`client::ClientLayer`] needs no feature) | no |
//! | `sqlx` | samples a real `sqlx` pool into `db_pool_connections` | no |
//! | `testing` | [`testing`]: capture JSON lines and metrics in a service's own tests | no |

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod client;
mod config;
mod error;
pub(crate) mod http;
mod ids;
mod init;
pub mod logging;
pub mod metrics;
pub mod propagation;
mod telemetry;
#[cfg(test)]
mod test_util;
pub(crate) mod trace;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::{
    Config, DEFAULT_METRICS_ADDR, Environment, GLIMPSE_ENV, GLIMPSE_LOG, GLIMPSE_LOG_FORMAT,
    GLIMPSE_LOG_SAMPLE, GLIMPSE_METRICS_ADDR, GLIMPSE_SERVICE, GLIMPSE_SERVICE_VERSION,
    GLIMPSE_SLOW_QUERY_MS, GLIMPSE_SLOW_REQUEST_MS, LogFormat, OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_SERVICE_NAME,
    OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, OtlpProtocol, RUST_LOG, Sampler,
};
pub use error::Error;
pub use http::{
    ACCESS_TARGET, CANCELLED_STATUS, ObsLayer, ObsService, RequestId, ResponseFuture,
    UNMATCHED_ROUTE, X_REQUEST_ID, layer,
};
pub use init::init;
pub use logging::{
    LogType,
    scope::{current_user_id, record_user_id},
};
pub use metrics::{business, cache, db, metrics_handler, security, ws};
pub use telemetry::{Guard, Telemetry, TracingLayer};

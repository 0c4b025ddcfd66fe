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
//! ## Three ways to finish a [`Config`]
//!
//! As with `metrics-exporter-prometheus`:
//! - [`init`] (or [`Config::init`]) installs everything: the tracing
//!   subscriber, the metrics recorder, the scrape listener;
//! - [`Config::build`] then [`Telemetry::install`]: the same in two steps;
//! - [`Config::build`] and the parts, installed by you:
//!   [`Telemetry::tracing_layer`] beside your own layers,
//!   [`Telemetry::recorder`] (or [`Telemetry::install_recorder`]),
//!   [`Telemetry::http_layer`], and the [`Telemetry`] (or
//!   [`Telemetry::into_guard`]) kept alive to flush at the end.
//!
//! ```no_run
//! use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let telemetry = glimpse_obs::Config::from_env()?.build()?;
//! tracing_subscriber::registry()
//!     .with(telemetry.tracing_layer())
//!     .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)) // yours
//!     .try_init()?;
//! telemetry.install_recorder()?;
//! let app: axum::Router = axum::Router::new().layer(telemetry.http_layer());
//! # let _ = app;
//! # Ok(()) }
//! ```
//!
//! Every fallible step runs in [`Config::build`], so installing either
//! succeeds whole or leaves the process as it was.
//!
//! ## Configuration
//!
//! | env var | meaning | default |
//! |---|---|---|
//! | `OTEL_SERVICE_NAME` (or `GLIMPSE_SERVICE`) | `service` in logs, metrics, traces | [`Config::default_service`], else the executable name |
//! | `GLIMPSE_SERVICE_VERSION` | `service.version` on traces, `glimpse_build_info{version}` | `unknown` |
//! | `GLIMPSE_ENV` | `production` / `staging` / `development` | `development` |
//! | `GLIMPSE_LOG` (or `RUST_LOG`) | level filter (`EnvFilter` syntax, every directive with its level: `info,sqlx=warn`) | `info` |
//! | `GLIMPSE_LOG_FORMAT` | `json` or `pretty` | `json` |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` | OTLP collector (gRPC 4317, `http/protobuf` 4318) | unset: no export, IDs still generated |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | traces-only OTLP URL; wins over `OTEL_EXPORTER_OTLP_ENDPOINT`, used verbatim for `http/protobuf` | unset |
//! | `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_EXPORT_TIMEOUT` | span export batching: spans waiting (more are dropped and counted), ms between exports, spans per export, ms one export may take | `2048`, `5000`, `512`, `30000` |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | sampling | `parentbased_always_on` |
//! | `GLIMPSE_METRICS_ADDR` | Prometheus scrape listener, or `off` | `0.0.0.0:9464` |
//! | `GLIMPSE_SLOW_QUERY_MS` | slow-query threshold | `500` |
//! | `GLIMPSE_SLOW_REQUEST_MS` | access line becomes WARN above | `1000` |
//! | `GLIMPSE_LOG_SAMPLE` | per-route access-log sampling, `/health=0,/feed=0.1` | `/health=0` |
//! | `GLIMPSE_RUNTIME_METRICS` | `true`/`false`: sample the tokio runtime `init()` runs in ([`runtime`]) | `true` |
//! | `GLIMPSE_SHUTDOWN_DRAIN_MS` | after SIGTERM, serve this long with ready answering 503 ([`health`]); `0` = off | `1000` |
//! | `GLIMPSE_TRUST_TRACEPARENT` | `false` on public edges: an incoming `traceparent` starts a new trace, kept as a span link only | `true` |
//!
//! Code wins over the environment, which wins over defaults; the service
//! name set with [`Config::default_service`] yields to the environment (see
//! [`Config`]).
//! An invalid value is an [`Error`] naming the variable and the value.
//!
//! ## Feature flags
//!
//! | Name | Description | Default |
//! |---|---|---|
//! | `reqwest` | `client::Middleware` for `reqwest-middleware` clients: a CLIENT span, `traceparent` and `http_client_request_duration_seconds` per outbound call ([`client::ClientLayer`] needs no feature) | no |
//! | `sqlx` | samples a real `sqlx` pool into `db_pool_connections`; `health::sqlx_pool` readiness check | no |
//! | `testing` | [`testing`]: capture JSON lines and metrics in a service's own tests | no |

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod client;
mod config;
mod error;
pub mod health;
pub(crate) mod http;
mod ids;
// The metric catalogue sits at the bottom of the layering (logging and
// trace count their own drops with it); public as `metrics::names`.
mod init;
pub mod logging;
pub mod metrics;
#[path = "metrics/names.rs"]
mod names;
pub(crate) mod otlp;
pub mod propagation;
mod telemetry;
#[cfg(test)]
mod test_util;
pub(crate) mod trace;

#[cfg(feature = "testing")]
pub mod testing;

/// The Rust examples of `docs/metrics.md`, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/metrics.md")]
mod metrics_md {}

pub use config::{
    Config, DEFAULT_METRICS_ADDR, Environment, GLIMPSE_ENV, GLIMPSE_LOG, GLIMPSE_LOG_FORMAT,
    GLIMPSE_LOG_SAMPLE, GLIMPSE_METRICS_ADDR, GLIMPSE_SERVICE, GLIMPSE_SERVICE_VERSION,
    GLIMPSE_SLOW_QUERY_MS, GLIMPSE_SLOW_REQUEST_MS, GLIMPSE_TRUST_TRACEPARENT, LogFormat,
    OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, OtlpProtocol, RUST_LOG,
    Sampler,
};
pub use config::{
    GLIMPSE_LOG_STDOUT, OTEL_EXPORTER_OTLP_CERTIFICATE, OTEL_EXPORTER_OTLP_COMPRESSION,
    OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE,
    OTEL_EXPORTER_OTLP_LOGS_COMPRESSION, OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
    OTEL_EXPORTER_OTLP_LOGS_HEADERS, OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
    OTEL_EXPORTER_OTLP_LOGS_TIMEOUT, OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE,
    OTEL_EXPORTER_OTLP_METRICS_COMPRESSION, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_HEADERS, OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
    OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, OTEL_LOGS_EXPORTER,
    OTEL_METRIC_EXPORT_INTERVAL, OTEL_METRICS_EXPORTER, OTEL_RESOURCE_ATTRIBUTES, OtlpCompression,
    Temporality,
};
pub use config::{GLIMPSE_RUNTIME_METRICS, GLIMPSE_SHUTDOWN_DRAIN_MS};
pub use error::Error;
pub use health::shutdown_signal;
pub use http::{
    ACCESS_TARGET, CANCELLED_STATUS, ObsLayer, ObsService, RequestId, ResponseBody, ResponseFuture,
    UNMATCHED_ROUTE, X_REQUEST_ID, layer,
};
pub use init::init;
pub use logging::{
    LogType,
    scope::{current_user_id, record_user_id},
};
pub use metrics::runtime;
pub use metrics::{business, cache, db, metrics_handler, security, ws};
/// The OTLP transport, for the crate's own integration tests only.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub use otlp::probe as __otlp_probe;
pub use telemetry::{Guard, Telemetry, TracingLayer};

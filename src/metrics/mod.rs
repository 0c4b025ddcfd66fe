//! Prometheus metrics: the catalogue of names, the exporter, the cardinality
//! guard and the domain helpers.

mod amount_counter;
pub mod business;
pub mod cache;
pub(crate) mod cardinality;
pub mod custom;
pub mod db;
pub(crate) mod exemplar;
pub(crate) mod exporter;
pub(crate) mod handles;
pub(crate) mod limits;
/// Every metric name and label key the crate emits, in one place.
///
/// Dashboards, alert rules and the tests under `tests/` read these names; a
/// metric that is not listed here is not emitted.
pub mod names {
    pub use crate::names::*;
}
pub(crate) mod openmetrics;
pub(crate) mod otlp;
mod process;
pub mod runtime;
pub mod security;
pub mod ws;

/// HTTP request latency buckets, in seconds: they include the KPI
/// thresholds (200 ms p50, 500 ms p95, 1 s alert) exactly.
pub const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the other latency histograms (database, WebSocket), in
/// seconds; 0.1 (the WebSocket KPI) and 0.5 (the slow-query threshold) included.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of WebSocket connection lifetimes, in seconds (1 s to 4 h).
pub const CONNECTION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

/// Buckets of the HTTP body-size histograms, in bytes (100 B to 100 MB).
pub const BODY_SIZE_BUCKETS: &[f64] = &[
    100.0,
    1_000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
    10_000_000.0,
    100_000_000.0,
];

pub use cardinality::OVERFLOW_VALUE;
pub use custom::{Custom, CustomCounter, CustomGauge, CustomHistogram};
pub use exporter::{SharedRecorder, metrics_handler};

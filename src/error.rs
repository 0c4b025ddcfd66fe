//! The one error type of the crate.

use std::net::SocketAddr;

/// Everything that can go wrong while setting up or reconfiguring `glimpse_obs`.
///
/// Messages are lowercase, name the bad value and say how to fix it.
///
/// ```
/// let err = glimpse_obs::Config::from_lookup(|name| {
///     (name == "GLIMPSE_SLOW_QUERY_MS").then(|| "soon".to_owned())
/// })
/// .unwrap_err();
/// assert!(err.to_string().contains("GLIMPSE_SLOW_QUERY_MS"));
/// assert!(err.to_string().contains("soon"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable holds a value the crate cannot use.
    #[error("invalid value {value:?} for environment variable {name}: {reason}")]
    InvalidEnv {
        /// The variable's name.
        name: &'static str,
        /// The value found.
        value: String,
        /// What is expected instead.
        reason: String,
    },
    /// A value passed in code is not usable.
    #[error("invalid configuration for {name}: {reason}")]
    InvalidConfig {
        /// The setting's name.
        name: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// `init` was called although the process is already instrumented.
    #[error(
        "glimpse_obs is already initialised in this process: call init() once and keep the guard"
    )]
    AlreadyInitialized,
    /// A global tracing subscriber or metrics recorder was installed by someone else.
    #[error("another global {what} is already installed: remove it, glimpse_obs installs its own")]
    GlobalTaken {
        /// `tracing subscriber` or `metrics recorder`.
        what: &'static str,
    },
    /// The log filter directive could not be parsed.
    #[error("invalid log filter {directive:?}: {reason}")]
    InvalidFilter {
        /// The directive given.
        directive: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The metrics listener could not bind its address.
    #[error(
        "cannot listen for Prometheus scrapes on {addr}: {source} (set GLIMPSE_METRICS_ADDR to a free address, or to `off`)"
    )]
    MetricsBind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The OpenTelemetry pipeline could not be built or shut down.
    #[error("tracing pipeline: {0}")]
    Trace(String),
    /// An OTLP exporter could not be built, or an export failed (the
    /// collector refused it, could not be reached, or did not answer in time).
    #[error("OTLP export: {0}")]
    Export(String),
    /// Flushing on shutdown did not finish in time.
    #[error("shutdown did not finish within {0:?}; some telemetry may be lost")]
    ShutdownTimeout(std::time::Duration),
    /// An I/O error while setting up a background worker.
    #[error("i/o error while {context}: {source}")]
    Io {
        /// What the crate was doing.
        context: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

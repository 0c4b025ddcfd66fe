//! `init()`: [`Config::from_env`], [`Config::build`] and
//! [`Telemetry::install`](crate::Telemetry::install) in one call.

use crate::{Config, Error, Guard};

/// Install everything from the environment: JSON logs on stdout, the
/// Prometheus listener on `GLIMPSE_METRICS_ADDR`, OpenTelemetry tracing
/// (exported when `OTEL_EXPORTER_OTLP_ENDPOINT` is set).
///
/// Keep the returned [`Guard`] alive for the life of the service: dropping it
/// flushes queued log lines and spans, bounded in time.
///
/// Called inside a tokio runtime, it also samples that runtime into the
/// `tokio_*` metrics ([`crate::runtime`], `GLIMPSE_RUNTIME_METRICS`); called
/// outside one, it samples nothing. The metrics listener serves
/// `/health/live` and `/health/ready` from [`Guard::health`].
///
/// ```no_run
/// #[tokio::main]
/// async fn main() -> Result<(), glimpse_obs::Error> {
///     let _obs = glimpse_obs::init()?;
///     tracing::info!(port = 3000, "listening");
///     Ok(())
/// }
/// ```
///
/// # Errors
/// - [`Error::InvalidEnv`] naming a variable whose value is unusable;
/// - [`Error::AlreadyInitialized`] when called a second time;
/// - [`Error::MetricsBind`] naming the address when the metrics port is busy;
/// - [`Error::GlobalTaken`] when another subscriber or recorder is installed.
pub fn init() -> Result<Guard, Error> {
    Config::from_env()?.init()
}

impl Config {
    /// Install logging, metrics and tracing with this configuration, and
    /// return the [`Guard`](crate::Guard) to keep for the life of the service.
    ///
    /// ```
    /// let guard = glimpse_obs::Config::default()
    ///     .service("payment")
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .init()?;
    /// tracing::info!("ready");
    /// guard.shutdown()?; // or drop it
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    ///
    /// # Errors
    /// See [`crate::init`].
    pub fn init(self) -> Result<crate::Guard, Error> {
        self.build()?.install()
    }
}

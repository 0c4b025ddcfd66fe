//! `init()` and [`Guard`]: the facade that installs what
//! [`Config::build`](crate::Config::build) made, the only place (with
//! `testing`) that sets process-wide state.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use crate::{Config, Error, Telemetry, metrics::exporter, telemetry::Core};

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Install everything from the environment: JSON logs on stdout, the
/// Prometheus listener on `GLIMPSE_METRICS_ADDR`, OpenTelemetry tracing
/// (exported when `OTEL_EXPORTER_OTLP_ENDPOINT` is set).
///
/// Keep the returned [`Guard`] alive for the life of the service: dropping it
/// flushes queued log lines and spans, bounded in time.
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

/// [`Telemetry::install`]: the globals, set once per process.
pub(crate) fn install(telemetry: Telemetry) -> Result<Guard, Error> {
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Err(Error::AlreadyInitialized);
    }
    match telemetry.install_globals() {
        Ok(()) => Ok(Guard::new(telemetry.into_core())),
        Err(e) => {
            // Both slots were checked before either was set: nothing of
            // this telemetry is installed, and a retry may succeed.
            INITIALIZED.store(false, Ordering::SeqCst);
            Err(e)
        }
    }
}

/// Keeps `glimpse_obs` running; dropping it (or [`Guard::shutdown`]) flushes
/// every queued log line and span, bounded by the shutdown timeout
/// (`Config::shutdown_timeout`, 5 s by default).
///
/// ```
/// let guard = glimpse_obs::Config::default()
///     .metrics_addr(None)
///     .log_writer(std::io::sink())
///     .init()?;
/// tracing::info!("serving");
/// assert_eq!(guard.dropped_log_lines(), 0);
/// guard.shutdown()?; // or let it drop at the end of `main`
/// # Ok::<(), glimpse_obs::Error>(())
/// ```
#[must_use = "dropping the guard shuts logging and tracing down"]
pub struct Guard {
    core: Core,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("metrics_addr", &self.core.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl Guard {
    pub(crate) fn new(core: Core) -> Self {
        Self { core }
    }

    /// Change the level filter while the service runs, e.g. to turn on DEBUG
    /// for one module during an incident.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), glimpse_obs::Error> {
    /// let obs = glimpse_obs::init()?;
    /// obs.set_filter("info,glimpse_payments=debug")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidFilter`] when the directive does not parse; the
    /// previous filter stays in force.
    pub fn set_filter(&self, directive: &str) -> Result<(), Error> {
        self.core.filter.set(directive)
    }

    /// The address the Prometheus listener is bound to (useful with port 0),
    /// or `None` when it is off.
    ///
    /// ```no_run
    /// let guard = glimpse_obs::Config::default()
    ///     .metrics_addr(Some(([127, 0, 0, 1], 0).into())) // any free port
    ///     .init()?;
    /// let addr = guard.metrics_addr().expect("the listener is on");
    /// println!("scrape http://{addr}/metrics");
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.core.metrics_addr
    }

    /// The current Prometheus text, as a scrape would see it.
    ///
    /// ```
    /// let guard = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .init()?;
    /// glimpse_obs::business::match_created();
    /// assert!(guard.render_metrics().contains("glimpse_matches_created_total"));
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn render_metrics(&self) -> String {
        exporter::render().unwrap_or_default()
    }

    /// Log lines dropped so far because stdout could not keep up (also
    /// `glimpse_obs_dropped_total{signal="logs"}`).
    ///
    /// ```
    /// let guard = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .init()?;
    /// assert_eq!(guard.dropped_log_lines(), 0);
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn dropped_log_lines(&self) -> u64 {
        self.core.queue.dropped()
    }

    /// Wait until every log line emitted so far is written and every ended
    /// span is exported, each up to `timeout`. Returns whether both finished.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let guard = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .init()?;
    /// tracing::error!("about to restart");
    /// assert!(guard.flush(Duration::from_secs(1)));
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn flush(&self, timeout: Duration) -> bool {
        self.core.flush(timeout)
    }

    /// Spans dropped so far: export queue full, export failed, or shutdown
    /// cut short (also `glimpse_obs_dropped_total{signal="spans"}`). Always 0
    /// without an OTLP endpoint: nothing is exported, so nothing is dropped.
    ///
    /// ```
    /// let guard = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .init()?;
    /// assert_eq!(guard.dropped_spans(), 0);
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn dropped_spans(&self) -> u64 {
        self.core.dropped_spans()
    }

    /// Flush logs and spans and stop the background workers, within the
    /// shutdown timeout. Dropping the guard does the same and prints the
    /// error to stderr instead of returning it.
    ///
    /// ```
    /// let guard = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .init()?;
    /// tracing::info!("shutting down");
    /// guard.shutdown()?;
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ShutdownTimeout`] when flushing did not finish in time (a
    /// stuck stdout or collector) or a scrape was still in flight (its
    /// connection is dropped); nothing blocks past the timeout.
    pub fn shutdown(self) -> Result<(), Error> {
        self.core.shutdown()
    }
}

#[cfg(test)]
mod tests {
    use crate::telemetry::is_transport;

    #[test]
    fn transport_crates_are_kept_out_of_traces_by_crate_name() {
        for t in [
            "h2::proto",
            "hyper",
            "hyper_util::client::legacy",
            "tonic::transport",
            "tower::buffer::worker",
            "opentelemetry_sdk::trace",
            "sqlx::query",
            "axum::serve",
        ] {
            assert!(is_transport(t), "{t}");
        }
        for t in [
            "tower_http::trace::on_request",
            "h2o",
            "glimpse_obs::http",
            "axum::routing",
            "my_service",
        ] {
            assert!(!is_transport(t), "{t}");
        }
    }
}

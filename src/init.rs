//! `init()`: installs the subscriber, the metrics recorder and the tracer
//! provider, and returns the [`Guard`] that flushes them.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tracing_subscriber::{Layer, layer::SubscriberExt};

use crate::{
    Config, Error,
    config::{LogFormat, Settings},
    logging::{
        filter::{AccessGate, FilterHandle, LevelFilter},
        layer::JsonLayer,
        writer::{LineQueue, WriterThread},
    },
    metrics::exporter,
    trace::TracePipeline,
};

static INITIALIZED: AtomicBool = AtomicBool::new(false);
static SETTINGS: OnceLock<Arc<Settings>> = OnceLock::new();

/// The settings request-time code reads: those of `init`, or defaults
/// until `init` has run (reading them never pins the defaults).
pub(crate) fn settings() -> &'static Settings {
    static DEFAULTS: std::sync::LazyLock<Settings> = std::sync::LazyLock::new(Settings::default);
    SETTINGS.get().map_or(&*DEFAULTS, |s| s)
}

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

pub(crate) fn install(mut config: Config) -> Result<Guard, Error> {
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Err(Error::AlreadyInitialized);
    }
    match install_inner(&mut config) {
        Ok(guard) => Ok(guard),
        Err(e @ (Error::GlobalTaken { .. } | Error::AlreadyInitialized)) => Err(e),
        Err(e) => {
            // Nothing global was installed yet: a corrected retry may succeed.
            INITIALIZED.store(false, Ordering::SeqCst);
            Err(e)
        }
    }
}

fn install_inner(config: &mut Config) -> Result<Guard, Error> {
    // Fallible steps without global side effects first.
    let listener = config.metrics_addr.map(exporter::bind).transpose()?;
    let metrics_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
    let recorder = exporter::build_recorder(config)?;
    let handle = recorder.handle();
    let filter = crate::logging::filter::parse(&config.log_filter).map_err(|reason| {
        Error::InvalidFilter {
            directive: config.log_filter.clone(),
            reason,
        }
    })?;
    let pipeline = TracePipeline::new(config)?;

    metrics::set_global_recorder(recorder).map_err(|_| Error::GlobalTaken {
        what: "metrics recorder",
    })?;
    exporter::register(handle, config);

    let gate = std::sync::Arc::new(AccessGate::new(&filter));
    let filter_layer = LevelFilter::new(filter, &config.log_filter);
    let filter_layer_handle = filter_layer.clone();
    let out = config
        .writer
        .take()
        .unwrap_or_else(|| Box::new(std::io::stdout()));
    let (queue, writer) = LineQueue::start(out, config.log_queue_bytes)?;
    let log_layer = match config.log_format {
        LogFormat::Json => {
            crate::logging::layer::JSON_INSTALLED.store(true, std::sync::atomic::Ordering::Relaxed);
            JsonLayer::new(
                &config.service,
                queue.clone(),
                gate.clone(),
                config.log_field_max_bytes,
            )
            .with_filter(filter_layer)
            .boxed()
        }
        // The compact, coloured one-line format: `.pretty()` would format
        // event fields with its own visitor, bypassing redaction.
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .fmt_fields(crate::logging::layer::pretty_fields())
            .with_writer(QueueWriter(queue.clone()))
            .and_then(crate::logging::layer::LevelCounters::new())
            .with_filter(filter_layer)
            .boxed(),
    };
    // Exporting: full OpenTelemetry spans. Not exporting: IDs only, so logs,
    // responses and outbound calls still carry W3C context (see trace::light).
    let exporting = pipeline.exporting();
    // Boxed, not `Option`: `Option<L>` does not forward `on_register_dispatch`,
    // which the exporting pipeline's ID layer needs.
    crate::trace::EXPORTING.store(exporting, std::sync::atomic::Ordering::Relaxed);
    let trace_layer = if exporting {
        pipeline.layer().with_filter(otel_filter()).boxed()
    } else {
        crate::trace::LightLayer::new(config.sampler)
            .with_filter(otel_filter())
            .boxed()
    };
    let subscriber = tracing_subscriber::registry()
        .with(log_layer)
        .with(trace_layer);
    tracing::subscriber::set_global_default(subscriber).map_err(|_| Error::GlobalTaken {
        what: "tracing subscriber",
    })?;
    let _ = SETTINGS.set(config.shared_settings());

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let metrics_thread = exporter::spawn(listener, stop_rx)?;

    Ok(Guard {
        inner: Mutex::new(Some(Inner {
            writer,
            pipeline,
            stop: stop_tx,
            metrics_thread,
        })),
        queue,
        filter: FilterHandle {
            filter: filter_layer_handle,
            gate,
        },
        metrics_addr,
        timeout: config.shutdown_timeout,
    })
}

/// What reaches OpenTelemetry: spans at INFO and above (and ERROR events, as
/// span events), never the exporter's own transport stack, whose spans would
/// feed back into the exporter.
fn otel_filter() -> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(|meta| {
        let wanted = if meta.is_span() {
            *meta.level() <= tracing::Level::INFO
        } else {
            *meta.level() == tracing::Level::ERROR
        };
        wanted && !is_transport(meta.target())
    })
}

/// Whether `target` belongs to the exporter's transport stack (or the
/// database driver, whose query spans `db::query` replaces), by crate name:
/// `tower::buffer` is, `tower_http::trace` (a layer a team adds on purpose)
/// is not.
fn is_transport(target: &str) -> bool {
    const CRATES: &[&str] = &[
        "h2",
        "hyper",
        "hyper_util",
        "tonic",
        "tower",
        "reqwest",
        "opentelemetry",
        "opentelemetry_sdk",
        "opentelemetry_otlp",
        "opentelemetry_http",
        "sqlx",
        "sqlx_core",
        "sqlx_sqlite",
        "sqlx_postgres",
        "sqlx_mysql",
    ];
    let krate = target.split("::").next().unwrap_or(target);
    CRATES.contains(&krate) || target == "axum::serve" || target.starts_with("axum::serve::")
}

/// A `MakeWriter` that sends the pretty format through the same queue.
#[derive(Clone)]
struct QueueWriter(LineQueue);

impl std::io::Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf, false);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for QueueWriter {
    type Writer = QueueWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

struct Inner {
    writer: WriterThread,
    pipeline: TracePipeline,
    /// Stops the metrics thread; carries the grace period of scrapes in flight.
    stop: tokio::sync::oneshot::Sender<Duration>,
    metrics_thread: std::thread::JoinHandle<bool>,
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
    inner: Mutex<Option<Inner>>,
    queue: LineQueue,
    filter: FilterHandle,
    metrics_addr: Option<SocketAddr>,
    timeout: Duration,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl Guard {
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
        self.filter.set(directive)
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
        self.metrics_addr
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
        self.queue.dropped()
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
        let spans_ok = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(|i| i.pipeline.force_flush(timeout).is_ok());
        self.queue.flush(timeout) && spans_ok
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
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |i| i.pipeline.dropped_spans())
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
        self.shutdown_inner()
    }

    fn shutdown_inner(&self) -> Result<(), Error> {
        let Some(mut inner) = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        let start = Instant::now();
        let span_result = inner.pipeline.shutdown(self.timeout);
        let left = self
            .timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(100));
        let logs_done = inner.writer.shutdown(left);
        // Scrapes in flight may use what is left; a stalled scrape connection
        // is dropped then, and should the thread still not end, it is
        // detached rather than joined forever.
        let left = self.timeout.saturating_sub(start.elapsed());
        let _ = inner.stop.send(left);
        let metrics_done =
            join_within(inner.metrics_thread, left.saturating_add(THREAD_EXIT_SLACK)) == Some(true);
        span_result?;
        if logs_done && metrics_done {
            Ok(())
        } else {
            Err(Error::ShutdownTimeout(self.timeout))
        }
    }
}

/// How long a worker may take to exit once its own deadline passed.
const THREAD_EXIT_SLACK: Duration = Duration::from_millis(100);

/// `thread`'s result if it ends within `timeout`; otherwise `None`, and the
/// thread is left detached.
fn join_within<T>(thread: std::thread::JoinHandle<T>, timeout: Duration) -> Option<T> {
    let start = Instant::now();
    while !thread.is_finished() {
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    thread.join().ok()
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown_inner() {
            eprintln!("glimpse_obs: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_transport;

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

//! [`Telemetry`]: every part of glimpse_obs built from a [`Config`], with
//! nothing installed globally, so a service can compose the parts with its
//! own (a Sentry layer, tokio-console, a recorder of its own).
//!
//! There are three ways to finish a [`Config`], as with
//! `metrics-exporter-prometheus`:
//! - [`Config::init`] (or [`crate::init`]) installs everything: the tracing
//!   subscriber, the metrics recorder, the scrape listener;
//! - [`Config::build`] then [`Telemetry::install`]: the same in two steps,
//!   so the parts can be inspected between them;
//! - [`Config::build`] then the parts: [`Telemetry::tracing_layer`] into a
//!   subscriber of your own, [`Telemetry::recorder`] into a recorder of your
//!   own (or [`Telemetry::install_recorder`]), [`Telemetry::http_layer`] on
//!   the router, and [`Telemetry::into_guard`] (or the `Telemetry` itself)
//!   kept alive to flush at the end.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tracing::Subscriber;
use tracing_subscriber::{Layer, registry::LookupSpan};

use crate::{
    Config, Error,
    config::{LogFormat, Sampler, Settings},
    health::Health,
    http::ObsLayer,
    logging::{
        export::OtlpLogs,
        filter::{AccessGate, FilterHandle, LevelFilter},
        layer::{JsonLayer, LevelCounters, pretty_fields},
        writer::{LineQueue, WriterThread},
    },
    metrics::{
        exporter::{self, Exporter, SharedRecorder},
        otlp::OtlpMetrics,
    },
    trace::TracePipeline,
};

/// Whether `install()` succeeded in this process.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// The tracing layer [`Telemetry::tracing_layer`] hands out: the JSON (or
/// pretty) log, the trace-ID layer or OTLP span pipeline, and the request
/// scope, for any subscriber built on [`tracing_subscriber::registry()`].
pub type TracingLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

/// Every part of glimpse_obs, built and running (the log writer thread, the
/// scrape listener, the span exporter) but installed nowhere. Made by
/// [`Config::build`].
///
/// Dropping it (or the [`Guard`](Guard) that
/// [`install`](Telemetry::install) or [`into_guard`](Telemetry::into_guard)
/// returns) flushes queued log lines and spans, bounded by
/// [`Config::shutdown_timeout`].
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let telemetry = glimpse_obs::Config::default()
///     .service("matches")
///     .metrics_addr(None)
///     .log_writer(std::io::sink())
///     .build()?;
/// let subscriber = tracing_subscriber::registry()
///     .with(telemetry.tracing_layer())
///     .with(tracing_subscriber::filter::LevelFilter::INFO); // a layer of your own
/// tracing::subscriber::with_default(subscriber, || tracing::info!("composed"));
/// # Ok::<(), glimpse_obs::Error>(())
/// ```
pub struct Telemetry {
    core: Core,
    exporter: Arc<Exporter>,
    settings: Arc<Settings>,
    pipeline: Arc<TracePipeline>,
    service: String,
    log_format: LogFormat,
    sampler: Sampler,
    gate: Arc<AccessGate>,
    level_filter: LevelFilter,
    limits: Arc<crate::metrics::limits::Limits>,
    log_field_max_bytes: usize,
    /// `GLIMPSE_LOG_STDOUT`: whether lines go to stdout (or the writer).
    log_stdout: bool,
    /// Whether log lines go to stdout (no `Config::log_writer`): the panic
    /// hook then replaces the previous hook's stderr text instead of
    /// adding to it.
    logs_to_stdout: bool,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("service", &self.service)
            .field("metrics_addr", &self.core.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Build every part (log writer, metrics recorder and scrape listener,
    /// trace pipeline) and install nothing globally. Every fallible step of
    /// [`init`](crate::init) runs here, so a later
    /// [`Telemetry::install`] cannot fail half-way.
    ///
    /// ```
    /// let telemetry = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .build()?;
    /// let app: axum::Router = axum::Router::new().layer(telemetry.http_layer());
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::MetricsBind`] when the metrics port is busy,
    /// [`Error::InvalidFilter`] for a bad level filter, [`Error::Export`]
    /// when an OTLP exporter (spans, metrics) cannot be built,
    /// [`Error::InvalidEnv`] when its CA file (`OTEL_EXPORTER_OTLP_CERTIFICATE`)
    /// cannot be read, [`Error::Io`] when a background thread cannot start.
    pub fn build(mut self) -> Result<Telemetry, Error> {
        let filter = crate::config::parse_filter(&self.log_filter).map_err(|reason| {
            Error::InvalidFilter {
                directive: self.log_filter.clone(),
                reason,
            }
        })?;
        let log_stdout = self.export.log_stdout;
        let logs_to_stdout = self.writer.is_none() && log_stdout;
        // `OTEL_METRICS_EXPORTER` without `prometheus`: no scrape listener.
        let listener = self
            .metrics_addr
            .filter(|_| self.export.metrics_exporters.prometheus)
            .map(exporter::bind)
            .transpose()?;
        let metrics_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let exporter = Arc::new(Exporter::new(&self)?);
        // The parts' own counters (dropped lines and spans) belong to this
        // telemetry's recorder, whoever installs it.
        let (pipeline, (queue, writer), otlp_logs) =
            metrics::with_local_recorder(exporter.recorder(), || {
                let pipeline = Arc::new(TracePipeline::new(&self)?);
                // `OTEL_LOGS_EXPORTER=otlp`: each JSON line also as a record.
                let otlp_logs = OtlpLogs::start(&self)?.map(Arc::new);
                let out = self
                    .writer
                    .take()
                    .unwrap_or_else(|| Box::new(std::io::stdout()));
                let lines = LineQueue::start(out, self.log_queue_bytes)?;
                Ok::<_, Error>((pipeline, lines, otlp_logs))
            })?;
        let otlp_metrics = OtlpMetrics::start(&self, exporter.clone())?;
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        // The health state the metrics listener serves (`/health/live`,
        // `/health/ready`), and the runtime sampler: a thread of its own,
        // started here so that a failure is an error of `build`. None
        // outside a runtime.
        let health = Health::new().drain_delay(self.shutdown_drain);
        let metrics_thread = exporter::spawn(listener, exporter.clone(), stop_rx, health.router())?;
        let runtime_sampler = match (self.runtime_metrics, tokio::runtime::Handle::try_current()) {
            (Some(every), Ok(rt)) => {
                Some(metrics::with_local_recorder(exporter.recorder(), || {
                    crate::metrics::runtime::spawn_sampler(rt, every)
                })?)
            }
            _ => None,
        };

        let gate = Arc::new(AccessGate::new(&filter));
        let level_filter = LevelFilter::new(filter, &self.log_filter);
        let exporting = pipeline.exporting();
        let limits = Arc::new(crate::metrics::limits::Limits::of(&self));
        let mut settings = self.shared_settings();
        {
            let s = Arc::make_mut(&mut settings);
            s.exporting = exporting;
            // The server span's response fields are read by the OpenTelemetry
            // layer and the pretty format only.
            s.record_span_fields = exporting || self.log_format == LogFormat::Pretty;
            s.fields_on_span = self.log_format == LogFormat::Pretty;
        }
        Ok(Telemetry {
            core: Core {
                inner: Mutex::new(Some(Inner {
                    writer,
                    pipeline: pipeline.clone(),
                    otlp_logs: otlp_logs.clone(),
                    stop,
                    metrics_thread,
                    otlp_metrics,
                })),
                queue,
                otlp_logs,
                filter: FilterHandle {
                    filter: level_filter.clone(),
                    gate: gate.clone(),
                },
                metrics_addr,
                timeout: self.shutdown_timeout,
                health,
                _runtime_sampler: runtime_sampler,
            },
            exporter,
            settings,
            pipeline,
            service: self.service,
            log_format: self.log_format,
            sampler: self.sampler,
            gate,
            level_filter,
            limits,
            log_field_max_bytes: self.log_field_max_bytes,
            log_stdout,
            logs_to_stdout,
        })
    }
}

impl Telemetry {
    /// The tracing layer: the JSON (or pretty) log with its level filter,
    /// the trace-ID layer (or the OTLP span pipeline when an endpoint is
    /// set) and the request scope. Stack it on
    /// [`tracing_subscriber::registry()`] with layers of your own; each
    /// call returns a layer writing to the same log and exporter.
    ///
    /// ```
    /// use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};
    ///
    /// let telemetry = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .build()?;
    /// tracing_subscriber::registry()
    ///     .with(telemetry.tracing_layer())
    ///     .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink)) // yours
    ///     .try_init()
    ///     .ok();
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn tracing_layer<S>(&self) -> TracingLayer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        // The level counters belong to this telemetry's recorder.
        metrics::with_local_recorder(self.exporter.recorder(), || self.build_tracing_layer())
    }

    fn build_tracing_layer<S>(&self) -> TracingLayer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let log = match self.log_format {
            LogFormat::Json => JsonLayer::new(
                &self.service,
                self.core.queue.clone(),
                self.gate.clone(),
                self.log_field_max_bytes,
            )
            .with_otlp(self.core.otlp_logs.clone(), self.log_stdout)
            .with_filter(self.level_filter.clone())
            .boxed(),
            // The compact, coloured one-line format: `.pretty()` would
            // format event fields with its own visitor, bypassing redaction.
            LogFormat::Pretty => tracing_subscriber::fmt::layer()
                .event_format(crate::logging::pretty::PrettyFormat)
                .fmt_fields(pretty_fields())
                .with_writer(QueueWriter(self.core.queue.clone()))
                .and_then(LevelCounters::new())
                .with_filter(self.level_filter.clone())
                .boxed(),
        };
        // IDs always (logs, responses and outbound calls carry W3C context);
        // span records for the OTLP export when an endpoint is set. The
        // layer carries the settings: the tower layer built by `layer()`
        // finds them through the dispatcher (`downcast_ref`).
        let trace = self
            .pipeline
            .layer(self.sampler, self.settings.clone())
            .with_filter(otel_filter())
            .boxed();
        log.and_then(trace).boxed()
    }

    /// The tower layer bound to this telemetry: its slow-request threshold
    /// and sampling, its recorder for the HTTP metrics, nothing read from a
    /// global at request time.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    ///
    /// let telemetry = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .build()?;
    /// let app: Router = Router::new()
    ///     .route("/matches/{id}", get(|| async { "a match" }))
    ///     .layer(telemetry.http_layer().slow_request(std::time::Duration::from_millis(300)));
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn http_layer(&self) -> ObsLayer {
        ObsLayer::bound(self.settings.clone(), self.exporter.recorder().clone())
    }

    /// The metrics recorder, for a team that installs or wraps recorders
    /// itself (e.g. in a `metrics_util::layers::FanoutBuilder`, or for a
    /// scope with [`metrics::with_local_recorder`]). Clones record into the
    /// same series, which the scrape listener and
    /// [`render_metrics`](Telemetry::render_metrics) serve.
    ///
    /// ```
    /// let telemetry = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .build()?;
    /// let recorder = telemetry.recorder();
    /// metrics::with_local_recorder(&recorder, || metrics::counter!("jobs_total").increment(1));
    /// assert!(telemetry.render_metrics().contains("jobs_total"));
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn recorder(&self) -> SharedRecorder {
        self.exporter.recorder().clone()
    }

    /// Install the recorder as the process's global one (what
    /// [`install`](Telemetry::install) does for metrics), and make
    /// [`metrics_handler`](crate::metrics_handler) serve it.
    ///
    /// ```no_run
    /// let telemetry = glimpse_obs::Config::default().build()?;
    /// telemetry.install_recorder()?;
    /// glimpse_obs::business::match_created(); // now recorded
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::GlobalTaken`] when a recorder is installed already.
    pub fn install_recorder(&self) -> Result<(), Error> {
        metrics::set_global_recorder(self.recorder()).map_err(|_| Error::GlobalTaken {
            what: "metrics recorder",
        })?;
        self.publish_metrics();
        Ok(())
    }

    /// After the recorder became the global one: the free `metrics_handler`
    /// serves it and the domain helpers follow this configuration's limits.
    fn publish_metrics(&self) {
        exporter::install_global(self.exporter.clone());
        crate::metrics::limits::set(self.limits.clone());
    }

    /// The service's [`Health`]: register readiness checks on it and mount
    /// [`Health::router`]; the metrics listener serves `/health/live` and
    /// `/health/ready` from the same state. Its drain delay is
    /// `GLIMPSE_SHUTDOWN_DRAIN_MS`.
    ///
    /// ```
    /// let telemetry = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .build()?;
    /// let health = telemetry
    ///     .health()
    ///     .check("cache", std::time::Duration::from_millis(100), || async { Ok::<(), String>(()) });
    /// let app: axum::Router = axum::Router::new().merge(health.router());
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn health(&self) -> Health {
        self.core.health.clone()
    }

    /// The current Prometheus text of this telemetry's recorder, as a scrape
    /// would see it.
    ///
    /// ```
    /// let telemetry = glimpse_obs::Config::default()
    ///     .service("payment")
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .build()?;
    /// assert!(telemetry.render_metrics().contains("service=\"payment\""));
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn render_metrics(&self) -> String {
        self.exporter.render()
    }

    /// The same series as [`Telemetry::render_metrics`] in the OpenMetrics
    /// format, as a scrape with `Accept: application/openmetrics-text`
    /// sees it: histogram buckets carry the exemplar (trace and span ID) of
    /// their latest sampled observation, and the text ends with `# EOF`.
    ///
    /// ```
    /// let telemetry = glimpse_obs::Config::default()
    ///     .service("payment")
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .build()?;
    /// let text = telemetry.render_openmetrics();
    /// assert!(text.contains("# TYPE glimpse_build_info gauge"));
    /// assert!(text.ends_with("# EOF\n"));
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn render_openmetrics(&self) -> String {
        self.exporter.render_openmetrics()
    }

    /// The address the scrape listener is bound to, `None` when it is off.
    ///
    /// ```
    /// let telemetry = glimpse_obs::Config::default()
    ///     .metrics_addr(Some(([127, 0, 0, 1], 0).into()))
    ///     .log_writer(std::io::sink())
    ///     .build()?;
    /// assert!(telemetry.metrics_addr().is_some());
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.core.metrics_addr
    }

    /// Wait until every log line emitted so far is written, every ended
    /// span is exported and (with OTLP metrics) the current metrics are
    /// exported, each up to `timeout`. Returns whether all finished.
    ///
    /// ```
    /// let telemetry = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .build()?;
    /// assert!(telemetry.flush(std::time::Duration::from_secs(1)));
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn flush(&self, timeout: Duration) -> bool {
        self.core.flush(timeout)
    }

    /// Keep only what flushes: a [`Guard`](Guard) for the composed
    /// path, once the layers and the recorder are in place.
    ///
    /// ```
    /// let telemetry = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .build()?;
    /// let _layer = telemetry.tracing_layer::<tracing_subscriber::Registry>();
    /// let guard = telemetry.into_guard();
    /// guard.shutdown()?;
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn into_guard(self) -> Guard {
        Guard::new(self.core, None)
    }

    /// Install everything globally, as [`init`](crate::init) does: the
    /// subscriber (this telemetry's [`tracing_layer`](Telemetry::tracing_layer)
    /// on a registry), the metrics recorder, the limits the domain helpers
    /// apply. Nothing here can fail half-way: every fallible step ran in
    /// [`Config::build`], and both global slots are checked before either is
    /// set.
    ///
    /// ```no_run
    /// let _guard = glimpse_obs::Config::from_env()?.build()?.install()?;
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::AlreadyInitialized`] after a successful install;
    /// [`Error::GlobalTaken`] when another subscriber or recorder is
    /// installed (then nothing of this telemetry is).
    pub fn install(self) -> Result<Guard, Error> {
        install(self)
    }

    pub(crate) fn install_globals(&self) -> Result<(), Error> {
        use tracing_subscriber::layer::SubscriberExt;
        if tracing::dispatcher::has_been_set() {
            return Err(Error::GlobalTaken {
                what: "tracing subscriber",
            });
        }
        // The recorder first: its slot is the one that cannot be checked
        // without setting it. The subscriber's was checked just above.
        self.install_recorder()?;
        let subscriber = tracing_subscriber::registry().with(self.tracing_layer());
        tracing::subscriber::set_global_default(subscriber).map_err(|_| Error::GlobalTaken {
            what: "tracing subscriber",
        })
    }

    pub(crate) fn into_core(self) -> Core {
        self.core
    }
}

/// What flushes and stops: the writer thread, the span pipeline, the
/// metrics thread. Owned by a [`Telemetry`], then by its guard.
pub(crate) struct Core {
    inner: Mutex<Option<Inner>>,
    pub(crate) queue: LineQueue,
    /// `OTEL_LOGS_EXPORTER=otlp`: the records' queue, shared with the JSON layers.
    pub(crate) otlp_logs: Option<Arc<OtlpLogs>>,
    pub(crate) filter: FilterHandle,
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) timeout: Duration,
    pub(crate) health: Health,
    _runtime_sampler: Option<crate::metrics::runtime::Sampler>,
}

struct Inner {
    writer: WriterThread,
    pipeline: Arc<TracePipeline>,
    /// Shut down with the rest (the `Core` keeps a handle for `flush`).
    otlp_logs: Option<Arc<OtlpLogs>>,
    /// Stops the metrics thread; carries the grace period of scrapes in flight.
    stop: tokio::sync::oneshot::Sender<Duration>,
    metrics_thread: std::thread::JoinHandle<bool>,
    /// The periodic OTLP metric export (`OTEL_METRICS_EXPORTER` with `otlp`).
    otlp_metrics: Option<OtlpMetrics>,
}

impl Core {
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let spans_ok = inner
            .as_ref()
            .is_none_or(|i| i.pipeline.force_flush(timeout).is_ok());
        let metrics_ok = inner
            .as_ref()
            .and_then(|i| i.otlp_metrics.as_ref())
            .is_none_or(|m| m.force_flush(timeout).is_ok());
        drop(inner);
        let records_ok = self
            .otlp_logs
            .as_ref()
            .is_none_or(|o| o.flush(timeout).is_ok());
        self.queue.flush(timeout) && spans_ok && metrics_ok && records_ok
    }

    pub(crate) fn dropped_spans(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |i| i.pipeline.dropped_spans())
    }

    pub(crate) fn shutdown(&self) -> Result<(), Error> {
        let Some(inner) = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        let Inner {
            mut writer,
            pipeline,
            otlp_logs,
            stop,
            metrics_thread,
            otlp_metrics,
        } = inner;
        let start = Instant::now();
        // The final metric export runs while the spans are flushed.
        let metrics_pending = otlp_metrics.as_ref().map(|m| (m, m.begin_shutdown()));
        let span_result = pipeline.shutdown(self.timeout);
        // Log records next, within what is left (lines written after this
        // point go to stdout only): a collector that does not answer costs
        // at most the shutdown timeout in all.
        let records_result = otlp_logs.as_ref().map_or(Ok(()), |o| {
            let left = self.timeout.saturating_sub(start.elapsed());
            o.shutdown(left.max(Duration::from_millis(10)))
        });
        if let Some(o) = &otlp_logs
            && (records_result.is_err() || o.dropped() > 0)
        {
            let error = records_result.as_ref().err().map(ToString::to_string);
            tracing::warn!(
                target: "glimpse_obs",
                error = error.as_deref().unwrap_or("export failed"),
                dropped_log_records = o.dropped(),
                "log records dropped: the collector did not take them all"
            );
        }
        let dropped = pipeline.dropped_spans();
        if span_result.is_err() || dropped > 0 {
            // Reported in the log while the writer still runs: a collector
            // that does not answer is an operational fact, not a crash.
            let error = span_result.as_ref().err().map(ToString::to_string);
            tracing::warn!(
                target: "glimpse_obs",
                error = error.as_deref().unwrap_or("export failed"),
                dropped_spans = dropped,
                "spans dropped: the collector did not take them before shutdown"
            );
        }
        let metrics_result = metrics_pending.map(|(m, pending)| {
            let left = self.timeout.saturating_sub(start.elapsed());
            let result = m.finish_shutdown(pending, left);
            if let Err(e) = &result {
                tracing::warn!(
                    target: "glimpse_obs",
                    error = %e,
                    "the final OTLP metric export did not reach the collector"
                );
            }
            result
        });
        let left = self
            .timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(100));
        let logs_done = writer.shutdown(left);
        // Scrapes in flight may use what is left; a stalled scrape connection
        // is dropped then, and should the thread still not end, it is
        // detached rather than joined forever.
        let left = self.timeout.saturating_sub(start.elapsed());
        let _ = stop.send(left);
        let metrics_done =
            join_within(metrics_thread, left.saturating_add(THREAD_EXIT_SLACK)) == Some(true);
        span_result?;
        if let Some(Err(Error::ShutdownTimeout(t))) = metrics_result {
            return Err(Error::ShutdownTimeout(t));
        }
        // A failed log export is counted and reported above; only running
        // out of time fails the shutdown.
        let records_done = !matches!(records_result, Err(Error::ShutdownTimeout(_)));
        if logs_done && metrics_done && records_done {
            Ok(())
        } else {
            Err(Error::ShutdownTimeout(self.timeout))
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("glimpse_obs: {e}");
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

/// The pretty format's writer: lines into the same queue as JSON lines.
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
pub(crate) fn is_transport(target: &str) -> bool {
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

/// [`Telemetry::install`]: the globals, set once per process.
pub(crate) fn install(telemetry: Telemetry) -> Result<Guard, Error> {
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Err(Error::AlreadyInitialized);
    }
    match telemetry.install_globals() {
        Ok(()) => {
            let hook = PanicHook::install(telemetry.logs_to_stdout);
            Ok(Guard::new(telemetry.into_core(), Some(hook)))
        }
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
    /// The hook `install` replaced, put back when the guard drops.
    panic_hook: Option<PanicHook>,
}

/// The previous panic hook, as `std::panic::take_hook` returns it.
type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// The process's panic hook while a [`Guard`] of `install` lives: a panic
/// inside a request's handler is left to the tower layer (its site noted
/// for the access line); any other panic (a spawned task, a thread) is one
/// JSON ERROR line, target `glimpse_obs::panic`, instead of stderr text.
struct PanicHook {
    previous: Arc<Hook>,
}

/// Target of the line a panic outside a request logs.
pub(crate) const PANIC_TARGET: &str = "glimpse_obs::panic";

impl PanicHook {
    /// Set the hook. With a log writer of its own (tests), the previous
    /// hook still runs for panics outside requests, so a failing test's
    /// message is not only in the captured log.
    fn install(logs_to_stdout: bool) -> Self {
        let previous: Arc<Hook> = Arc::new(std::panic::take_hook());
        let chained = previous.clone();
        std::panic::set_hook(Box::new(move |info| {
            use crate::ids::panic::{PanicSite, is_catching, set_site};
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            let trace = std::backtrace::Backtrace::capture();
            let backtrace = (trace.status() == std::backtrace::BacktraceStatus::Captured)
                .then(|| trace.to_string());
            if is_catching() {
                set_site(PanicSite {
                    location,
                    backtrace,
                });
                return;
            }
            let message = info
                .payload_as_str()
                .unwrap_or_else(|| crate::ids::panic::payload_message(info.payload()));
            let thread = std::thread::current();
            tracing::error!(
                target: PANIC_TARGET,
                log_type = "system",
                "panic.message" = message,
                "panic.location" = location.as_deref(),
                "panic.backtrace" = backtrace.as_deref(),
                "thread.name" = thread.name(),
                "panic"
            );
            if !logs_to_stdout {
                chained(info);
            }
        }));
        Self { previous }
    }
}

impl Drop for PanicHook {
    fn drop(&mut self) {
        // `set_hook` panics on a panicking thread: the process is going
        // down then, and the hook may stay.
        if !std::thread::panicking() {
            let previous = self.previous.clone();
            std::panic::set_hook(Box::new(move |info| previous(info)));
        }
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("metrics_addr", &self.core.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl Guard {
    fn new(core: Core, panic_hook: Option<PanicHook>) -> Self {
        Self { core, panic_hook }
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

    /// The service's [`Health`](crate::health::Health): register readiness
    /// checks on it and mount [`Health::router`](crate::health::Health::router);
    /// the metrics listener serves `/health/live` and `/health/ready` from
    /// the same state. Its drain delay is `GLIMPSE_SHUTDOWN_DRAIN_MS`.
    ///
    /// ```
    /// let guard = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .init()?;
    /// let health = guard
    ///     .health()
    ///     .check("cache", std::time::Duration::from_millis(100), || async { Ok::<(), String>(()) });
    /// let app: axum::Router = axum::Router::new().merge(health.router());
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn health(&self) -> Health {
        self.core.health.clone()
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

    /// The current OpenMetrics text (with exemplars), as a scrape asking
    /// for `application/openmetrics-text` would see it.
    ///
    /// ```
    /// let guard = glimpse_obs::Config::default()
    ///     .metrics_addr(None)
    ///     .log_writer(std::io::sink())
    ///     .init()?;
    /// glimpse_obs::business::match_created();
    /// let text = guard.render_openmetrics();
    /// assert!(text.contains("# TYPE glimpse_matches_created counter"));
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn render_openmetrics(&self) -> String {
        exporter::render_openmetrics().unwrap_or_default()
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

    /// Wait until every log line emitted so far is written, every ended
    /// span is exported and (with OTLP metrics) the current metrics are
    /// exported, each up to `timeout`. Returns whether all finished.
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
        // Put the previous panic hook back once the log is flushed.
        let result = self.core.shutdown();
        drop(self.panic_hook);
        result
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

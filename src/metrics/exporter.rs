//! The Prometheus recorder and its scrape listener.

use std::{
    future::IntoFuture,
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{
    Router,
    http::{HeaderMap, header},
    response::IntoResponse,
    routing::get,
};
use metrics::{
    Key, KeyName, Metadata, SharedString, Unit, describe_counter, describe_gauge,
    describe_histogram,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::{exemplar::ExemplarRegistry, names, openmetrics, process::ProcessMetrics};
use crate::{Config, Error};

/// The exporter `install()` made the process's own: what
/// [`metrics_handler`] and the domain helpers' handle caches use. Set only
/// by the facade ([`install_global`]).
static INSTALLED: OnceLock<Arc<Exporter>> = OnceLock::new();

/// Money counters the `metrics` facade cannot hold, rendered after the
/// recorder's text (as is `process_cpu_seconds_total`, see
/// [`super::process`]).
const AMOUNT_COUNTERS: &[&super::amount_counter::AmountFamily] = &[&super::business::REVENUE];

/// The label keys `build_recorder` adds to every series.
const GLOBAL_LABEL_KEYS: &[&str] = &[names::labels::SERVICE, names::labels::ENV];

/// The `Content-Type` of the classic text format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histogram buckets are drained when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// One telemetry's Prometheus recorder and what renders alongside it.
pub(crate) struct Exporter {
    recorder: SharedRecorder,
    handle: PrometheusHandle,
    process: Option<ProcessMetrics>,
    /// `service="…",env="…"`, escaped: the recorder's global labels, for
    /// the series rendered outside the recorder.
    labels: String,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// A Prometheus recorder shared between the telemetry that built it and
/// whoever installs it (the global slot, a team's fan-out recorder, a
/// local-recorder scope): a clone records into the same series.
///
/// ```
/// let telemetry = glimpse_obs::Config::default()
///     .metrics_addr(None)
///     .log_writer(std::io::sink())
///     .build()?;
/// let recorder: glimpse_obs::metrics::SharedRecorder = telemetry.recorder();
/// metrics::with_local_recorder(&recorder, || metrics::counter!("jobs_total").increment(1));
/// assert!(telemetry.render_metrics().contains("jobs_total"));
/// # Ok::<(), glimpse_obs::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedRecorder(Arc<PrometheusRecorder>, Arc<ExemplarRegistry>);

impl SharedRecorder {
    /// The exemplar cells of this recorder's histograms, which the handle
    /// caches that record into it register with.
    pub(crate) fn exemplars(&self) -> &Arc<ExemplarRegistry> {
        &self.1
    }
}

impl std::fmt::Debug for SharedRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedRecorder")
    }
}

impl metrics::Recorder for SharedRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Counter {
        self.0.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Gauge {
        self.0.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Histogram {
        self.0.register_histogram(key, metadata)
    }
}

impl Exporter {
    /// A recorder for `config` with every metric described (HELP text and
    /// units) and `glimpse_build_info` set; installs nothing.
    pub(crate) fn new(config: &Config) -> Result<Self, Error> {
        let recorder = build_recorder(config)?;
        let handle = recorder.handle();
        let recorder = SharedRecorder(Arc::new(recorder), Arc::default());
        metrics::with_local_recorder(&recorder, || {
            describe_all();
            metrics::gauge!(names::BUILD_INFO, "version" => config.version.clone(), "glimpse_obs" => env!("CARGO_PKG_VERSION"))
                .set(1.0);
        });
        let process = config.process_metrics.then(|| {
            metrics::with_local_recorder(&recorder, || {
                let p = ProcessMetrics::new();
                p.collect();
                p
            })
        });
        Ok(Self {
            recorder,
            handle,
            process,
            labels: global_labels(config),
        })
    }

    /// The recorder, to install or to record into.
    pub(crate) fn recorder(&self) -> &SharedRecorder {
        &self.recorder
    }

    /// The text a scrape receives, with fresh process metrics: the one
    /// render path of the scrape listener, [`metrics_handler`],
    /// `render_metrics` and the `testing` snapshots.
    pub(crate) fn render(&self) -> String {
        // Gauges are set before the recorder renders; the CPU time, which
        // the facade's integer counters would cut to whole seconds, after it.
        let cpu = self
            .process
            .as_ref()
            .map(|p| metrics::with_local_recorder(&self.recorder, || p.collect()));
        let mut text = self.handle.render();
        if let Some(cpu) = cpu {
            cpu.render(&self.labels, &mut text);
        }
        for family in AMOUNT_COUNTERS {
            family.render(&self.labels, &mut text);
        }
        text
    }

    /// The OpenMetrics text of the same series as [`Exporter::render`],
    /// with the exemplars of the histogram buckets that have one.
    pub(crate) fn render_openmetrics(&self) -> String {
        let classic = self.render();
        self.recorder
            .exemplars()
            .with_index(|index| openmetrics::from_classic(&classic, index, GLOBAL_LABEL_KEYS))
    }

    /// The scrape text in the format `accept` asks for, and its
    /// `Content-Type`.
    pub(crate) fn render_for(&self, accept: Option<&str>) -> (&'static str, String) {
        if openmetrics::wanted(accept) {
            (openmetrics::CONTENT_TYPE, self.render_openmetrics())
        } else {
            (PROMETHEUS_CONTENT_TYPE, self.render())
        }
    }

    /// Drains histogram buckets; called periodically.
    fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

fn build_recorder(config: &Config) -> Result<PrometheusRecorder, Error> {
    let bad = |e: metrics_exporter_prometheus::BuildError| Error::InvalidConfig {
        name: "metrics buckets",
        reason: e.to_string(),
    };
    Ok(PrometheusBuilder::new()
        .add_global_label(names::labels::SERVICE, config.service.clone())
        .add_global_label(names::labels::ENV, config.environment.as_str())
        .set_buckets(super::LATENCY_BUCKETS)
        .map_err(bad)?
        .set_buckets_for_metric(
            Matcher::Full(names::HTTP_SERVER_REQUEST_DURATION.into()),
            super::HTTP_BUCKETS,
        )
        .map_err(bad)?
        .set_buckets_for_metric(
            Matcher::Full(names::WS_CONNECTION_DURATION.into()),
            super::CONNECTION_BUCKETS,
        )
        .map_err(bad)?
        .set_buckets_for_metric(
            Matcher::Full(names::HTTP_SERVER_REQUEST_BODY_SIZE.into()),
            super::BODY_SIZE_BUCKETS,
        )
        .map_err(bad)?
        .set_buckets_for_metric(
            Matcher::Full(names::HTTP_SERVER_RESPONSE_BODY_SIZE.into()),
            super::BODY_SIZE_BUCKETS,
        )
        .map_err(bad)?
        .build_recorder())
}

/// Make `exporter` the process's own (its recorder must be the global
/// one): [`metrics_handler`] renders it and the domain helpers start
/// caching handles. Called by the facade only, once.
pub(crate) fn install_global(exporter: Arc<Exporter>) {
    let _ = INSTALLED.set(exporter);
    super::handles::set_ready();
}

/// The installed exporter's text, `None` before `install()`.
pub(crate) fn render() -> Option<String> {
    INSTALLED.get().map(|e| e.render())
}

/// The installed exporter's OpenMetrics text, `None` before `install()`.
pub(crate) fn render_openmetrics() -> Option<String> {
    INSTALLED.get().map(|e| e.render_openmetrics())
}

/// The installed exporter's exemplar registry, for the handle caches that
/// record into the global recorder (the domain helpers, an unbound layer).
pub(crate) fn installed_exemplars() -> Option<&'static Arc<ExemplarRegistry>> {
    INSTALLED.get().map(|e| e.recorder.exemplars())
}

/// The global labels as `build_recorder` sets them, in the same order.
fn global_labels(config: &Config) -> String {
    use super::amount_counter::escape_label_value;
    let mut out = String::new();
    for (i, (key, value)) in [
        (names::labels::SERVICE, config.service.as_str()),
        (names::labels::ENV, config.environment.as_str()),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push_str("=\"");
        escape_label_value(value, &mut out);
        out.push('"');
    }
    out
}

/// An axum handler that serves the metrics, for teams that scrape the
/// application's own port instead of `GLIMPSE_METRICS_ADDR`: OpenMetrics
/// (with exemplars) when the `Accept` header asks for
/// `application/openmetrics-text`, the Prometheus text otherwise.
///
/// ```
/// use axum::{Router, routing::get};
/// let app: Router = Router::new().route("/metrics", get(glimpse_obs::metrics_handler));
/// ```
pub async fn metrics_handler(headers: HeaderMap) -> axum::response::Response {
    scrape_response(INSTALLED.get().map(|e| e.render_for(accept_of(&headers))))
}

/// The request's `Accept` header, when it is text.
fn accept_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

/// The scrape response for (content type, text), 503 when nothing is
/// installed.
fn scrape_response(text: Option<(&'static str, String)>) -> axum::response::Response {
    match text {
        Some((content_type, text)) => {
            ([(header::CONTENT_TYPE, content_type)], text).into_response()
        }
        None => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "glimpse_obs is not initialised: call glimpse_obs::init() first\n",
        )
            .into_response(),
    }
}

/// Bind the scrape listener now, so a busy port is an error at init.
pub(crate) fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
    let l =
        std::net::TcpListener::bind(addr).map_err(|source| Error::MetricsBind { addr, source })?;
    l.set_nonblocking(true)
        .map_err(|source| Error::MetricsBind { addr, source })?;
    Ok(l)
}

/// The background thread: serves scrapes (when a listener is given) and
/// runs histogram upkeep. Stops when `stop` delivers a grace period: scrapes
/// in flight get that long to finish, then their connections are dropped
/// (a client that never completes its request cannot keep the thread). The
/// thread returns whether every scrape finished within the grace period.
pub(crate) fn spawn(
    listener: Option<std::net::TcpListener>,
    exporter: Arc<Exporter>,
    stop: tokio::sync::oneshot::Receiver<Duration>,
    extra_routes: Router,
) -> Result<std::thread::JoinHandle<bool>, Error> {
    // A runtime of its own: init may run outside any runtime, and scrapes
    // must be answered even when the application's runtime is saturated.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            context: "starting the metrics runtime",
            source,
        })?;
    std::thread::Builder::new()
        .name("glimpse-metrics".into())
        .spawn(move || {
            let graceful = rt.block_on(async move {
                let upkeeper = exporter.clone();
                let upkeep_task = tokio::spawn(async move {
                    let mut tick = tokio::time::interval(UPKEEP_EVERY);
                    loop {
                        tick.tick().await;
                        upkeeper.upkeep();
                    }
                });
                let (grace_tx, grace_rx) = tokio::sync::oneshot::channel();
                let signal = async move {
                    // A sender dropped without a word means no grace.
                    let grace = stop.await.unwrap_or_default();
                    let _ = grace_tx.send(grace);
                };
                let graceful = match listener.map(tokio::net::TcpListener::from_std) {
                    Some(Ok(listener)) => {
                        let scrape = move |headers: HeaderMap| {
                            let exporter = exporter.clone();
                            async move {
                                scrape_response(Some(exporter.render_for(accept_of(&headers))))
                            }
                        };
                        let app = Router::new()
                            .route("/metrics", get(scrape.clone()))
                            .route("/", get(scrape))
                            .merge(extra_routes);
                        let serve = axum::serve(listener, app)
                            .with_graceful_shutdown(signal)
                            .into_future();
                        let grace_over = async {
                            match grace_rx.await {
                                Ok(grace) => tokio::time::sleep(grace).await,
                                Err(_) => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            _ = serve => true,
                            () = grace_over => false,
                        }
                    }
                    _ => {
                        signal.await;
                        true
                    }
                };
                upkeep_task.abort();
                graceful
            });
            // Dropping the runtime here drops any connection still open.
            drop(rt);
            graceful
        })
        .map_err(|source| Error::Io {
            context: "starting the metrics thread",
            source,
        })
}

fn describe_all() {
    use names::*;
    describe_histogram!(
        HTTP_SERVER_REQUEST_DURATION,
        Unit::Seconds,
        "Duration of HTTP server requests, by method, route template and status."
    );
    describe_counter!(
        HTTP_SERVER_PANICS,
        Unit::Count,
        "Handler panics answered with a 500, by route template."
    );
    describe_histogram!(
        HTTP_SERVER_REQUEST_BODY_SIZE,
        Unit::Bytes,
        "Size of HTTP server request bodies (Content-Length), by method and route template."
    );
    describe_histogram!(
        HTTP_SERVER_RESPONSE_BODY_SIZE,
        Unit::Bytes,
        "Size of HTTP server response bodies sent, by method and route template."
    );
    describe_gauge!(
        HTTP_SERVER_ACTIVE_REQUESTS,
        Unit::Count,
        "HTTP server requests in flight, by method and route template."
    );
    describe_histogram!(
        HTTP_CLIENT_REQUEST_DURATION,
        Unit::Seconds,
        "Duration of outbound HTTP calls, by method, peer host and status (code, or timeout/error/cancelled)."
    );
    describe_gauge!(
        WS_CONNECTIONS_ACTIVE,
        Unit::Count,
        "Open WebSocket connections, by channel."
    );
    describe_counter!(
        WS_MESSAGES,
        Unit::Count,
        "WebSocket messages, by channel and direction (sent/received)."
    );
    describe_histogram!(
        WS_CONNECTION_DURATION,
        Unit::Seconds,
        "Lifetime of WebSocket connections, by channel."
    );
    describe_histogram!(
        WS_MESSAGE_LATENCY,
        Unit::Seconds,
        "WebSocket message latency, by channel (KPI: under 100 ms)."
    );
    describe_counter!(
        WS_CLOSES,
        Unit::Count,
        "Closed WebSocket connections, by channel and close-code class."
    );
    describe_histogram!(
        DB_QUERY_DURATION,
        Unit::Seconds,
        "Duration of database operations, by operation name and outcome."
    );
    describe_counter!(
        DB_SLOW_QUERIES,
        Unit::Count,
        "Database operations slower than GLIMPSE_SLOW_QUERY_MS, by operation."
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        Unit::Count,
        "Database pool connections, by pool and state (in_use/idle)."
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS_MAX,
        Unit::Count,
        "Maximum size of the database pool, by pool."
    );
    describe_counter!(
        USER_REGISTRATIONS,
        Unit::Count,
        "User registrations, by method."
    );
    describe_counter!(MATCHES_CREATED, Unit::Count, "Matches created.");
    describe_counter!(MESSAGES_SENT, Unit::Count, "Chat messages sent, by kind.");
    describe_counter!(
        PAYMENTS,
        Unit::Count,
        "Payments processed, by status, provider and currency."
    );
    // PAYMENT_AMOUNT is a money counter outside the recorder; its HELP text
    // is in `business::REVENUE`.
    describe_counter!(
        PAYMENT_AMOUNT_REJECTED,
        Unit::Count,
        "Succeeded payments whose amount was not added to glimpse_payment_amount_total: the sum would have passed its top."
    );
    describe_counter!(FEATURE_USAGE, Unit::Count, "Feature uses, by feature.");
    describe_counter!(
        CONVERSIONS,
        Unit::Count,
        "Conversion funnel steps reached, by funnel and step."
    );
    describe_counter!(
        AUTH_FAILURES,
        Unit::Count,
        "Authentication failures, by reason."
    );
    describe_counter!(
        API_KEY_REQUESTS,
        Unit::Count,
        "Requests authenticated by API key, by key ID."
    );
    describe_counter!(ADMIN_ACTIONS, Unit::Count, "Admin actions, by action.");
    describe_counter!(
        CACHE_REQUESTS,
        Unit::Count,
        "Cache look-ups, by cache and result (hit/miss)."
    );
    describe_counter!(LOG_EVENTS, Unit::Count, "Log events emitted, by level.");
    describe_counter!(
        DROPPED,
        Unit::Count,
        "Telemetry dropped under overload or lost to a failed export, by signal (logs/spans/metrics_otlp)."
    );
    describe_counter!(
        LABEL_OVERFLOW,
        Unit::Count,
        "Label values folded into `other` by the cardinality guard, by metric."
    );
    describe_gauge!(
        BUILD_INFO,
        Unit::Count,
        "Always 1; labels carry the service and glimpse_obs versions."
    );
}

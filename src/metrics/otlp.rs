//! Metrics over OTLP, beside (or instead of) the Prometheus scrape
//! (`OTEL_METRICS_EXPORTER=otlp` or `prometheus,otlp`).
//!
//! The source is the scrape itself: every `OTEL_METRIC_EXPORT_INTERVAL`
//! (and at flush and shutdown) the worker renders the same classic text a
//! scrape receives ([`super::exporter::Exporter::render`]: the recorder's
//! series, then the self-rendered CPU-seconds and revenue counters) and
//! turns each family into an OTLP metric, so the two can never disagree:
//!
//! | Prometheus | OTLP |
//! |---|---|
//! | `counter` | monotonic `Sum` (cumulative, or delta on request) |
//! | `gauge`, untyped | `Gauge` |
//! | `histogram` (`_bucket`, `_sum`, `_count`) | `Histogram`: the `le` bounds but `+Inf` as `explicit_bounds`, per-bucket (not cumulative) counts with the `+Inf` bucket last, `sum`, `count` |
//! | labels (`service` and `env` included) | attributes |
//! | `# HELP` | description |
//!
//! Names are the scrape's (`glimpse_payment_amount_total`); units come
//! from the name (`_seconds` → `s`, `_bytes` → `By`), or are `1` for the
//! catalogue's other metrics. The resource is the traces' one.
//!
//! Delta temporality: each point is the change since the last successful
//! export of its series (a counter that went down restarted: its value is
//! the change). A failed export advances nothing, so the next one carries
//! the whole change; its points count in
//! `glimpse_obs_dropped_total{signal="metrics_otlp"}`.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{InstrumentationScope, KeyValue},
    metrics::v1::{
        AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
    },
    resource::v1::Resource,
};
use prost::Message as _;

use super::{exporter::Exporter, names};
use crate::{
    Config, Error, Temporality,
    otlp::{Destination, ExportRuntime, Signal, Transport, proto_resource, string_attribute},
};

/// The `signal` label of the points of failed exports.
pub(crate) const DROP_LABEL: &str = "metrics_otlp";

type Reply = std::sync::mpsc::SyncSender<Result<(), String>>;

enum Command {
    Export(Reply),
    Shutdown(Reply),
}

/// The periodic OTLP metric exporter of one telemetry.
pub(crate) struct OtlpMetrics {
    runtime: ExportRuntime,
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
    dropped: Arc<AtomicU64>,
    /// Set by the first shutdown.
    shut_down: Mutex<bool>,
}

impl std::fmt::Debug for OtlpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpMetrics")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// A shutdown under way: the final export runs while the caller does
/// other work.
pub(crate) struct PendingShutdown {
    reply: Option<std::sync::mpsc::Receiver<Result<(), String>>>,
}

impl OtlpMetrics {
    /// Start the exporter when `config` asks for OTLP metrics: on a private
    /// runtime, to the metrics destination (the specification's default
    /// collector on this host when none is configured).
    ///
    /// # Errors
    /// As [`Transport`]'s construction (an unreadable CA file, a bad URL);
    /// [`Error::Io`] when the export thread cannot start.
    pub(crate) fn start(config: &Config, exporter: Arc<Exporter>) -> Result<Option<Self>, Error> {
        if !config.export.metrics_exporters.otlp {
            return Ok(None);
        }
        let runtime = ExportRuntime::start()?;
        let destination = Destination::resolve_or_default(config, Signal::Metrics);
        let transport = Transport::to(&destination, &runtime)?;
        let (commands, rx) = tokio::sync::mpsc::unbounded_channel();
        let dropped = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            exporter,
            transport,
            commands: rx,
            encoder: Encoder::new(
                proto_resource(config),
                config.export.temporality,
                now_nanos(),
            ),
            interval: config.export.metric_export_interval,
            dropped: Arc::clone(&dropped),
        };
        runtime.handle().spawn(worker.run());
        Ok(Some(Self {
            runtime,
            commands,
            dropped,
            shut_down: Mutex::new(false),
        }))
    }

    /// Export the current values now, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::ShutdownTimeout`] when the export did not finish in time,
    /// [`Error::Export`] when it failed.
    pub(crate) fn force_flush(&self, timeout: Duration) -> Result<(), Error> {
        if *self.shut_down.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(());
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.commands.send(Command::Export(tx)).is_err() {
            return Ok(());
        }
        wait(Some(rx), timeout)
    }

    /// Start the final export and the worker's end; [`OtlpMetrics::finish_shutdown`]
    /// waits for them. A second call returns a no-op.
    pub(crate) fn begin_shutdown(&self) -> PendingShutdown {
        let mut done = self.shut_down.lock().unwrap_or_else(|e| e.into_inner());
        if *done {
            return PendingShutdown { reply: None };
        }
        *done = true;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let reply = self.commands.send(Command::Shutdown(tx)).ok().map(|()| rx);
        PendingShutdown { reply }
    }

    /// Wait at most `timeout` for the final export, then stop the runtime
    /// (cancelling an export still in flight).
    ///
    /// # Errors
    /// As [`OtlpMetrics::force_flush`].
    pub(crate) fn finish_shutdown(
        &self,
        pending: PendingShutdown,
        timeout: Duration,
    ) -> Result<(), Error> {
        let result = wait(pending.reply, timeout);
        self.runtime.stop();
        result
    }

    /// Final export and stop, within `timeout`.
    ///
    /// # Errors
    /// As [`OtlpMetrics::force_flush`].
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let pending = self.begin_shutdown();
        self.finish_shutdown(pending, timeout)
    }

    /// Data points of failed exports so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for OtlpMetrics {
    fn drop(&mut self) {
        let _ = self.shutdown(Duration::from_secs(1));
    }
}

fn wait(
    reply: Option<std::sync::mpsc::Receiver<Result<(), String>>>,
    timeout: Duration,
) -> Result<(), Error> {
    let Some(rx) = reply else {
        return Ok(());
    };
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Export(e)),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::ShutdownTimeout(timeout)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Ok(()),
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

struct Worker {
    exporter: Arc<Exporter>,
    transport: Transport,
    commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    encoder: Encoder,
    interval: Duration,
    dropped: Arc<AtomicU64>,
}

impl Worker {
    async fn run(mut self) {
        let start = tokio::time::Instant::now() + self.interval;
        let mut tick = tokio::time::interval_at(start, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Export(reply)) => {
                        let result = self.export().await;
                        let _ = reply.send(result);
                    }
                    Some(Command::Shutdown(reply)) => {
                        let result = self.export().await;
                        let _ = reply.send(result);
                        return;
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    let _ = self.export().await;
                }
            }
        }
    }

    async fn export(&mut self) -> Result<(), String> {
        let text = self.exporter.render();
        let now = now_nanos();
        let (request, next, points) = self.encoder.encode(&text, now);
        let body = Bytes::from(request.encode_to_vec());
        match self.transport.export(body).await {
            Ok(()) => {
                self.encoder.commit(next, now);
                Ok(())
            }
            Err(e) => {
                self.dropped.fetch_add(points as u64, Ordering::Relaxed);
                metrics::with_local_recorder(self.exporter.recorder(), || {
                    metrics::counter!(names::DROPPED, names::labels::SIGNAL => DROP_LABEL)
                        .increment(points as u64);
                });
                Err(e.to_string())
            }
        }
    }
}

/// The values of the previous successful export, per series (delta).
#[derive(Debug, Default, Clone)]
pub(crate) struct Baseline {
    counters: HashMap<String, f64>,
    histograms: HashMap<String, (Vec<u64>, f64, u64)>,
}

/// Turns scrape text into OTLP requests.
pub(crate) struct Encoder {
    resource: Resource,
    temporality: Temporality,
    /// The exporter's start: the start time of cumulative points.
    start: u64,
    /// The previous successful export's time and values (delta).
    last: u64,
    baseline: Baseline,
}

impl Encoder {
    pub(crate) fn new(resource: Resource, temporality: Temporality, start: u64) -> Self {
        Self {
            resource,
            temporality,
            start,
            last: start,
            baseline: Baseline::default(),
        }
    }

    /// The request for `text` at `now`, the baseline to commit when it is
    /// delivered, and its number of data points.
    pub(crate) fn encode(
        &self,
        text: &str,
        now: u64,
    ) -> (ExportMetricsServiceRequest, Baseline, usize) {
        let delta = self.temporality == Temporality::Delta;
        let mut next = Baseline::default();
        let mut points = 0;
        let start = if delta { self.last } else { self.start };
        let temporality = if delta {
            AggregationTemporality::Delta
        } else {
            AggregationTemporality::Cumulative
        } as i32;
        let mut metrics = Vec::new();
        for family in parse(text) {
            let data = match family.kind {
                Kind::Counter => {
                    let data_points = family
                        .samples
                        .iter()
                        .filter(|s| s.suffix.is_empty())
                        .map(|s| {
                            let key = series_key(&family.name, &s.labels);
                            let value = if delta {
                                let before = self.baseline.counters.get(&key).copied();
                                match before {
                                    Some(b) if s.value >= b => s.value - b,
                                    _ => s.value,
                                }
                            } else {
                                s.value
                            };
                            next.counters.insert(key, s.value);
                            number_point(&s.labels, start, now, value, s.integer)
                        })
                        .collect::<Vec<_>>();
                    points += data_points.len();
                    metric::Data::Sum(Sum {
                        data_points,
                        aggregation_temporality: temporality,
                        is_monotonic: true,
                    })
                }
                Kind::Gauge => {
                    let data_points = family
                        .samples
                        .iter()
                        .map(|s| number_point(&s.labels, 0, now, s.value, s.integer))
                        .collect::<Vec<_>>();
                    points += data_points.len();
                    metric::Data::Gauge(Gauge { data_points })
                }
                Kind::Histogram => {
                    let data_points = histogram_points(&family, |labels, series| {
                        let key = series_key(&family.name, labels);
                        let per_bucket = per_bucket(&series.cumulative);
                        let (buckets, sum, count) = if delta {
                            match self.baseline.histograms.get(&key) {
                                Some((b, s, c))
                                    if series.count >= *c && b.len() == per_bucket.len() =>
                                {
                                    (
                                        per_bucket
                                            .iter()
                                            .zip(b)
                                            .map(|(now, before)| now.saturating_sub(*before))
                                            .collect(),
                                        series.sum - s,
                                        series.count - c,
                                    )
                                }
                                _ => (per_bucket.clone(), series.sum, series.count),
                            }
                        } else {
                            (per_bucket.clone(), series.sum, series.count)
                        };
                        next.histograms
                            .insert(key, (per_bucket, series.sum, series.count));
                        HistogramDataPoint {
                            attributes: attributes(labels),
                            start_time_unix_nano: start,
                            time_unix_nano: now,
                            count,
                            sum: Some(sum),
                            bucket_counts: buckets,
                            explicit_bounds: series.bounds.clone(),
                            exemplars: Vec::new(),
                            flags: 0,
                            min: None,
                            max: None,
                        }
                    });
                    points += data_points.len();
                    metric::Data::Histogram(Histogram {
                        data_points,
                        aggregation_temporality: temporality,
                    })
                }
            };
            metrics.push(Metric {
                unit: unit_of(&family.name).to_owned(),
                description: family.help.clone(),
                name: family.name,
                metadata: Vec::new(),
                data: Some(data),
            });
        }
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "glimpse_obs".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        attributes: Vec::new(),
                        dropped_attributes_count: 0,
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        (request, next, points)
    }

    /// The export of `encode`'s request at `now` succeeded.
    pub(crate) fn commit(&mut self, next: Baseline, now: u64) {
        self.baseline = next;
        self.last = now;
    }
}

fn number_point(
    labels: &[(String, String)],
    start: u64,
    now: u64,
    value: f64,
    integer: bool,
) -> NumberDataPoint {
    // Whole values the scrape wrote as integers stay integers.
    let value = if integer && value.fract() == 0.0 && value.abs() < 9.0e15 {
        number_data_point::Value::AsInt(value as i64)
    } else {
        number_data_point::Value::AsDouble(value)
    };
    NumberDataPoint {
        attributes: attributes(labels),
        start_time_unix_nano: start,
        time_unix_nano: now,
        exemplars: Vec::new(),
        flags: 0,
        value: Some(value),
    }
}

fn attributes(labels: &[(String, String)]) -> Vec<KeyValue> {
    labels.iter().map(|(k, v)| string_attribute(k, v)).collect()
}

fn series_key(name: &str, labels: &[(String, String)]) -> String {
    let mut key = String::from(name);
    for (k, v) in labels {
        key.push('\u{1}');
        key.push_str(k);
        key.push('\u{2}');
        key.push_str(v);
    }
    key
}

/// Cumulative bucket counts (the `le` order, `+Inf` last) to per-bucket ones.
fn per_bucket(cumulative: &[u64]) -> Vec<u64> {
    let mut previous = 0;
    cumulative
        .iter()
        .map(|&c| {
            let n = c.saturating_sub(previous);
            previous = c;
            n
        })
        .collect()
}

/// The unit of a family: from its name, else `1` for the catalogue's.
fn unit_of(name: &str) -> &'static str {
    let base = name.strip_suffix("_total").unwrap_or(name);
    if base.ends_with("_seconds") {
        "s"
    } else if base.ends_with("_bytes") {
        "By"
    } else if base.ends_with("_ratio")
        || names::ALL.contains(&name)
        || names::PROCESS.contains(&name)
    {
        "1"
    } else {
        ""
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: Kind,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    /// `_bucket`, `_sum`, `_count` of a histogram, else empty.
    suffix: &'static str,
    labels: Vec<(String, String)>,
    value: f64,
    /// Written without a fraction or exponent.
    integer: bool,
}

/// One histogram series gathered from its lines.
#[derive(Debug, Default)]
struct HistogramSeries {
    bounds: Vec<f64>,
    cumulative: Vec<u64>,
    sum: f64,
    count: u64,
}

/// The histogram series of `family`, in order of appearance, mapped by `f`.
fn histogram_points<T>(
    family: &Family,
    mut f: impl FnMut(&[(String, String)], &HistogramSeries) -> T,
) -> Vec<T> {
    let mut order: Vec<Vec<(String, String)>> = Vec::new();
    let mut series: HashMap<Vec<(String, String)>, HistogramSeries> = HashMap::new();
    for s in &family.samples {
        let mut labels = s.labels.clone();
        let le = labels
            .iter()
            .position(|(k, _)| k == "le")
            .map(|i| labels.remove(i).1);
        let entry = series.entry(labels.clone()).or_insert_with(|| {
            order.push(labels);
            HistogramSeries::default()
        });
        match (s.suffix, le) {
            ("_bucket", Some(le)) => {
                let bound: f64 = le.parse().unwrap_or(f64::INFINITY);
                if bound.is_finite() {
                    entry.bounds.push(bound);
                }
                entry.cumulative.push(s.value as u64);
            }
            ("_sum", _) => entry.sum = s.value,
            ("_count", _) => entry.count = s.value as u64,
            _ => {}
        }
    }
    order
        .iter()
        .filter_map(|labels| series.get(labels).map(|s| f(labels, s)))
        .collect()
}

/// The families of a classic Prometheus text, in order; lines that do not
/// parse are skipped.
fn parse(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    let mut help: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name.to_owned(), unescape_help(text)));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let kind = match ty.trim() {
                "counter" => Kind::Counter,
                "histogram" => Kind::Histogram,
                _ => Kind::Gauge,
            };
            let help = match help.take() {
                Some((h, text)) if h == name => text,
                _ => String::new(),
            };
            families.push(Family {
                name: name.to_owned(),
                help,
                kind,
                samples: Vec::new(),
            });
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = parse_sample(line) else {
            continue;
        };
        let fits = |f: &Family| match f.kind {
            Kind::Histogram => name
                .strip_prefix(f.name.as_str())
                .is_some_and(|s| matches!(s, "_bucket" | "_sum" | "_count")),
            _ => name == f.name,
        };
        if !families.last().is_some_and(fits) {
            // A sample without its TYPE line: an untyped gauge of its own.
            families.push(Family {
                name: name.to_owned(),
                help: String::new(),
                kind: Kind::Gauge,
                samples: Vec::new(),
            });
        }
        let Some(family) = families.last_mut() else {
            continue;
        };
        let suffix = match (family.kind, name.strip_prefix(family.name.as_str())) {
            (Kind::Histogram, Some("_bucket")) => "_bucket",
            (Kind::Histogram, Some("_sum")) => "_sum",
            (Kind::Histogram, Some("_count")) => "_count",
            _ => "",
        };
        let integer = !value.contains(['.', 'e', 'E', 'n', 'N', 'i', 'I']);
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        family.samples.push(Sample {
            suffix,
            labels,
            value,
            integer,
        });
    }
    families
}

/// Label pairs in the order written.
type Labels = Vec<(String, String)>;

/// `name{k="v",...} value` (an optional timestamp is ignored).
fn parse_sample(line: &str) -> Option<(&str, Labels, &str)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = Vec::new();
    let rest = if line[name_end..].starts_with('{') {
        let mut chars = line[name_end + 1..].char_indices();
        let base = name_end + 1;
        let end;
        loop {
            // Skip separators, find a key or the closing brace.
            let (i, c) = chars.next()?;
            if c == '}' {
                end = base + i + 1;
                break;
            }
            if c == ',' || c == ' ' {
                continue;
            }
            let key_start = i;
            let mut key_end = i;
            for (j, c) in chars.by_ref() {
                if c == '=' {
                    key_end = j;
                    break;
                }
            }
            let key = line[base + key_start..base + key_end].trim().to_owned();
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    other => value.push(other),
                }
            }
            labels.push((key, value));
        }
        &line[end..]
    } else {
        &line[name_end..]
    };
    let value = rest.split_whitespace().next()?;
    Some((name, labels, value))
}

fn unescape_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP jobs_total Jobs done.
# TYPE jobs_total counter
jobs_total{service=\"s\",env=\"development\",kind=\"a \\\"quoted\\\" \\\\ one\"} 3
jobs_total{service=\"s\",env=\"development\",kind=\"b\"} 5

# TYPE queue_depth gauge
queue_depth{service=\"s\"} 2.5

# HELP req_seconds Request time.
# TYPE req_seconds histogram
req_seconds_bucket{route=\"/a\",le=\"0.1\"} 1
req_seconds_bucket{route=\"/a\",le=\"0.5\"} 3
req_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4
req_seconds_sum{route=\"/a\"} 1.25
req_seconds_count{route=\"/a\"} 4

# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total{service=\"s\"} 0.42
";

    fn data(req: &ExportMetricsServiceRequest, name: &str) -> metric::Data {
        req.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.data.clone())
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn every_family_becomes_its_otlp_metric() {
        let enc = Encoder::new(Resource::default(), Temporality::Cumulative, 10);
        let (req, _, points) = enc.encode(TEXT, 20);
        assert_eq!(points, 5);
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "jobs_total",
                "queue_depth",
                "req_seconds",
                "process_cpu_seconds_total"
            ]
        );
        assert_eq!(metrics[0].description, "Jobs done.");
        assert_eq!(metrics[2].unit, "s");
        let metric::Data::Sum(sum) = data(&req, "jobs_total") else {
            panic!()
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let p = &sum.data_points[0];
        assert_eq!(p.value, Some(number_data_point::Value::AsInt(3)));
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (10, 20));
        let kind = p.attributes.iter().find(|a| a.key == "kind").unwrap();
        assert_eq!(
            kind.value.as_ref().unwrap().value,
            Some(
                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                    "a \"quoted\" \\ one".to_owned()
                )
            )
        );
        let metric::Data::Gauge(g) = data(&req, "queue_depth") else {
            panic!()
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(2.5))
        );
        let metric::Data::Histogram(h) = data(&req, "req_seconds") else {
            panic!()
        };
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds, [0.1, 0.5]);
        assert_eq!(p.bucket_counts, [1, 2, 1], "per bucket, +Inf last");
        assert_eq!((p.sum, p.count), (Some(1.25), 4));
        assert_eq!(p.attributes.len(), 1, "le is not an attribute");
        let metric::Data::Sum(cpu) = data(&req, "process_cpu_seconds_total") else {
            panic!()
        };
        assert_eq!(
            cpu.data_points[0].value,
            Some(number_data_point::Value::AsDouble(0.42))
        );
    }

    #[test]
    fn delta_is_the_change_since_the_last_delivered_export() {
        let mut enc = Encoder::new(Resource::default(), Temporality::Delta, 10);
        let (_, next, _) = enc.encode(TEXT, 20);
        enc.commit(next, 20);
        let later = TEXT
            .replace("kind=\"b\"} 5", "kind=\"b\"} 9")
            .replace("le=\"+Inf\"} 4", "le=\"+Inf\"} 6")
            .replace("_sum{route=\"/a\"} 1.25", "_sum{route=\"/a\"} 2.25")
            .replace("_count{route=\"/a\"} 4", "_count{route=\"/a\"} 6");
        assert_ne!(later, TEXT);
        let (req, next, _) = enc.encode(&later, 30);
        let metric::Data::Sum(sum) = data(&req, "jobs_total") else {
            panic!()
        };
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Delta as i32
        );
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(0))
        );
        assert_eq!(
            sum.data_points[1].value,
            Some(number_data_point::Value::AsInt(4))
        );
        assert_eq!(sum.data_points[1].start_time_unix_nano, 20);
        let metric::Data::Histogram(h) = data(&req, "req_seconds") else {
            panic!()
        };
        assert_eq!(h.data_points[0].bucket_counts, [0, 0, 2]);
        assert_eq!(
            (h.data_points[0].sum, h.data_points[0].count),
            (Some(1.0), 2)
        );
        // Not committed (the export failed): the next delta covers both.
        let (req, _, _) = enc.encode(&later, 40);
        let metric::Data::Sum(sum) = data(&req, "jobs_total") else {
            panic!()
        };
        assert_eq!(
            sum.data_points[1].value,
            Some(number_data_point::Value::AsInt(4))
        );
        assert_eq!(sum.data_points[1].start_time_unix_nano, 20);
        drop(next);
    }

    #[test]
    fn malformed_lines_are_skipped_not_a_panic() {
        let text = "# TYPE a counter\na{x=\"unterminated} 1\na{y=\"ok\"} 2\nb 3 1700000000\n{} 1\nc{x} 2\n";
        let fams = parse(text);
        assert_eq!(fams[0].samples.len(), 1);
        assert_eq!(fams[1].name, "b");
        assert_eq!(fams[1].samples[0].value, 3.0);
    }

    #[test]
    fn units_come_from_the_name_or_the_catalogue() {
        assert_eq!(unit_of("http_server_request_duration_seconds"), "s");
        assert_eq!(unit_of("process_cpu_seconds_total"), "s");
        assert_eq!(unit_of("process_resident_memory_bytes"), "By");
        assert_eq!(unit_of(names::MATCHES_CREATED), "1");
        assert_eq!(unit_of("my_own_thing"), "");
    }
}

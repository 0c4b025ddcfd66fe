//! Metrics over OTLP against real receivers (gRPC and HTTP): every metric
//! the scrape shows arrives with the same name, kind, attributes and value
//! (histograms with their bucket bounds, the revenue and CPU-seconds
//! counters included), with the traces' resource; delta temporality sends
//! the change since the previous export; `OTEL_METRICS_EXPORTER` without
//! `prometheus` means no scrape listener, `none` neither; a black-holed
//! collector costs requests nothing, keeps memory flat, counts its drops and
//! does not hold shutdown up.

mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use axum::{Router, body::Body, http::Request, routing::get};
use glimpse_obs::{
    Config, Environment,
    business::{self, PaymentStatus},
};
use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    metrics::v1::{AggregationTemporality, Metric, metric::Data, number_data_point},
};
use support::{
    otlp_metrics_receiver::{MetricsReceiver, attrs, kind, metric, metrics, resource_attr},
    otlp_receiver::{black_hole, closed_port},
};
use tower::ServiceExt as _;

/// The tests of this file run one at a time: the memory check reads the
/// process's resident size.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `(name, sorted labels)` → value, from a classic Prometheus text; and
/// each family's type.
#[derive(Debug, Default)]
struct Scrape {
    values: BTreeMap<(String, Vec<(String, String)>), f64>,
    types: BTreeMap<String, String>,
}

fn parse_scrape(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap();
            scrape.types.insert(name.to_owned(), ty.to_owned());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut pairs: Vec<(String, String)> = labels
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once("=\"").unwrap();
                (k.to_owned(), v.trim_end_matches('"').to_owned())
            })
            .collect();
        pairs.sort();
        scrape
            .values
            .insert((name.to_owned(), pairs), value.parse().unwrap());
    }
    scrape
}

fn number(p: &number_data_point::Value) -> f64 {
    match p {
        number_data_point::Value::AsInt(i) => *i as f64,
        number_data_point::Value::AsDouble(d) => *d,
    }
}

/// `(name, sorted attributes)` → value of every number point of `req`,
/// and every histogram point as (bounds, cumulative counts, sum, count).
type NumberPoints = BTreeMap<(String, Vec<(String, String)>), f64>;
type HistogramPoints = BTreeMap<(String, Vec<(String, String)>), (Vec<f64>, Vec<u64>, f64, u64)>;

fn otlp_points(req: &ExportMetricsServiceRequest) -> (NumberPoints, HistogramPoints) {
    let mut numbers = BTreeMap::new();
    let mut histograms = BTreeMap::new();
    for m in metrics(req) {
        match m.data {
            Some(Data::Sum(s)) => {
                for p in s.data_points {
                    numbers.insert(
                        (m.name.clone(), attrs(&p.attributes)),
                        number(p.value.as_ref().unwrap()),
                    );
                }
            }
            Some(Data::Gauge(g)) => {
                for p in g.data_points {
                    numbers.insert(
                        (m.name.clone(), attrs(&p.attributes)),
                        number(p.value.as_ref().unwrap()),
                    );
                }
            }
            Some(Data::Histogram(h)) => {
                for p in h.data_points {
                    let mut total = 0;
                    let cumulative = p
                        .bucket_counts
                        .iter()
                        .map(|c| {
                            total += c;
                            total
                        })
                        .collect();
                    histograms.insert(
                        (m.name.clone(), attrs(&p.attributes)),
                        (
                            p.explicit_bounds.clone(),
                            cumulative,
                            p.sum.unwrap(),
                            p.count,
                        ),
                    );
                }
            }
            _ => panic!("unexpected data in {}", m.name),
        }
    }
    (numbers, histograms)
}

/// Values that move on their own between two scrapes (the operating
/// system's, the runtime sampler's).
fn moves_by_itself(name: &str) -> bool {
    name.starts_with("process_") || name.starts_with("tokio_")
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn app() -> Router {
    Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .route(
            "/boom",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
}

async fn call(app: &Router, uri: &str) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scraped_metric_arrives_over_grpc_with_the_scraped_value() {
    let _serial = SERIAL.lock().await;
    let receiver = MetricsReceiver::grpc().await;
    // Metrics only: the receiver has no trace service.
    let guard = from_env(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", receiver.endpoint())])
        .service("payment")
        .version("1.2.3")
        .environment(Environment::Staging)
        .metrics_addr(Some(([127, 0, 0, 1], 0).into()))
        .metrics_otlp(true)
        .metric_export_interval(Duration::from_secs(3600))
        .init()
        .unwrap();
    let addr = guard
        .metrics_addr()
        .expect("prometheus,otlp keeps the scrape");

    // Something of every kind: HTTP histograms and gauges, business
    // counters with the revenue, the database histogram, WebSocket metrics,
    // cache and security counters, log events; process and runtime metrics
    // come by themselves.
    let app = app().layer(glimpse_obs::layer());
    for uri in ["/items/1", "/items/2", "/boom"] {
        call(&app, uri).await;
    }
    business::payment_processed("stripe", "EUR", 1699, PaymentStatus::Succeeded);
    business::match_created();
    business::feature_used("search");
    glimpse_obs::cache::hit("profiles");
    glimpse_obs::security::auth_failed("bad_password");
    let _: Result<(), String> = glimpse_obs::db::query("select_user", async { Ok(()) }).await;
    let ws = glimpse_obs::ws::Connection::open("chat");
    ws.sent();
    ws.latency(Duration::from_millis(12));
    ws.close(Some(1000));
    tracing::info!("a line for glimpse_log_events_total");

    let before = parse_scrape(&scrape(addr).await);
    assert!(
        guard.flush(Duration::from_secs(10)),
        "the flush exports metrics"
    );
    let after = parse_scrape(&scrape(addr).await);
    let req = receiver.store.latest().expect("an export on flush");

    // The resource of the traces.
    assert_eq!(
        resource_attr(&req, "service.name").as_deref(),
        Some("payment")
    );
    assert_eq!(
        resource_attr(&req, "service.version").as_deref(),
        Some("1.2.3")
    );
    assert_eq!(
        resource_attr(&req, "deployment.environment.name").as_deref(),
        Some("staging")
    );

    // Every family of the scrape, with its kind.
    assert!(after.types.len() >= 25, "{} families", after.types.len());
    for (name, ty) in &after.types {
        let m = metric(&req, name).unwrap_or_else(|| panic!("{name} did not arrive"));
        let expected = match ty.as_str() {
            "counter" => "sum",
            "histogram" => "histogram",
            _ => "gauge",
        };
        assert_eq!(kind(&m), expected, "{name}");
        if let Some(Data::Sum(s)) = &m.data {
            assert!(s.is_monotonic, "{name}");
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
        }
    }
    for name in [
        "http_server_request_duration_seconds",
        "glimpse_payment_amount_total",
        "glimpse_payments_total",
        "db_query_duration_seconds",
        "process_cpu_seconds_total",
        "glimpse_build_info",
    ] {
        assert!(
            after.types.contains_key(name),
            "{name} missing from the scrape"
        );
    }

    // Every number series with the scraped value.
    let (numbers, histograms) = otlp_points(&req);
    for ((name, labels), value) in &after.values {
        let family = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .filter(|f| after.types.get(*f).is_some_and(|t| t == "histogram"));
        if family.is_some() {
            continue;
        }
        let got = numbers
            .get(&(name.clone(), labels.clone()))
            .unwrap_or_else(|| panic!("{name}{labels:?} did not arrive"));
        let earlier = before.values.get(&(name.clone(), labels.clone()));
        if moves_by_itself(name) {
            let earlier = earlier.copied().unwrap_or(*value);
            let (lo, hi) = (earlier.min(*value), earlier.max(*value));
            let slack = if name.ends_with("_total") {
                0.0
            } else {
                hi * 0.1 + 16.0
            };
            assert!(
                *got >= lo - slack && *got <= hi + slack,
                "{name}{labels:?}: {got} outside the scrapes {lo}..{hi}"
            );
        } else {
            assert_eq!(earlier, Some(value), "{name} moved between the scrapes");
            assert_eq!(got, value, "{name}{labels:?}");
        }
    }

    // Every histogram series with its buckets, sum and count.
    let mut checked = 0;
    for ((name, labels), (bounds, cumulative, sum, count)) in &histograms {
        let scraped = |suffix: &str, extra: Option<(&str, String)>| {
            let mut l = labels.clone();
            if let Some((k, v)) = extra {
                l.push((k.to_owned(), v));
                l.sort();
            }
            after.values.get(&(format!("{name}{suffix}"), l)).copied()
        };
        assert_eq!(scraped("_sum", None), Some(*sum), "{name}{labels:?} sum");
        assert_eq!(scraped("_count", None), Some(*count as f64), "{name} count");
        assert_eq!(
            cumulative.len(),
            bounds.len() + 1,
            "{name}: +Inf bucket last"
        );
        for (i, c) in cumulative.iter().enumerate() {
            let le = bounds.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            assert_eq!(
                scraped("_bucket", Some(("le", le.clone()))),
                Some(*c as f64),
                "{name}{labels:?} le={le}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 3, "HTTP, db and WebSocket histograms: {checked}");

    // The HTTP histogram keeps the crate's buckets; the revenue and CPU
    // counters are doubles with their fractions.
    let http = metric(&req, "http_server_request_duration_seconds").unwrap();
    assert_eq!(http.unit, "s");
    let Some(Data::Histogram(h)) = &http.data else {
        panic!()
    };
    assert_eq!(
        h.data_points[0].explicit_bounds,
        glimpse_obs::metrics::HTTP_BUCKETS
    );
    let revenue = metric(&req, "glimpse_payment_amount_total").unwrap();
    let Some(Data::Sum(s)) = &revenue.data else {
        panic!()
    };
    assert_eq!(
        s.data_points[0].value,
        Some(number_data_point::Value::AsDouble(16.99))
    );
    let cpu = metric(&req, "process_cpu_seconds_total").unwrap();
    assert_eq!(cpu.unit, "s");
    assert!(matches!(cpu.data, Some(Data::Sum(ref s)) if s.is_monotonic));
    guard.shutdown().unwrap();
    assert!(
        receiver.store.requests().len() >= 2,
        "a final export at shutdown"
    );
}

fn from_env(pairs: &[(&str, String)]) -> Config {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    Config::from_lookup(move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap()
    .log_writer(std::io::sink())
}

fn sum_value(m: &Metric, labels_contain: (&str, &str)) -> (f64, u64, u64) {
    let Some(Data::Sum(s)) = &m.data else {
        panic!("{} is not a sum", m.name)
    };
    let p = s
        .data_points
        .iter()
        .find(|p| {
            attrs(&p.attributes)
                .iter()
                .any(|(k, v)| k == labels_contain.0 && v == labels_contain.1)
        })
        .unwrap();
    (
        number(p.value.as_ref().unwrap()),
        p.start_time_unix_nano,
        p.time_unix_nano,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_temporality_over_http_sends_the_change_since_the_last_export() {
    let _serial = SERIAL.lock().await;
    let receiver = MetricsReceiver::http().await;
    let telemetry = from_env(&[
        ("OTEL_METRICS_EXPORTER", "otlp".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            format!("{}/v1/metrics", receiver.endpoint()),
        ),
        (
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "http/protobuf".to_owned(),
        ),
        (
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "delta".to_owned(),
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL", "3600000".to_owned()),
        ("GLIMPSE_METRICS_ADDR", "127.0.0.1:0".to_owned()),
    ])
    .build()
    .unwrap();
    assert_eq!(
        telemetry.metrics_addr(),
        None,
        "OTEL_METRICS_EXPORTER=otlp: no scrape listener"
    );
    let recorder = telemetry.recorder();
    let record = |jobs: u64, latency: f64| {
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("jobs_total", "queue" => "mail").increment(jobs);
            metrics::histogram!("job_seconds", "queue" => "mail").record(latency);
        });
    };
    record(3, 0.02);
    assert!(telemetry.flush(Duration::from_secs(5)));
    record(2, 2.0);
    record(0, 0.02);
    assert!(telemetry.flush(Duration::from_secs(5)));
    let requests = receiver.store.requests();
    assert_eq!(requests.len(), 2);
    let first = metric(&requests[0], "jobs_total").unwrap();
    let second = metric(&requests[1], "jobs_total").unwrap();
    let (v1, start1, t1) = sum_value(&first, ("queue", "mail"));
    let (v2, start2, t2) = sum_value(&second, ("queue", "mail"));
    assert_eq!((v1, v2), (3.0, 2.0));
    assert!(
        start1 < t1 && start2 == t1 && t1 < t2,
        "{start1} {t1} {start2} {t2}"
    );
    let Some(Data::Sum(s)) = &second.data else {
        panic!()
    };
    assert_eq!(
        s.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    let Some(Data::Histogram(h)) = metric(&requests[1], "job_seconds").unwrap().data else {
        panic!()
    };
    let p = &h.data_points[0];
    assert_eq!(p.count, 2, "two observations since the first export");
    assert!((p.sum.unwrap() - 2.02).abs() < 1e-9, "{:?}", p.sum);
    assert_eq!(p.bucket_counts.iter().sum::<u64>(), 2);
    assert_eq!(p.explicit_bounds, glimpse_obs::metrics::LATENCY_BUCKETS);
    // The scrape text still holds the totals.
    let text = telemetry.render_metrics();
    assert!(
        text.contains("jobs_total{") && text.contains("} 5"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exported_every_interval() {
    let _serial = SERIAL.lock().await;
    let receiver = MetricsReceiver::grpc().await;
    let telemetry = from_env(&[
        ("OTEL_METRICS_EXPORTER", "prometheus,otlp".to_owned()),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", receiver.endpoint()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100".to_owned()),
        ("GLIMPSE_METRICS_ADDR", "127.0.0.1:0".to_owned()),
    ])
    .build()
    .unwrap();
    assert!(telemetry.metrics_addr().is_some(), "prometheus stays");
    assert!(receiver.store.wait_for(3, Duration::from_secs(5)).await);
    let req = receiver.store.latest().unwrap();
    assert!(metric(&req, "glimpse_build_info").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_means_no_scrape_listener_and_no_export() {
    let _serial = SERIAL.lock().await;
    let receiver = MetricsReceiver::grpc().await;
    let telemetry = from_env(&[
        ("OTEL_METRICS_EXPORTER", "none".to_owned()),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", receiver.endpoint()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "50".to_owned()),
        ("GLIMPSE_METRICS_ADDR", "127.0.0.1:0".to_owned()),
    ])
    .build()
    .unwrap();
    assert_eq!(telemetry.metrics_addr(), None);
    assert!(telemetry.flush(Duration::from_secs(2)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.store.requests().is_empty());
    // The recorder still records (render_metrics, metrics_handler).
    assert!(telemetry.render_metrics().contains("glimpse_build_info"));
}

#[test]
fn bad_metrics_variables_are_errors_naming_them() {
    for (name, value) in [
        ("OTEL_METRICS_EXPORTER", "statsd"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
        (
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "lowmemory",
        ),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "collector:4317"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "0"),
    ] {
        let err = Config::from_lookup(|n| (n == name).then(|| value.to_owned()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(name) && err.contains(value), "{err}");
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// 300 requests through the layer, one after the other.
async fn run_requests(app: &Router) -> Duration {
    let started = Instant::now();
    for i in 0..300 {
        call(app, &format!("/items/{i}")).await;
    }
    started.elapsed()
}

/// A collector that never answers (`blackhole`) or refuses connections
/// (`closed`), over `protocol`: requests cost what they cost without OTLP,
/// memory stays flat while exports fail, the failed points are counted as
/// dropped, and shutdown returns within its timeout.
async fn a_dead_collector_costs_requests_nothing(protocol: &str, collector: &str) {
    let _serial = SERIAL.lock().await;
    let baseline = Config::default()
        .metrics_addr(None)
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    let baseline_app = app().layer(baseline.http_layer());
    run_requests(&baseline_app).await; // warm-up
    let without = run_requests(&baseline_app).await;

    let addr = match collector {
        "blackhole" => black_hole(),
        "closed" => closed_port(),
        other => panic!("unknown collector {other}"),
    };
    let endpoint = match protocol {
        "http/protobuf" => format!("http://{addr}/v1/metrics"),
        _ => format!("http://{addr}"),
    };
    let telemetry = from_env(&[
        ("OTEL_METRICS_EXPORTER", "otlp".to_owned()),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", protocol.to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "50".to_owned()),
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "200".to_owned()),
    ])
    .shutdown_timeout(Duration::from_millis(500))
    .build()
    .unwrap();
    let app = app().layer(telemetry.http_layer());
    run_requests(&app).await; // warm-up
    let rss_before = rss_bytes();
    let with = run_requests(&app).await;
    eprintln!(
        "300 requests: {without:?} without OTLP metrics, {with:?} with a {collector} collector over {protocol}"
    );
    assert!(
        with <= without * 3 + Duration::from_millis(100),
        "requests slowed by a {collector} collector over {protocol}: {with:?} against {without:?}"
    );
    // Exports keep failing for a while: memory stays flat, drops are counted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let grown = rss_bytes().saturating_sub(rss_before);
    assert!(grown < 16 * 1024 * 1024, "memory grew by {grown} bytes");
    eprintln!("resident memory grew by {grown} bytes over 1.5 s of failing exports");
    let text = telemetry.render_metrics();
    let dropped = text
        .lines()
        .find(|l| {
            l.starts_with("glimpse_obs_dropped_total{") && l.contains("signal=\"metrics_otlp\"")
        })
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .unwrap_or_else(|| panic!("no metrics_otlp drops in\n{text}"));
    assert!(dropped > 0.0);
    eprintln!("metrics_otlp points dropped: {dropped}");
    let started = Instant::now();
    let _ = telemetry.into_guard().shutdown();
    eprintln!("shutdown took {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_grpc_collector_costs_requests_nothing_and_shutdown_is_bounded() {
    a_dead_collector_costs_requests_nothing("grpc", "blackhole").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_http_collector_costs_requests_nothing_and_shutdown_is_bounded() {
    a_dead_collector_costs_requests_nothing("http/protobuf", "blackhole").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_grpc_port_costs_requests_nothing_and_shutdown_is_bounded() {
    a_dead_collector_costs_requests_nothing("grpc", "closed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_http_port_costs_requests_nothing_and_shutdown_is_bounded() {
    a_dead_collector_costs_requests_nothing("http/protobuf", "closed").await;
}

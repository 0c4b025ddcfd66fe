//! All three signals from one run of the example service, as a deployment
//! sends them: spans, log records and metrics over OTLP to one collector,
//! the Prometheus scrape beside them. Each receiver decodes with its own
//! implementation: the OpenTelemetry Python protobufs (`tests/peers/otlp_peer.py`,
//! OTLP/HTTP) and the Rust receivers of `tests/support` (tonic, gRPC).
//!
//! What a user relies on, asserted on what the collector received:
//! - every span and log record carries the resource of the service;
//! - each log record's `trace_id` names a span the collector received;
//! - the OTLP metrics equal the Prometheus scrape taken once traffic stopped:
//!   counters, the self-rendered revenue, a histogram's bucket bounds and
//!   counts, the WebSocket series; the process CPU counter, which moves
//!   between the export and the scrape, is at most the scraped value;
//! - the WebSocket connection's `ws.connection` span is a child of the
//!   upgrade request's server span.
//!
//! `scripts/test-all.sh` installs the Python peer and sets
//! `GLIMPSE_REQUIRE_PEERS`, so there a missing venv fails the test.

mod common;
mod support;

use std::{
    collections::HashSet,
    io::Read,
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::peers::PythonReceiver;
use tokio_tungstenite::tungstenite::{
    self,
    protocol::{CloseFrame, frame::coding::CloseCode},
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Service {
    child: Child,
    base: String,
    metrics: String,
}

fn start_service(env: &[(&str, String)]) -> Service {
    let (port, mport) = (free_port(), free_port());
    let db =
        std::env::temp_dir().join(format!("glimpse-otlp-all-{}-{port}.db", std::process::id()));
    let mut cmd = Command::new(common::example_binary());
    cmd.env_clear()
        .env("GLIMPSE_ADDR", format!("127.0.0.1:{port}"))
        .env("GLIMPSE_METRICS_ADDR", format!("127.0.0.1:{mport}"))
        .env("GLIMPSE_DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("OTEL_SERVICE_NAME", "payment")
        .env("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=payment-7d9f")
        .env("OTEL_TRACES_SAMPLER", "always_on")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "200")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let svc = Service {
        child,
        base: format!("http://127.0.0.1:{port}"),
        metrics: format!("http://127.0.0.1:{mport}/metrics"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "service did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    svc
}

/// SIGTERM, the exit code and the JSON lines the service printed.
fn stop(mut svc: Service) -> (i32, Vec<Value>) {
    let status = Command::new("kill")
        .args(["-TERM", &svc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = svc.child.try_wait().unwrap() {
            break s.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    svc.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (code, common::strict_lines(&out))
}

/// Requests that give every kind of record: a span per request, an access
/// line per request, an ERROR line (the `500`), revenue and payment
/// counters, histogram observations, a WebSocket chat (one message echoed,
/// a normal close).
async fn traffic(base: &str) {
    let c = reqwest::Client::new();
    for i in 0..3 {
        let r = c
            .post(format!("{base}/matches"))
            .json(&json!({"user_id": format!("{i}"), "other_id": "7"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = c
        .post(format!("{base}/payments"))
        .json(&json!({"amount_minor": 500, "currency": "EUR", "card": "4000000000000002"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 402);
    let r = c
        .post(format!("{base}/payments"))
        .json(&json!({"amount_minor": 1699, "currency": "EUR", "card": "4242424242424242"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c.get(format!("{base}/error")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    chat(base).await;
}

/// One WebSocket chat: a message echoed, then a normal close, its closing
/// handshake finished.
async fn chat(base: &str) {
    let url = format!("{}/ws/chat", base.replacen("http://", "ws://", 1));
    let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    client
        .send(tungstenite::Message::text("hello"))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply.into_text().unwrap().as_str(), "hello");
    client
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), client.next()).await {}
}

/// Labels a series must carry.
type Labels = &'static [(&'static str, &'static str)];

/// The series of the scrape and the OTLP export that must be equal once
/// traffic stopped: (scrape name, OTLP name, labels). A histogram compares
/// its count here, its buckets in [`assert_buckets_match`].
const SAME_VALUES: &[(&str, &str, Labels)] = &[
    (
        "glimpse_matches_created_total",
        "glimpse_matches_created_total",
        &[],
    ),
    (
        "glimpse_payments_total",
        "glimpse_payments_total",
        &[("status", "failed")],
    ),
    (
        "glimpse_payments_total",
        "glimpse_payments_total",
        &[("status", "succeeded")],
    ),
    // Self-rendered by the exporter, a double over OTLP: 16.99.
    (
        "glimpse_payment_amount_total",
        "glimpse_payment_amount_total",
        &[("currency", "EUR")],
    ),
    (
        "http_server_request_duration_seconds_count",
        "http_server_request_duration_seconds",
        &[("route", "/matches"), ("method", "POST")],
    ),
    (
        "websocket_messages_total",
        "websocket_messages_total",
        &[("channel", "chat"), ("direction", "received")],
    ),
    (
        "websocket_closes_total",
        "websocket_closes_total",
        &[("channel", "chat"), ("class", "normal")],
    ),
];

/// The scrape's cumulative buckets of `name` (`le` -> count, summed over
/// the series whose labels include `labels`), `+Inf` as infinity.
fn scraped_buckets(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&bucket)) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        if !labels
            .iter()
            .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        let le = series.split("le=\"").nth(1).unwrap();
        let le = &le[..le.find('"').unwrap()];
        let le: f64 = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        let value: f64 = value.parse().unwrap();
        match out.iter_mut().find(|(b, _)| *b == le) {
            Some(slot) => slot.1 += value,
            None => out.push((le, value)),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// An OTLP histogram point (bounds, per-bucket counts) against the
/// scrape's cumulative buckets: the same bounds, the same counts.
fn assert_buckets_match(scraped: &[(f64, f64)], bounds: &[f64], counts: &[u64], what: &str) {
    assert_eq!(
        counts.len(),
        bounds.len() + 1,
        "{what}: one count per bucket and the overflow"
    );
    let mut cumulative = 0u64;
    let exported: Vec<(f64, f64)> = bounds
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .zip(counts)
        .map(|(le, n)| {
            cumulative += n;
            (le, cumulative as f64)
        })
        .collect();
    assert_eq!(exported, scraped, "{what}: OTLP buckets against the scrape");
    assert!(cumulative > 0, "{what}: observations exported");
}

/// `key` of an OTLP attribute list as text.
fn attr(attrs: &Value, key: &str) -> Option<String> {
    attrs.as_array()?.iter().find(|a| a["key"] == key).map(|a| {
        let v = &a["value"];
        v.get("string_value")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    })
}

/// Every span of the peer's trace exports: (resource attributes, span).
fn spans(bodies: &[Value]) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for b in bodies {
        for rs in b["resource_spans"].as_array().into_iter().flatten() {
            for ss in rs["scope_spans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    out.push((rs["resource"]["attributes"].clone(), s.clone()));
                }
            }
        }
    }
    out
}

/// Every log record of the peer's log exports: (resource attributes, record).
fn log_records(bodies: &[Value]) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for b in bodies {
        for rl in b["resource_logs"].as_array().into_iter().flatten() {
            for sl in rl["scope_logs"].as_array().into_iter().flatten() {
                for r in sl["log_records"].as_array().into_iter().flatten() {
                    out.push((rl["resource"]["attributes"].clone(), r.clone()));
                }
            }
        }
    }
    out
}

/// One exported data point: (name, attributes, value), the value of a sum
/// or gauge, the count of a histogram.
type Point = (String, Vec<(String, String)>, f64);

/// The elements of a JSON array (none when `v` is not one).
fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// Every metric of the peer's last metrics export.
fn last_metrics(bodies: &[Value]) -> impl Iterator<Item = &Value> {
    bodies
        .last()
        .into_iter()
        .flat_map(|last| items(&last["resource_metrics"]))
        .flat_map(|rm| items(&rm["scope_metrics"]))
        .flat_map(|sm| items(&sm["metrics"]))
}

/// A number of the peer's JSON: MessageToDict writes 64-bit integers as
/// strings.
fn number(v: &Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Whether the attributes of a data point include every one of `labels`.
fn has_labels(attributes: &Value, labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|(k, v)| attr(attributes, k).as_deref() == Some(*v))
}

/// The data points of the last metrics export.
fn last_metric_points(bodies: &[Value]) -> Vec<Point> {
    let mut out = Vec::new();
    for m in last_metrics(bodies) {
        let name = m["name"].as_str().unwrap().to_owned();
        let (points, histogram) = if let Some(sum) = m.get("sum") {
            (&sum["data_points"], false)
        } else if let Some(g) = m.get("gauge") {
            (&g["data_points"], false)
        } else if let Some(h) = m.get("histogram") {
            (&h["data_points"], true)
        } else {
            continue;
        };
        for p in items(points) {
            let labels: Vec<(String, String)> = items(&p["attributes"])
                .filter_map(|a| {
                    let key = a["key"].as_str()?;
                    Some((key.to_owned(), attr(&json!([a]), key)?))
                })
                .collect();
            let value = if histogram {
                number(&p["count"])
            } else {
                p.get("as_double")
                    .and_then(number)
                    .or_else(|| p.get("as_int").and_then(number))
            };
            if let Some(v) = value {
                out.push((name.clone(), labels, v));
            }
        }
    }
    out
}

/// The value of the series `name` whose attributes include `labels`.
fn point(points: &[Point], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    points
        .iter()
        .find(|(n, attrs, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| attrs.iter().any(|(ak, av)| ak == k && av == v))
        })
        .map(|(_, _, v)| *v)
}

/// The bounds and per-bucket counts of the histogram point of `name`
/// whose attributes include `labels`, in the last metrics export.
fn last_histogram(
    bodies: &[Value],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<(Vec<f64>, Vec<u64>)> {
    let p = last_metrics(bodies)
        .filter(|m| m["name"] == name)
        .flat_map(|m| items(&m["histogram"]["data_points"]))
        .find(|p| has_labels(&p["attributes"], labels))?;
    let bounds = items(&p["explicit_bounds"])
        .map(|b| b.as_f64().unwrap())
        .collect();
    let counts = items(&p["bucket_counts"])
        .map(|c| number(c).unwrap() as u64)
        .collect();
    Some((bounds, counts))
}

/// Whether the attributes of a received data point include every one of
/// `labels` (the Rust receivers' types).
fn carries(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    labels: &[(&str, &str)],
) -> bool {
    let attrs = support::otlp_metrics_receiver::attrs(attributes);
    labels
        .iter()
        .all(|(k, v)| attrs.iter().any(|(ak, av)| ak == k && av == v))
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_peer_decodes_spans_logs_and_metrics_of_one_run_that_agree_with_each_other_and_the_scrape()
 {
    let Some(python) = support::peers::python() else {
        return;
    };
    let peer = PythonReceiver::start(&python, "otlp_peer.py");
    let svc = start_service(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", peer.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ("OTEL_METRICS_EXPORTER", "prometheus,otlp".into()),
        ("OTEL_LOGS_EXPORTER", "otlp".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500".into()),
    ]);
    traffic(&svc.base).await;

    // Spans and records of the five requests arrive.
    wait_until("the spans of the requests", || {
        spans(&peer.bodies("traces"))
            .iter()
            .filter(|(_, s)| s["kind"] == "SPAN_KIND_SERVER")
            .count()
            >= 5
    })
    .await;
    wait_until("the access log records", || {
        log_records(&peer.bodies("logs"))
            .iter()
            .filter(|(_, r)| r["body"]["string_value"] == "request completed")
            .count()
            >= 5
    })
    .await;

    // The metrics: once traffic stopped, wait for two more exports (the
    // second surely began after the last request ended), then scrape.
    let exports = peer.bodies("metrics").len();
    wait_until("two metric exports after the traffic", || {
        peer.bodies("metrics").len() >= exports + 2
    })
    .await;
    let scrape = reqwest::get(&svc.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let points = last_metric_points(&peer.bodies("metrics"));
    for &(name, otlp_name, labels) in SAME_VALUES {
        let scraped = common::metric_value(&scrape, name, labels)
            .unwrap_or_else(|| panic!("{name} not in the scrape"));
        let exported = point(&points, otlp_name, labels)
            .unwrap_or_else(|| panic!("{otlp_name} {labels:?} not exported: {points:#?}"));
        assert_eq!(
            exported, scraped,
            "{name}{labels:?}: OTLP {exported}, scrape {scraped}"
        );
    }
    let cpu_exported = point(&points, "process_cpu_seconds_total", &[]).expect("CPU exported");
    let cpu_scraped = common::metric_value(&scrape, "process_cpu_seconds_total", &[]).unwrap();
    assert!(
        cpu_exported > 0.0 && cpu_exported <= cpu_scraped,
        "CPU: OTLP {cpu_exported} (earlier), scrape {cpu_scraped}"
    );
    let labels = [("route", "/matches"), ("method", "POST")];
    let (bounds, counts) = last_histogram(
        &peer.bodies("metrics"),
        "http_server_request_duration_seconds",
        &labels,
    )
    .expect("the /matches histogram exported");
    assert_buckets_match(
        &scraped_buckets(&scrape, "http_server_request_duration_seconds", &labels),
        &bounds,
        &counts,
        "http_server_request_duration_seconds /matches",
    );

    let (code, lines) = stop(svc);
    assert_eq!(code, 0);
    assert!(
        lines.iter().any(|l| l["message"] == "request completed"),
        "stdout JSON stays on beside OTLP logs"
    );

    // Spans and log records agree: every record inside a request names a
    // span the collector has, and both carry the service's resource.
    let spans = spans(&peer.bodies("traces"));
    let span_ids: HashSet<(String, String)> = spans
        .iter()
        .map(|(_, s)| {
            (
                s["trace_id"].as_str().unwrap().to_owned(),
                s["span_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (resource, _) in &spans {
        assert_eq!(attr(resource, "service.name").as_deref(), Some("payment"));
        assert_eq!(
            attr(resource, "k8s.pod.name").as_deref(),
            Some("payment-7d9f")
        );
    }
    // The WebSocket connection: a span of its own under the upgrade request.
    let upgrade = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| {
            s["kind"] == "SPAN_KIND_SERVER"
                && attr(&s["attributes"], "http.route").as_deref() == Some("/ws/chat")
        })
        .expect("the upgrade request's server span");
    let conn = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s["name"] == "ws.connection")
        .expect("the ws.connection span");
    assert_eq!(conn["kind"], "SPAN_KIND_SERVER");
    assert_eq!(conn["trace_id"], upgrade["trace_id"]);
    assert_eq!(conn["parent_span_id"], upgrade["span_id"]);
    assert_eq!(
        attr(&conn["attributes"], "channel").as_deref(),
        Some("chat")
    );
    assert_eq!(
        attr(&conn["attributes"], "ws.close_class").as_deref(),
        Some("normal")
    );
    let records = log_records(&peer.bodies("logs"));
    let in_requests: Vec<&Value> = records
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r.get("trace_id").is_some())
        .collect();
    assert!(
        in_requests.len() >= 6,
        "access lines and the ERROR line: {records:#?}"
    );
    for r in &in_requests {
        let ids = (
            r["trace_id"].as_str().unwrap().to_owned(),
            r["span_id"].as_str().unwrap().to_owned(),
        );
        assert!(
            span_ids.contains(&ids),
            "log record {r} names no span the collector received"
        );
    }
    for (resource, _) in &records {
        assert_eq!(attr(resource, "service.name").as_deref(), Some("payment"));
    }
    let error = records
        .iter()
        .map(|(_, r)| r)
        .find(|r| {
            r["severity_text"] == "ERROR"
                && attr(&r["attributes"], "route").as_deref() == Some("/error")
        })
        .expect("the 500's ERROR record");
    assert_eq!(error["severity_number"], "SEVERITY_NUMBER_ERROR");
}

/// The Rust receivers of `tests/support`, one per signal, over gRPC: the
/// per-signal endpoints route each signal to its own collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_receivers_get_spans_logs_and_metrics_of_one_run_that_agree_with_each_other_and_the_scrape()
 {
    use support::{
        otlp_logs_receiver::{LogStore, LogsReceiver},
        otlp_metrics_receiver::{self as m, MetricsReceiver},
        otlp_receiver::{Receiver, Store},
    };
    let spans_store = Store::default();
    let traces = Receiver::grpc(spans_store.clone()).await;
    let metrics = MetricsReceiver::grpc().await;
    let log_store = LogStore::default();
    let logs = LogsReceiver::grpc(log_store.clone()).await;
    let svc = start_service(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.endpoint()),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", metrics.endpoint()),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", logs.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        ("OTEL_METRICS_EXPORTER", "prometheus,otlp".into()),
        ("OTEL_LOGS_EXPORTER", "otlp".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500".into()),
    ]);
    traffic(&svc.base).await;

    let servers = || {
        spans_store
            .spans()
            .into_iter()
            .filter(|s| format!("{:?}", s.kind()) == "Server")
            .count()
    };
    wait_until("the spans of the requests", || servers() >= 5).await;
    wait_until("the access log records", || {
        log_store
            .logs()
            .iter()
            .filter(|r| r.body().as_deref() == Some("request completed"))
            .count()
            >= 5
    })
    .await;
    let exports = metrics.store.requests().len();
    wait_until("two metric exports after the traffic", || {
        metrics.store.requests().len() >= exports + 2
    })
    .await;
    let scrape = reqwest::get(&svc.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let latest = metrics.store.latest().unwrap();
    let sum_of = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        use opentelemetry_proto::tonic::metrics::v1::{
            metric::Data, number_data_point::Value as V,
        };
        let metric = m::metric(&latest, name)?;
        match metric.data? {
            Data::Sum(s) => s.data_points.iter().find_map(|p| {
                carries(&p.attributes, labels).then_some(match p.value {
                    Some(V::AsDouble(d)) => d,
                    Some(V::AsInt(i)) => i as f64,
                    None => f64::NAN,
                })
            }),
            Data::Histogram(h) => h
                .data_points
                .iter()
                .find_map(|p| carries(&p.attributes, labels).then_some(p.count as f64)),
            _ => None,
        }
    };
    for &(name, otlp_name, labels) in SAME_VALUES {
        let scraped = common::metric_value(&scrape, name, labels)
            .unwrap_or_else(|| panic!("{name} not in the scrape"));
        let exported = sum_of(otlp_name, labels)
            .unwrap_or_else(|| panic!("{otlp_name} {labels:?} not exported"));
        assert_eq!(
            exported, scraped,
            "{name}{labels:?}: OTLP {exported}, scrape {scraped}"
        );
    }
    let cpu_exported = sum_of("process_cpu_seconds_total", &[]).expect("CPU exported");
    let cpu_scraped = common::metric_value(&scrape, "process_cpu_seconds_total", &[]).unwrap();
    assert!(
        cpu_exported > 0.0 && cpu_exported <= cpu_scraped,
        "CPU: OTLP {cpu_exported} (earlier), scrape {cpu_scraped}"
    );
    {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let labels = [("route", "/matches"), ("method", "POST")];
        let Some(Data::Histogram(h)) =
            m::metric(&latest, "http_server_request_duration_seconds").and_then(|m| m.data)
        else {
            panic!("the request histogram exported as a histogram");
        };
        let p = h
            .data_points
            .iter()
            .find(|p| carries(&p.attributes, &labels))
            .expect("the /matches point");
        assert_buckets_match(
            &scraped_buckets(&scrape, "http_server_request_duration_seconds", &labels),
            &p.explicit_bounds,
            &p.bucket_counts,
            "http_server_request_duration_seconds /matches",
        );
    }

    let (code, _) = stop(svc);
    assert_eq!(code, 0);

    // The WebSocket connection: a span of its own under the upgrade request.
    let all = spans_store.spans();
    let upgrade = all
        .iter()
        .find(|s| {
            format!("{:?}", s.kind()) == "Server"
                && s.attr("http.route").as_deref() == Some("/ws/chat")
        })
        .expect("the upgrade request's server span");
    let conn = all
        .iter()
        .find(|s| s.name() == "ws.connection")
        .expect("the ws.connection span");
    assert_eq!(format!("{:?}", conn.kind()), "Server");
    assert_eq!(conn.trace_id(), upgrade.trace_id());
    assert_eq!(conn.parent_span_id(), upgrade.span_id());
    assert_eq!(conn.attr("channel").as_deref(), Some("chat"));
    assert_eq!(conn.attr("ws.close_class").as_deref(), Some("normal"));

    let span_ids: HashSet<(String, String)> = spans_store
        .spans()
        .iter()
        .map(|s| (s.trace_id(), s.span_id()))
        .collect();
    let records = log_store.logs();
    let in_requests: Vec<_> = records
        .iter()
        .filter(|r| !r.record.trace_id.is_empty())
        .collect();
    assert!(in_requests.len() >= 6, "access lines and the ERROR line");
    for r in in_requests {
        assert!(
            span_ids.contains(&(r.trace_id(), r.span_id())),
            "log record {:?} names no span the collector received",
            r.record
        );
        assert_eq!(r.resource_attr("service.name").as_deref(), Some("payment"));
    }
}

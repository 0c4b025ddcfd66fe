//! With `OTEL_LOGS_EXPORTER=otlp` every JSON line also reaches a real OTLP
//! logs receiver (gRPC and HTTP) as a LogRecord that says what the line
//! says: severity, body, the line's fields as attributes of the same names
//! and values (redaction and masking included), `log_type`, the line's
//! `traceId`/`spanId` as the record's IDs (matching a received span), the
//! traces' resource and the `glimpse_obs` scope. `GLIMPSE_LOG_STDOUT=false`
//! turns the JSON lines off while records still arrive. A dead or
//! black-holed collector leaves request latency as it is, keeps memory
//! bounded, counts what it drops in
//! `glimpse_obs_dropped_total{signal="logs_otlp"}`, and shutdown stays
//! within its timeout.
//!
//! `init()` may run once per process, so each scenario runs in a child
//! process: this test binary again, with `GLIMPSE_OTLP_LOGS_SCENARIO` set,
//! running only `scenario_child_process`, which asserts itself and prints
//! `RESULT {json}` for the parent.

mod support;

use std::{
    collections::HashMap,
    io::Read,
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use glimpse_obs::{Config, Guard, testing::SharedBuffer};
use serde_json::{Value, json};
use support::{
    otlp_logs_receiver::{LogStore, LogsReceiver, ReceivedLog},
    otlp_receiver::{self, Receiver, Store},
    trace_app,
};

const SCENARIO: &str = "GLIMPSE_OTLP_LOGS_SCENARIO";
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// Children run one at a time, so latencies are measured on a quieter machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// Run scenario `spec` in a child; its `RESULT` and what it printed.
fn run(spec: &str, env: &[(&str, &str)]) -> (Value, String) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "scenario_child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(SCENARIO, spec)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // Read while the child runs: a full pipe would block it.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scenario {spec} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out_thread.join().unwrap(), err_thread.join().unwrap());
    assert!(status.success(), "scenario {spec} failed:\n{out}\n{err}");
    let result = out
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("scenario {spec} printed no result:\n{out}\n{err}"));
    (serde_json::from_str(result).unwrap(), out)
}

/// Resource attributes of the environment, on records as on spans.
const RESOURCE: &[(&str, &str)] = &[("OTEL_RESOURCE_ATTRIBUTES", "team=matching")];

#[test]
fn records_over_grpc_say_what_the_json_lines_say() {
    let (r, _) = run("fields/grpc", RESOURCE);
    assert!(r["records"].as_u64().unwrap() >= 8, "{r}");
}

#[test]
fn records_over_http_say_what_the_json_lines_say() {
    let (r, _) = run("fields/http", RESOURCE);
    assert!(r["records"].as_u64().unwrap() >= 8, "{r}");
}

#[test]
fn stdout_off_writes_no_line_while_records_still_arrive() {
    let (r, out) = run("stdout_off/grpc", &[]);
    assert!(r["records"].as_u64().unwrap() >= 3, "{r}");
    // The child's real stdout: the harness's own lines and RESULT, no JSON line.
    let json_lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("{\"timestamp\""))
        .collect();
    assert!(json_lines.is_empty(), "{json_lines:?}");
}

#[test]
fn stdout_stays_on_beside_otlp_by_default() {
    let (r, out) = run("stdout_on/grpc", &[]);
    assert!(r["records"].as_u64().unwrap() >= 3, "{r}");
    assert!(
        out.lines().any(|l| l.contains("{\"timestamp\"")
            && l.contains("\"message\":\"to stdout and to the collector\"")),
        "{out}"
    );
}

#[derive(Debug)]
struct Dead {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    shutdown_ms: f64,
    shutdown: String,
    dropped: f64,
    failed: u64,
    rss_growth_mb: f64,
}

fn dead(collector: &str, protocol: &str) -> Dead {
    let spec = format!("dead/{protocol}/{collector}");
    let (v, _) = run(&spec, &[]);
    let f = |k: &str| v[k].as_f64().unwrap();
    let d = Dead {
        p50_ms: f("p50_ms"),
        p99_ms: f("p99_ms"),
        max_ms: f("max_ms"),
        shutdown_ms: f("shutdown_ms"),
        shutdown: v["shutdown"].as_str().unwrap().to_owned(),
        dropped: f("dropped"),
        failed: v["failed"].as_u64().unwrap(),
        rss_growth_mb: f("rss_growth_mb"),
    };
    eprintln!("{spec}: {d:?}");
    d
}

#[test]
fn a_dead_or_black_holed_collector_costs_no_latency_keeps_memory_bounded_and_counts_drops() {
    let base = dead("none", "grpc");
    assert_eq!(base.failed, 0);
    assert_eq!(base.dropped, 0.0, "nothing dropped without a collector");
    for (collector, protocol) in [
        ("closed", "grpc"),
        ("blackhole", "grpc"),
        ("closed", "http"),
        ("blackhole", "http"),
    ] {
        let name = format!("{collector} over {protocol}");
        let d = dead(collector, protocol);
        assert_eq!(d.failed, 0, "{name}: every request succeeds");
        // Generous bounds: what they catch is a request waiting on the
        // exporter (its timeout, seconds), not scheduling noise.
        assert!(
            d.p50_ms <= base.p50_ms * 3.0 + 5.0,
            "{name}: median {:.2} ms vs {:.2} ms",
            d.p50_ms,
            base.p50_ms
        );
        assert!(
            d.p99_ms <= base.p99_ms * 3.0 + 50.0,
            "{name}: p99 {:.2} ms vs {:.2} ms",
            d.p99_ms,
            base.p99_ms
        );
        assert!(d.max_ms < 1000.0, "{name}: slowest {:.1} ms", d.max_ms);
        // 100,000 lines of ~1 KB (100 MB) went to a queue of 256 records.
        assert!(
            d.rss_growth_mb < 30.0,
            "{name}: memory grew {:.1} MB",
            d.rss_growth_mb
        );
        assert!(d.dropped >= 80_000.0, "{name}: dropped {}", d.dropped);
        assert!(
            d.shutdown_ms <= SHUTDOWN_TIMEOUT.as_secs_f64() * 1000.0 + 500.0,
            "{name}: shutdown took {:.0} ms",
            d.shutdown_ms
        );
        if collector == "blackhole" {
            assert_eq!(d.shutdown, "timeout", "{name}: reported as a timeout");
        }
    }
}

// --- the child side --------------------------------------------------------

/// Resident memory of this process, in MB.
fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / 1e6
}

fn lookup(vars: HashMap<&'static str, String>) -> impl Fn(&str) -> Option<String> {
    move |name| vars.get(name).cloned()
}

fn protocol_var(protocol: &str) -> String {
    if protocol == "http" {
        "http/protobuf".to_owned()
    } else {
        "grpc".to_owned()
    }
}

/// The per-signal endpoint, used as written: with its path for HTTP.
fn logs_url(logs: &LogsReceiver, protocol: &str) -> String {
    if protocol == "http" {
        format!("{}/v1/logs", logs.endpoint())
    } else {
        logs.endpoint()
    }
}

/// `2026-12-03T07:53:59.123456Z` as nanoseconds since the epoch.
fn rfc3339_nanos(ts: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    let frac = &ts[20..ts.len() - 1];
    let nanos: u64 = format!("{frac:0<9}")[..9].parse().unwrap();
    secs as u64 * 1_000_000_000 + nanos
}

/// The record of `line`: same time and body.
fn record_of<'a>(line: &Value, records: &'a [ReceivedLog]) -> Option<&'a ReceivedLog> {
    let t = rfc3339_nanos(line["timestamp"].as_str()?);
    records
        .iter()
        .find(|r| r.record.time_unix_nano == t && r.body().as_deref() == line["message"].as_str())
}

/// Assert that `record` says what `line` says.
fn assert_same(line: &Value, record: &ReceivedLog) {
    let level = line["level"].as_str().unwrap();
    assert_eq!(record.record.severity_text, level, "{line}");
    let number = match level {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" => 9,
        "WARN" => 13,
        _ => 17,
    };
    assert_eq!(record.record.severity_number, number, "{line}");
    // The line's instant: to the microsecond as the line shows it, and to
    // the nanosecond as observed.
    let observed = record.record.observed_time_unix_nano;
    assert!(
        observed >= record.record.time_unix_nano && observed - record.record.time_unix_nano < 1000,
        "{line}"
    );
    let mut expected = line.as_object().unwrap().clone();
    for k in ["timestamp", "level", "message", "traceId", "spanId"] {
        expected.remove(k);
    }
    // OTLP integers are i64: a larger one arrives as its exact decimal text.
    for v in expected.values_mut() {
        if v.is_u64() && v.as_i64().is_none() {
            *v = Value::from(v.to_string());
        }
    }
    assert_eq!(record.attributes(), expected, "attributes of {line}");
    assert_eq!(
        record.trace_id(),
        line["traceId"].as_str().unwrap_or(""),
        "{line}"
    );
    assert_eq!(
        record.span_id(),
        line["spanId"].as_str().unwrap_or(""),
        "{line}"
    );
    if line.get("traceId").is_some() {
        assert_ne!(record.record.flags & 0xff, 0, "sampled flag set: {line}");
    }
}

#[test]
fn scenario_child_process() {
    let Ok(spec) = std::env::var(SCENARIO) else {
        return;
    };
    let parts: Vec<&str> = spec.split('/').collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = match parts[0] {
        "fields" => rt.block_on(fields(parts[1])),
        "stdout_off" => rt.block_on(stdout_switch(parts[1], false)),
        "stdout_on" => rt.block_on(stdout_switch(parts[1], true)),
        "dead" => rt.block_on(dead_child(parts[1], parts[2])),
        "shared" => rt.block_on(shared_child()),
        "scheduled" => rt.block_on(scheduled_child()),
        other => panic!("unknown scenario {other}"),
    };
    println!("RESULT {result}");
}

async fn fields(protocol: &str) -> Value {
    let logs = if protocol == "http" {
        LogsReceiver::http(LogStore::default()).await
    } else {
        LogsReceiver::grpc(LogStore::default()).await
    };
    let spans = Receiver::grpc(Store::default()).await;
    let vars = HashMap::from([
        ("OTEL_LOGS_EXPORTER", "otlp".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            logs_url(&logs, protocol),
        ),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", protocol_var(protocol)),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", spans.endpoint()),
        ("OTEL_BLRP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_SERVICE_NAME", "logs-test".to_owned()),
        ("GLIMPSE_SERVICE_VERSION", "9.9.9".to_owned()),
        ("GLIMPSE_ENV", "staging".to_owned()),
        (
            "GLIMPSE_LOG",
            "debug,h2=off,hyper=off,tonic=off,tower=off".to_owned(),
        ),
        ("OTEL_RESOURCE_ATTRIBUTES", "team=matching".to_owned()),
    ]);
    let buf = SharedBuffer::new();
    let guard = Config::from_lookup(lookup(vars))
        .unwrap()
        .metrics_addr(None)
        .log_writer(buf.clone())
        .shutdown_timeout(Duration::from_secs(5))
        .init()
        .unwrap();

    // Lines of every kind: requests (access lines, a user's, a 500), an
    // application event with personal data and credentials inside a span,
    // audit lines, a DEBUG line, a payment line.
    let addr = trace_app::serve().await;
    let client = reqwest::Client::new();
    for path in ["/users/7", "/error", "/health"] {
        let resp = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        let _ = resp.bytes().await;
    }
    {
        let span = tracing::info_span!("checkout", cart = "c-1", api_key = "sk_live_123");
        let _e = span.enter();
        tracing::warn!(
            password = "hunter2",
            email = "ana@example.com",
            note = "card 4111 1111 1111 1111 on file",
            count = 3u64,
            big = u64::MAX,
            ratio = 0.25,
            ok = true,
            level = "not the level",
            "signup for \"ana@example.com\"\nsecond line"
        );
        tracing::debug!(step = 2, "details");
    }
    glimpse_obs::audit::user_data_access("admin-1", "user-7", "export");
    glimpse_obs::audit::admin_action("admin-1", "ban", "user-9");
    tracing::info!(log_type = "payment", refund_id = "re_81f3", "refund issued");
    tracing::error!(error = "db down", "query failed");

    assert!(guard.flush(Duration::from_secs(5)), "flush in time");
    let lines: Vec<Value> = buf.lines();
    assert!(lines.len() >= 8, "{}", buf.contents());
    assert!(
        logs.store.wait_for_len(lines.len(), Duration::from_secs(5)),
        "{} records for {} lines",
        logs.store.len(),
        lines.len()
    );
    let records = logs.store.logs();
    assert_eq!(records.len(), lines.len(), "one record per line");
    for line in &lines {
        let record = record_of(line, &records)
            .unwrap_or_else(|| panic!("no record for {line}\n{records:#?}"));
        assert_same(line, record);
        assert_eq!(record.scope, "glimpse_obs");
        assert_eq!(
            record.resource_attr("service.name").as_deref(),
            Some("logs-test")
        );
        assert_eq!(
            record.resource_attr("service.version").as_deref(),
            Some("9.9.9")
        );
        assert_eq!(
            record
                .resource_attr("deployment.environment.name")
                .as_deref(),
            Some("staging")
        );
        assert_eq!(
            record.resource_attr("team").as_deref(),
            Some("matching"),
            "OTEL_RESOURCE_ATTRIBUTES"
        );
    }
    // Every kind arrived, with its log_type.
    let kinds = |pred: &dyn Fn(&Value) -> bool| lines.iter().filter(|l| pred(l)).count();
    assert!(
        kinds(&|l| l["message"] == "request completed" && l["log_type"] == "user_activity") >= 1
    );
    assert!(kinds(&|l| l["message"] == "request completed" && l["http_status"] == 500) >= 1);
    assert!(kinds(&|l| l["log_type"] == "payment") >= 1);
    assert!(kinds(&|l| l["level"] == "DEBUG" && l["log_type"] == "debug") >= 1);
    assert!(kinds(&|l| l["target"] == "glimpse_obs::audit") >= 2);
    // Redaction and masking, identical to the line: no secret in any record.
    let wire = format!("{records:?}");
    for secret in [
        "hunter2",
        "ana@example.com",
        "4111 1111 1111 1111",
        "sk_live_123",
    ] {
        assert!(!wire.contains(secret), "{secret} leaked into a record");
    }
    // The records' IDs are those of received spans.
    assert!(guard.flush(Duration::from_secs(5)));
    let with_ids: Vec<&ReceivedLog> = records
        .iter()
        .filter(|r| !r.trace_id().is_empty())
        .collect();
    assert!(with_ids.len() >= 4, "records in spans carry IDs");
    for r in with_ids {
        let span = spans
            .store
            .wait_for(Duration::from_secs(5), |s| {
                s.trace_id() == r.trace_id() && s.span_id() == r.span_id()
            })
            .await;
        assert!(
            span.is_some(),
            "a span for {:?}\n{}",
            r.body(),
            spans.store.summary()
        );
    }
    let metrics = guard.render_metrics();
    guard.shutdown().unwrap();
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("glimpse_obs_dropped_total{")
                && l.contains("signal=\"logs_otlp\"")
                && !l.ends_with(" 0")),
        "{metrics}"
    );
    json!({ "records": records.len() })
}

async fn stdout_switch(protocol: &str, stdout: bool) -> Value {
    let logs = if protocol == "http" {
        LogsReceiver::http(LogStore::default()).await
    } else {
        LogsReceiver::grpc(LogStore::default()).await
    };
    let mut vars = HashMap::from([
        ("OTEL_LOGS_EXPORTER", "otlp".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            logs_url(&logs, protocol),
        ),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", protocol_var(protocol)),
        ("OTEL_BLRP_SCHEDULE_DELAY", "100".to_owned()),
    ]);
    if !stdout {
        vars.insert("GLIMPSE_LOG_STDOUT", "false".to_owned());
    }
    // No log_writer: the real stdout, which the parent reads.
    let guard = Config::from_lookup(lookup(vars))
        .unwrap()
        .metrics_addr(None)
        .init()
        .unwrap();
    tracing::info!(n = 1, "to stdout and to the collector");
    tracing::warn!(n = 2, "second");
    tracing::error!(n = 3, "third");
    assert!(guard.flush(Duration::from_secs(5)));
    assert!(logs.store.wait_for_len(3, Duration::from_secs(5)));
    let n = logs.store.len();
    assert!(logs.store.logs().iter().any(|r| r.body().as_deref()
        == Some("to stdout and to the collector")
        && r.attr("n") == Some(json!(1))));
    guard.shutdown().unwrap();
    json!({ "records": n })
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` with `http/protobuf`: records go to
/// `/v1/logs` of it, in batches of `OTEL_BLRP_MAX_EXPORT_BATCH_SIZE`.
/// `init()` with `vars` as the environment, no metrics listener, the JSON
/// lines to a sink.
fn init_to_sink(vars: HashMap<&'static str, String>) -> Guard {
    Config::from_lookup(lookup(vars))
        .unwrap()
        .metrics_addr(None)
        .log_writer(std::io::sink())
        .init()
        .unwrap()
}

async fn shared_child() -> Value {
    let logs = LogsReceiver::http(LogStore::default()).await;
    let vars = HashMap::from([
        ("OTEL_LOGS_EXPORTER", "otlp".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", logs.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "4".to_owned()),
        ("OTEL_BLRP_SCHEDULE_DELAY", "60000".to_owned()),
    ]);
    let guard = init_to_sink(vars);
    for i in 0..10 {
        tracing::info!(i, "batched");
    }
    // Two full batches go out at once; the last two records wait for the
    // schedule (a minute away), so only a flush sends them.
    assert!(logs.store.wait_for_len(8, Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(500));
    let before_flush = logs.store.len();
    assert!(guard.flush(Duration::from_secs(5)));
    assert!(logs.store.wait_for_len(10, Duration::from_secs(5)));
    guard.shutdown().unwrap();
    json!({
        "records": logs.store.len(),
        "exports": logs.store.exports(),
        "batch_sizes": logs.store.batch_sizes(),
        "before_flush": before_flush,
    })
}

async fn scheduled_child() -> Value {
    let logs = LogsReceiver::grpc(LogStore::default()).await;
    let vars = HashMap::from([
        ("OTEL_LOGS_EXPORTER", "otlp".to_owned()),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", logs.endpoint()),
        ("OTEL_BLRP_SCHEDULE_DELAY", "200".to_owned()),
    ]);
    let guard = init_to_sink(vars);
    let started = std::time::Instant::now();
    for i in 0..3 {
        tracing::info!(i, "scheduled");
    }
    // Far from a full batch (512) and no flush: the schedule sends them.
    let arrived = logs.store.wait_for_len(3, Duration::from_secs(10));
    let waited_ms = started.elapsed().as_millis() as u64;
    guard.shutdown().unwrap();
    json!({ "arrived": arrived, "waited_ms": waited_ms, "exports": logs.store.exports() })
}

async fn dead_child(protocol: &str, collector: &str) -> Value {
    let endpoint = match collector {
        "none" => None,
        "closed" => Some(format!("http://{}", otlp_receiver::closed_port())),
        "blackhole" => Some(format!("http://{}", otlp_receiver::black_hole())),
        other => panic!("unknown collector {other}"),
    };
    let mut vars = HashMap::from([
        ("OTEL_BLRP_SCHEDULE_DELAY", "50".to_owned()),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "256".to_owned()),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", protocol_var(protocol)),
    ]);
    if let Some(endpoint) = endpoint {
        vars.insert("OTEL_LOGS_EXPORTER", "otlp".to_owned());
        vars.insert("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", endpoint);
    }
    let guard = Config::from_lookup(lookup(vars))
        .unwrap()
        .service("dead-logs-collector")
        .metrics_addr(None)
        .log_writer(std::io::sink())
        .shutdown_timeout(SHUTDOWN_TIMEOUT)
        .init()
        .unwrap();
    let addr = trace_app::serve().await;
    let client = reqwest::Client::new();
    let mut failed = 0u64;
    let mut latencies = Vec::new();
    for i in 0..220 {
        let start = Instant::now();
        let ok = client
            .get(format!("http://{addr}/users/{i}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if i >= 20 {
            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
            failed += u64::from(!ok);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    // A burst of large lines: memory stays bounded by the queue.
    let payload = "x".repeat(900);
    let before = rss_mb();
    for i in 0..100_000u32 {
        tracing::info!(i, payload = payload.as_str(), "burst");
    }
    let rss_growth_mb = rss_mb() - before;
    let metrics = guard.render_metrics();
    let dropped: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("glimpse_obs_dropped_total{") && l.contains("signal=\"logs_otlp\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let start = Instant::now();
    let result = guard.shutdown();
    let shutdown_ms = start.elapsed().as_secs_f64() * 1000.0;
    let shutdown = match result {
        Ok(()) => "ok".to_owned(),
        Err(glimpse_obs::Error::ShutdownTimeout(_)) => "timeout".to_owned(),
        Err(e) => format!("error: {e}"),
    };
    json!({
        "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        "shutdown_ms": shutdown_ms, "shutdown": shutdown, "dropped": dropped,
        "failed": failed, "rss_growth_mb": rss_growth_mb,
    })
}

// --- the variables this pipeline uses ----------------------------------------

fn config(pairs: &[(&'static str, &str)]) -> Result<Config, glimpse_obs::Error> {
    let vars: HashMap<&'static str, String> =
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    Config::from_lookup(lookup(vars))
}

#[test]
fn bad_values_of_the_log_export_variables_are_errors_naming_them() {
    for (name, value) in [
        ("OTEL_LOGS_EXPORTER", "otlp,console"),
        ("OTEL_LOGS_EXPORTER", "yes"),
        ("GLIMPSE_LOG_STDOUT", "no"),
        ("GLIMPSE_LOG_STDOUT", "0"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "0"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "many"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "-5"),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "1.5"),
        ("OTEL_BLRP_EXPORT_TIMEOUT", "30s"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "collector:4317"),
    ] {
        let err = config(&[("OTEL_LOGS_EXPORTER", "otlp"), (name, value)])
            .err()
            .unwrap_or_else(|| panic!("{name}={value} accepted"));
        let text = err.to_string();
        assert!(text.contains(name) && text.contains(value), "{text}");
    }
    // Accepted spellings.
    for (name, value) in [
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "OTLP"),
        ("GLIMPSE_LOG_STDOUT", "FALSE"),
        ("GLIMPSE_LOG_STDOUT", "true"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "16"),
    ] {
        let _ = config(&[(name, value)]).unwrap_or_else(|e| panic!("{name}={value}: {e}"));
    }
}

#[test]
fn otlp_logs_with_the_pretty_format_are_refused_and_without_an_endpoint_go_to_localhost() {
    // The specification's default collector: builds, connects lazily.
    let telemetry = config(&[
        ("OTEL_LOGS_EXPORTER", "otlp"),
        ("OTEL_BLRP_EXPORT_TIMEOUT", "200"),
    ])
    .unwrap()
    .metrics_addr(None)
    .log_writer(std::io::sink())
    .shutdown_timeout(Duration::from_secs(1))
    .build()
    .unwrap();
    drop(telemetry);
    let err = config(&[
        ("OTEL_LOGS_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1:4317"),
        ("GLIMPSE_LOG_FORMAT", "pretty"),
    ])
    .unwrap()
    .metrics_addr(None)
    .log_writer(std::io::sink())
    .build()
    .unwrap_err();
    assert!(err.to_string().contains("OTEL_LOGS_EXPORTER"), "{err}");
    assert!(err.to_string().contains("GLIMPSE_LOG_FORMAT"), "{err}");
    // Off by default, and `none` builds without any collector.
    for pairs in [&[][..], &[("OTEL_LOGS_EXPORTER", "none")][..]] {
        config(pairs)
            .unwrap()
            .metrics_addr(None)
            .log_writer(std::io::sink())
            .build()
            .unwrap();
    }
}

#[test]
fn the_shared_endpoint_and_the_blrp_batch_size_are_used() {
    let (r, _) = run("shared/http", &[]);
    // 10 records in batches of at most 4: at least 3 exports.
    assert_eq!(r["records"], 10, "{r}");
    assert!(r["exports"].as_u64().unwrap() >= 3, "{r}");
    let sizes: Vec<u64> = r["batch_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert!(sizes.iter().all(|&n| (1..=4).contains(&n)), "{r}");
    assert_eq!(sizes.iter().sum::<u64>(), 10, "{r}");
    assert_eq!(
        r["before_flush"], 8,
        "full batches go out at once, the rest waits for the schedule: {r}"
    );
}

#[test]
fn records_short_of_a_batch_go_out_on_the_blrp_schedule() {
    let (r, _) = run("scheduled/grpc", &[]);
    assert_eq!(r["arrived"], true, "{r}");
    let waited = r["waited_ms"].as_u64().unwrap();
    assert!(waited < 5_000, "OTEL_BLRP_SCHEDULE_DELAY=200: {r}");
}

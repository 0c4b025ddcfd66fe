//! gRPC's C core as the collector: `grpcio` with the OpenTelemetry Python
//! protobufs and their generated services (`tests/peers/otlp_grpc_peer.py`)
//! receives what the crate's gRPC exporters send, an implementation other
//! than the tonic receivers of the other tests. The server compresses its
//! answers with gzip, as grpc-go collectors answer a gzip request.
//!
//! What a user relies on, asserted on what the Python server decoded:
//! - every signal arrives at its service, plain and gzipped, with the
//!   configured headers as metadata;
//! - the log pipeline's records (the crate's own protobuf writer) decode
//!   with their body, severity and attributes;
//! - a collector's refusal is an export error with its status and message.
//!
//! A bare `cargo test` without the peer reports it as skipped on stderr;
//! with `GLIMPSE_REQUIRE_PEERS` or `CI` set a missing peer fails.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use glimpse_obs::{__otlp_probe::Probe, Config};
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    },
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{Metric, ResourceMetrics, ScopeMetrics},
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use prost::Message as _;
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt as _;

fn peer_python() -> Option<PathBuf> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/.venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none() && std::env::var_os("GLIMPSE_REQUIRE_PEERS").is_none(),
        "the Python peer is not installed: run `bash tests/peers/setup.sh` first"
    );
    eprintln!("skipped: run `bash tests/peers/setup.sh` to install the Python peer");
    None
}

/// The Python gRPC server, killed when dropped.
struct Peer {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Peer {
    fn start(python: &PathBuf, tag: &str) -> Self {
        let out = std::env::temp_dir().join(format!(
            "glimpse-grpc-peer-{tag}-{}.jsonl",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&out);
        let mut child = Command::new(python)
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/otlp_grpc_peer.py"))
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the peer did not start: {line:?}"));
        Self { child, port, out }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request the server decoded so far.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The requests recorded once there are `n`, or after 10 s (the server
    /// records a request before it answers it, so an export that returned
    /// is already there; the wait only guards a slow file system).
    fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all = self.received();
            if all.len() >= n || Instant::now() > deadline {
                return all;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

fn config(pairs: &[(&str, String)]) -> Config {
    let pairs = pairs.to_vec();
    Config::from_lookup(|name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap()
}

fn traces_body(name: &str) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: name.to_owned(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn metrics_body(name: &str) -> Vec<u8> {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.to_owned(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn logs_body(text: &str) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    severity_text: text.to_owned(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// The name each signal's body above carries, as the server decoded it.
fn carried(request: &Value) -> &str {
    let body = &request["body"];
    let found = match request["signal"].as_str().unwrap() {
        "traces" => &body["resource_spans"][0]["scope_spans"][0]["spans"][0]["name"],
        "metrics" => &body["resource_metrics"][0]["scope_metrics"][0]["metrics"][0]["name"],
        _ => &body["resource_logs"][0]["scope_logs"][0]["log_records"][0]["severity_text"],
    };
    found.as_str().unwrap_or_default()
}

#[test]
fn each_signal_reaches_the_c_core_server_plain_and_gzipped_with_its_headers() {
    let Some(python) = peer_python() else { return };
    let peer = Peer::start(&python, "signals");
    for compression in ["none", "gzip"] {
        let config = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", peer.endpoint()),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", compression.to_owned()),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-tenant=glimpse,api-key=secret%20one".to_owned(),
            ),
        ]);
        for (signal, body) in [
            ("traces", traces_body(&format!("span-{compression}"))),
            ("metrics", metrics_body(&format!("metric_{compression}"))),
            ("logs", logs_body(&format!("log-{compression}"))),
        ] {
            Probe::new(&config, signal)
                .unwrap()
                .unwrap()
                .export(body)
                .unwrap_or_else(|e| panic!("{signal} with compression {compression}: {e}"));
        }
    }
    let all = peer.wait_for(6);
    let got: Vec<(&str, &str)> = all
        .iter()
        .map(|r| (r["signal"].as_str().unwrap(), carried(r)))
        .collect();
    assert_eq!(
        got,
        [
            ("traces", "span-none"),
            ("metrics", "metric_none"),
            ("logs", "log-none"),
            ("traces", "span-gzip"),
            ("metrics", "metric_gzip"),
            ("logs", "log-gzip"),
        ]
    );
    for r in &all {
        assert_eq!(r["metadata"]["x-tenant"], "glimpse", "{r}");
        assert_eq!(r["metadata"]["api-key"], "secret one", "{r}");
        assert!(
            r["metadata"]["user-agent"]
                .as_str()
                .is_some_and(|ua| ua.contains("tonic")),
            "{r}"
        );
    }
}

#[test]
fn log_records_of_the_pipeline_decode_in_the_c_core_server() {
    let Some(python) = peer_python() else { return };
    let peer = Peer::start(&python, "logs");
    let telemetry = config(&[
        ("OTEL_LOGS_EXPORTER", "otlp".to_owned()),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", peer.endpoint()),
        ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip".to_owned()),
    ])
    .service("matches")
    .metrics_addr(None)
    .process_metrics(false)
    .log_writer(std::io::sink())
    .build()
    .unwrap();
    let dispatch =
        tracing::Dispatch::new(tracing_subscriber::registry().with(telemetry.tracing_layer()));
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::info!(
            user_id = 42u64,
            match_id = "m-1",
            score = 0.75,
            "match created"
        );
        tracing::warn!(attempt = 3i64, retried = true, "payment \"slow\"\nretrying");
    });
    assert!(telemetry.flush(Duration::from_secs(10)), "flush");
    let all = peer.wait_for(1);
    let records: Vec<&Value> = all
        .iter()
        .filter(|r| r["signal"] == "logs")
        .flat_map(|r| {
            r["body"]["resource_logs"][0]["scope_logs"][0]["log_records"]
                .as_array()
                .unwrap()
        })
        .collect();
    assert_eq!(records.len(), 2, "{all:?}");
    let attr = |record: &Value, key: &str| -> Value {
        record["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(records[0]["body"]["string_value"], "match created");
    assert_eq!(records[0]["severity_text"], "INFO");
    assert_eq!(attr(records[0], "user_id")["int_value"], "42");
    assert_eq!(attr(records[0], "match_id")["string_value"], "m-1");
    assert_eq!(attr(records[0], "score")["double_value"], 0.75);
    assert_eq!(
        records[1]["body"]["string_value"],
        "payment \"slow\"\nretrying"
    );
    assert_eq!(records[1]["severity_text"], "WARN");
    assert_eq!(attr(records[1], "retried")["bool_value"], true);
    let resource = &all[0]["body"]["resource_logs"][0]["resource"]["attributes"];
    assert!(
        resource
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["key"] == "service.name" && a["value"]["string_value"] == "matches"),
        "{resource}"
    );
    drop(telemetry);
}

#[test]
fn a_refusal_of_the_c_core_server_is_an_error_with_its_status_and_message() {
    let Some(python) = peer_python() else { return };
    let peer = Peer::start(&python, "refuse");
    let config = config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", peer.endpoint()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-refuse=1".to_owned()),
    ]);
    let err = Probe::new(&config, "logs")
        .unwrap()
        .unwrap()
        .export(logs_body("refused"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gRPC status ResourceExhausted: collector queue is full: retry later"),
        "{err}"
    );
    assert!(peer.received().is_empty());
}

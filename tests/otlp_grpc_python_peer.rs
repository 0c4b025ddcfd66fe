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

mod support;

use std::time::Duration;

use glimpse_obs::__otlp_probe::Probe;
use serde_json::Value;
use support::{
    config,
    otlp_bodies::{logs_body, metrics_body, traces_body},
    peers::PythonReceiver,
};
use tracing_subscriber::layer::SubscriberExt as _;

/// The name each signal's body (`support::otlp_bodies`) carries, as the
/// server decoded it.
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
    let Some(python) = support::peers::python() else {
        return;
    };
    let peer = PythonReceiver::start(&python, "otlp_grpc_peer.py");
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
    let Some(python) = support::peers::python() else {
        return;
    };
    let peer = PythonReceiver::start(&python, "otlp_grpc_peer.py");
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
    let Some(python) = support::peers::python() else {
        return;
    };
    let peer = PythonReceiver::start(&python, "otlp_grpc_peer.py");
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

//! An independent implementation as a peer: the OpenTelemetry Python SDK
//! (installed by `tests/peers/setup.sh`) starts a trace, propagates it into
//! the service with its own W3C propagators, and the service propagates it on
//! to a Python downstream with `glimpse_obs::propagation::inject`. The
//! collector receives one trace from both languages.
//!
//! `scripts/test-all.sh` installs the peer and sets `GLIMPSE_REQUIRE_PEERS`,
//! so there a missing venv fails the test; a bare `cargo test` on a machine
//! without the peer reports it as skipped on stderr.

mod support;

use std::{path::PathBuf, process::Stdio, time::Duration};

use glimpse_obs::{Config, OtlpProtocol, testing::SharedBuffer};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value;
use support::{
    otlp_receiver::{Receiver, Store},
    trace_app,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_started_by_the_python_sdk_continues_through_the_service_and_on_to_python() {
    let Some(python) = support::peers::python() else {
        return;
    };
    let store = Store::default();
    let grpc = Receiver::grpc(store.clone()).await;
    let http = Receiver::http(store.clone()).await;
    let logs = SharedBuffer::new();
    let guard = Config::default()
        .service("trace-peer-test")
        .otlp_endpoint(Some(grpc.endpoint()))
        .otlp_protocol(OtlpProtocol::Grpc)
        .metrics_addr(None)
        .log_writer(logs.clone())
        .init()
        .unwrap();
    let addr = trace_app::serve().await;

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/w3c_peer.py");
    let child = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(format!("http://{addr}"))
        .arg(http.endpoint())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the Python peer finishes within 20 s")
        .unwrap();
    assert!(
        out.status.success(),
        "python peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let before = guard.render_metrics();
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap()
        .unwrap();

    let client_trace = report["client"]["trace_id"].as_str().unwrap();
    let client_span = report["client"]["span_id"].as_str().unwrap();
    assert_eq!(report["status"], 200, "{report:#}");
    assert_eq!(report["body"], "downstream ok");

    // Python's own span reached the collector (over OTLP/HTTP).
    let py = store.find(|s| s.name() == "python-client");
    assert_eq!(py.len(), 1, "{}", store.summary());
    assert_eq!(
        py[0].resource_attr("service.name").as_deref(),
        Some("python-peer")
    );
    assert_eq!(py[0].trace_id(), client_trace);

    // The service's server span continues Python's trace, with its tracestate.
    let server = store.find(|s| {
        s.kind() == SpanKind::Server && s.attr("http.route").as_deref() == Some("/relay")
    });
    assert_eq!(
        server.len(),
        1,
        "{}\nexports: {}, metrics before shutdown:\n{}\npeer stderr:\n{}",
        store.summary(),
        store.exports(),
        before
            .lines()
            .filter(|l| l.contains("dropped"))
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    let server = &server[0];
    assert_eq!(server.trace_id(), client_trace);
    assert_eq!(server.parent_span_id(), client_span);
    assert_eq!(server.span.trace_state, "peer=1");
    assert_eq!(
        server.resource_attr("service.name").as_deref(),
        Some("trace-peer-test")
    );
    let response_tp = report["response_headers"]["traceparent"].as_str().unwrap();
    assert_eq!(
        response_tp,
        format!("00-{client_trace}-{}-01", server.span_id())
    );

    // Python downstream parsed what inject() wrote, with its own propagators.
    let down = &report["downstream"][0];
    assert_eq!(down["valid"], true, "{report:#}");
    assert_eq!(down["trace_id"], client_trace);
    assert_eq!(down["parent_span_id"], server.span_id().as_str());
    assert_eq!(down["sampled"], true);
    assert_eq!(down["tracestate"], "peer=1");
    assert_eq!(down["baggage"]["tenant"], "acme");
    assert_eq!(
        down["request_id"],
        report["response_headers"]["x-request-id"]
    );

    // The access line links to the same trace.
    let access = logs
        .lines()
        .into_iter()
        .find(|l| l["message"] == "request completed" && l["route"] == "/relay")
        .expect("access line");
    assert_eq!(access["traceId"], client_trace);
}

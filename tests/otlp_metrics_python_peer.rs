//! An independent decoder as a peer: the OpenTelemetry Python protobufs
//! (installed by `tests/peers/setup.sh`) decode the exact bytes the metrics
//! exporter posted over OTLP/HTTP, and find the scrape's families with their
//! kinds, units, attributes, values, bucket bounds and resource.
//!
//! A bare `cargo test` without the peer reports it as skipped on stderr;
//! with `GLIMPSE_REQUIRE_PEERS` or `CI` set a missing peer fails.

mod support;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, routing::post};
use glimpse_obs::{Config, Environment};
use serde_json::Value;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_protobufs_decode_the_exported_metrics() {
    let Some(python) = support::peers::python() else {
        return;
    };
    // A receiver keeping the raw bodies.
    let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kept = Arc::clone(&bodies);
    let app = Router::new().route(
        "/v1/metrics",
        post(move |body: Bytes| {
            let kept = Arc::clone(&kept);
            async move {
                kept.lock().unwrap().push(body.to_vec());
                ""
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let telemetry = Config::from_lookup(|name| match name {
        "OTEL_METRICS_EXPORTER" => Some("otlp".to_owned()),
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL" => Some("http/protobuf".to_owned()),
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" => Some(format!("http://{addr}/v1/metrics")),
        "OTEL_METRIC_EXPORT_INTERVAL" => Some("3600000".to_owned()),
        _ => None,
    })
    .unwrap()
    .service("peer-metrics")
    .version("9.9.9")
    .environment(Environment::Production)
    .log_writer(std::io::sink())
    .build()
    .unwrap();
    metrics::with_local_recorder(&telemetry.recorder(), || {
        metrics::counter!("jobs_total", "queue" => "mail").increment(7);
        metrics::gauge!("queue_depth").set(2.5);
        metrics::histogram!("db_query_duration_seconds", "operation" => "select_user").record(0.02);
    });
    let t = Arc::new(telemetry);
    let flushed = tokio::task::spawn_blocking({
        let t = Arc::clone(&t);
        move || t.flush(Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(flushed);
    let body = bodies.lock().unwrap().last().cloned().expect("an export");
    let dir = std::env::temp_dir().join(format!("glimpse-metrics-peer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("request.bin");
    std::fs::write(&file, &body).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/otlp_metrics_peer.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoded: Value = serde_json::from_slice(&output.stdout).unwrap();

    let resource = &decoded["resource"];
    assert_eq!(resource["service.name"], "peer-metrics");
    assert_eq!(resource["service.version"], "9.9.9");
    assert_eq!(resource["deployment.environment.name"], "production");
    assert_eq!(decoded["scope"], "glimpse_obs");
    let m = &decoded["metrics"];

    let jobs = &m["jobs_total"];
    assert_eq!(jobs["kind"], "sum");
    assert_eq!(jobs["monotonic"], true);
    assert_eq!(jobs["temporality"], 2, "cumulative");
    assert_eq!(jobs["points"][0]["value"], 7);
    assert_eq!(jobs["points"][0]["attributes"]["queue"], "mail");
    assert_eq!(jobs["points"][0]["attributes"]["service"], "peer-metrics");
    assert_eq!(jobs["points"][0]["attributes"]["env"], "production");

    assert_eq!(m["queue_depth"]["kind"], "gauge");
    assert_eq!(m["queue_depth"]["points"][0]["value"], 2.5);

    let db = &m["db_query_duration_seconds"];
    assert_eq!(db["kind"], "histogram");
    assert_eq!(db["unit"], "s");
    let p = &db["points"][0];
    let bounds: Vec<f64> = serde_json::from_value(p["bounds"].clone()).unwrap();
    assert_eq!(bounds, glimpse_obs::metrics::LATENCY_BUCKETS);
    let buckets: Vec<u64> = serde_json::from_value(p["buckets"].clone()).unwrap();
    assert_eq!(buckets.len(), bounds.len() + 1);
    assert_eq!(buckets.iter().sum::<u64>(), 1);
    assert_eq!(buckets[4], 1, "0.02 falls in (0.01, 0.025]");
    assert_eq!(p["count"], 1);
    assert_eq!(p["sum"], 0.02);

    let cpu = &m["process_cpu_seconds_total"];
    assert_eq!(cpu["kind"], "sum");
    assert_eq!(cpu["unit"], "s");
    assert!(cpu["points"][0]["value"].as_f64().unwrap() > 0.0);
    assert_eq!(m["glimpse_build_info"]["kind"], "gauge");
    assert_eq!(
        m["glimpse_build_info"]["points"][0]["attributes"]["version"],
        "9.9.9"
    );
}

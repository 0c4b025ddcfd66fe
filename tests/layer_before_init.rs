//! A layer built before `init` (a router assembled first, observability set
//! up later) still follows the slow threshold and sampling `init` read.
//! Its own process: `init` runs once per process.

use std::time::Duration;

use axum::{Router, body::Body, routing::get};
use glimpse_obs::{Config, testing::SharedBuffer};
use http::Request;
use serde_json::Value;
use tower::ServiceExt;

#[tokio::test]
async fn a_layer_built_before_init_uses_the_slow_threshold_and_sampling_init_read() {
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(60)).await;
                "done"
            }),
        )
        .route("/feed", get(|| async { "[]" }))
        .route("/quick", get(|| async { "ok" }))
        .layer(glimpse_obs::layer());

    let logs = SharedBuffer::new();
    let guard = Config::default()
        .service("layer-before-init")
        .metrics_addr(None)
        .process_metrics(false)
        .slow_request(Duration::from_millis(20))
        .log_sample("/feed", 0.0)
        .unwrap()
        .log_writer(logs.clone())
        .init()
        .unwrap();

    for path in ["/slow", "/feed", "/quick"] {
        let resp = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
    assert!(guard.flush(Duration::from_secs(5)));

    let access: Vec<Value> = logs
        .lines()
        .into_iter()
        .filter(|l| l["message"] == "request completed")
        .collect();
    let level_of = |route: &str| {
        access
            .iter()
            .find(|l| l["route"] == route)
            .map(|l| l["level"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        level_of("/slow").as_deref(),
        Some("WARN"),
        "60 ms is over init's 20 ms threshold: {access:?}"
    );
    assert_eq!(level_of("/quick").as_deref(), Some("INFO"));
    assert_eq!(
        level_of("/feed"),
        None,
        "init's GLIMPSE_LOG_SAMPLE-style rate 0 for /feed applies"
    );
}

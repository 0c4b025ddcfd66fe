//! The `/metrics` text passes `promtool check metrics` (Debian's `prometheus`
//! package, installed by `scripts/test-all.sh`).

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use axum::{Router, routing::get};
use glimpse_obs::{Config, testing::SharedBuffer};
use tower::ServiceExt;

#[tokio::test]
async fn the_scrape_text_passes_promtool_check_metrics() {
    let guard = Config::default()
        .service("promtool-test")
        .metrics_addr(Some("127.0.0.1:0".parse().unwrap()))
        .log_writer(SharedBuffer::new())
        .init()
        .unwrap();
    let app: Router = Router::new()
        .route("/users/{id}", get(|| async { "u" }))
        .route(
            "/error",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "x") }),
        )
        .layer(glimpse_obs::layer());
    for path in ["/users/1", "/users/2", "/error", "/nope"] {
        let req = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        app.clone().oneshot(req).await.unwrap();
    }
    tracing::warn!("one warning for log_events_total");
    tokio::time::sleep(Duration::from_millis(50)).await;

    let addr = guard.metrics_addr().unwrap();
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("http_server_request_duration_seconds_bucket"));

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool not found: run `bash .ci/install-tools.sh` (Debian package `prometheus`)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool rejected the metrics:\n{report}\n---\n{text}"
    );
}

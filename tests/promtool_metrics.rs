//! The `/metrics` text passes `promtool check metrics` (Debian's `prometheus`
//! package, installed by `scripts/test-all.sh`).

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use axum::{Router, routing::get};
use glimpse_obs::{
    Config, audit,
    business::{self, PaymentStatus},
    cache, db, security,
    testing::SharedBuffer,
    ws,
};
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
    // Every domain helper, so each metric family of the catalogue is checked
    // (revenue is a float counter rendered outside the recorder).
    let conn = ws::Connection::open("chat");
    conn.sent();
    conn.received();
    conn.latency(Duration::from_millis(20));
    conn.close(Some(1000));
    db::query("get_user", async { Ok::<_, std::io::Error>(1) })
        .await
        .unwrap();
    db::record_pool("main", 3, 2, 10);
    business::user_registered("email");
    business::match_created();
    business::message_sent("text");
    business::payment_processed("stripe", "EUR", 1299, PaymentStatus::Succeeded);
    business::payment_processed("stripe", "JPY", 500, PaymentStatus::Failed);
    business::feature_used("super_like");
    business::conversion("premium", "purchased");
    audit::payment_transaction("user-1", "pay_1", 1299, "EUR", PaymentStatus::Succeeded);
    security::auth_failed("invalid_password");
    security::api_key_used("key-1");
    security::admin_action("user.ban");
    cache::hit("profiles");
    cache::miss("profiles");
    tokio::time::sleep(Duration::from_millis(50)).await;

    let addr = guard.metrics_addr().unwrap();
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "http_server_request_duration_seconds_bucket",
        "websocket_messages_total",
        "websocket_connection_duration_seconds_bucket",
        "websocket_message_latency_seconds_bucket",
        "db_query_duration_seconds_bucket",
        "db_pool_connections_max",
        "glimpse_payments_total",
        "glimpse_conversions_total",
        "glimpse_admin_actions_total",
        "cache_requests_total",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    assert!(
        text.contains("# TYPE glimpse_payment_amount_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"glimpse_payment_amount_total{service="promtool-test",env="development",currency="EUR"} 12.99"#
        ),
        "{text}"
    );

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

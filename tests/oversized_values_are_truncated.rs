//! Unbounded sizes: a 390 KB bearer recorded as `userId`, a 200 KB field
//! value and a 200 KB message come out capped (`log_field_max_bytes`, and
//! 128 bytes for `userId`), each marked with the `…[truncated]` suffix.

mod common;

use axum::{Router, routing::get};
use glimpse_obs::{Config, logging::redact::TRUNCATED_SUFFIX, testing::SharedBuffer};
use tower::ServiceExt;

#[tokio::test]
async fn oversized_user_ids_field_values_and_messages_are_cut_and_marked() {
    let logs = SharedBuffer::new();
    let _guard = Config::default()
        .metrics_addr(None)
        .log_field_max_bytes(1000)
        .log_writer(logs.clone())
        .init()
        .unwrap();
    let app: Router = Router::new()
        .route(
            "/",
            get(|| async {
                glimpse_obs::record_user_id("u".repeat(390 * 1024));
                let big = "é".repeat(100 * 1024); // 200 KB, two bytes a char
                tracing::info!(shown = %big, plain = big.as_str(), "msg {big}");
                "ok"
            }),
        )
        .layer(glimpse_obs::layer());
    let req = axum::http::Request::get("/")
        .body(axum::body::Body::empty())
        .unwrap();
    app.oneshot(req).await.unwrap();
    _guard.flush(std::time::Duration::from_secs(5));

    let text = logs.contents();
    assert!(text.len() < 16 * 1024, "{} bytes of log", text.len());
    let lines = common::strict_lines(&text);
    let line = lines
        .iter()
        .find(|l| l["message"].as_str().is_some_and(|m| m.starts_with("msg ")))
        .unwrap();
    for key in ["shown", "plain", "message"] {
        let v = line[key].as_str().unwrap();
        assert!(v.ends_with(TRUNCATED_SUFFIX), "{key}");
        assert!(
            v.len() <= 1000 + TRUNCATED_SUFFIX.len(),
            "{key}: {}",
            v.len()
        );
        assert!(
            v.len() >= 990,
            "{key}: cut near the cap, at a char boundary"
        );
    }
    let user = line["userId"].as_str().unwrap();
    assert!(user.ends_with(TRUNCATED_SUFFIX));
    assert!(user.len() <= 128 + TRUNCATED_SUFFIX.len(), "{}", user.len());
    let access = lines
        .iter()
        .find(|l| l["message"] == "request completed")
        .unwrap();
    assert_eq!(access["userId"], user);
}

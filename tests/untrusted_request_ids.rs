//! Forged identity: behind `trust_request_id(false)` a caller's
//! `x-request-id` is never the request's ID (not logged as `requestId`, not
//! echoed, not what handlers see); it is kept as `clientRequestId`. The
//! default layer still trusts it.

mod common;

use axum::{Router, routing::get};
use glimpse_obs::{Config, RequestId, testing::SharedBuffer};
use tower::ServiceExt;

fn app(trust: bool) -> Router {
    Router::new()
        .route(
            "/pay",
            get(|id: RequestId| async move {
                tracing::info!(audit = true, "payment audited");
                id.to_string()
            }),
        )
        .layer(glimpse_obs::layer().trust_request_id(trust))
}

async fn call(app: Router, id: &str) -> (String, String) {
    let req = axum::http::Request::get("/pay")
        .header("x-request-id", id)
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    (echoed, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn an_untrusting_layer_keeps_the_callers_id_only_as_client_request_id() {
    let logs = SharedBuffer::new();
    let guard = Config::default()
        .metrics_addr(None)
        .log_writer(logs.clone())
        .init()
        .unwrap();

    let (echoed, seen) = call(app(false), "victims-request-42").await;
    assert_ne!(echoed, "victims-request-42");
    assert_eq!(echoed, seen, "handlers see our ID");
    let (trusted, _) = call(app(true), "trusted-7").await;
    assert_eq!(trusted, "trusted-7", "the default layer keeps trusting");
    guard.flush(std::time::Duration::from_secs(5));

    let lines = common::strict_lines(&logs.contents());
    let ours: Vec<_> = lines
        .iter()
        .filter(|l| l["clientRequestId"] == "victims-request-42")
        .collect();
    assert_eq!(ours.len(), 2, "the audit line and the access line");
    for l in ours {
        assert_eq!(l["requestId"], echoed.as_str());
    }
    assert!(!lines.iter().any(|l| l["requestId"] == "victims-request-42"));
    let trusted_line = lines
        .iter()
        .find(|l| l["requestId"] == "trusted-7")
        .unwrap();
    assert!(trusted_line.get("clientRequestId").is_none());
}

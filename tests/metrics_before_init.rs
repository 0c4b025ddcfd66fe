//! A route served, or a helper called, before `init` still gets live
//! metrics once `init` ran: nothing resolved against the no-op recorder is
//! kept.

mod common;

use axum::{Router, body::Body, http::Request, routing::get};
use common::metric_value;
use glimpse_obs::{
    Config,
    business::{self, PaymentStatus},
    testing::SharedBuffer,
};
use tower::ServiceExt;

async fn call(app: &Router, path: &str) {
    let req = Request::get(path).body(Body::empty()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn routes_and_helpers_used_before_init_are_counted_after_init() {
    let app: Router = Router::new()
        .route("/early/{id}", get(|| async { "x" }))
        .layer(glimpse_obs::layer());
    call(&app, "/early/1").await;
    business::feature_used("early");
    business::payment_processed("stripe", "EUR", 500, PaymentStatus::Succeeded);

    let guard = Config::default()
        .service("before-init")
        .metrics_addr(None)
        .process_metrics(false)
        .log_writer(SharedBuffer::new())
        .init()
        .unwrap();
    call(&app, "/early/2").await;
    business::feature_used("early");
    business::payment_processed("stripe", "EUR", 1299, PaymentStatus::Succeeded);

    let text = guard.render_metrics();
    let route = [("method", "GET"), ("route", "/early/{id}")];
    assert_eq!(
        metric_value(&text, "http_server_request_duration_seconds_count", &route),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "http_server_active_requests", &route),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "glimpse_feature_usage_total",
            &[("feature", "early")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &text,
            "glimpse_payment_amount_total",
            &[("currency", "EUR")]
        ),
        Some(12.99)
    );
}

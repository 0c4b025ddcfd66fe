//! With another subscriber installed first, `init` fails with `GlobalTaken`
//! and installs nothing, and the tower layer's access events still carry
//! method, route, status and duration as fields the foreign subscriber
//! formats. Its own process: the global subscriber is set once.

use std::time::Duration;

use axum::{Router, body::Body, routing::get};
use glimpse_obs::{Config, Error, testing::SharedBuffer};
use http::Request;
use serde_json::Value;
use tower::ServiceExt;

#[tokio::test]
async fn a_foreign_subscriber_gets_complete_access_events_and_init_installs_nothing() {
    let foreign = SharedBuffer::new();
    let writer = foreign.clone();
    tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .init();

    let err = Config::default()
        .metrics_addr(None)
        .log_writer(SharedBuffer::new())
        .init()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::GlobalTaken {
                what: "tracing subscriber"
            }
        ),
        "{err}"
    );
    // The recorder slot is still free: a telemetry can take it.
    let telemetry = Config::default()
        .metrics_addr(None)
        .log_writer(SharedBuffer::new())
        .build()
        .unwrap();
    telemetry.install_recorder().unwrap();

    let app = Router::new()
        .route("/profiles/{id}", get(|| async { "a profile" }))
        .layer(glimpse_obs::layer());
    let resp = app
        .oneshot(Request::get("/profiles/9").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    std::thread::sleep(Duration::from_millis(50));

    let text = foreign.contents();
    let access: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["fields"]["message"] == "request completed")
        .unwrap_or_else(|| panic!("no access event in {text}"));
    let fields = &access["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["route"], "/profiles/{id}");
    assert_eq!(fields["path"], "/profiles/9");
    assert_eq!(fields["http_status"], 200);
    assert!(fields["response_time"].as_f64().unwrap() >= 0.0, "{fields}");
    assert_eq!(access["target"], "glimpse_obs::access");
    // And the HTTP metrics went to the recorder installed above.
    assert!(
        telemetry
            .render_metrics()
            .contains("http_server_request_duration_seconds_count{"),
    );
}

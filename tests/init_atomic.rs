//! `init` is atomic: each fallible step that fails leaves nothing global
//! installed, and a corrected retry succeeds. Its own process: `init`
//! succeeds once per process.

use std::time::Duration;

use glimpse_obs::{Config, Error, testing::SharedBuffer};

/// Nothing global is installed: no subscriber, and the free metrics handler
/// answers that glimpse_obs is not initialised.
async fn assert_nothing_installed() {
    assert!(
        !tracing::dispatcher::has_been_set(),
        "a failed init set the subscriber"
    );
    use axum::response::IntoResponse;
    let resp = glimpse_obs::metrics_handler(Default::default())
        .await
        .into_response();
    assert_eq!(resp.status(), 503, "a failed init installed the recorder");
}

#[tokio::test]
async fn each_failing_step_leaves_nothing_installed_and_a_corrected_retry_logs() {
    // The metrics port is busy.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = Config::default()
        .metrics_addr(Some(busy.local_addr().unwrap()))
        .log_writer(SharedBuffer::new())
        .init()
        .unwrap_err();
    assert!(matches!(err, Error::MetricsBind { .. }), "{err}");
    assert_nothing_installed().await;

    // The span exporter cannot be built (its CA file is missing), after the
    // port was bound and the writer started.
    let err = Config::default()
        .metrics_addr(Some("127.0.0.1:0".parse().unwrap()))
        .otlp_endpoint(Some("https://collector.invalid:4317".into()))
        .otlp_certificate("/nonexistent/glimpse-ca.pem")
        .log_writer(SharedBuffer::new())
        .init();
    if let Err(err) = &err {
        assert!(
            matches!(err, Error::InvalidEnv { name, .. } if *name == "OTEL_EXPORTER_OTLP_CERTIFICATE"),
            "{err}"
        );
        assert_nothing_installed().await;
    } else {
        panic!("a span exporter whose CA file is missing must fail");
    }
    drop(err);

    // Corrected: everything installs, on a free port, and logs.
    let logs = SharedBuffer::new();
    let guard = Config::default()
        .metrics_addr(Some("127.0.0.1:0".parse().unwrap()))
        .log_writer(logs.clone())
        .init()
        .unwrap();
    assert!(tracing::dispatcher::has_been_set());
    tracing::info!("installed after two failures");
    assert!(guard.flush(Duration::from_secs(5)));
    assert!(logs.contents().contains("installed after two failures"));
    let scrape = reqwest::get(format!("http://{}/metrics", guard.metrics_addr().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(scrape.contains("glimpse_build_info"), "{scrape}");
}

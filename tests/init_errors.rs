//! `init` errors: busy port, second call, bad configuration.

use std::time::Duration;

use glimpse_obs::{Config, Error, testing::SharedBuffer};

#[test]
fn init_reports_a_busy_port_then_succeeds_once_and_refuses_a_second_call() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let err = Config::default()
        .metrics_addr(Some(addr))
        .log_writer(SharedBuffer::new())
        .init()
        .unwrap_err();
    assert!(matches!(err, Error::MetricsBind { .. }));
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    // A failed init installed nothing global: a corrected one works.
    let buf = SharedBuffer::new();
    let guard = Config::default()
        .metrics_addr(Some("127.0.0.1:0".parse().unwrap()))
        .log_writer(buf.clone())
        .init()
        .unwrap();
    let scrape_addr = guard.metrics_addr().unwrap();
    assert_ne!(scrape_addr.port(), 0);

    let err = glimpse_obs::init().unwrap_err();
    assert!(matches!(err, Error::AlreadyInitialized));
    assert!(err.to_string().contains("already initialised"), "{err}");
    let err = Config::default().init().unwrap_err();
    assert!(matches!(err, Error::AlreadyInitialized));

    tracing::info!("still logging after the refused second init");
    assert!(guard.flush(Duration::from_secs(5)));
    assert!(
        buf.contents()
            .contains("still logging after the refused second init")
    );
}

#[test]
fn bad_values_are_errors_naming_the_variable_and_value() {
    let err = Config::from_lookup(|n| (n == "GLIMPSE_METRICS_ADDR").then(|| "nowhere:port".into()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid value \"nowhere:port\" for environment variable GLIMPSE_METRICS_ADDR: \
         expected host:port such as 0.0.0.0:9464, or off"
    );
    let err = Config::default().log_filter("=^=").unwrap_err();
    assert!(
        err.to_string().starts_with("invalid log filter \"=^=\""),
        "{err}"
    );
    let err = Config::default().log_sample("/feed", 1.5).unwrap_err();
    assert!(err.to_string().contains("1.5"), "{err}");
}

//! Shutdown is bounded by `Config::shutdown_timeout`, whatever a scrape
//! client does.

use std::{
    io::Write,
    net::TcpStream,
    time::{Duration, Instant},
};

use glimpse_obs::{Config, Error, testing::SharedBuffer};

#[test]
fn a_stalled_scrape_connection_does_not_hold_shutdown_past_its_timeout() {
    let timeout = Duration::from_secs(1);
    let guard = Config::default()
        .service("shutdown-test")
        .metrics_addr(Some("127.0.0.1:0".parse().unwrap()))
        .process_metrics(false)
        .shutdown_timeout(timeout)
        .log_writer(SharedBuffer::new())
        .init()
        .unwrap();
    let addr = guard.metrics_addr().unwrap();

    // A scrape that never finishes its request: headers without the blank
    // line that ends them.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: glimpse\r\n")
        .unwrap();
    // Let the listener accept it and start reading.
    std::thread::sleep(Duration::from_millis(200));

    let start = Instant::now();
    let result = guard.shutdown();
    let took = start.elapsed();
    assert!(
        took < timeout + Duration::from_millis(500),
        "shutdown took {took:?} (timeout {timeout:?}): {result:?}"
    );
    // The scrape was cut off, and shutdown says so.
    assert!(
        matches!(result, Err(Error::ShutdownTimeout(t)) if t == timeout),
        "{result:?}"
    );
    drop(stalled);
}

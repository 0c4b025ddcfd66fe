//! A stdout that stops reading never stalls the service.

mod common;

use std::{
    io::Read,
    time::{Duration, Instant},
};

use glimpse_obs::{Config, Error};

#[test]
fn a_stdout_nobody_reads_drops_and_counts_info_lines_without_deadlock() {
    // A real pipe whose reader never reads: writes block once the kernel buffer is full.
    let (mut reader, writer) = std::io::pipe().unwrap();
    let guard = Config::default()
        .metrics_addr(None)
        .log_queue_bytes(64 * 1024)
        .shutdown_timeout(Duration::from_millis(500))
        .log_writer(writer)
        .init()
        .unwrap();

    let start = Instant::now();
    for i in 0..50_000u32 {
        tracing::info!(
            i,
            padding = "................................................",
            "flood"
        );
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(20),
        "emitting code kept running ({elapsed:?})"
    );
    assert!(guard.dropped_log_lines() > 0, "overflow is counted");
    let text = guard.render_metrics();
    let dropped =
        common::metric_value(&text, "glimpse_obs_dropped_total", &[("signal", "logs")]).unwrap();
    assert!(dropped as u64 >= guard.dropped_log_lines(), "{text}");

    // ERROR lines while stdout is stuck: each waits at most ~1 s once, then the
    // writer is known stuck and later ones return at once (counted as dropped).
    let start = Instant::now();
    for _ in 0..100 {
        tracing::error!("failure while stdout is stuck");
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "a stuck stdout does not stall error paths"
    );

    // Shutdown is bounded and reports the timeout instead of hanging.
    let start = Instant::now();
    match guard.shutdown() {
        Err(Error::ShutdownTimeout(_)) => {}
        other => panic!("expected a shutdown timeout, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(3));

    // What did reach the pipe is whole JSON lines.
    let mut got = vec![0u8; 16 * 1024];
    let n = reader.read(&mut got).unwrap();
    let first = String::from_utf8_lossy(&got[..n]);
    let first_line = first.lines().next().unwrap();
    let v: serde_json::Value = serde_json::from_str(first_line).unwrap();
    assert_eq!(v["message"], "flood");
}

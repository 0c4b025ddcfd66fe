//! Dropping the guard writes every queued line.

mod common;

use glimpse_obs::{Config, testing::SharedBuffer};

#[test]
fn all_100_000_lines_are_in_the_output_after_the_guard_drops() {
    let buf = SharedBuffer::new();
    let guard = Config::default()
        .metrics_addr(None)
        .log_queue_bytes(64 << 20)
        .log_writer(buf.clone())
        .init()
        .unwrap();
    for i in 0..100_000u32 {
        tracing::info!(i, "line");
    }
    drop(guard);
    let lines = common::strict_lines(&buf.contents());
    assert_eq!(lines.len(), 100_000);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["i"], i as u64, "lines stay in order");
    }
}

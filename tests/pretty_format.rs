//! `GLIMPSE_LOG_FORMAT=pretty`: readable, coloured lines for local development.

use std::time::Duration;

use glimpse_obs::{Config, LogFormat, testing::SharedBuffer};

#[test]
fn pretty_format_prints_readable_coloured_records_not_json() {
    let config =
        Config::from_lookup(|n| (n == "GLIMPSE_LOG_FORMAT").then(|| "pretty".into())).unwrap();
    let buf = SharedBuffer::new();
    let guard = config
        .metrics_addr(None)
        .log_writer(buf.clone())
        .init()
        .unwrap();
    tracing::info_span!("checkout", cart = 3)
        .in_scope(|| tracing::warn!(amount = 12, password = "hunter2", "card declined"));
    assert!(guard.flush(Duration::from_secs(5)));
    let out = buf.contents();
    assert!(!out.trim_start().starts_with('{'), "{out}");
    assert!(out.contains("card declined"), "{out}");
    assert!(out.contains("WARN"), "{out}");
    assert!(out.contains("amount"), "{out}");
    assert!(out.contains("checkout"), "span context shown: {out}");
    assert!(out.contains('\u{1b}'), "coloured for terminals: {out:?}");
    assert!(!out.contains("hunter2"), "redacted as in JSON: {out}");
    assert!(out.contains("[REDACTED]"), "{out}");
    let metrics = guard.render_metrics();
    assert!(
        metrics.lines().any(|l| l.starts_with("log_events_total{")
            && l.contains("level=\"WARN\"")
            && l.ends_with(" 1")),
        "log_events_total counted in pretty mode too: {metrics}"
    );
    let _ = LogFormat::Pretty;
}

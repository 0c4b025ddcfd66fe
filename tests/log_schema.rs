//! The JSON line schema: every field, hostile strings, redaction, no duplicate keys.

mod common;

use std::{sync::OnceLock, time::Duration};

use common::{is_rfc3339_micros_utc, metric_value, strict_lines};
use glimpse_obs::{Config, Guard, testing::SharedBuffer};
use serde_json::Value;

fn obs() -> &'static (Guard, SharedBuffer) {
    static OBS: OnceLock<(Guard, SharedBuffer)> = OnceLock::new();
    OBS.get_or_init(|| {
        let buf = SharedBuffer::new();
        let guard = Config::default()
            .service("schema-test")
            .metrics_addr(None)
            .log_filter("trace")
            .unwrap()
            .log_writer(buf.clone())
            .init()
            .unwrap();
        (guard, buf)
    })
}

/// Emit inside a uniquely named span and return that span's lines.
fn lines_of(tag: &str, f: impl FnOnce()) -> Vec<Value> {
    let (guard, buf) = obs();
    tracing::info_span!("test", tag).in_scope(f);
    assert!(guard.flush(Duration::from_secs(5)));
    strict_lines(&buf.contents())
        .into_iter()
        .filter(|l| l["tag"] == tag)
        .collect()
}

#[test]
fn every_line_carries_the_schema_fields_with_rfc3339_utc_timestamps() {
    let lines = lines_of("schema", || {
        tracing::error!("e");
        tracing::warn!("w");
        tracing::info!(user_count = 3, "i");
        tracing::debug!("d");
        tracing::trace!("t");
    });
    let levels: Vec<&str> = lines.iter().map(|l| l["level"].as_str().unwrap()).collect();
    assert_eq!(levels, ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]);
    for l in &lines {
        assert!(
            is_rfc3339_micros_utc(l["timestamp"].as_str().unwrap()),
            "{l}"
        );
        assert_eq!(l["service"], "schema-test");
        assert_eq!(l["target"], "log_schema");
        assert!(l["message"].is_string());
    }
    assert_eq!(lines[2]["message"], "i");
    assert_eq!(lines[2]["user_count"], 3);
    assert_eq!(lines[2]["log_type"], "system");
    assert_eq!(lines[3]["log_type"], "debug");
    assert_eq!(lines[4]["log_type"], "debug");
}

#[test]
fn event_and_span_fields_are_flattened_inner_first_without_duplicates() {
    let lines = lines_of("flatten", || {
        let outer = tracing::info_span!("outer", a = "outer", b = 1);
        let _o = outer.enter();
        let inner = tracing::info_span!("inner", a = "inner", c = true);
        let _i = inner.enter();
        tracing::info!(b = 2, d = 1.5, "x");
    });
    let l = &lines[0];
    assert_eq!(l["a"], "inner", "inner span wins over outer");
    assert_eq!(l["b"], 2, "event wins over spans");
    assert_eq!(l["c"], true);
    assert_eq!(l["d"], 1.5);
}

#[test]
fn user_fields_never_overwrite_reserved_keys() {
    let lines = lines_of("reserved", || {
        tracing::info!(
            service = "evil",
            level = "DEBUG",
            timestamp = "never",
            requestId = "forged",
            "hello"
        );
    });
    let l = &lines[0];
    assert_eq!(l["service"], "schema-test");
    assert_eq!(l["level"], "INFO");
    assert_ne!(l["timestamp"], "never");
    assert!(l.get("requestId").is_none());
    assert_eq!(l["fields.service"], "evil");
    assert_eq!(l["fields.requestId"], "forged");
}

#[test]
fn log_type_field_selects_the_retention_class() {
    let lines = lines_of("logtype", || {
        tracing::info!(log_type = "payment", "charged");
        tracing::info!(log_type = "bogus", "kept as a field");
    });
    assert_eq!(lines[0]["log_type"], "payment");
    assert_eq!(lines[1]["log_type"], "system");
    assert_eq!(lines[1]["fields.log_type"], "bogus");
}

#[test]
fn hostile_strings_stay_inside_one_valid_json_line() {
    let hostile = "line1\r\nline2\n{\"level\":\"ERROR\"}\u{1b}[31mred\u{1b}[0m\t\"quoted\"\\ \u{0}\u{7f}\u{2028}";
    let big = "x".repeat(1 << 20);
    let lines = lines_of("hostile", || {
        tracing::info!(field = hostile, "{hostile}");
        tracing::info!(big = %big, "big");
        tracing::info!(bytes = &b"ok\xff\xfe"[..], "bytes");
    });
    assert_eq!(lines.len(), 3, "each event is exactly one line");
    assert_eq!(lines[0]["message"], hostile);
    assert_eq!(lines[0]["field"], hostile);
    // One line, cut at `log_field_max_bytes` (4096 by default) and marked.
    let suffix = glimpse_obs::logging::redact::TRUNCATED_SUFFIX;
    let big = lines[1]["big"].as_str().unwrap();
    assert_eq!(big.len(), 4096 + suffix.len());
    assert!(big.ends_with(suffix));
    let (_, buf) = obs();
    assert!(
        !buf.contents().contains('\u{1b}'),
        "no raw ESC reaches the output"
    );
}

#[test]
fn sensitive_fields_are_redacted_everywhere() {
    let lines = lines_of("redact", || {
        let span = tracing::info_span!("login", session_token = "tok-SPAN-123");
        let _e = span.enter();
        tracing::info!(
            password = "hunter2-SECRET",
            Authorization = "Bearer abc.SECRET",
            api_key = "key-SECRET",
            card_number = 4111111111111111u64,
            cvv = 123,
            user = "alice",
            "login attempt"
        );
    });
    let l = &lines[0];
    for k in [
        "password",
        "Authorization",
        "api_key",
        "card_number",
        "cvv",
        "session_token",
    ] {
        assert_eq!(l[k], "[REDACTED]", "{k}");
    }
    assert_eq!(l["user"], "alice");
    let (_, buf) = obs();
    let all = buf.contents();
    for secret in [
        "hunter2",
        "abc.SECRET",
        "key-SECRET",
        "4111111111111111",
        "tok-SPAN",
    ] {
        assert!(!all.contains(secret), "{secret} leaked");
    }
}

#[test]
fn log_events_are_counted_by_level() {
    let (guard, _) = obs();
    let before = metric_value(
        &guard.render_metrics(),
        "log_events_total",
        &[("level", "WARN")],
    )
    .unwrap_or(0.0);
    lines_of("count", || {
        for _ in 0..7 {
            tracing::warn!("careful");
        }
    });
    let after = metric_value(
        &guard.render_metrics(),
        "log_events_total",
        &[("level", "WARN")],
    )
    .unwrap();
    assert!(after - before >= 7.0, "{before} -> {after}");
    assert!(guard.render_metrics().contains("service=\"schema-test\""));
}

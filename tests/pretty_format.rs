//! `GLIMPSE_LOG_FORMAT=pretty`: readable, coloured lines for local development,
//! with a short span prefix and the request's traceId, userId and requestId.

use std::{sync::OnceLock, time::Duration};

use axum::{Router, body::Body, http::Request, routing::get};
use glimpse_obs::{Config, Guard, LogFormat, testing::SharedBuffer};
use tower::ServiceExt;

fn obs() -> &'static (Guard, SharedBuffer) {
    static OBS: OnceLock<(Guard, SharedBuffer)> = OnceLock::new();
    OBS.get_or_init(|| {
        let config =
            Config::from_lookup(|n| (n == "GLIMPSE_LOG_FORMAT").then(|| "pretty".into())).unwrap();
        let buf = SharedBuffer::new();
        let guard = config
            .metrics_addr(None)
            .runtime_metrics(false)
            .log_writer(buf.clone())
            .init()
            .unwrap();
        (guard, buf)
    })
}

#[test]
fn pretty_format_prints_readable_coloured_records_not_json() {
    let (guard, buf) = obs();
    tracing::info_span!("checkout", cart = 3)
        .in_scope(|| tracing::warn!(amount = 12, password = "hunter2", "card declined"));
    assert!(guard.flush(Duration::from_secs(5)));
    let out = buf.contents();
    let line = out.lines().find(|l| l.contains("card declined")).unwrap();
    assert!(!line.trim_start().starts_with('{'), "{line}");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("amount"), "{line}");
    assert!(
        line.contains("checkout{cart=3}"),
        "span context shown: {line}"
    );
    assert!(line.contains('\u{1b}'), "coloured for terminals: {line:?}");
    assert!(!line.contains("hunter2"), "redacted as in JSON: {line}");
    assert!(line.contains("[REDACTED]"), "{line}");
    let metrics = guard.render_metrics();
    assert!(
        metrics.lines().any(|l| l.starts_with("log_events_total{")
            && l.contains("level=\"WARN\"")
            && l.ends_with(" 1")),
        "log_events_total counted in pretty mode too: {metrics}"
    );
    let _ = LogFormat::Pretty;
}

#[tokio::test]
async fn lines_of_a_request_show_trace_id_and_user_id_after_a_short_span_prefix() {
    let (guard, buf) = obs();
    let app: Router = Router::new()
        .route(
            "/users/{id}",
            get(|| async {
                glimpse_obs::record_user_id("user123");
                let long = "x".repeat(200);
                tracing::info_span!("load_profile", query = %long).in_scope(|| {
                    tracing::info!(cache = "miss", "profile loaded");
                });
                "ok"
            }),
        )
        .layer(glimpse_obs::layer());
    let res = app
        .oneshot(
            Request::get("/users/42")
                .header("x-request-id", "req-pretty-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(guard.flush(Duration::from_secs(5)));
    let out = buf.contents();
    let strip = |l: &str| {
        // Without the colour codes, as a terminal shows it.
        let mut s = String::new();
        let mut chars = l.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            } else {
                s.push(c);
            }
        }
        s
    };
    for message in ["profile loaded", "request completed"] {
        let line = strip(out.lines().find(|l| l.contains(message)).unwrap());
        let trace = line
            .split("traceId=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no traceId: {line}"));
        assert_eq!(trace.len(), 32, "{line}");
        assert!(trace.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");
        assert!(line.contains("userId=user123"), "{line}");
        assert!(line.contains("requestId=req-pretty-1"), "{line}");
        let prefix = &line[..line.find(message).unwrap()];
        assert!(
            prefix.chars().count() < 160,
            "short span prefix ({} chars): {line}",
            prefix.chars().count()
        );
        assert!(!prefix.contains("otel.name"), "{line}");
    }
    let loaded = strip(out.lines().find(|l| l.contains("profile loaded")).unwrap());
    assert!(loaded.contains("request > load_profile{query="), "{loaded}");
    assert!(loaded.contains("…}"), "long span fields cut: {loaded}");
    // A real sample for docs/logging.md.
    println!("{out}");
}

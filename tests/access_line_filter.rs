//! The access line and the level filter: the line the layer writes straight
//! into the JSON log (when the filter's answer is known from target and
//! level) is the line event dispatch writes (when it depends on the span),
//! and every filter change reaches it.

mod common;

use std::time::Duration;

use axum::{Router, routing::get};
use common::{metric_value, strict_lines};
use glimpse_obs::{Config, Guard, testing::SharedBuffer};
use serde_json::Value;
use tower::ServiceExt;
use tracing::Instrument;

fn app() -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(80)).await;
                "slow"
            }),
        )
        .route(
            "/boom",
            get(|| async { (http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/warns",
            get(|| async {
                tracing::warn!("handler warning");
                "ok"
            }),
        )
        .layer(glimpse_obs::layer().slow_request(Duration::from_millis(40)))
}

/// One request inside an outer span with a field, as a server's
/// per-connection span would be.
async fn get_path(path: &str) {
    let req = http::Request::get(path)
        .header("x-request-id", "req-filter-1")
        .body(axum::body::Body::empty())
        .unwrap();
    app()
        .oneshot(req)
        .instrument(tracing::info_span!("connection", shard = 3))
        .await
        .unwrap();
}

/// The lines written since the last call.
fn all_lines(guard: &Guard, logs: &SharedBuffer) -> Vec<Value> {
    assert!(guard.flush(Duration::from_secs(5)));
    let lines = strict_lines(&logs.contents());
    logs.clear();
    lines
}

/// The access lines written since the last call.
fn access_lines(guard: &Guard, logs: &SharedBuffer) -> Vec<Value> {
    all_lines(guard, logs)
        .into_iter()
        .filter(|l| l["target"] == glimpse_obs::ACCESS_TARGET)
        .collect()
}

/// `line` without the values that differ between two requests.
fn stable(line: &Value) -> Value {
    let mut l = line.clone();
    let o = l.as_object_mut().unwrap();
    for k in ["timestamp", "response_time", "traceId", "spanId"] {
        assert!(o.remove(k).is_some(), "{k} missing from {line}");
    }
    l
}

#[tokio::test(flavor = "current_thread")]
async fn access_lines_follow_every_filter_and_read_the_same_either_way() {
    let logs = SharedBuffer::new();
    let guard = Config::default()
        .service("filter-test")
        .metrics_addr(None)
        .log_writer(logs.clone())
        .init()
        .unwrap();
    let info_events = || {
        metric_value(
            &guard.render_metrics(),
            "log_events_total",
            &[("level", "INFO")],
        )
        .unwrap_or(0.0)
    };

    // "info": known from target and level, the line is written directly.
    let before = info_events();
    get_path("/users/7").await;
    let direct = access_lines(&guard, &logs);
    assert_eq!(direct.len(), 1, "{direct:?}");
    assert_eq!(info_events() - before, 1.0, "the direct line is counted");

    // A span directive: only the filter, at dispatch, knows; the event is
    // dispatched and must give the same line.
    guard.set_filter("warn,[connection]=info").unwrap();
    get_path("/users/7").await;
    let dispatched = access_lines(&guard, &logs);
    assert_eq!(dispatched.len(), 1, "{dispatched:?}");
    assert_eq!(stable(&direct[0]), stable(&dispatched[0]));

    let line = &direct[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["message"], "request completed");
    assert_eq!(line["service"], "filter-test");
    assert_eq!(line["log_type"], "system");
    assert_eq!(line["requestId"], "req-filter-1");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/users/{id}");
    assert_eq!(line["path"], "/users/7");
    assert_eq!(line["http_status"], 200);
    assert_eq!(line["shard"], 3, "fields of the spans around the request");
    assert!(line["response_time"].as_f64().unwrap() >= 0.0);
    assert_eq!(line["traceId"].as_str().unwrap().len(), 32);
    assert_eq!(line["spanId"].as_str().unwrap().len(), 16);

    // The access target at WARN: INFO lines go, slow (WARN) lines stay.
    guard.set_filter("info,glimpse_obs::access=warn").unwrap();
    get_path("/users/7").await;
    get_path("/slow").await;
    let lines = access_lines(&guard, &logs);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["level"], "WARN");
    assert_eq!(lines[0]["route"], "/slow");

    // Off: no access line, nothing counted.
    guard.set_filter("off").unwrap();
    let before = info_events();
    get_path("/users/7").await;
    get_path("/slow").await;
    assert_eq!(access_lines(&guard, &logs), Vec::<Value>::new());
    assert_eq!(info_events(), before);

    // "warn" disables the INFO server span for the log, yet every line of
    // the request keeps its request ID and trace IDs: the slow line written
    // directly, the 5xx line dispatched as an event, a handler's warning.
    guard.set_filter("warn").unwrap();
    get_path("/slow").await;
    get_path("/boom").await;
    get_path("/warns").await;
    let lines = all_lines(&guard, &logs);
    let levels: Vec<&str> = lines.iter().map(|l| l["level"].as_str().unwrap()).collect();
    assert_eq!(levels, ["WARN", "ERROR", "WARN"], "{lines:?}");
    assert_eq!(lines[2]["message"], "handler warning");
    for l in &lines {
        assert_eq!(l["requestId"], "req-filter-1", "{l}");
        assert_eq!(l["traceId"].as_str().unwrap().len(), 32, "{l}");
        assert_eq!(l["spanId"].as_str().unwrap().len(), 16, "{l}");
        // The connection span was disabled for the log: no fields of it.
        assert!(l.get("shard").is_none(), "{l}");
    }
    let keys = |l: &Value| -> Vec<String> { l.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(
        keys(&lines[0]),
        keys(&lines[1]),
        "direct and dispatched lines"
    );

    // The same while another thread holds a scoped dispatcher (a test's
    // `with_default`, say), which changes how the current dispatcher is
    // found process-wide.
    let (hold, release) = std::sync::mpsc::channel::<()>();
    let (held, is_held) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let _scoped =
            tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
        held.send(()).unwrap();
        release.recv().unwrap();
    });
    is_held.recv().unwrap();
    get_path("/warns").await;
    get_path("/boom").await;
    hold.send(()).unwrap();
    other.join().unwrap();
    let lines = all_lines(&guard, &logs);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for l in &lines {
        assert_eq!(l["requestId"], "req-filter-1", "{l}");
        assert_eq!(l["traceId"].as_str().unwrap().len(), 32, "{l}");
    }

    // Back on.
    guard.set_filter("info").unwrap();
    get_path("/users/7").await;
    assert_eq!(access_lines(&guard, &logs).len(), 1);
}

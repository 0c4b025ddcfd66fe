//! `/health/ready`: 200 when every check passes, 503 with the failing one
//! named in the JSON body; a check hanging past its timeout is down and
//! does not hold the probe; answers are cached for the interval (a probe
//! storm runs the checks once); the check metrics; the probes stay out of
//! the access log and the HTTP metrics; the metrics listener serves both
//! probes with the guard's health state.

mod common;

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Body, http::Request, routing::get};
use common::metric_value;
use glimpse_obs::{Config, Guard, health::Health, testing::SharedBuffer};
use serde_json::Value;
use tower::ServiceExt;

fn obs() -> &'static (Guard, SharedBuffer) {
    static OBS: OnceLock<(Guard, SharedBuffer)> = OnceLock::new();
    OBS.get_or_init(|| {
        let logs = SharedBuffer::new();
        let guard = Config::default()
            .service("health-test")
            .metrics_addr(Some("127.0.0.1:0".parse().unwrap()))
            .process_metrics(false)
            .runtime_metrics(false)
            .log_writer(logs.clone())
            .init()
            .unwrap();
        (guard, logs)
    })
}

async fn get_json(app: &Router, path: &str) -> (u16, Value) {
    let res = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    assert_eq!(res.headers()["content-type"], "application/json");
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn counting(
    calls: &Arc<AtomicUsize>,
) -> impl Fn() -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
    let calls = calls.clone();
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(()))
    }
}

#[tokio::test]
async fn ready_is_200_when_every_check_passes_and_503_naming_the_failing_check_in_json() {
    let (guard, _) = obs();
    let ok = Duration::from_secs(1);
    let passing = Health::new().check("database", ok, || async { Ok::<(), String>(()) });
    let app: Router = passing.router();
    let (status, body) = get_json(&app, "/health/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "up");
    assert_eq!(body["checks"][0]["name"], "database");
    assert_eq!(body["checks"][0]["status"], "up");
    assert!(body["checks"][0]["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(body["checks"][0].get("error").is_none());

    let failing = Health::new()
        .check("database", ok, || async { Ok::<(), String>(()) })
        .check("payments", ok, || async {
            Err::<(), _>(std::io::Error::other("connection refused"))
        });
    let (status, body) = get_json(&failing.router(), "/health/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "down");
    let checks = body["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2, "{body}");
    assert_eq!(checks[0]["status"], "up");
    assert_eq!(checks[1]["name"], "payments");
    assert_eq!(checks[1]["status"], "down");
    assert_eq!(checks[1]["error"], "connection refused");

    let (status, body) = get_json(&failing.router(), "/health/live").await;
    assert_eq!((status, &body["status"]), (200, &Value::from("up")));

    let text = guard.render_metrics();
    assert_eq!(
        metric_value(
            &text,
            "glimpse_health_check_status",
            &[("check", "payments")]
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "glimpse_health_check_status",
            &[("check", "database")]
        ),
        Some(1.0)
    );
    assert!(
        metric_value(
            &text,
            "glimpse_health_check_duration_seconds_count",
            &[("check", "payments")]
        ) >= Some(1.0),
        "{text}"
    );
    assert!(
        text.contains("# HELP glimpse_health_check_status "),
        "{text}"
    );
}

#[tokio::test]
async fn a_check_hanging_past_its_timeout_is_down_and_the_probe_answers_at_the_timeout() {
    let health = Health::new()
        .check("fast", Duration::from_secs(1), || async {
            Ok::<(), String>(())
        })
        .check("hangs", Duration::from_millis(200), || async {
            std::future::pending::<Result<(), String>>().await
        });
    let start = Instant::now();
    let (status, body) = get_json(&health.router(), "/health/ready").await;
    let took = start.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!(
        body["checks"][0]["status"], "up",
        "the others still run: {body}"
    );
    assert_eq!(body["checks"][1]["status"], "down");
    assert_eq!(body["checks"][1]["error"], "timed out after 200 ms");
    let ms = body["checks"][1]["duration_ms"].as_f64().unwrap();
    assert!((200.0..1000.0).contains(&ms), "{ms}");
}

#[tokio::test]
async fn answers_are_cached_for_the_interval_and_a_probe_storm_runs_the_checks_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let health = Health::new().cache_for(Duration::from_millis(300)).check(
        "database",
        Duration::from_secs(1),
        counting(&calls),
    );
    let app: Router = health.router();
    let storm: Vec<_> = (0..50)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { get_json(&app, "/health/ready").await.0 })
        })
        .collect();
    for probe in storm {
        assert_eq!(probe.await.unwrap(), 200);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "50 probes within the interval"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(get_json(&app, "/health/ready").await.0, 200);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the interval passed: checks ran again"
    );

    let uncached = Health::new().cache_for(Duration::ZERO).check(
        "database",
        Duration::from_secs(1),
        counting(&calls),
    );
    let before = calls.load(Ordering::SeqCst);
    for _ in 0..3 {
        uncached.ready_response().await;
    }
    assert_eq!(calls.load(Ordering::SeqCst) - before, 3);
}

#[tokio::test]
async fn probes_stay_out_of_the_access_log_and_the_http_metrics() {
    let (guard, logs) = obs();
    let health = Health::new();
    let app: Router = Router::new()
        .route("/work", get(|| async { "done" }))
        .merge(health.router())
        .layer(glimpse_obs::layer());
    for path in ["/health/live", "/health/ready", "/work"] {
        let res = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    assert!(guard.flush(Duration::from_secs(5)));
    let text = guard.render_metrics();
    assert!(
        metric_value(
            &text,
            "http_server_request_duration_seconds_count",
            &[("route", "/work")]
        )
        .is_some(),
        "the instrumented route is counted: {text}"
    );
    assert!(!text.contains("route=\"/health/"), "{text}");
    let out = logs.contents();
    assert!(out.contains("\"route\":\"/work\""), "{out}");
    assert!(!out.contains("/health/"), "{out}");
}

#[tokio::test]
async fn the_metrics_listener_serves_live_and_ready_from_the_guards_health() {
    let (guard, _) = obs();
    let addr = guard.metrics_addr().unwrap();
    let health = guard.health().cache_for(Duration::ZERO).check(
        "listener-check",
        Duration::from_secs(1),
        || async { Err::<(), _>("down on purpose") },
    );
    let client = reqwest::Client::new();
    let live = client
        .get(format!("http://{addr}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready = client
        .get(format!("http://{addr}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"][0]["name"], "listener-check", "{body}");
    // Same state: the application's router answers alike.
    assert_eq!(health.ready_response().await.status(), 503);
}

//! The tower layer through a real TCP server and HTTP client: request IDs,
//! user IDs, access lines, HTTP metrics and route labels.

mod common;

use std::{net::SocketAddr, sync::OnceLock, time::Duration};

use axum::{
    Router,
    extract::Path,
    routing::{get, post},
};
use common::{metric_value, strict_lines};
use glimpse_obs::{Config, Guard, RequestId, testing::SharedBuffer};
use serde_json::Value;
use tracing::Instrument;

struct Obs {
    guard: Guard,
    logs: SharedBuffer,
}

fn obs() -> &'static Obs {
    static OBS: OnceLock<Obs> = OnceLock::new();
    OBS.get_or_init(|| {
        let logs = SharedBuffer::new();
        let guard = Config::default()
            .service("layer-test")
            .metrics_addr(Some("127.0.0.1:0".parse().unwrap()))
            .slow_request(Duration::from_millis(150))
            .log_writer(logs.clone())
            .init()
            .unwrap();
        Obs { guard, logs }
    })
}

async fn user(Path(id): Path<String>, rid: RequestId) -> String {
    if id.starts_with("auth-") {
        glimpse_obs::record_user_id(&id);
    }
    tracing::info!("handler line");
    // A spawned task inside the request's span carries the same userId.
    tokio::spawn(async { tracing::info!("spawned line") }.in_current_span())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    tracing::info!("after sleep");
    rid.to_string()
}

fn app() -> Router {
    let nested = Router::new().route("/items/{item}", get(|| async { "item" }));
    Router::new()
        .route("/users/{id}", get(user))
        .route("/health", get(|| async { "ok" }))
        .route("/feed", get(|| async { "[]" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                "slow"
            }),
        )
        .route(
            "/boom",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "never"
            }),
        )
        .route("/echo", post(|body: String| async move { body }))
        .nest("/api", nested)
        .layer(glimpse_obs::layer().sample("/feed", 0.0))
}

async fn serve() -> SocketAddr {
    obs();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await.unwrap() });
    addr
}

fn access_lines() -> Vec<Value> {
    let o = obs();
    assert!(o.guard.flush(Duration::from_secs(5)));
    strict_lines(&o.logs.contents())
        .into_iter()
        .filter(|l| l["message"] == "request completed")
        .collect()
}

fn lines_with_request_id(id: &str) -> Vec<Value> {
    let o = obs();
    assert!(o.guard.flush(Duration::from_secs(5)));
    strict_lines(&o.logs.contents())
        .into_iter()
        .filter(|l| l["requestId"] == id)
        .collect()
}

async fn scrape() -> String {
    let addr = obs().guard.metrics_addr().unwrap();
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn is_uuid_v7(s: &str) -> bool {
    s.len() == 36
        && s.as_bytes()[14] == b'7'
        && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_request_id_is_kept_echoed_and_on_every_line() {
    let addr = serve().await;
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}/users/auth-alice"))
        .header("x-request-id", "req-abc.123:x@y")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-abc.123:x@y");
    assert_eq!(
        resp.text().await.unwrap(),
        "req-abc.123:x@y",
        "handlers see the same ID"
    );
    let lines = lines_with_request_id("req-abc.123:x@y");
    let msgs: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        msgs,
        [
            "handler line",
            "spawned line",
            "after sleep",
            "request completed"
        ]
    );
    for l in &lines {
        assert_eq!(l["userId"], "auth-alice", "{l}");
    }
    let access = lines.last().unwrap();
    assert_eq!(access["method"], "GET");
    assert_eq!(access["route"], "/users/{id}");
    assert_eq!(access["path"], "/users/auth-alice");
    assert_eq!(access["http_status"], 200);
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["log_type"], "user_activity");
    assert_eq!(access["target"], "glimpse_obs::access");
    assert!(access["response_time"].as_f64().unwrap() >= 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_oversized_and_duplicated_request_ids_are_replaced_never_reflected() {
    let addr = serve().await;
    let client = reqwest::Client::new();
    let long = "a".repeat(129);
    let cases: Vec<Vec<&str>> = vec![
        vec!["has space"],
        vec![long.as_str()],
        vec![""],
        vec!["<script>alert(1)</script>"],
        vec!["one", "two"],
    ];
    for values in cases {
        let mut req = client.get(format!("http://{addr}/users/x"));
        for v in &values {
            req = req.header("x-request-id", *v);
        }
        let resp = req.send().await.unwrap();
        let echoed = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(is_uuid_v7(&echoed), "{values:?} -> {echoed}");
        assert!(!values.contains(&echoed.as_str()));
        let lines = lines_with_request_id(&echoed);
        assert_eq!(lines.last().unwrap()["message"], "request completed");
    }
    let resp = client
        .get(format!("http://{addr}/users/x"))
        .send()
        .await
        .unwrap();
    assert!(
        is_uuid_v7(resp.headers()["x-request-id"].to_str().unwrap()),
        "generated when absent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_ids_never_leak_between_concurrent_requests() {
    let addr = serve().await;
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let user = if i % 2 == 0 {
                format!("auth-u{i}")
            } else {
                format!("anon{i}")
            };
            let rid = format!("leak-{i}");
            client
                .get(format!("http://{addr}/users/{user}"))
                .header("x-request-id", &rid)
                .send()
                .await
                .unwrap();
            (rid, user)
        }));
    }
    for t in tasks {
        let (rid, user) = t.await.unwrap();
        let lines = lines_with_request_id(&rid);
        assert_eq!(lines.len(), 4, "{rid}");
        for l in lines {
            if user.starts_with("auth-") {
                assert_eq!(l["userId"], user.as_str());
            } else {
                assert!(l.get("userId").is_none(), "{l}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_line_levels_follow_status_and_slowness_and_sampling_keeps_warn_and_error() {
    let addr = serve().await;
    let client = reqwest::Client::new();
    for (path, rid) in [
        ("/boom", "lvl-boom"),
        ("/slow", "lvl-slow"),
        ("/feed", "lvl-feed"),
        ("/health", "lvl-health"),
    ] {
        client
            .get(format!("http://{addr}{path}"))
            .header("x-request-id", rid)
            .send()
            .await
            .unwrap();
    }
    let by_id = |rid: &str| {
        access_lines()
            .into_iter()
            .filter(|l| l["requestId"] == rid)
            .collect::<Vec<_>>()
    };
    let boom = by_id("lvl-boom");
    assert_eq!(boom[0]["level"], "ERROR");
    assert_eq!(boom[0]["http_status"], 500);
    let slow = by_id("lvl-slow");
    assert_eq!(slow[0]["level"], "WARN");
    assert!(slow[0]["response_time"].as_f64().unwrap() > 150.0);
    assert!(
        by_id("lvl-feed").is_empty(),
        "INFO lines of /feed are sampled out at rate 0"
    );
    assert!(by_id("lvl-health").is_empty(), "/health is excluded");
    let text = scrape().await;
    assert!(
        !text.contains("route=\"/health\""),
        "/health is excluded from metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_text_has_names_labels_buckets_service_and_route_templates() {
    let addr = serve().await;
    let client = reqwest::Client::new();
    client
        .get(format!("http://{addr}/users/42"))
        .send()
        .await
        .unwrap();
    client
        .get(format!("http://{addr}/api/items/7"))
        .send()
        .await
        .unwrap();
    client
        .get(format!("http://{addr}/boom"))
        .send()
        .await
        .unwrap();
    client
        .request(
            reqwest::Method::from_bytes(b"BREW").unwrap(),
            format!("http://{addr}/users/1"),
        )
        .send()
        .await
        .unwrap();
    let text = scrape().await;
    for needle in [
        "# TYPE http_server_request_duration_seconds histogram",
        "# HELP http_server_request_duration_seconds",
        "# TYPE http_server_active_requests gauge",
        "glimpse_build_info{",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    let labels = [
        ("method", "GET"),
        ("route", "/users/{id}"),
        ("status", "200"),
        ("service", "layer-test"),
        ("env", "development"),
    ];
    assert!(
        metric_value(&text, "http_server_request_duration_seconds_count", &labels).unwrap() >= 1.0
    );
    assert!(
        metric_value(
            &text,
            "http_server_request_duration_seconds_count",
            &[("route", "/api/items/{item}")]
        )
        .is_some(),
        "nested routers use the full template"
    );
    assert!(
        metric_value(
            &text,
            "http_server_request_duration_seconds_count",
            &[("status", "500"), ("route", "/boom")]
        )
        .is_some()
    );
    assert!(
        metric_value(
            &text,
            "http_server_request_duration_seconds_count",
            &[("method", "_OTHER")]
        )
        .is_some(),
        "unknown methods become _OTHER"
    );
    for le in [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.2", "0.3", "0.5", "0.75", "1", "2.5", "5",
        "10", "+Inf",
    ] {
        let series = format!("le=\"{le}\"");
        assert!(
            text.lines().any(
                |l| l.starts_with("http_server_request_duration_seconds_bucket")
                    && l.contains(&series)
                    && l.contains("route=\"/users/{id}\"")
            ),
            "bucket {le} missing"
        );
    }
    assert!(
        !text.contains("route=\"/users/42\""),
        "paths never become labels"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_unknown_paths_add_no_route_label_values() {
    let addr = serve().await;
    let client = reqwest::Client::new();
    client
        .get(format!("http://{addr}/warmup-unknown"))
        .send()
        .await
        .unwrap();
    let routes = |text: &str| {
        let mut r: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
            .filter_map(|l| {
                l.split("route=\"")
                    .nth(1)
                    .map(|r| r.split('"').next().unwrap().to_owned())
            })
            .collect();
        r.sort();
        r.dedup();
        r
    };
    let before = routes(&scrape().await);
    let mut tasks = Vec::new();
    for chunk in 0..8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                let resp = client
                    .get(format!("http://{addr}/nope/{chunk}/{i}/{}", i * 7919))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 404);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let text = scrape().await;
    // Other tests in this process add requests concurrently: compare against
    // the app's templates rather than against `before`.
    let templates = [
        "/api/items/{item}",
        "/boom",
        "/echo",
        "/feed",
        "/hang",
        "/ping",
        "/slow",
        "/users/{id}",
        "unmatched",
    ];
    for r in routes(&text) {
        assert!(
            templates.contains(&r.as_str()),
            "unexpected route label {r}"
        );
    }
    assert!(before.iter().all(|r| templates.contains(&r.as_str())));
    assert!(
        metric_value(
            &text,
            "http_server_request_duration_seconds_count",
            &[("route", "unmatched"), ("status", "404")]
        )
        .unwrap()
            >= 2000.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_requests_leave_the_in_flight_gauge_at_zero() {
    let addr = serve().await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            if i % 3 == 0 {
                // Give up mid-flight: the server drops the handler future.
                let _ = tokio::time::timeout(
                    Duration::from_millis(300),
                    client.get(format!("http://{addr}/hang")).send(),
                )
                .await;
            } else {
                client
                    .post(format!("http://{addr}/echo"))
                    .body("x")
                    .send()
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let gauge = |text: &str, route: &str| {
        metric_value(text, "http_server_active_requests", &[("route", route)]).unwrap_or(0.0)
    };
    let mut text = scrape().await;
    for _ in 0..100 {
        if gauge(&text, "/hang") == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = scrape().await;
    }
    assert_eq!(
        gauge(&text, "/hang"),
        0.0,
        "in-flight gauge back to 0 after cancellations"
    );
    assert_eq!(gauge(&text, "/echo"), 0.0);
    let cancelled = metric_value(
        &text,
        "http_server_request_duration_seconds_count",
        &[("route", "/hang"), ("status", "499")],
    )
    .unwrap();
    // Requests the client abandoned before the server read them never reach
    // the layer; every one that did is recorded once, as 499, with one WARN line.
    let lines: Vec<Value> = access_lines()
        .into_iter()
        .filter(|l| l["route"] == "/hang")
        .collect();
    assert!(cancelled >= 1.0);
    assert_eq!(
        lines.len() as f64,
        cancelled,
        "one access line per cancelled request"
    );
    for l in &lines {
        assert_eq!(l["http_status"], 499);
        assert_eq!(l["level"], "WARN");
        assert_eq!(l["cancelled"], true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_handler_serves_the_same_text_on_the_apps_own_router() {
    obs();
    let app: Router = Router::new()
        .route("/metrics", get(glimpse_obs::metrics_handler))
        .route("/ping", get(|| async { "pong" }))
        .layer(glimpse_obs::layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    reqwest::get(format!("http://{addr}/ping")).await.unwrap();
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.unwrap();
    assert!(
        metric_value(
            &text,
            "http_server_request_duration_seconds_count",
            &[("route", "/ping")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        !text.contains("route=\"/metrics\""),
        "the scrape itself is excluded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_exporter_the_callers_trace_still_reaches_logs_and_the_response() {
    let addr = serve().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}/users/trace-me"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .header("x-request-id", "trace-light-1")
        .send()
        .await
        .unwrap();
    let tp = resp.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(
        tp.starts_with(&format!("00-{trace}-")) && tp.ends_with("-01"),
        "{tp}"
    );
    let lines = lines_with_request_id("trace-light-1");
    assert_eq!(lines.len(), 4);
    for l in &lines {
        assert_eq!(l["traceId"], trace, "{l}");
        assert_eq!(l["spanId"].as_str().unwrap().len(), 16);
    }
    let access = lines.last().unwrap();
    assert_eq!(
        access["spanId"].as_str().unwrap(),
        &tp[36..52],
        "the access line names the server span"
    );

    // No traceparent: a new trace per request, still on every line.
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}/users/x"))
        .header("x-request-id", "trace-light-2")
        .send()
        .await
        .unwrap();
    let tp = resp.headers()["traceparent"].to_str().unwrap().to_owned();
    let lines = lines_with_request_id("trace-light-2");
    assert_eq!(lines[0]["traceId"].as_str().unwrap(), &tp[3..35]);
    assert_ne!(&tp[3..35], trace);
}

//! The layer at the edges of a request, through a real TCP server: a
//! handler that panics, a body streamed slowly, a client that leaves
//! mid-body, untrusted callers.

mod common;

use std::{convert::Infallible, net::SocketAddr, sync::OnceLock, time::Duration};

use axum::{Router, body::Body, routing::get};
use common::{metric_value, strict_lines};
use glimpse_obs::{Config, Guard, testing::SharedBuffer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Obs {
    guard: Guard,
    logs: SharedBuffer,
}

fn obs() -> &'static Obs {
    static OBS: OnceLock<Obs> = OnceLock::new();
    OBS.get_or_init(|| {
        let logs = SharedBuffer::new();
        let guard = Config::default()
            .service("edges-test")
            .metrics_addr(Some("127.0.0.1:0".parse().unwrap()))
            .slow_request(Duration::from_secs(5))
            .process_metrics(false)
            .log_writer(logs.clone())
            .init()
            .unwrap();
        Obs { guard, logs }
    })
}

/// A body of `n` chunks, `gap` apart.
fn chunks(n: usize, gap: Duration) -> Body {
    let stream = futures_util::stream::unfold(0, move |i| async move {
        if i == n {
            return None;
        }
        tokio::time::sleep(gap).await;
        Some((Ok::<_, Infallible>(format!("chunk {i}\n")), i + 1))
    });
    Body::from_stream(stream)
}

fn app() -> Router {
    let public = Router::new()
        .route("/public/ok", get(|| async { "ok" }))
        .layer(glimpse_obs::layer().public_endpoint(true));
    let quiet = Router::new()
        .route("/quiet", get(|| async { "ok" }))
        .layer(glimpse_obs::layer().response_traceparent(false));
    let sized = Router::new()
        .route(
            "/sized",
            axum::routing::post(|body: String| async move { body + "!" }),
        )
        .layer(glimpse_obs::layer().body_sizes(true));
    Router::new()
        .route(
            "/panic/{id}",
            get(|| async {
                if true {
                    panic!("the match store is gone");
                }
                "never"
            }),
        )
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/stream",
            get(|| async { chunks(5, Duration::from_millis(50)) }),
        )
        .route(
            "/long",
            get(|| async { chunks(200, Duration::from_millis(20)) }),
        )
        .layer(glimpse_obs::layer())
        .merge(public)
        .merge(quiet)
        .merge(sized)
}

async fn serve() -> SocketAddr {
    obs();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await.unwrap() });
    addr
}

/// The access lines of `route`, waiting up to 5 s for at least `n`.
async fn access_lines(route: &str, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        assert!(obs().guard.flush(Duration::from_secs(5)));
        let lines: Vec<Value> = strict_lines(&obs().logs.contents())
            .into_iter()
            .filter(|l| l["message"] == "request completed" && l["route"] == route)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {n} access lines of {route}:\n{}",
        obs().logs.contents()
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_logs_one_error_line_counts_and_the_server_keeps_serving() {
    let addr = serve().await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!("http://{addr}/panic/7"))
        .header("x-request-id", "req-panic-1")
        .send()
        .await
        .expect("an answer, not a reset connection");
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["x-request-id"], "req-panic-1");
    assert!(res.headers().contains_key("traceparent"));

    let lines = access_lines("/panic/{id}", 1).await;
    assert_eq!(lines.len(), 1, "one access line: {lines:?}");
    let line = &lines[0];
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["http_status"], 500);
    assert_eq!(line["requestId"], "req-panic-1");
    assert_eq!(line["panic.message"], "the match store is gone");
    let location = line["panic.location"].as_str().unwrap();
    assert!(location.starts_with("tests/http_edges.rs:"), "{location}");
    assert!(line.get("cancelled").is_none());
    let all = strict_lines(&obs().logs.contents());
    assert_eq!(
        all.iter()
            .filter(|l| l["requestId"] == "req-panic-1" && l["level"] == "ERROR")
            .count(),
        1,
        "exactly one ERROR line for the request"
    );

    let text = scrape().await;
    let route = [("route", "/panic/{id}"), ("status", "500")];
    assert_eq!(
        metric_value(&text, "http_server_request_duration_seconds_count", &route),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "http_server_panics_total",
            &[("route", "/panic/{id}")]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric_value(
            &text,
            "http_server_request_duration_seconds_count",
            &[("route", "/panic/{id}"), ("status", "499")]
        )
        .is_none(),
        "a panic is not a cancelled request"
    );

    let res = client
        .get(format!("http://{addr}/ok"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the server keeps serving");
    assert_eq!(res.text().await.unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_is_timed_to_its_end() {
    let addr = serve().await;
    let res = reqwest::get(format!("http://{addr}/stream")).await.unwrap();
    assert_eq!(res.text().await.unwrap().lines().count(), 5);
    let line = &access_lines("/stream", 1).await[0];
    assert_eq!(line["http_status"], 200);
    let ms = line["response_time"].as_f64().unwrap();
    assert!(ms >= 250.0, "5 chunks 50 ms apart took {ms} ms");
    let text = scrape().await;
    let sum = metric_value(
        &text,
        "http_server_request_duration_seconds_sum",
        &[("route", "/stream"), ("status", "200")],
    )
    .unwrap();
    assert!(sum >= 0.25, "the histogram too: {sum} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_body_is_recorded_as_cancelled() {
    let addr = serve().await;
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /long HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("chunk 1") {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    drop(socket);

    let line = &access_lines("/long", 1).await[0];
    assert_eq!(line["http_status"], 499, "{line}");
    assert_eq!(line["cancelled"], true);
    assert_eq!(line["level"], "WARN");
    let ms = line["response_time"].as_f64().unwrap();
    assert!(
        ms < 3000.0,
        "recorded when the client left, not at the end: {ms} ms"
    );
    let text = scrape().await;
    assert_eq!(
        metric_value(&text, "http_server_active_requests", &[("route", "/long")]),
        Some(0.0)
    );
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_endpoint_does_not_continue_the_callers_sampled_trace() {
    let addr = serve().await;
    let client = reqwest::Client::new();
    let sent = format!("00-{CALLER_TRACE}-00f067aa0ba902b7-01");
    let res = client
        .get(format!("http://{addr}/public/ok"))
        .header("traceparent", &sent)
        .send()
        .await
        .unwrap();
    let tp = res.headers()["traceparent"].to_str().unwrap().to_owned();
    assert_eq!(tp.len(), 55, "{tp}");
    assert_ne!(&tp[3..35], CALLER_TRACE, "a new trace, not the caller's");
    let line = &access_lines("/public/ok", 1).await[0];
    assert_ne!(line["traceId"], CALLER_TRACE);
    assert_eq!(line["traceId"], &tp[3..35]);

    // A trusting layer continues the same header.
    let res = client
        .get(format!("http://{addr}/ok"))
        .header("traceparent", &sent)
        .send()
        .await
        .unwrap();
    let tp = res.headers()["traceparent"].to_str().unwrap();
    assert_eq!(&tp[3..35], CALLER_TRACE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_traceparent_can_be_switched_off() {
    let addr = serve().await;
    let res = reqwest::get(format!("http://{addr}/quiet")).await.unwrap();
    assert!(!res.headers().contains_key("traceparent"));
    assert!(res.headers().contains_key("x-request-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_sizes_are_recorded_when_switched_on() {
    let addr = serve().await;
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/sized"))
        .body("x".repeat(1500))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap().len(), 1501);
    access_lines("/sized", 1).await;
    let text = scrape().await;
    let route = [("route", "/sized"), ("method", "POST")];
    assert_eq!(
        metric_value(&text, "http_server_request_body_size_bytes_sum", &route),
        Some(1500.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "http_server_response_body_size_bytes_sum", &route),
        Some(1501.0)
    );
    assert!(
        metric_value(
            &text,
            "http_server_response_body_size_bytes_count",
            &[("route", "/ok")]
        )
        .is_none(),
        "off by default"
    );
}

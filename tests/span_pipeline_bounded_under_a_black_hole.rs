//! The span pipeline against a black-holed collector (accepts TCP, never
//! answers): requests keep their latency once the queue is full, memory
//! stays bounded by `OTEL_BSP_MAX_QUEUE_SIZE`, every span that cannot be
//! exported is counted (`Guard::dropped_spans` and
//! `glimpse_obs_dropped_total{signal="spans"}` agree), and shutdown returns
//! within its timeout, counting what it abandons.

mod support;

use std::time::{Duration, Instant};

use axum::{Router, body::Body, routing::get};
use tower::ServiceExt;

const QUEUE: usize = 256;
const BATCH: usize = 64;

/// Resident set size of this process, in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

async fn requests(app: &Router, n: usize) -> Vec<Duration> {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        let res = app
            .clone()
            .oneshot(
                http::Request::get(format!("/users/{i}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        took.push(start.elapsed());
    }
    took.sort();
    took
}

fn dropped_metric(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("glimpse_obs_dropped_total{") && l.contains("signal=\"spans\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_collector_costs_requests_nothing_memory_stays_bounded_drops_are_counted_and_shutdown_is_bounded()
 {
    let hole = support::otlp_receiver::black_hole();
    let logs = glimpse_obs::testing::SharedBuffer::new();
    let env = |name: &str| match name {
        "OTEL_BSP_MAX_QUEUE_SIZE" => Some(QUEUE.to_string()),
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" => Some(BATCH.to_string()),
        "OTEL_BSP_SCHEDULE_DELAY" => Some("20".to_owned()),
        // The first export hangs for the whole test.
        "OTEL_BSP_EXPORT_TIMEOUT" => Some("60000".to_owned()),
        _ => None,
    };
    let guard = glimpse_obs::Config::from_lookup(env)
        .unwrap()
        .service("black-hole")
        .otlp_endpoint(Some(format!("http://{hole}")))
        .sampler(glimpse_obs::Sampler::AlwaysOn)
        .metrics_addr(None)
        .process_metrics(false)
        .log_writer(logs.clone())
        .shutdown_timeout(Duration::from_secs(1))
        .init()
        .unwrap();
    let app: Router = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .layer(glimpse_obs::layer());

    // Before the queue fills: the reference latency.
    let before = requests(&app, 200).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Fill the queue, then measure with every span dropped.
    let _ = requests(&app, 2_000).await;
    let rss_full = rss();
    let after = requests(&app, 200).await;
    let _ = requests(&app, 20_000).await;
    let rss_grown = rss().saturating_sub(rss_full);

    let sent = 200 + 2_000 + 200 + 20_000;
    let median = |v: &[Duration]| v[v.len() / 2];
    assert!(
        median(&after) <= median(&before) * 2 + Duration::from_micros(200),
        "a full queue slows requests: median {:?} before, {:?} after",
        median(&before),
        median(&after)
    );
    assert!(
        rss_grown < 16 << 20,
        "20,000 more spans grew memory by {rss_grown} bytes: the queue is not bounded"
    );
    let dropped = guard.dropped_spans() as usize;
    assert!(
        dropped >= sent - QUEUE - BATCH && dropped <= sent - QUEUE,
        "{dropped} of {sent} dropped, queue {QUEUE}, batch {BATCH}"
    );
    assert_eq!(
        dropped_metric(&guard.render_metrics()) as usize,
        dropped,
        "the metric counts the same drops"
    );

    let start = Instant::now();
    let result = tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap();
    let took = start.elapsed();
    assert!(
        matches!(result, Err(glimpse_obs::Error::ShutdownTimeout(_))),
        "a black hole cannot be flushed: {result:?}"
    );
    assert!(
        took < Duration::from_millis(1_800),
        "shutdown took {took:?}"
    );
    // The shutdown's warning counts the queued and in-flight spans too.
    let warning = logs
        .lines()
        .into_iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("spans dropped"))
        })
        .expect("a warning about dropped spans");
    assert_eq!(
        warning["dropped_spans"].as_u64(),
        Some(sent as u64),
        "after shutdown every span is accounted for as dropped: {warning}"
    );
}

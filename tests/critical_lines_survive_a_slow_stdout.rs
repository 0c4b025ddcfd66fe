//! A stdout that is slow but moving (a reader at 5 MB/s, then 2 MB/s) under
//! a flood of large INFO lines: every audit and ERROR line of an honest
//! client is written whole, the flood's INFO lines are what is dropped (and
//! counted), and a route that logs nothing keeps answering fast because no
//! tokio worker waits for the writer. Shutdown past its timeout, with the
//! flood still queued, cuts no line.

mod common;

use std::{
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, extract::Path, http::StatusCode, routing::get};
use glimpse_obs::{Config, business::PaymentStatus};
use tower::ServiceExt;

/// A pipe reader that takes at most 16 KiB per write at `rate` bytes/s.
#[derive(Clone)]
struct ThrottledReader {
    out: Arc<Mutex<Vec<u8>>>,
    rate: Arc<AtomicU64>,
}

impl Write for ThrottledReader {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.len().min(16 * 1024);
        let rate = self.rate.load(Ordering::Relaxed) as f64;
        std::thread::sleep(Duration::from_secs_f64(n as f64 / rate));
        self.out.lock().unwrap().extend_from_slice(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn app() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/upload",
            get(|| async {
                // What an attacker's large request makes a service log.
                tracing::info!(body = %"x".repeat(4000), "upload received");
                "ok"
            }),
        )
        .route(
            "/pay/{id}",
            get(|Path(id): Path<String>| async move {
                glimpse_obs::audit::payment_transaction(
                    "user-honest",
                    &id,
                    1699,
                    "EUR",
                    PaymentStatus::Succeeded,
                );
                "paid"
            }),
        )
        .route(
            "/fail/{id}",
            get(|Path(id): Path<String>| async move {
                tracing::error!(failure_id = %id, "honest failure");
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
        .layer(glimpse_obs::layer())
}

async fn get_ok(app: &Router, uri: &str) -> StatusCode {
    let req = axum::http::Request::get(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audit_and_error_line_survives_a_flood_on_a_2_and_5_mb_per_s_stdout() {
    let reader = ThrottledReader {
        out: Arc::default(),
        rate: Arc::new(AtomicU64::new(5_000_000)),
    };
    let guard = Config::default()
        .metrics_addr(None)
        .log_queue_bytes(1 << 20)
        .log_sample("/health", 0.0)
        .unwrap()
        .shutdown_timeout(Duration::from_millis(300))
        .log_writer(reader.clone())
        .init()
        .unwrap();
    let app = app();

    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let (app, stop) = (app.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    get_ok(&app, "/upload").await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();

    let mut latencies = Vec::new();
    let mut expected = Vec::new();
    for rate in [5_000_000u64, 2_000_000] {
        reader.rate.store(rate, Ordering::Relaxed);
        // Let the flood build a backlog first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for n in 0..40 {
            let id = format!("{rate}-{n}");
            assert_eq!(get_ok(&app, &format!("/pay/{id}")).await, StatusCode::OK);
            assert_eq!(
                get_ok(&app, &format!("/fail/{id}")).await,
                StatusCode::INTERNAL_SERVER_ERROR
            );
            expected.push(id);
            let start = Instant::now();
            assert_eq!(get_ok(&app, "/health").await, StatusCode::OK);
            latencies.push(start.elapsed());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Give the priority lane the time of a few chunks at 2 MB/s.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = guard.render_metrics();
    // SIGTERM with the flood still queued: shutdown times out, cutting nothing.
    let _ = tokio::task::block_in_place(|| guard.shutdown());
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        let _ = a.await;
    }

    let dropped =
        common::metric_value(&metrics, "glimpse_obs_dropped_total", &[("signal", "logs")])
            .unwrap_or(0.0);
    assert!(
        dropped > 0.0,
        "the flood's INFO lines were dropped and counted"
    );

    let text = String::from_utf8(reader.out.lock().unwrap().clone()).unwrap();
    let lines = common::strict_lines(&text); // whole lines only, last one included
    let has = |pred: &dyn Fn(&serde_json::Value) -> bool| lines.iter().any(pred);
    for id in &expected {
        assert!(
            has(&|l| l["audit"] == true && l["audit_target"] == id.as_str()),
            "audit line of payment {id} present"
        );
        assert!(
            has(&|l| l["level"] == "ERROR" && l["failure_id"] == id.as_str()),
            "ERROR line of failure {id} present"
        );
        assert!(
            has(&|l| l["level"] == "ERROR"
                && l["message"] == "request completed"
                && l["path"] == format!("/fail/{id}").as_str()),
            "ERROR access line of /fail/{id} present"
        );
    }

    latencies.sort();
    let p95 = latencies[latencies.len() * 95 / 100];
    let max = latencies[latencies.len() - 1];
    eprintln!("unlogged route: p95 {p95:?}, max {max:?}; dropped {dropped}");
    assert!(p95 < Duration::from_millis(50), "p95 {p95:?}");
    assert!(max < Duration::from_millis(250), "max {max:?}");
}

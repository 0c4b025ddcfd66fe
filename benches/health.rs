//! Cost of a readiness probe answered from the cache (the budget:
//! at most 5 µs of CPU), of a probe while draining, and of the liveness
//! probe; plus the cached probe through `Health::router()` as axum serves
//! it. Criterion's wall-clock figures are single-threaded CPU work (no I/O,
//! no waiting); the CPU time per cached probe is also measured directly
//! with the thread's CPU clock and printed.
//!
//! `cargo bench --bench health`; results in `docs/performance.md`.

use std::{
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use axum::{body::Body, http::Request};
use criterion::{Criterion, criterion_group, criterion_main};
use glimpse_obs::health::{self, Health};
use tower::ServiceExt;

/// Poll a future that completes without waiting (a cached answer never waits).
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("a cached readiness answer never waits"),
    }
}

fn health(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cached = Health::new()
        .cache_for(Duration::from_secs(3600))
        .check("database", Duration::from_secs(1), || async {
            Ok::<(), String>(())
        })
        .check("cache", Duration::from_secs(1), || async {
            Ok::<(), String>(())
        });
    // The first probe runs the checks; every later one is a cache hit.
    assert_eq!(rt.block_on(cached.ready_response()).status(), 200);
    let draining = Health::new();
    draining.begin_shutdown();

    // CPU time per cached probe, from the thread's CPU clock.
    let n = 200_000u32;
    let start = cpu_time::ThreadTime::now();
    for _ in 0..n {
        black_box(ready(cached.ready_response()));
    }
    let per = start.elapsed() / n;
    println!(
        "health: cached ready probe = {:.3} µs CPU (budget 5 µs)",
        per.as_secs_f64() * 1e6
    );

    let mut g = c.benchmark_group("health");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    g.bench_function("ready, cached answer", |b| {
        b.iter(|| black_box(ready(cached.ready_response())))
    });
    g.bench_function("ready, draining", |b| {
        b.iter(|| black_box(ready(draining.ready_response())))
    });
    g.bench_function("live", |b| b.iter(|| black_box(ready(health::live()))));
    let app: axum::Router = cached.router();
    g.bench_function("ready, cached answer, through Health::router", |b| {
        b.iter(|| {
            let req = Request::get("/health/ready")
                .body(Body::empty())
                .expect("request");
            black_box(rt.block_on(app.clone().oneshot(req)))
        })
    });
    g.finish();
}

criterion_group!(benches, health);
criterion_main!(benches);

//! Per-request cost through an axum router, in whole-process CPU time
//! (background writer threads included), in one run:
//! - the bare router;
//! - with `glimpse_obs::layer()` and everything on (JSON access line to a
//!   sink through the background writer, metrics, request ID, server span);
//! - with the anchor stack a team assembles by hand: tower-http `TraceLayer`
//!   (INFO span and response line) + `SetRequestIdLayer` +
//!   `PropagateRequestIdLayer` + axum-prometheus's layer + tracing-subscriber
//!   `fmt().json()`.
//!
//! `cargo bench --bench layer`

use std::time::Duration;

use axum::{Router, body::Body, extract::Path, routing::get};
use axum_prometheus::BaseMetricLayer;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer},
};
use tracing::{Dispatch, Level, dispatcher};

async fn handler(Path(id): Path<u64>) -> String {
    format!("user {id}")
}

fn request() -> Request<Body> {
    Request::get("/users/42")
        .header("user-agent", "bench/1.0")
        .body(Body::empty())
        .expect("request")
}

/// Whole-process CPU time of `iters` requests through `app` under `dispatch`.
fn cpu_per(
    rt: &tokio::runtime::Runtime,
    app: &Router,
    dispatch: &Dispatch,
    iters: u64,
) -> Duration {
    dispatcher::with_default(dispatch, || {
        let start = cpu_time::ProcessTime::now();
        for _ in 0..iters {
            let resp = rt
                .block_on(app.clone().oneshot(request()))
                .expect("infallible");
            assert!(resp.status().is_success());
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let _guard = glimpse_obs::Config::default()
        .service("bench")
        .metrics_addr(None)
        .process_metrics(false)
        .log_writer(std::io::sink())
        .init()
        .expect("init");
    let ours_dispatch = dispatcher::get_default(Clone::clone);
    let none = Dispatch::none();
    let anchor_dispatch = Dispatch::new(
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::sink)
            .finish(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let bare: Router = Router::new().route("/users/{id}", get(handler));
    let ours = bare.clone().layer(glimpse_obs::layer());
    let anchor = bare.clone().layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(BaseMetricLayer::new()),
    );

    let mut g = c.benchmark_group("request_cpu");
    g.bench_function("bare", |b| b.iter_custom(|n| cpu_per(&rt, &bare, &none, n)));
    g.bench_function("glimpse_obs", |b| {
        b.iter_custom(|n| cpu_per(&rt, &ours, &ours_dispatch, n))
    });
    g.bench_function("anchor_stack", |b| {
        b.iter_custom(|n| cpu_per(&rt, &anchor, &anchor_dispatch, n))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Per-call cost of tracing an outbound call, in whole-process CPU time,
//! against a loopback HTTP server, in one run:
//! - `bare`: a `reqwest_middleware` client with no middleware;
//! - `glimpse_obs`: with `client::Middleware`, under glimpse_obs's own
//!   subscriber (`init()` without an OTLP endpoint: JSON log to a sink,
//!   trace IDs, metrics);
//! - `reqwest_tracing`: with reqwest-tracing's `TracingMiddleware`, under
//!   the stack a team assembles: `tracing-opentelemetry` over an
//!   OpenTelemetry SDK tracer provider (no exporter, always sampled), the
//!   W3C propagator as the global one, and `fmt().json()` to a sink.
//!
//! Every call is made inside a parent span, as from a request handler. The
//! overhead of each stack is its time minus `bare` (the HTTP round trip,
//! server included, is the same for all three); the goal is glimpse_obs at
//! most half of reqwest-tracing's.
//!
//! The round trip (~50 µs) dwarfs the middleware and varies with the load of
//! the machine, so the `client_overhead` group measures the same three
//! stacks with the network replaced by an in-process answer ([`Canned`]),
//! in the calling thread's CPU time: the difference to `bare` there is the
//! middleware's own cost.
//!
//! `cargo bench --features reqwest --bench client`

use std::{net::SocketAddr, time::Duration};

use axum::{Router, routing::get};
use criterion::{Criterion, criterion_group};
use opentelemetry_032::trace::TracerProvider as _;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use tracing::{Dispatch, dispatcher};
use tracing_subscriber::layer::SubscriberExt;

/// The callee, on a runtime of its own (one worker thread).
fn serve() -> (SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route("/users/{id}", get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });
    (addr, rt)
}

/// Answers every call in-process, with no network: what the `overhead`
/// functions put behind each stack, so that only the middleware's own work
/// is measured (in the thread's CPU time, which other processes on a busy
/// machine do not inflate).
struct Canned;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Canned {
    async fn handle(
        &self,
        _req: reqwest::Request,
        _extensions: &mut http::Extensions,
        _next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        Ok(reqwest::Response::from(http::Response::new("ok")))
    }
}

/// The calling thread's CPU time of `iters` calls through `client` (which
/// ends in [`Canned`]) under `dispatch`.
fn thread_cpu_per(
    rt: &tokio::runtime::Runtime,
    client: &ClientWithMiddleware,
    url: &str,
    dispatch: &Dispatch,
    iters: u64,
) -> Duration {
    dispatcher::with_default(dispatch, || {
        let parent = tracing::info_span!("job");
        let _entered = parent.enter();
        let start = cpu_time::ThreadTime::now();
        for _ in 0..iters {
            let status = rt
                .block_on(async { client.get(url).send().await.map(|r| r.status()) })
                .expect("call");
            assert!(status.is_success());
        }
        start.elapsed()
    })
}

/// Whole-process CPU time of `iters` calls through `client` under `dispatch`.
fn cpu_per(
    rt: &tokio::runtime::Runtime,
    client: &ClientWithMiddleware,
    url: &str,
    dispatch: &Dispatch,
    iters: u64,
) -> Duration {
    dispatcher::with_default(dispatch, || {
        let parent = tracing::info_span!("job");
        let _entered = parent.enter();
        let start = cpu_time::ProcessTime::now();
        for _ in 0..iters {
            let status = rt
                .block_on(async { client.get(url).send().await.map(|r| r.status()) })
                .expect("call");
            assert!(status.is_success());
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let (addr, _server) = serve();
    let url = format!("http://{addr}/users/42");

    let _guard = glimpse_obs::Config::default()
        .service("bench")
        .metrics_addr(None)
        .process_metrics(false)
        .log_writer(std::io::sink())
        .init()
        .expect("init");
    let ours_dispatch = dispatcher::get_default(Clone::clone);

    let provider = opentelemetry_sdk_032::trace::SdkTracerProvider::builder().build();
    opentelemetry_032::global::set_text_map_propagator(
        opentelemetry_sdk_032::propagation::TraceContextPropagator::new(),
    );
    let theirs_dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry_033::layer().with_tracer(provider.tracer("bench")))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::sink),
            )
            .with(tracing_subscriber::filter::LevelFilter::INFO),
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .expect("client");
    let bare = ClientBuilder::new(http.clone()).build();
    let ours = ClientBuilder::new(http.clone())
        .with(glimpse_obs::client::Middleware::default())
        .build();
    let theirs = ClientBuilder::new(http)
        .with(reqwest_tracing::TracingMiddleware::default())
        .build();

    let mut g = c.benchmark_group("client");
    g.measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
    g.bench_function("bare", |b| {
        b.iter_custom(|n| cpu_per(&rt, &bare, &url, &ours_dispatch, n))
    });
    g.bench_function("glimpse_obs", |b| {
        b.iter_custom(|n| cpu_per(&rt, &ours, &url, &ours_dispatch, n))
    });
    g.bench_function("reqwest_tracing", |b| {
        b.iter_custom(|n| cpu_per(&rt, &theirs, &url, &theirs_dispatch, n))
    });
    g.finish();

    let canned = |b: ClientBuilder| b.with(Canned).build();
    let bare = canned(ClientBuilder::new(reqwest::Client::new()));
    let ours = canned(
        ClientBuilder::new(reqwest::Client::new()).with(glimpse_obs::client::Middleware::default()),
    );
    let theirs = canned(
        ClientBuilder::new(reqwest::Client::new())
            .with(reqwest_tracing::TracingMiddleware::default()),
    );
    let mut g = c.benchmark_group("client_overhead");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
    g.bench_function("bare", |b| {
        b.iter_custom(|n| thread_cpu_per(&rt, &bare, &url, &ours_dispatch, n))
    });
    g.bench_function("glimpse_obs", |b| {
        b.iter_custom(|n| thread_cpu_per(&rt, &ours, &url, &ours_dispatch, n))
    });
    g.bench_function("reqwest_tracing", |b| {
        b.iter_custom(|n| thread_cpu_per(&rt, &theirs, &url, &theirs_dispatch, n))
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}

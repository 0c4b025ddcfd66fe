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
//!
//! The `tracing` group compares, each in a child process of its own (since
//! `init` configures the process once):
//! - `off_ids_only`: `glimpse_obs` without an endpoint (IDs only);
//! - `on_sampled_exporting_grpc`: `glimpse_obs`, every request sampled, spans
//!   exported over OTLP/gRPC to a receiver in the parent process;
//! - `anchor_otel_sdk`: the same router with tower-http's `TraceLayer`,
//!   tracing-subscriber's JSON format to a sink, tracing-opentelemetry and
//!   the OpenTelemetry SDK's batch span processor exporting over OTLP/gRPC
//!   (opentelemetry-otlp, tonic) to the same receiver;
//! - `bare`: the router alone.
//!
//! A child measures its own CPU time over the requests plus the final flush
//! of the span queue, so the export work (batching, encoding, gRPC) is
//! counted. Each Criterion iteration is [`BATCH`] requests in the child,
//! reported per request. Goal: on − off ≤ 1.0 µs and ≤ (anchor − bare) / 10.
//!
//! `cargo bench --bench layer`

use std::time::Duration;

use axum::{Router, body::Body, extract::Path, routing::get};
use axum_prometheus::BaseMetricLayer;
use criterion::{Criterion, criterion_group};
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
            // The body is read to its end, as a server sends it: a layer
            // that times to the end of the body finishes there.
            let ok = rt.block_on(async {
                let resp = app.clone().oneshot(request()).await.expect("infallible");
                let ok = resp.status().is_success();
                axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .expect("body");
                ok
            });
            assert!(ok);
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
    // The same layer behind a caller's `traceparent`, sampled (flags 01:
    // one exemplar written per request) or not (flags 00: none). The two
    // differ only in the sampling decision: what exemplars cost.
    let with_parent = |tp: &'static str| {
        ours.clone().layer(tower::util::MapRequestLayer::new(
            move |mut req: Request<Body>| {
                req.headers_mut()
                    .insert("traceparent", http::HeaderValue::from_static(tp));
                req
            },
        ))
    };
    let parent_sampled = with_parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let parent_unsampled = with_parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
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
    // The optional body-size histograms (`ObsLayer::body_sizes`): their
    // cost against `glimpse_obs` decides whether they are on by default.
    let sized = bare.clone().layer(glimpse_obs::layer().body_sizes(true));
    g.bench_function("glimpse_obs_body_sizes", |b| {
        b.iter_custom(|n| cpu_per(&rt, &sized, &ours_dispatch, n))
    });
    g.bench_function(
        "glimpse_obs, caller's traceparent sampled (exemplar)",
        |b| b.iter_custom(|n| cpu_per(&rt, &parent_sampled, &ours_dispatch, n)),
    );
    g.bench_function(
        "glimpse_obs, caller's traceparent unsampled (no exemplar)",
        |b| b.iter_custom(|n| cpu_per(&rt, &parent_unsampled, &ours_dispatch, n)),
    );
    g.bench_function("anchor_stack", |b| {
        b.iter_custom(|n| cpu_per(&rt, &anchor, &anchor_dispatch, n))
    });
    g.finish();
}

const CHILD_MODE: &str = "GLIMPSE_BENCH_TRACING_CHILD";
const CHILD_ITERS: &str = "GLIMPSE_BENCH_ITERS";
/// Requests per Criterion iteration in a child: a child costs milliseconds
/// of wall time to start, so Criterion's wall-clock warm-up would otherwise
/// stop at a few hundred requests. The reported time is per request.
const BATCH: u64 = 100;

/// Child side of the `tracing` group: init as told, run the requests, print
/// the CPU time in nanoseconds and the dropped-span count.
fn child(mode: &str) {
    let iters: u64 = std::env::var(CHILD_ITERS)
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("iterations");
    match mode {
        "anchor" => return anchor_child(iters),
        "bare" => return bare_child(iters),
        _ => {}
    }
    let config = glimpse_obs::Config::from_env()
        .expect("config")
        .service("bench")
        .metrics_addr(None)
        .process_metrics(false)
        .sampler(glimpse_obs::Sampler::AlwaysOn)
        .log_writer(std::io::sink());
    let config = if mode == "on" {
        config
    } else {
        config.otlp_endpoint(None)
    };
    let guard = config.init().expect("init");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app: Router = Router::new()
        .route("/users/{id}", get(handler))
        .layer(glimpse_obs::layer());
    let global = dispatcher::get_default(Clone::clone);
    // Warm up: caches, the exporter's gRPC connection, the batch buffers.
    cpu_per(&rt, &app, &global, 2000);
    assert!(guard.flush(Duration::from_secs(30)), "flush");
    let start = cpu_time::ProcessTime::now();
    cpu_per(&rt, &app, &global, iters * BATCH);
    assert!(guard.flush(Duration::from_secs(30)), "flush");
    let cpu = start.elapsed() / BATCH as u32;
    println!("{} {}", cpu.as_nanos(), guard.dropped_spans());
}

/// The router alone, no subscriber.
fn bare_child(iters: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app: Router = Router::new().route("/users/{id}", get(handler));
    let none = Dispatch::none();
    cpu_per(&rt, &app, &none, 2000);
    let start = cpu_time::ProcessTime::now();
    cpu_per(&rt, &app, &none, iters * BATCH);
    let cpu = start.elapsed() / BATCH as u32;
    println!("{} 0", cpu.as_nanos());
}

/// The anchor: what a team assembles with the OpenTelemetry SDK, as its
/// documentation shows (`with_batch_exporter`, the OTLP/gRPC exporter built
/// inside a Tokio runtime), exporting to the same receiver.
fn anchor_child(iters: u64) {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").expect("endpoint");
    // The exporter's connection lives on a runtime of its own, as in an
    // application's `#[tokio::main]`.
    let export_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let provider = {
        let _entered = export_rt.enter();
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .expect("exporter");
        // The same queue and batch sizes as the children of `glimpse_obs`.
        let batch = opentelemetry_sdk::trace::BatchConfigBuilder::default()
            .with_max_queue_size(65536)
            .with_max_export_batch_size(2048)
            .with_scheduled_delay(Duration::from_millis(100))
            .build();
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("bench")
                    .build(),
            )
            .with_span_processor(
                opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batch)
                    .build(),
            )
            .build()
    };
    let tracer = provider.tracer("bench");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::sink),
        );
    let dispatch = Dispatch::new(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app: Router = Router::new().route("/users/{id}", get(handler)).layer(
        TraceLayer::new_for_http()
            .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
            .on_response(DefaultOnResponse::new().level(Level::INFO)),
    );
    cpu_per(&rt, &app, &dispatch, 2000);
    provider.force_flush().expect("flush");
    let start = cpu_time::ProcessTime::now();
    cpu_per(&rt, &app, &dispatch, iters * BATCH);
    provider.force_flush().expect("flush");
    let cpu = start.elapsed() / BATCH as u32;
    println!("{} 0", cpu.as_nanos());
    let _ = provider.shutdown();
}

#[path = "../tests/support/counting_receiver.rs"]
mod counting_receiver;

/// The gRPC receiver: counts what it gets without decoding it
/// (`tests/support/counting_receiver.rs` says why).
type CountSpans = counting_receiver::Counter<counting_receiver::Traces>;

/// Start the counting gRPC receiver on `rt`; its endpoint.
fn start_receiver(rt: &tokio::runtime::Runtime, received: &CountSpans) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let service = received.clone();
    rt.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .expect("receiver");
    });
    endpoint
}

/// `GLIMPSE_BENCH_RECEIVER=1`: only the counting receiver, for running
/// children by hand (profiling); prints its endpoint, then the spans it
/// received once stdin closes.
fn receiver_only() {
    let received = CountSpans::default();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    println!("{}", start_receiver(&rt, &received));
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    println!("spans received: {}", received.count());
}

fn bench_tracing(c: &mut Criterion) {
    let received = CountSpans::default();
    let receiver_rt = tokio::runtime::Runtime::new().expect("runtime");
    let endpoint = start_receiver(&receiver_rt, &received);
    let exe = std::env::current_exe().expect("current exe");
    let dropped = std::sync::atomic::AtomicU64::new(0);
    let run = |mode: &str, iters: u64| -> Duration {
        let out = std::process::Command::new(&exe)
            .env(CHILD_MODE, mode)
            .env(CHILD_ITERS, iters.to_string())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            // Room for every span of a sample, sent in large batches, so
            // the figure is the cost of exporting them, not of dropping.
            .env("OTEL_BSP_MAX_QUEUE_SIZE", "65536")
            .env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2048")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env_remove("GLIMPSE_LOG")
            .env_remove("RUST_LOG")
            .output()
            .expect("child");
        assert!(out.status.success(), "child failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace();
        let nanos: u64 = fields.next().and_then(|v| v.parse().ok()).expect("nanos");
        let lost: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        dropped.fetch_add(lost, std::sync::atomic::Ordering::Relaxed);
        if std::env::var_os("GLIMPSE_BENCH_DEBUG").is_some() {
            eprintln!(
                "{mode} {iters}: {nanos} ns, dropped {lost}, received so far {}",
                received.count()
            );
        }
        Duration::from_nanos(nanos)
    };
    let mut g = c.benchmark_group("tracing");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("off_ids_only", |b| b.iter_custom(|n| run("off", n)));
    g.bench_function("on_sampled_exporting_grpc", |b| {
        b.iter_custom(|n| run("on", n))
    });
    g.bench_function("anchor_otel_sdk", |b| b.iter_custom(|n| run("anchor", n)));
    g.bench_function("bare", |b| b.iter_custom(|n| run("bare", n)));
    g.finish();
    paired(&run);
    println!(
        "spans received by the OTLP receiver: {}, dropped by the children: {}",
        received.count(),
        dropped.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// The same four children run in alternation, pair by pair: Criterion
/// runs all samples of one child before the next, so a change in the
/// machine's load between them (on this 2-vCPU VM, the other vCPU is an SMT
/// sibling) moves one side of on − off only. Each round runs off, on,
/// anchor and bare once (500 x 100 requests each); the figures
/// are the medians over the rounds of the per-round differences.
///
/// Under `cargo test` (Criterion's test mode: no `--bench` argument) one
/// round of 5 x 100 requests per child checks that the children run and
/// export, instead of 21 rounds of 50 000 requests in a debug build.
fn paired(run: &dyn Fn(&str, u64) -> Duration) {
    let bench = std::env::args().any(|a| a == "--bench");
    let (rounds, iters): (usize, u64) = if bench { (21, 500) } else { (1, 5) };
    paired_rounds(run, rounds, iters);
}

fn paired_rounds(run: &dyn Fn(&str, u64) -> Duration, rounds: usize, paired_iters: u64) {
    // A child's figure is its CPU time per request times `paired_iters`.
    let us = |d: Duration| d.as_secs_f64() * 1e6 / paired_iters as f64;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut ours, mut anchor, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let off = us(run("off", paired_iters));
        let on = us(run("on", paired_iters));
        let sdk = us(run("anchor", paired_iters));
        let bare = us(run("bare", paired_iters));
        ours.push(on - off);
        anchor.push(sdk - bare);
        ratio.push((on - off) / (sdk - bare));
    }
    println!(
        "tracing paired ({rounds} alternated rounds of {} requests per child, medians): \
         on - off {:.2} us, anchor - bare {:.2} us, ratio {:.3}",
        paired_iters * BATCH,
        median(ours),
        median(anchor),
        median(ratio)
    );
}

criterion_group!(benches, bench, bench_tracing);

fn main() {
    if let Ok(mode) = std::env::var(CHILD_MODE) {
        child(&mode);
        return;
    }
    if std::env::var_os("GLIMPSE_BENCH_RECEIVER").is_some() {
        receiver_only();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

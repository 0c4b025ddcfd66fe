//! The same event (8 fields, inside 2 spans with fields) through our JSON
//! formatter and through tracing-subscriber's `fmt().json()`, both to a sink,
//! in one run; plus heap allocations per event (counting allocator).
//!
//! Group `log_event_otlp` and the `otlp logs:` figures: the JSON line to a
//! sink against the JSON line plus its OTLP record (`OTEL_LOGS_EXPORTER=otlp`)
//! exported over gRPC, and over http/protobuf, to a receiver running in a
//! child process (this bench binary again, so its work is not counted), in
//! one run, the rounds of the three alternating. The figure is the process
//! CPU time per event of 20,000 events *including* the final flush: the
//! writer thread's write and, for OTLP, the export worker's encoding and
//! export, acknowledged by the receiver; median of five rounds; then the
//! same time split by thread (`/proc/self/task/*/schedstat`) for the last
//! round. The receiver only counts the records, walking the request's
//! protobuf wire format (`CountLogs`): on the 2-vCPU machine of
//! `docs/performance.md` the
//! vCPUs are SMT siblings, and a receiver decoding every record with prost
//! into structs (a `String` per attribute) on the other vCPU slowed the
//! measured process's own instructions (a busy sibling adds about half to
//! its CPU time), charging the receiver's work to the OTLP side. The
//! records it counts are checked against the events logged and the drops:
//! none may be missing, and none may be dropped in the measured rounds.
//!
//! `cargo bench --bench logging`

#![allow(unsafe_code)] // the counting allocator

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, Ordering},
};

use criterion::{Criterion, Throughput, criterion_group};
use tracing::{Dispatch, dispatcher};
use tracing_subscriber::layer::SubscriberExt;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn event() {
    tracing::info!(
        user_id = 42u64,
        match_id = "m-123",
        action = "swipe_right",
        latency_ms = 12.5,
        success = true,
        region = "eu-west-1",
        attempt = 3i64,
        client = %"ios/5.2.1",
        "user swiped"
    );
}

/// Run `f` with two entered spans (with fields) under `dispatch`.
fn in_spans<R>(dispatch: &Dispatch, f: impl FnOnce() -> R) -> R {
    dispatcher::with_default(dispatch, || {
        let outer = tracing::info_span!("request", tier = "gold", locale = "de-DE");
        let _o = outer.enter();
        let inner = tracing::info_span!("swipe", feed = "nearby", page = 3u64);
        let _i = inner.enter();
        f()
    })
}

fn allocations_per_event(dispatch: &Dispatch) -> f64 {
    in_spans(dispatch, || {
        for _ in 0..1_000 {
            event(); // warm up thread-local buffers and queue capacity
        }
        let before = ALLOCS.load(Ordering::Relaxed);
        for _ in 0..10_000 {
            event();
        }
        (ALLOCS.load(Ordering::Relaxed) - before) as f64 / 10_000.0
    })
}

fn bench(c: &mut Criterion) {
    let guard = glimpse_obs::Config::default()
        .service("bench")
        .metrics_addr(None)
        .process_metrics(false)
        .log_writer(std::io::sink())
        .init()
        .expect("init");
    let ours = dispatcher::get_default(Clone::clone);
    let anchor = Dispatch::new(
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::sink)
            .finish(),
    );

    println!(
        "allocations per event: glimpse_obs {:.2}, fmt().json() {:.2}",
        allocations_per_event(&ours),
        allocations_per_event(&anchor)
    );

    let mut g = c.benchmark_group("log_event");
    g.throughput(Throughput::Elements(1));
    g.bench_function("glimpse_obs", |b| in_spans(&ours, || b.iter(event)));
    g.bench_function("fmt_json_anchor", |b| in_spans(&anchor, || b.iter(event)));
    g.finish();
    println!(
        "dropped lines during the run: {}",
        guard.dropped_log_lines()
    );
    let _ = GUARD.set(guard);
}

/// Set in the receiver child.
const RECEIVER_CHILD: &str = "GLIMPSE_BENCH_LOGS_RECEIVER";

/// The child: a logs receiver, over gRPC and over OTLP/HTTP, that counts
/// records; prints its two endpoints, and the records it got once stdin
/// closes.
fn receiver_child() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("GRPC http://{}", grpc.local_addr().unwrap());
        println!("HTTP http://{}/v1/logs", http.local_addr().unwrap());
        let received = CountLogs::default();
        let service = received.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc))
                .await
                .unwrap();
        });
        let counter = received.clone();
        let app = axum::Router::new().route(
            "/v1/logs",
            axum::routing::post(move |body: bytes::Bytes| {
                counter.add(&body);
                // An empty `ExportLogsServiceResponse`: all accepted.
                std::future::ready(([("content-type", "application/x-protobuf")], ""))
            }),
        );
        tokio::spawn(async move { axum::serve(http, app).await.unwrap() });
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut sink);
        })
        .await
        .unwrap();
        println!("RECORDS {}", received.count());
    });
}

#[path = "../tests/support/counting_receiver.rs"]
mod counting_receiver;

/// The receiver: counts what it gets without decoding it
/// (`tests/support/counting_receiver.rs` says why).
type CountLogs = counting_receiver::Counter<counting_receiver::Logs>;

struct Child {
    child: std::process::Child,
    grpc: String,
    http: String,
}

impl Child {
    fn start() -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env(RECEIVER_CHILD, "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("receiver child");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut endpoint = |prefix: &str| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.trim().strip_prefix(prefix).unwrap().to_owned()
        };
        let (grpc, http) = (endpoint("GRPC "), endpoint("HTTP "));
        child.stdout = Some(out.into_inner());
        Self { child, grpc, http }
    }

    /// Records the receiver got.
    fn stop(mut self) -> u64 {
        drop(self.child.stdin.take());
        let mut out = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut out).unwrap();
        let _ = self.child.wait();
        out.lines()
            .find_map(|l| l.strip_prefix("RECORDS ")?.parse().ok())
            .unwrap_or(0)
    }
}

/// JSON lines to a sink and, given an endpoint and its protocol, OTLP log
/// records exported to it.
fn telemetry(otlp: Option<(&str, &str)>) -> glimpse_obs::Telemetry {
    let otlp = otlp.map(|(url, protocol)| (url.to_owned(), protocol.to_owned()));
    glimpse_obs::Config::from_lookup(|name| match (name, &otlp) {
        ("OTEL_LOGS_EXPORTER", Some(_)) => Some("otlp".to_owned()),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", Some((url, _))) => Some(url.clone()),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", Some((_, protocol))) => Some(protocol.clone()),
        // Room for every record of a round: the figure is for records
        // exported, not dropped.
        ("OTEL_BLRP_MAX_QUEUE_SIZE", Some(_)) => Some("65536".to_owned()),
        ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", Some(_)) => Some("512".to_owned()),
        ("OTEL_BLRP_SCHEDULE_DELAY", Some(_)) => Some("100".to_owned()),
        _ => None,
    })
    .expect("config")
    .service("bench")
    .metrics_addr(None)
    .process_metrics(false)
    .log_writer(std::io::sink())
    .build()
    .expect("build")
}

/// Process CPU time per event of `n` events and the flush after them.
fn cpu_per_event(t: &glimpse_obs::Telemetry, dispatch: &Dispatch, n: u32) -> (f64, f64) {
    in_spans(dispatch, || {
        let cpu = cpu_time::ProcessTime::now();
        let wall = std::time::Instant::now();
        for _ in 0..n {
            event();
        }
        assert!(t.flush(std::time::Duration::from_secs(30)), "flush");
        (
            cpu.elapsed().as_nanos() as f64 / f64::from(n),
            wall.elapsed().as_nanos() as f64 / f64::from(n),
        )
    })
}

/// CPU time (ns) of each of this process's threads by name, from
/// `/proc/self/task/*/schedstat` (threads of the same name added up).
fn thread_cpu() -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        *out.entry(name.trim().to_owned()).or_insert(0) += ns;
    }
    out
}

/// Per event, which threads the CPU time of `after - before` went to.
fn per_thread(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    events: u64,
) -> String {
    after
        .iter()
        .map(|(name, ns)| {
            let d = ns.saturating_sub(before.get(name).copied().unwrap_or(0));
            format!("{name} {:.0} ns", d as f64 / events as f64)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The guard of `bench`: its recorder is the process's global one, where
/// every pipeline counts its drops.
static GUARD: std::sync::OnceLock<glimpse_obs::Guard> = std::sync::OnceLock::new();

/// Records of the `logs_otlp` signal dropped so far (in the global
/// recorder, the one `bench` installed).
fn dropped_records() -> u64 {
    GUARD
        .get()
        .expect("the global recorder")
        .render_metrics()
        .lines()
        .filter(|l| l.starts_with("glimpse_obs_dropped_total{") && l.contains("logs_otlp"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// One measured setup of `bench_otlp`.
struct Setup {
    name: &'static str,
    telemetry: glimpse_obs::Telemetry,
    dispatch: Dispatch,
    cpu: Vec<f64>,
    wall: Vec<f64>,
    threads: String,
    /// Whether its events also become OTLP records.
    exports: bool,
    /// Events logged in its rounds.
    logged: u64,
}

impl Setup {
    fn new(name: &'static str, otlp: Option<(&str, &str)>) -> Self {
        let telemetry = telemetry(otlp);
        let dispatch =
            Dispatch::new(tracing_subscriber::registry().with(telemetry.tracing_layer()));
        Self {
            name,
            telemetry,
            dispatch,
            cpu: vec![],
            wall: vec![],
            threads: String::new(),
            exports: otlp.is_some(),
            logged: 0,
        }
    }

    /// One round of `n` events, its figures kept.
    fn round(&mut self, n: u32) {
        let before = thread_cpu();
        let (cpu, wall) = cpu_per_event(&self.telemetry, &self.dispatch, n);
        self.threads = per_thread(&before, &thread_cpu(), u64::from(n));
        self.cpu.push(cpu);
        self.wall.push(wall);
        self.logged += u64::from(n);
    }
}

fn bench_otlp(c: &mut Criterion) {
    let receiver = Child::start();
    let mut setups = [
        Setup::new("JSON", None),
        Setup::new("JSON + OTLP gRPC", Some((&receiver.grpc, "grpc"))),
        Setup::new(
            "JSON + OTLP http/protobuf",
            Some((&receiver.http, "http/protobuf")),
        ),
    ];

    const N: u32 = 20_000;
    for setup in &mut setups {
        setup.round(N); // warm up
    }
    // Rounds alternate between the setups, so a slow spell of the machine
    // hits all of them alike.
    for _ in 0..5 {
        for setup in &mut setups {
            setup.round(N);
        }
    }
    // Events logged through the OTLP setups, each one record.
    let mut sent: u64 = setups.iter().filter(|s| s.exports).map(|s| s.logged).sum();
    let json_cpu = median(setups[0].cpu.clone());
    for s in &setups {
        let cpu = median(s.cpu.clone());
        println!(
            "otlp logs: {}: process CPU per event, flush and export counted (median of 5 x {N}): \
             {cpu:.0} ns, ratio to JSON {:.2}; wall {:.0} ns",
            s.name,
            cpu / json_cpu,
            median(s.wall.clone()),
        );
        println!(
            "otlp logs: {}: CPU per event by thread, last round: {}",
            s.name, s.threads
        );
    }
    // The figure is for records exported, not dropped.
    assert_eq!(
        dropped_records(),
        0,
        "records dropped in the measured rounds"
    );

    let [json, grpc, http] = &setups;
    let mut g = c.benchmark_group("log_event_otlp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("json_to_sink", |b| {
        in_spans(&json.dispatch, || b.iter(event))
    });
    for (name, setup) in [("json_and_otlp_grpc", grpc), ("json_and_otlp_http", http)] {
        g.bench_function(name, |b| {
            in_spans(&setup.dispatch, || {
                b.iter_custom(|iters| {
                    sent += iters;
                    let start = std::time::Instant::now();
                    for _ in 0..iters {
                        event();
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
    for setup in [grpc, http] {
        assert!(setup.telemetry.flush(std::time::Duration::from_secs(30)));
    }
    let dropped = dropped_records();
    let received = receiver.stop();
    println!("otlp logs: records logged {sent}, received {received}, dropped {dropped}");
    assert_eq!(received + dropped, sent, "records missing at the receiver");
}

criterion_group!(benches, bench, bench_otlp);

fn main() {
    if std::env::var_os(RECEIVER_CHILD).is_some() {
        receiver_child();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

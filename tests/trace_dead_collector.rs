//! A dead collector never slows or fails a request, and never holds up
//! shutdown: with the OTLP endpoint on a closed port or on a black hole
//! (accepts TCP, never answers), requests keep the latency they have without
//! an endpoint, spans that cannot be queued are counted in
//! `glimpse_obs_dropped_total{signal="spans"}`, and the guard's shutdown
//! returns within its timeout on current-thread and multi-thread runtimes.
//!
//! `init()` may run once per process, so each configuration runs in a child
//! process: this test binary again, with `GLIMPSE_TRACE_SCENARIO` set, running
//! only `scenario_child_process`.

mod support;

use std::{
    io::Read,
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use glimpse_obs::{Config, OtlpProtocol, testing::SharedBuffer};
use serde_json::{Value, json};
use support::{otlp_receiver, trace_app};

const SCENARIO: &str = "GLIMPSE_TRACE_SCENARIO";
const REQUESTS: usize = 200;
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// The parent tests run their children one at a time, so that latencies are
/// measured on an otherwise quiet machine.
static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Debug)]
struct Outcome {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    shutdown_ms: f64,
    shutdown: String,
    dropped_spans: f64,
    failed_requests: u64,
}

fn run(collector: &str, protocol: &str, flavor: &str) -> Outcome {
    let spec = format!("{collector}/{protocol}/{flavor}");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "scenario_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, &spec)
        // Export constantly while requests run, into a small queue.
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .env("OTEL_BSP_MAX_QUEUE_SIZE", "64")
        .env_remove("OTEL_EXPORTER_OTLP_TIMEOUT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scenario {spec} did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let line = out
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("scenario {spec} printed no result:\n{out}\n{err}"));
    let v: Value = serde_json::from_str(line).unwrap();
    let f = |k: &str| v[k].as_f64().unwrap();
    let outcome = Outcome {
        p50_ms: f("p50_ms"),
        p99_ms: f("p99_ms"),
        max_ms: f("max_ms"),
        shutdown_ms: f("shutdown_ms"),
        shutdown: v["shutdown"].as_str().unwrap().to_owned(),
        dropped_spans: f("dropped_spans"),
        failed_requests: v["failed_requests"].as_u64().unwrap(),
    };
    eprintln!("{spec}: {outcome:?}");
    outcome
}

fn assert_unaffected(name: &str, dead: &Outcome, base: &Outcome) {
    assert_eq!(dead.failed_requests, 0, "{name}: every request succeeds");
    // Generous bounds: what they catch is a request waiting on the exporter,
    // which costs its timeout (seconds), not scheduling noise.
    assert!(
        dead.p50_ms <= base.p50_ms * 3.0 + 5.0,
        "{name}: median {:.2} ms vs {:.2} ms without an endpoint",
        dead.p50_ms,
        base.p50_ms
    );
    assert!(
        dead.p99_ms <= base.p99_ms * 3.0 + 50.0,
        "{name}: p99 {:.2} ms vs {:.2} ms without an endpoint",
        dead.p99_ms,
        base.p99_ms
    );
    assert!(
        dead.max_ms < 1000.0,
        "{name}: slowest request {:.1} ms",
        dead.max_ms
    );
}

fn assert_bounded_shutdown(name: &str, o: &Outcome) {
    let limit = SHUTDOWN_TIMEOUT.as_secs_f64() * 1000.0 + 500.0;
    assert!(
        o.shutdown_ms <= limit,
        "{name}: shutdown took {:.0} ms, timeout {SHUTDOWN_TIMEOUT:?}",
        o.shutdown_ms
    );
}

#[test]
fn requests_keep_their_latency_when_the_collector_is_down_or_black_holed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let base = run("none", "grpc", "multi");
    let closed = run("closed", "grpc", "multi");
    let hole = run("blackhole", "grpc", "multi");
    assert_eq!(base.failed_requests, 0);
    assert_eq!(
        base.dropped_spans, 0.0,
        "nothing is dropped without an endpoint"
    );
    assert_unaffected("collector down", &closed, &base);
    assert_unaffected("collector black-holed", &hole, &base);
    // 2 spans per request, a queue of 64 and an exporter stuck on its first
    // batch: most spans cannot be queued, and each one is counted.
    assert!(
        hole.dropped_spans >= 100.0,
        "dropped spans counted: {}",
        hole.dropped_spans
    );
    assert_bounded_shutdown("collector down, multi-thread", &closed);
    assert_bounded_shutdown("collector black-holed, multi-thread", &hole);
    assert_eq!(
        hole.shutdown, "timeout",
        "a black hole cannot be flushed: shutdown reports it"
    );
}

#[test]
fn shutdown_returns_within_its_timeout_on_a_current_thread_runtime_with_a_dead_collector() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (collector, protocol) in [
        ("blackhole", "grpc"),
        ("blackhole", "http"),
        ("closed", "grpc"),
        ("closed", "http"),
    ] {
        let name = format!("{collector} over {protocol}, current-thread");
        let o = run(collector, protocol, "current");
        assert_eq!(o.failed_requests, 0, "{name}");
        assert!(
            o.max_ms < 1000.0,
            "{name}: slowest request {:.1} ms",
            o.max_ms
        );
        assert_bounded_shutdown(&name, &o);
        assert!(
            o.shutdown == "ok" || o.shutdown == "timeout",
            "{name}: {}",
            o.shutdown
        );
        if collector == "blackhole" {
            assert_eq!(o.shutdown, "timeout", "{name}: reported as a timeout");
        }
    }
}

/// Not a test by itself: the body of one child process (see the module docs).
#[test]
fn scenario_child_process() {
    let Ok(spec) = std::env::var(SCENARIO) else {
        return;
    };
    let parts: Vec<&str> = spec.split('/').collect();
    let (collector, protocol, flavor) = (parts[0], parts[1], parts[2]);
    let endpoint = match collector {
        "none" => None,
        "closed" => Some(format!("http://{}", otlp_receiver::closed_port())),
        "blackhole" => Some(format!("http://{}", otlp_receiver::black_hole())),
        other => panic!("unknown collector {other}"),
    };
    let protocol = if protocol == "http" {
        OtlpProtocol::HttpProtobuf
    } else {
        OtlpProtocol::Grpc
    };
    let rt = match flavor {
        "current" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
    }
    .unwrap();
    rt.block_on(async move {
        // The batch settings the parent set (`OTEL_BSP_*`); nothing else of
        // the environment.
        let bsp = |name: &str| {
            name.starts_with("OTEL_BSP_")
                .then(|| std::env::var(name).ok())
                .flatten()
        };
        let guard = Config::from_lookup(bsp)
            .unwrap()
            .service("dead-collector-test")
            .otlp_endpoint(endpoint)
            .otlp_protocol(protocol)
            .metrics_addr(None)
            .log_writer(SharedBuffer::new())
            .shutdown_timeout(SHUTDOWN_TIMEOUT)
            .init()
            .unwrap();
        let addr = trace_app::serve().await;
        let client = reqwest::Client::new();
        let mut failed = 0u64;
        let mut latencies = Vec::with_capacity(REQUESTS);
        for i in 0..REQUESTS + 20 {
            let start = Instant::now();
            let ok = client
                .get(format!("http://{addr}/users/{i}"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            // The first 20 warm up connections and caches.
            if i >= 20 {
                latencies.push(start.elapsed().as_secs_f64() * 1000.0);
                failed += u64::from(!ok);
            }
        }
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
        let metrics = guard.render_metrics();
        let dropped: f64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("glimpse_obs_dropped_total{") && l.contains("signal=\"spans\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        // Shut down on the runtime's own thread, as dropping the guard at the
        // end of `main` does: the harshest case for a current-thread runtime.
        let start = Instant::now();
        let result = guard.shutdown();
        let shutdown_ms = start.elapsed().as_secs_f64() * 1000.0;
        let shutdown = match result {
            Ok(()) => "ok".to_owned(),
            Err(glimpse_obs::Error::ShutdownTimeout(_)) => "timeout".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        println!(
            "RESULT {}",
            json!({
                "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
                "shutdown_ms": shutdown_ms, "shutdown": shutdown,
                "dropped_spans": dropped, "failed_requests": failed,
            })
        );
    });
}

//! The same event (8 fields, inside 2 spans with fields) through our JSON
//! formatter and through tracing-subscriber's `fmt().json()`, both to a sink,
//! in one run; plus heap allocations per event (counting allocator).
//!
//! `cargo bench --bench logging`

#![allow(unsafe_code)] // the counting allocator

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, Ordering},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tracing::{Dispatch, dispatcher};

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
}

criterion_group!(benches, bench);
criterion_main!(benches);

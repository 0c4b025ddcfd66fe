//! Cost of each domain helper against the floor: a raw `::metrics` counter
//! increment through a handle resolved once, in one Criterion run, with
//! `glimpse_obs` initialised (Prometheus recorder, JSON logs to a sink
//! through the background writer).
//!
//! Helpers that log a line (`payment_processed`, `auth_failed`) are measured
//! twice: with the line filtered out (their metric work alone) and with it
//! written. `db::query` and `ws::Connection::open` open a span by design.
//!
//! `cargo bench --bench helpers`; results in `docs/performance.md`.

use std::{
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use criterion::{Criterion, criterion_group, criterion_main};
use glimpse_obs::{Config, audit, business, business::PaymentStatus, cache, db, security, ws};

/// Poll a future that completes without waiting.
fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the bench futures never wait"),
    }
}

fn helpers(c: &mut Criterion) {
    let obs = Config::default()
        .service("bench")
        .metrics_addr(None)
        .process_metrics(false)
        .log_writer(std::io::sink())
        .init()
        .expect("init");
    let raw = metrics::counter!("bench_raw_total", "label" => "value");

    let mut g = c.benchmark_group("helpers");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);

    g.bench_function("raw counter, cached handle", |b| {
        b.iter(|| raw.increment(1))
    });
    // What the helpers replace: resolving the series on every call.
    g.bench_function("counter! with a caller-fed label, per call", |b| {
        b.iter(|| {
            metrics::counter!("bench_naive_total", "method" => black_box("email").to_owned())
                .increment(1)
        })
    });
    // The floors of helpers that record more than one counter increment.
    let raw_histogram = metrics::histogram!("bench_raw_seconds", "label" => "value");
    g.bench_function("raw histogram record, cached handle", |b| {
        b.iter(|| raw_histogram.record(black_box(0.0015)))
    });
    let raw_gauges = ["a", "b", "c"].map(|v| metrics::gauge!("bench_raw_gauge", "label" => v));
    g.bench_function("raw 3 gauge sets, cached handles", |b| {
        b.iter(|| {
            for (g, v) in raw_gauges.iter().zip([3.0, 2.0, 10.0]) {
                g.set(black_box(v));
            }
        })
    });
    let raw_revenue = metrics::gauge!("bench_raw_revenue", "label" => "value");
    g.bench_function("raw counter + gauge increment, cached handles", |b| {
        b.iter(|| {
            raw.increment(1);
            raw_revenue.increment(black_box(12.99));
        })
    });
    g.bench_function("business::match_created", |b| {
        b.iter(business::match_created)
    });
    g.bench_function("business::user_registered", |b| {
        b.iter(|| business::user_registered(black_box("email")))
    });
    g.bench_function("business::message_sent", |b| {
        b.iter(|| business::message_sent(black_box("text")))
    });
    g.bench_function("business::feature_used", |b| {
        b.iter(|| business::feature_used(black_box("super_like")))
    });
    g.bench_function("business::conversion", |b| {
        b.iter(|| business::conversion(black_box("premium"), black_box("checkout")))
    });
    g.bench_function("security::api_key_used", |b| {
        b.iter(|| security::api_key_used(black_box("partner-a")))
    });
    g.bench_function("security::admin_action", |b| {
        b.iter(|| security::admin_action(black_box("user.ban")))
    });
    g.bench_function("cache::hit", |b| {
        b.iter(|| cache::hit(black_box("profiles")))
    });
    g.bench_function("cache::lookup", |b| {
        b.iter(|| cache::lookup(black_box("profiles"), black_box(false)))
    });
    g.bench_function("db::record_pool", |b| {
        b.iter(|| db::record_pool(black_box("main"), 3, 2, 10))
    });

    let conn = ws::Connection::open("chat");
    g.bench_function("ws::Connection::sent", |b| b.iter(|| conn.sent()));
    g.bench_function("ws::Connection::received", |b| b.iter(|| conn.received()));
    g.bench_function("ws::Connection::latency", |b| {
        b.iter(|| conn.latency(black_box(Duration::from_micros(1500))))
    });
    drop(conn);
    // Exemplar group (below): the same channel's latency on a connection
    // whose span is sampled (exemplar kept) and one without IDs (what an
    // unsampled connection pays: one branch).
    let sampled = ws::Connection::open("exemplar");
    let unsampled =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            ws::Connection::open("exemplar")
        });

    // Log lines filtered out: the helpers' metric work alone (spans still
    // reach the OpenTelemetry layer).
    obs.set_filter("off").expect("filter");
    // The floor of a helper that counts and logs: the counter plus a
    // filtered-out event.
    g.bench_function("raw counter + filtered-out warn!, cached handle", |b| {
        b.iter(|| {
            raw.increment(1);
            tracing::warn!(
                target: "glimpse_obs::security",
                log_type = "user_activity",
                reason = black_box("invalid_password"),
                "authentication failed"
            );
        })
    });
    g.bench_function("business::payment_processed (lines off)", |b| {
        b.iter(|| {
            business::payment_processed("stripe", black_box("EUR"), 1299, PaymentStatus::Succeeded)
        })
    });
    g.bench_function("security::auth_failed (lines off)", |b| {
        b.iter(|| security::auth_failed(black_box("invalid_password")))
    });
    g.bench_function("ws::Connection open+close (lines off)", |b| {
        b.iter(|| ws::Connection::open(black_box("chat")).close(Some(1000)))
    });
    g.bench_function("db::query (lines off)", |b| {
        b.iter(|| {
            ready(db::query(black_box("get_user"), async {
                Ok::<_, std::io::Error>(1)
            }))
        })
    });

    // Lines written (JSON to a sink through the background writer).
    obs.set_filter("info").expect("filter");
    g.bench_function("business::payment_processed (lines on)", |b| {
        b.iter(|| {
            business::payment_processed("stripe", black_box("EUR"), 1299, PaymentStatus::Succeeded)
        })
    });
    g.bench_function("security::auth_failed (lines on)", |b| {
        b.iter(|| security::auth_failed(black_box("invalid_password")))
    });
    g.bench_function("audit::admin_action (lines on)", |b| {
        b.iter(|| audit::admin_action(black_box("admin-7"), "user.ban", "user-13"))
    });
    g.bench_function("ws::Connection open+close (lines on)", |b| {
        b.iter(|| ws::Connection::open(black_box("chat")).close(Some(1000)))
    });
    g.bench_function("db::query (lines on)", |b| {
        b.iter(|| {
            ready(db::query(black_box("get_user"), async {
                Ok::<_, std::io::Error>(1)
            }))
        })
    });
    g.finish();

    // What an exemplar adds to a histogram observation: the bucket's seqlock
    // write and a clock read (`ws::Connection::latency` has no instant of
    // its own; the HTTP layer and `db::query` reuse the one they took).
    let mut g = c.benchmark_group("exemplar");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    let raw = metrics::histogram!("bench_raw_seconds");
    g.bench_function("raw histogram record, cached handle", |b| {
        b.iter(|| raw.record(black_box(0.0015)))
    });
    g.bench_function("ws latency, unsampled (no exemplar)", |b| {
        b.iter(|| unsampled.latency(black_box(Duration::from_micros(1500))))
    });
    g.bench_function("ws latency, sampled (exemplar kept)", |b| {
        b.iter(|| sampled.latency(black_box(Duration::from_micros(1500))))
    });
    g.bench_function("Instant::now (the clock read alone)", |b| {
        b.iter(std::time::Instant::now)
    });
    g.finish();
}

criterion_group!(benches, helpers);
criterion_main!(benches);

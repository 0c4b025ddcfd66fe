//! Database metrics: timed, named operations and connection-pool gauges.
//!
//! [`query`] wraps the future of one database operation: it records its
//! duration in `db_query_duration_seconds{operation,outcome}`, opens a
//! `db.query` child span, logs a WARN line and counts `db_slow_queries_total`
//! above the slow-query threshold (`GLIMPSE_SLOW_QUERY_MS`, 500 ms by
//! default), and logs an ERROR line when the operation fails.
//!
//! The operation is a name the service chooses (`"get_user"`,
//! `"insert_payment"`): never raw SQL, never a bound value, so the label
//! stays low-cardinality and free of personal data.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::SqlitePool) -> Result<(), sqlx::Error> {
//! use glimpse_obs::db;
//!
//! let user: Option<(i64, String)> = db::query(
//!     "get_user",
//!     sqlx::query_as("SELECT id, email FROM users WHERE id = ?")
//!         .bind(42)
//!         .fetch_optional(&pool),
//! )
//! .await?;
//! # Ok(()) }
//! ```
//!
//! Pool usage (the guide's "more than 80 % of connections used" alert) comes
//! from [`record_pool`], or, with the `sqlx` feature, from `monitor_pool`,
//! which samples a `sqlx::Pool` in the background.
//!
//! ## Log lines
//!
//! | when | level | message | fields |
//! |---|---|---|---|
//! | the future returned `Err` | ERROR | `query failed` | `operation`, `duration_ms`, `outcome: "error"`, `error` (the error's `Display`), `slow` |
//! | `Ok`, slower than the threshold | WARN | `slow query` | `operation`, `duration_ms`, `outcome: "ok"`, `threshold_ms` |
//! | dropped before completing, slower than the threshold | WARN | `slow query` | same, `outcome: "cancelled"` |
//!
//! The target of these lines is `glimpse_obs::db`. An `Err` counts as a
//! failure: look rows up with `fetch_optional` rather than `fetch_one` when
//! "not found" is an ordinary answer.

use std::{
    fmt::Display,
    time::{Duration, Instant},
};

use metrics::{Counter, Gauge, Histogram};
use tracing::{Instrument, field::Empty};

use std::sync::Arc;

use super::{
    exemplar::{Exemplars, span_ids},
    handles::{Family, Ref},
    names::{self, labels},
};

/// Outcome label values.
const OK: &str = "ok";
const ERROR: &str = "error";
const CANCELLED: &str = "cancelled";

struct OpHandles {
    ok: Histogram,
    error: Histogram,
    cancelled: Histogram,
    slow: Counter,
    /// Exemplar cells of `ok`, `error`, `cancelled`, once installed.
    exemplars: Option<[Arc<Exemplars>; 3]>,
}

static OPERATIONS: Family<OpHandles> = Family::new(names::DB_QUERY_DURATION, |op, _| {
    let h = |outcome: &'static str| {
        metrics::histogram!(names::DB_QUERY_DURATION,
            labels::OPERATION => op.to_owned(), labels::OUTCOME => outcome)
    };
    OpHandles {
        ok: h(OK),
        error: h(ERROR),
        cancelled: h(CANCELLED),
        slow: metrics::counter!(names::DB_SLOW_QUERIES, labels::OPERATION => op.to_owned()),
        exemplars: super::exporter::installed_exemplars().map(|registry| {
            [OK, ERROR, CANCELLED].map(|outcome| {
                registry.series(
                    names::DB_QUERY_DURATION,
                    &[(labels::OPERATION, op), (labels::OUTCOME, outcome)],
                    super::LATENCY_BUCKETS,
                )
            })
        }),
    }
});

/// Time one named database operation; see the [module docs](self) for what
/// it records.
///
/// The future's output is returned unchanged. A future dropped before it
/// completes (a timeout, a cancelled request) is recorded with
/// `outcome="cancelled"`.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// # let (_, seen) = glimpse_obs::testing::capture_async(async {
/// let rows: Result<u64, std::io::Error> =
///     glimpse_obs::db::query("count_users", async { Ok(3) }).await;
/// assert_eq!(rows.unwrap(), 3);
/// # }).await;
/// # assert_eq!(seen.metric_delta("db_query_duration_seconds_count",
/// #     &[("operation", "count_users"), ("outcome", "ok")]), 1.0);
/// # });
/// ```
pub async fn query<F, T, E>(operation: &str, fut: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: Display,
{
    let span = tracing::info_span!(
        target: "glimpse_obs::db",
        "db.query",
        db.operation.name = operation,
        otel.kind = "client",
        otel.status_code = Empty,
    );
    let mut timer = Timer {
        operation,
        handles: OPERATIONS.get(operation, ""),
        started: Instant::now(),
        span: span.clone(),
        done: false,
    };
    let out = fut.instrument(span).await;
    timer.done = true;
    let elapsed = timer.started.elapsed();
    match &out {
        Ok(_) => timer.finish(elapsed, OK, None),
        Err(e) => timer.finish(elapsed, ERROR, Some(e)),
    }
    out
}

/// Records the operation when it completes, or when it is dropped first.
struct Timer<'a> {
    operation: &'a str,
    handles: Ref<OpHandles>,
    started: Instant,
    span: tracing::Span,
    done: bool,
}

impl Timer<'_> {
    fn finish(&self, elapsed: Duration, outcome: &'static str, error: Option<&dyn Display>) {
        let h = &*self.handles;
        let (histogram, i) = match outcome {
            OK => (&h.ok, 0),
            ERROR => (&h.error, 1),
            _ => (&h.cancelled, 2),
        };
        let secs = elapsed.as_secs_f64();
        histogram.record(secs);
        if let Some(cells) = &h.exemplars {
            cells[i].record_ids(secs, span_ids(&self.span), Some(self.started + elapsed));
        }
        let threshold = super::limits::slow_query();
        let slow = elapsed > threshold;
        if slow {
            h.slow.increment(1);
        }
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        let _in = self.span.enter();
        if let Some(e) = error {
            self.span.record("otel.status_code", "error");
            tracing::error!(
                target: "glimpse_obs::db",
                operation = self.operation,
                duration_ms,
                outcome,
                error = %e,
                slow,
                "query failed"
            );
        } else if slow {
            tracing::warn!(
                target: "glimpse_obs::db",
                operation = self.operation,
                duration_ms,
                outcome,
                threshold_ms = threshold.as_secs_f64() * 1000.0,
                "slow query"
            );
        }
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(self.started.elapsed(), CANCELLED, None);
        }
    }
}

struct PoolHandles {
    in_use: Gauge,
    idle: Gauge,
    max: Gauge,
}

static POOLS: Family<PoolHandles> = Family::new(names::DB_POOL_CONNECTIONS, |pool, _| {
    let state = |s: &'static str| {
        metrics::gauge!(names::DB_POOL_CONNECTIONS,
            labels::POOL => pool.to_owned(), labels::STATE => s)
    };
    PoolHandles {
        in_use: state("in_use"),
        idle: state("idle"),
        max: metrics::gauge!(names::DB_POOL_CONNECTIONS_MAX, labels::POOL => pool.to_owned()),
    }
});

/// Set the pool gauges of `pool`: `db_pool_connections{pool,state="in_use"}`,
/// `{state="idle"}` and `db_pool_connections_max{pool}`. Call it
/// periodically for a pool `monitor_pool` cannot sample.
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::db::record_pool("main", 8, 2, 10); // 80 % in use
/// # });
/// # assert_eq!(seen.metric("db_pool_connections", &[("pool", "main"), ("state", "in_use")]), 8.0);
/// # assert_eq!(seen.metric("db_pool_connections_max", &[("pool", "main")]), 10.0);
/// ```
pub fn record_pool(pool: &str, in_use: u64, idle: u64, max: u64) {
    let h = POOLS.get(pool, "");
    h.in_use.set(in_use as f64);
    h.idle.set(idle as f64);
    h.max.set(max as f64);
}

#[cfg(feature = "sqlx")]
pub use self::monitor::{PoolMonitor, monitor_pool};

#[cfg(feature = "sqlx")]
mod monitor {
    use std::{sync::mpsc, time::Duration};

    /// The shortest sampling period `monitor_pool` uses.
    const MIN_EVERY: Duration = Duration::from_millis(10);

    /// Stops the sampling of [`monitor_pool`] when dropped: keep it as long
    /// as the pool lives.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sqlx::Error> {
    /// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
    /// let monitor = glimpse_obs::db::monitor_pool("main", pool.clone(), std::time::Duration::from_secs(5));
    /// // ... serve ...
    /// drop(monitor); // sampling stops
    /// # Ok(()) }
    /// ```
    #[must_use = "the pool is only sampled while the monitor lives"]
    #[derive(Debug)]
    pub struct PoolMonitor {
        stop: Stop,
    }

    #[derive(Debug)]
    enum Stop {
        Task(tokio::task::AbortHandle),
        Thread(mpsc::Sender<()>),
    }

    impl Drop for PoolMonitor {
        fn drop(&mut self) {
            match &self.stop {
                Stop::Task(t) => t.abort(),
                Stop::Thread(tx) => {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// Sample `pool` every `every` (at least 10 ms) into the pool gauges of
    /// [`record_pool`](super::record_pool) under the name `name`, from a
    /// background task (a thread when called outside a tokio runtime),
    /// until the returned [`PoolMonitor`] drops or the pool closes.
    ///
    /// In use is `pool.size() - pool.num_idle()`; max is the pool's
    /// `max_connections`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sqlx::Error> {
    /// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
    /// let _monitor = glimpse_obs::db::monitor_pool("main", pool.clone(), std::time::Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    pub fn monitor_pool<DB: sqlx::Database>(
        name: &str,
        pool: sqlx::Pool<DB>,
        every: Duration,
    ) -> PoolMonitor {
        let every = every.max(MIN_EVERY);
        let name = name.to_owned();
        let sample = move || {
            let size = u64::from(pool.size());
            let idle = pool.num_idle() as u64;
            let max = u64::from(pool.options().get_max_connections());
            super::record_pool(&name, size.saturating_sub(idle), idle, max);
            !pool.is_closed()
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let task = rt.spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        if !sample() {
                            break;
                        }
                    }
                });
                PoolMonitor {
                    stop: Stop::Task(task.abort_handle()),
                }
            }
            Err(_) => {
                let (tx, rx) = mpsc::channel::<()>();
                let spawned = std::thread::Builder::new()
                    .name("glimpse-pool-monitor".into())
                    .spawn(move || {
                        while sample() {
                            if !matches!(
                                rx.recv_timeout(every),
                                Err(mpsc::RecvTimeoutError::Timeout)
                            ) {
                                break;
                            }
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(target: "glimpse_obs::db", error = %e, "cannot start the pool monitor thread");
                }
                PoolMonitor {
                    stop: Stop::Thread(tx),
                }
            }
        }
    }
}

//! `db::query` and the pool gauges against a real SQLite pool (sqlx): the
//! duration histogram by operation and outcome, the slow-query WARN line and
//! counter, the ERROR line of a failing query, cancellation, and pool usage
//! sampled by `monitor_pool`.

mod common;

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{keys, metric_value, strict_lines};
use glimpse_obs::{Config, Guard, db, testing::SharedBuffer};
use serde_json::Value;
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

/// The slow-query threshold of this test process: generous, since a "fast"
/// SQLite insert on a loaded CI machine can take tens of milliseconds.
const SLOW: Duration = Duration::from_millis(250);

fn obs() -> &'static (Guard, SharedBuffer) {
    static OBS: OnceLock<(Guard, SharedBuffer)> = OnceLock::new();
    OBS.get_or_init(|| {
        let logs = SharedBuffer::new();
        let guard = Config::default()
            .service("db-test")
            .metrics_addr(None)
            .process_metrics(false)
            .slow_query(SLOW)
            .log_writer(logs.clone())
            .init()
            .unwrap();
        (guard, logs)
    })
}

/// A pool on a fresh database file (an in-memory SQLite database would be
/// private to each connection), without waiting for the disk: the journal
/// in memory and no `fsync`. With SQLite's defaults each insert waited for
/// two `fsync`s, and on a clean CI run under I/O load three "fast" inserts
/// took 1.7 s, over the slow threshold; what these tests time is the
/// crate's instrumentation, not the disk.
async fn pool(max: u32) -> SqlitePool {
    static N: AtomicUsize = AtomicUsize::new(0);
    obs();
    let file = std::env::temp_dir().join(format!(
        "glimpse-db-test-{}-{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&file);
    let pool = SqlitePoolOptions::new()
        .max_connections(max)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(file)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Memory)
                .synchronous(SqliteSynchronous::Off),
        )
        .await
        .unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, email TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

fn metric(name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&obs().0.render_metrics(), name, labels).unwrap_or(0.0)
}

/// The lines of this process whose `operation` is `op`, strictly parsed.
fn lines_of(op: &str) -> Vec<Value> {
    let (guard, logs) = obs();
    assert!(guard.flush(Duration::from_secs(5)));
    strict_lines(&logs.contents())
        .into_iter()
        .filter(|l| l["operation"] == op)
        .collect()
}

#[tokio::test]
async fn a_fast_query_is_timed_by_operation_and_logs_nothing() {
    let pool = pool(2).await;
    let op = [("operation", "insert_user"), ("outcome", "ok")];
    for i in 0..3 {
        let done = db::query(
            "insert_user",
            sqlx::query("INSERT INTO users (email) VALUES (?)")
                .bind(format!("u{i}@example.com"))
                .execute(&pool),
        )
        .await
        .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }
    let text = obs().0.render_metrics();
    assert_eq!(
        metric_value(&text, "db_query_duration_seconds_count", &op),
        Some(3.0)
    );
    let sum = metric_value(&text, "db_query_duration_seconds_sum", &op).unwrap();
    assert!(sum > 0.0 && sum < SLOW.as_secs_f64() * 3.0, "sum {sum}");
    // The SQL and its bound values are nowhere in the metrics.
    assert!(!text.contains("INSERT"));
    assert!(!text.contains("example.com"));
    assert_eq!(
        metric_value(
            &text,
            "db_slow_queries_total",
            &[("operation", "insert_user")]
        ),
        Some(0.0)
    );
    assert!(lines_of("insert_user").is_empty());
    assert!(text.contains("# TYPE db_query_duration_seconds histogram"));
}

#[tokio::test]
async fn a_query_over_the_threshold_logs_one_warn_line_and_counts_as_slow() {
    let pool = pool(2).await;
    let started = Instant::now();
    let row: (i64,) = db::query("slow_report", async {
        tokio::time::sleep(SLOW + Duration::from_millis(30)).await;
        sqlx::query_as("SELECT count(*) FROM users")
            .fetch_one(&pool)
            .await
    })
    .await
    .unwrap();
    let took = started.elapsed().as_secs_f64() * 1000.0;
    assert!(row.0 >= 0);

    assert_eq!(
        metric("db_slow_queries_total", &[("operation", "slow_report")]),
        1.0
    );
    assert_eq!(
        metric(
            "db_query_duration_seconds_count",
            &[("operation", "slow_report"), ("outcome", "ok")]
        ),
        1.0
    );
    let lines = lines_of("slow_report");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["level"], "WARN");
    assert_eq!(l["message"], "slow query");
    assert_eq!(l["target"], "glimpse_obs::db");
    assert_eq!(l["service"], "db-test");
    assert_eq!(l["log_type"], "system");
    assert_eq!(l["outcome"], "ok");
    assert_eq!(l["threshold_ms"], SLOW.as_millis() as f64);
    let ms = l["duration_ms"].as_f64().unwrap();
    assert!(
        ms >= (SLOW.as_millis() + 30) as f64 && ms <= took,
        "duration_ms {ms}, measured {took}"
    );
    // The line belongs to the db.query span: it carries the OTel attribute.
    assert_eq!(l["db.operation.name"], "slow_report");
    assert_eq!(
        keys(l),
        [
            "db.operation.name",
            "duration_ms",
            "level",
            "log_type",
            "message",
            "operation",
            "otel.kind",
            "outcome",
            "service",
            "target",
            "threshold_ms",
            "timestamp"
        ]
    );
}

#[tokio::test]
async fn a_failing_query_records_outcome_error_and_logs_an_error_line() {
    let pool = pool(2).await;
    let res = db::query(
        "broken_report",
        sqlx::query("SELEC nonsense FROM nowhere").execute(&pool),
    )
    .await;
    let err = res.unwrap_err();

    let text = obs().0.render_metrics();
    let by = |outcome| [("operation", "broken_report"), ("outcome", outcome)];
    assert_eq!(
        metric_value(&text, "db_query_duration_seconds_count", &by("error")),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&text, "db_query_duration_seconds_count", &by("ok")),
        Some(0.0)
    );
    assert!(!text.contains("SELEC"));

    let lines = lines_of("broken_report");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["level"], "ERROR");
    assert_eq!(l["message"], "query failed");
    assert_eq!(l["target"], "glimpse_obs::db");
    assert_eq!(l["outcome"], "error");
    assert_eq!(l["error"], err.to_string());
    assert!(l["error"].as_str().unwrap().contains("syntax error"), "{l}");
    assert_eq!(l["slow"], false);
    assert!(l["duration_ms"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn a_slow_query_cancelled_by_a_timeout_is_recorded_as_cancelled() {
    obs();
    let res = tokio::time::timeout(
        SLOW + Duration::from_millis(20),
        db::query("stuck_lock", async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, sqlx::Error>(())
        }),
    )
    .await;
    assert!(res.is_err(), "the timeout fired");
    let by = [("operation", "stuck_lock"), ("outcome", "cancelled")];
    assert_eq!(metric("db_query_duration_seconds_count", &by), 1.0);
    assert_eq!(
        metric("db_slow_queries_total", &[("operation", "stuck_lock")]),
        1.0
    );
    let lines = lines_of("stuck_lock");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["level"], "WARN");
    assert_eq!(lines[0]["outcome"], "cancelled");
}

#[tokio::test]
async fn lines_logged_inside_the_query_carry_its_operation() {
    obs();
    db::query("traced_op", async {
        tracing::info!(tag = "inside-query", "fetching");
        Ok::<_, std::io::Error>(())
    })
    .await
    .unwrap();
    let (guard, logs) = obs();
    assert!(guard.flush(Duration::from_secs(5)));
    let lines = strict_lines(&logs.contents());
    let l = lines.iter().find(|l| l["tag"] == "inside-query").unwrap();
    assert_eq!(l["db.operation.name"], "traced_op");
}

#[tokio::test]
async fn monitor_pool_samples_connections_in_use_idle_and_max() {
    let pool = pool(4).await;
    let _monitor = db::monitor_pool("sqlite_main", pool.clone(), Duration::from_millis(10));
    let state = |s| [("pool", "sqlite_main"), ("state", s)];
    let wait = |labels: [(&'static str, &'static str); 2], want: f64| async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = metric("db_pool_connections", &labels);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{labels:?} is {got}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };

    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    let c = pool.acquire().await.unwrap();
    wait(state("in_use"), 3.0).await;
    assert_eq!(
        metric("db_pool_connections_max", &[("pool", "sqlite_main")]),
        4.0
    );
    // 3 of 4 in use: 75 %, under the guide's 80 % alert.
    let text = obs().0.render_metrics();
    let ratio = metric_value(&text, "db_pool_connections", &state("in_use")).unwrap()
        / metric_value(&text, "db_pool_connections_max", &[("pool", "sqlite_main")]).unwrap();
    assert_eq!(ratio, 0.75);

    drop((a, b));
    wait(state("in_use"), 1.0).await;
    let idle = metric("db_pool_connections", &state("idle"));
    assert!(idle >= 1.0, "released connections go idle: {idle}");
    drop(c);
    wait(state("in_use"), 0.0).await;
}

#[tokio::test]
async fn dropping_the_monitor_stops_sampling() {
    let pool = pool(3).await;
    let monitor = db::monitor_pool("sqlite_stopped", pool.clone(), Duration::from_millis(10));
    let in_use = [("pool", "sqlite_stopped"), ("state", "in_use")];
    let deadline = Instant::now() + Duration::from_secs(5);
    // Sampled, and settled: the set-up query's connection goes back to the
    // idle set from a task of sqlx's, so an early sample may still count it
    // in use.
    while metric("db_pool_connections_max", &[("pool", "sqlite_stopped")]) != 3.0
        || metric("db_pool_connections", &in_use) != 0.0
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(monitor);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let _held = pool.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(
        metric("db_pool_connections", &in_use),
        0.0,
        "no sample after drop"
    );
}

#[test]
fn record_pool_sets_the_three_gauges() {
    obs();
    db::record_pool("manual", 8, 2, 10);
    let text = obs().0.render_metrics();
    assert_eq!(
        metric_value(
            &text,
            "db_pool_connections",
            &[("pool", "manual"), ("state", "in_use")]
        ),
        Some(8.0)
    );
    assert_eq!(
        metric_value(
            &text,
            "db_pool_connections",
            &[("pool", "manual"), ("state", "idle")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric_value(&text, "db_pool_connections_max", &[("pool", "manual")]),
        Some(10.0)
    );
    assert!(text.contains("# TYPE db_pool_connections gauge"));
}

#[test]
fn monitor_pool_outside_a_runtime_samples_from_a_thread() {
    obs();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = rt.block_on(pool(2));
    // Called with no runtime entered.
    let monitor = db::monitor_pool("sqlite_thread", pool, Duration::from_millis(10));
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric("db_pool_connections_max", &[("pool", "sqlite_thread")]) != 2.0 {
        assert!(Instant::now() < deadline, "the thread never sampled");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(monitor);
}

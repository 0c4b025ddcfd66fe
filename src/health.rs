//! Liveness, readiness and the shutdown drain, for Kubernetes probes and
//! load balancers.
//!
//! - `GET /health/live`: 200 while the process runs ([`live`]).
//! - `GET /health/ready`: runs the registered checks, each within its
//!   timeout and all at once, and answers 200 when every check passed, else
//!   503, with a JSON body listing each check's status and duration
//!   ([`ready`]). Results are cached for [`Health::cache_for`] (1 s by
//!   default), so a probe storm does not reach the database. From the moment
//!   shutdown begins, ready answers 503 without running any check.
//! - The drain: [`Health::shutdown_signal`] resolves only after SIGINT or
//!   SIGTERM **and** the drain delay (`GLIMPSE_SHUTDOWN_DRAIN_MS`, 1 s by
//!   default), during which the service keeps serving and ready answers 503,
//!   so load balancers stop sending traffic before the listener closes.
//!   Handed to `axum::serve(..).with_graceful_shutdown(..)`, the server then
//!   stops accepting and finishes the requests in flight.
//!
//! Each check run sets `glimpse_health_check_status{check}` (1 passed, 0
//! failed) and records `glimpse_health_check_duration_seconds{check}`. The
//! probes themselves stay out of logs, metrics and spans: [`crate::layer`]
//! excludes `/health/live` and `/health/ready` by default. The metrics
//! listener (`GLIMPSE_METRICS_ADDR`) serves both paths too, with the
//! [`Health`] of [`Guard::health`](crate::Guard::health).
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let obs = glimpse_obs::init()?;
//!     let health = obs
//!         .health()
//!         .check("cache", Duration::from_millis(200), || async { Ok::<(), std::io::Error>(()) });
//!     let app: Router = Router::new()
//!         .route("/matches/{id}", get(|| async { "a match" }))
//!         .merge(health.router())
//!         .layer(glimpse_obs::layer());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app)
//!         .with_graceful_shutdown(health.shutdown_signal())
//!         .await?;
//!     Ok(())
//! }
//! ```
//!
//! Example body of a 503:
//!
//! ```json
//! {"status":"down","checks":[{"name":"database","status":"up","duration_ms":0.412},{"name":"payments","status":"down","duration_ms":200.315,"error":"timed out after 200 ms"}]}
//! ```

use std::{
    fmt::Display,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::metrics::names;

pub use crate::ids::{LIVE_PATH, READY_PATH};
/// The drain delay unless configured (`GLIMPSE_SHUTDOWN_DRAIN_MS`): 1 s.
pub const DEFAULT_DRAIN: Duration = crate::config::DEFAULT_SHUTDOWN_DRAIN;
/// How long readiness results are reused unless configured: 1 s.
pub const DEFAULT_CACHE_FOR: Duration = Duration::from_secs(1);

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const LIVE_BODY: &[u8] = b"{\"status\":\"up\"}";
const DRAINING_BODY: &[u8] = b"{\"status\":\"draining\",\"checks\":[]}";

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

struct Check {
    name: Arc<str>,
    timeout: Duration,
    run: CheckFn,
}

/// A cached readiness answer.
#[derive(Clone)]
struct Answer {
    at: Instant,
    ready: bool,
    body: Bytes,
}

struct Inner {
    checks: RwLock<Vec<Arc<Check>>>,
    /// `cache_for` and `drain`, set by the builder methods.
    settings: RwLock<(Duration, Duration)>,
    draining: AtomicBool,
    cache: Mutex<Option<Answer>>,
    /// One refresh at a time: probes arriving meanwhile wait for its answer.
    refresh: tokio::sync::Mutex<()>,
}

/// The readiness state of a service: its checks, their cached answer and
/// whether shutdown has begun. A cheap handle: clones share the state, so
/// the one registered on the application's router and the metrics
/// listener's answer alike.
///
/// ```
/// use std::time::Duration;
///
/// let health = glimpse_obs::health::Health::new()
///     .cache_for(Duration::from_secs(2))
///     .drain_delay(Duration::from_millis(500))
///     .check("upstream", Duration::from_millis(300), || async {
///         Ok::<(), String>(()) // e.g. a ping of a dependency
///     });
/// let app: axum::Router = axum::Router::new().merge(health.router());
/// ```
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<Arc<str>> = self
            .inner
            .checks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| c.name.clone())
            .collect();
        f.debug_struct("Health")
            .field("checks", &names)
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// No checks (ready answers 200 until shutdown begins), results cached
    /// for 1 s, a drain delay of 1 s. After `init()`, prefer
    /// [`Guard::health`](crate::Guard::health): its drain delay follows
    /// `GLIMPSE_SHUTDOWN_DRAIN_MS` and the metrics listener serves it.
    ///
    /// ```
    /// let health = glimpse_obs::health::Health::new();
    /// assert!(!health.is_draining());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                checks: RwLock::new(Vec::new()),
                settings: RwLock::new((DEFAULT_CACHE_FOR, DEFAULT_DRAIN)),
                draining: AtomicBool::new(false),
                cache: Mutex::new(None),
                refresh: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Register a readiness check: `check` is called on each refresh and
    /// must finish within `timeout`; an `Err` (its `Display` goes into the
    /// body), a timeout or a panic makes the service not ready. A check
    /// registered again under the same name replaces the first.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// async fn ping_search() -> Result<(), std::io::Error> {
    ///     Ok(())
    /// }
    ///
    /// let health = glimpse_obs::health::Health::new()
    ///     .check("search", Duration::from_millis(500), ping_search);
    /// ```
    #[must_use]
    pub fn check<F, Fut, E>(self, name: impl Into<String>, timeout: Duration, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + 'static,
    {
        describe();
        let name: Arc<str> = name.into().into();
        let run: CheckFn = Arc::new(move || {
            let fut = check();
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        });
        {
            let mut checks = self.inner.checks.write().unwrap_or_else(|e| e.into_inner());
            checks.retain(|c| c.name != name);
            checks.push(Arc::new(Check { name, timeout, run }));
        }
        self.invalidate();
        self
    }

    /// How long a readiness answer is reused before the checks run again.
    /// Defaults to 1 s; `Duration::ZERO` runs them on every probe.
    ///
    /// ```
    /// let health = glimpse_obs::health::Health::new().cache_for(std::time::Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn cache_for(self, interval: Duration) -> Self {
        self.inner
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .0 = interval;
        self.invalidate();
        self
    }

    /// How long [`Health::drain_after`] (and [`Health::shutdown_signal`])
    /// wait, ready answering 503, before resolving. Defaults to 1 s;
    /// `Duration::ZERO` turns the drain off.
    ///
    /// ```
    /// let health = glimpse_obs::health::Health::new().drain_delay(std::time::Duration::ZERO);
    /// ```
    #[must_use]
    pub fn drain_delay(self, delay: Duration) -> Self {
        self.inner
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .1 = delay;
        self
    }

    fn settings(&self) -> (Duration, Duration) {
        *self
            .inner
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn invalidate(&self) {
        *self.inner.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Mark the service as shutting down: from now on ready answers 503.
    /// [`Health::drain_after`] calls it when its signal arrives.
    ///
    /// ```
    /// let health = glimpse_obs::health::Health::new();
    /// health.begin_shutdown();
    /// assert!(health.is_draining());
    /// ```
    pub fn begin_shutdown(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    /// Whether shutdown has begun.
    ///
    /// ```
    /// assert!(!glimpse_obs::health::Health::new().is_draining());
    /// ```
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Wait for `signal`, then mark the service as shutting down (ready
    /// answers 503) and wait the drain delay. For a shutdown trigger other
    /// than SIGINT/SIGTERM; [`Health::shutdown_signal`] is this with
    /// [`shutdown_signal`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let health = glimpse_obs::health::Health::new().drain_delay(std::time::Duration::ZERO);
    /// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    /// let drained = tokio::spawn(health.clone().drain_after(async { let _ = rx.await; }));
    /// tx.send(()).unwrap();
    /// drained.await.unwrap();
    /// assert!(health.is_draining());
    /// # }
    /// ```
    pub async fn drain_after(self, signal: impl Future<Output = ()> + Send + 'static) {
        signal.await;
        self.begin_shutdown();
        let drain = self.settings().1;
        tracing::info!(
            target: "glimpse_obs::health",
            drain_ms = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX),
            "shutdown signal received: readiness answers 503 while draining"
        );
        if !drain.is_zero() {
            tokio::time::sleep(drain).await;
        }
    }

    /// SIGINT or SIGTERM, then the drain: ready answers 503 at once, the
    /// future resolves after the drain delay. Hand it to
    /// `axum::serve(..).with_graceful_shutdown(..)`.
    ///
    /// ```no_run
    /// # async fn demo(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    /// let health = glimpse_obs::health::Health::new();
    /// let app = app.merge(health.router());
    /// axum::serve(listener, app)
    ///     .with_graceful_shutdown(health.shutdown_signal())
    ///     .await
    /// # }
    /// ```
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        self.clone().drain_after(shutdown_signal())
    }

    /// A router serving [`LIVE_PATH`] and [`READY_PATH`] with this state;
    /// merge it into the application's router (any state type).
    ///
    /// ```
    /// #[derive(Clone)]
    /// struct App;
    ///
    /// let health = glimpse_obs::health::Health::new();
    /// let app: axum::Router<App> = axum::Router::new().merge(health.router());
    /// let app: axum::Router = app.with_state(App);
    /// ```
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let health = self.clone();
        Router::new().route(LIVE_PATH, get(live)).route(
            READY_PATH,
            get(move || {
                let health = health.clone();
                async move { health.ready_response().await }
            }),
        )
    }

    /// The readiness answer as a response: 503 while draining, the cached
    /// answer while fresh, else the checks run (one refresh at a time).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let health = glimpse_obs::health::Health::new()
    ///     .check("always", std::time::Duration::from_secs(1), || async { Ok::<(), String>(()) });
    /// assert_eq!(health.ready_response().await.status(), 200);
    /// health.begin_shutdown();
    /// assert_eq!(health.ready_response().await.status(), 503);
    /// # }
    /// ```
    pub async fn ready_response(&self) -> Response {
        if self.is_draining() {
            return respond(false, Bytes::from_static(DRAINING_BODY));
        }
        if let Some(a) = self.fresh() {
            return respond(a.ready, a.body);
        }
        let _refreshing = self.inner.refresh.lock().await;
        if let Some(a) = self.fresh() {
            return respond(a.ready, a.body);
        }
        let answer = self.run_checks().await;
        *self.inner.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(answer.clone());
        if self.is_draining() {
            return respond(false, Bytes::from_static(DRAINING_BODY));
        }
        respond(answer.ready, answer.body)
    }

    fn fresh(&self) -> Option<Answer> {
        let cache_for = self.settings().0;
        let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .as_ref()
            .filter(|a| a.at.elapsed() < cache_for)
            .cloned()
    }

    async fn run_checks(&self) -> Answer {
        let checks: Vec<Arc<Check>> = self
            .inner
            .checks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // All at once, each in a task of its own: a slow check does not
        // delay the others, a panicking one is reported, not propagated.
        let running: Vec<_> = checks
            .iter()
            .map(|c| {
                let c = c.clone();
                tokio::spawn(async move {
                    let start = Instant::now();
                    let result = match tokio::time::timeout(c.timeout, (c.run)()).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("timed out after {} ms", c.timeout.as_millis())),
                    };
                    (start.elapsed(), result)
                })
            })
            .collect();
        let mut ready = true;
        let mut body = Vec::with_capacity(64 + 96 * checks.len());
        body.extend_from_slice(b"{\"status\":\"\",\"checks\":[");
        for (i, (check, task)) in checks.iter().zip(running).enumerate() {
            let (took, result) = match task.await {
                Ok(r) => r,
                Err(e) => (
                    Duration::ZERO,
                    Err(if e.is_panic() {
                        "the check panicked".to_owned()
                    } else {
                        "the check was cancelled".to_owned()
                    }),
                ),
            };
            let up = result.is_ok();
            ready &= up;
            let name = &*check.name;
            metrics::gauge!(names::HEALTH_CHECK_STATUS, names::labels::CHECK => name.to_owned())
                .set(if up { 1.0 } else { 0.0 });
            metrics::histogram!(names::HEALTH_CHECK_DURATION, names::labels::CHECK => name.to_owned())
                .record(took.as_secs_f64());
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"name\":");
            crate::logging::json::string_into(&mut body, name);
            body.extend_from_slice(if up {
                b",\"status\":\"up\""
            } else {
                b",\"status\":\"down\""
            });
            body.extend_from_slice(b",\"duration_ms\":");
            crate::logging::json::millis_into(
                &mut body,
                u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            );
            if let Err(e) = result {
                body.extend_from_slice(b",\"error\":");
                crate::logging::json::string_into(&mut body, &e);
            }
            body.push(b'}');
        }
        body.extend_from_slice(b"]}");
        // The overall status, now that it is known (after `"status":"`).
        let status: &[u8] = if ready { b"up" } else { b"down" };
        body.splice(11..11, status.iter().copied());
        Answer {
            at: Instant::now(),
            ready,
            body: Bytes::from(body),
        }
    }
}

fn respond(ready: bool, body: Bytes) -> Response {
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut res = (status, body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, JSON);
    res
}

/// `GET /health/live`: 200 `{"status":"up"}` while the process runs, also
/// while draining (restarting a draining process would cut its requests).
///
/// ```
/// use axum::{Router, routing::get};
/// let app: Router = Router::new().route("/health/live", get(glimpse_obs::health::live));
/// ```
pub async fn live() -> Response {
    let mut res = Bytes::from_static(LIVE_BODY).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, JSON);
    res
}

/// `GET /health/ready` as a handler taking the [`Health`] as state (use
/// `FromRef` to take it from an application state); same as
/// [`Health::ready_response`].
///
/// ```
/// use axum::{Router, routing::get};
/// let health = glimpse_obs::health::Health::new();
/// let app: Router = Router::new()
///     .route("/health/ready", get(glimpse_obs::health::ready))
///     .with_state(health);
/// ```
pub async fn ready(State(health): State<Health>) -> Response {
    health.ready_response().await
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM; for
/// `axum::serve(..).with_graceful_shutdown(..)` without a drain. With a
/// [`Health`], use [`Health::shutdown_signal`], which also drains.
///
/// ```no_run
/// # async fn demo(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
/// axum::serve(listener, app)
///     .with_graceful_shutdown(glimpse_obs::shutdown_signal())
///     .await
/// # }
/// ```
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No handler could be installed: only SIGTERM can stop us.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// A readiness check of a `sqlx` pool: acquires a connection and pings it.
/// Give it a timeout shorter than the pool's acquire timeout.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sqlx::Error> {
/// use std::time::Duration;
///
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// let health = glimpse_obs::health::Health::new().check(
///     "database",
///     Duration::from_millis(500),
///     glimpse_obs::health::sqlx_pool(pool),
/// );
/// assert_eq!(health.ready_response().await.status(), 200);
/// # Ok(()) }
/// ```
#[cfg(feature = "sqlx")]
pub fn sqlx_pool<DB: sqlx::Database>(
    pool: sqlx::Pool<DB>,
) -> impl Fn() -> Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send>> + Send + Sync + 'static
{
    move || {
        let pool = pool.clone();
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            sqlx::Connection::ping(&mut *conn).await
        })
    }
}

/// HELP text and units of the health metrics.
fn describe() {
    metrics::describe_gauge!(
        names::HEALTH_CHECK_STATUS,
        "Result of the last run of a readiness check: 1 passed, 0 failed, by check."
    );
    metrics::describe_histogram!(
        names::HEALTH_CHECK_DURATION,
        metrics::Unit::Seconds,
        "Duration of readiness check runs (cached answers excluded), by check."
    );
}

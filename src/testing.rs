//! Helpers for a service's own tests (feature `testing`): capture the JSON
//! lines and the metric changes of a block of code without touching stdout.
//!
//! ```
//! let (_, captured) = glimpse_obs::testing::capture(|| {
//!     glimpse_obs::business::payment_processed("stripe", "EUR", 1299, glimpse_obs::business::PaymentStatus::Failed);
//! });
//! let line = captured.find(|l| l["message"] == "payment processed").unwrap();
//! assert_eq!(line["status"], "failed");
//! assert_eq!(captured.metric_delta("glimpse_payments_total", &[("status", "failed")]), 1.0);
//! ```
//!
//! Metrics are process-wide: a delta counts what every thread did meanwhile,
//! so give concurrent tests distinct label values.
//!
//! # Testing your service
//!
//! Drive the router with `tower::ServiceExt::oneshot` inside
//! [`capture_async`] and assert on what a user of the logs and the
//! dashboards would see: the handler's line with its `requestId`, the access
//! line, the request counted under its route template.
//!
//! ```
//! use axum::{Router, body::Body, http::Request, routing::get};
//! use tower::ServiceExt; // `oneshot`
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app: Router = Router::new()
//!     .route(
//!         "/matches/{id}",
//!         get(|| async {
//!             tracing::debug!(cache = "miss", "match loaded");
//!             "a match"
//!         }),
//!     )
//!     .layer(glimpse_obs::layer());
//!
//! let request = Request::get("/matches/7").body(Body::empty()).unwrap();
//! let (response, seen) = glimpse_obs::testing::capture_async(app.oneshot(request)).await;
//! assert_eq!(response.unwrap().status(), 200);
//!
//! // The handler's DEBUG line: `ensure_init` sets the filter to `trace`.
//! let line = seen.find(|l| l["message"] == "match loaded").unwrap();
//! assert_eq!(line["service"], "test");
//! assert_eq!(line["cache"], "miss");
//! let request_id = &line["requestId"];
//! assert!(request_id.is_string());
//!
//! // The access line of the same request.
//! let access = seen.find(|l| l["message"] == "request completed").unwrap();
//! assert_eq!(access["route"], "/matches/{id}");
//! assert_eq!(access["http_status"], 200);
//! assert_eq!(&access["requestId"], request_id);
//!
//! let counted = seen.metric_delta(
//!     "http_server_request_duration_seconds_count",
//!     &[("route", "/matches/{id}"), ("status", "200")],
//! );
//! assert_eq!(counted, 1.0);
//! # }
//! ```
//!
//! What [`ensure_init`] (called by [`capture`] and [`capture_async`]) sets
//! up, once per test binary, unless the test initialised `glimpse_obs`
//! itself first: service name `test`, level filter `trace` (DEBUG and TRACE
//! lines are captured), no metrics listener, no process metrics, and JSON
//! lines discarded except those a capture receives.
//!
//! Tests run in parallel threads of one process (each file under `tests/`
//! is a process of its own). A capture sees only the lines of its own block,
//! on its thread and in its span tree, so parallel tests never read each
//! other's lines; tasks a block spawns need `.in_current_span()`. Metrics
//! are shared by the whole process: a test that asserts a delta should use
//! label values (a route, a cache name) no parallel test touches. A global
//! `tracing` subscriber installed by the test itself leaves captures empty.

use std::{
    future::Future,
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use serde_json::Value;
use tracing::Instrument;
use tracing_subscriber::{Registry, registry::LookupSpan};

use crate::logging::layer::CaptureExt;

/// A cloneable in-memory writer: pass it to [`crate::Config::log_writer`] and
/// read the lines back.
///
/// ```
/// use glimpse_obs::testing::SharedBuffer;
///
/// let logs = SharedBuffer::new();
/// let guard = glimpse_obs::Config::default()
///     .metrics_addr(None)
///     .log_writer(logs.clone())
///     .init()?;
/// tracing::info!(order = 7, "order placed");
/// assert!(guard.flush(std::time::Duration::from_secs(1)));
/// let lines = logs.lines();
/// assert_eq!(lines.iter().find(|l| l["message"] == "order placed").unwrap()["order"], 7);
/// # Ok::<(), glimpse_obs::Error>(())
/// ```
#[derive(Clone, Default, Debug)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// An empty buffer.
    ///
    /// ```
    /// let logs = glimpse_obs::testing::SharedBuffer::new();
    /// assert!(logs.contents().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, as text (invalid UTF-8 replaced).
    ///
    /// ```
    /// use std::io::Write;
    ///
    /// let mut logs = glimpse_obs::testing::SharedBuffer::new();
    /// logs.write_all(b"hello\n")?;
    /// assert_eq!(logs.contents(), "hello\n");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Every line written so far, parsed as JSON; a line that is not JSON
    /// becomes a string value, so a test can see it.
    ///
    /// ```
    /// use std::io::Write;
    ///
    /// let mut logs = glimpse_obs::testing::SharedBuffer::new();
    /// logs.write_all(b"{\"level\":\"INFO\"}\nnot json\n")?;
    /// let lines = logs.lines();
    /// assert_eq!(lines[0]["level"], "INFO");
    /// assert_eq!(lines[1], "not json");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn lines(&self) -> Vec<Value> {
        parse_lines(&self.contents())
    }

    /// Forget what was written.
    ///
    /// ```
    /// use std::io::Write;
    ///
    /// let mut logs = glimpse_obs::testing::SharedBuffer::new();
    /// logs.write_all(b"old line\n")?;
    /// logs.clear();
    /// assert!(logs.lines().is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_owned())))
        .collect()
}

static GUARD: OnceLock<Option<crate::Guard>> = OnceLock::new();

/// Make sure `glimpse_obs` is initialised for tests: when nothing else
/// initialised it, install it with service `test`, no metrics listener and
/// log lines discarded (captures still receive them).
///
/// [`capture`] and [`capture_async`] call it; call it yourself in a test
/// that reads metrics without capturing.
///
/// ```
/// glimpse_obs::testing::ensure_init();
/// glimpse_obs::testing::ensure_init(); // any number of times
/// glimpse_obs::business::match_created(); // counted from now on
/// ```
///
/// # Panics
/// When `init` fails for any reason other than someone else having
/// initialised first ([`crate::Error::AlreadyInitialized`], or
/// [`crate::Error::GlobalTaken`] for another tracing subscriber or metrics
/// recorder): a test helper that hid such an error would leave every later
/// capture silently empty.
pub fn ensure_init() {
    GUARD.get_or_init(|| {
        adopt(
            crate::Config::default()
                .service("test")
                .metrics_addr(None)
                .process_metrics(false)
                .log_filter("trace")
                .and_then(|c| c.log_writer(std::io::sink()).init()),
        )
    });
}

/// The guard of a successful `init`, or `None` when someone else
/// initialised first; panics on any other error.
fn adopt(result: Result<crate::Guard, crate::Error>) -> Option<crate::Guard> {
    match result {
        Ok(guard) => Some(guard),
        Err(crate::Error::AlreadyInitialized | crate::Error::GlobalTaken { .. }) => None,
        Err(e) => panic!("glimpse_obs::testing::ensure_init: {e}"),
    }
}

/// What a block of code logged and how it moved the metrics, from
/// [`capture`] or [`capture_async`].
///
/// ```
/// let (_, seen) = glimpse_obs::testing::capture(|| {
///     glimpse_obs::cache::hit("profiles");
///     tracing::warn!(attempt = 2, "retrying");
/// });
/// assert_eq!(seen.lines().len(), 1);
/// assert_eq!(seen.find(|l| l["message"] == "retrying").unwrap()["attempt"], 2);
/// // How much the block moved a series, and where the series stands after it:
/// assert_eq!(seen.metric_delta("cache_requests_total", &[("cache", "profiles"), ("result", "hit")]), 1.0);
/// assert_eq!(seen.metric("cache_requests_total", &[("cache", "profiles")]), 1.0); // hits + misses
/// ```
#[derive(Debug, Clone)]
pub struct Captured {
    lines: Vec<Value>,
    before: Vec<Sample>,
    after: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Captured {
    /// The JSON lines, in order.
    pub fn lines(&self) -> &[Value] {
        &self.lines
    }

    /// The first line `pred` accepts.
    pub fn find(&self, pred: impl Fn(&Value) -> bool) -> Option<&Value> {
        self.lines.iter().find(|l| pred(l))
    }

    /// The sum over series of `name` whose labels include `labels`, after
    /// the block.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sum(&self.after, name, labels)
    }

    /// How much the series of `name` matching `labels` moved during the block.
    pub fn metric_delta(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sum(&self.after, name, labels) - sum(&self.before, name, labels)
    }
}

fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
        .sum()
}

fn snapshot() -> Vec<Sample> {
    crate::metrics::exporter::render()
        .map(|t| parse_prometheus(&t))
        .unwrap_or_default()
}

/// Parse Prometheus text exposition into samples (comments skipped).
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(p) => p,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
            None => (series, Vec::new()),
        };
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').trim().to_owned(), value));
        rest = &after[end..];
    }
    labels
}

fn capture_span() -> (tracing::Span, Arc<Mutex<Vec<u8>>>) {
    ensure_init();
    let buf = Arc::new(Mutex::new(Vec::new()));
    // ERROR level so that no ordinary filter disables the span.
    let span = tracing::error_span!(target: "glimpse_obs::testing", "capture");
    span.with_subscriber(|(id, dispatch)| {
        if let Some(s) = dispatch.downcast_ref::<Registry>().and_then(|r| r.span(id)) {
            s.extensions_mut().insert(CaptureExt(buf.clone()));
        }
    });
    (span, buf)
}

fn finish(buf: &Mutex<Vec<u8>>, before: Vec<Sample>) -> Captured {
    let text = String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    Captured {
        lines: parse_lines(&text),
        before,
        after: snapshot(),
    }
}

/// Run `f`, returning its result and what it logged (on this thread, inside
/// its span tree) and how it moved the metrics.
///
/// ```
/// let (n, seen) = glimpse_obs::testing::capture(|| {
///     glimpse_obs::security::auth_failed("expired_token");
///     42
/// });
/// assert_eq!(n, 42);
/// let line = seen.find(|l| l["message"] == "authentication failed").unwrap();
/// assert_eq!(line["level"], "WARN");
/// assert_eq!(seen.metric_delta("glimpse_auth_failures_total", &[("reason", "expired_token")]), 1.0);
/// ```
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, Captured) {
    let (span, buf) = capture_span();
    let before = snapshot();
    let out = span.in_scope(f);
    (out, finish(&buf, before))
}

/// Like [`capture`] for a future; tasks it spawns are included when they
/// are instrumented with the current span (`.in_current_span()`).
///
/// ```
/// use tracing::Instrument;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (_, seen) = glimpse_obs::testing::capture_async(async {
///     tracing::info!("in the future");
///     tokio::spawn(async { tracing::info!("in a task") }.in_current_span())
///         .await
///         .unwrap();
/// })
/// .await;
/// assert!(seen.find(|l| l["message"] == "in a task").is_some());
/// # }
/// ```
pub async fn capture_async<F: Future>(fut: F) -> (F::Output, Captured) {
    let (span, buf) = capture_span();
    let before = snapshot();
    let out = fut.instrument(span).await;
    (out, finish(&buf, before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_init_tolerates_an_earlier_init_only() {
        assert!(adopt(Err(crate::Error::AlreadyInitialized)).is_none());
        assert!(
            adopt(Err(crate::Error::GlobalTaken {
                what: "metrics recorder"
            }))
            .is_none()
        );
        let other = std::panic::catch_unwind(|| {
            adopt(Err(crate::Error::Io {
                context: "starting the log writer",
                source: std::io::Error::other("no threads left"),
            }))
        });
        let msg = other.unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(msg.contains("no threads left"), "{msg}");
    }

    #[test]
    fn prometheus_text_parses_with_escaped_labels() {
        let s = parse_prometheus(
            "# HELP x y\nhttp_total{method=\"GET\",route=\"/a\\\"b\"} 3\nup 1\nh_bucket{le=\"+Inf\"} 2\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0].labels,
            vec![
                ("method".into(), "GET".into()),
                ("route".into(), "/a\"b".into())
            ]
        );
        assert_eq!(s[1].value, 1.0);
        assert_eq!(sum(&s, "http_total", &[("method", "GET")]), 3.0);
    }
}

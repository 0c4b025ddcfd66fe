//! Cached metric handles per route, method and status.
//!
//! Looking a labelled series up in the recorder hashes and allocates its key
//! on every call; the layer instead resolves each (route, method) once and
//! keeps the handles (see `benches/layer.rs`).

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, RwLock},
    time::Instant,
};

use metrics::{Counter, Gauge, Histogram};

use crate::{
    ids::SpanIds,
    metrics::{
        SharedRecorder,
        exemplar::{ExemplarRegistry, Exemplars},
        names::{self, labels},
    },
};

/// The label of methods outside [`METHODS`]' first nine.
pub(crate) const OTHER_METHOD: &str = "_OTHER";

/// Methods with a label of their own; anything else is `_OTHER`.
pub(crate) const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "_OTHER",
];

pub(crate) fn method_index(m: &http::Method) -> usize {
    match *m {
        http::Method::GET => 0,
        http::Method::POST => 1,
        http::Method::PUT => 2,
        http::Method::DELETE => 3,
        http::Method::PATCH => 4,
        http::Method::HEAD => 5,
        http::Method::OPTIONS => 6,
        http::Method::CONNECT => 7,
        http::Method::TRACE => 8,
        _ => 9,
    }
}

/// One status' duration histogram and its exemplar cells (`None` when
/// the entry keeps no exemplars).
type ByStatus = (u16, Histogram, Option<Arc<Exemplars>>);

/// Handles of one (route, method).
pub(crate) struct RouteEntry {
    pub(crate) method: &'static str,
    pub(crate) route: Arc<str>,
    /// `"{method} {route}"`, the span name.
    pub(crate) span_name: Arc<str>,
    /// `,"method":"…","route":"…"`, the access line's first fields.
    pub(crate) access_json: Box<[u8]>,
    pub(crate) active: Gauge,
    by_status: RwLock<Vec<ByStatus>>,
    /// Request and response body sizes, resolved on first use (off by default).
    body_sizes: OnceLock<[Histogram; 2]>,
    /// Panics of the route's handler. Registered with the entry, so the
    /// series exists at 0 before the first panic: `increase()` (the
    /// `HandlerPanics` alert) then sees the first one too.
    panics: Counter,
    /// The recorder the handles belong to: a bound layer's own, or `None`
    /// for the one current where they are resolved (the global one).
    recorder: Option<SharedRecorder>,
    /// Where this entry's exemplar cells are registered: the bound
    /// recorder's registry, or the installed exporter's; `None` before
    /// `install()` (the entry is not cached then).
    exemplars: Option<Arc<ExemplarRegistry>>,
}

impl RouteEntry {
    /// Record a request's duration under its status; `exemplar` carries
    /// the request's span IDs when it was sampled and the instant it ended,
    /// kept as the duration bucket's exemplar.
    pub(crate) fn record_duration(
        &self,
        status: u16,
        secs: f64,
        exemplar: Option<(SpanIds, Instant)>,
    ) {
        if let Some((_, h, cells)) = self
            .by_status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(s, ..)| *s == status)
        {
            h.record(secs);
            record_exemplar(cells.as_deref(), secs, exemplar);
            return;
        }
        let status_label = status.to_string();
        let h = with_recorder(self.recorder.as_ref(), || {
            metrics::histogram!(names::HTTP_SERVER_REQUEST_DURATION,
                labels::METHOD => self.method,
                labels::ROUTE => self.route.to_string(),
                labels::STATUS => status_label.clone())
        });
        h.record(secs);
        let cells = self.exemplars.as_ref().map(|registry| {
            registry.series(
                names::HTTP_SERVER_REQUEST_DURATION,
                &[
                    (labels::METHOD, self.method),
                    (labels::ROUTE, &self.route),
                    (labels::STATUS, &status_label),
                ],
                crate::metrics::HTTP_BUCKETS,
            )
        });
        record_exemplar(cells.as_deref(), secs, exemplar);
        self.by_status
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((status, h, cells));
    }

    /// Whether this entry's histograms keep exemplars (so the request's
    /// span IDs are worth looking up).
    pub(crate) fn keeps_exemplars(&self) -> bool {
        self.exemplars.is_some()
    }
}

fn record_exemplar(cells: Option<&Exemplars>, secs: f64, exemplar: Option<(SpanIds, Instant)>) {
    if let (Some(cells), Some((ids, at))) = (cells, exemplar) {
        cells.record_ids(secs, Some(ids), Some(at));
    }
}

impl RouteEntry {
    /// Record a request's body sizes: the request's when known, the
    /// response's bytes sent.
    pub(crate) fn record_body_sizes(&self, request: Option<u64>, response: u64) {
        let [req, res] = self.body_sizes.get_or_init(|| {
            with_recorder(self.recorder.as_ref(), || {
                [
                    names::HTTP_SERVER_REQUEST_BODY_SIZE,
                    names::HTTP_SERVER_RESPONSE_BODY_SIZE,
                ]
                .map(|name| {
                    metrics::histogram!(name,
                        labels::METHOD => self.method,
                        labels::ROUTE => self.route.to_string())
                })
            })
        });
        if let Some(n) = request {
            req.record(n as f64);
        }
        res.record(response as f64);
    }

    /// Count a panic of the route's handler.
    pub(crate) fn count_panic(&self) {
        self.panics.increment(1);
    }
}

type Entries = [Option<Arc<RouteEntry>>; METHODS.len()];

/// FNV-1a: route templates are short, known strings (the cache holds only
/// routes of the app and the unmatched label), so a fast hash beats the
/// default SipHash on this per-request look-up.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Cache = HashMap<Box<str>, Entries, std::hash::BuildHasherDefault<Fnv>>;

/// Run `f` with `recorder` as the current one, or with whatever is current.
fn with_recorder<T>(recorder: Option<&SharedRecorder>, f: impl FnOnce() -> T) -> T {
    match recorder {
        Some(r) => metrics::with_local_recorder(r, f),
        None => f(),
    }
}

/// The handles of one tower layer, per (route, method): resolved against
/// the layer's own recorder when it is bound to a telemetry, else against
/// the global one.
#[derive(Default)]
pub(crate) struct RouteCache {
    recorder: Option<SharedRecorder>,
    cache: RwLock<Cache>,
}

impl std::fmt::Debug for RouteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCache")
            .field("bound", &self.recorder.is_some())
            .finish_non_exhaustive()
    }
}

impl RouteCache {
    /// A cache for the handles of `recorder`, or of the global recorder.
    pub(crate) fn new(recorder: Option<SharedRecorder>) -> Self {
        Self {
            recorder,
            cache: RwLock::default(),
        }
    }

    /// The entry of (`route`, method index `m`), created on first use.
    /// Unbound, before `install()` the handles belong to the no-op
    /// recorder: such an entry is built for the one request and never
    /// cached, or the route would stay without metrics for good.
    pub(crate) fn entry(&self, route: &str, m: usize) -> Arc<RouteEntry> {
        if self.recorder.is_none() && !crate::metrics::handles::ready() {
            return Arc::new(new_entry(route, m, None));
        }
        if let Some(Some(e)) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(route)
            .map(|es| &es[m])
        {
            return e.clone();
        }
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let slot = &mut cache.entry(route.into()).or_default()[m];
        slot.get_or_insert_with(|| Arc::new(new_entry(route, m, self.recorder.clone())))
            .clone()
    }
}

/// Whether `route` is a matched route template rather than the label of
/// unmatched requests (templates start with `/`).
pub(crate) fn is_template(route: &str) -> bool {
    route.starts_with('/')
}

fn new_entry(route: &str, m: usize, recorder: Option<SharedRecorder>) -> RouteEntry {
    let method = METHODS[m];
    let route: Arc<str> = Arc::from(route);
    let mut access_json = b",\"method\":".to_vec();
    crate::logging::json::string_into(&mut access_json, method);
    access_json.extend_from_slice(b",\"route\":");
    crate::logging::json::string_into(&mut access_json, &route);
    let panics = with_recorder(
        recorder.as_ref(),
        || metrics::counter!(names::HTTP_SERVER_PANICS, labels::ROUTE => route.to_string()),
    );
    RouteEntry {
        method,
        access_json: access_json.into_boxed_slice(),
        // Semantic conventions: `{method} {route}`, or the method alone when
        // no route matched; `HTTP` stands for a method outside their list.
        span_name: {
            let method = if method == OTHER_METHOD {
                "HTTP"
            } else {
                method
            };
            if is_template(&route) {
                Arc::from(format!("{method} {route}"))
            } else {
                Arc::from(method)
            }
        },
        active: with_recorder(recorder.as_ref(), || {
            metrics::gauge!(names::HTTP_SERVER_ACTIVE_REQUESTS,
                labels::METHOD => method, labels::ROUTE => route.to_string())
        }),
        route,
        by_status: RwLock::new(Vec::new()),
        body_sizes: OnceLock::new(),
        panics,
        exemplars: match &recorder {
            Some(r) => Some(r.exemplars().clone()),
            None => crate::metrics::exporter::installed_exemplars().cloned(),
        },
        recorder,
    }
}

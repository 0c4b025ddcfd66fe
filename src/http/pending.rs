//! [`Pending`]: a request between its start and its end. The response
//! future ends it when the inner service fails or panics, or hands it to the
//! [`ResponseBody`](super::ResponseBody), which ends it at the body's end
//! (or as cancelled when the body is dropped before): metrics, span status,
//! the access line.

use std::{
    cell::Cell,
    sync::Arc,
    time::{Duration, Instant},
};

use http::{HeaderMap, HeaderName, HeaderValue};

/// A constant: `HeaderName::from_static` at run time checks the name on
/// every call.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
use http_body::Body;
use tracing::{Level, Span};

use super::{
    ACCESS_TARGET, CANCELLED_STATUS,
    access::{access_fields, cap_path},
    route_metrics,
    settings::Settings,
};
use crate::{
    config::Settings as Shared,
    ids::{
        panic::{self as panics, PanicSite},
        response::ResponseFields,
    },
    logging::{
        LogType,
        scope::{Attached, RequestScope},
    },
};

/// A handler's panic, as the access line and the span report it.
pub(super) struct Caught {
    message: String,
    site: Option<PanicSite>,
}

impl Caught {
    pub(super) fn new(payload: &(dyn std::any::Any + Send)) -> Self {
        Self {
            message: panics::payload_message(payload).to_owned(),
            site: panics::take_site(),
        }
    }
}

/// Bodies of a known size up to this many bytes finish the request with the
/// response head: the server writes them at once, and a test driving the
/// router with `oneshot` sees the access line without reading the body.
/// Larger and streamed bodies are timed to their end.
const SMALL_BODY: u64 = 64 * 1024;

pub(super) struct Pending {
    start: Instant,
    pub(super) span: Span,
    scope: Arc<RequestScope>,
    entry: Arc<route_metrics::RouteEntry>,
    uri: http::Uri,
    /// The path with card numbers and e-mail addresses masked, when masking
    /// changed it (rarely); else the URI's own path is the one to write.
    masked_path: Option<Box<str>>,
    settings: Arc<Settings>,
    shared: Arc<Shared>,
    /// The server span's IDs, when known at the start (the ID-only trace
    /// layer assigns them at creation), and whether it is a root: the
    /// response's `traceparent`, the exemplar and (for a root) the access
    /// line are made without a registry look-up.
    attached: Attached,
    /// The response's status, once its head is there.
    pub(super) status: u16,
    /// The request's `Content-Length`, read when body sizes are recorded.
    request_bytes: Option<u64>,
    /// Response body bytes handed to the server so far.
    response_bytes: u64,
    /// The panic this request answered with a `500`.
    pub(super) panic: Option<Caught>,
    done: bool,
}

impl Pending {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        start: Instant,
        span: Span,
        scope: Arc<RequestScope>,
        entry: Arc<route_metrics::RouteEntry>,
        uri: http::Uri,
        masked_path: Option<Box<str>>,
        settings: Arc<Settings>,
        shared: Arc<Shared>,
        attached: Attached,
        request_bytes: Option<u64>,
    ) -> Self {
        Self {
            start,
            span,
            scope,
            entry,
            uri,
            masked_path,
            settings,
            shared,
            attached,
            status: 0,
            request_bytes,
            response_bytes: 0,
            panic: None,
            done: false,
        }
    }

    /// `x-request-id` and (unless switched off) `traceparent` on the response.
    pub(super) fn set_headers(&mut self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(self.scope.request_id.as_str()) {
            headers.insert(self.settings.header.clone(), v);
        }
        if !self.settings.response_traceparent {
            return;
        }
        let tp = match self.attached.ids {
            Some(ids) => Some(ids.traceparent()),
            None => crate::trace::traceparent(&self.span),
        };
        if let Some(tp) = tp {
            headers.insert(TRACEPARENT, tp);
        }
    }

    /// Whether the response is complete with its head: nothing of the body
    /// will be sent (a `HEAD` request, `204`, `304`, `1xx`), there is none
    /// (servers then never poll it), or it is a small body already in
    /// memory (a known size up to [`SMALL_BODY`]: a `String`, JSON), which
    /// the server writes in one go. Then its size is known too.
    pub(super) fn ends_at_head<B: Body>(&mut self, body: &B) -> bool {
        if self.entry.method == "HEAD"
            || self.status < 200
            || self.status == 204
            || self.status == 304
            || body.is_end_stream()
        {
            return true;
        }
        match body.size_hint().exact() {
            Some(n) if n <= SMALL_BODY => {
                self.response_bytes = n;
                true
            }
            _ => false,
        }
    }

    /// Response body bytes handed to the server.
    pub(super) fn sent(&mut self, bytes: usize) {
        self.response_bytes = self.response_bytes.saturating_add(bytes as u64);
    }

    /// The response ended (its last frame was handed to the server).
    pub(super) fn end(&mut self) {
        self.finish(self.status);
    }

    pub(super) fn finish(&mut self, status: u16) {
        self.done = true;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.start);
        self.entry.active.decrement(1.0);
        // Exemplar: the sampled request's IDs, kept in its duration bucket;
        // the IDs known at the start when the light layer gave them (no
        // registry look-up for any request then).
        let exemplar = if self.entry.keeps_exemplars() {
            match self.attached.ids {
                Some(ids) => ids.sampled.then_some(ids),
                None => crate::metrics::exemplar::span_ids(&self.span),
            }
        } else {
            None
        }
        .map(|ids| (ids, now));
        self.entry
            .record_duration(status, elapsed.as_secs_f64(), exemplar);
        let cancelled = status == CANCELLED_STATUS;
        if self.settings.body_sizes && !cancelled {
            self.entry
                .record_body_sizes(self.request_bytes, self.response_bytes);
        }
        let panic = self.panic.take();
        if panic.is_some() {
            self.entry.count_panic();
        }

        let span = &self.span;
        let user = self.scope.user();
        // The span's response fields are read by the OpenTelemetry layer and
        // the pretty format only: the JSON lines of a request never repeat
        // its server span's fields, and the ID-only trace layer exports
        // nothing. Recording them costs a registry walk per field.
        let json_only = !self.shared.record_span_fields;
        if self.shared.response_direct() {
            // The crate's trace layer takes them when the span closes.
            self.scope.set_response(ResponseFields {
                status,
                panicked: panic.is_some(),
                user: user.as_ref().map(|u| Arc::clone(&u.raw)),
                elapsed,
            });
        } else if !json_only {
            span.record("http.response.status_code", status);
            if status >= 500 {
                span.record("otel.status_code", "error");
                match &panic {
                    Some(_) => span.record("error.type", "panic"),
                    // A string, as the semantic conventions define `error.type`.
                    None => span.record("error.type", itoa::Buffer::new().format(status)),
                };
            }
            if let Some(u) = &user {
                span.record("enduser.id", &*u.raw);
            }
        }
        if let Some(p) = &panic
            && self.shared.exporting
        {
            let stacktrace = p.site.as_ref().and_then(|s| s.backtrace.as_deref());
            crate::trace::record_exception(span, "panic", &p.message, stacktrace);
        }

        let level = if status >= 500 {
            Level::ERROR
        } else if elapsed > self.slow_threshold() || cancelled {
            Level::WARN
        } else {
            Level::INFO
        };
        if level == Level::INFO && !self.sampled_in() {
            return;
        }
        let log_type_enum = if user.is_some() {
            LogType::UserActivity
        } else {
            LogType::System
        };
        let log_type = log_type_enum.as_str();
        // Milliseconds with microsecond precision (1.43).
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // Masked once, when the request came in.
        let path = cap_path(self.masked_path.as_deref().unwrap_or(self.uri.path()));
        // INFO and WARN lines straight into the JSON log when the span's
        // subscriber has our JSON layer and its filter's answer is known;
        // otherwise (ERROR lines, which OpenTelemetry also records on the
        // span; the pretty format; a subscriber not ours) an event with the
        // access fields, which the JSON layer writes as the same line.
        if level != Level::ERROR
            && crate::logging::layer::write_access_line(
                span,
                level,
                log_type_enum,
                self.root(),
                |out| {
                    access_fields(
                        out,
                        &self.entry.access_json,
                        path,
                        status,
                        micros,
                        cancelled,
                    )
                },
            )
        {
            return;
        }
        // An explicit parent rather than `in_scope`: the line gets the
        // request's fields without entering and exiting the span again.
        let (method, route) = (self.entry.method, &*self.entry.route);
        let ms = micros as f64 / 1000.0;
        match level {
            Level::ERROR => match &panic {
                Some(p) => {
                    let location = p.site.as_ref().and_then(|s| s.location.as_deref());
                    tracing::error!(target: ACCESS_TARGET, parent: span, method, route, path, http_status = status, response_time = ms, log_type, "panic.message" = &*p.message, "panic.location" = location, "request completed")
                }
                None => {
                    tracing::error!(target: ACCESS_TARGET, parent: span, method, route, path, http_status = status, response_time = ms, log_type, "request completed")
                }
            },
            Level::WARN if cancelled => {
                tracing::warn!(target: ACCESS_TARGET, parent: span, method, route, path, http_status = status, response_time = ms, log_type, cancelled = true, "request completed")
            }
            Level::WARN => {
                tracing::warn!(target: ACCESS_TARGET, parent: span, method, route, path, http_status = status, response_time = ms, log_type, "request completed")
            }
            _ => {
                tracing::info!(target: ACCESS_TARGET, parent: span, method, route, path, http_status = status, response_time = ms, log_type, "request completed")
            }
        }
    }

    /// What the access line of a root request span is written from, when
    /// its IDs are known: no span scope to walk in the registry.
    fn root(&self) -> Option<(crate::ids::SpanIds, &RequestScope)> {
        match self.attached {
            Attached {
                ids: Some(ids),
                root: true,
            } => Some((ids, &*self.scope)),
            _ => None,
        }
    }

    fn slow_threshold(&self) -> Duration {
        self.settings.slow.unwrap_or(self.shared.slow_request)
    }

    fn sampled_in(&self) -> bool {
        let route = &*self.entry.route;
        let rate = self
            .settings
            .sample
            .iter()
            .chain(self.shared.log_sample.iter())
            .find(|(r, _)| **r == *route);
        match rate {
            None => true,
            Some((_, rate)) if *rate >= 1.0 => true,
            Some((_, rate)) if *rate <= 0.0 => false,
            Some((_, rate)) => random_unit() < *rate,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            // The response future was dropped: client gone or timeout. Keep
            // the in-flight gauge right and record the request as 499.
            self.finish(CANCELLED_STATUS);
        }
    }
}

/// A uniform number in `[0, 1)` from a per-thread xorshift generator: sampling
/// needs speed, not cryptographic quality.
fn random_unit() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            (t.as_nanos() as u64) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

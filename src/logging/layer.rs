//! The JSON formatting layer.

use std::{
    cell::RefCell,
    fmt::Write as _,
    sync::{Arc, Mutex, OnceLock},
    time::SystemTime,
};

use tracing::{Event, Level, Subscriber, field::Field, span};

use crate::ids::{SpanIds, is_request_span};
use tracing_subscriber::{
    Layer, Registry,
    layer::Context,
    registry::{LookupSpan, Scope},
};

use super::{
    LogType,
    export::OtlpLogs,
    filter::{AccessGate, GATE_OFF, GATE_ON},
    index::{Entries, Entry, Kind, LineIndex},
    json,
    redact::{self, REDACTED},
    scope::{RequestScope, ScopeExt},
    timestamp,
    writer::LineQueue,
};

/// Keys the formatter owns; a user field with one of these names is written
/// as `fields.<name>` instead, so it can never overwrite them. One `match`
/// (length, then bytes) rather than a scan of a list: it runs per field.
fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        "timestamp"
            | "level"
            | "service"
            | "message"
            | "target"
            | "log_type"
            | "requestId"
            | "clientRequestId"
            | "userId"
            | "traceId"
            | "spanId"
    )
}

/// Span extension: the span's fields, pre-rendered as `,"key":value` runs.
#[derive(Default)]
pub(crate) struct SpanFields {
    json: Vec<u8>,
    segs: Vec<Seg>,
}

/// One pre-rendered span field: its run `start..end` of the span's JSON,
/// and where its key and value are in the run (for the OTLP record's field
/// index, `index.rs`).
#[derive(Clone, Copy)]
struct Seg {
    name: &'static str,
    start: usize,
    end: usize,
    /// Relative to `start`.
    entry: Entry,
}

/// Span extension: a capture buffer (the `testing` feature) that receives a
/// copy of every line emitted inside the span.
#[derive(Clone)]
pub(crate) struct CaptureExt(pub(crate) Arc<Mutex<Vec<u8>>>);

#[derive(Default)]
struct Bufs {
    line: Vec<u8>,
    msg: Vec<u8>,
    fields: Vec<u8>,
    seen: Vec<&'static str>,
    captures: Vec<CaptureExt>,
    /// With OTLP logs: the line's field index (`index.rs`), offsets into
    /// `line`.
    index: Entries,
    /// The same for the fields in `fields`, offsets into `fields`.
    field_index: Entries,
}

thread_local! {
    // Reused per thread so formatting allocates nothing in steady state.
    static BUFS: RefCell<Bufs> = RefCell::new(Bufs::default());
    // `Debug`/`Display` values are formatted here first, so they are masked
    // and capped like string values (see `FieldVisitor::formatted`).
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Keys of the access line's fields, so span fields never repeat them.
const ACCESS_KEYS: &[&str] = &[
    "method",
    "route",
    "path",
    "http_status",
    "response_time",
    "cancelled",
];

/// Writes each event as one JSON line into the line queue.
pub(crate) struct JsonLayer {
    /// `,"service":"…"` rendered once.
    service: Box<[u8]>,
    queue: LineQueue,
    counters: LevelCounters,
    /// The level filter's answer for the access line, kept in step with
    /// the filter by its handle.
    gate: Arc<AccessGate>,
    /// The access line's schema fields after the timestamp, by level (INFO,
    /// WARN) and `log_type` (`system`, `user_activity`): they differ only
    /// in those.
    access_heads: [[Head; 2]; 2],
    /// The dispatcher this layer belongs to (see `format`).
    dispatch: OnceLock<tracing::dispatcher::WeakDispatch>,
    /// The wall clock of the `timestamp` field; a fixed one in tests.
    clock: fn() -> SystemTime,
    /// `Config::log_field_max_bytes`: the longest message or string value.
    max_value: usize,
    /// `OTEL_LOGS_EXPORTER=otlp`: each line also goes out as a record.
    otlp: Option<Arc<OtlpLogs>>,
    /// `GLIMPSE_LOG_STDOUT`: whether lines go to the line queue.
    stdout: bool,
}

/// Pre-rendered schema fields after the timestamp, with their field index
/// (offsets from the head's start).
struct Head {
    json: Box<[u8]>,
    index: [Entry; 4],
}

/// `,"service":` before the service's JSON string.
const SERVICE_KEY: usize = 11;

/// Append the schema fields after the timestamp: `","level":…` to
/// `log_type`; with `index`, note where `service`, `message`, `target` and
/// `log_type` are.
fn head_into(
    line: &mut Vec<u8>,
    level: Level,
    service: &[u8],
    msg: &[u8],
    target: &str,
    log_type: LogType,
    index: Option<&mut [Entry; 4]>,
) {
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(level_str(level).as_bytes());
    line.push(b'"');
    let service_at = line.len();
    line.extend_from_slice(service);
    let message_at = line.len();
    line.extend_from_slice(b",\"message\":\"");
    line.extend_from_slice(msg);
    line.push(b'"');
    let target_at = line.len();
    line.extend_from_slice(b",\"target\":");
    let target_value = line.len();
    json::string_into(line, target);
    let log_type_at = line.len();
    line.extend_from_slice(b",\"log_type\":\"");
    line.extend_from_slice(log_type.as_str().as_bytes());
    line.push(b'"');
    if let Some(index) = index {
        *index = [
            Entry::field(
                Kind::Str,
                service_at + 2,
                service_at + SERVICE_KEY,
                message_at,
            ),
            Entry::field(Kind::Body, message_at + 2, message_at + 11, target_at),
            Entry::field(Kind::Str, target_at + 2, target_value, log_type_at),
            Entry::field(Kind::Str, log_type_at + 2, log_type_at + 12, line.len()),
        ];
    }
}

impl JsonLayer {
    pub(crate) fn new(
        service: &str,
        queue: LineQueue,
        gate: Arc<AccessGate>,
        max_value: usize,
    ) -> Self {
        let mut s = b",\"service\":".to_vec();
        json::string_into(&mut s, service);
        let access_heads = [Level::INFO, Level::WARN].map(|level| {
            [LogType::System, LogType::UserActivity].map(|log_type| {
                let (mut head, mut index) = (Vec::new(), [Entry::run(0, 0); 4]);
                head_into(
                    &mut head,
                    level,
                    &s,
                    b"request completed",
                    crate::ids::ACCESS_TARGET,
                    log_type,
                    Some(&mut index),
                );
                Head {
                    json: head.into_boxed_slice(),
                    index,
                }
            })
        });
        Self {
            service: s.into_boxed_slice(),
            queue,
            counters: LevelCounters::new(),
            gate,
            access_heads,
            dispatch: OnceLock::new(),
            clock: SystemTime::now,
            max_value,
            otlp: None,
            stdout: true,
        }
    }

    /// Also send each line as an OTLP record through `otlp`, and write it
    /// to the line queue only when `stdout` says so.
    pub(crate) fn with_otlp(mut self, otlp: Option<Arc<OtlpLogs>>, stdout: bool) -> Self {
        self.otlp = otlp;
        self.stdout = stdout;
        self
    }

    fn format<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>, b: &mut Bufs)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let meta = event.metadata();
        let level = *meta.level();
        b.clear();
        let mut v = FieldVisitor {
            out: &mut b.fields,
            msg: Some(&mut b.msg),
            seen: &mut b.seen,
            segs: None,
            index: self.otlp.is_some().then_some(&mut b.field_index),
            log_type: None,
            audit: false,
            max: self.max_value,
        };
        event.record(&mut v);
        let (log_type, audit) = (v.log_type, v.audit);
        let log_type = log_type.unwrap_or(if level >= Level::DEBUG {
            LogType::Debug
        } else {
            LogType::System
        });
        // The event's spans as the registry has them, not through this
        // layer's filter: the request scope and the trace IDs belong on
        // every line of a request even when the filter (`warn`, say)
        // disabled the INFO server span for this layer. Spans this layer
        // did not see carry no fields for it, so nothing else changes.
        //
        // The registry is reached through the dispatcher that owns this
        // layer: the current default when no scoped dispatcher exists in
        // the process (free), else the one `on_register_dispatch` recorded
        // (a reference-count round trip). Inside event dispatch,
        // `get_default` answers "none" once any thread holds a scoped
        // dispatcher, so it cannot be the only way.
        let target = meta.target();
        let write = |dispatch: &tracing::Dispatch, b: &mut Bufs| {
            let registry = dispatch
                .downcast_ref::<JsonLayer>()
                .filter(|layer| std::ptr::eq(*layer, self))
                .and(dispatch.downcast_ref::<Registry>());
            let Some(registry) = registry else {
                return false;
            };
            let parent = match event.parent() {
                Some(id) => Some(id.clone()),
                None if event.is_contextual() => registry.current_span().id().cloned(),
                None => None,
            };
            let scope = parent.and_then(|id| registry.span(&id)).map(|s| s.scope());
            let now = (self.clock)();
            self.write_line(b, now, None, level, target, log_type, audit, scope.into());
            true
        };
        if tracing::dispatcher::get_default(|d| write(d, b)) {
            return;
        }
        if let Some(dispatch) = self.dispatch.get().and_then(|w| w.upgrade())
            && write(&dispatch, b)
        {
            return;
        }
        let scope = ctx.event_scope(event).into();
        self.write_line(
            b,
            (self.clock)(),
            None,
            level,
            target,
            log_type,
            audit,
            scope,
        );
    }

    /// Complete and queue the line whose message is in `b.msg` and whose
    /// own fields are in `b.fields`: the schema fields (`head` when they are
    /// pre-rendered: everything after the timestamp up to `log_type`), then
    /// the IDs, the request scope and the fields of the spans of `scope`
    /// (innermost first), then the fields.
    #[allow(clippy::too_many_arguments)]
    fn write_line<'a, R: LookupSpan<'a>>(
        &self,
        b: &mut Bufs,
        now: SystemTime,
        head: Option<&Head>,
        level: Level,
        target: &str,
        log_type: LogType,
        audit: bool,
        scope: LineScope<'a, '_, R>,
    ) {
        let Bufs {
            line,
            msg,
            fields,
            seen,
            captures,
            index,
            field_index,
        } = b;
        // The field index is noted only for the OTLP record.
        let indexing = self.otlp.is_some();
        line.extend_from_slice(b"{\"timestamp\":\"");
        timestamp::rfc3339_into(line, now);
        match head {
            Some(head) => {
                let at = line.len();
                line.extend_from_slice(&head.json);
                if indexing {
                    index.extend_shifted(&head.index, at);
                }
            }
            None if indexing => {
                // Offsets into `line`.
                let mut head = [Entry::run(0, 0); 4];
                head_into(
                    line,
                    level,
                    &self.service,
                    msg,
                    target,
                    log_type,
                    Some(&mut head),
                );
                index.extend_shifted(&head, 0);
            }
            None => head_into(line, level, &self.service, msg, target, log_type, None),
        }

        // The IDs the line names, for the OTLP record.
        let mut line_ids = None;
        match scope {
            LineScope::Spans(scope) => {
                let (mut have_ids, mut have_request) = (false, false);
                for span in scope {
                    let ext = span.extensions();
                    if !have_ids && let Some(ids) = ext.get::<SpanIds>() {
                        ids_into(line, ids);
                        line_ids = Some(*ids);
                        have_ids = true;
                    }
                    if !have_request && let Some(ScopeExt(req)) = ext.get::<ScopeExt>() {
                        request_into(line, req, indexing.then_some(&mut *index));
                        have_request = true;
                    }
                    if let Some(sf) = ext.get::<SpanFields>() {
                        for seg in &sf.segs {
                            if !seen.contains(&seg.name) {
                                seen.push(seg.name);
                                let at = fields.len();
                                fields.extend_from_slice(&sf.json[seg.start..seg.end]);
                                if indexing {
                                    field_index.push(seg.entry.shifted(at));
                                }
                            }
                        }
                    }
                    if let Some(c) = ext.get::<CaptureExt>() {
                        captures.push(c.clone());
                    }
                }
            }
            LineScope::Root(ids, request) => {
                ids_into(line, &ids);
                line_ids = Some(ids);
                request_into(line, request, indexing.then_some(&mut *index));
            }
            LineScope::None => {}
        }
        let fields_at = line.len();
        line.extend_from_slice(fields);
        line.extend_from_slice(b"}\n");

        // Critical lines (the ones the guide never lets go) overtake the
        // others when stdout falls behind.
        let critical = level == Level::ERROR || audit || log_type == LogType::Payment;
        if let Some(otlp) = &self.otlp {
            let index = LineIndex {
                line: index.bytes(),
                fields: field_index.bytes(),
                fields_at,
            };
            otlp.push(line, Some(index), now, level, line_ids);
        }
        if self.stdout {
            self.queue.push(line, critical);
        }
        for c in captures.iter() {
            c.0.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(line);
        }
    }

    /// Write the access line of the request span `id` without dispatching
    /// an event, when the level filter's answer is known ([`AccessGate`]):
    /// the same line the event would give (`format` with the fields staged
    /// with the access fields as event fields). `fields` renders them.
    /// `false` when the event must be dispatched instead.
    fn write_access_line(
        &self,
        from: LineScope<'_, '_, Registry>,
        level: Level,
        log_type: LogType,
        fields: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        match self.gate.get(level) {
            GATE_OFF => return true,
            GATE_ON => {}
            _ => return false,
        }
        self.counters.count(level);
        let head = &self.access_heads[usize::from(level == Level::WARN)]
            [usize::from(log_type == LogType::UserActivity)];
        let write = |b: &mut Bufs| {
            b.clear();
            fields(&mut b.fields);
            if self.otlp.is_some() && !b.fields.is_empty() {
                // Written by the HTTP layer, not noted field by field.
                b.field_index.push(Entry::run(0, b.fields.len()));
            }
            b.seen.extend_from_slice(ACCESS_KEYS);
            self.write_line(
                b,
                (self.clock)(),
                Some(head),
                level,
                crate::ids::ACCESS_TARGET,
                log_type,
                false,
                from,
            );
        };
        BUFS.with(|cell| match cell.try_borrow_mut() {
            Ok(mut b) => write(&mut b),
            Err(_) => write(&mut Bufs::default()),
        });
        true
    }
}

/// Write the access line (INFO or WARN) of the request span `span` straight
/// into the JSON log when the level filter's answer for it is known,
/// skipping event dispatch (about a third of the line's cost). `false` when
/// the caller must emit the event instead: no JSON layer in the span's
/// subscriber, or a filter whose answer depends on the span context.
///
/// `root`: the span's IDs and request scope when it has no enclosing span;
/// the line is then complete without walking the span's scope in the
/// registry (the request span itself records no fields for the JSON line).
pub(crate) fn write_access_line(
    span: &tracing::Span,
    level: Level,
    log_type: LogType,
    root: Option<(SpanIds, &RequestScope)>,
    fields: impl FnOnce(&mut Vec<u8>),
) -> bool {
    span.with_subscriber(|(id, dispatch)| {
        let json = dispatch.downcast_ref::<JsonLayer>()?;
        let from = match root {
            Some((ids, request)) => LineScope::Root(ids, request),
            None => LineScope::Spans(dispatch.downcast_ref::<Registry>()?.span(id)?.scope()),
        };
        Some(json.write_access_line(from, level, log_type, fields))
    })
    .flatten()
    .unwrap_or(false)
}

/// Where a line's IDs, request fields and span fields come from.
pub(crate) enum LineScope<'a, 'r, R: LookupSpan<'a>> {
    /// The spans around the event, innermost first.
    Spans(Scope<'a, R>),
    /// A request span with no enclosing span: its IDs and request scope,
    /// known without a registry look-up (it records no JSON fields).
    Root(SpanIds, &'r RequestScope),
    /// Outside any span.
    None,
}

impl<'a, R: LookupSpan<'a>> From<Option<Scope<'a, R>>> for LineScope<'a, '_, R> {
    fn from(scope: Option<Scope<'a, R>>) -> Self {
        scope.map_or(Self::None, Self::Spans)
    }
}

/// The request scope's `,"requestId":…` (and `clientRequestId`, `userId`);
/// with `index`, noted there.
fn request_into(line: &mut Vec<u8>, request: &RequestScope, index: Option<&mut Entries>) {
    let at = line.len();
    request.request_id_json_into(line);
    let user_at = line.len();
    let user = request.user();
    if let Some(user) = &user {
        line.extend_from_slice(&user.json);
    }
    if let Some(index) = index {
        if request.client_request_id.is_none() {
            index.push(Entry::field(
                Kind::Str,
                at + 2,
                at + REQUEST_ID_KEY,
                user_at,
            ));
        } else {
            // With `clientRequestId` (rare): parsed.
            index.push(Entry::run(at, user_at));
        }
        if user.is_some() {
            index.push(Entry::field(
                Kind::Str,
                user_at + 2,
                user_at + USER_ID_KEY,
                line.len(),
            ));
        }
    }
}

/// `,"requestId":` before the request ID's JSON string.
const REQUEST_ID_KEY: usize = 13;

/// `,"userId":` before the user ID's JSON string.
const USER_ID_KEY: usize = 10;

/// `,"traceId":"…","spanId":"…"`.
fn ids_into(line: &mut Vec<u8>, ids: &SpanIds) {
    line.extend_from_slice(b",\"traceId\":\"");
    line.extend_from_slice(&ids.trace_id_hex());
    line.extend_from_slice(b"\",\"spanId\":\"");
    line.extend_from_slice(&ids.span_id_hex());
    line.push(b'"');
}

impl Bufs {
    fn clear(&mut self) {
        self.line.clear();
        self.msg.clear();
        self.fields.clear();
        self.seen.clear();
        self.captures.clear();
        self.index.clear();
        self.field_index.clear();
    }
}

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if is_request_span(attrs.metadata()) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut sf = SpanFields::default();
        let mut seen = Vec::new();
        let mut v = FieldVisitor {
            out: &mut sf.json,
            msg: None,
            seen: &mut seen,
            segs: Some(&mut sf.segs),
            index: None,
            log_type: None,
            audit: false,
            max: self.max_value,
        };
        attrs.record(&mut v);
        if !sf.segs.is_empty() {
            span.extensions_mut().insert(sf);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if is_request_span(span.metadata()) {
            return;
        }
        let mut ext = span.extensions_mut();
        let old = ext.remove::<SpanFields>().unwrap_or_default();
        let mut new = SpanFields::default();
        let mut seen = Vec::new();
        let mut v = FieldVisitor {
            out: &mut new.json,
            msg: None,
            seen: &mut seen,
            segs: Some(&mut new.segs),
            index: None,
            log_type: None,
            audit: false,
            max: self.max_value,
        };
        values.record(&mut v);
        // Keep the old values the record did not replace.
        for seg in old.segs {
            if !seen.contains(&seg.name) {
                let start = new.json.len();
                new.json.extend_from_slice(&old.json[seg.start..seg.end]);
                new.segs.push(Seg {
                    start,
                    end: new.json.len(),
                    ..seg
                });
            }
        }
        ext.insert(new);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.counters.count(*event.metadata().level());
        BUFS.with(|cell| match cell.try_borrow_mut() {
            Ok(mut b) => self.format(event, &ctx, &mut b),
            // An event emitted while formatting another (a Debug impl that
            // logs): format it with fresh buffers rather than lose it.
            Err(_) => self.format(event, &ctx, &mut Bufs::default()),
        });
    }
}

/// The `log_events_total{level}` handles, TRACE..ERROR. [`JsonLayer`]
/// counts through them; as a layer of its own it counts for the pretty
/// format, placed behind the same level filter.
pub(crate) struct LevelCounters([metrics::Counter; 5]);

impl LevelCounters {
    pub(crate) fn new() -> Self {
        let counter = |level: &'static str| metrics::counter!(crate::names::LOG_EVENTS, crate::names::labels::LEVEL => level);
        Self([
            counter("TRACE"),
            counter("DEBUG"),
            counter("INFO"),
            counter("WARN"),
            counter("ERROR"),
        ])
    }

    fn count(&self, level: Level) {
        let idx = match level {
            Level::TRACE => 0,
            Level::DEBUG => 1,
            Level::INFO => 2,
            Level::WARN => 3,
            Level::ERROR => 4,
        };
        self.0[idx].increment(1);
    }
}

impl<S: Subscriber> Layer<S> for LevelCounters {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        self.count(*event.metadata().level());
    }
}

/// Field formatter of the pretty format: `name=value` pairs with the same
/// redaction as the JSON lines.
pub(crate) fn pretty_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        if field.name() == "message" {
            write!(w, "{value:?}")
        } else if redact::is_sensitive(field.name()) {
            write!(w, "{field}={REDACTED}")
        } else {
            write!(w, "{field}={value:?}")
        }
    })
    .delimited(", ")
}

pub(crate) const fn level_str(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

/// Writes fields as `,"key":value` runs: redacts, renames reserved keys,
/// skips repeated keys, and picks out `message`, `log_type` and `audit`.
struct FieldVisitor<'a> {
    out: &'a mut Vec<u8>,
    /// `Some` for events: where the message goes.
    msg: Option<&'a mut Vec<u8>>,
    seen: &'a mut Vec<&'static str>,
    /// `Some` for spans: where each field's byte range is recorded.
    segs: Option<&'a mut Vec<Seg>>,
    /// `Some` for events with OTLP logs: each field's index entry.
    index: Option<&'a mut Entries>,
    log_type: Option<LogType>,
    audit: bool,
    /// The longest message or string value, in bytes.
    max: usize,
}

/// Append `args` formatted, escaped (no quotes), masked and capped at
/// `max` bytes like a string value.
///
/// Fast path, taken by almost every value: format and escape straight into
/// `out` as a plain string value costs, then scan what was written for
/// anything that may be personal data (`redact::may_hold_personal_data`:
/// an `@`, `%40` or 13 digits in a run). Only a value that may hold some,
/// or that ran past the cap, is formatted again through a per-thread
/// buffer and masked there. Going through the buffer every time cost about
/// 0.1 µs per event in `benches/logging.rs`.
fn formatted_into(out: &mut Vec<u8>, args: std::fmt::Arguments<'_>, max: usize) {
    let start = out.len();
    let mut w = json::CappedEscaper {
        out,
        budget: max,
        cut: false,
    };
    let _ = w.write_fmt(args);
    if !w.cut && !super::redact::may_hold_personal_data(&out[start..]) {
        return;
    }
    out.truncate(start);
    formatted(args, max.saturating_add(512), |s, cut| {
        json::value_escape_into(out, s, max, cut)
    });
}

/// Format `args` and pass the text (at most `limit` bytes, and whether
/// more was cut) to `f`, through a per-thread buffer.
fn formatted(args: std::fmt::Arguments<'_>, limit: usize, f: impl FnOnce(&str, bool)) {
    let run = |s: &mut String| {
        s.clear();
        let mut b = json::Bounded {
            out: s,
            limit,
            cut: false,
        };
        let _ = b.write_fmt(args);
        let cut = b.cut;
        f(s, cut);
    };
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => {
            run(&mut s);
            // Keep the buffer, unless one huge value grew it.
            if s.capacity() > 64 * 1024 {
                *s = String::new();
            }
        }
        // A `Debug` impl that logs: a buffer of its own.
        Err(_) => run(&mut String::new()),
    });
}

impl FieldVisitor<'_> {
    /// Write the key; `None` when the field is skipped, else whether its
    /// value must be redacted, plus the run's start.
    fn key(&mut self, field: &Field) -> Option<(bool, usize)> {
        let name = field.name();
        if self.seen.contains(&name) {
            return None;
        }
        self.seen.push(name);
        let start = self.out.len();
        self.out.extend_from_slice(b",\"");
        if is_reserved(name) {
            self.out.extend_from_slice(b"fields.");
        }
        json::escape_into(self.out, name);
        self.out.extend_from_slice(b"\":");
        Some((redact::is_sensitive_cached(name), start))
    }

    /// Note the field written at `start` (its value's token at `value`,
    /// of `kind`).
    fn end(&mut self, field: &Field, start: usize, value: usize, kind: Kind) {
        let end = self.out.len();
        let entry = Entry::field(kind, start + 2, value, end);
        if let Some(segs) = self.segs.as_deref_mut() {
            segs.push(Seg {
                name: field.name(),
                start,
                end,
                entry: entry.shifted(start.wrapping_neg()),
            });
        }
        if let Some(index) = self.index.as_deref_mut() {
            index.push(entry);
        }
    }

    fn is_message(&self, field: &Field) -> bool {
        self.msg.is_some() && field.name() == "message"
    }

    /// Write the field with its value written by `write`, a JSON value of
    /// `kind` (a string when redacted).
    fn scalar(&mut self, field: &Field, kind: Kind, write: impl FnOnce(&mut Vec<u8>)) {
        if let Some((redacted, start)) = self.key(field) {
            let value = self.out.len();
            let kind = if redacted {
                json::string_into(self.out, REDACTED);
                Kind::Str
            } else {
                write(self.out);
                kind
            };
            self.end(field, start, value, kind);
        }
    }
}

impl tracing::field::Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let max = self.max;
        if self.is_message(field) {
            if let Some(msg) = self.msg.as_deref_mut() {
                json::value_escape_into(msg, value, max, false);
            }
            return;
        }
        if self.msg.is_some()
            && field.name() == "log_type"
            && let Some(t) = LogType::parse(value)
        {
            self.log_type = Some(t);
            return;
        }
        self.scalar(field, Kind::Str, |out| json::value_into(out, value, max));
    }

    // Formatted values are masked and capped like strings: `%email` and
    // `?card` are string values to a reader (`formatted_into`).
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let max = self.max;
        if self.is_message(field) {
            if let Some(msg) = self.msg.as_deref_mut() {
                formatted_into(msg, format_args!("{value:?}"), max);
            }
            return;
        }
        self.scalar(field, Kind::Str, |out| {
            out.push(b'"');
            formatted_into(out, format_args!("{value:?}"), max);
            out.push(b'"');
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let max = self.max;
        self.scalar(field, Kind::Str, |out| {
            out.push(b'"');
            formatted_into(out, format_args!("{value}"), max);
            out.push(b'"');
        });
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        let max = self.max;
        self.scalar(field, Kind::Str, |out| {
            let kept = &value[..value.len().min(max)];
            json::lossy_string_into(out, kept);
            if kept.len() < value.len() {
                out.pop();
                json::escape_into(out, super::redact::TRUNCATED_SUFFIX);
                out.push(b'"');
            }
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.scalar(field, Kind::Int, |out| json::int_into(out, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.scalar(field, Kind::Int, |out| json::int_into(out, value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.scalar(field, Kind::Int, |out| json::int_into(out, value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.scalar(field, Kind::Int, |out| json::int_into(out, value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let kind = if value.is_finite() {
            Kind::Double
        } else {
            // `"NaN"`, `"Infinity"`: strings.
            Kind::Str
        };
        self.scalar(field, kind, |out| json::f64_into(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.msg.is_some() && field.name() == "audit" && value {
            self.audit = true;
        }
        self.scalar(field, Kind::Bool, |out| {
            out.extend_from_slice(if value { b"true" } else { b"false" })
        });
    }
}

#[cfg(test)]
mod tests {
    //! Golden lines: the exact bytes the formatter writes, with a fixed clock.

    use std::{
        sync::{Arc, Mutex},
        time::{Duration, SystemTime},
    };

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::{config::parse_filter, logging::writer::LineQueue};

    /// 2026-12-03T07:53:59.123456Z
    fn fixed_clock() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_284_439_123_456)
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `f` logs through a JSON layer of service `svc`.
    fn lines(f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let (queue, mut writer) = LineQueue::start(Box::new(buf.clone()), 1 << 20).unwrap();
        let filter = parse_filter("info").unwrap();
        let gate = Arc::new(AccessGate::new(&filter));
        let mut layer = JsonLayer::new("svc", queue.clone(), gate, 4096);
        layer.clock = fixed_clock;
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f);
        assert!(queue.flush(Duration::from_secs(5)));
        assert!(writer.shutdown(Duration::from_secs(5)));
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn an_info_event_is_the_schema_fields_then_its_own() {
        let out =
            lines(|| tracing::info!(target: "app", count = 3, ok = true, who = "ana", "hello"));
        assert_eq!(
            out,
            "{\"timestamp\":\"2026-12-03T07:53:59.123456Z\",\"level\":\"INFO\",\"service\":\"svc\",\
             \"message\":\"hello\",\"target\":\"app\",\"log_type\":\"system\",\
             \"count\":3,\"ok\":true,\"who\":\"ana\"}\n"
        );
    }

    #[test]
    fn span_fields_follow_the_events_own_and_are_not_repeated() {
        let out = lines(|| {
            let span = tracing::info_span!(target: "app", "job", job = "sync", count = 1);
            let _e = span.enter();
            tracing::warn!(target: "app", count = 2, "retrying");
        });
        assert_eq!(
            out,
            "{\"timestamp\":\"2026-12-03T07:53:59.123456Z\",\"level\":\"WARN\",\"service\":\"svc\",\
             \"message\":\"retrying\",\"target\":\"app\",\"log_type\":\"system\",\
             \"count\":2,\"job\":\"sync\"}\n"
        );
    }

    #[test]
    fn sensitive_and_reserved_fields_are_redacted_and_moved() {
        let out = lines(
            || tracing::error!(target: "app", password = "hunter2", level = "high", "login \"failed\""),
        );
        assert_eq!(
            out,
            "{\"timestamp\":\"2026-12-03T07:53:59.123456Z\",\"level\":\"ERROR\",\"service\":\"svc\",\
             \"message\":\"login \\\"failed\\\"\",\"target\":\"app\",\"log_type\":\"system\",\
             \"password\":\"[REDACTED]\",\"fields.level\":\"high\"}\n"
        );
    }

    #[test]
    fn with_otlp_each_line_is_also_a_record_and_stdout_can_be_off() {
        use crate::logging::export::{LogEncoder, LogItem, OtlpLogs};
        use opentelemetry_proto::tonic::{
            collector::logs::v1::ExportLogsServiceRequest, common::v1::any_value::Value,
        };
        use prost::Message;

        for stdout in [true, false] {
            let items: Arc<Mutex<Vec<LogItem>>> = Arc::default();
            let seen = items.clone();
            let otlp = Arc::new(OtlpLogs::to_fn(move |item| {
                seen.lock().unwrap().push(item);
                true
            }));
            let buf = Buf::default();
            let (queue, mut writer) = LineQueue::start(Box::new(buf.clone()), 1 << 20).unwrap();
            let gate = Arc::new(AccessGate::new(&parse_filter("info").unwrap()));
            let mut layer =
                JsonLayer::new("svc", queue.clone(), gate, 4096).with_otlp(Some(otlp), stdout);
            layer.clock = fixed_clock;
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::with_default(
                subscriber,
                || tracing::warn!(target: "app", token = "t0k", n = 2, mail = "ana@example.com", "hi"),
            );
            assert!(queue.flush(Duration::from_secs(5)));
            assert!(writer.shutdown(Duration::from_secs(5)));
            let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
            assert_eq!(out.is_empty(), !stdout, "{out}");
            let items = std::mem::take(&mut *items.lock().unwrap());
            assert_eq!(items.len(), 1);
            let bytes = LogEncoder::new([("service.name", "svc")]).encode_request(&items);
            let req = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
            let r = &req.resource_logs[0].scope_logs[0].log_records[0];
            assert_eq!(r.severity_text, "WARN");
            assert_eq!(r.time_unix_nano, 1_796_284_439_123_456_000);
            let attr = |k: &str| {
                r.attributes
                    .iter()
                    .find(|kv| kv.key == k)
                    .and_then(|kv| kv.value.clone()?.value)
            };
            assert_eq!(attr("token"), Some(Value::StringValue("[REDACTED]".into())));
            assert_eq!(attr("n"), Some(Value::IntValue(2)));
            assert_eq!(attr("log_type"), Some(Value::StringValue("system".into())));
            let mail = attr("mail");
            assert!(
                matches!(&mail, Some(Value::StringValue(m)) if !m.contains("ana@example.com")),
                "{mail:?}"
            );
        }
    }

    /// The OTLP items (line, field index, IDs) of what `f` logs through a
    /// JSON layer with OTLP logs and stdout off; `f` gets the registry to
    /// attach IDs and request scopes to spans.
    fn otlp_items(
        f: impl FnOnce(&dyn Fn(&tracing::Span, SpanIds, Option<Arc<RequestScope>>)),
    ) -> Vec<crate::logging::export::LogItem> {
        use crate::logging::export::{LogItem, OtlpLogs};
        let items: Arc<Mutex<Vec<LogItem>>> = Arc::default();
        let seen = items.clone();
        let otlp = Arc::new(OtlpLogs::to_fn(move |item| {
            seen.lock().unwrap().push(item);
            true
        }));
        let (queue, mut writer) = LineQueue::start(Box::new(Buf::default()), 1 << 20).unwrap();
        let gate = Arc::new(AccessGate::new(&parse_filter("trace").unwrap()));
        let mut layer = JsonLayer::new("s\"vc", queue, gate, 64).with_otlp(Some(otlp), false);
        layer.clock = fixed_clock;
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            f(&|span, ids, scope| {
                span.with_subscriber(|(id, dispatch)| {
                    let registry = dispatch.downcast_ref::<Registry>().unwrap();
                    let data = registry.span(id).unwrap();
                    let mut ext = data.extensions_mut();
                    ext.insert(ids);
                    if let Some(scope) = scope {
                        ext.insert(ScopeExt(scope));
                    }
                });
            });
        });
        assert!(writer.shutdown(Duration::from_secs(5)));
        std::mem::take(&mut *items.lock().unwrap())
    }

    /// The records of `items`, encoded with their field index and, to
    /// compare, by parsing the line.
    fn indexed_and_parsed(
        items: Vec<crate::logging::export::LogItem>,
    ) -> (
        opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
        Vec<u8>,
        Vec<u8>,
    ) {
        use crate::logging::export::LogEncoder;
        use prost::Message;
        let enc = LogEncoder::new([("service.name", "svc")]);
        assert!(
            items.iter().all(|i| i.index.is_some()),
            "every line indexed"
        );
        let refused = crate::logging::export::INDEX_REFUSED.get();
        let indexed = enc.encode_request(&items);
        assert_eq!(
            crate::logging::export::INDEX_REFUSED.get(),
            refused,
            "an index did not fit its line"
        );
        // Staged one behind the other as the export path stages them (the
        // word-wide copies then read into the next line's header).
        assert_eq!(enc.encode_staged(&items), indexed, "staged");
        let parsed = enc.encode_request(
            &items
                .into_iter()
                .map(|mut i| {
                    i.index = None;
                    i
                })
                .collect::<Vec<_>>(),
        );
        let req =
            opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(
                indexed.as_slice(),
            )
            .unwrap();
        (req, indexed, parsed)
    }

    #[test]
    fn the_field_index_gives_the_record_the_line_holds() {
        use crate::ids::RequestId;
        use opentelemetry::trace::{SpanId, TraceId};
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;

        let ids = SpanIds {
            trace_id: TraceId::from_bytes([7; 16]),
            span_id: SpanId::from_bytes([9; 8]),
            sampled: true,
            random: false,
        };
        let items = otlp_items(|attach| {
            // No span: no IDs, no span fields.
            tracing::info!(target: "app", n = 1u64, "outside");
            let outer = tracing::info_span!(
                target: "app",
                "outer",
                region = "eu\"west\"",
                page = 3u64,
                ratio = 0.25,
                on = true,
            );
            let scope = RequestScope::new(RequestId::parse("req-42").unwrap());
            scope.set_user("ana \"a\" é");
            attach(&outer, ids, Some(Arc::new(scope)));
            let _o = outer.enter();
            let inner = tracing::info_span!(target: "app", "inner", feed = "near\nby", page = 4u64);
            let _i = inner.enter();
            tracing::warn!(
                target: "app",
                esc = "tab\t quote\" back\\ nl\n",
                uni = "hé 😀 \u{2028} \u{1b}",
                neg = -42i64,
                min = i64::MIN,
                big = u64::MAX,
                huge = i128::MIN,
                f = 12.5,
                tiny = 1e-300,
                nan = f64::NAN,
                inf = f64::NEG_INFINITY,
                t = true,
                no = false,
                long = "x".repeat(100).as_str(),
                dbg = ?Some("q\"d"),
                disp = %"y\\z",
                password = "secret",
                level = "high",
                message_like = "m",
                "msg \"quoted\" é\t{}",
                "x"
            );
            tracing::error!(target: "app", "plain");
        });
        assert_eq!(items.len(), 3);
        let (req, indexed, parsed) = indexed_and_parsed(items);
        // What the parser reads from the same lines, byte for byte.
        assert_eq!(indexed, parsed);

        let records = &req.resource_logs[0].scope_logs[0].log_records;
        let attrs = |i: usize| -> Vec<(String, Option<V>)> {
            records[i]
                .attributes
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone().and_then(|v| v.value)))
                .collect()
        };
        let body = |i: usize| records[i].body.clone().and_then(|v| v.value);
        let s = |v: &str| Some(V::StringValue(v.into()));

        let r = &records[0];
        assert_eq!((r.severity_number, r.severity_text.as_str()), (9, "INFO"));
        assert_eq!(r.time_unix_nano, 1_796_284_439_123_456_000);
        assert!(r.trace_id.is_empty() && r.span_id.is_empty() && r.flags == 0);
        assert_eq!(body(0), s("outside"));
        assert_eq!(
            attrs(0),
            vec![
                ("service".into(), s("s\"vc")),
                ("target".into(), s("app")),
                ("log_type".into(), s("system")),
                ("n".into(), Some(V::IntValue(1))),
            ]
        );

        let r = &records[1];
        assert_eq!(r.severity_number, 13);
        assert_eq!(
            (r.trace_id.clone(), r.span_id.clone()),
            (vec![7; 16], vec![9; 8])
        );
        assert_eq!(r.flags, 1);
        assert_eq!(body(1), s("msg \"quoted\" é\tx"));
        let long = format!("{}…[truncated]", "x".repeat(64));
        assert_eq!(
            attrs(1),
            vec![
                ("service".into(), s("s\"vc")),
                ("target".into(), s("app")),
                ("log_type".into(), s("system")),
                ("requestId".into(), s("req-42")),
                ("userId".into(), s("ana \"a\" é")),
                ("esc".into(), s("tab\t quote\" back\\ nl\n")),
                ("uni".into(), s("hé 😀 \u{2028} \u{1b}")),
                ("neg".into(), Some(V::IntValue(-42))),
                ("min".into(), Some(V::IntValue(i64::MIN))),
                ("big".into(), s("18446744073709551615")),
                ("huge".into(), s("-170141183460469231731687303715884105728")),
                ("f".into(), Some(V::DoubleValue(12.5))),
                ("tiny".into(), Some(V::DoubleValue(1e-300))),
                ("nan".into(), s("NaN")),
                ("inf".into(), s("-Infinity")),
                ("t".into(), Some(V::BoolValue(true))),
                ("no".into(), Some(V::BoolValue(false))),
                ("long".into(), s(&long)),
                ("dbg".into(), s("Some(\"q\\\"d\")")),
                ("disp".into(), s("y\\z")),
                ("password".into(), s("[REDACTED]")),
                ("fields.level".into(), s("high")),
                ("message_like".into(), s("m")),
                // The spans' fields, innermost first, not repeated.
                ("feed".into(), s("near\nby")),
                ("page".into(), Some(V::IntValue(4))),
                ("region".into(), s("eu\"west\"")),
                ("ratio".into(), Some(V::DoubleValue(0.25))),
                ("on".into(), Some(V::BoolValue(true))),
            ]
        );
        assert_eq!(records[2].severity_number, 17);
        assert_eq!(body(2), s("plain"));
    }

    #[test]
    fn a_field_recorded_later_on_a_span_keeps_its_index() {
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        let items = otlp_items(|_| {
            let span = tracing::info_span!(
                target: "app",
                "job",
                a = 1u64,
                b = tracing::field::Empty,
                c = "k\"eep"
            );
            span.record("b", "n\"ow");
            span.record("a", 2.5);
            let _e = span.enter();
            tracing::info!(target: "app", "done");
        });
        let (req, indexed, parsed) = indexed_and_parsed(items);
        assert_eq!(indexed, parsed);
        let r = &req.resource_logs[0].scope_logs[0].log_records[0];
        let attrs: Vec<(String, Option<V>)> = r.attributes[3..]
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().and_then(|v| v.value)))
            .collect();
        assert_eq!(
            attrs,
            vec![
                ("a".into(), Some(V::DoubleValue(2.5))),
                ("b".into(), Some(V::StringValue("n\"ow".into()))),
                ("c".into(), Some(V::StringValue("k\"eep".into()))),
            ]
        );
    }

    #[test]
    fn debug_events_are_filtered_by_the_layers_owner_not_the_formatter() {
        // The JSON layer alone formats whatever reaches it; DEBUG lines are
        // typed `debug`.
        let out = lines(|| tracing::debug!(target: "app", "details"));
        assert!(out.contains("\"level\":\"DEBUG\""), "{out}");
        assert!(out.contains("\"log_type\":\"debug\""), "{out}");
    }
}

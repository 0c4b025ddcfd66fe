//! The compact record of one exported span, built by [`super::LightLayer`]
//! from the `tracing` span itself: no OpenTelemetry SDK span, no
//! `KeyValue` per field. Keys are the `tracing` field names (`&'static
//! str`); every string value of the span, its events and its name is
//! appended to one buffer, so a server span with a dozen attributes costs a
//! handful of allocations, whatever the number of fields.
//!
//! The field conventions are those of `tracing-opentelemetry`, which the
//! crate used before: `otel.name` names the span, `otel.kind` sets its kind,
//! `otel.status_code` (`ok` / `error`) and `otel.status_message` (or
//! `otel.status_description`) its status; every other field is an
//! attribute. ERROR events inside the span become span events (name: the
//! message; attributes: `level`, `target`, the code location and the
//! event's fields) and set the status to error when it is unset.

use std::{cell::RefCell, fmt::Write as _, ops::Range, time::SystemTime};

use opentelemetry::trace::{SpanId, TraceId};
use tracing::field::{Field, Visit};

use super::pb::{self, Any, SPAN_ATTRIBUTES};

/// Span kind, numbered as OTLP's `Span.SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl Kind {
    /// `tracing-opentelemetry`'s reading of `otel.kind` (case-insensitive).
    fn parse(s: &str) -> Option<Self> {
        [
            ("server", Self::Server),
            ("client", Self::Client),
            ("producer", Self::Producer),
            ("consumer", Self::Consumer),
            ("internal", Self::Internal),
        ]
        .into_iter()
        .find_map(|(name, kind)| s.eq_ignore_ascii_case(name).then_some(kind))
    }
}

/// Status code, numbered as OTLP's `Status.StatusCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub(crate) enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

/// One attribute value of a span event; strings live in the record's
/// buffer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    /// A range of [`SpanRecord::buf`].
    Str(u32, u32),
    Static(&'static str),
    I64(i64),
    F64(f64),
    Bool(bool),
}

pub(crate) type Attr = (&'static str, Val);

/// A span event: a name and attributes, at a time.
#[derive(Debug, Clone)]
pub(crate) struct EventRecord {
    pub(crate) name: Text,
    pub(crate) time: u64,
    pub(crate) attrs: Vec<Attr>,
}

/// A link to another span (an untrusted caller's context).
#[derive(Debug, Clone)]
pub(crate) struct LinkRecord {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) flags: u8,
    pub(crate) trace_state: String,
}

/// A string of the record: static, or a range of its buffer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Text {
    Static(&'static str),
    Buf(u32, u32),
}

/// What is exported of one span.
#[derive(Debug, Clone)]
pub(crate) struct SpanRecord {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    /// `SpanId::INVALID` for a root.
    pub(crate) parent_span_id: SpanId,
    pub(crate) parent_is_remote: bool,
    /// W3C trace flags (sampled, random).
    pub(crate) flags: u8,
    /// The remote parent's `tracestate`, as received.
    pub(crate) trace_state: String,
    pub(crate) name: Text,
    pub(crate) kind: Kind,
    /// Unix nanoseconds.
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// The span's attributes, encoded as they are recorded: each a
    /// `Span.attributes` field (a protobuf `KeyValue`), ready to be copied
    /// into the exported span. A value recorded again replaces the earlier
    /// one.
    pub(crate) attrs: Vec<u8>,
    /// A bit per key written to `attrs` ([`key_bit`]): a key whose bit is
    /// clear was never written, so recording it needs no search for an
    /// earlier value.
    pub(crate) attr_keys: u64,
    /// Where a server span's response is read when it closes, when the HTTP
    /// layer handed it over with the span's attributes (`super::server`).
    pub(crate) response: Option<std::sync::Arc<dyn crate::ids::response::ResponseSource>>,
    pub(crate) events: Vec<EventRecord>,
    pub(crate) links: Vec<LinkRecord>,
    pub(crate) status: StatusCode,
    pub(crate) status_message: Option<Text>,
    /// Every non-static string of the record.
    pub(crate) buf: String,
}

thread_local! {
    /// Boxed records this thread exported, emptied, for the next spans it
    /// records: a span's record then costs no allocation and is never
    /// moved (a record is some 300 bytes; the extensions hold its box).
    #[allow(clippy::vec_box, reason = "the boxes are what is reused")]
    static SPARE: RefCell<Vec<Box<SpanRecord>>> = const { RefCell::new(Vec::new()) };
}

/// Records kept per thread: more than the spans a request thread has open
/// at once in the common case (server span, a few children).
const SPARE_MAX: usize = 16;
/// Records whose buffers grew larger than this (a span with huge values)
/// are freed, not kept.
const SPARE_BYTES: usize = 4096;

/// Unix time in nanoseconds.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The record of a span being recorded, in the span's extensions: boxed,
/// the box reused from span to span on a thread ([`Recording::recycle`]).
#[derive(Debug)]
pub(crate) struct Recording(Box<SpanRecord>);

impl std::ops::Deref for Recording {
    type Target = SpanRecord;
    fn deref(&self) -> &SpanRecord {
        &self.0
    }
}

impl std::ops::DerefMut for Recording {
    fn deref_mut(&mut self) -> &mut SpanRecord {
        &mut self.0
    }
}

impl Recording {
    /// A record for a span named `name` (its metadata name; `otel.name`
    /// overrides it) with about `fields` fields, started now.
    pub(crate) fn start(name: &'static str, fields: usize) -> Self {
        let spare = SPARE
            .try_with(|s| s.try_borrow_mut().ok()?.pop())
            .ok()
            .flatten();
        Self(match spare {
            Some(mut rec) => {
                rec.restart(name);
                rec
            }
            None => Box::new(SpanRecord::fresh(name, fields)),
        })
    }

    /// Keep this record's box and buffers for the next record this thread
    /// starts.
    pub(crate) fn recycle(self) {
        let mut rec = self.0;
        if rec.buf.capacity() > SPARE_BYTES || rec.attrs.capacity() > SPARE_BYTES {
            return;
        }
        // Emptied now, so what they hold is freed now.
        rec.attrs.clear();
        rec.buf.clear();
        rec.trace_state.clear();
        rec.events.clear();
        rec.links.clear();
        rec.response = None;
        let _ = SPARE.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut()
                && s.len() < SPARE_MAX
            {
                s.push(rec);
            }
        });
    }
}

impl SpanRecord {
    /// A record for a span named `name`, started now, unboxed (tests; the
    /// light layer starts a [`Recording`]).
    #[cfg(test)]
    pub(crate) fn start(name: &'static str, fields: usize) -> Self {
        *Recording::start(name, fields).0
    }

    fn fresh(name: &'static str, fields: usize) -> Self {
        Self {
            trace_id: TraceId::INVALID,
            span_id: SpanId::INVALID,
            parent_span_id: SpanId::INVALID,
            parent_is_remote: false,
            flags: 0,
            trace_state: String::new(),
            name: Text::Static(name),
            kind: Kind::Internal,
            start: now(),
            end: 0,
            // About 40 bytes an attribute.
            attrs: Vec::with_capacity(fields * 48),
            attr_keys: 0,
            response: None,
            events: Vec::new(),
            links: Vec::new(),
            status: StatusCode::Unset,
            status_message: None,
            buf: String::with_capacity(64),
        }
    }

    /// Start a recycled (emptied) record again, field by field.
    fn restart(&mut self, name: &'static str) {
        self.trace_id = TraceId::INVALID;
        self.span_id = SpanId::INVALID;
        self.parent_span_id = SpanId::INVALID;
        self.parent_is_remote = false;
        self.flags = 0;
        self.name = Text::Static(name);
        self.kind = Kind::Internal;
        self.start = now();
        self.end = 0;
        self.attr_keys = 0;
        self.status = StatusCode::Unset;
        self.status_message = None;
    }

    /// The text of `t`.
    pub(crate) fn text<'a>(&'a self, t: &'a Text) -> &'a str {
        match t {
            Text::Static(s) => s,
            Text::Buf(a, b) => self.buf.get(*a as usize..*b as usize).unwrap_or(""),
        }
    }

    /// The string of `v`, when it is one.
    pub(crate) fn str_of<'a>(&'a self, v: &'a Val) -> Option<&'a str> {
        match v {
            Val::Str(a, b) => self.buf.get(*a as usize..*b as usize),
            Val::Static(s) => Some(s),
            _ => None,
        }
    }

    /// The value of attribute `key` as text (tests).
    #[cfg(test)]
    pub(crate) fn attr(&self, key: &str) -> Option<String> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use prost::Message as _;
        let span = opentelemetry_proto::tonic::trace::v1::Span::decode(&self.attrs[..]).ok()?;
        let kv = span.attributes.into_iter().find(|kv| kv.key == key)?;
        Some(match kv.value?.value? {
            Value::StringValue(s) => s,
            Value::IntValue(i) => i.to_string(),
            Value::DoubleValue(f) => f.to_string(),
            Value::BoolValue(b) => b.to_string(),
            other => format!("{other:?}"),
        })
    }

    pub(super) fn push_str(&mut self, s: &str) -> (u32, u32) {
        let a = self.buf.len();
        self.buf.push_str(s);
        (a as u32, self.buf.len() as u32)
    }

    fn push_debug(&mut self, value: &dyn std::fmt::Debug) -> (u32, u32) {
        let a = self.buf.len();
        let _ = write!(self.buf, "{value:?}");
        (a as u32, self.buf.len() as u32)
    }

    fn range(&self, (a, b): (u32, u32)) -> Range<usize> {
        a as usize..b as usize
    }

    /// Record span fields (at creation or later): the `otel.*` fields set
    /// name, kind and status; any other field is an attribute, replacing a
    /// value recorded before under the same key.
    pub(crate) fn record(&mut self, values: &tracing::span::Record<'_>) {
        values.record(&mut SpanVisitor(self));
    }

    /// Record the fields of span creation.
    pub(crate) fn record_attributes(&mut self, attrs: &tracing::span::Attributes<'_>) {
        attrs.record(&mut SpanVisitor(self));
    }

    /// Write attribute `key`, removing an earlier value of the same key
    /// first; `keys` is the record's [`SpanRecord::attr_keys`].
    fn put(attrs: &mut Vec<u8>, keys: &mut u64, key: &str, val: Any<'_>) {
        Self::put_known(attrs, keys, key, val);
    }

    /// [`SpanRecord::put`], always inlined: for a key known when compiled
    /// its bit and lengths are constants.
    #[inline(always)]
    fn put_known(attrs: &mut Vec<u8>, keys: &mut u64, key: &str, val: Any<'_>) {
        let bit = key_bit(key);
        if *keys & bit != 0
            && let Some(old) = pb::find_key(attrs, key)
        {
            attrs.drain(old);
        }
        *keys |= bit;
        pb::key_value_inline(attrs, SPAN_ATTRIBUTES, key, val);
    }

    /// The response fields of a server span, as the HTTP layer would record
    /// them on the span: `http.response.status_code`; for a 5xx the error
    /// status and `error.type` (`panic`, or the status code); `enduser.id`.
    pub(crate) fn response(&mut self, r: &crate::ids::response::ResponseFields) {
        let (attrs, keys) = (&mut self.attrs, &mut self.attr_keys);
        Self::put_known(
            attrs,
            keys,
            "http.response.status_code",
            Any::I64(i64::from(r.status)),
        );
        if r.status >= 500 {
            self.status = StatusCode::Error;
            let mut code = itoa::Buffer::new();
            let error_type = if r.panicked {
                "panic"
            } else {
                code.format(r.status)
            };
            Self::put_known(attrs, keys, "error.type", Any::Str(error_type.as_bytes()));
        }
        if let Some(user) = &r.user {
            Self::put_known(attrs, keys, "enduser.id", Any::Str(user.as_bytes()));
        }
    }

    /// An ERROR (or other) log event inside the span, as a span event the
    /// way `tracing-opentelemetry` shapes it; an ERROR event sets the status
    /// to error when it is unset.
    pub(crate) fn add_log_event(&mut self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        let mut visitor = EventVisitor {
            rec: self,
            name: None,
            attrs: Vec::with_capacity(meta.fields().len() + 5),
        };
        event.record(&mut visitor);
        let EventVisitor {
            name, mut attrs, ..
        } = visitor;
        attrs.push(("level", Val::Static(meta.level().as_str())));
        attrs.push(("target", Val::Static(meta.target())));
        if let Some(file) = meta.file() {
            attrs.push(("code.file.path", Val::Static(file)));
        }
        if let Some(module) = meta.module_path() {
            attrs.push(("code.module.name", Val::Static(module)));
        }
        if let Some(line) = meta.line() {
            attrs.push(("code.line.number", Val::I64(i64::from(line))));
        }
        let name = name.map_or(Text::Static(meta.name()), |(a, b)| Text::Buf(a, b));
        self.events.push(EventRecord {
            name,
            time: now(),
            attrs,
        });
        if *meta.level() == tracing::Level::ERROR && self.status == StatusCode::Unset {
            self.status = StatusCode::Error;
        }
    }

    /// An `exception` event (OpenTelemetry semantic conventions).
    pub(crate) fn add_exception(&mut self, kind: &'static str, message: &str, stack: Option<&str>) {
        let (a, b) = self.push_str(message);
        let mut attrs = vec![
            ("exception.type", Val::Static(kind)),
            ("exception.message", Val::Str(a, b)),
        ];
        if let Some(stack) = stack {
            let (a, b) = self.push_str(stack);
            attrs.push(("exception.stacktrace", Val::Str(a, b)));
        }
        self.events.push(EventRecord {
            name: Text::Static("exception"),
            time: now(),
            attrs,
        });
    }
}

/// The bit of `key` in [`SpanRecord::attr_keys`]: a hash of its length and
/// two of its bytes, which gives each key of the crate's server span and its
/// response fields a bit of its own (a test checks), so recording them
/// searches nothing. Two keys sharing a bit only cost a search.
#[inline]
pub(crate) fn key_bit(key: &str) -> u64 {
    let b = key.as_bytes();
    let last = usize::from(b.last().copied().unwrap_or(0));
    let mid = usize::from(b.get(b.len() / 2).copied().unwrap_or(0));
    1 << ((b.len() ^ last.wrapping_mul(36) ^ mid) & 63)
}

/// Records fields into a span record.
struct SpanVisitor<'a>(&'a mut SpanRecord);

impl SpanVisitor<'_> {
    fn put(&mut self, key: &str, val: Any<'_>) {
        SpanRecord::put(&mut self.0.attrs, &mut self.0.attr_keys, key, val);
    }

    /// The string field `name` whose value was appended to the record's
    /// buffer at `a..b`: an `otel.*` field sets name, kind or status (and
    /// keeps what it names), any other is an attribute (and leaves the
    /// buffer as it was).
    fn buffered(&mut self, name: &'static str, (a, b): (u32, u32)) {
        let rec = &mut *self.0;
        let r = rec.range((a, b));
        match name {
            "otel.name" => return rec.name = Text::Buf(a, b),
            "otel.status_message" | "otel.status_description" => {
                return rec.status_message = Some(Text::Buf(a, b));
            }
            "otel.kind" => {
                if let Some(kind) = Kind::parse(&rec.buf[r.clone()]) {
                    rec.kind = kind;
                }
            }
            "otel.status_code" => {
                let s = &rec.buf[r.clone()];
                rec.status = if s.eq_ignore_ascii_case("ok") {
                    StatusCode::Ok
                } else if s.eq_ignore_ascii_case("error") {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                };
            }
            _ => {
                let SpanRecord {
                    attrs,
                    attr_keys,
                    buf,
                    ..
                } = rec;
                SpanRecord::put(attrs, attr_keys, name, Any::Str(&buf.as_bytes()[r.clone()]));
            }
        }
        rec.buf.truncate(r.start);
    }
}

impl Visit for SpanVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let name = field.name();
        if name.starts_with("otel.") {
            let s = self.0.push_str(value);
            return self.buffered(name, s);
        }
        // Straight into the attribute: no copy through the buffer.
        self.put(name, Any::Str(value.as_bytes()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let s = self.0.push_debug(value);
        self.buffered(field.name(), s);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), Any::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.put(field.name(), Any::I64(v)),
            // As `tracing-opentelemetry` does: too large for OTLP's int.
            Err(_) => self.record_debug(field, &value),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field.name(), Any::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field.name(), Any::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let a = self.0.buf.len();
        let _ = write!(self.0.buf, "{value}");
        let b = self.0.buf.len();
        self.buffered(field.name(), (a as u32, b as u32));
    }
}

struct EventVisitor<'a> {
    rec: &'a mut SpanRecord,
    name: Option<(u32, u32)>,
    attrs: Vec<Attr>,
}

impl EventVisitor<'_> {
    fn put(&mut self, field: &Field, (a, b): (u32, u32)) {
        if field.name() == "message" {
            self.name = Some((a, b));
        } else {
            self.attrs.push((field.name(), Val::Str(a, b)));
        }
    }
}

impl Visit for EventVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let s = self.rec.push_str(value);
        self.put(field, s);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let s = self.rec.push_debug(value);
        self.put(field, s);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attrs.push((field.name(), Val::I64(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.attrs.push((field.name(), Val::I64(v))),
            Err(_) => self.record_debug(field, &value),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attrs.push((field.name(), Val::F64(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attrs.push((field.name(), Val::Bool(value)));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let a = self.rec.buf.len();
        let _ = write!(self.rec.buf, "{value}");
        let b = self.rec.buf.len();
        self.put(field, (a as u32, b as u32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::response::ResponseFields;

    #[test]
    fn the_server_and_client_span_keys_each_have_a_bit_of_their_own() {
        let keys = [
            "http.request.method",
            "http.request.method_original",
            "http.route",
            "url.path",
            "url.scheme",
            "network.protocol.version",
            "user_agent.original",
            "glimpse.request_id",
            "http.response.status_code",
            "error.type",
            "enduser.id",
            "server.address",
            "url.full",
        ];
        let all = keys.iter().fold(0, |m, k| m | key_bit(k));
        assert_eq!(all.count_ones() as usize, keys.len(), "a bit shared");
    }

    #[test]
    fn a_value_recorded_again_replaces_the_earlier_one_also_under_a_shared_bit() {
        // Keys whose bits collide still replace, not duplicate.
        let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        let (a, b) = keys
            .iter()
            .enumerate()
            .find_map(|(i, a)| {
                keys[i + 1..]
                    .iter()
                    .find(|b| key_bit(b) == key_bit(a))
                    .map(|b| (a.clone(), b.clone()))
            })
            .expect("two keys sharing a bit");
        let mut rec = SpanRecord::start("s", 2);
        let (attrs, keys) = (&mut rec.attrs, &mut rec.attr_keys);
        SpanRecord::put(attrs, keys, &a, Any::I64(1));
        SpanRecord::put(attrs, keys, &b, Any::I64(2));
        SpanRecord::put(attrs, keys, &a, Any::I64(3));
        SpanRecord::put(attrs, keys, &b, Any::I64(4));
        assert_eq!(rec.attr(&a).as_deref(), Some("3"));
        assert_eq!(rec.attr(&b).as_deref(), Some("4"));
        let mut again = rec.attrs.clone();
        let first = pb::find_key(&again, &a).unwrap();
        again.drain(first);
        assert!(pb::find_key(&again, &a).is_none(), "{a} written once");
    }

    #[test]
    fn a_server_error_response_sets_the_error_status_and_error_type() {
        let mut rec = SpanRecord::start("request", 4);
        rec.response(&ResponseFields {
            status: 503,
            panicked: false,
            user: Some("u-7".into()),
            elapsed: std::time::Duration::ZERO,
        });
        assert_eq!(rec.status, StatusCode::Error);
        assert_eq!(
            rec.attr("http.response.status_code").as_deref(),
            Some("503")
        );
        assert_eq!(rec.attr("error.type").as_deref(), Some("503"));
        assert_eq!(rec.attr("enduser.id").as_deref(), Some("u-7"));

        let mut ok = SpanRecord::start("request", 4);
        ok.response(&ResponseFields {
            status: 404,
            panicked: false,
            user: None,
            elapsed: std::time::Duration::ZERO,
        });
        assert_eq!(ok.status, StatusCode::Unset, "a 4xx is not a server error");
        assert_eq!(ok.attr("error.type"), None);
        assert_eq!(ok.attr("enduser.id"), None);
    }
}

//! Batches of [`SpanRecord`]s as an OTLP `ExportTraceServiceRequest`
//! (protobuf), with the `opentelemetry-proto` types and prost.

use bytes::Bytes;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span},
};
use prost::Message;

use super::record::{Attr, SpanRecord, Val};
use crate::{Config, otlp::Chunk};

/// OTLP `SpanFlags`: the parent's remoteness is known…
const HAS_IS_REMOTE: u32 = 0x100;
/// …and it is remote.
const IS_REMOTE: u32 = 0x200;

/// What every batch shares: the resource and the instrumentation scope.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    resource: Resource,
    scope: InstrumentationScope,
    /// `resource` as field 1 of `ResourceSpans`, encoded once.
    resource_bytes: Vec<u8>,
    /// `scope` as field 1 of `ScopeSpans`, encoded once.
    scope_bytes: Vec<u8>,
}

impl Envelope {
    /// The resource of `config` (`otlp::proto_resource`:
    /// `OTEL_RESOURCE_ATTRIBUTES`, then `telemetry.sdk.*`, then
    /// `service.name`, `service.version` and `deployment.environment.name`,
    /// a later key replacing an earlier one — the precedence the SDK
    /// applied).
    pub(crate) fn new(config: &Config) -> Self {
        let resource = crate::otlp::proto_resource(config);
        let scope = InstrumentationScope {
            name: "glimpse_obs".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
        };
        let mut resource_bytes = Vec::new();
        wire::bytes(&mut resource_bytes, 1, &resource.encode_to_vec());
        let mut scope_bytes = Vec::new();
        wire::bytes(&mut scope_bytes, 1, &scope.encode_to_vec());
        Self {
            resource,
            scope,
            resource_bytes,
            scope_bytes,
        }
    }

    /// One `ExportTraceServiceRequest` holding `records`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn request(&self, records: &[SpanRecord]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(self.scope.clone()),
                    spans: records.iter().map(span_of).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// `records` encoded as protobuf bytes (the body the shared OTLP
    /// transport takes).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn encode(&self, records: &[SpanRecord]) -> Bytes {
        Bytes::from(self.request(records).encode_to_vec())
    }
}

fn attrs_of(rec: &SpanRecord, attrs: &[Attr]) -> Vec<KeyValue> {
    attrs
        .iter()
        .map(|(k, v)| KeyValue {
            key: (*k).to_owned(),
            value: Some(AnyValue {
                value: Some(match v {
                    Val::I64(i) => any_value::Value::IntValue(*i),
                    Val::F64(f) => any_value::Value::DoubleValue(*f),
                    Val::Bool(b) => any_value::Value::BoolValue(*b),
                    other => any_value::Value::StringValue(
                        rec.str_of(other).unwrap_or_default().to_owned(),
                    ),
                }),
            }),
            key_strindex: 0,
        })
        .collect()
}

fn span_of(rec: &SpanRecord) -> Span {
    let parent = if rec.parent_span_id == opentelemetry::trace::SpanId::INVALID {
        Vec::new()
    } else {
        rec.parent_span_id.to_bytes().to_vec()
    };
    let remote = if rec.parent_is_remote { IS_REMOTE } else { 0 };
    Span {
        trace_id: rec.trace_id.to_bytes().to_vec(),
        span_id: rec.span_id.to_bytes().to_vec(),
        trace_state: rec.trace_state.clone(),
        parent_span_id: parent,
        flags: u32::from(rec.flags) | HAS_IS_REMOTE | remote,
        name: rec.text(&rec.name).to_owned(),
        kind: rec.kind as i32,
        start_time_unix_nano: rec.start,
        end_time_unix_nano: rec.end,
        // The attributes as recorded (already protobuf), read back.
        attributes: Span::decode(&rec.attrs[..])
            .map(|s| s.attributes)
            .unwrap_or_default(),
        dropped_attributes_count: 0,
        events: rec
            .events
            .iter()
            .map(|e| span::Event {
                time_unix_nano: e.time,
                name: rec.text(&e.name).to_owned(),
                attributes: attrs_of(rec, &e.attrs),
                dropped_attributes_count: 0,
            })
            .collect(),
        dropped_events_count: 0,
        links: rec
            .links
            .iter()
            .map(|l| span::Link {
                trace_id: l.trace_id.to_bytes().to_vec(),
                span_id: l.span_id.to_bytes().to_vec(),
                trace_state: l.trace_state.clone(),
                attributes: Vec::new(),
                dropped_attributes_count: 0,
                flags: u32::from(l.flags) | HAS_IS_REMOTE | IS_REMOTE,
            })
            .collect(),
        dropped_links_count: 0,
        status: (rec.status as i32 != 0 || rec.status_message.is_some()).then(|| Status {
            message: rec
                .status_message
                .as_ref()
                .map(|m| rec.text(m).to_owned())
                .unwrap_or_default(),
            code: rec.status as i32,
        }),
    }
}

/// The protobuf wire format written straight from [`SpanRecord`]s, without
/// building the `opentelemetry-proto` structs: those need an owned `String`
/// per attribute key and value and a `Vec` per ID, about 40 allocations for a
/// server span, on the export thread whose CPU the service pays too.
/// Hand-written because it was measured to pay: in `benches/layer.rs`
/// group `tracing` (two runs each, same session), exporting through
/// `Envelope::encode` (the prost structs) cost 5.7–6.0 µs per request over
/// tracing off, through this writer 3.0–3.4 µs (`docs/performance.md`,
/// "Tracing on versus off"). `encodes_what_prost_encodes` checks it against
/// prost, byte for byte, on every kind of value.
mod wire {
    use super::super::pb::{self, Any, enumeration, fixed32, fixed64, string};
    pub(super) use super::super::pb::{LEN, bytes, len_field, tag, varint};
    use super::{Attr, SpanRecord, Val};

    /// An event's attribute as `KeyValue` field `field`.
    fn attr(buf: &mut Vec<u8>, field: u32, rec: &SpanRecord, (key, val): &Attr) {
        let val = match val {
            Val::I64(i) => Any::I64(*i),
            Val::F64(f) => Any::F64(*f),
            Val::Bool(b) => Any::Bool(*b),
            other => Any::Str(rec.str_of(other).unwrap_or_default().as_bytes()),
        };
        pb::key_value(buf, field, key, val);
    }

    /// Append `field` = a nested message that `write` produces, through
    /// `scratch`.
    fn nested(
        buf: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        field: u32,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        scratch.clear();
        write(scratch);
        bytes(buf, field, scratch);
    }

    /// The length of `rec` as a `trace.v1.Span` when it has no events or
    /// links (the common case): what [`span_flat`] writes.
    pub(super) fn span_flat_len(rec: &SpanRecord) -> Option<usize> {
        if !rec.events.is_empty() || !rec.links.is_empty() {
            return None;
        }
        let opt = |field, len: usize| if len == 0 { 0 } else { len_field(field, len) };
        let name = rec.text(&rec.name).len();
        let status = status_len(rec);
        Some(
            18 + 10
                + opt(3, rec.trace_state.len())
                + if rec.parent_span_id == opentelemetry::trace::SpanId::INVALID {
                    0
                } else {
                    10
                }
                + opt(5, name)
                + if rec.kind as i32 == 0 { 0 } else { 2 }
                + if rec.start == 0 { 0 } else { 9 }
                + if rec.end == 0 { 0 } else { 9 }
                + rec.attrs.len()
                + status.map_or(0, |l| len_field(15, l))
                // Flags: a two-byte tag (field 16) and a fixed32.
                + 6,
        )
    }

    /// `rec`, which has no events or links, as a `trace.v1.Span`'s fields
    /// appended to `out` (no intermediate buffer).
    pub(super) fn span_flat(out: &mut Vec<u8>, rec: &SpanRecord) {
        head_fields(out, rec);
        tail_fields(out, rec);
    }

    /// Fields 1 to 9: IDs, state, parent, name, kind, times, attributes.
    fn head_fields(body: &mut Vec<u8>, rec: &SpanRecord) {
        let name = rec.text(&rec.name).as_bytes();
        // The common span (no `tracestate`, a short name, both times set):
        // its fixed fields assembled on the stack and copied at constant
        // sizes, instead of a tag, a length and a copy per field (about 100
        // instructions a span fewer, callgrind).
        if rec.trace_state.is_empty()
            && !name.is_empty()
            && name.len() < 0x80
            && rec.start != 0
            && rec.end != 0
        {
            let mut ids = [0u8; 38];
            ids[..2].copy_from_slice(&[1 << 3 | LEN, 16]);
            ids[2..18].copy_from_slice(&rec.trace_id.to_bytes());
            ids[18..20].copy_from_slice(&[2 << 3 | LEN, 8]);
            ids[20..28].copy_from_slice(&rec.span_id.to_bytes());
            if rec.parent_span_id == opentelemetry::trace::SpanId::INVALID {
                body.extend_from_slice(&ids[..28]);
            } else {
                ids[28..30].copy_from_slice(&[4 << 3 | LEN, 8]);
                ids[30..38].copy_from_slice(&rec.parent_span_id.to_bytes());
                body.extend_from_slice(&ids);
            }
            body.extend_from_slice(&[5 << 3 | LEN, name.len() as u8]);
            body.extend_from_slice(name);
            // Kind (never 0: `Kind` starts at 1), start and end.
            let mut times = [0u8; 20];
            times[..2].copy_from_slice(&[6 << 3, rec.kind as u8]);
            times[2] = 7 << 3 | pb::I64;
            times[3..11].copy_from_slice(&rec.start.to_le_bytes());
            times[11] = 8 << 3 | pb::I64;
            times[12..20].copy_from_slice(&rec.end.to_le_bytes());
            body.extend_from_slice(&times);
            body.extend_from_slice(&rec.attrs);
            return;
        }
        bytes(body, 1, &rec.trace_id.to_bytes());
        bytes(body, 2, &rec.span_id.to_bytes());
        string(body, 3, &rec.trace_state);
        if rec.parent_span_id != opentelemetry::trace::SpanId::INVALID {
            bytes(body, 4, &rec.parent_span_id.to_bytes());
        }
        string(body, 5, rec.text(&rec.name));
        enumeration(body, 6, rec.kind as i32);
        fixed64(body, 7, rec.start);
        fixed64(body, 8, rec.end);
        // Field 9, written as they were recorded.
        body.extend_from_slice(&rec.attrs);
    }

    /// The length of the `Status` message, when there is one.
    fn status_len(rec: &SpanRecord) -> Option<usize> {
        let message = rec.status_message.as_ref().map_or("", |t| rec.text(t));
        (rec.status as i32 != 0 || rec.status_message.is_some()).then(|| {
            (if message.is_empty() {
                0
            } else {
                len_field(2, message.len())
            }) + if rec.status as i32 == 0 { 0 } else { 2 }
        })
    }

    /// Fields 15 and 16: status and flags.
    fn tail_fields(body: &mut Vec<u8>, rec: &SpanRecord) {
        use super::{HAS_IS_REMOTE, IS_REMOTE};
        if let Some(len) = status_len(rec) {
            tag(body, 15, LEN);
            varint(body, len as u64);
            string(
                body,
                2,
                rec.status_message.as_ref().map_or("", |t| rec.text(t)),
            );
            enumeration(body, 3, rec.status as i32);
        }
        let remote = if rec.parent_is_remote { IS_REMOTE } else { 0 };
        fixed32(body, 16, u32::from(rec.flags) | HAS_IS_REMOTE | remote);
    }

    /// The fields of `trace.v1.Span` into `body` (cleared first).
    pub(super) fn span_body(body: &mut Vec<u8>, scratch: &mut Vec<u8>, rec: &SpanRecord) {
        use super::{HAS_IS_REMOTE, IS_REMOTE};
        body.clear();
        body.reserve(128 + rec.attrs.len());
        head_fields(body, rec);
        for e in &rec.events {
            nested(body, scratch, 11, |m| {
                fixed64(m, 1, e.time);
                string(m, 2, rec.text(&e.name));
                for a in &e.attrs {
                    attr(m, 3, rec, a);
                }
            });
        }
        for l in &rec.links {
            nested(body, scratch, 13, |m| {
                bytes(m, 1, &l.trace_id.to_bytes());
                bytes(m, 2, &l.span_id.to_bytes());
                string(m, 3, &l.trace_state);
                fixed32(m, 6, u32::from(l.flags) | HAS_IS_REMOTE | IS_REMOTE);
            });
        }
        tail_fields(body, rec);
    }
}

/// The fields of `rec` as a `trace.v1.Span` message into `body` (cleared
/// first), with `nested` as the buffer of its nested messages.
pub(crate) fn span_body(body: &mut Vec<u8>, nested: &mut Vec<u8>, rec: &SpanRecord) {
    wire::span_body(body, nested, rec);
}

/// The length of `rec` as a `trace.v1.Span` when it has no events or links
/// (the common case), for [`flat_spans_field`]; `None` otherwise (then
/// [`span_body`] and [`spans_field`]).
#[inline]
pub(crate) fn flat_len(rec: &SpanRecord) -> Option<usize> {
    wire::span_flat_len(rec)
}

/// `rec`, whose [`flat_len`] is `len`, as one of `ScopeSpans.spans` (field
/// 2) appended to `out`, straight from the record: no intermediate buffer.
#[inline]
pub(crate) fn flat_spans_field(out: &mut Vec<u8>, rec: &SpanRecord, len: usize) {
    out.reserve(1 + 10 + len);
    wire::tag(out, 2, wire::LEN);
    wire::varint(out, len as u64);
    let start = out.len();
    wire::span_flat(out, rec);
    debug_assert_eq!(out.len() - start, len, "span length");
}

/// A span's `body` as one of `ScopeSpans.spans` (field 2).
#[inline]
pub(crate) fn spans_field(out: &mut Vec<u8>, body: &[u8]) {
    wire::bytes(out, 2, body);
}

impl Envelope {
    /// The room a staged chunk keeps at its start for the request's framing
    /// (`ResourceSpans` and `ScopeSpans` tags and lengths, resource, scope).
    pub(crate) fn head_len(&self) -> usize {
        22 + self.resource_bytes.len() + self.scope_bytes.len()
    }

    /// One `ExportTraceServiceRequest` of the spans staged in `chunks`
    /// (each a [`spans_field`], behind [`Envelope::head_len`] bytes of
    /// room): the framing is written into the first chunk's room, so the
    /// spans are not copied (later chunks, when a batch holds more than
    /// one, are appended to the first).
    pub(crate) fn finish(&self, chunks: Vec<Chunk>) -> Bytes {
        let gap = self.head_len();
        let mut chunks = chunks.into_iter();
        let mut out = chunks.next().map(|c| c.bytes).unwrap_or_default();
        out.resize(out.len().max(gap), 0);
        for more in chunks {
            out.extend_from_slice(more.records(gap));
        }
        // ScopeSpans { scope = 1; spans = 2 }
        let scope_spans_len = self.scope_bytes.len() + (out.len() - gap);
        // ResourceSpans { resource = 1; scope_spans = 2 }, the request's field 1.
        let resource_spans_len = self.resource_bytes.len() + wire::len_field(2, scope_spans_len);
        let mut head = Vec::with_capacity(gap);
        wire::tag(&mut head, 1, wire::LEN);
        wire::varint(&mut head, resource_spans_len as u64);
        head.extend_from_slice(&self.resource_bytes);
        wire::tag(&mut head, 2, wire::LEN);
        wire::varint(&mut head, scope_spans_len as u64);
        head.extend_from_slice(&self.scope_bytes);
        let start = gap - head.len();
        out[start..gap].copy_from_slice(&head);
        Bytes::from(out).slice(start..)
    }

    /// `records` as the bytes of one `ExportTraceServiceRequest`, written by
    /// hand ([`wire`]) as the export path writes them; the same message as
    /// `encode`'s.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn encode_wire(&self, records: &[SpanRecord]) -> Bytes {
        let mut chunk = Chunk {
            bytes: vec![0; self.head_len()],
            count: records.len(),
        };
        let (mut body, mut nested) = (Vec::new(), Vec::new());
        for rec in records {
            if let Some(len) = flat_len(rec) {
                flat_spans_field(&mut chunk.bytes, rec, len);
            } else {
                span_body(&mut body, &mut nested, rec);
                spans_field(&mut chunk.bytes, &body);
            }
        }
        self.finish(vec![chunk])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::record::{Kind, StatusCode};
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode as Code;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::{Layer, Registry, layer::SubscriberExt, registry::LookupSpan};

    /// Builds records the way the light layer does, keeping them on close.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<SpanRecord>>>);

    impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            id: &tracing::span::Id,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut r = SpanRecord::start(attrs.metadata().name(), attrs.fields().len());
            r.record_attributes(attrs);
            ctx.span(id).unwrap().extensions_mut().insert(r);
        }
        fn on_record(
            &self,
            id: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let span = ctx.span(id).unwrap();
            span.extensions_mut()
                .get_mut::<SpanRecord>()
                .unwrap()
                .record(values);
        }
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if let Some(span) = ctx.event_span(event) {
                span.extensions_mut()
                    .get_mut::<SpanRecord>()
                    .unwrap()
                    .add_log_event(event);
            }
        }
        fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
            let span = ctx.span(&id).unwrap();
            let r = span.extensions_mut().remove::<SpanRecord>().unwrap();
            self.0.lock().unwrap().push(r);
        }
    }

    #[test]
    fn a_recorded_span_encodes_to_an_otlp_request_prost_decodes() {
        let recorder = Recorder::default();
        let subscriber = Registry::default().with(recorder.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                otel.name = "GET /users/{id}",
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                "http.request.method" = "GET",
                "http.response.status_code" = tracing::field::Empty,
                retries = 3u64,
                ratio = 0.5,
                cached = false,
            );
            span.record("http.response.status_code", 503);
            span.record("http.request.method", "POST");
            span.in_scope(|| tracing::error!(code = 7, "upstream failed"));
        });
        let mut records = recorder.0.lock().unwrap().clone();
        assert_eq!(records.len(), 1);
        let r = &mut records[0];
        assert_eq!(r.kind, Kind::Server);
        assert_eq!(
            r.status,
            StatusCode::Error,
            "an ERROR event sets the status"
        );
        assert_eq!(
            r.attr("http.request.method").as_deref(),
            Some("POST"),
            "replaced"
        );
        r.add_exception("panic", "boom", Some("at main"));
        r.trace_id = opentelemetry::trace::TraceId::from(7u128);
        r.span_id = opentelemetry::trace::SpanId::from(9u64);
        r.flags = 1;
        r.end = r.start + 1000;

        let env = Envelope::new(&Config::default().service("enc"));
        let bytes = env.encode(&records);
        let req = ExportTraceServiceRequest::decode(bytes).unwrap();
        let rs = &req.resource_spans[0];
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "glimpse_obs");
        let span = &ss.spans[0];
        assert_eq!(span.name, "GET /users/{id}");
        assert_eq!(span.kind, span::SpanKind::Server as i32);
        assert_eq!(span.trace_id, 7u128.to_be_bytes());
        assert_eq!(span.span_id, 9u64.to_be_bytes());
        assert!(span.parent_span_id.is_empty(), "a root");
        assert_eq!(span.flags & 0x1ff, 0x101);
        assert_eq!(span.status.as_ref().unwrap().code, Code::Error as i32);
        let attr = |k: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.clone()?.value)
        };
        assert_eq!(
            attr("http.response.status_code"),
            Some(any_value::Value::IntValue(503))
        );
        assert_eq!(attr("retries"), Some(any_value::Value::IntValue(3)));
        assert_eq!(attr("ratio"), Some(any_value::Value::DoubleValue(0.5)));
        assert_eq!(attr("cached"), Some(any_value::Value::BoolValue(false)));
        assert_eq!(attr("otel.kind"), None, "otel.* fields are not attributes");
        assert_eq!(span.events.len(), 2);
        assert_eq!(span.events[0].name, "upstream failed");
        assert!(span.events[0].attributes.iter().any(|kv| kv.key == "level"));
        assert_eq!(span.events[1].name, "exception");
        assert_eq!(span.events[1].attributes.len(), 3);
    }

    #[test]
    fn encodes_what_prost_encodes() {
        let recorder = Recorder::default();
        let subscriber = Registry::default().with(recorder.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                otel.kind = "client",
                otel.status_code = "error",
                otel.status_message = "upstream refused",
                empty = "",
                negative = -42i64,
                big = u64::MAX,
                huge = 1u64 << 40,
                pi = std::f64::consts::PI,
                yes = true,
                unicode = "Zürich ✓",
                debug = ?vec![1, 2],
                // Lengths of two varint bytes (value, AnyValue, KeyValue).
                long = "x".repeat(300).as_str(),
            );
            span.in_scope(|| {
                tracing::error!(reason = %"a\nb", "failed");
                tracing::info_span!("child", n = 1).in_scope(|| {});
            });
        });
        let mut records = recorder.0.lock().unwrap().clone();
        assert_eq!(records.len(), 2);
        for (i, r) in records.iter_mut().enumerate() {
            r.trace_id = opentelemetry::trace::TraceId::from(0xabc_u128 << 64 | 7);
            r.span_id = opentelemetry::trace::SpanId::from(i as u64 + 1);
            r.flags = 3;
            r.end = r.start + 12_345;
        }
        // The child span, before events and links are added to it below.
        let child = records[0].clone();
        assert!(flat_len(&child).is_some());
        records[0].parent_span_id = opentelemetry::trace::SpanId::from(99);
        records[0].parent_is_remote = true;
        records[0].trace_state = "congo=t61rcWkgMzE".to_owned();
        records[0].links.push(crate::trace::record::LinkRecord {
            trace_id: opentelemetry::trace::TraceId::from(5),
            span_id: opentelemetry::trace::SpanId::from(6),
            flags: 1,
            trace_state: String::new(),
        });
        records[0].add_exception("panic", "", None);
        // A span with neither events nor links (written straight into the
        // chunk) with every optional field set, and one with none.
        let mut flat = child;
        flat.status = crate::trace::record::StatusCode::Error;
        flat.status_message = Some(crate::trace::record::Text::Static("boom"));
        flat.trace_state = "a=b".to_owned();
        flat.parent_is_remote = true;
        flat.kind = crate::trace::record::Kind::Server;
        let mut bare = flat.clone();
        bare.parent_span_id = opentelemetry::trace::SpanId::INVALID;
        bare.attrs.clear();
        bare.status = crate::trace::record::StatusCode::Ok;
        // The stack-assembled head: with a parent, without one; a name too
        // long for it.
        let mut parented = flat.clone();
        parented.trace_state.clear();
        let mut root = bare.clone();
        root.trace_state.clear();
        let mut long_name = parented.clone();
        long_name.name = crate::trace::record::Text::Static(
            "a span name longer than one length byte holds, which the encoder \
             writes field by field instead of assembling it on the stack....",
        );
        assert!(long_name.text(&long_name.name).len() >= 0x80);
        records.extend([flat, bare, parented, root, long_name]);
        let config = Config::from_lookup(crate::test_util::env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "a=b",
        )]))
        .unwrap()
        .service("wire");
        let env = Envelope::new(&config);
        let by_hand = ExportTraceServiceRequest::decode(env.encode_wire(&records)).unwrap();
        assert_eq!(by_hand, env.request(&records));
        assert_eq!(
            env.encode_wire(&records),
            env.encode(&records),
            "byte for byte"
        );
        assert_eq!(
            ExportTraceServiceRequest::decode(env.encode_wire(&[])).unwrap(),
            env.request(&[])
        );
        // The attributes as a collector reads them (they are written as
        // recorded, so the prost path above reads the same bytes back).
        use any_value::Value as V;
        let span = by_hand.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .find(|s| s.name == "request")
            .unwrap();
        let attrs: Vec<(&str, Option<&V>)> = span
            .attributes
            .iter()
            .map(|kv| {
                (
                    kv.key.as_str(),
                    kv.value.as_ref().and_then(|v| v.value.as_ref()),
                )
            })
            .collect();
        let long = "x".repeat(300);
        assert_eq!(
            attrs,
            [
                ("empty", Some(&V::StringValue(String::new()))),
                ("negative", Some(&V::IntValue(-42))),
                ("big", Some(&V::StringValue(u64::MAX.to_string()))),
                ("huge", Some(&V::IntValue(1 << 40))),
                ("pi", Some(&V::DoubleValue(std::f64::consts::PI))),
                ("yes", Some(&V::BoolValue(true))),
                ("unicode", Some(&V::StringValue("Zürich ✓".to_owned()))),
                ("debug", Some(&V::StringValue("[1, 2]".to_owned()))),
                ("long", Some(&V::StringValue(long))),
            ]
        );
        assert_eq!((span.kind, span.name.as_str()), (3, "request"));
        let status = span.status.as_ref().unwrap();
        assert_eq!(
            (status.code, status.message.as_str()),
            (2, "upstream refused")
        );
    }

    #[test]
    fn a_flat_span_is_as_long_as_computed() {
        let mut rec = SpanRecord::start("request", 2);
        rec.trace_id = opentelemetry::trace::TraceId::from(1);
        rec.span_id = opentelemetry::trace::SpanId::from(2);
        rec.end = rec.start + 1;
        rec.flags = 1;
        for (status, message) in [
            (StatusCode::Unset, None),
            (
                StatusCode::Error,
                Some(crate::trace::record::Text::Static("x")),
            ),
        ] {
            rec.status = status;
            rec.status_message = message;
            let len = flat_len(&rec).unwrap();
            let mut out = Vec::new();
            wire::span_flat(&mut out, &rec);
            assert_eq!(out.len(), len);
        }
    }

    #[test]
    fn a_value_recorded_again_replaces_the_earlier_one() {
        let recorder = Recorder::default();
        let subscriber = Registry::default().with(recorder.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span =
                tracing::info_span!("request", status = tracing::field::Empty, user = "a", n = 1);
            span.record("status", 200);
            span.record("user", "someone much longer than before");
            span.record("status", 503);
            span.record("n", tracing::field::display("two"));
        });
        let records = recorder.0.lock().unwrap().clone();
        let r = &records[0];
        assert_eq!(r.attr("status").as_deref(), Some("503"));
        assert_eq!(
            r.attr("user").as_deref(),
            Some("someone much longer than before")
        );
        assert_eq!(r.attr("n").as_deref(), Some("two"));
        let keys = Span::decode(&r.attrs[..]).unwrap().attributes;
        assert_eq!(keys.len(), 3, "one value per key: {keys:?}");
    }

    #[test]
    fn resource_attributes_are_parsed_and_the_configuration_wins() {
        let config = Config::from_lookup(crate::test_util::env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "team=core, region=eu%2Dwest ,service.name=other",
        )]))
        .unwrap()
        .service("svc")
        .version("9.9.9");
        let env = Envelope::new(&config);
        let get = |key: &str| {
            env.resource
                .attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
        };
        assert_eq!(get("team").as_deref(), Some("core"));
        assert_eq!(get("region").as_deref(), Some("eu-west"));
        assert_eq!(get("service.name").as_deref(), Some("svc"));
        assert_eq!(get("service.version").as_deref(), Some("9.9.9"));
        assert!(get("deployment.environment.name").is_some());
    }
}

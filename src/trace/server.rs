//! The request attributes of the crate's server span, handed from the HTTP
//! layer to the trace layer as the span is created.
//!
//! Recording a span's creation fields goes through `tracing`'s visitor: a
//! dynamic call per field, the `otel.*` fields parsed, each key's length
//! found at run time. For the server span the HTTP layer knows every field
//! and its key beforehand, so when the crate exports spans it encodes the
//! attributes itself (keys known when compiled: their bytes are stores, not
//! copies) into a per-thread buffer, creates the span, and the trace layer,
//! recording that span, takes the buffer instead of visiting the fields:
//! about a third of what exporting the server span cost per request
//! (docs/performance.md). The span still carries every field, for the
//! pretty format and any other layer; a debug build checks on every server
//! span that the handed-over attributes are byte for byte the visited ones.

use std::{cell::RefCell, sync::Arc};

use super::{
    pb::{self, Any, SPAN_ATTRIBUTES},
    record::{Kind, SpanRecord, Text, key_bit},
};
use crate::ids::response::ResponseSource;

/// The fields the HTTP layer records on its server span when creating it
/// (`otel.name`, `otel.kind = "server"` and the attributes), and where the
/// span's response will be found.
pub(crate) struct ServerAttrs<'a> {
    /// `otel.name`.
    pub(crate) name: &'a str,
    /// `http.request.method`.
    pub(crate) method: &'a str,
    /// `http.request.method_original`.
    pub(crate) method_original: Option<&'a str>,
    /// `http.route`.
    pub(crate) route: Option<&'a str>,
    /// `url.path`.
    pub(crate) path: &'a str,
    /// `url.scheme`.
    pub(crate) scheme: &'a str,
    /// `network.protocol.version`.
    pub(crate) protocol: &'a str,
    /// `user_agent.original`.
    pub(crate) user_agent: Option<&'a str>,
    /// `glimpse.request_id`.
    pub(crate) request_id: &'a str,
    /// Where the trace layer reads the response when the span closes, when
    /// the HTTP layer hands it over rather than recording it on the span
    /// (`ids::response`).
    pub(crate) response: Option<Arc<dyn ResponseSource>>,
}

/// The attributes encoded for the server span this thread is creating.
#[derive(Default)]
struct Handoff {
    armed: bool,
    name: String,
    attrs: Vec<u8>,
    keys: u64,
    response: Option<Arc<dyn ResponseSource>>,
}

thread_local! {
    static HANDOFF: RefCell<Handoff> = RefCell::new(Handoff::default());
}

/// Disarms the hand-off when the span is created (or its creation
/// unwinds): nothing is left for another span of the thread to take.
struct Disarm;

impl Disarm {
    /// Disarm; whether the trace layer took the hand-off.
    fn taken(self) -> bool {
        let armed = HANDOFF
            .try_with(|h| h.try_borrow().is_ok_and(|h| h.armed))
            .unwrap_or(true);
        drop(self);
        !armed
    }
}

impl Drop for Disarm {
    fn drop(&mut self) {
        let _ = HANDOFF.try_with(|h| {
            if let Ok(mut h) = h.try_borrow_mut() {
                h.armed = false;
                h.response = None;
            }
        });
    }
}

/// Create the server span with `create`, handing `attrs` (the fields
/// `create` gives the span, and the response's source) to the crate's
/// trace layer, which takes them instead of visiting the span's fields.
/// Also says whether it took them: without that layer (or when it records
/// nothing) they are dropped unused, and the response source is to be
/// given another way.
pub(crate) fn create_with<T>(attrs: ServerAttrs<'_>, create: impl FnOnce() -> T) -> (T, bool) {
    let armed = HANDOFF
        .try_with(|h| h.try_borrow_mut().map(|mut h| h.arm(attrs)).is_ok())
        .unwrap_or(false);
    let disarm = armed.then_some(Disarm);
    let span = create();
    (span, disarm.is_some_and(Disarm::taken))
}

impl Handoff {
    fn arm(&mut self, a: ServerAttrs<'_>) {
        self.armed = true;
        self.response = a.response;
        self.name.clear();
        self.name.push_str(a.name);
        let out = &mut self.attrs;
        out.clear();
        // Keys, tags and lengths of the eight attributes fit in 200 bytes.
        out.reserve(
            200 + a.name.len()
                + a.path.len()
                + a.route.map_or(0, str::len)
                + a.user_agent.map_or(0, str::len)
                + a.request_id.len()
                + a.method_original.map_or(0, str::len),
        );
        let mut keys = 0;
        // In the order of the span's fields, as the visitor writes them.
        str_attr(out, &mut keys, "http.request.method", a.method);
        if let Some(original) = a.method_original {
            str_attr(out, &mut keys, "http.request.method_original", original);
        }
        if let Some(route) = a.route {
            str_attr(out, &mut keys, "http.route", route);
        }
        str_attr(out, &mut keys, "url.path", a.path);
        str_attr(out, &mut keys, "url.scheme", a.scheme);
        str_attr(out, &mut keys, "network.protocol.version", a.protocol);
        if let Some(agent) = a.user_agent {
            str_attr(out, &mut keys, "user_agent.original", agent);
        }
        str_attr(out, &mut keys, "glimpse.request_id", a.request_id);
        self.keys = keys;
    }
}

/// A string attribute whose key is known when compiled. Inlined, so the
/// key's length and bit are constants; when every length fits one byte (a
/// value of up to about 90 bytes) the tags, lengths and key are one copy of
/// a constant size from the stack, and the value one more: about a third
/// of the instructions of the general [`pb::key_value`] (callgrind,
/// docs/performance.md), which longer values take.
#[inline(always)]
fn str_attr(out: &mut Vec<u8>, keys: &mut u64, key: &'static str, value: &str) {
    const KEY_MAX: usize = 32;
    *keys |= key_bit(key);
    let (k, v) = (key.as_bytes(), value.as_bytes());
    let any_len = 2 + v.len();
    let kv_len = 2 + k.len() + 2 + any_len;
    if k.len() > KEY_MAX || kv_len >= 0x80 {
        return pb::key_value(out, SPAN_ATTRIBUTES, key, Any::Str(v));
    }
    // KeyValue { key = 1; value = 2 (AnyValue { string_value = 1 }) }.
    let mut head = [0u8; KEY_MAX + 8];
    head[0] = (SPAN_ATTRIBUTES << 3) as u8 | pb::LEN;
    head[1] = kv_len as u8;
    head[2] = 1 << 3 | pb::LEN;
    head[3] = k.len() as u8;
    head[4..4 + k.len()].copy_from_slice(k);
    let h = &mut head[4 + k.len()..];
    h[0] = 2 << 3 | pb::LEN;
    h[1] = any_len as u8;
    h[2] = 1 << 3 | pb::LEN;
    h[3] = v.len() as u8;
    out.extend_from_slice(&head[..8 + k.len()]);
    out.extend_from_slice(v);
}

/// Give `record` (just started, nothing recorded) the server span's name,
/// kind and attributes when the HTTP layer handed them over on this thread;
/// `false` when it did not (the fields are to be visited).
pub(super) fn take(record: &mut SpanRecord) -> bool {
    HANDOFF
        .try_with(|h| {
            let Ok(mut h) = h.try_borrow_mut() else {
                return false;
            };
            if !h.armed || !record.attrs.is_empty() {
                return false;
            }
            h.armed = false;
            // The encoded attributes become the record's; the record's
            // empty buffer the next hand-off's.
            std::mem::swap(&mut record.attrs, &mut h.attrs);
            record.attr_keys = h.keys;
            record.response = h.response.take();
            // The same for the name, which starts the record's (empty)
            // string buffer.
            if record.buf.is_empty() {
                std::mem::swap(&mut record.buf, &mut h.name);
                record.name = Text::Buf(0, record.buf.len() as u32);
            } else {
                let (a, b) = record.push_str(&h.name);
                record.name = Text::Buf(a, b);
            }
            record.kind = Kind::Server;
            true
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> ServerAttrs<'static> {
        ServerAttrs {
            name: "GET /users/{id}",
            method: "GET",
            method_original: None,
            route: Some("/users/{id}"),
            path: "/users/42",
            scheme: "http",
            protocol: "1.1",
            user_agent: Some("curl/8"),
            request_id: "req-1",
            response: None,
        }
    }

    #[test]
    fn a_record_takes_what_was_handed_over_while_its_span_was_created_and_only_then() {
        let (taken, was_taken) = create_with(attrs(), || {
            let mut record = SpanRecord::start("request", 0);
            assert!(take(&mut record));
            let mut again = SpanRecord::start("request", 0);
            assert!(!take(&mut again), "taken once");
            record
        });
        assert!(was_taken);
        assert_eq!(taken.text(&taken.name), "GET /users/{id}");
        assert_eq!(taken.kind, Kind::Server);
        for (key, want) in [
            ("http.request.method", "GET"),
            ("http.route", "/users/{id}"),
            ("url.path", "/users/42"),
            ("url.scheme", "http"),
            ("network.protocol.version", "1.1"),
            ("user_agent.original", "curl/8"),
            ("glimpse.request_id", "req-1"),
        ] {
            assert_eq!(taken.attr(key).as_deref(), Some(want), "{key}");
        }
        assert_eq!(taken.attr("http.request.method_original"), None);

        // After the span's creation nothing is left to take.
        let ((), was_taken) = create_with(attrs(), || ());
        assert!(!was_taken, "nothing took it");
        let mut later = SpanRecord::start("request", 0);
        assert!(!take(&mut later));
    }

    #[test]
    fn a_known_key_attribute_is_byte_for_byte_the_general_encoders_at_every_length() {
        let value = "v".repeat(300);
        for key in [
            "url.path",
            "network.protocol.version",
            "user_agent.original",
        ] {
            for n in 0..300 {
                let (mut fast, mut general, mut keys) = (Vec::new(), Vec::new(), 0);
                str_attr(&mut fast, &mut keys, key, &value[..n]);
                pb::key_value(
                    &mut general,
                    SPAN_ATTRIBUTES,
                    key,
                    Any::Str(&value.as_bytes()[..n]),
                );
                assert_eq!(fast, general, "{key}, {n} bytes");
                assert_eq!(keys, key_bit(key));
            }
        }
    }

    #[test]
    fn a_panic_while_creating_the_span_leaves_nothing_armed() {
        let caught = std::panic::catch_unwind(|| create_with(attrs(), || panic!("creating")));
        assert!(caught.is_err());
        let mut record = SpanRecord::start("request", 0);
        assert!(!take(&mut record));
    }
}

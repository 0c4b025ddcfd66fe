//! W3C Trace Context (`traceparent`, `tracestate`) and W3C Baggage: strict
//! parsing of incoming headers and formatting of outgoing ones.
//!
//! Written here rather than taken from `opentelemetry_sdk::propagation`
//! because the stock `TraceContextPropagator` (0.33) reads only the first
//! header value of each field, accepts short IDs (`00-abc-def-01`) and
//! trailing data after a version-00 header, and drops the whole `tracestate`
//! when any member fails `TraceState`'s own key check, which is stricter than
//! the spec's key grammar (it refuses `foo@@bar` or `t@` followed by 15
//! characters). The rules below follow the W3C Trace Context Level 2 and
//! Baggage recommendations, and the unit tests (with
//! `tests/w3c_trace_context.rs`) replay the cases of the W3C trace-context
//! test suite (`test/test.py`).

use std::{fmt::Write as _, sync::Arc};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{
    Context,
    baggage::{Baggage, BaggageExt, BaggageMetadata},
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
};

/// `traceparent`: version, trace ID, parent span ID, flags.
pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`: vendor-specific list of `key=value` members.
pub(crate) const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `baggage`: application-defined `key=value` members.
pub(crate) const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// Length of a version-00 `traceparent`.
const TRACEPARENT_LEN: usize = 55;
/// Longest `traceparent` considered: a future version may append fields after
/// the 55 known characters, but nothing legitimate needs kilobytes.
pub(crate) const MAX_TRACEPARENT_LEN: usize = 256;
/// At most 32 `tracestate` members; more makes the whole list invalid.
pub(crate) const MAX_TRACESTATE_MEMBERS: usize = 32;
/// Longest `tracestate` propagated (members joined by `,`, no OWS): the 512
/// characters the spec asks every vendor to carry. A longer list is cut at
/// member boundaries by [`truncate_tracestate`].
pub(crate) const MAX_TRACESTATE_LEN: usize = 512;
/// Members longer than this are the first to go when a `tracestate` is cut.
const LARGE_TRACESTATE_MEMBER: usize = 128;
/// The `trace-flags` bits of version 00: `sampled` (Level 1) and `random`
/// (Level 2). Other bits are set to 0 when propagating, as the spec asks.
const KNOWN_TRACE_FLAGS: u8 = 0x03;
/// At most 64 baggage members are kept.
pub(crate) const MAX_BAGGAGE_MEMBERS: usize = 64;
/// At most 8192 bytes of baggage members (as they appear in the header) are kept.
pub(crate) const MAX_BAGGAGE_BYTES: usize = 8192;
/// Baggage input past this many bytes is not even looked at.
const MAX_BAGGAGE_SCAN: usize = 64 * 1024;

/// The incoming `tracestate`, normalised (OWS and empty members removed), kept
/// in the context so that it propagates unchanged even where
/// [`TraceState`] would refuse a member.
#[derive(Debug, Clone)]
pub(crate) struct RawTraceState(pub(crate) Arc<str>);

/// What the incoming headers say about the caller's trace.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    /// The remote parent, when exactly one valid `traceparent` was sent.
    pub(crate) parent: Option<SpanContext>,
    /// The normalised `tracestate`, kept only with a valid parent.
    pub(crate) tracestate: Option<Arc<str>>,
    /// The accepted baggage members.
    pub(crate) baggage: Baggage,
}

impl Incoming {
    /// Read `traceparent`, `tracestate` and `baggage` from `headers`.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let mut incoming = Self::default();
        if let Some((trace_id, span_id, flags)) = single_traceparent(headers) {
            let raw = parse_tracestate(
                headers
                    .get_all(TRACESTATE)
                    .iter()
                    .map(HeaderValue::as_bytes),
            );
            let state = raw
                .as_ref()
                .map(|members| trace_state_of(members))
                .unwrap_or_default();
            incoming.parent = Some(SpanContext::new(trace_id, span_id, flags, true, state));
            incoming.tracestate = raw.map(|members| Arc::from(join_members(&members)));
        }
        incoming.baggage =
            parse_baggage(headers.get_all(BAGGAGE).iter().map(HeaderValue::as_bytes));
        incoming
    }

    /// A context holding the remote parent (if any) and the baggage (if any),
    /// built on an empty context: without a valid parent, spans started from
    /// it are new roots.
    pub(crate) fn into_context(self) -> Context {
        let mut cx = Context::new();
        if let Some(parent) = self.parent {
            cx = cx.with_remote_span_context(parent);
        }
        if let Some(raw) = self.tracestate {
            cx = cx.with_value(RawTraceState(raw));
        }
        if !self.baggage.is_empty() {
            cx = cx.with_baggage(self.baggage);
        }
        cx
    }
}

/// The only `traceparent` of `headers`, parsed; `None` when there is none,
/// more than one, or it is invalid.
fn single_traceparent(headers: &HeaderMap) -> Option<(TraceId, SpanId, TraceFlags)> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_traceparent(first.as_bytes())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn lower_hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Lowercase hex digits into a big-endian integer; `None` on any other byte.
fn lower_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (lower_hex_value(pair[0])? << 4) | lower_hex_value(pair[1])?;
    }
    Some(out)
}

/// Parse one `traceparent` value following the spec's versioning rules:
/// version 00 is exactly 55 characters; a higher version (but not `ff`) may
/// carry more fields after a `-`; IDs are lowercase hex and not all zero.
pub(crate) fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, TraceFlags)> {
    let v = trim_ows(value);
    if v.len() < TRACEPARENT_LEN || v.len() > MAX_TRACEPARENT_LEN {
        return None;
    }
    let [version] = lower_hex::<1>(&v[0..2])?;
    if version == 0xff || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    if v.len() > TRACEPARENT_LEN && (version == 0 || v[TRACEPARENT_LEN] != b'-') {
        return None;
    }
    let trace_id = TraceId::from_bytes(lower_hex::<16>(&v[3..35])?);
    let span_id = SpanId::from_bytes(lower_hex::<8>(&v[36..52])?);
    let [flags] = lower_hex::<1>(&v[53..55])?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    Some((
        trace_id,
        span_id,
        TraceFlags::new(flags & KNOWN_TRACE_FLAGS),
    ))
}

/// `traceparent` of a span context, version 00, with its `sampled` and
/// `random` flags.
pub(crate) fn format_traceparent(sc: &SpanContext) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; TRACEPARENT_LEN];
    buf[0] = b'0';
    buf[1] = b'0';
    buf[2] = b'-';
    let mut at = 3;
    for b in sc.trace_id().to_bytes() {
        buf[at] = HEX[usize::from(b >> 4)];
        buf[at + 1] = HEX[usize::from(b & 0xf)];
        at += 2;
    }
    buf[at] = b'-';
    at += 1;
    for b in sc.span_id().to_bytes() {
        buf[at] = HEX[usize::from(b >> 4)];
        buf[at + 1] = HEX[usize::from(b & 0xf)];
        at += 2;
    }
    buf[at] = b'-';
    buf[at + 1] = b'0';
    buf[at + 2] = HEX[usize::from(sc.trace_flags().to_u8() & KNOWN_TRACE_FLAGS)];
    // Every byte is an ASCII hex digit or '-': always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `keychar`: lowercase letter, digit, `_`, `-`, `*`, `/` or `@`.
fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
}

/// `key = ( lcalpha / DIGIT ) 0*255( keychar )`: 1 to 256 characters
/// starting with a lowercase letter or a digit. The spec's earlier
/// `tenant@system` form (tenant up to 241 characters, system up to 14) is a
/// subset of it; since the grammar was unified, `@` may appear anywhere after
/// the first character and any number of times (`foo@`, `foo@@bar`,
/// `t@vvvvvvvvvvvvvvv` are valid keys, `@foo` is not).
fn valid_tracestate_key(key: &[u8]) -> bool {
    match key {
        [first, rest @ ..] => {
            rest.len() < 256
                && (first.is_ascii_lowercase() || first.is_ascii_digit())
                && rest.iter().all(|&b| is_key_char(b))
        }
        [] => false,
    }
}

/// 1 to 256 printable ASCII characters except `,` and `=`, not ending in a space.
fn valid_tracestate_value(value: &[u8]) -> bool {
    (1..=256).contains(&value.len())
        && value
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && value.last() != Some(&b' ')
}

/// Combine every `tracestate` header value in order and validate the list.
/// Returns `None` when there is no member, or when the list is invalid as a
/// whole (a member that breaks the grammar, more than 32 members): the spec
/// lets a vendor discard a list it cannot parse rather than guess. A key
/// sent again is kept once, with its first (left-most, most recent) value:
/// the spec allows passing duplicates on or dropping them, and a list with a
/// duplicate is otherwise valid. A list longer than [`MAX_TRACESTATE_LEN`]
/// is cut by [`truncate_tracestate`].
///
/// Allocates only when a `tracestate` header is present.
pub(crate) fn parse_tracestate<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> Option<Vec<(&'a str, &'a str)>> {
    let mut members: Vec<(&str, &str)> = Vec::new();
    let mut count = 0usize;
    for value in values {
        for member in value.split(|&b| b == b',') {
            let member = trim_ows(member);
            if member.is_empty() {
                continue;
            }
            count += 1;
            if count > MAX_TRACESTATE_MEMBERS {
                return None;
            }
            let eq = member.iter().position(|&b| b == b'=')?;
            let (key, value) = (&member[..eq], &member[eq + 1..]);
            if !valid_tracestate_key(key) || !valid_tracestate_value(value) {
                return None;
            }
            // Both parts were checked to be ASCII.
            let key = std::str::from_utf8(key).ok()?;
            let value = std::str::from_utf8(value).ok()?;
            if !members.iter().any(|(k, _)| *k == key) {
                members.push((key, value));
            }
        }
    }
    truncate_tracestate(&mut members);
    (!members.is_empty()).then_some(members)
}

/// Length of `key=value`.
fn member_len((key, value): &(&str, &str)) -> usize {
    key.len() + 1 + value.len()
}

/// Length of the members joined with `,`.
fn joined_len(members: &[(&str, &str)]) -> usize {
    members.iter().map(member_len).sum::<usize>() + members.len().saturating_sub(1)
}

/// Cut `members` to at most [`MAX_TRACESTATE_LEN`] characters (joined with
/// `,`) the way the spec describes: whole members only, members longer than
/// 128 characters first (right-most first), then members from the end.
fn truncate_tracestate(members: &mut Vec<(&str, &str)>) {
    let mut len = joined_len(members);
    while len > MAX_TRACESTATE_LEN {
        let Some(last) = members.len().checked_sub(1) else {
            break;
        };
        let victim = members
            .iter()
            .rposition(|m| member_len(m) > LARGE_TRACESTATE_MEMBER)
            .unwrap_or(last);
        let removed = members.remove(victim);
        len = len - member_len(&removed) - usize::from(!members.is_empty());
    }
}

fn join_members(members: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(members.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The members as an OpenTelemetry [`TraceState`] (exported with the span).
/// Members that `TraceState` refuses although the spec allows them are left
/// out of the exported value only; propagation uses [`RawTraceState`].
fn trace_state_of(members: &[(&str, &str)]) -> TraceState {
    TraceState::from_key_value(members.iter().copied()).unwrap_or_else(|_| {
        let accepted: Vec<(&str, &str)> = members
            .iter()
            .copied()
            .filter(|kv| TraceState::from_key_value([*kv]).is_ok())
            .collect();
        TraceState::from_key_value(accepted).unwrap_or_default()
    })
}

/// The `tracestate` to send downstream for `cx`: the caller's, unchanged, or
/// the span context's own.
pub(crate) fn tracestate_header(cx: &Context) -> Option<HeaderValue> {
    if let Some(RawTraceState(raw)) = cx.get::<RawTraceState>() {
        return HeaderValue::from_str(raw).ok();
    }
    let header = cx.span().span_context().trace_state().header();
    if header.is_empty() {
        None
    } else {
        HeaderValue::from_str(&header).ok()
    }
}

/// RFC 7230 `tchar`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// W3C `baggage-octet`: printable ASCII except space, `"`, `,`, `;` and `\`.
fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

fn percent_decode(value: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if b == b'%' {
            let hi = value.get(i + 1).and_then(|&h| (h as char).to_digit(16))?;
            let lo = value.get(i + 2).and_then(|&l| (l as char).to_digit(16))?;
            // Two hex digits: at most 0xff.
            out.push(u8::try_from(hi * 16 + lo).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One baggage member: `key = value *( ; property )`, with OWS around the
/// separators. Returns the key, the decoded value and the properties as sent.
fn parse_baggage_member(member: &[u8]) -> Option<(&str, String, &str)> {
    let (head, properties) = match member.iter().position(|&b| b == b';') {
        Some(semi) => (&member[..semi], trim_ows(&member[semi + 1..])),
        None => (member, &[][..]),
    };
    let eq = head.iter().position(|&b| b == b'=')?;
    let key = trim_ows(&head[..eq]);
    let value = trim_ows(&head[eq + 1..]);
    if key.is_empty() || !key.iter().all(|&b| is_token_char(b)) {
        return None;
    }
    if !value.iter().all(|&b| is_baggage_octet(b)) {
        return None;
    }
    let valid_property = |p: &[u8]| {
        let p = trim_ows(p);
        let (k, v) = match p.iter().position(|&b| b == b'=') {
            Some(eq) => (trim_ows(&p[..eq]), Some(trim_ows(&p[eq + 1..]))),
            None => (p, None),
        };
        !k.is_empty()
            && k.iter().all(|&b| is_token_char(b))
            && v.is_none_or(|v| v.iter().all(|&b| is_baggage_octet(b)))
    };
    if !properties.is_empty() && !properties.split(|&b| b == b';').all(valid_property) {
        return None;
    }
    Some((
        std::str::from_utf8(key).ok()?,
        percent_decode(value)?,
        std::str::from_utf8(properties).ok()?,
    ))
}

/// Combine every `baggage` header value in order and keep the valid members,
/// first come first kept, up to 64 members and 8192 bytes (counted as they
/// appear in the header, with separating commas). A member that does not fit
/// ends the list: members are never cut, and none after it are taken, so the
/// kept list is always a prefix of the valid members. Invalid members are
/// skipped.
pub(crate) fn parse_baggage<'a>(values: impl Iterator<Item = &'a [u8]>) -> Baggage {
    let mut baggage = Baggage::new();
    let (mut kept, mut bytes, mut scanned) = (0usize, 0usize, 0usize);
    'headers: for value in values {
        for member in value.split(|&b| b == b',') {
            scanned += member.len() + 1;
            if scanned > MAX_BAGGAGE_SCAN {
                break 'headers;
            }
            let member = trim_ows(member);
            if member.is_empty() {
                continue;
            }
            let Some((key, value, properties)) = parse_baggage_member(member) else {
                continue;
            };
            let cost = member.len() + usize::from(kept > 0);
            if kept == MAX_BAGGAGE_MEMBERS || bytes + cost > MAX_BAGGAGE_BYTES {
                break 'headers;
            }
            baggage.insert_with_metadata(key.to_owned(), value, BaggageMetadata::from(properties));
            kept += 1;
            bytes += cost;
        }
    }
    baggage
}

/// `baggage` header for the members of `baggage`, values percent-encoded.
/// `None` when empty.
pub(crate) fn format_baggage(baggage: &Baggage) -> Option<HeaderValue> {
    if baggage.is_empty() {
        return None;
    }
    let mut out = String::new();
    let mut members = 0;
    for (key, (value, metadata)) in baggage {
        let key = key.as_str();
        if key.is_empty() || !key.bytes().all(is_token_char) {
            continue;
        }
        let mut member = String::with_capacity(key.len() + value.as_str().len() + 1);
        member.push_str(key);
        member.push('=');
        for b in value.as_str().bytes() {
            if is_baggage_octet(b) && b != b'%' {
                member.push(char::from(b));
            } else {
                let _ = write!(member, "%{b:02X}");
            }
        }
        let metadata = metadata.as_str().trim();
        if !metadata.is_empty()
            && metadata
                .bytes()
                .all(|b| b == b'=' || b == b';' || b == b' ' || b == b'\t' || is_baggage_octet(b))
        {
            member.push(';');
            member.push_str(metadata);
        }
        let cost = member.len() + usize::from(members > 0);
        if members == MAX_BAGGAGE_MEMBERS || out.len() + cost > MAX_BAGGAGE_BYTES {
            break;
        }
        if members > 0 {
            out.push(',');
        }
        out.push_str(&member);
        members += 1;
    }
    HeaderValue::from_str(&out).ok().filter(|_| members > 0)
}

/// Write `traceparent`, `tracestate` and `baggage` of `cx` into `headers`,
/// replacing any present. Writes nothing for a context without a valid span
/// (but still its baggage).
pub(crate) fn inject_context(cx: &Context, headers: &mut HeaderMap) {
    let span = cx.span();
    let sc = span.span_context();
    if sc.is_valid() {
        headers.insert(TRACEPARENT, format_traceparent(sc));
        match tracestate_header(cx) {
            Some(state) => {
                headers.insert(TRACESTATE, state);
            }
            None => {
                headers.remove(TRACESTATE);
            }
        }
    }
    if let Some(baggage) = format_baggage(cx.baggage()) {
        headers.insert(BAGGAGE, baggage);
    }
}

/// A hex string of `bytes`, for tests and messages.
#[cfg(test)]
fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::headers;

    const TRACE: &str = "12345678901234567890123456789012";
    const PARENT: &str = "1234567890123456";

    fn parent_of(pairs: &[(&str, &str)]) -> Option<String> {
        Incoming::from_headers(&headers(pairs))
            .parent
            .map(|sc| hex(&sc.trace_id().to_bytes()))
    }

    fn tracestate_of(pairs: &[(&str, &str)]) -> Option<String> {
        let mut all = vec![(
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-00",
        )];
        all.extend_from_slice(pairs);
        Incoming::from_headers(&headers(&all))
            .tracestate
            .map(|s| s.to_string())
    }

    #[test]
    fn a_valid_traceparent_gives_a_remote_sampled_parent() {
        let incoming = Incoming::from_headers(&headers(&[(
            "traceparent",
            &format!("00-{TRACE}-{PARENT}-01"),
        )]));
        let sc = incoming.parent.unwrap();
        assert_eq!(hex(&sc.trace_id().to_bytes()), TRACE);
        assert_eq!(hex(&sc.span_id().to_bytes()), PARENT);
        assert!(sc.is_sampled());
        assert!(sc.is_remote());
    }

    #[test]
    fn header_names_match_in_any_case() {
        for name in ["TraceParent", "TrAcEpArEnT", "TRACEPARENT"] {
            assert_eq!(
                parent_of(&[(name, &format!("00-{TRACE}-{PARENT}-01"))]).as_deref(),
                Some(TRACE)
            );
        }
        assert_eq!(
            parent_of(&[("trace-parent", &format!("00-{TRACE}-{PARENT}-01"))]),
            None
        );
    }

    #[test]
    fn two_traceparent_headers_start_a_new_trace_even_when_equal() {
        let one = format!("00-{TRACE}-{PARENT}-01");
        assert_eq!(
            parent_of(&[("traceparent", &one), ("traceparent", &one)]),
            None
        );
        assert_eq!(
            parent_of(&[
                (
                    "traceparent",
                    "00-12345678901234567890123456789011-1234567890123456-01"
                ),
                ("traceparent", &one)
            ]),
            None
        );
        // A proxy that folded both into one comma-separated value.
        assert_eq!(parent_of(&[("traceparent", &format!("{one},{one}"))]), None);
    }

    #[test]
    fn every_malformed_traceparent_of_the_w3c_suite_starts_a_new_trace() {
        let bad = [
            "00-12345678901234567890123456789012-1234567890123456-01.",
            "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
            "ff-12345678901234567890123456789012-1234567890123456-01",
            ".0-12345678901234567890123456789012-1234567890123456-01",
            "0.-12345678901234567890123456789012-1234567890123456-01",
            "000-12345678901234567890123456789012-1234567890123456-01",
            "0000-12345678901234567890123456789012-1234567890123456-01",
            "0-12345678901234567890123456789012-1234567890123456-01",
            "00-00000000000000000000000000000000-1234567890123456-01",
            "00-.2345678901234567890123456789012-1234567890123456-01",
            "00-1234567890123456789012345678901.-1234567890123456-01",
            "00-123456789012345678901234567890123-1234567890123456-01",
            "00-1234567890123456789012345678901-1234567890123456-01",
            "00-12345678901234567890123456789012-0000000000000000-01",
            "00-12345678901234567890123456789012-.234567890123456-01",
            "00-12345678901234567890123456789012-123456789012345.-01",
            "00-12345678901234567890123456789012-12345678901234567-01",
            "00-12345678901234567890123456789012-123456789012345-01",
            "00-12345678901234567890123456789012-1234567890123456-.0",
            "00-12345678901234567890123456789012-1234567890123456-0.",
            "00-12345678901234567890123456789012-1234567890123456-001",
            "00-12345678901234567890123456789012-1234567890123456-1",
            // Beyond the suite: uppercase hex, signs, empty, short IDs the
            // stock propagator accepts.
            "00-1234567890ABCDEF1234567890123456-1234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456-0A",
            "+0-12345678901234567890123456789012-1234567890123456-01",
            "00-abc-def-01",
            "",
        ];
        for value in bad {
            assert_eq!(
                parent_of(&[("traceparent", value)]),
                None,
                "{value:?} must be rejected"
            );
        }
    }

    #[test]
    fn future_versions_and_ows_are_accepted() {
        let good = [
            "cc-12345678901234567890123456789012-1234567890123456-01",
            "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            " 00-12345678901234567890123456789012-1234567890123456-01",
            "\t00-12345678901234567890123456789012-1234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456-01 ",
            "\t 00-12345678901234567890123456789012-1234567890123456-01 \t",
        ];
        for value in good {
            assert_eq!(
                parent_of(&[("traceparent", value)]).as_deref(),
                Some(TRACE),
                "{value:?}"
            );
        }
    }

    #[test]
    fn an_oversized_traceparent_starts_a_new_trace() {
        let long = format!("cc-{TRACE}-{PARENT}-01-{}", "x".repeat(MAX_TRACEPARENT_LEN));
        assert_eq!(parent_of(&[("traceparent", &long)]), None);
        let at_limit = format!(
            "cc-{TRACE}-{PARENT}-01-{}",
            "x".repeat(MAX_TRACEPARENT_LEN - 56)
        );
        assert_eq!(at_limit.len(), MAX_TRACEPARENT_LEN);
        assert_eq!(
            parent_of(&[("traceparent", &at_limit)]).as_deref(),
            Some(TRACE)
        );
    }

    #[test]
    fn only_the_sampled_and_random_flags_are_kept() {
        for (sent, kept) in [
            ("00", 0x00),
            ("01", 0x01),
            ("02", 0x02),
            ("03", 0x03),
            ("08", 0x00),
            ("09", 0x01),
            ("ff", 0x03),
        ] {
            let sc = Incoming::from_headers(&headers(&[(
                "traceparent",
                &format!("00-{TRACE}-{PARENT}-{sent}"),
            )]))
            .parent
            .unwrap();
            assert_eq!(sc.trace_flags(), TraceFlags::new(kept), "{sent}");
        }
    }

    #[test]
    fn the_random_flag_of_level_2_survives_parsing_and_formatting() {
        let cx = Incoming::from_headers(&headers(&[(
            "traceparent",
            &format!("00-{TRACE}-{PARENT}-02"),
        )]))
        .into_context();
        let mut out = HeaderMap::new();
        inject_context(&cx, &mut out);
        assert_eq!(out[TRACEPARENT], format!("00-{TRACE}-{PARENT}-02").as_str());
        let sc = SpanContext::new(
            TraceId::from_hex(TRACE).unwrap(),
            SpanId::from_hex(PARENT).unwrap(),
            TraceFlags::new(0xff),
            false,
            TraceState::default(),
        );
        assert_eq!(
            format_traceparent(&sc),
            format!("00-{TRACE}-{PARENT}-03").as_str(),
            "unknown flags are sent as 0"
        );
    }

    #[test]
    fn several_tracestate_headers_are_combined_in_order() {
        assert_eq!(
            tracestate_of(&[
                ("tracestate", "foo=1,bar=2"),
                ("tracestate", "rojo=1,congo=2"),
                ("tracestate", "baz=3")
            ])
            .as_deref(),
            Some("foo=1,bar=2,rojo=1,congo=2,baz=3")
        );
        assert_eq!(
            tracestate_of(&[("tracestate", "foo=1"), ("tracestate", "")]).as_deref(),
            Some("foo=1")
        );
        assert_eq!(
            tracestate_of(&[("tracestate", ""), ("tracestate", "foo=1")]).as_deref(),
            Some("foo=1")
        );
        assert_eq!(tracestate_of(&[("tracestate", "")]), None);
    }

    #[test]
    fn tracestate_ows_is_removed() {
        assert_eq!(
            tracestate_of(&[("tracestate", "foo=1 \t , \t bar=2, \t baz=3")]).as_deref(),
            Some("foo=1,bar=2,baz=3")
        );
        assert_eq!(
            tracestate_of(&[("tracestate", "foo=1\t \t,\t \tbar=2,\t \tbaz=3")]).as_deref(),
            Some("foo=1,bar=2,baz=3")
        );
        for v in [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"] {
            assert_eq!(
                tracestate_of(&[("tracestate", v)]).as_deref(),
                Some("foo=1"),
                "{v:?}"
            );
        }
    }

    #[test]
    fn invalid_tracestate_lists_are_discarded_whole() {
        let cases: &[&[&str]] = &[
            &["foo =1"],
            &["FOO=1"],
            &["foo.bar=1"],
            &["@foo=1,bar=2"],
            &["foo=bar=baz"],
            &["foo=,bar=3"],
            &["bar=1,nokey"],
            &["bar=1,=1"],
            &["bar=1", "foo=\t1"],
            &["foo=1", &format!("{}=1", "z".repeat(257))],
            &["foo=1", &format!("bar={}", "v".repeat(257))],
        ];
        for values in cases {
            let pairs: Vec<(&str, &str)> = values.iter().map(|v| ("tracestate", *v)).collect();
            assert_eq!(tracestate_of(&pairs), None, "{values:?}");
        }
    }

    #[test]
    fn a_duplicated_tracestate_key_is_kept_once_with_its_first_value() {
        let cases: &[(&[&str], &str)] = &[
            (&["foo=1,foo=1"], "foo=1"),
            (&["foo=1,foo=2"], "foo=1"),
            (&["foo=1", "foo=1"], "foo=1"),
            (&["foo=1", "foo=2"], "foo=1"),
            (&["foo=1,bar=2,foo=3,baz=4", "bar=5"], "foo=1,bar=2,baz=4"),
        ];
        for (values, kept) in cases {
            let pairs: Vec<(&str, &str)> = values.iter().map(|v| ("tracestate", *v)).collect();
            assert_eq!(tracestate_of(&pairs).as_deref(), Some(*kept), "{values:?}");
        }
    }

    #[test]
    fn tracestate_keys_with_at_signs_follow_the_spec_grammar() {
        for key in [
            "foo@",
            "foo@@bar",
            "foo@bar@baz",
            "tenant@vendor",
            "1tenant@vendor",
            "1special",
        ] {
            assert_eq!(
                tracestate_of(&[("tracestate", &format!("{key}=1,bar=2"))]).as_deref(),
                Some(&*format!("{key}=1,bar=2")),
                "{key}"
            );
        }
        assert_eq!(tracestate_of(&[("tracestate", "@foo=1,bar=2")]), None);
    }

    #[test]
    fn tracestate_keeps_32_members_and_discards_33() {
        let members = |n: usize| {
            (1..=n)
                .map(|i| format!("bar{i:02}={i:02}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let kept = tracestate_of(&[("tracestate", &members(32))]).unwrap();
        assert_eq!(kept.split(',').count(), 32);
        assert!(kept.starts_with("bar01=01,"));
        assert_eq!(tracestate_of(&[("tracestate", &members(33))]), None);
        // Split over several headers, as the suite does.
        let all = members(33);
        let (a, b) = all.split_at(all.find("bar20").unwrap());
        assert_eq!(
            tracestate_of(&[("tracestate", a.trim_end_matches(',')), ("tracestate", b)]),
            None
        );
    }

    #[test]
    fn tracestate_key_length_limits_follow_the_spec() {
        let with_foo = |key: String| {
            tracestate_of(&[("tracestate", "foo=1"), ("tracestate", &format!("{key}=1"))])
        };
        for key in [
            "z".repeat(256),
            format!("{}@{}", "t".repeat(241), "v".repeat(14)),
            format!("{}@v", "t".repeat(242)),
            format!("t@{}", "v".repeat(15)),
            format!("t@{}", "v".repeat(254)),
        ] {
            assert_eq!(
                with_foo(key.clone()).as_deref(),
                Some(&*format!("foo=1,{key}=1")),
                "{} characters",
                key.len()
            );
        }
        assert_eq!(with_foo("z".repeat(257)), None);
        assert_eq!(with_foo(format!("t@{}", "v".repeat(255))), None);
    }

    #[test]
    fn an_oversized_tracestate_drops_members_over_128_characters_first() {
        let big = |name: &str| format!("{name}={}", "x".repeat(150));
        let small: Vec<String> = (0..8).map(|i| format!("s{i}={}", "y".repeat(30))).collect();
        // 8 small members (33 characters each) around three big ones (153
        // each): 3 * 153 + 8 * 33 + 10 commas = 733 characters. Dropping the
        // right-most big ones until it fits keeps the left-most big one.
        let header = [
            big("b1"),
            small[..4].join(","),
            big("b2"),
            small[4..].join(","),
            big("b3"),
        ]
        .join(",");
        let kept = tracestate_of(&[("tracestate", &header)]).unwrap();
        assert_eq!(
            kept,
            [big("b1"), small.join(",")].join(","),
            "b3 and b2 go, b1 and every small member stay"
        );
        assert!(kept.len() <= MAX_TRACESTATE_LEN);
    }

    #[test]
    fn an_oversized_tracestate_of_small_members_is_cut_from_the_end() {
        // 20 members of 30 characters: 20 * 30 + 19 = 619 characters; 16
        // members (16 * 30 + 15 = 495) fit in 512.
        let members: Vec<String> = (0..20)
            .map(|i| format!("k{i:02}={}", "v".repeat(26)))
            .collect();
        let kept = tracestate_of(&[("tracestate", &members.join(","))]).unwrap();
        assert_eq!(kept, members[..16].join(","));
        // Exactly 512 characters is kept whole.
        let exact = format!("a={},b={}", "v".repeat(254), "w".repeat(253));
        assert_eq!(exact.len(), MAX_TRACESTATE_LEN);
        assert_eq!(
            tracestate_of(&[("tracestate", &exact)]).as_deref(),
            Some(&*exact)
        );
        // One over: the right-most member over 128 characters goes.
        let over = format!("a={},b={}", "v".repeat(254), "w".repeat(254));
        assert_eq!(
            tracestate_of(&[("tracestate", &over)]).as_deref(),
            Some(&*format!("a={}", "v".repeat(254)))
        );
    }

    #[test]
    fn tracestate_accepts_every_allowed_character() {
        let key: String = ('a'..='z').chain('0'..='9').chain("_-*/".chars()).collect();
        let value: String = (0x20u8..=0x7e)
            .filter(|b| *b != b',' && *b != b'=')
            .map(char::from)
            .collect();
        assert_eq!(
            tracestate_of(&[("tracestate", &format!("{key}={value}"))]).as_deref(),
            Some(&*format!("{key}={value}"))
        );
        let tenant = format!("{key}@a-z0-9_-*/");
        assert!(tracestate_of(&[("tracestate", &format!("{tenant}={value}"))]).is_some());
    }

    #[test]
    fn tracestate_without_a_valid_traceparent_is_ignored() {
        let incoming = Incoming::from_headers(&headers(&[("tracestate", "foo=1")]));
        assert!(incoming.parent.is_none());
        assert!(incoming.tracestate.is_none());
        let incoming = Incoming::from_headers(&headers(&[
            ("traceparent", "00-zz-yy-01"),
            ("tracestate", "foo=1"),
        ]));
        assert!(incoming.tracestate.is_none());
    }

    #[test]
    fn the_exported_trace_state_holds_what_opentelemetry_accepts() {
        let vendor15 = format!("t@{}", "v".repeat(15));
        let incoming = Incoming::from_headers(&headers(&[
            ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
            ("tracestate", &format!("foo=1,{vendor15}=2,a@@b=3,bar=4")),
        ]));
        assert_eq!(
            incoming.parent.unwrap().trace_state().header(),
            "foo=1,bar=4"
        );
        assert_eq!(
            incoming.tracestate.as_deref(),
            Some(&*format!("foo=1,{vendor15}=2,a@@b=3,bar=4"))
        );
    }

    fn baggage_of(values: &[&str]) -> Baggage {
        parse_baggage(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn baggage_members_are_decoded_with_properties() {
        let b =
            baggage_of(&["userId=alice, serverNode = DF%2028 ,isProduction=false;ttl=3;secret"]);
        assert_eq!(b.len(), 3);
        assert_eq!(b.get("userId").unwrap().as_str(), "alice");
        assert_eq!(b.get("serverNode").unwrap().as_str(), "DF 28");
        let (v, meta) = b.get_with_metadata("isProduction").unwrap();
        assert_eq!(v.as_str(), "false");
        assert_eq!(meta.as_str(), "ttl=3;secret");
    }

    #[test]
    fn several_baggage_headers_are_combined_and_bad_members_skipped() {
        let b = baggage_of(&["a=1,bad key=2", "b=%E2%9C%93,c=\"quoted\",d=%ZZ,e=5"]);
        let mut keys: Vec<_> = b.iter().map(|(k, _)| k.as_str().to_owned()).collect();
        keys.sort();
        assert_eq!(keys, ["a", "b", "e"]);
        assert_eq!(b.get("b").unwrap().as_str(), "\u{2713}");
    }

    #[test]
    fn baggage_keeps_at_most_64_members() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        let b = baggage_of(&[&many.join(",")]);
        assert_eq!(b.len(), MAX_BAGGAGE_MEMBERS);
        assert!(b.get("k63").is_some());
        assert!(b.get("k64").is_none());
    }

    #[test]
    fn baggage_keeps_at_most_8192_bytes_and_never_cuts_a_member() {
        // 9 members of 1000 bytes: 8 fit (8000 + 7 commas), the 9th would not.
        let members: Vec<String> = (0..9)
            .map(|i| format!("k{i}={}", "v".repeat(997)))
            .collect();
        assert_eq!(members[0].len(), 1000);
        let b = baggage_of(&[&members.join(",")]);
        assert_eq!(b.len(), 8);
        assert!(b.get("k8").is_none());
        assert!(b.iter().all(|(_, (v, _))| v.as_str().len() == 997));
        let header = format_baggage(&b).unwrap();
        assert!(header.len() <= MAX_BAGGAGE_BYTES);
    }

    #[test]
    fn a_huge_baggage_header_is_not_scanned_to_the_end() {
        let junk = format!("{},late=1", "x".repeat(MAX_BAGGAGE_SCAN * 2));
        let b = baggage_of(&[&junk]);
        assert!(b.is_empty());
    }

    #[test]
    fn baggage_round_trips_through_the_header() {
        let b = baggage_of(&["user=al%C3%AFce%2C%20x;p=1,plain=ok"]);
        let header = format_baggage(&b).unwrap();
        let again = baggage_of(&[header.to_str().unwrap()]);
        assert_eq!(again.get("user").unwrap().as_str(), "al\u{ef}ce, x");
        assert_eq!(again.get_with_metadata("user").unwrap().1.as_str(), "p=1");
        assert_eq!(again.get("plain").unwrap().as_str(), "ok");
    }

    #[test]
    fn traceparent_formatting_round_trips() {
        let sc = SpanContext::new(
            TraceId::from_hex(TRACE).unwrap(),
            SpanId::from_hex(PARENT).unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let v = format_traceparent(&sc);
        assert_eq!(v, format!("00-{TRACE}-{PARENT}-01").as_str());
        assert_eq!(parse_traceparent(v.as_bytes()).unwrap().0, sc.trace_id());
    }

    #[test]
    fn inject_writes_the_three_headers_of_a_context() {
        let incoming = Incoming::from_headers(&headers(&[
            ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
            ("tracestate", "foo=1"),
            ("tracestate", "bar=2"),
            ("baggage", "k=v"),
        ]));
        let cx = incoming.into_context();
        let mut out = HeaderMap::new();
        out.insert(TRACESTATE, HeaderValue::from_static("stale=1"));
        inject_context(&cx, &mut out);
        assert_eq!(out[TRACEPARENT], format!("00-{TRACE}-{PARENT}-01").as_str());
        assert_eq!(out[TRACESTATE], "foo=1,bar=2");
        assert_eq!(out[BAGGAGE], "k=v");
        assert_eq!(out.get_all(TRACESTATE).iter().count(), 1);
    }

    #[test]
    fn inject_of_an_empty_context_writes_nothing() {
        let mut out = HeaderMap::new();
        inject_context(&Context::new(), &mut out);
        assert!(out.is_empty());
    }
}

//! Protobuf wire-format primitives for the span pipeline: the span record
//! writes its attributes with them as they are recorded
//! ([`super::record`]), and the encoder the rest of the span and the
//! request's framing ([`super::encode`]). Byte for byte what prost writes
//! for the `opentelemetry-proto` messages (checked by `encode`'s tests).

use std::ops::Range;

pub(super) use crate::otlp::wire::{
    I32, I64, LEN, VARINT, bytes_field as bytes, len_field, length, put_varint, tag, varint,
    varint_len,
};

/// `Span.attributes`.
pub(super) const SPAN_ATTRIBUTES: u32 = 9;

/// A string field, left out when empty (proto3 default).
pub(super) fn string(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes(buf, field, s.as_bytes());
    }
}

pub(super) fn fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(buf, field, I64);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

pub(super) fn fixed32(buf: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        tag(buf, field, I32);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

pub(super) fn enumeration(buf: &mut Vec<u8>, field: u32, v: i32) {
    if v != 0 {
        tag(buf, field, VARINT);
        varint(buf, v as u64);
    }
}

/// An `AnyValue`'s one value.
#[derive(Debug, Clone, Copy)]
pub(super) enum Any<'a> {
    Str(&'a [u8]),
    I64(i64),
    F64(f64),
    Bool(bool),
}

/// `common.v1.KeyValue` { key = 1; value = 2 (AnyValue) } as field `field`
/// (< 16: a one-byte tag). The lengths are computed first and the room
/// reserved once: this runs for every attribute of every exported span
/// (docs/performance.md).
#[inline]
pub(super) fn key_value(buf: &mut Vec<u8>, field: u32, key: &str, val: Any<'_>) {
    key_value_inline(buf, field, key, val);
}

/// [`key_value`], always inlined: with a key known when compiled its
/// lengths fold to constants and its bytes are copied as such.
#[inline(always)]
pub(super) fn key_value_inline(buf: &mut Vec<u8>, field: u32, key: &str, val: Any<'_>) {
    debug_assert!(field < 16);
    let any_len = match val {
        Any::I64(i) => 1 + varint_len(i as u64),
        Any::F64(_) => 1 + 8,
        Any::Bool(_) => 2,
        Any::Str(s) => 1 + varint_len(s.len() as u64) + s.len(),
    };
    let key_len = if key.is_empty() {
        0
    } else {
        1 + varint_len(key.len() as u64) + key.len()
    };
    let kv_len = key_len + 1 + varint_len(any_len as u64) + any_len;
    buf.reserve(1 + varint_len(kv_len as u64) + kv_len);
    // The KeyValue's tag and length and the key's: one copy of a few bytes.
    let mut head = [0u8; 1 + 10 + 1 + 10];
    head[0] = (field << 3) as u8 | LEN;
    let mut n = 1;
    n = put_varint(&mut head, n, kv_len as u64);
    if !key.is_empty() {
        head[n] = 1 << 3 | LEN;
        n = put_varint(&mut head, n + 1, key.len() as u64);
    }
    buf.extend_from_slice(&head[..n]);
    buf.extend_from_slice(key.as_bytes());
    buf.push(2 << 3 | LEN);
    length(buf, any_len);
    match val {
        Any::I64(i) => {
            buf.push(3 << 3 | VARINT);
            varint(buf, i as u64);
        }
        Any::F64(f) => {
            buf.push(4 << 3 | I64);
            buf.extend_from_slice(&f.to_le_bytes());
        }
        Any::Bool(b) => {
            buf.push(2 << 3 | VARINT);
            buf.push(u8::from(b));
        }
        Any::Str(s) => {
            // Always written, even empty: an AnyValue with its oneof set.
            buf.push(1 << 3 | LEN);
            length(buf, s.len());
            buf.extend_from_slice(s);
        }
    }
}

fn read_varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The byte range of the `KeyValue` field whose key is `key` in `kvs`, a
/// run of `KeyValue` fields as [`key_value`] writes them.
pub(super) fn find_key(kvs: &[u8], key: &str) -> Option<Range<usize>> {
    let mut at = 0;
    while at < kvs.len() {
        let start = at;
        read_varint(kvs, &mut at)?;
        let len = usize::try_from(read_varint(kvs, &mut at)?).ok()?;
        let end = at.checked_add(len)?;
        let kv = kvs.get(at..end)?;
        // The key is the KeyValue's first field when set.
        let mut k = 0;
        let found = if kv.first() == Some(&(1 << 3 | LEN)) {
            k += 1;
            let klen = usize::try_from(read_varint(kv, &mut k)?).ok()?;
            kv.get(k..k + klen) == Some(key.as_bytes())
        } else {
            key.is_empty()
        };
        if found {
            return Some(start..end);
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_among_written_key_values_whatever_their_length() {
        let mut kvs = Vec::new();
        key_value(&mut kvs, SPAN_ATTRIBUTES, "a", Any::I64(-1));
        key_value(&mut kvs, SPAN_ATTRIBUTES, "long", Any::Str(&[b'x'; 300]));
        key_value(&mut kvs, SPAN_ATTRIBUTES, "b", Any::Bool(true));
        let first = find_key(&kvs, "a").unwrap();
        let long = find_key(&kvs, "long").unwrap();
        let last = find_key(&kvs, "b").unwrap();
        assert_eq!((first.start, first.end), (0, long.start));
        assert_eq!((long.end, last.end), (last.start, kvs.len()));
        assert!(find_key(&kvs, "c").is_none());
        assert!(find_key(&kvs, "").is_none());
    }
}

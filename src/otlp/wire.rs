//! Protobuf wire-format primitives the hand-written OTLP encoders share:
//! the span pipeline (`trace::pb`, `trace::encode`) and the log records
//! (`logging::export`). Byte for byte what prost writes (checked by those
//! modules' tests against the `opentelemetry-proto` types). What a field
//! does with its proto3 default (left out, or written) is the caller's.

/// Wire type of a varint field.
pub(crate) const VARINT: u8 = 0;
/// Wire type of a fixed 64-bit field.
pub(crate) const I64: u8 = 1;
/// Wire type of a length-delimited field.
pub(crate) const LEN: u8 = 2;
/// Wire type of a fixed 32-bit field.
pub(crate) const I32: u8 = 5;

/// Append `v` as a varint.
#[inline]
pub(crate) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Append a length: one push for the common short one.
#[inline(always)]
pub(crate) fn length(out: &mut Vec<u8>, v: usize) {
    if v < 0x80 {
        out.push(v as u8);
    } else {
        varint(out, v as u64);
    }
}

/// The bytes [`varint`] writes for `v`.
#[inline(always)]
pub(crate) const fn varint_len(v: u64) -> usize {
    // Lengths of attributes, records and spans are short: branches the
    // predictor learns beat the division for them.
    if v < 1 << 7 {
        1
    } else if v < 1 << 14 {
        2
    } else {
        // 1 byte per 7 bits.
        (64 - v.leading_zeros() as usize).div_ceil(7)
    }
}

/// Write `v` as a varint into `b` at `p`, which has room for it (up to 10
/// bytes); the position after it.
#[inline(always)]
pub(crate) fn put_varint(b: &mut [u8], mut p: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        b[p] = (v as u8) | 0x80;
        v >>= 7;
        p += 1;
    }
    b[p] = v as u8;
    p + 1
}

/// Append the tag of field `field` with wire type `wire`.
#[inline]
pub(crate) fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

/// Append the tag of length-delimited field `field` and the length `len`.
#[inline]
pub(crate) fn tag_len(out: &mut Vec<u8>, field: u32, len: usize) {
    tag(out, field, LEN);
    length(out, len);
}

/// Append length-delimited field `field` holding `bytes` (written even
/// when empty).
#[inline]
pub(crate) fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    tag_len(out, field, bytes.len());
    out.extend_from_slice(bytes);
}

/// The bytes of length-delimited field `field` holding `len` bytes.
#[inline]
pub(crate) fn len_field(field: u32, len: usize) -> usize {
    varint_len(u64::from(field << 3)) + varint_len(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_what_is_written() {
        for v in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut b = [0u8; 10];
            assert_eq!(put_varint(&mut b, 0, v), out.len());
            assert_eq!(&b[..out.len()], &out[..]);
            let mut l = Vec::new();
            length(&mut l, v as usize);
            assert_eq!(l, out);
        }
    }
}

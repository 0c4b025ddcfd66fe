//! Names and IDs every other module shares: the request ID, the targets and
//! names of the crate's own spans and events, and the trace IDs a span
//! carries in its extensions.
//!
//! This module is the bottom of the crate's layering (see
//! `docs/architecture.md`): it imports nothing from the crate, so
//! `logging`, `metrics`, `trace` and `http` can all agree on these without
//! importing each other.

pub(crate) mod panic;
pub(crate) mod random;
mod request_id;
pub(crate) mod response;

use opentelemetry::trace::{SpanId, TraceId};

pub use request_id::{RequestId, X_REQUEST_ID};

/// Name of the server span the tower layer opens for each request.
pub(crate) const REQUEST_SPAN_NAME: &str = "request";
/// Target of the server span the tower layer opens for each request.
pub(crate) const REQUEST_SPAN_TARGET: &str = "glimpse_obs::http";
/// Target of the access line, so a filter can tune it: `glimpse_obs::access=warn`.
pub const ACCESS_TARGET: &str = "glimpse_obs::access";
/// Label of the `route` of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// Status recorded for requests whose future was dropped before a response
/// (client gone, timeout): nginx's "client closed request".
pub const CANCELLED_STATUS: u16 = 499;

/// Path of the liveness probe (`health::live`), excluded from the tower
/// layer by default.
pub const LIVE_PATH: &str = "/health/live";
/// Path of the readiness probe (`health::ready`), excluded from the tower
/// layer by default.
pub const READY_PATH: &str = "/health/ready";

/// Whether `meta` is the server span of the tower layer; its fields are
/// OpenTelemetry attributes, already on the access line, so lines do not
/// repeat them.
pub(crate) fn is_request_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.name() == REQUEST_SPAN_NAME && meta.target() == REQUEST_SPAN_TARGET
}

/// Span extension: the trace and span ID of a span, those of its started
/// OpenTelemetry span when exporting, those the ID-only trace layer
/// assigned otherwise. Written by `trace`, read by `logging` (every line
/// carries them) and `http` (the response's `traceparent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanIds {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) sampled: bool,
    /// The W3C Level 2 `random` flag: the trace ID's right 56 bits are
    /// random. Set when the crate generated the trace ID, kept from the
    /// caller when continuing its trace.
    pub(crate) random: bool,
}

impl SpanIds {
    /// The trace ID in lowercase hex.
    pub(crate) fn trace_id_hex(&self) -> [u8; 32] {
        let id = u128::from_be_bytes(self.trace_id.to_bytes());
        let mut out = [0u8; 32];
        out[..16].copy_from_slice(&hex_u64((id >> 64) as u64));
        out[16..].copy_from_slice(&hex_u64(id as u64));
        out
    }

    /// The span ID in lowercase hex.
    pub(crate) fn span_id_hex(&self) -> [u8; 16] {
        hex_u64(u64::from_be_bytes(self.span_id.to_bytes()))
    }

    /// The W3C `traceparent` of this span:
    /// `00-{trace-id}-{parent-id}-{flags}`, lowercase hex.
    pub(crate) fn traceparent(&self) -> http::HeaderValue {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        out[3..35].copy_from_slice(&self.trace_id_hex());
        out[35] = b'-';
        out[36..52].copy_from_slice(&self.span_id_hex());
        let i = 52;
        out[i..].copy_from_slice(match (self.random, self.sampled) {
            (false, false) => b"-00",
            (false, true) => b"-01",
            (true, false) => b"-02",
            (true, true) => b"-03",
        });
        // Only ASCII hex digits and dashes: always a valid header value.
        http::HeaderValue::from_bytes(&out).unwrap_or_else(|_| http::HeaderValue::from_static(""))
    }
}

/// The 16 lowercase hex digits of `x`, all at once: each nibble spread to a
/// byte of its own (SWAR in a `u128`), then turned into its digit without a
/// table or a branch. Every request writes its IDs twice (the response's
/// `traceparent` and the access line); this took half the instructions of a
/// nibble-table loop there (`benches/layer.rs`, callgrind).
pub(crate) fn hex_u64(x: u64) -> [u8; 16] {
    let x = u128::from(x);
    let mut v = ((x & 0xFFFF_FFFF_0000_0000) << 32) | (x & 0xFFFF_FFFF);
    v = ((v & 0x0000_0000_FFFF_0000_0000_0000_FFFF_0000) << 16)
        | (v & 0x0000_0000_0000_FFFF_0000_0000_0000_FFFF);
    v = ((v & 0x0000_FF00_0000_FF00_0000_FF00_0000_FF00) << 8)
        | (v & 0x0000_00FF_0000_00FF_0000_00FF_0000_00FF);
    v = ((v & 0x00F0_00F0_00F0_00F0_00F0_00F0_00F0_00F0) << 4)
        | (v & 0x000F_000F_000F_000F_000F_000F_000F_000F);
    // One nibble a byte, most significant first: `0`–`9` from 0x30,
    // `a`–`f` 0x27 further (a byte holds at most 21 here: no carries).
    const ONES: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
    let letters = ((v + 6 * ONES) >> 4) & ONES;
    (v + 0x30 * ONES + 0x27 * letters).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_u64_writes_every_digit_in_lowercase() {
        for x in [
            0,
            1,
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
            u64::MAX,
            0x00f0_67aa_0ba9_02b7,
        ] {
            assert_eq!(hex_u64(x), *format!("{x:016x}").as_bytes(), "{x:#x}");
        }
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..1000 {
            x = x.rotate_left(7).wrapping_mul(0x2545_f491_4f6c_dd1d);
            assert_eq!(hex_u64(x), *format!("{x:016x}").as_bytes(), "{x:#x}");
        }
    }

    #[test]
    fn traceparent_is_the_w3c_form() {
        let ids = SpanIds {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            sampled: true,
            random: false,
        };
        assert_eq!(
            ids.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let random = SpanIds {
            random: true,
            ..ids
        };
        assert_eq!(
            random.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
        );
        let random_unsampled = SpanIds {
            sampled: false,
            ..random
        };
        assert!(
            random_unsampled
                .traceparent()
                .to_str()
                .unwrap()
                .ends_with("-02")
        );
        let unsampled = SpanIds {
            sampled: false,
            ..ids
        };
        assert_eq!(
            unsampled.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }
}

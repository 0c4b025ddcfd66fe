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
    /// The W3C `traceparent` of this span:
    /// `00-{trace-id}-{parent-id}-{flags}`, lowercase hex.
    pub(crate) fn traceparent(&self) -> http::HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        let mut i = 3;
        for b in self.trace_id.to_bytes() {
            out[i] = HEX[usize::from(b >> 4)];
            out[i + 1] = HEX[usize::from(b & 0xf)];
            i += 2;
        }
        out[i] = b'-';
        i += 1;
        for b in self.span_id.to_bytes() {
            out[i] = HEX[usize::from(b >> 4)];
            out[i + 1] = HEX[usize::from(b & 0xf)];
            i += 2;
        }
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

impl SpanIds {
    /// The IDs of a `traceparent` value this crate formatted
    /// ([`SpanIds::traceparent`]) when its sampled flag is set: how the
    /// tower layer learns a request's exemplar IDs without a registry
    /// look-up. `None` for an unsampled or malformed value.
    pub(crate) fn sampled_from_traceparent(tp: &[u8]) -> Option<SpanIds> {
        // The flags' last hex digit: bit 0 sampled, bit 1 random.
        let flags = match tp.get(54).map(|&c| (c as char).to_digit(16)) {
            Some(Some(f)) if tp.len() == 55 && f & 1 == 1 => f,
            _ => return None,
        };
        let hex = |s: &[u8]| -> Option<u128> {
            s.iter().try_fold(0u128, |acc, &c| {
                let d = (c as char).to_digit(16)?;
                Some((acc << 4) | u128::from(d))
            })
        };
        let trace = hex(&tp[3..35])?;
        let span = u64::try_from(hex(&tp[36..52])?).ok()?;
        Some(SpanIds {
            trace_id: TraceId::from(trace),
            span_id: SpanId::from(span),
            sampled: true,
            random: flags & 2 == 2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            SpanIds::sampled_from_traceparent(ids.traceparent().as_bytes()),
            Some(ids)
        );
        assert_eq!(
            SpanIds::sampled_from_traceparent(unsampled.traceparent().as_bytes()),
            None
        );
    }
}

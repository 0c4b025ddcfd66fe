//! The OTLP export of span records: the shared bounded batch queue
//! ([`crate::otlp::Batcher`]) that request threads push closed, sampled
//! spans to without blocking, its worker on the private export runtime
//! encoding each batch as one `ExportTraceServiceRequest`
//! ([`super::encode`]) and sending it with the shared
//! [`crate::otlp::Transport`] (gRPC or http/protobuf, headers, gzip, TLS,
//! timeout).
//!
//! Every span dropped for lack of room (`OTEL_BSP_MAX_QUEUE_SIZE`), after
//! shutdown, or lost in a failed export is counted in
//! `glimpse_obs_dropped_total{signal="spans"}`; a dead collector costs a
//! request nothing but the push.

use super::record::SpanRecord;

/// Where closed, sampled span records go.
pub(crate) type SpanExport = crate::otlp::Batcher<SpanRecord>;

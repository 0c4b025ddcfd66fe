//! The OTLP export of span records. A closed, sampled span is encoded as a
//! protobuf `Span` on the thread that closes it and appended to one shared
//! buffer ([`crate::otlp::Staging`]); a buffer holding
//! `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` spans goes to the bounded batch queue
//! ([`crate::otlp::Batcher`]) as one chunk, and the queue's worker on the
//! private export runtime also takes the partly filled buffer on its
//! schedule, at flush and at shutdown. The worker writes the request's
//! framing (resource, scope) into the room left at the buffer's start
//! ([`super::encode::Envelope::finish`]) and sends it with the shared
//! [`crate::otlp::Transport`] (gRPC or http/protobuf, headers, gzip, TLS,
//! timeout): no copy of the batch, no per-span allocation or channel send,
//! and the record's memory never leaves the thread that made it.
//!
//! Every span dropped for lack of room (`OTEL_BSP_MAX_QUEUE_SIZE`, counted
//! a chunk at a time), after shutdown, or lost in a failed export is
//! counted in `glimpse_obs_dropped_total{signal="spans"}`; a dead collector
//! costs a request nothing but the encoding and the append.

use std::{cell::RefCell, sync::Arc, time::Duration};

use super::{encode::Envelope, record::SpanRecord};
use crate::{
    Error,
    config::BatchSettings,
    otlp::{Batcher, Chunk, ExportRuntime, Staging, Transport},
};

/// The drop counter's `signal` label.
const DROP_LABEL: &str = "spans";

/// Where closed, sampled span records go.
pub(crate) struct SpanExport {
    staging: Arc<Staging>,
    batcher: Batcher<Chunk>,
}

impl std::fmt::Debug for SpanExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanExport")
            .field("batcher", &self.batcher)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// The encoding buffers of this thread: a span's body, and a nested
    /// message's (events, links, status).
    static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> =
        RefCell::new((Vec::with_capacity(1024), Vec::with_capacity(256)));
}

impl SpanExport {
    /// The span export with `settings` (`OTEL_BSP_*`), sending through
    /// `transport` on `runtime`, every request framed by `envelope`.
    pub(crate) fn new(
        settings: BatchSettings,
        transport: Transport,
        runtime: &ExportRuntime,
        envelope: Envelope,
    ) -> Self {
        let batch = settings
            .max_export_batch_size
            .clamp(1, settings.max_queue_size.max(1));
        let staging = Arc::new(Staging::new(batch, envelope.head_len()));
        // The queue holds chunks of `batch` spans: as many as make
        // `max_queue_size` spans (the chunk being filled comes on top), one
        // chunk per export.
        let chunks = BatchSettings {
            max_queue_size: settings.max_queue_size.max(1).div_ceil(batch),
            max_export_batch_size: 1,
            ..settings
        };
        let refill = Arc::clone(&staging);
        let batcher = Batcher::weighted(
            chunks,
            transport,
            runtime,
            DROP_LABEL,
            move |chunks: Vec<Chunk>| envelope.finish(chunks),
            |chunk| chunk.count,
            Some(Box::new(move || refill.take())),
        );
        Self { staging, batcher }
    }

    /// Encode `record` and stage it for export. Never blocks on the
    /// collector: a full queue drops (and counts) a chunk of spans.
    pub(crate) fn push(&self, record: &SpanRecord) {
        if self.batcher.is_closed() {
            self.batcher.count_dropped(1);
            return;
        }
        // Most spans have no events or links: written into the chunk as
        // they are, no intermediate buffer.
        let full = match super::encode::flat_len(record) {
            Some(len) => self
                .staging
                .push(|out| super::encode::flat_spans_field(out, record, len)),
            None => self.push_nested(record),
        };
        if let Some(full) = full {
            // Dropped and counted when the queue is full.
            let _ = self.batcher.push(full);
        }
    }

    /// A span with events or links, through this thread's buffers.
    fn push_nested(&self, record: &SpanRecord) -> Option<Chunk> {
        SCRATCH.with(|scratch| {
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                // Re-entered (a span closed while this thread encodes):
                // buffers of its own.
                let (mut body, mut nested) = (Vec::new(), Vec::new());
                super::encode::span_body(&mut body, &mut nested, record);
                return self.stage(&body);
            };
            let (body, nested) = &mut *scratch;
            super::encode::span_body(body, nested, record);
            self.stage(body)
        })
    }

    fn stage(&self, body: &[u8]) -> Option<Chunk> {
        self.staging
            .push(|out| super::encode::spans_field(out, body))
    }

    /// Export what is staged and queued, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Batcher::force_flush`].
    pub(crate) fn force_flush(&self, timeout: Duration) -> Result<(), Error> {
        self.batcher.force_flush(timeout)
    }

    /// Stop taking spans, export what is queued within `timeout` (the rest
    /// is counted as dropped).
    ///
    /// # Errors
    /// As [`Batcher::shutdown`].
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let result = self.batcher.shutdown(timeout);
        // Spans staged too late for the last export (or left when it ran
        // out of time) are lost.
        if let Some(left) = self.staging.take() {
            self.batcher.count_dropped(left.count);
        }
        result
    }

    /// Spans dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.batcher.dropped()
    }
}

//! The OTLP export path: the SDK's batch processor behind a bounded gate that
//! counts what it drops, exporting through a private Tokio runtime.
//!
//! Why a private runtime: the SDK's `BatchSpanProcessor` runs its own thread
//! and drives each export with `futures_executor::block_on`. tonic and async
//! reqwest need a Tokio reactor there ("there is no reactor running"), and a
//! blocking reqwest client panics when it is built or dropped inside the
//! application's runtime. Handing every export to a one-thread runtime owned
//! by `glimpse_obs` works the same whether the application runs a
//! multi-thread runtime, a current-thread runtime or none, never borrows the
//! application's threads, and lets shutdown cancel a stuck export by stopping
//! that runtime.
//!
//! Why a gate: the SDK processor counts the spans it drops when its queue is
//! full only in a private field (reported through its internal logs at
//! shutdown). The gate admits at most `max_queue_size` spans that the exporter
//! has not yet taken, so the SDK queue never overflows and every span dropped
//! for lack of room, or lost in a failed export, is counted in
//! `glimpse_obs_dropped_total{signal="spans"}`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use opentelemetry::Context;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{BatchConfigBuilder, BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor},
};
use tokio::runtime::Handle;

pub(crate) use crate::config::BatchSettings;

/// Counts spans between "ended" and "taken by the exporter", and those dropped.
#[derive(Debug)]
pub(crate) struct Gate {
    pending: AtomicUsize,
    capacity: usize,
    closed: AtomicBool,
    timed_out: AtomicBool,
    dropped: AtomicU64,
}

impl Gate {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            pending: AtomicUsize::new(0),
            capacity,
            closed: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    /// Reserve room for one span; `false` (and the span counted as dropped)
    /// when the queue is full or export has shut down.
    fn admit(&self) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            self.drop_spans(1);
            return false;
        }
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.drop_spans(1);
            return false;
        }
        true
    }

    /// `n` spans left the queue for the exporter.
    fn taken(&self, n: usize) {
        // Saturating: a span admitted before a concurrent shutdown may be
        // counted by `abandon` and taken afterwards.
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(n))
            });
    }

    pub(crate) fn drop_spans(&self, n: usize) {
        let n = n as u64;
        self.dropped.fetch_add(n, Ordering::Relaxed);
        // Looked up per drop, not cached at construction: the pipeline is
        // built before `init` installs the metrics recorder.
        ::metrics::counter!(
            crate::names::DROPPED,
            crate::names::labels::SIGNAL => "spans"
        )
        .increment(n);
    }

    /// Stop admitting spans.
    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// After a shutdown that ran out of time: whatever is still queued is lost.
    pub(crate) fn abandon(&self) {
        self.close();
        let left = self.pending.swap(0, Ordering::AcqRel);
        if left > 0 {
            self.drop_spans(left);
        }
    }

    /// Whether the last flush or shutdown of the processor ran out of time
    /// (the provider reports it only as text).
    pub(crate) fn take_timed_out(&self) -> bool {
        self.timed_out.swap(false, Ordering::AcqRel)
    }

    fn note(&self, result: OTelSdkResult) -> OTelSdkResult {
        if matches!(result, Err(OTelSdkError::Timeout(_))) {
            self.timed_out.store(true, Ordering::Release);
        }
        result
    }

    /// Spans dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The SDK batch processor behind the [`Gate`].
#[derive(Debug)]
pub(crate) struct GatedProcessor {
    inner: BatchSpanProcessor,
    gate: Arc<Gate>,
}

impl GatedProcessor {
    pub(crate) fn new<E>(exporter: E, settings: BatchSettings, gate: Arc<Gate>) -> Self
    where
        E: SpanExporter + 'static,
    {
        // Every value is set in code, so the SDK's own (lenient) reading of
        // the same variables cannot disagree with ours.
        let config = BatchConfigBuilder::default()
            .with_max_queue_size(settings.max_queue_size)
            .with_scheduled_delay(settings.scheduled_delay)
            .with_max_export_batch_size(settings.max_export_batch_size)
            .build();
        Self {
            inner: BatchSpanProcessor::builder(exporter)
                .with_batch_config(config)
                .build(),
            gate,
        }
    }
}

impl SpanProcessor for GatedProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        // Recorded but unsampled spans are not exported (specification).
        if !span.span_context.is_sampled() {
            return;
        }
        if self.gate.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.gate.note(self.inner.force_flush())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.gate.close();
        self.gate.note(self.inner.shutdown_with_timeout(timeout))
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Runs each export of `E` on the private runtime, bounded by the export
/// timeout; a failed or timed-out batch counts as dropped.
#[derive(Debug)]
pub(crate) struct RuntimeExporter<E> {
    inner: Arc<E>,
    handle: Handle,
    timeout: Duration,
    gate: Arc<Gate>,
}

impl<E> RuntimeExporter<E> {
    pub(crate) fn new(inner: E, handle: Handle, timeout: Duration, gate: Arc<Gate>) -> Self {
        Self {
            inner: Arc::new(inner),
            handle,
            timeout,
            gate,
        }
    }
}

impl<E> SpanExporter for RuntimeExporter<E>
where
    E: SpanExporter + 'static,
{
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        self.gate.taken(n);
        let inner = Arc::clone(&self.inner);
        let timeout = self.timeout;
        let task = self.handle.spawn(async move {
            tokio::time::timeout(timeout, inner.export(batch))
                .await
                .unwrap_or(Err(OTelSdkError::Timeout(timeout)))
        });
        // A stopped runtime cancels the task: the batch is lost, not stuck.
        let result = task.await.unwrap_or_else(|e| {
            Err(OTelSdkError::InternalFailure(format!(
                "export cancelled: {e}"
            )))
        });
        if result.is_err() {
            self.gate.drop_spans(n);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called while the provider is built, before any export holds a clone.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::env;

    #[test]
    fn batch_settings_default_to_the_specification() {
        assert_eq!(
            BatchSettings::from_lookup(env(&[])).unwrap(),
            BatchSettings::default()
        );
    }

    #[test]
    fn batch_settings_read_the_otel_bsp_variables() {
        let s = BatchSettings::from_lookup(env(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "2000"),
        ]))
        .unwrap();
        assert_eq!(s.max_queue_size, 100);
        assert_eq!(s.scheduled_delay, Duration::from_millis(250));
        assert_eq!(
            s.max_export_batch_size, 100,
            "a batch never exceeds the queue"
        );
        assert_eq!(s.export_timeout, Duration::from_secs(2));
    }

    #[test]
    fn an_invalid_otel_bsp_value_is_an_error_naming_it() {
        for (name, value) in [
            ("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
            ("OTEL_BSP_SCHEDULE_DELAY", "-1"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "5s"),
        ] {
            let msg = BatchSettings::from_lookup(env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(name) && msg.contains(value), "{msg}");
        }
    }

    #[test]
    fn the_gate_admits_up_to_its_capacity_and_counts_the_rest() {
        let gate = Gate::new(2);
        assert!(gate.admit());
        assert!(gate.admit());
        assert!(!gate.admit());
        assert_eq!(gate.dropped(), 1);
        gate.taken(2);
        assert!(gate.admit());
        gate.abandon();
        assert_eq!(
            gate.dropped(),
            2,
            "the queued span is lost at an abandoned shutdown"
        );
        assert!(!gate.admit(), "nothing is admitted after shutdown");
        assert_eq!(gate.dropped(), 3);
    }
}

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
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use opentelemetry::Context;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{BatchConfigBuilder, BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor},
};
use tokio::runtime::Handle;

use super::record::{SpanRecord, StatusCode as RecStatus, Val};
use crate::{Error, OtlpProtocol};

/// Where closed, sampled span records go: the bounded export queue.
#[derive(Debug)]
pub(crate) struct SpanExport {
    processor: GatedProcessor,
    scope: opentelemetry::InstrumentationScope,
}

impl SpanExport {
    pub(crate) fn new(processor: GatedProcessor) -> Self {
        Self {
            processor,
            scope: opentelemetry::InstrumentationScope::builder("glimpse_obs")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        }
    }

    /// Queue `record` for export; never blocks (a full queue drops it and
    /// counts it).
    pub(crate) fn push(&self, record: SpanRecord) {
        self.processor.on_end(self.span_data(record));
    }

    pub(crate) fn processor(&self) -> &GatedProcessor {
        &self.processor
    }

    fn span_data(&self, r: SpanRecord) -> SpanData {
        use opentelemetry::{
            KeyValue,
            trace::{Event, Link, SpanContext, SpanKind, Status, TraceFlags, TraceState},
        };
        use std::{str::FromStr, time::UNIX_EPOCH};
        let kv = |attrs: &[(&'static str, Val)]| -> Vec<KeyValue> {
            attrs
                .iter()
                .map(|(k, v)| match v {
                    Val::I64(i) => KeyValue::new(*k, *i),
                    Val::F64(f) => KeyValue::new(*k, *f),
                    Val::Bool(b) => KeyValue::new(*k, *b),
                    other => KeyValue::new(*k, r.str_of(other).unwrap_or_default().to_owned()),
                })
                .collect()
        };
        let time = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
        let state = TraceState::from_str(&r.trace_state).unwrap_or_default();
        SpanData {
            span_context: SpanContext::new(
                r.trace_id,
                r.span_id,
                TraceFlags::new(r.flags),
                false,
                state,
            ),
            parent_span_id: r.parent_span_id,
            parent_span_is_remote: r.parent_is_remote,
            span_kind: match r.kind {
                super::record::Kind::Internal => SpanKind::Internal,
                super::record::Kind::Server => SpanKind::Server,
                super::record::Kind::Client => SpanKind::Client,
                super::record::Kind::Producer => SpanKind::Producer,
                super::record::Kind::Consumer => SpanKind::Consumer,
            },
            name: r.text(&r.name).to_owned().into(),
            start_time: time(r.start),
            end_time: time(r.end),
            attributes: kv(&r.attrs),
            dropped_attributes_count: 0,
            events: {
                let mut events = opentelemetry_sdk::trace::SpanEvents::default();
                events.events = r
                    .events
                    .iter()
                    .map(|e| Event::new(r.text(&e.name).to_owned(), time(e.time), kv(&e.attrs), 0))
                    .collect();
                events
            },
            links: {
                let mut links = opentelemetry_sdk::trace::SpanLinks::default();
                links.links = r
                    .links
                    .iter()
                    .map(|l| {
                        Link::new(
                            SpanContext::new(
                                l.trace_id,
                                l.span_id,
                                TraceFlags::new(l.flags),
                                true,
                                TraceState::from_str(&l.trace_state).unwrap_or_default(),
                            ),
                            Vec::new(),
                            0,
                        )
                    })
                    .collect();
                links
            },
            status: match r.status {
                RecStatus::Unset => Status::Unset,
                RecStatus::Ok => Status::Ok,
                RecStatus::Error => Status::error(
                    r.status_message
                        .as_ref()
                        .map(|m| r.text(m).to_owned())
                        .unwrap_or_default(),
                ),
            },
            instrumentation_scope: self.scope.clone(),
        }
    }
}

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

/// A one-thread Tokio runtime on its own OS thread, for exports only.
#[derive(Debug)]
pub(crate) struct ExportRuntime {
    handle: Handle,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl ExportRuntime {
    pub(crate) fn start() -> Result<Self, Error> {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("glimpse-otlp".to_owned())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(rt.handle().clone()));
                // Anything the transport stack traces here must not become
                // spans that are exported in turn.
                let _suppressed = Context::enter_telemetry_suppressed_scope();
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
                // Cancels exports still running; returns promptly.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|source| Error::Io {
                context: "starting the OTLP export thread",
                source,
            })?;
        let handle = ready_rx
            .recv()
            .map_err(|_| Error::Trace("the OTLP export thread stopped while starting".to_owned()))?
            .map_err(|source| Error::Io {
                context: "starting the OTLP export runtime",
                source,
            })?;
        Ok(Self {
            handle,
            stop: Mutex::new(Some(stop_tx)),
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Stop the runtime, cancelling any export in flight. Does not wait.
    pub(crate) fn stop(&self) {
        if let Some(tx) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The OTLP/HTTP URL for traces: the endpoint with `/v1/traces` appended, as
/// the specification does for `OTEL_EXPORTER_OTLP_ENDPOINT`, unless it
/// already ends so or came verbatim from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
pub(crate) fn http_traces_url(endpoint: &str, traces_env: Option<&str>) -> String {
    let endpoint = endpoint.trim();
    if traces_env.is_some_and(|t| t.trim() == endpoint)
        || endpoint.trim_end_matches('/').ends_with("/v1/traces")
    {
        return endpoint.to_owned();
    }
    format!("{}/v1/traces", endpoint.trim_end_matches('/'))
}

/// Build the OTLP exporter inside the export runtime's context (tonic spawns
/// its connection worker on the current runtime). `traces_env` is the
/// configured `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (see [`http_traces_url`]).
pub(crate) fn build_exporter(
    endpoint: &str,
    traces_env: Option<&str>,
    protocol: OtlpProtocol,
    runtime: &ExportRuntime,
) -> Result<opentelemetry_otlp::SpanExporter, Error> {
    let _entered = runtime.handle().enter();
    let built = match protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_protocol(Protocol::Grpc)
            .with_endpoint(endpoint.trim())
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(http_traces_url(endpoint, traces_env))
            .build(),
    };
    built.map_err(|e| Error::Trace(format!("cannot export traces to {endpoint}: {e}")))
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

    #[test]
    fn the_http_url_gets_the_traces_path_once() {
        assert_eq!(
            http_traces_url("http://jaeger:4318", None),
            "http://jaeger:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://jaeger:4318/", None),
            "http://jaeger:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://c:4318/v1/traces", None),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://c:4318/custom", Some("http://c:4318/custom")),
            "http://c:4318/custom"
        );
    }

    #[test]
    fn the_export_runtime_starts_and_stops_inside_and_outside_a_runtime() {
        let rt = ExportRuntime::start().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        rt.handle().spawn(async move { tx.send(2).unwrap() });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(2));
        rt.stop();
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        current.block_on(async {
            let rt = ExportRuntime::start().unwrap();
            let answer = rt.handle().spawn(async { 42 }).await.unwrap();
            assert_eq!(answer, 42);
            drop(rt);
        });
    }
}

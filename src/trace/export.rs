//! The OTLP export of span records: a bounded queue that request threads
//! push to without blocking, and a worker on a private Tokio runtime that
//! takes batches (`OTEL_BSP_*`), encodes them as one
//! `ExportTraceServiceRequest` ([`super::encode`]) and sends them over
//! gRPC or http/protobuf.
//!
//! Why a private runtime: exports must work the same whether the
//! application runs a multi-thread runtime, a current-thread runtime or
//! none, never borrow the application's threads, and be cancellable at
//! shutdown by stopping that runtime.
//!
//! Every span dropped for lack of room, after shutdown, or lost in a failed
//! export is counted in `glimpse_obs_dropped_total{signal="spans"}`; a dead
//! collector costs a request nothing but the push (the queue is bounded and
//! the export runs elsewhere).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use opentelemetry::Context;
use tokio::{runtime::Handle, sync::Notify};

use super::{encode::Envelope, record::SpanRecord};
use crate::{Error, OtlpProtocol};

pub(crate) use crate::config::BatchSettings;

/// Where closed, sampled span records go.
#[derive(Debug)]
pub(crate) struct SpanExport {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Vec<SpanRecord>>,
    settings: BatchSettings,
    wake: Notify,
    /// Flushes waiting for the queue to be exported.
    waiters: Mutex<Vec<std::sync::mpsc::SyncSender<bool>>>,
    closed: AtomicBool,
    dropped: AtomicU64,
    /// Spans of the export in flight: lost if shutdown cancels it.
    in_flight: AtomicUsize,
}

impl Shared {
    fn drop_spans(&self, n: usize) {
        if n == 0 {
            return;
        }
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

    fn take_batch(&self) -> Vec<SpanRecord> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let n = queue.len().min(self.settings.max_export_batch_size);
        if n == queue.len() {
            std::mem::take(&mut *queue)
        } else {
            queue.drain(..n).collect()
        }
    }
}

impl SpanExport {
    /// Start the worker on `runtime`, exporting through `transport`.
    pub(crate) fn start(
        settings: BatchSettings,
        transport: Transport,
        envelope: Envelope,
        runtime: &ExportRuntime,
    ) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::with_capacity(settings.max_export_batch_size)),
            settings,
            wake: Notify::new(),
            waiters: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        });
        let worker = Arc::clone(&shared);
        runtime
            .handle()
            .spawn(async move { work(worker, transport, envelope).await });
        Self { shared }
    }

    /// Queue `record` for export; never blocks. `false` (the span dropped
    /// and counted) when the queue is full or export has shut down.
    pub(crate) fn push(&self, record: SpanRecord) -> bool {
        let s = &*self.shared;
        if s.closed.load(Ordering::Relaxed) {
            s.drop_spans(1);
            return false;
        }
        let mut queue = s.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() >= s.settings.max_queue_size {
            drop(queue);
            s.drop_spans(1);
            return false;
        }
        queue.push(record);
        let full = queue.len() == s.settings.max_export_batch_size;
        drop(queue);
        if full {
            s.wake.notify_one();
        }
        true
    }

    /// Export everything queued now, waiting at most `timeout`.
    ///
    /// A batch the collector refused is dropped and counted, not an error.
    ///
    /// # Errors
    /// [`Error::ShutdownTimeout`] when the export did not finish in time;
    /// [`Error::Trace`] when the worker is gone.
    pub(crate) fn force_flush(&self, timeout: Duration) -> Result<(), Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.shared
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        self.shared.wake.notify_one();
        match rx.recv_timeout(timeout) {
            Ok(_) => Ok(()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::ShutdownTimeout(timeout)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(Error::Trace("the span export worker stopped".to_owned()))
            }
        }
    }

    /// Stop taking spans, export what is queued within `timeout`, and count
    /// whatever is left as dropped.
    ///
    /// # Errors
    /// As [`SpanExport::force_flush`].
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        self.shared.closed.store(true, Ordering::Relaxed);
        let result = self.force_flush(timeout);
        let left =
            std::mem::take(&mut *self.shared.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let mut lost = left.len();
        if result.is_err() {
            // The export still running is cancelled with the runtime.
            lost += self.shared.in_flight.swap(0, Ordering::AcqRel);
        }
        self.shared.drop_spans(lost);
        result
    }

    /// Spans dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// The worker: a batch every `scheduled_delay`, or sooner when one is full
/// or a flush asks; answers the flushes that were waiting when it started
/// draining.
async fn work(shared: Arc<Shared>, transport: Transport, envelope: Envelope) {
    let delay = shared.settings.scheduled_delay;
    let timeout = shared.settings.export_timeout;
    loop {
        let _ = tokio::time::timeout(delay, shared.wake.notified()).await;
        let waiters =
            std::mem::take(&mut *shared.waiters.lock().unwrap_or_else(|e| e.into_inner()));
        loop {
            let batch = shared.take_batch();
            if batch.is_empty() {
                break;
            }
            shared.in_flight.store(batch.len(), Ordering::Release);
            let body = envelope.encode_wire(&batch);
            drop(batch);
            let sent = tokio::time::timeout(timeout, transport.export(body)).await;
            // Zero when a shutdown that ran out of time counted them already.
            let n = shared.in_flight.swap(0, Ordering::AcqRel);
            if !matches!(sent, Ok(Ok(()))) {
                // Counted, and reported by the owner's shutdown; a flush
                // is done once nothing is left to try.
                shared.drop_spans(n);
            }
        }
        for w in waiters {
            let _ = w.try_send(true);
        }
    }
}

/// An OTLP trace destination (until the shared `otlp` transport replaces
/// it): gRPC with tonic, or http/protobuf with hyper. Both send the bytes
/// [`Envelope::encode_wire`] wrote.
#[derive(Debug, Clone)]
// One per pipeline, built once: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Transport {
    Grpc(tonic::transport::Channel),
    Http {
        client: hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            http_body_util::Full<Bytes>,
        >,
        url: http::Uri,
    },
}

/// An already encoded `ExportTraceServiceRequest`, handed to tonic's
/// prost codec as is.
#[derive(Debug, Default)]
struct Encoded(Bytes);

impl prost::Message for Encoded {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Never decoded: only sent.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl Transport {
    /// The transport to `endpoint` over `protocol`, built in the export
    /// runtime's context. `traces_env`: see [`http_traces_url`].
    ///
    /// # Errors
    /// [`Error::Trace`] for an endpoint it cannot use (bad URL; `https://`,
    /// which needs TLS this build has not).
    pub(crate) fn new(
        endpoint: &str,
        traces_env: Option<&str>,
        protocol: OtlpProtocol,
        runtime: &ExportRuntime,
    ) -> Result<Self, Error> {
        let endpoint = endpoint.trim();
        let bad = |why: String| Error::Trace(format!("cannot export traces to {endpoint}: {why}"));
        if endpoint.starts_with("https://") {
            return Err(bad("TLS is not supported by this build".to_owned()));
        }
        let _entered = runtime.handle().enter();
        match protocol {
            OtlpProtocol::Grpc => {
                let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
                    .map_err(|e| bad(e.to_string()))?
                    .connect_lazy();
                Ok(Self::Grpc(channel))
            }
            OtlpProtocol::HttpProtobuf => {
                let url: http::Uri = http_traces_url(endpoint, traces_env)
                    .parse()
                    .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http();
                Ok(Self::Http { client, url })
            }
        }
    }

    /// Send one encoded `ExportTraceServiceRequest`.
    async fn export(&self, body: Bytes) -> Result<(), Error> {
        let failed = |e: String| Error::Trace(format!("span export failed: {e}"));
        match self {
            Self::Grpc(channel) => {
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                grpc.ready().await.map_err(|e| failed(e.to_string()))?;
                let codec = tonic_prost::ProstCodec::<
                    Encoded,
                    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
                >::default();
                grpc.unary(
                    tonic::Request::new(Encoded(body)),
                    http::uri::PathAndQuery::from_static(EXPORT_PATH),
                    codec,
                )
                .await
                .map(|_| ())
                .map_err(|e| failed(e.to_string()))
            }
            Self::Http { client, url } => {
                let request = http::Request::post(url.clone())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(http_body_util::Full::new(body))
                    .map_err(|e| failed(e.to_string()))?;
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(failed(format!("HTTP {}", response.status())))
                }
            }
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

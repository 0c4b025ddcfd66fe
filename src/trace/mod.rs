//! Traces: the OpenTelemetry pipeline (OTLP export to Jaeger or any
//! collector), W3C Trace Context and Baggage propagation, and the trace and
//! span IDs that tie each log line to its trace.
//!
//! The pieces, in the order a request meets them:
//! - the HTTP layer opens a server span and calls [`set_parent_from_headers`],
//!   which parses `traceparent`, `tracestate` and `baggage` strictly
//!   ([`w3c`]);
//! - [`TracePipeline::layer`] turns `tracing` spans into OpenTelemetry spans
//!   and, on first entry, stores each span's IDs in its registry extensions
//!   ([`ids`], read by the JSON formatter for `traceId` / `spanId`);
//! - ended spans go through a bounded batch processor to the OTLP exporter,
//!   which runs on a private runtime ([`export`]);
//! - [`propagation::inject`] carries the context to downstream calls.

mod export;
pub(crate) mod light;
pub(crate) mod w3c;

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use http::{HeaderMap, HeaderValue};
use opentelemetry::{
    InstrumentationScope, KeyValue,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkError,
    trace::{Sampler as SdkSampler, SdkTracerProvider, Tracer},
};
use tracing::{
    Subscriber,
    dispatcher::WeakDispatch,
    span::{self, Id},
};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::{
    Layer,
    layer::{Context, Layered},
    registry::LookupSpan,
};

use crate::{Config, Error, Sampler};

use crate::otlp::{Destination, ExportRuntime, Signal};
use export::{Gate, GatedProcessor, RuntimeExporter};

/// The tracing layer of the pipeline: OpenTelemetry spans, then the span IDs
/// recorded for log correlation.
pub(crate) type TraceLayer<S> = Layered<IdLayer, OpenTelemetryLayer<S, Tracer>, S>;

/// The tracer provider and, when an endpoint is configured, its exporter.
pub(crate) struct TracePipeline {
    provider: SdkTracerProvider,
    tracer: Tracer,
    export: Option<Export>,
    shut_down: AtomicBool,
}

struct Export {
    runtime: ExportRuntime,
    gate: Arc<Gate>,
}

impl std::fmt::Debug for TracePipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracePipeline")
            .field("exporting", &self.export.is_some())
            .finish_non_exhaustive()
    }
}

impl TracePipeline {
    /// Build the SDK tracer provider from `config`: resource `service.name`,
    /// `service.version`, `deployment.environment.name` (plus
    /// `OTEL_RESOURCE_ATTRIBUTES`), the configured sampler, and, when
    /// `config.otlp_endpoint` is set, a bounded batch exporter (gRPC or
    /// http/protobuf) with `config.batch` (`OTEL_BSP_*`). Without an endpoint nothing is
    /// exported but IDs are still generated. Works inside or outside a Tokio
    /// runtime of either flavour.
    ///
    /// # Errors
    /// [`Error::Trace`] when the exporter cannot be built (bad URL, https
    /// without TLS support).
    pub(crate) fn new(config: &Config) -> Result<Self, Error> {
        Self::build(config)
    }

    fn build(config: &Config) -> Result<Self, Error> {
        let resource = Resource::builder()
            .with_service_name(config.service.clone())
            .with_attributes([
                KeyValue::new("service.version", config.version.clone()),
                KeyValue::new("deployment.environment.name", config.environment.as_str()),
            ])
            .build();
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(sdk_sampler(config.sampler));
        let export = match Destination::resolve(config, Signal::Traces) {
            None => None,
            Some(destination) => {
                let settings = config.batch;
                let runtime = ExportRuntime::start()?;
                let exporter = crate::otlp::span_exporter(&destination, &runtime)?;
                let gate = Arc::new(Gate::new(settings.max_queue_size));
                let exporter = RuntimeExporter::new(
                    exporter,
                    runtime.handle().clone(),
                    settings.export_timeout,
                    Arc::clone(&gate),
                );
                builder = builder.with_span_processor(GatedProcessor::new(
                    exporter,
                    settings,
                    Arc::clone(&gate),
                ));
                Some(Export { runtime, gate })
            }
        };
        let provider = builder.build();
        let scope = InstrumentationScope::builder("glimpse_obs")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        Ok(Self {
            provider,
            tracer,
            export,
            shut_down: AtomicBool::new(false),
        })
    }

    /// The tracing layer to stack on the registry: `tracing-opentelemetry`'s
    /// layer, followed by the one that records span IDs for [`ids`].
    pub(crate) fn layer<S>(&self, settings: Arc<crate::config::Settings>) -> TraceLayer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        OpenTelemetryLayer::new(self.tracer.clone())
            // Per-span thread attributes and busy/idle timings cost two
            // `Instant::now()` per poll; Jaeger shows durations anyway.
            .with_threads(false)
            .with_tracked_inactivity(false)
            .and_then(IdLayer {
                dispatch: OnceLock::new(),
                settings: Some(settings),
            })
    }

    /// Whether spans are exported (an OTLP endpoint is configured). When
    /// not, [`LightLayer`] stands in for the OpenTelemetry layer.
    pub(crate) fn exporting(&self) -> bool {
        self.export.is_some()
    }

    /// Spans dropped so far (queue full, failed export, shutdown cut short).
    pub(crate) fn dropped_spans(&self) -> u64 {
        self.export.as_ref().map_or(0, |e| e.gate.dropped())
    }

    /// Export every ended span now, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::ShutdownTimeout`] when the export did not finish in time;
    /// [`Error::Trace`] when it failed.
    pub(crate) fn force_flush(&self, timeout: Duration) -> Result<(), Error> {
        if self.shut_down.load(Ordering::Acquire) {
            return Ok(());
        }
        let Some(export) = &self.export else {
            return Ok(());
        };
        let provider = self.provider.clone();
        let result = bounded("glimpse-otlp-flush", timeout, move || {
            provider.force_flush()
        });
        timed_out_if(export.gate.take_timed_out(), timeout, result)
    }

    /// Flush and shut down, bounded by `timeout` whatever the runtime flavour
    /// of the caller: the blocking part runs on a helper thread, and a stuck
    /// export is cancelled by stopping the export runtime. A second call is a
    /// no-op.
    ///
    /// # Errors
    /// [`Error::ShutdownTimeout`] when spans could not be flushed in time
    /// (those still queued are counted as dropped); [`Error::Trace`] when the
    /// final export failed.
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let Some(export) = &self.export else {
            // No processor: returns at once.
            let _ = self.provider.shutdown_with_timeout(timeout);
            return Ok(());
        };
        let provider = self.provider.clone();
        let result = bounded("glimpse-otlp-shutdown", timeout, move || {
            provider.shutdown_with_timeout(timeout)
        });
        let result = timed_out_if(export.gate.take_timed_out(), timeout, result);
        if result.is_err() {
            export.gate.abandon();
        }
        export.runtime.stop();
        result
    }
}

impl Drop for TracePipeline {
    fn drop(&mut self) {
        // Owners call `shutdown` with their own timeout; this is the safety
        // net, and a no-op after it.
        let _ = self.shutdown(Duration::from_secs(1));
    }
}

/// The provider wraps a processor's timeout into a generic error: report it
/// as the timeout it is.
fn timed_out_if(
    timed_out: bool,
    timeout: Duration,
    result: Result<(), Error>,
) -> Result<(), Error> {
    match result {
        Err(Error::Trace(_)) if timed_out => Err(Error::ShutdownTimeout(timeout)),
        other => other,
    }
}

/// Run `f` on a helper thread and wait at most `timeout` for it.
fn bounded(
    name: &str,
    timeout: Duration,
    f: impl FnOnce() -> Result<(), OTelSdkError> + Send + 'static,
) -> Result<(), Error> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|source| Error::Io {
            context: "starting a tracing shutdown thread",
            source,
        })?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(OTelSdkError::Timeout(_))) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            Err(Error::ShutdownTimeout(timeout))
        }
        Ok(Err(OTelSdkError::AlreadyShutdown)) => Ok(()),
        Ok(Err(e)) => Err(Error::Trace(format!("flushing spans failed: {e}"))),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err(Error::Trace("the span flush thread panicked".to_owned()))
        }
    }
}

fn sdk_sampler(sampler: Sampler) -> SdkSampler {
    let parent_based = |root: SdkSampler| SdkSampler::ParentBased(Box::new(root));
    match sampler {
        Sampler::AlwaysOn => SdkSampler::AlwaysOn,
        Sampler::AlwaysOff => SdkSampler::AlwaysOff,
        Sampler::TraceIdRatio(r) => SdkSampler::TraceIdRatioBased(r),
        Sampler::ParentBasedAlwaysOn => parent_based(SdkSampler::AlwaysOn),
        Sampler::ParentBasedAlwaysOff => parent_based(SdkSampler::AlwaysOff),
        Sampler::ParentBasedTraceIdRatio(r) => parent_based(SdkSampler::TraceIdRatioBased(r)),
    }
}

use crate::ids::SpanIds;

pub(crate) use light::LightLayer;

/// Records [`SpanIds`] in a span's extensions when it is first entered.
///
/// `tracing-opentelemetry` starts the OpenTelemetry span lazily (so a parent
/// can still be set after creation) and keeps its state private; entering is
/// the first moment the IDs exist, and the last before any event inside the
/// span is formatted. Reading them through
/// [`tracing_opentelemetry::get_otel_context`] does not depend on the order
/// of the layers.
#[derive(Debug, Default)]
pub(crate) struct IdLayer {
    dispatch: OnceLock<WeakDispatch>,
    settings: Option<Arc<crate::config::Settings>>,
}

/// The request-time settings of the telemetry whose trace layer is in
/// `dispatch` (the ID-only layer or the exporting pipeline's ID layer each
/// carry them), found with `downcast_ref`: how the tower layer built by
/// [`crate::layer`] follows a telemetry without a global.
pub(crate) fn settings_of(dispatch: &tracing::Dispatch) -> Option<Arc<crate::config::Settings>> {
    if let Some(light) = dispatch.downcast_ref::<LightLayer>() {
        return light.settings.clone();
    }
    dispatch
        .downcast_ref::<IdLayer>()
        .and_then(|id| id.settings.clone())
}

impl IdLayer {
    fn record<S>(&self, id: &Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(span) = ctx.span(id) else { return };
        if span.extensions().get::<SpanIds>().is_some() {
            return;
        }
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else {
            return;
        };
        // Must not hold the extensions here: this locks them itself.
        let Some(cx) = tracing_opentelemetry::get_otel_context(id, &dispatch) else {
            return;
        };
        let otel_span = cx.span();
        let sc = otel_span.span_context();
        if sc.is_valid() {
            span.extensions_mut().insert(SpanIds {
                trace_id: sc.trace_id(),
                span_id: sc.span_id(),
                sampled: sc.is_sampled(),
                // What the SDK's span context carries: the caller's flag when
                // continuing its trace (the SDK keeps the parent's flags);
                // the SDK does not set it on roots it starts.
                random: sc.trace_flags().to_u8() & 0x02 != 0,
            });
        }
    }
}

impl<S> Layer<S> for IdLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, dispatch: &tracing::Dispatch) {
        let _ = self.dispatch.set(dispatch.downgrade());
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.record(id, &ctx);
    }
}

/// Set the parent of a server span that is not yet entered from the request's
/// headers, following W3C Trace Context: exactly one valid `traceparent`
/// continues the caller's trace (with its `tracestate`); none, several or an
/// invalid one start a new root. `baggage` is kept either way. The ambient
/// context (an enclosing span of the server itself) is never the parent.
/// `exporting`: whether the span's subscriber exports spans (the full
/// OpenTelemetry layer) rather than assigning IDs only ([`LightLayer`]).
pub(crate) fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap, exporting: bool) {
    if span.is_disabled() {
        return;
    }
    if !headers.contains_key(w3c::TRACEPARENT) && !headers.contains_key(w3c::BAGGAGE) && !exporting
    {
        // No context to continue, and the light layer made the server span
        // a root already: nothing to do (the common case, kept cheap).
        return;
    }
    let cx = w3c::Incoming::from_headers(headers).into_context();
    if light::set_parent(span, cx.clone()) {
        return;
    }
    // Fails only when the span was already started or no OpenTelemetry
    // layer is installed; then there is nothing to continue.
    let _ = span.set_parent(cx);
}

/// Start the server span of an untrusted caller's request as a new root:
/// its `traceparent`, when valid, is kept only as a span link (exporting
/// mode; without an exporter nothing carries links, and the ID-only layer
/// made the span a root already). Its `tracestate` and `baggage` are ignored.
pub(crate) fn link_from_headers(span: &tracing::Span, headers: &HeaderMap, exporting: bool) {
    if span.is_disabled() || !exporting {
        return;
    }
    // Never the child of the ambient context either.
    let _ = span.set_parent(opentelemetry::Context::new());
    if headers.contains_key(w3c::TRACEPARENT)
        && let Some(caller) = w3c::Incoming::from_headers(headers).parent
    {
        span.add_link(caller);
    }
}

/// Add an `exception` event (OpenTelemetry semantic conventions) to `span`'s
/// OpenTelemetry span; nothing without one.
pub(crate) fn record_exception(
    span: &tracing::Span,
    kind: &'static str,
    message: &str,
    stacktrace: Option<&str>,
) {
    let mut attributes = vec![
        KeyValue::new("exception.type", kind),
        KeyValue::new("exception.message", message.to_owned()),
    ];
    if let Some(stacktrace) = stacktrace {
        attributes.push(KeyValue::new("exception.stacktrace", stacktrace.to_owned()));
    }
    span.add_event("exception", attributes);
}

/// The `traceparent` header value of `span` (for the response), `None` when
/// the span has no OpenTelemetry context.
pub(crate) fn traceparent(span: &tracing::Span) -> Option<HeaderValue> {
    if span.is_disabled() {
        return None;
    }
    let light = span
        .with_subscriber(|(id, dispatch)| {
            let span = dispatch
                .downcast_ref::<tracing_subscriber::Registry>()?
                .span(id)?;
            span.extensions().get::<SpanIds>().copied()
        })
        .flatten();
    if let Some(ids) = light {
        return Some(ids.traceparent());
    }
    let cx = span.context();
    let otel_span = cx.span();
    let sc = otel_span.span_context();
    sc.is_valid().then(|| w3c::format_traceparent(sc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::headers;
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::{SpanId, TraceId};
    use tracing_subscriber::{layer::SubscriberExt, registry::Registry};

    /// A test layer that captures the IDs `ids` reports for each event's span.
    #[derive(Clone, Default)]
    struct Capture(Arc<std::sync::Mutex<Vec<Seen>>>);

    type Seen = Option<(TraceId, SpanId)>;

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
            let got = ctx.event_span(event).and_then(|s| {
                s.extensions()
                    .get::<SpanIds>()
                    .map(|i| (i.trace_id, i.span_id))
            });
            self.0.lock().unwrap().push(got);
        }
    }

    fn pipeline(sampler: Sampler) -> TracePipeline {
        let config = Config::default()
            .service("trace-unit")
            .sampler(sampler)
            .metrics_addr(None);
        TracePipeline::build(&config).unwrap()
    }

    fn with_pipeline<R>(sampler: Sampler, f: impl FnOnce() -> R) -> (R, Vec<Seen>) {
        let pipeline = pipeline(sampler);
        let capture = Capture::default();
        let subscriber = Registry::default()
            .with(
                pipeline.layer(Arc::new(
                    crate::config::Config::default()
                        .shared_settings()
                        .as_ref()
                        .clone(),
                )),
            )
            .with(capture.clone());
        let out = tracing::subscriber::with_default(subscriber, f);
        let seen = capture.0.lock().unwrap().clone();
        (out, seen)
    }

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const PARENT: &str = "b7ad6b7169203331";

    #[test]
    fn a_server_span_continues_the_callers_trace_and_logs_carry_its_ids() {
        let headers = headers(&[("traceparent", &format!("00-{TRACE}-{PARENT}-01"))]);
        let (tp, seen) = with_pipeline(Sampler::ParentBasedAlwaysOn, || {
            let span = tracing::info_span!("request", otel.kind = "server");
            set_parent_from_headers(&span, &headers, true);
            span.in_scope(|| tracing::info!("inside"));
            traceparent(&span).unwrap()
        });
        let tp = tp.to_str().unwrap().to_owned();
        assert!(tp.starts_with(&format!("00-{TRACE}-")), "{tp}");
        assert!(tp.ends_with("-01"));
        let (trace_id, span_id) = seen[0].unwrap();
        assert_eq!(trace_id, TraceId::from_hex(TRACE).unwrap());
        assert_ne!(
            span_id,
            SpanId::from_hex(PARENT).unwrap(),
            "the server span has its own ID"
        );
        assert_eq!(
            tp,
            format!("00-{TRACE}-{span_id}-01"),
            "response header names the server span"
        );
    }

    #[test]
    fn unsampled_spans_still_have_ids_in_logs_and_headers() {
        let headers = headers(&[("traceparent", &format!("00-{TRACE}-{PARENT}-00"))]);
        let (tp, seen) = with_pipeline(Sampler::ParentBasedAlwaysOn, || {
            let span = tracing::info_span!("request");
            set_parent_from_headers(&span, &headers, true);
            span.in_scope(|| tracing::info!("inside"));
            traceparent(&span).unwrap()
        });
        let (trace_id, span_id) = seen[0].unwrap();
        assert_eq!(trace_id, TraceId::from_hex(TRACE).unwrap());
        assert_eq!(tp.to_str().unwrap(), format!("00-{TRACE}-{span_id}-00"));

        let (_, seen) = with_pipeline(Sampler::AlwaysOff, || {
            tracing::info_span!("root").in_scope(|| tracing::info!("inside"));
        });
        assert!(seen[0].is_some(), "AlwaysOff still generates IDs");
    }

    #[test]
    fn without_a_valid_traceparent_the_server_span_is_a_new_root_not_a_child_of_the_ambient_span() {
        let (pair, seen) = with_pipeline(Sampler::ParentBasedAlwaysOn, || {
            let outer = tracing::info_span!("connection");
            let _outer = outer.enter();
            let span = tracing::info_span!("request");
            set_parent_from_headers(&span, &headers(&[("traceparent", "00-garbage")]), true);
            span.in_scope(|| tracing::info!("inside"));
            (
                outer.context().span().span_context().trace_id(),
                span.context().span().span_context().trace_id(),
            )
        });
        let (outer_trace, request_trace) = pair;
        assert_ne!(outer_trace, request_trace);
        assert_eq!(seen[0].unwrap().0, request_trace);
    }

    #[test]
    fn child_spans_share_the_trace_and_get_their_own_span_ids() {
        let (_, seen) = with_pipeline(Sampler::ParentBasedAlwaysOn, || {
            let span = tracing::info_span!("request");
            set_parent_from_headers(&span, &HeaderMap::new(), true);
            span.in_scope(|| {
                tracing::info!("in request");
                tracing::info_span!("db").in_scope(|| tracing::info!("in db"));
            });
        });
        let (t1, s1) = seen[0].unwrap();
        let (t2, s2) = seen[1].unwrap();
        assert_eq!(t1, t2);
        assert_ne!(s1, s2);
    }

    #[test]
    fn baggage_and_tracestate_reach_the_context_of_spans_inside_the_request() {
        let headers = headers(&[
            ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("baggage", "userId=alice"),
        ]);
        let (out, _) = with_pipeline(Sampler::ParentBasedAlwaysOn, || {
            let span = tracing::info_span!("request");
            set_parent_from_headers(&span, &headers, true);
            span.in_scope(|| {
                tracing::info_span!("child").in_scope(|| {
                    let mut out = HeaderMap::new();
                    w3c::inject_context(&opentelemetry::Context::current(), &mut out);
                    let baggage = opentelemetry::Context::current()
                        .baggage()
                        .get("userId")
                        .map(|v| v.to_string());
                    (out, baggage)
                })
            })
        });
        let (out, baggage) = out;
        assert_eq!(baggage.as_deref(), Some("alice"));
        assert_eq!(out["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        assert_eq!(out["baggage"], "userId=alice");
        assert!(
            out["traceparent"]
                .to_str()
                .unwrap()
                .starts_with(&format!("00-{TRACE}-"))
        );
    }

    #[test]
    fn shutdown_without_an_exporter_is_immediate_and_idempotent() {
        let p = pipeline(Sampler::AlwaysOn);
        let t = std::time::Instant::now();
        p.shutdown(Duration::from_secs(1)).unwrap();
        p.shutdown(Duration::from_secs(1)).unwrap();
        assert!(t.elapsed() < Duration::from_millis(500));
        assert_eq!(p.dropped_spans(), 0);
    }

    #[test]
    fn the_sampler_follows_the_configuration() {
        assert!(matches!(
            sdk_sampler(Sampler::AlwaysOff),
            SdkSampler::AlwaysOff
        ));
        assert!(
            matches!(sdk_sampler(Sampler::TraceIdRatio(0.5)), SdkSampler::TraceIdRatioBased(r) if r == 0.5)
        );
        assert!(matches!(
            sdk_sampler(Sampler::ParentBasedTraceIdRatio(0.1)),
            SdkSampler::ParentBased(_)
        ));
    }
}

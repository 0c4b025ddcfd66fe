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

mod encode;
mod export;
pub(crate) mod light;
mod pb;
pub(crate) mod record;
pub(crate) mod server;
pub(crate) mod w3c;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use http::{HeaderMap, HeaderValue};

use crate::{Config, Error};

pub(crate) use export::SpanExport;

use crate::otlp::{Destination, ExportRuntime, Signal, Transport};

/// The span export of a telemetry: when an endpoint is configured, the
/// bounded queue and exporter that [`LightLayer`] hands sampled span records
/// to; without one, nothing (IDs only).
pub(crate) struct TracePipeline {
    export: Option<Export>,
    shut_down: AtomicBool,
}

struct Export {
    runtime: ExportRuntime,
    spans: Arc<SpanExport>,
}

impl std::fmt::Debug for TracePipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracePipeline")
            .field("exporting", &self.export.is_some())
            .finish_non_exhaustive()
    }
}

impl TracePipeline {
    /// Build the span export of `config`: resource `service.name`,
    /// `service.version`, `deployment.environment.name` (plus
    /// `OTEL_RESOURCE_ATTRIBUTES`) and, when `config.otlp_endpoint` is set,
    /// a bounded batch exporter (gRPC or http/protobuf) with `config.batch`
    /// (`OTEL_BSP_*`). Without an endpoint nothing is exported (the layer
    /// still generates IDs). Works inside or outside a Tokio runtime of
    /// either flavour.
    ///
    /// # Errors
    /// [`Error::Trace`] when the exporter cannot be built (bad URL, https
    /// without TLS support).
    pub(crate) fn new(config: &Config) -> Result<Self, Error> {
        Self::build(config)
    }

    fn build(config: &Config) -> Result<Self, Error> {
        let export = match Destination::resolve(config, Signal::Traces) {
            None => None,
            Some(destination) => {
                let runtime = ExportRuntime::start()?;
                let transport = Transport::to(&destination, &runtime)?;
                let envelope = encode::Envelope::new(config);
                let spans = SpanExport::new(config.batch, transport, &runtime, envelope);
                Some(Export {
                    runtime,
                    spans: Arc::new(spans),
                })
            }
        };
        Ok(Self {
            export,
            shut_down: AtomicBool::new(false),
        })
    }

    /// Where the trace layer sends closed, sampled span records; `None`
    /// without an endpoint.
    pub(crate) fn span_export(&self) -> Option<Arc<SpanExport>> {
        self.export.as_ref().map(|e| Arc::clone(&e.spans))
    }

    /// The trace layer of this pipeline: IDs, and span records when
    /// exporting.
    pub(crate) fn layer(
        &self,
        sampler: crate::Sampler,
        settings: Arc<crate::config::Settings>,
    ) -> LightLayer {
        LightLayer::new(sampler)
            .with_settings(settings)
            .with_export(self.span_export())
    }

    /// Whether spans are exported (an OTLP endpoint is configured).
    pub(crate) fn exporting(&self) -> bool {
        self.export.is_some()
    }

    /// Spans dropped so far (queue full, failed export, shutdown cut short).
    pub(crate) fn dropped_spans(&self) -> u64 {
        self.export.as_ref().map_or(0, |e| e.spans.dropped())
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
        refused_is_dropped(export.spans.force_flush(timeout))
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
            return Ok(());
        };
        let result = refused_is_dropped(export.spans.shutdown(timeout));
        // Cancels an export still in flight.
        export.runtime.stop();
        result
    }
}

/// A batch the collector refused or could not take is counted as dropped
/// (and reported by the owner's shutdown line); flushing it is then done,
/// not failed. Only running out of time is an error.
fn refused_is_dropped(result: Result<(), Error>) -> Result<(), Error> {
    match result {
        Err(Error::Export(_)) => Ok(()),
        other => other,
    }
}

impl Drop for TracePipeline {
    fn drop(&mut self) {
        // Owners call `shutdown` with their own timeout; this is the safety
        // net, and a no-op after it.
        let _ = self.shutdown(Duration::from_secs(1));
    }
}

use crate::ids::SpanIds;

pub(crate) use light::LightLayer;

/// The request-time settings of the telemetry whose trace layer is in
/// `dispatch`, found with `downcast_ref`: how the tower layer built by
/// [`crate::layer`] follows a telemetry without a global.
pub(crate) fn settings_of(dispatch: &tracing::Dispatch) -> Option<Arc<crate::config::Settings>> {
    dispatch
        .downcast_ref::<LightLayer>()
        .and_then(|light| light.settings.clone())
}

/// Set the parent of a server span that is not yet entered from the request's
/// headers, following W3C Trace Context: exactly one valid `traceparent`
/// continues the caller's trace (with its `tracestate`); none, several or an
/// invalid one start a new root. `baggage` is kept either way. The ambient
/// context (an enclosing span of the server itself) is never the parent.
pub(crate) fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    if span.is_disabled() {
        return;
    }
    if !headers.contains_key(w3c::TRACEPARENT) && !headers.contains_key(w3c::BAGGAGE) {
        // No context to continue, and the trace layer made the server span
        // a root already, with the sampler's decision for a root: nothing
        // to do (the common case, kept cheap).
        return;
    }
    let cx = w3c::Incoming::from_headers(headers).into_context();
    // `false` when no trace layer of the crate knows the span: nothing to
    // continue then.
    let _ = light::set_parent(span, cx);
}

/// Start the server span of an untrusted caller's request as a new root:
/// its `traceparent`, when valid, is kept only as a span link (exporting
/// mode; without an exporter nothing carries links, and the ID-only layer
/// made the span a root already). Its `tracestate` and `baggage` are ignored.
pub(crate) fn link_from_headers(span: &tracing::Span, headers: &HeaderMap, exporting: bool) {
    if span.is_disabled() || !exporting {
        return;
    }
    // The trace layer made the server span a root already.
    if headers.contains_key(w3c::TRACEPARENT)
        && let Some(caller) = w3c::Incoming::from_headers(headers).parent
    {
        light::add_link(span, &caller);
    }
}

/// Add an `exception` event (OpenTelemetry semantic conventions) to `span`'s
/// exported span record; nothing when the span is not exported.
pub(crate) fn record_exception(
    span: &tracing::Span,
    kind: &'static str,
    message: &str,
    stacktrace: Option<&str>,
) {
    light::with_record(span, |record| {
        record.add_exception(kind, message, stacktrace)
    });
}

/// The `traceparent` header value of `span` (for the response), `None` when
/// the span has no OpenTelemetry context.
pub(crate) fn traceparent(span: &tracing::Span) -> Option<HeaderValue> {
    if span.is_disabled() {
        return None;
    }
    let light = span
        .with_subscriber(|(id, dispatch)| {
            use tracing_subscriber::registry::LookupSpan as _;
            let span = dispatch
                .downcast_ref::<tracing_subscriber::Registry>()?
                .span(id)?;
            span.extensions().get::<SpanIds>().copied()
        })
        .flatten();
    light.map(|ids| ids.traceparent())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sampler;
    use crate::test_util::headers;
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::{SpanId, TraceId};
    use tracing::Subscriber;
    use tracing_subscriber::{Layer, layer::Context, registry::LookupSpan};
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
                pipeline.layer(
                    sampler,
                    Arc::new(
                        crate::config::Config::default()
                            .shared_settings()
                            .as_ref()
                            .clone(),
                    ),
                ),
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
            set_parent_from_headers(&span, &headers);
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
            set_parent_from_headers(&span, &headers);
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
            set_parent_from_headers(&span, &headers(&[("traceparent", "00-garbage")]));
            span.in_scope(|| tracing::info!("inside"));
            let trace_of = |s: &tracing::Span| {
                TraceId::from_hex(&traceparent(s).unwrap().to_str().unwrap()[3..35]).unwrap()
            };
            (trace_of(&outer), trace_of(&span))
        });
        let (outer_trace, request_trace) = pair;
        assert_ne!(outer_trace, request_trace);
        assert_eq!(seen[0].unwrap().0, request_trace);
    }

    #[test]
    fn child_spans_share_the_trace_and_get_their_own_span_ids() {
        let (_, seen) = with_pipeline(Sampler::ParentBasedAlwaysOn, || {
            let span = tracing::info_span!("request");
            set_parent_from_headers(&span, &HeaderMap::new());
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
            set_parent_from_headers(&span, &headers);
            span.in_scope(|| {
                tracing::info_span!("child").in_scope(|| {
                    let mut out = HeaderMap::new();
                    let cx = light::current_context().unwrap();
                    w3c::inject_context(&cx, &mut out);
                    let baggage = cx.baggage().get("userId").map(|v| v.to_string());
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
}

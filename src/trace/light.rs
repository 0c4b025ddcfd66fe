//! The crate's trace layer: IDs always, span records when exporting.
//!
//! With no `OTEL_EXPORTER_OTLP_ENDPOINT` nothing leaves the process, yet log
//! lines still need `traceId`/`spanId`, responses a `traceparent`, and
//! outbound calls the caller's context. This layer assigns the IDs at span
//! creation ([`SpanIds`] in the span's extensions), so everything that
//! reads IDs works the same in both modes.
//!
//! When exporting, a sampled span also gets a [`SpanRecord`] beside its IDs:
//! its fields as attributes (later ones through `on_record`), ERROR events
//! and `exception`s as span events, links; on close the record goes to the
//! export queue ([`super::export`]). This replaces `tracing-opentelemetry`
//! and the OpenTelemetry SDK, which cost about 6.6 µs per request.

use std::sync::Arc;

use opentelemetry::{
    Context,
    trace::{SpanContext, TraceContextExt, TraceFlags, TraceId, TraceState},
};
use tracing::{Subscriber, span};
use tracing_subscriber::{Layer, Registry, layer::Context as LayerContext, registry::LookupSpan};

use super::{
    export::SpanExport,
    record::{LinkRecord, Recording, SpanRecord},
};
use crate::{
    config::Sampler,
    ids::{SpanIds, is_request_span, random, response::ResponseExt},
};

/// The W3C Trace Context Level 2 `random` trace flag.
const RANDOM_FLAG: u8 = 0x02;

/// The remote parent of a server span: `tracestate` and `baggage` kept for
/// outbound propagation.
pub(super) struct Remote(pub(super) Arc<Context>);

/// Assigns [`SpanIds`] when a span is created: the parent's trace ID (or a
/// new one for a root) and a fresh span ID. The server span of
/// [`crate::layer`] is always a root here; `set_parent` continues the
/// caller's trace when the request carries one.
#[derive(Debug, Default)]
pub(crate) struct LightLayer {
    sampler: Sampler,
    pub(super) settings: Option<Arc<crate::config::Settings>>,
    export: Option<Arc<SpanExport>>,
}

impl LightLayer {
    pub(crate) fn new(sampler: Sampler) -> Self {
        Self {
            sampler,
            settings: None,
            export: None,
        }
    }

    /// Record sampled spans and hand them to `export` when they close.
    pub(crate) fn with_export(mut self, export: Option<Arc<SpanExport>>) -> Self {
        self.export = export;
        self
    }

    /// Carry a telemetry's request-time settings, for [`super::settings_of`].
    pub(crate) fn with_settings(mut self, settings: Arc<crate::config::Settings>) -> Self {
        self.settings = Some(settings);
        self
    }
}

impl<S> Layer<S> for LightLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        // Never a child of whatever span happens to be around the server.
        let request = is_request_span(attrs.metadata());
        let inherited = if request {
            None
        } else {
            span.parent()
                .and_then(|p| p.extensions().get::<SpanIds>().copied())
        };
        let ids = match inherited {
            Some(parent) => SpanIds {
                trace_id: parent.trace_id,
                span_id: random::span_id(),
                sampled: parent.sampled,
                random: parent.random,
            },
            None => {
                let trace_id = random::trace_id();
                SpanIds {
                    trace_id,
                    span_id: random::span_id(),
                    sampled: decide(self.sampler, trace_id, None),
                    // Every bit of the ID is random.
                    random: true,
                }
            }
        };
        if self.export.is_none() {
            span.extensions_mut().insert(ids);
            return;
        }
        // Exporting: a record for a sampled span, and for a root whose
        // decision `set_parent` may still change.
        let record = if ids.sampled || (inherited.is_none() && self.sampler != Sampler::AlwaysOff) {
            let mut record = Recording::start(attrs.metadata().name(), attrs.fields().len());
            if let Some(parent) = inherited {
                record.parent_span_id = parent.span_id;
            }
            // The server span's fields as the HTTP layer encoded them
            // (`server`), or visited.
            if request && super::server::take(&mut record) {
                #[cfg(debug_assertions)]
                check_handed_over(&record, attrs);
            } else {
                record.record_attributes(attrs);
            }
            Some(record)
        } else {
            None
        };
        let mut ext = span.extensions_mut();
        ext.insert(ids);
        if let Some(record) = record {
            ext.insert(record);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: LayerContext<'_, S>) {
        if self.export.is_none() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        if let Some(record) = span.extensions_mut().get_mut::<Recording>() {
            record.record(values);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
        // Only ERROR events reach this layer (its filter), and only
        // exported spans keep them.
        if self.export.is_none() {
            return;
        }
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        if let Some(record) = span.extensions_mut().get_mut::<Recording>() {
            record.add_log_event(event);
        }
    }

    fn on_close(&self, id: span::Id, ctx: LayerContext<'_, S>) {
        let Some(export) = &self.export else { return };
        let Some(span) = ctx.span(&id) else { return };
        let mut ext = span.extensions_mut();
        let Some(mut record) = ext.remove::<Recording>() else {
            return;
        };
        let Some(ids) = ext.get_mut::<SpanIds>().copied() else {
            return;
        };
        // Recorded but unsampled spans are not exported (specification).
        if !ids.sampled {
            return;
        }
        // A server span's response, when the HTTP layer hands it over
        // directly (`ids::response`): its fields, and the end of the
        // request as the layer measured it.
        let source = match record.response.take() {
            Some(source) => Some(source),
            None => ext.get_mut::<ResponseExt>().map(|r| r.0.clone()),
        };
        drop(ext);
        let end = match source.as_deref().and_then(|s| s.response()) {
            Some(response) => {
                record.response(response);
                record.start + response.elapsed.as_nanos() as u64
            }
            None => super::record::now(),
        };
        record.trace_id = ids.trace_id;
        record.span_id = ids.span_id;
        record.flags = 1 | if ids.random { RANDOM_FLAG } else { 0 };
        record.end = end;
        export.push(&record);
        record.recycle();
    }
}

/// Debug builds: the attributes, name and kind the HTTP layer handed over
/// are byte for byte those the span's fields give when visited.
#[cfg(debug_assertions)]
fn check_handed_over(record: &SpanRecord, attrs: &span::Attributes<'_>) {
    let mut visited = Recording::start(attrs.metadata().name(), 0);
    visited.record_attributes(attrs);
    assert_eq!(
        (record.text(&record.name), record.kind, &record.attrs),
        (visited.text(&visited.name), visited.kind, &visited.attrs),
        "the server span's handed-over attributes differ from its fields"
    );
    assert_eq!(record.attr_keys, visited.attr_keys, "attribute key bits");
    visited.recycle();
}

/// Run `f` on the [`SpanRecord`] of `span` when it has one (exporting, and
/// sampled or a root).
pub(crate) fn with_record(span: &tracing::Span, f: impl FnOnce(&mut SpanRecord)) {
    span.with_subscriber(|(id, dispatch)| {
        let span = dispatch.downcast_ref::<Registry>()?.span(id)?;
        let mut ext = span.extensions_mut();
        f(ext.get_mut::<Recording>()?);
        Some(())
    });
}

/// Link the span of `span` to the remote span context `cx` (exporting only).
pub(crate) fn add_link(span: &tracing::Span, sc: &SpanContext) {
    with_record(span, |record| {
        record.links.push(LinkRecord {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            flags: sc.trace_flags().to_u8(),
            trace_state: sc.trace_state().header(),
        });
    });
}

/// The sampling decision the SDK sampler `sampler` would take for a span of
/// `trace_id` whose remote parent was (`Some`) or was not sampled, so that
/// without an exporter the `traceparent` flags sent on are the ones the
/// configuration asks for.
fn decide(sampler: Sampler, trace_id: TraceId, parent_sampled: Option<bool>) -> bool {
    match (sampler, parent_sampled) {
        (Sampler::AlwaysOn, _) => true,
        (Sampler::AlwaysOff, _) => false,
        (Sampler::TraceIdRatio(r), _) => ratio(r, trace_id),
        (
            Sampler::ParentBasedAlwaysOn
            | Sampler::ParentBasedAlwaysOff
            | Sampler::ParentBasedTraceIdRatio(_),
            Some(parent),
        ) => parent,
        (Sampler::ParentBasedAlwaysOn, None) => true,
        (Sampler::ParentBasedAlwaysOff, None) => false,
        (Sampler::ParentBasedTraceIdRatio(r), None) => ratio(r, trace_id),
    }
}

/// `TraceIdRatioBased`'s rule (opentelemetry_sdk): the trace ID's low 63
/// bits against the ratio.
fn ratio(r: f64, trace_id: TraceId) -> bool {
    let bytes = trace_id.to_bytes();
    let low = u64::from_be_bytes([
        bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
    ]) >> 1;
    let bound = (r.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64;
    low < bound
}

/// Continue the remote context `cx` in the light mode: the span takes the
/// caller's trace ID and sampling decision, or becomes a new root when `cx`
/// has no valid span context. Returns `false` when `span` is not known to a
/// light layer (the exporting pipeline handles it then).
pub(crate) fn set_parent(span: &tracing::Span, cx: Context) -> bool {
    span.with_subscriber(|(id, dispatch)| {
        let Some(sampler) = dispatch.downcast_ref::<LightLayer>().map(|l| l.sampler) else {
            return false;
        };
        let Some(registry) = dispatch.downcast_ref::<Registry>() else {
            return false;
        };
        let Some(span) = registry.span(id) else {
            return false;
        };
        let mut ext = span.extensions_mut();
        let Some(ids) = ext.get_mut::<SpanIds>() else {
            return false;
        };
        let remote = cx.span().span_context().clone();
        if remote.is_valid() {
            ids.trace_id = remote.trace_id();
            ids.sampled = decide(sampler, ids.trace_id, Some(remote.is_sampled()));
            // The caller's ID: only the caller knows whether it is random.
            ids.random = remote.trace_flags().to_u8() & RANDOM_FLAG != 0;
        } else {
            ids.trace_id = random::trace_id();
            ids.sampled = decide(sampler, ids.trace_id, None);
            ids.random = true;
        }
        if let Some(record) = ext.get_mut::<Recording>() {
            if remote.is_valid() {
                record.parent_span_id = remote.span_id();
                record.parent_is_remote = true;
                record.trace_state = remote.trace_state().header();
            } else {
                record.parent_span_id = opentelemetry::trace::SpanId::INVALID;
                record.parent_is_remote = false;
                record.trace_state.clear();
            }
        }
        ext.insert(Remote(Arc::new(cx)));
        true
    })
    .unwrap_or(false)
}

/// The OpenTelemetry context of the current span in the light mode: its IDs,
/// the remote parent's `tracestate` and the request's baggage.
pub(crate) fn current_context() -> Option<Context> {
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let span = dispatch.downcast_ref::<Registry>()?.span(id)?;
            let ids = span.extensions().get::<SpanIds>().copied()?;
            let remote = span
                .scope()
                .find_map(|s| s.extensions().get::<Remote>().map(|r| r.0.clone()));
            let base = remote.as_deref().cloned().unwrap_or_default();
            let state: TraceState = base.span().span_context().trace_state().clone();
            let flags =
                TraceFlags::new(u8::from(ids.sampled) | if ids.random { RANDOM_FLAG } else { 0 });
            let sc = SpanContext::new(ids.trace_id, ids.span_id, flags, false, state);
            Some(base.with_remote_span_context(sc))
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::headers;
    use http::HeaderMap;
    use tracing_subscriber::layer::SubscriberExt;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

    #[test]
    fn light_mode_continues_the_callers_trace_and_propagates_tracestate_and_baggage() {
        let subscriber = Registry::default().with(LightLayer::default());
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("connection");
            let _o = outer.enter();
            let span = tracing::info_span!("request");
            let h = headers(&[
                ("traceparent", &format!("00-{TRACE}-b7ad6b7169203331-00")),
                ("tracestate", "congo=t61rcWkgMzE"),
                ("baggage", "userId=alice"),
            ]);
            super::super::set_parent_from_headers(&span, &h);
            let tp = super::super::traceparent(&span).unwrap();
            let tp = tp.to_str().unwrap();
            assert!(
                tp.starts_with(&format!("00-{TRACE}-")) && tp.ends_with("-00"),
                "{tp}"
            );
            span.in_scope(|| {
                tracing::info_span!("db").in_scope(|| {
                    let mut out = HeaderMap::new();
                    crate::propagation::inject(&mut out);
                    let child_tp = out["traceparent"].to_str().unwrap();
                    assert!(child_tp.starts_with(&format!("00-{TRACE}-")), "{child_tp}");
                    assert_ne!(child_tp, tp, "the child has its own span ID");
                    assert_eq!(out["tracestate"], "congo=t61rcWkgMzE");
                    assert_eq!(out["baggage"], "userId=alice");
                });
            });
        });
    }

    #[test]
    fn light_mode_without_traceparent_starts_a_new_root_even_inside_another_span() {
        let subscriber = Registry::default().with(LightLayer::default());
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("connection");
            let _o = outer.enter();
            let span = tracing::info_span!("request");
            super::super::set_parent_from_headers(
                &span,
                &headers(&[("traceparent", "00-garbage")]),
            );
            let outer_tp = super::super::traceparent(&outer).unwrap();
            let tp = super::super::traceparent(&span).unwrap();
            assert_ne!(
                outer_tp.to_str().unwrap()[3..35],
                tp.to_str().unwrap()[3..35]
            );
            assert!(
                tp.to_str().unwrap().ends_with("-03"),
                "sampled, and random: the crate generated the trace ID"
            );
        });
    }

    #[test]
    fn light_mode_keeps_the_callers_random_flag_and_sets_it_on_its_own_trace_ids() {
        let subscriber = Registry::default().with(LightLayer::default());
        tracing::subscriber::with_default(subscriber, || {
            for (sent, kept) in [("01", "-01"), ("03", "-03"), ("02", "-02"), ("00", "-00")] {
                let span = tracing::info_span!("request");
                super::super::set_parent_from_headers(
                    &span,
                    &headers(&[(
                        "traceparent",
                        &format!("00-{TRACE}-b7ad6b7169203331-{sent}"),
                    )]),
                );
                let tp = super::super::traceparent(&span).unwrap();
                assert!(tp.to_str().unwrap().ends_with(kept), "{sent}: {tp:?}");
                span.in_scope(|| {
                    let mut out = HeaderMap::new();
                    crate::propagation::inject(&mut out);
                    let child = out["traceparent"].to_str().unwrap();
                    assert!(child.ends_with(kept), "outbound {sent}: {child}");
                });
            }
            let root = tracing::info_span!("request");
            super::super::set_parent_from_headers(&root, &HeaderMap::new());
            let tp = super::super::traceparent(&root).unwrap();
            assert!(tp.to_str().unwrap().ends_with("-03"), "{tp:?}");
        });
    }

    #[test]
    fn light_mode_takes_the_sampling_decision_of_the_installed_layers_sampler() {
        let subscriber = Registry::default().with(LightLayer::new(Sampler::AlwaysOff));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request");
            super::super::set_parent_from_headers(
                &span,
                &headers(&[("traceparent", &format!("00-{TRACE}-b7ad6b7169203331-01"))]),
            );
            let tp = super::super::traceparent(&span).unwrap();
            let tp = tp.to_str().unwrap();
            assert!(tp.starts_with(&format!("00-{TRACE}-")), "{tp}");
            assert!(
                tp.ends_with("-00"),
                "always_off overrides the caller's flag: {tp}"
            );
        });
    }
}

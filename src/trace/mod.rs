//! TEMPORARY STUB by the lead so the crate compiles; helper-2 replaces this file.
#![allow(missing_docs, dead_code)]
pub mod propagation {}
pub(crate) struct TracePipeline;
impl TracePipeline {
    pub(crate) fn new(_c: &crate::Config) -> Result<Self, crate::Error> {
        Ok(Self)
    }
    pub(crate) fn layer<S>(
        &self,
    ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry::trace::noop::NoopTracer>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
    }
    pub(crate) fn shutdown(&self, _t: std::time::Duration) -> Result<(), crate::Error> {
        Ok(())
    }
}
pub(crate) fn ids(
    _e: &tracing_subscriber::registry::Extensions<'_>,
) -> Option<(opentelemetry::TraceId, opentelemetry::SpanId)> {
    None
}
pub(crate) fn set_parent_from_headers(_s: &tracing::Span, _h: &http::HeaderMap) {}
pub(crate) fn traceparent(_s: &tracing::Span) -> Option<http::HeaderValue> {
    None
}

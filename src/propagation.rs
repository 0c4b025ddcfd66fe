//! W3C trace propagation across service boundaries: [`inject`] the current
//! trace into the headers of an outgoing call, [`extract`] a caller's trace
//! from the headers of a message that did not arrive through
//! [`layer()`](crate::layer) (a queue consumer, a job runner).
//!
//! Incoming HTTP requests need none of this: the layer continues the caller's
//! trace by itself.
//!
//! Headers written and read: `traceparent` and `tracestate`
//! ([W3C Trace Context](https://www.w3.org/TR/trace-context-2/)), `baggage`
//! ([W3C Baggage](https://www.w3.org/TR/baggage/), at most 64 members and
//! 8192 bytes), and `x-request-id`, so the downstream service's log lines
//! share the caller's `requestId`.
//!
//! ```
//! // In a handler behind `glimpse_obs::layer()`: call another service.
//! let mut headers = http::HeaderMap::new();
//! glimpse_obs::propagation::inject(&mut headers);
//! // e.g. reqwest::Client::new().get(url).headers(headers).send().await
//! ```

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{Context, trace::TraceContextExt};

use crate::{
    ids::RequestId,
    trace::{light, w3c},
};

/// The request-ID header written by [`inject`].
const X_REQUEST_ID: HeaderName = crate::ids::X_REQUEST_ID;

/// Write `traceparent`, `tracestate`, `baggage` and `x-request-id` of the
/// current span and request into `headers`, replacing values already there.
///
/// The downstream service sees the current span (for instance the server span
/// of the request being handled, or a `db`/client span inside it) as its
/// parent. Outside any span nothing trace-related is written; outside a
/// request no `x-request-id` is written.
///
/// ```
/// use glimpse_obs::propagation;
///
/// async fn call_billing(client: &reqwest::Client) -> Result<(), reqwest::Error> {
///     let mut headers = http::HeaderMap::new();
///     propagation::inject(&mut headers);
///     client.post("http://billing/charges").headers(headers).send().await?;
///     Ok(())
/// }
/// ```
pub fn inject(headers: &mut HeaderMap) {
    w3c::inject_context(&current_context(), headers);
    if let Some(id) = RequestId::current()
        && let Ok(value) = HeaderValue::from_str(id.as_str())
    {
        headers.insert(X_REQUEST_ID, value);
    }
}

/// The caller's trace context from `headers`, for an entry point that is not
/// an HTTP request handled by [`layer()`](crate::layer): the remote parent from
/// exactly one valid `traceparent` (with its `tracestate`), and the `baggage`.
/// Without a valid `traceparent` the context has no parent, so a span given
/// it starts a new trace.
///
/// Give it to the consumer's span with [`set_parent`] before entering it:
///
/// ```
/// use glimpse_obs::propagation;
///
/// fn handle_message(headers: &http::HeaderMap, body: &[u8]) {
///     let span = tracing::info_span!("consume orders", otel.kind = "consumer");
///     propagation::set_parent(&span, propagation::extract(headers));
///     let _entered = span.enter();
///     tracing::info!(bytes = body.len(), "order received");
/// }
/// ```
pub fn extract(headers: &HeaderMap) -> Context {
    w3c::Incoming::from_headers(headers).into_context()
}

/// Make `cx` (usually from [`extract`]) the parent of `span`. Call it before
/// the span is first entered; returns `false` when the span was already
/// entered, is disabled, or tracing is not initialised.
///
/// ```
/// let span = tracing::info_span!("nightly job");
/// let cx = glimpse_obs::propagation::extract(&http::HeaderMap::new());
/// // Without glimpse_obs::init() there is no tracer to take the parent.
/// assert!(!glimpse_obs::propagation::set_parent(&span, cx));
/// ```
pub fn set_parent(span: &tracing::Span, cx: Context) -> bool {
    !span.is_disabled() && light::set_parent(span, cx)
}

/// The OpenTelemetry context of the current span: one attached explicitly
/// (`Context::attach`), else the current `tracing` span's IDs with its
/// remote parent's `tracestate` and baggage.
fn current_context() -> Context {
    let attached = Context::current();
    if attached.span().span_context().is_valid() {
        return attached;
    }
    light::current_context().unwrap_or(attached)
}

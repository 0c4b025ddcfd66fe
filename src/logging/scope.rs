//! The request scope: per-request values that every log line inside the
//! request's span tree carries (`requestId`, `userId`).
//!
//! The scope lives in the request span's registry extensions, so it follows
//! the span into spawned tasks (`.in_current_span()`) and never leaks into
//! another request: each request has its own span.

use std::sync::{Arc, Mutex};

use tracing_subscriber::{Registry, registry::LookupSpan};

use crate::ids::RequestId;

/// Values of one request, shared between the layer and the formatter.
#[derive(Debug)]
pub(crate) struct RequestScope {
    pub(crate) request_id: RequestId,
    user: Mutex<Option<UserId>>,
}

#[derive(Debug, Clone)]
pub(crate) struct UserId {
    pub(crate) raw: Arc<str>,
    /// `,"userId":"…"` pre-rendered once per record.
    pub(crate) json: Arc<[u8]>,
}

impl RequestScope {
    pub(crate) fn new(request_id: RequestId) -> Self {
        Self {
            request_id,
            user: Mutex::new(None),
        }
    }

    /// Append `,"requestId":"…"`. A request ID is 1–128 characters of
    /// `[A-Za-z0-9._:@-]` (validated or generated), none of which JSON
    /// escapes, so it is copied as is.
    pub(crate) fn request_id_json_into(&self, line: &mut Vec<u8>) {
        line.extend_from_slice(b",\"requestId\":\"");
        line.extend_from_slice(self.request_id.as_str().as_bytes());
        line.push(b'"');
    }

    pub(crate) fn set_user(&self, id: &str) {
        let mut json = Vec::with_capacity(id.len() + 12);
        json.extend_from_slice(b",\"userId\":");
        super::json::string_into(&mut json, id);
        let user = UserId {
            raw: Arc::from(id),
            json: Arc::from(json),
        };
        *self.user.lock().unwrap_or_else(|e| e.into_inner()) = Some(user);
    }

    pub(crate) fn user(&self) -> Option<UserId> {
        self.user.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Span extension marking the request span.
pub(crate) struct ScopeExt(pub(crate) Arc<RequestScope>);

/// Attach `scope` to `span` (the request span just created), and return the
/// span's `traceparent` if its IDs are known already (one registry look-up
/// for both: this runs per request).
pub(crate) fn attach(span: &tracing::Span, scope: Arc<RequestScope>) -> Option<http::HeaderValue> {
    span.with_subscriber(|(id, dispatch)| {
        let span = dispatch.downcast_ref::<Registry>()?.span(id)?;
        let mut ext = span.extensions_mut();
        ext.insert(ScopeExt(scope));
        ext.get_mut::<crate::ids::SpanIds>()
            .map(|ids| ids.traceparent())
    })
    .flatten()
}

/// The scope of the request the current span belongs to, if any.
pub(crate) fn current() -> Option<Arc<RequestScope>> {
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<Registry>()?;
            let span = registry.span(id)?;
            span.scope()
                .find_map(|s| s.extensions().get::<ScopeExt>().map(|e| e.0.clone()))
        })
        .flatten()
}

impl RequestId {
    /// The ID of the request the current span belongs to: the same value as
    /// the extractor, from code that has no access to the request (a
    /// repository, a spawned task instrumented with the request's span).
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use glimpse_obs::RequestId;
    ///
    /// async fn handler() -> String {
    ///     RequestId::current().map(|id| id.to_string()).unwrap_or_default()
    /// }
    /// let app: Router = Router::new().route("/", get(handler)).layer(glimpse_obs::layer());
    /// assert!(RequestId::current().is_none()); // outside a request
    /// ```
    pub fn current() -> Option<Self> {
        current().map(|s| s.request_id.clone())
    }
}

/// Record the authenticated user of the current request: the access line and
/// every later log line of the request (also from tasks spawned inside the
/// request's span) carry `userId`, and the server span gets `enduser.id`.
///
/// Returns `false`, and does nothing, outside a request handled by
/// [`crate::layer`].
///
/// ```
/// use axum::{Router, routing::get};
///
/// async fn me() -> &'static str {
///     // e.g. after validating a session
///     glimpse_obs::record_user_id("user123");
///     tracing::info!("profile viewed"); // carries "userId":"user123"
///     "ok"
/// }
/// let app: Router = Router::new().route("/me", get(me)).layer(glimpse_obs::layer());
/// ```
pub fn record_user_id(id: impl AsRef<str>) -> bool {
    match current() {
        Some(scope) => {
            scope.set_user(id.as_ref());
            true
        }
        None => false,
    }
}

/// The user recorded by [`record_user_id`] for the current request, if any
/// (for audit actors and outbound calls).
///
/// ```
/// assert_eq!(glimpse_obs::current_user_id(), None); // outside a request
/// ```
pub fn current_user_id() -> Option<String> {
    current().and_then(|s| s.user()).map(|u| u.raw.to_string())
}

//! The request scope: per-request values that every log line inside the
//! request's span tree carries (`requestId`, `userId`).
//!
//! The scope lives in the request span's registry extensions, so it follows
//! the span into spawned tasks (`.in_current_span()`) and never leaks into
//! another request: each request has its own span.

use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::{
    Registry,
    registry::{LookupSpan, SpanData},
};

use crate::ids::{
    RequestId,
    response::{ResponseExt, ResponseFields, ResponseSource},
};

/// Values of one request, shared between the layer and the formatter.
#[derive(Debug)]
pub(crate) struct RequestScope {
    pub(crate) request_id: RequestId,
    /// The caller's `x-request-id` when the layer does not trust it
    /// (`clientRequestId`).
    pub(crate) client_request_id: Option<RequestId>,
    user: Mutex<Option<UserId>>,
    /// The response, for the trace layer (`ids::response`).
    response: OnceLock<ResponseFields>,
}

impl ResponseSource for RequestScope {
    fn response(&self) -> Option<&ResponseFields> {
        self.response.get()
    }
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
            client_request_id: None,
            user: Mutex::new(None),
            response: OnceLock::new(),
        }
    }

    /// A scope that also carries the caller's request ID as `clientRequestId`.
    pub(crate) fn with_client_request_id(mut self, id: Option<RequestId>) -> Self {
        self.client_request_id = id;
        self
    }

    /// Append `,"requestId":"…"` (and `,"clientRequestId":"…"`). A request ID is 1–128 characters of
    /// `[A-Za-z0-9._:@-]` (validated or generated), none of which JSON
    /// escapes, so it is copied as is.
    pub(crate) fn request_id_json_into(&self, line: &mut Vec<u8>) {
        line.extend_from_slice(b",\"requestId\":\"");
        line.extend_from_slice(self.request_id.as_str().as_bytes());
        line.push(b'"');
        if let Some(client) = &self.client_request_id {
            line.extend_from_slice(b",\"clientRequestId\":\"");
            line.extend_from_slice(client.as_str().as_bytes());
            line.push(b'"');
        }
    }

    pub(crate) fn set_user(&self, id: &str) {
        // Capped, so a caller who passes a token cannot make every line of
        // the request carry it in full.
        let (kept, cut) = super::redact::cap(id, MAX_USER_ID);
        let id = if cut {
            format!("{kept}{}", super::redact::TRUNCATED_SUFFIX)
        } else {
            kept.to_owned()
        };
        let mut json = Vec::with_capacity(id.len() + 12);
        json.extend_from_slice(b",\"userId\":");
        super::json::string_into(&mut json, &id);
        let user = UserId {
            raw: Arc::from(id.as_str()),
            json: Arc::from(json),
        };
        *self.user.lock().unwrap_or_else(|e| e.into_inner()) = Some(user);
    }

    pub(crate) fn user(&self) -> Option<UserId> {
        self.user.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Hand the response to the trace layer; a second call keeps the first.
    pub(crate) fn set_response(&self, fields: ResponseFields) {
        let _ = self.response.set(fields);
    }
}

/// The longest `userId` kept, in bytes; a longer one is cut and ends with
/// [`TRUNCATED_SUFFIX`](super::redact::TRUNCATED_SUFFIX).
pub(crate) const MAX_USER_ID: usize = 128;

/// Whether `id` looks like a credential rather than a user ID: an
/// `Authorization` value (`Bearer …`, `Basic …`) or a JWT (`eyJ…` in three
/// dot-separated parts).
fn looks_like_credential(id: &str) -> bool {
    let b = id.as_bytes();
    let scheme = |p: &[u8]| b.len() > p.len() && b[..p.len()].eq_ignore_ascii_case(p);
    scheme(b"bearer ")
        || scheme(b"basic ")
        || (id.starts_with("eyJ") && id.bytes().filter(|&c| c == b'.').count() == 2)
}

/// Span extension marking the request span.
pub(crate) struct ScopeExt(pub(crate) Arc<RequestScope>);

/// What [`attach`] learned of the request span.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Attached {
    /// The span's IDs, if they are known already.
    pub(crate) ids: Option<crate::ids::SpanIds>,
    /// The span has no enclosing span: its log lines take their IDs and
    /// request fields from the request alone, with no span scope to walk.
    pub(crate) root: bool,
}

/// Attach `scope` to `span` (the request span just created), and return the
/// span's IDs if they are known already and whether it is a root (one
/// registry look-up for all: this runs per request). The caller keeps them
/// for the response's `traceparent`, the exemplar and the access line,
/// which then need no look-up of their own.
///
/// `response`: the trace layer reads the response from `scope` when the
/// span closes (`ids::response`), rather than from fields recorded on it.
pub(crate) fn attach(span: &tracing::Span, scope: Arc<RequestScope>, response: bool) -> Attached {
    span.with_subscriber(|(id, dispatch)| {
        let data = dispatch.downcast_ref::<Registry>()?.span_data(id)?;
        let root = data.parent().is_none();
        let mut ext = data.extensions_mut();
        if response {
            ext.insert(ResponseExt(scope.clone()));
        }
        ext.insert(ScopeExt(scope));
        let ids = ext.get_mut::<crate::ids::SpanIds>().map(|ids| *ids);
        Some(Attached { ids, root })
    })
    .flatten()
    .unwrap_or_default()
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
/// **Pass only an identity your service has authenticated** (the subject
/// of a verified session or token), never a value the caller sent as is:
/// `userId` lands in 7-year payment and audit lines, so an unverified value
/// lets a caller write another user's name into them. Pass the user's
/// opaque ID, never the token itself or an e-mail address.
///
/// Returns `false`, and does nothing, outside a request handled by
/// [`crate::layer`], and when `id` looks like a credential (`Bearer …`,
/// `Basic …`, a JWT): a token is never written as `userId` nor as the
/// span's `enduser.id`. An ID longer than 128 bytes is cut and
/// marked with [`TRUNCATED_SUFFIX`](crate::logging::redact::TRUNCATED_SUFFIX).
///
/// ```
/// use axum::{Router, routing::get};
///
/// async fn me() -> &'static str {
///     // After validating the session: its subject, not the cookie.
///     glimpse_obs::record_user_id("user123");
///     tracing::info!("profile viewed"); // carries "userId":"user123"
///     "ok"
/// }
/// let app: Router = Router::new().route("/me", get(me)).layer(glimpse_obs::layer());
/// ```
pub fn record_user_id(id: impl AsRef<str>) -> bool {
    if looks_like_credential(id.as_ref()) {
        return false;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_not_user_ids() {
        for token in [
            "Bearer abc",
            "bearer user-42",
            "Basic dXNlcjpwYXNz",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        ] {
            assert!(looks_like_credential(token), "{token}");
            assert!(!record_user_id(token));
        }
        for id in [
            "user-42",
            "0190b2a4-8d2e-7c1a-9f00-1234567890ab",
            "eyJ",
            "bearer",
        ] {
            assert!(!looks_like_credential(id), "{id}");
        }
    }

    #[test]
    fn long_user_ids_are_cut_and_marked() {
        let scope = RequestScope::new(RequestId::generate());
        scope.set_user(&"é".repeat(100));
        let user = scope.user().unwrap();
        assert!(user.raw.ends_with(crate::logging::redact::TRUNCATED_SUFFIX));
        assert!(user.raw.len() <= MAX_USER_ID + crate::logging::redact::TRUNCATED_SUFFIX.len());
    }
}

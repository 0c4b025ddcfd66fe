//! The request ID: validated from `x-request-id` or generated (UUID v7).

use std::{fmt, sync::Arc};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::{HeaderMap, HeaderName, StatusCode, request::Parts};

/// The default request-ID header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The ID of the current request: the caller's valid `x-request-id`, or a
/// fresh time-ordered UUID v7. Handlers extract it:
///
/// ```
/// use axum::{Router, routing::get};
/// use glimpse_obs::RequestId;
///
/// async fn handler(id: RequestId) -> String {
///     format!("your request is {id}")
/// }
/// let app: Router = Router::new().route("/", get(handler)).layer(glimpse_obs::layer());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A new UUID v7 ID.
    ///
    /// ```
    /// let id = glimpse_obs::RequestId::generate();
    /// assert_eq!(id.as_str().len(), 36); // hyphenated UUID
    /// ```
    pub fn generate() -> Self {
        // Milliseconds and 80 random bits from the thread-local generator the
        // trace IDs use, instead of `Uuid::now_v7`'s process-wide counter
        // lock. IDs stay ordered by millisecond, which is what log search needs.
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let random = super::random::trace_id().to_bytes();
        let mut bits = [0u8; 10];
        bits.copy_from_slice(&random[..10]);
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid();
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        Self(Arc::from(&*id.hyphenated().encode_lower(&mut buf)))
    }

    /// `value` if it is a valid request ID: 1–128 characters of
    /// `[A-Za-z0-9._:@-]`.
    ///
    /// ```
    /// use glimpse_obs::RequestId;
    /// assert_eq!(RequestId::parse("req-42").unwrap().as_str(), "req-42");
    /// assert!(RequestId::parse("has space").is_none());
    /// ```
    pub fn parse(value: &str) -> Option<Self> {
        is_valid(value.as_bytes()).then(|| Self(Arc::from(value)))
    }

    /// The caller's ID when `headers` carry exactly one valid `name` header;
    /// otherwise a fresh one. An invalid value is never reflected.
    pub(crate) fn from_headers(headers: &HeaderMap, name: &HeaderName) -> Self {
        Self::from_caller(headers, name).unwrap_or_else(Self::generate)
    }

    /// The caller's ID when `headers` carry exactly one valid `name` header.
    pub(crate) fn from_caller(headers: &HeaderMap, name: &HeaderName) -> Option<Self> {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            // Valid bytes are ASCII, so `to_str` cannot fail.
            (Some(v), None) if is_valid(v.as_bytes()) => {
                v.to_str().ok().map(|s| Self(Arc::from(s)))
            }
            _ => None,
        }
    }
}

fn is_valid(v: &[u8]) -> bool {
    (1..=128).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&&*self.0).finish()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<RequestId>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "RequestId needs glimpse_obs::layer() on the router",
        ))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<RequestId>().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_REQUEST_ID, http::HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn a_single_valid_header_is_kept() {
        let id = RequestId::from_headers(&headers(&[b"abc-123_x.y:z@w"]), &X_REQUEST_ID);
        assert_eq!(id.as_str(), "abc-123_x.y:z@w");
    }

    #[test]
    fn invalid_oversized_empty_and_repeated_headers_are_replaced_by_a_uuid_v7() {
        let long = "a".repeat(129);
        for h in [
            headers(&[b"has space"]),
            headers(&[long.as_bytes()]),
            headers(&[b""]),
            headers(&[b"a", b"b"]),
            headers(&[b"<script>"]),
            headers(&[b"caf\xc3\xa9"]),
            HeaderMap::new(),
        ] {
            let id = RequestId::from_headers(&h, &X_REQUEST_ID);
            let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
            assert_eq!(uuid.get_version_num(), 7);
        }
        assert!(RequestId::parse(&"a".repeat(128)).is_some());
    }
}

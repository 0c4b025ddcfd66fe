//! [`Middleware`]: the `reqwest-middleware` middleware (feature `reqwest`).

use std::fmt::{self, Display};

use http::Extensions;
use reqwest_middleware::{Next, Result};
use tracing::Instrument;

use super::call::{Call, Failure, Target};

/// A [`reqwest_middleware::Middleware`]: one CLIENT span, the propagation
/// headers and `http_client_request_duration_seconds` per call, and a WARN
/// line for a 5xx, a timeout or a failed connection; see the
/// [module docs](crate::client).
///
/// Add it last (closest to the network) when other middlewares retry, so
/// each attempt is a call of its own with its own span.
///
/// ```
/// use reqwest_middleware::ClientBuilder;
///
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(glimpse_obs::client::Middleware::default())
///     .build();
///
/// async fn charge(client: &reqwest_middleware::ClientWithMiddleware) -> reqwest_middleware::Result<()> {
///     // traceparent names this call's span; the call is timed by peer host.
///     client.post("http://billing.internal/charges").send().await?;
///     Ok(())
/// }
/// # let _ = (client, charge);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Middleware {
    _private: (),
}

impl Middleware {
    /// The middleware; it has no settings (the label cap and the exporter
    /// come from the installed telemetry).
    ///
    /// ```
    /// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
    ///     .with(glimpse_obs::client::Middleware::new())
    ///     .build();
    /// # let _ = client;
    /// ```
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Middleware {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<reqwest::Response> {
        let call = {
            let url = req.url();
            Call::open(&Target::new(
                req.method(),
                url.scheme(),
                url.host_str().unwrap_or("unknown"),
                url.port(),
                url.path(),
            ))
        };
        call.inject(req.headers_mut());
        let out = next
            .run(req, extensions)
            .instrument(call.span().clone())
            .await;
        match &out {
            Ok(res) => call.response(res.status().as_u16()),
            Err(e) => call.failure(failure(e), &WithoutUrl(e)),
        }
        out
    }
}

/// What kind of failure `e` is.
fn failure(e: &reqwest_middleware::Error) -> Failure {
    match e {
        reqwest_middleware::Error::Reqwest(e) if e.is_timeout() => Failure::Timeout,
        reqwest_middleware::Error::Reqwest(e) if e.is_connect() => Failure::Connect,
        reqwest_middleware::Error::Reqwest(e) => Failure::of(e),
        reqwest_middleware::Error::Middleware(e) => Failure::of(e.as_ref()),
    }
}

/// The error and its sources, the URL (which may carry a query string or
/// credentials) left out: the line has `url` already.
struct WithoutUrl<'a>(&'a reqwest_middleware::Error);

impl Display for WithoutUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (top, mut source): (String, _) = match self.0 {
            reqwest_middleware::Error::Reqwest(e) => {
                let mut text = e.to_string();
                if let Some(url) = e.url() {
                    text = text.replace(&format!(" for url ({url})"), "");
                    text = text.replace(url.as_str(), "");
                }
                (text, std::error::Error::source(e))
            }
            reqwest_middleware::Error::Middleware(e) => (e.to_string(), e.source()),
        };
        f.write_str(&top)?;
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

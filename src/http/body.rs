//! [`ResponseBody`]: the response body, timed to its end.
//!
//! The request is finished (duration, access line, span status) when the
//! body's last frame is handed to the server, not when its head is: a
//! streamed or slow body (SSE, a large export) counts its whole time, as
//! tower-http's `on_eos` does. A body dropped before its end (client gone)
//! finishes the request the cancelled way (`499`, `cancelled: true`).

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::pending::Pending;

pin_project! {
    /// Response body of [`ObsService`](super::ObsService): the inner
    /// service's body, unchanged, with the request finished at its end.
    /// Empty for the `500` answering a handler's panic.
    ///
    /// ```
    /// use http_body::Body as _;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), std::convert::Infallible> {
    /// let svc = glimpse_obs::layer().layer(service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
    /// }));
    /// let res: http::Response<glimpse_obs::ResponseBody<String>> =
    ///     svc.oneshot(http::Request::new(String::new())).await?;
    /// assert_eq!(res.body().size_hint().exact(), Some(2));
    /// # Ok(()) }
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        inner: Option<B>,
        // The request, until the body's end (or its drop) finishes it.
        state: Option<Box<Pending>>,
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("empty", &self.inner.is_none())
            .field("in_flight", &self.state.is_some())
            .finish()
    }
}

impl<B> ResponseBody<B> {
    /// The inner service's body; `None` for the `500` answering a panic.
    ///
    /// ```
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), std::convert::Infallible> {
    /// let svc = glimpse_obs::layer().layer(service_fn(|_req: http::Request<String>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
    /// }));
    /// let res = svc.oneshot(http::Request::new(String::new())).await?;
    /// assert_eq!(res.body().get_ref().map(String::as_str), Some("hi"));
    /// # Ok(()) }
    /// ```
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.as_ref()
    }

    /// `inner`, finishing `state` (when `Some`) at its end.
    pub(super) fn new(inner: B, state: Option<Box<Pending>>) -> Self {
        Self {
            inner: Some(inner),
            state,
        }
    }

    /// The empty body of the `500` answering a panic.
    pub(super) fn empty() -> Self {
        Self {
            inner: None,
            state: None,
        }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(mut inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(inner.as_mut().poll_frame(cx));
        if let Some(state) = this.state.as_mut() {
            let ended = match &frame {
                Some(Ok(f)) => {
                    if let Some(data) = f.data_ref() {
                        state.sent(data.remaining());
                    }
                    // Servers stop polling once the body says it ended
                    // (hyper does): finish at the last frame, not at a
                    // `None` that may never be asked for.
                    f.is_trailers() || inner.is_end_stream()
                }
                // A body that fails ends the request there, with the
                // status already sent.
                Some(Err(_)) | None => true,
            };
            if ended && let Some(mut state) = this.state.take() {
                state.end();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

//! [`ResponseFuture`]: answers when the inner service does (or with a `500`
//! when it panics), sets the response headers, and hands the request to
//! the [`ResponseBody`], which finishes it at the body's end.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use super::{
    body::ResponseBody,
    pending::{Caught, Pending},
};
use crate::ids::panic as panics;

pin_project! {
    /// Response future of [`ObsService`](super::ObsService).
    pub struct ResponseFuture<F> {
        // `None` when the inner service's `call` panicked.
        #[pin]
        inner: Option<F>,
        // Boxed: the response future and the response (with its body) are
        // moved several times on their way to the server, and every move
        // copied the whole request state inline (a quarter of the layer's
        // memcpy time in `benches/layer.rs`); one allocation costs less.
        state: Option<Box<Pending>>,
    }
}

impl<F> ResponseFuture<F> {
    /// A request the layer does not instrument (an excluded route).
    pub(super) fn passthrough(inner: F) -> Self {
        Self {
            inner: Some(inner),
            state: None,
        }
    }

    pub(super) fn new(inner: F, pending: Box<Pending>) -> Self {
        Self {
            inner: Some(inner),
            state: Some(pending),
        }
    }

    /// The inner service's `call` panicked: answer `500`.
    pub(super) fn panicked(mut pending: Box<Pending>, caught: Caught) -> Self {
        pending.panic = Some(caught);
        Self {
            inner: None,
            state: Some(pending),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(state) = this.state.as_mut() else {
            return match this.inner.as_pin_mut() {
                Some(inner) => inner
                    .poll(cx)
                    .map_ok(|res| res.map(|b| ResponseBody::new(b, None))),
                // Unreachable: a passthrough future always has its inner one.
                None => Poll::Pending,
            };
        };
        if let Some(inner) = this.inner.as_pin_mut() {
            let polled = {
                let _entered = state.span.enter();
                // Catching costs nothing until a panic (landing pads only).
                panics::catch(|| inner.poll(cx))
            };
            match polled {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(Ok(res))) => {
                    let (mut parts, body) = res.into_parts();
                    state.status = parts.status.as_u16();
                    state.set_headers(&mut parts.headers);
                    let mut pending = this.state.take();
                    if let Some(p) = pending.as_mut()
                        && p.ends_at_head(&body)
                    {
                        p.end();
                        pending = None;
                    }
                    return Poll::Ready(Ok(Response::from_parts(
                        parts,
                        ResponseBody::new(body, pending),
                    )));
                }
                Ok(Poll::Ready(Err(e))) => {
                    state.finish(500);
                    *this.state = None;
                    return Poll::Ready(Err(e));
                }
                Err(payload) => state.panic = Some(Caught::new(&*payload)),
            }
        }
        // The handler panicked (in `call` or in a poll): `500`, with the
        // request's headers, recorded as such.
        let mut res = Response::new(ResponseBody::empty());
        *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        state.set_headers(res.headers_mut());
        state.finish(500);
        *this.state = None;
        Poll::Ready(Ok(res))
    }
}

// Needs the `testing` feature's `SharedBuffer` (and serde_json).
#[cfg(all(test, feature = "testing"))]
mod tests {
    use std::{convert::Infallible, time::Duration};

    use tower::{Layer, ServiceExt, service_fn};
    use tracing_subscriber::layer::SubscriberExt;

    use crate::{Config, Telemetry, testing::SharedBuffer};

    fn telemetry(logs: &SharedBuffer) -> Telemetry {
        Config::default()
            .service("future-test")
            .metrics_addr(None)
            .process_metrics(false)
            .slow_request(Duration::from_millis(30))
            .log_writer(logs.clone())
            .build()
            .unwrap()
    }

    /// Drive `svc` with one request to `/x` on a current-thread runtime under
    /// `telemetry`'s subscriber; `cancel_after` drops the future early.
    fn drive<S>(telemetry: &Telemetry, svc: S, cancel_after: Option<Duration>)
    where
        S: tower_service::Service<
                http::Request<String>,
                Response = http::Response<crate::ResponseBody<String>>,
                Error = Infallible,
            >,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let subscriber = tracing_subscriber::registry().with(telemetry.tracing_layer());
        tracing::subscriber::with_default(subscriber, || {
            rt.block_on(async {
                let call = svc.oneshot(http::Request::get("/x").body(String::new()).unwrap());
                match cancel_after {
                    Some(after) => {
                        let _ = tokio::time::timeout(after, call).await;
                    }
                    None => {
                        let res = call.await.unwrap();
                        read_to_end(res.into_body()).await;
                    }
                }
            });
        });
        assert!(telemetry.flush(Duration::from_secs(5)));
    }

    /// Read `body` to its end, as a server sends it.
    async fn read_to_end<B: http_body::Body + Unpin>(mut body: B) -> usize {
        let mut frames = 0;
        while let Some(frame) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            assert!(frame.is_ok(), "the body fails");
            frames += 1;
        }
        frames
    }

    fn access_line(logs: &SharedBuffer) -> serde_json::Value {
        logs.contents()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|l| l["message"] == "request completed")
            .unwrap_or_else(|| panic!("no access line in {}", logs.contents()))
    }

    #[test]
    fn a_5xx_response_is_an_error_line_and_counted_under_its_status() {
        let logs = SharedBuffer::new();
        let t = telemetry(&logs);
        let svc = t
            .http_layer()
            .layer(service_fn(|_req: http::Request<String>| async {
                let mut res = http::Response::new(String::new());
                *res.status_mut() = http::StatusCode::BAD_GATEWAY;
                Ok::<_, Infallible>(res)
            }));
        drive(&t, svc, None);
        let line = access_line(&logs);
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["http_status"], 502);
        assert!(t.render_metrics().lines().any(|l| {
            l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains("status=\"502\"")
        }),);
    }

    #[test]
    fn a_request_slower_than_the_threshold_is_a_warn_line() {
        let logs = SharedBuffer::new();
        let t = telemetry(&logs);
        let svc = t
            .http_layer()
            .layer(service_fn(|_req: http::Request<String>| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, Infallible>(http::Response::new(String::new()))
            }));
        drive(&t, svc, None);
        let line = access_line(&logs);
        assert_eq!(line["level"], "WARN");
        assert!(line["response_time"].as_f64().unwrap() >= 50.0, "{line}");
    }

    #[test]
    fn a_dropped_response_future_is_recorded_as_cancelled() {
        let logs = SharedBuffer::new();
        let t = telemetry(&logs);
        let svc = t
            .http_layer()
            .layer(service_fn(|_req: http::Request<String>| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, Infallible>(http::Response::new(String::new()))
            }));
        drive(&t, svc, Some(Duration::from_millis(20)));
        let line = access_line(&logs);
        assert_eq!(line["http_status"], 499);
        assert_eq!(line["cancelled"], true);
        assert_eq!(line["level"], "WARN");
        let text = t.render_metrics();
        assert!(
            text.lines()
                .any(|l| l.starts_with("http_server_active_requests{") && l.ends_with(" 0")),
            "the in-flight gauge is back to 0:\n{text}"
        );
    }
}

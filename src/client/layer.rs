//! [`ClientLayer`]: the tower layer for clients of `http::Request`s.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tower::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use super::call::{Call, Failure, Target};

/// A tower [`Layer`] for clients of `http::Request`s (hyper-util's `Client`,
/// a tonic `Channel`, any `tower::Service`): one CLIENT span, the
/// propagation headers and `http_client_request_duration_seconds` per call,
/// and a WARN line for a 5xx or a failed call; see the
/// [module docs](crate::client).
///
/// The wrapped service's error becomes a [`tower::BoxError`], as with
/// tower's own `Timeout`. Put the layer *outside* a timeout layer so a
/// timeout reaches it as an error (`status="timeout"`); a timeout outside
/// it drops the call, which is recorded as `cancelled`.
///
/// ```
/// use std::time::Duration;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let mut billing = ServiceBuilder::new()
///     .layer(glimpse_obs::client::ClientLayer::new())
///     .timeout(Duration::from_secs(2))
///     // In a service: hyper_util::client::legacy::Client, a tonic Channel…
///     .service_fn(|_req: http::Request<String>| async move {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("charged")))
///     });
/// let req = http::Request::post("http://billing.internal/charges").body(String::new())?;
/// let res = billing.ready().await?.call(req).await?;
/// assert_eq!(res.body(), "charged");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientLayer {
    _private: (),
}

impl ClientLayer {
    /// The layer; it has no settings (the label cap and the exporter come
    /// from the installed telemetry).
    ///
    /// ```
    /// let layer = glimpse_obs::client::ClientLayer::new();
    /// # let _ = layer;
    /// ```
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = ClientService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientService { inner }
    }
}

/// The service of [`ClientLayer`]: traces, times and logs each call of the
/// inner client.
///
/// ```
/// use tower::Layer;
///
/// let svc = glimpse_obs::client::ClientLayer::new().layer(tower::service_fn(
///     |_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) },
/// ));
/// let _inner = svc.get_ref();
/// ```
#[derive(Debug, Clone)]
pub struct ClientService<S> {
    inner: S,
}

impl<S> ClientService<S> {
    /// The inner client.
    ///
    /// ```
    /// use tower::Layer;
    /// let svc = glimpse_obs::client::ClientLayer::new().layer(7u8);
    /// assert_eq!(*svc.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner client, mutably.
    ///
    /// ```
    /// use tower::Layer;
    /// let mut svc = glimpse_obs::client::ClientLayer::new().layer(7u8);
    /// *svc.get_mut() += 1;
    /// assert_eq!(*svc.get_ref(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner client, unwrapped.
    ///
    /// ```
    /// use tower::Layer;
    /// let svc = glimpse_obs::client::ClientLayer::new().layer(7u8);
    /// assert_eq!(svc.into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<http::Request<B>> for ClientService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<RB>;
    type Error = BoxError;
    type Future = ClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let call = {
            let host = req
                .uri()
                .host()
                .is_none()
                .then(|| req.headers().get(http::header::HOST))
                .flatten();
            Call::open(&Target::from_uri(req.method(), req.uri(), host))
        };
        call.inject(req.headers_mut());
        let inner = call.span().in_scope(|| self.inner.call(req));
        ClientFuture {
            inner,
            call: Some(call),
        }
    }
}

pin_project! {
    /// The response future of [`ClientService`]: polls the call inside its
    /// span and records it when it ends (as `cancelled` when dropped first).
    pub struct ClientFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F> fmt::Debug for ClientFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientFuture")
            .field("done", &self.call.is_none())
            .finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ClientFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = match this.call.as_ref() {
            Some(call) => {
                let _entered = call.span().enter();
                ready!(this.inner.poll(cx))
            }
            None => ready!(this.inner.poll(cx)),
        };
        let call = this.call.take();
        Poll::Ready(match out {
            Ok(res) => {
                if let Some(call) = call {
                    call.response(res.status().as_u16());
                }
                Ok(res)
            }
            Err(e) => {
                let e: BoxError = e.into();
                if let Some(call) = call {
                    call.failure(Failure::of(&*e), &e);
                }
                Err(e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{ServiceExt, service_fn};

    use super::*;

    #[tokio::test]
    async fn the_inner_client_receives_the_request_and_its_answer_is_returned() {
        let svc = ClientLayer::new().layer(service_fn(|req: http::Request<()>| async move {
            Ok::<_, Infallible>(http::Response::new(format!(
                "{} {}",
                req.method(),
                req.uri()
            )))
        }));
        let req = http::Request::get("http://peer:81/a?b=c").body(()).unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.body(), "GET http://peer:81/a?b=c");
    }

    /// Without an exporter (IDs only, the lean span): each call still names
    /// its own span in `traceparent`, in the trace of the span it is made in.
    #[test]
    fn without_an_exporter_each_call_sends_its_own_span_id_in_the_callers_trace() {
        use tracing_subscriber::layer::SubscriberExt;
        let telemetry = crate::Config::default()
            .metrics_addr(None)
            .log_writer(std::io::sink())
            .build()
            .unwrap();
        let subscriber = tracing_subscriber::registry().with(telemetry.tracing_layer());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let seen = tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("job");
            let outer_tp = crate::trace::traceparent(&outer).unwrap();
            let svc = ClientLayer::new().layer(service_fn(|req: http::Request<()>| async move {
                let tp = req.headers().get("traceparent").cloned();
                Ok::<_, Infallible>(http::Response::new(tp))
            }));
            let tps: Vec<String> = (0..3)
                .map(|_| {
                    let req = http::Request::get("http://peer/").body(()).unwrap();
                    let fut =
                        tracing::Instrument::instrument(svc.clone().oneshot(req), outer.clone());
                    let res = rt.block_on(fut).unwrap();
                    res.into_body().unwrap().to_str().unwrap().to_owned()
                })
                .collect();
            (outer_tp.to_str().unwrap().to_owned(), tps)
        });
        let (outer_tp, tps) = seen;
        let mut ids: Vec<&str> = tps.iter().map(|tp| &tp[36..52]).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "{tps:?}");
        for tp in &tps {
            assert_eq!(tp[..36], outer_tp[..36], "same trace: {tp} vs {outer_tp}");
            assert_ne!(tp[36..52], outer_tp[36..52]);
        }
    }

    #[tokio::test]
    async fn an_inner_error_is_returned_boxed() {
        let svc = ClientLayer::new().layer(service_fn(|_: http::Request<()>| async {
            Err::<http::Response<()>, _>(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            ))
        }));
        let req = http::Request::get("http://peer/").body(()).unwrap();
        let err = svc.oneshot(req).await.unwrap_err();
        assert!(err.is::<std::io::Error>(), "{err}");
    }
}

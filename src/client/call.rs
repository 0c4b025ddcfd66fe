//! One outbound call, shared by the reqwest middleware and the tower layer:
//! the CLIENT span, the propagation headers written from inside it, and the
//! duration, span status and WARN line when the call ends.

use std::{
    fmt::{self, Display, Write as _},
    sync::RwLock,
    time::Instant,
};

use http::{HeaderMap, HeaderValue, Method};
use metrics::Histogram;
use tracing::field::Empty;

use super::CLIENT_TARGET;
use crate::metrics::{
    handles::{Family, Ref},
    names::{self, labels},
};

/// `status` label of a call that got no response in time.
pub(crate) const TIMEOUT: &str = "timeout";
/// `status` label of a call that got no response for another reason.
pub(crate) const ERROR: &str = "error";
/// `status` label of a call dropped by its caller before an answer.
pub(crate) const CANCELLED: &str = "cancelled";

/// Methods with a label of their own (the semantic conventions' list);
/// anything else is `_OTHER`.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The handles of one (peer host, method), resolved once (see
/// `metrics::handles`); statuses are added as they are seen.
pub(crate) struct PeerHandles {
    host: Box<str>,
    method: Box<str>,
    by_status: RwLock<Vec<(u16, Histogram)>>,
    timeout: Histogram,
    error: Histogram,
    cancelled: Histogram,
}

impl PeerHandles {
    fn histogram(&self, status: &str) -> Histogram {
        metrics::histogram!(names::HTTP_CLIENT_REQUEST_DURATION,
            labels::METHOD => self.method.to_string(),
            labels::SERVER_ADDRESS => self.host.to_string(),
            labels::STATUS => status.to_owned())
    }

    fn record_status(&self, status: u16, secs: f64) {
        if let Some((_, h)) = self
            .by_status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(s, _)| *s == status)
        {
            h.record(secs);
            return;
        }
        let h = self.histogram(itoa::Buffer::new().format(status));
        h.record(secs);
        self.by_status
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((status, h));
    }
}

/// Peer hosts and methods, each capped on its own: a new host past the cap
/// is `other` while the method keeps its value.
static PEERS: Family<PeerHandles> =
    Family::per_label(names::HTTP_CLIENT_REQUEST_DURATION, |host, method| {
        let h = |status: &'static str| {
            metrics::histogram!(names::HTTP_CLIENT_REQUEST_DURATION,
                labels::METHOD => method.to_owned(),
                labels::SERVER_ADDRESS => host.to_owned(),
                labels::STATUS => status)
        };
        PeerHandles {
            timeout: h(TIMEOUT),
            error: h(ERROR),
            cancelled: h(CANCELLED),
            host: host.into(),
            method: method.into(),
            by_status: RwLock::new(Vec::new()),
        }
    });

/// Where a call goes, read from its URL (or, for a relative `http::Uri`,
/// its `Host` header).
pub(crate) struct Target<'a> {
    pub(crate) method: &'static str,
    pub(crate) scheme: &'a str,
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    /// Whether the port was written in the URL (else the scheme's default).
    pub(crate) explicit_port: bool,
    pub(crate) path: &'a str,
}

impl<'a> Target<'a> {
    /// The target of a request to `uri`, whose `Host` header is `host`.
    pub(crate) fn from_uri(
        method: &Method,
        uri: &'a http::Uri,
        host_header: Option<&'a HeaderValue>,
    ) -> Self {
        let scheme = uri.scheme_str().unwrap_or("http");
        let (host, port) = match uri.host() {
            Some(host) => (host, uri.port_u16()),
            // A relative URI (a tonic client without origin): the `Host` header.
            None => host_header
                .and_then(|v| v.to_str().ok())
                .map(split_host_port)
                .unwrap_or(("unknown", None)),
        };
        Self::new(method, scheme, host, port, uri.path())
    }

    pub(crate) fn new(
        method: &Method,
        scheme: &'a str,
        host: &'a str,
        port: Option<u16>,
        path: &'a str,
    ) -> Self {
        let default_port = if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        Self {
            method: method_label(method),
            scheme,
            host,
            port: port.unwrap_or(default_port),
            explicit_port: port.is_some(),
            path: if path.is_empty() { "/" } else { path },
        }
    }

    /// The span name: the method, `HTTP` for one outside the list.
    fn span_name(&self) -> &'static str {
        if self.method == "_OTHER" {
            "HTTP"
        } else {
            self.method
        }
    }
}

/// `host` and `port` of a `Host` header value.
fn split_host_port(value: &str) -> (&str, Option<u16>) {
    match value.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()),
        _ => (value, None),
    }
}

/// `url.full` without query, fragment or credentials.
struct UrlFull<'t, 'a>(&'t Target<'a>);

impl Display for UrlFull<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        f.write_str(t.scheme)?;
        f.write_str("://")?;
        f.write_str(t.host)?;
        if t.explicit_port {
            f.write_char(':')?;
            f.write_str(itoa::Buffer::new().format(t.port))?;
        }
        f.write_str(t.path)
    }
}

/// How a call without a response failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No response in time.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// Anything else.
    Other,
}

impl Failure {
    /// `error.type` on the span and `error_type` on the line.
    fn error_type(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Connect => "connect",
            Failure::Other => "_OTHER",
        }
    }

    /// The failure an error stands for, from its chain of sources: a timeout
    /// of tower, tokio or the operating system; a refused connection.
    pub(crate) fn of(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut next = Some(error);
        while let Some(e) = next {
            if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
                return Failure::Timeout;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    std::io::ErrorKind::TimedOut => return Failure::Timeout,
                    std::io::ErrorKind::ConnectionRefused => return Failure::Connect,
                    _ => {}
                }
            }
            next = e.source();
        }
        Failure::Other
    }
}

/// One call in flight: its span, start time and metric handles. Dropped
/// before [`Call::finish`], it records the call as `cancelled`.
pub(crate) struct Call {
    span: tracing::Span,
    started: Instant,
    handles: Ref<PeerHandles>,
    /// Only used by the WARN line: `host:port`, method and `url.full`.
    peer: Box<str>,
    method: &'static str,
    url: Box<str>,
    done: bool,
}

impl Call {
    /// Open the CLIENT span of a call to `target`, a child of the current
    /// span; [`Call::inject`] then writes its headers.
    pub(crate) fn open(target: &Target<'_>) -> Self {
        let span = if record_span_fields() {
            tracing::info_span!(
                target: CLIENT_TARGET,
                "http.client",
                otel.name = target.span_name(),
                otel.kind = "client",
                otel.status_code = Empty,
                "http.request.method" = target.method,
                "server.address" = target.host,
                "server.port" = target.port,
                "url.full" = %UrlFull(target),
                "http.response.status_code" = Empty,
                "error.type" = Empty,
            )
        } else {
            // IDs only: no layer reads the attributes, so the span carries
            // none (they would cost a formatting pass in the JSON layer).
            tracing::info_span!(target: CLIENT_TARGET, "http.client", otel.kind = "client")
        };
        let mut peer = String::with_capacity(target.host.len() + 6);
        peer.push_str(target.host);
        peer.push(':');
        peer.push_str(itoa::Buffer::new().format(target.port));
        Self {
            handles: PEERS.get(target.host, target.method),
            span,
            started: Instant::now(),
            peer: peer.into(),
            method: target.method,
            url: UrlFull(target).to_string().into(),
            done: false,
        }
    }

    /// Write `traceparent` (naming this call's span), `tracestate`,
    /// `baggage` and `x-request-id` into `headers`, replacing any there.
    pub(crate) fn inject(&self, headers: &mut HeaderMap) {
        if !self.span.is_disabled() {
            self.span.in_scope(|| inject(headers));
        }
    }

    /// The call's span, to poll the inner call in.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The call answered with `status`.
    pub(crate) fn response(mut self, status: u16) {
        self.done = true;
        let elapsed = self.started.elapsed();
        self.handles.record_status(status, elapsed.as_secs_f64());
        self.span.record("http.response.status_code", status);
        if status >= 400 {
            self.span.record("otel.status_code", "error");
            self.span
                .record("error.type", itoa::Buffer::new().format(status));
        }
        if status >= 500 {
            tracing::warn!(
                target: CLIENT_TARGET,
                peer = &*self.peer,
                method = self.method,
                url = &*self.url,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                http_status = status,
                "outbound call failed"
            );
        }
    }

    /// The call failed without a response.
    pub(crate) fn failure(mut self, failure: Failure, error: &dyn Display) {
        self.done = true;
        let elapsed = self.started.elapsed();
        let h = &*self.handles;
        let histogram = if failure == Failure::Timeout {
            &h.timeout
        } else {
            &h.error
        };
        histogram.record(elapsed.as_secs_f64());
        self.span.record("otel.status_code", "error");
        self.span.record("error.type", failure.error_type());
        tracing::warn!(
            target: CLIENT_TARGET,
            peer = &*self.peer,
            method = self.method,
            url = &*self.url,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            error_type = failure.error_type(),
            error = %error,
            "outbound call failed"
        );
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            self.handles
                .cancelled
                .record(self.started.elapsed().as_secs_f64());
        }
    }
}

/// Whether anything reads span attributes: the exporting pipeline, the
/// pretty format, or a subscriber that is not ours.
fn record_span_fields() -> bool {
    tracing::dispatcher::get_default(|d| {
        crate::trace::settings_of(d).map(|settings| settings.record_span_fields)
    })
    .unwrap_or(true)
}

/// Write `traceparent`, `tracestate`, `baggage` and `x-request-id` of the
/// current span (the call's, entered by the caller) into `headers`.
fn inject(headers: &mut HeaderMap) {
    crate::propagation::inject(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_of(uri: &str) -> String {
        let uri: http::Uri = uri.parse().unwrap();
        let t = Target::from_uri(&Method::GET, &uri, None);
        format!("{} {} {} {}", t.host, t.port, UrlFull(&t), t.span_name())
    }

    #[test]
    fn url_full_drops_credentials_query_and_fragment() {
        assert_eq!(
            target_of("https://user:secret@pay.example.com/charges?card=4242#x"),
            "pay.example.com 443 https://pay.example.com/charges GET"
        );
        assert_eq!(
            target_of("http://127.0.0.1:8080"),
            "127.0.0.1 8080 http://127.0.0.1:8080/ GET"
        );
    }

    #[test]
    fn a_relative_uri_takes_its_peer_from_the_host_header() {
        let uri: http::Uri = "/grpc.health.v1.Health/Check".parse().unwrap();
        let host = HeaderValue::from_static("billing:50051");
        let t = Target::from_uri(&Method::POST, &uri, Some(&host));
        assert_eq!((t.host, t.port), ("billing", 50051));
        assert_eq!(Target::from_uri(&Method::POST, &uri, None).host, "unknown");
    }

    #[test]
    fn timeouts_and_refused_connections_are_told_apart_through_the_source_chain() {
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(Failure::of(&timed_out), Failure::Timeout);
        let elapsed: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(Failure::of(&*elapsed), Failure::Timeout);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Failure::of(&refused), Failure::Connect);
        assert_eq!(Failure::of(&std::fmt::Error), Failure::Other);
        let other = Target::new(
            &Method::from_bytes(b"PURGE").unwrap(),
            "http",
            "h",
            None,
            "",
        );
        assert_eq!((other.method, other.span_name()), ("_OTHER", "HTTP"));
    }
}

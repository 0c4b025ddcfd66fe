//! One signal's connection to the collector: encoded export requests sent
//! over gRPC (unary calls written straight onto a tonic `Channel`) or
//! http/protobuf (reqwest), with the configured headers, gzip, timeout and
//! TLS.

use std::{
    convert::Infallible,
    io::Write as _,
    pin::Pin,
    str::FromStr as _,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use http_body::{Body as _, Frame, SizeHint};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::{Destination, ExportRuntime, Signal};
use crate::{Error, OtlpCompression, OtlpProtocol};

/// One signal's resolved destination and the client that reaches it.
pub(crate) struct Transport {
    signal: Signal,
    url: String,
    timeout: Duration,
    /// Bodies are gzipped before either protocol frames them.
    gzip: bool,
    kind: Kind,
}

// One per signal: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Grpc {
        channel: Channel,
        /// The method's path (the channel adds scheme and authority).
        path: Uri,
        /// The configured headers and the gRPC ones.
        headers: HeaderMap,
    },
    Http {
        client: reqwest::Client,
        /// The endpoint, parsed once (not on every request).
        url: reqwest::Url,
        headers: HeaderMap,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("signal", &self.signal)
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// The transport of `signal`, `None` when no endpoint is configured for it.
    ///
    /// # Errors
    /// [`Error::InvalidEnv`] for an unreadable CA file (naming its
    /// variable); [`Error::Export`] when the client cannot be built (a
    /// malformed URL, a CA file that does not parse). The pipelines resolve
    /// their destination first and use [`Transport::to`]; this serves the
    /// probe and the tests.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn new(
        config: &crate::Config,
        signal: Signal,
        runtime: &ExportRuntime,
    ) -> Result<Option<Self>, Error> {
        match Destination::resolve(config, signal) {
            None => Ok(None),
            Some(dest) => Self::to(&dest, runtime).map(Some),
        }
    }

    /// The transport to `dest`.
    ///
    /// # Errors
    /// As [`Transport::new`].
    pub(crate) fn to(dest: &Destination, runtime: &ExportRuntime) -> Result<Self, Error> {
        let gzip = dest.compression == OtlpCompression::Gzip;
        let kind = match dest.protocol {
            OtlpProtocol::HttpProtobuf => Kind::Http {
                client: http_client(dest)?,
                url: reqwest::Url::parse(&dest.url).map_err(|e| bad_url(dest, e))?,
                headers: header_map(dest)?,
            },
            _ => Kind::Grpc {
                channel: grpc_channel(dest, runtime)?,
                path: Uri::from_static(dest.signal.grpc_path()),
                headers: grpc_headers(dest, gzip)?,
            },
        };
        Ok(Self {
            signal: dest.signal,
            url: dest.url.clone(),
            timeout: dest.timeout,
            gzip,
            kind,
        })
    }

    /// The signal this transport carries.
    pub(crate) fn signal(&self) -> Signal {
        self.signal
    }

    /// Send one encoded `Export{Trace,Metrics,Logs}ServiceRequest`, bounded
    /// by the configured timeout.
    ///
    /// # Errors
    /// [`Error::Export`] when the collector refused the request, could not
    /// be reached, or did not answer within the timeout.
    pub(crate) async fn export(&self, body: Bytes) -> Result<(), Error> {
        match tokio::time::timeout(self.timeout, self.send(body)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Export(format!(
                "{} export to {} timed out after {:?}",
                self.signal, self.url, self.timeout
            ))),
        }
    }

    async fn send(&self, body: Bytes) -> Result<(), Error> {
        let fail =
            |what: String| Error::Export(format!("{} export to {}: {what}", self.signal, self.url));
        let body = if self.gzip {
            Bytes::from(gzip_bytes(&body).map_err(|e| fail(format!("gzip: {e}")))?)
        } else {
            body
        };
        match &self.kind {
            Kind::Grpc {
                channel,
                path,
                headers,
            } => {
                let message = GrpcMessage::new(body, self.gzip).map_err(fail)?;
                let mut request = http::Request::new(tonic::body::Body::new(message));
                *request.uri_mut() = path.clone();
                *request.method_mut() = http::Method::POST;
                *request.version_mut() = http::Version::HTTP_2;
                *request.headers_mut() = headers.clone();
                let mut channel = channel.clone();
                std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut channel, cx))
                    .await
                    .map_err(|e| fail(format!("cannot connect: {}", error_chain(&e))))?;
                let response = tower_service::Service::call(&mut channel, request)
                    .await
                    .map_err(|e| fail(error_chain(&e)))?;
                grpc_outcome(response).await.map_err(fail)
            }
            Kind::Http {
                client,
                url,
                headers,
            } => {
                let mut request = client
                    .post(url.clone())
                    .headers(headers.clone())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf");
                if self.gzip {
                    request = request.header(http::header::CONTENT_ENCODING, "gzip");
                }
                let request = request.body(body);
                let response = request.send().await.map_err(|e| fail(error_chain(&e)))?;
                let status = response.status();
                if status.is_success() {
                    // Read the (small) body so the connection can be reused.
                    let _ = response.bytes().await;
                    return Ok(());
                }
                let text = response.bytes().await.unwrap_or_default();
                let text = String::from_utf8_lossy(&text[..text.len().min(200)]).into_owned();
                Err(fail(format!("HTTP status {status}: {text}")))
            }
        }
    }
}

/// `e` and its sources, `: `-separated (reqwest hides the cause otherwise).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn gzip_bytes(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

fn bad_url(dest: &Destination, e: impl std::fmt::Display) -> Error {
    Error::Export(format!(
        "cannot export {} to {}: {e}",
        dest.signal, dest.url
    ))
}

/// The HTTP client of `dest`: its timeout, and its CA (besides the
/// system's) for `https://`.
pub(crate) fn http_client(dest: &Destination) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(dest.timeout)
        .connect_timeout(dest.timeout);
    if let Some(pem) = dest.ca_pem()? {
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad_ca(dest, e))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| bad_url(dest, error_chain(&e)))
}

fn bad_ca(dest: &Destination, e: impl std::fmt::Display) -> Error {
    match &dest.certificate {
        Some((name, path)) => Error::InvalidEnv {
            name,
            value: path.display().to_string(),
            reason: format!("the certificate does not parse: {e}"),
        },
        None => bad_url(dest, e),
    }
}

/// The gRPC channel of `dest`, connecting lazily on the export runtime
/// (tonic spawns its connection worker on the current runtime).
pub(crate) fn grpc_channel(dest: &Destination, runtime: &ExportRuntime) -> Result<Channel, Error> {
    let _entered = runtime.handle().enter();
    let mut endpoint = Endpoint::from_str(&dest.url)
        .map_err(|e| bad_url(dest, e))?
        // The request as a whole is bounded by `Transport::export` (and by
        // the SDK exporter's own timeout for spans).
        .connect_timeout(dest.timeout);
    if dest.is_https() {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(pem) = dest.ca_pem()? {
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| bad_url(dest, error_chain(&e)))?;
    }
    Ok(endpoint.connect_lazy())
}

/// The configured headers as HTTP headers.
pub(crate) fn header_map(dest: &Destination) -> Result<HeaderMap, Error> {
    let mut map = HeaderMap::new();
    for (k, v) in &dest.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad_url(dest, e))?;
        let value = HeaderValue::from_str(v).map_err(|e| bad_url(dest, e))?;
        map.append(name, value);
    }
    Ok(map)
}

/// The headers of every gRPC request to `dest`: the configured ones
/// (which must make valid HTTP/2 headers) and gRPC's own.
///
/// # Errors
/// [`Error::Export`] for a configured binary header (`-bin`: gRPC
/// receivers base64-decode its value, and the configuration has no way to
/// say the value is base64) or one of the response's reserved names
/// (`grpc-status`, `grpc-message`, `grpc-message-type`), which tonic's
/// client used to drop without a word.
pub(crate) fn grpc_headers(dest: &Destination, gzip: bool) -> Result<HeaderMap, Error> {
    let mut map = header_map(dest)?;
    for name in map.keys() {
        let name = name.as_str();
        if name.ends_with("-bin") {
            return Err(bad_url(
                dest,
                format!("header {name:?}: binary (-bin) headers are not supported over gRPC"),
            ));
        }
        if matches!(name, "grpc-status" | "grpc-message" | "grpc-message-type") {
            return Err(bad_url(
                dest,
                format!("header {name:?} is reserved for gRPC responses"),
            ));
        }
    }
    map.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    map.insert(http::header::TE, HeaderValue::from_static("trailers"));
    if gzip {
        map.insert("grpc-encoding", HeaderValue::from_static("gzip"));
    }
    Ok(map)
}

/// One gRPC message as a request body: its 5-byte prefix (compressed flag
/// and length) and the encoded export request, as two chunks.
///
/// tonic's codec path copied every request behind the prefix it writes
/// (0.5 % of the process's CPU in `benches/logging.rs` over gRPC, about
/// 30 ns per log record); sent as its own chunk, the prefix is a DATA
/// frame of its own, which h2 copies into its write buffer and writes
/// with the request's first frame, and the request is not copied.
struct GrpcMessage {
    prefix: Option<Bytes>,
    payload: Option<Bytes>,
}

impl GrpcMessage {
    /// The message of `payload`; an error for one of 4 GiB or more, which
    /// its length prefix cannot say (the batch sizes keep requests far
    /// below that).
    fn new(payload: Bytes, compressed: bool) -> Result<Self, String> {
        let len = u32::try_from(payload.len())
            .map_err(|_| format!("a request of {} bytes is over gRPC's 4 GiB", payload.len()))?;
        let mut prefix = [0u8; 5];
        prefix[0] = u8::from(compressed);
        prefix[1..].copy_from_slice(&len.to_be_bytes());
        Ok(Self {
            prefix: Some(Bytes::copy_from_slice(&prefix)),
            payload: (!payload.is_empty()).then_some(payload),
        })
    }
}

impl http_body::Body for GrpcMessage {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let next = this.prefix.take().or_else(|| this.payload.take());
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.payload.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len() as u64);
        SizeHint::with_exact(len(&self.prefix) + len(&self.payload))
    }
}

/// The outcome of a unary call from its response: `grpc-status` in the
/// headers (a trailers-only response) or in the trailers; the response
/// message (an `Export*ServiceResponse`, whose partial success is not
/// acted upon) is read and dropped, compressed or not (grpc-go servers,
/// the OpenTelemetry Collector's among them, compress their answer as the
/// request was). An HTTP status other than 200 without a `grpc-status`
/// (a proxy's 503, say) fails at once, with the gRPC code it maps to.
async fn grpc_outcome(response: http::Response<tonic::body::Body>) -> Result<(), String> {
    let http_status = response.status();
    if let Some(status) = grpc_status(response.headers()) {
        return status;
    }
    if http_status != http::StatusCode::OK {
        return Err(format!(
            "HTTP status {http_status} without a gRPC status (as gRPC {:?})",
            code_of_http(http_status)
        ));
    }
    let mut body = std::pin::pin!(response.into_body());
    let mut trailers = None;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|e| format!("reading the response: {e}"))?;
        if let Ok(t) = frame.into_trailers() {
            trailers = Some(t);
        }
    }
    match trailers.as_ref().and_then(grpc_status) {
        Some(status) => status,
        None => Err(format!(
            "HTTP status {http_status} without a gRPC status (not a gRPC endpoint?)"
        )),
    }
}

/// The gRPC code of an HTTP status that came without one, as
/// <https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md>
/// maps it.
fn code_of_http(status: http::StatusCode) -> tonic::Code {
    match status.as_u16() {
        400 => tonic::Code::Internal,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::Unimplemented,
        429 | 502 | 503 | 504 => tonic::Code::Unavailable,
        _ => tonic::Code::Unknown,
    }
}

/// `Ok` for `grpc-status: 0`, the code and message otherwise; `None`
/// without the header.
///
/// The message is the collector's text: percent-decoded, then escaped
/// (`escape_debug`) so that a line break or a terminal control in it cannot
/// forge a line of the error's reader. A status that is not a number is
/// `Unknown`, its text quoted.
fn grpc_status(headers: &HeaderMap) -> Option<Result<(), String>> {
    let raw = headers.get("grpc-status")?;
    let parsed = std::str::from_utf8(raw.as_bytes())
        .ok()
        .and_then(|c| c.trim().parse::<i32>().ok());
    if parsed == Some(0) {
        return Some(Ok(()));
    }
    let code = match parsed {
        Some(n) => format!("{:?}", tonic::Code::from_i32(n)),
        None => format!("Unknown ({:?})", String::from_utf8_lossy(raw.as_bytes())),
    };
    let message = headers
        .get("grpc-message")
        .map(|m| {
            let raw = String::from_utf8_lossy(m.as_bytes());
            let text = crate::config::percent_decode(&raw).unwrap_or_else(|_| raw.into_owned());
            text.escape_debug().to_string()
        })
        .unwrap_or_default();
    Some(Err(format!("gRPC status {code}: {message}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, test_util::env};

    #[test]
    fn gzip_round_trips() {
        let body = vec![7u8; 10_000];
        let packed = gzip_bytes(&body).unwrap();
        assert!(packed.len() < 200);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&packed[..]), &mut out)
            .unwrap();
        assert_eq!(out, body);
    }

    #[test]
    fn a_transport_is_built_only_for_a_configured_signal() {
        let rt = ExportRuntime::start().unwrap();
        let config = Config::from_lookup(env(&[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://127.0.0.1:1"),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "https://127.0.0.1:1/v1/logs",
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=x"),
        ]))
        .unwrap();
        assert!(
            Transport::new(&config, Signal::Traces, &rt)
                .unwrap()
                .is_none()
        );
        let m = Transport::new(&config, Signal::Metrics, &rt)
            .unwrap()
            .unwrap();
        assert_eq!(m.signal(), Signal::Metrics);
        assert!(
            Transport::new(&config, Signal::Logs, &rt)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_an_error_naming_its_variable() {
        let rt = ExportRuntime::start().unwrap();
        let dir = std::env::temp_dir().join(format!("glimpse-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("junk.pem");
        std::fs::write(&file, "not a certificate").unwrap();
        let path = file.to_str().unwrap();
        let config = Config::from_lookup(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:1"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", path),
        ]))
        .unwrap();
        let err = Transport::new(&config, Signal::Traces, &rt).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidEnv { name, .. } if *name == "OTEL_EXPORTER_OTLP_CERTIFICATE"),
            "{err:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

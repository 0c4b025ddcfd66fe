//! One signal's connection to the collector: encoded export requests sent
//! over gRPC (tonic, pass-through codec) or http/protobuf (reqwest), with
//! the configured headers, gzip, timeout and TLS.

use std::{
    io::Write as _,
    pin::Pin,
    str::FromStr as _,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Buf as _, BufMut as _, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue, uri::PathAndQuery};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tonic::{
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use super::{Destination, ExportRuntime, Signal};
use crate::{Config, Error, OtlpCompression, OtlpProtocol};

/// One signal's resolved destination and the client that reaches it.
pub(crate) struct Transport {
    signal: Signal,
    url: String,
    timeout: Duration,
    kind: Kind,
}

// One per signal: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Grpc {
        grpc: tonic::client::Grpc<Channel>,
        path: PathAndQuery,
        metadata: MetadataMap,
    },
    Http {
        client: reqwest::Client,
        headers: HeaderMap,
        gzip: bool,
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
    /// malformed URL, a CA file that does not parse).
    pub(crate) fn new(
        config: &Config,
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
        let kind = match dest.protocol {
            OtlpProtocol::HttpProtobuf => Kind::Http {
                client: http_client(dest)?,
                headers: header_map(dest)?,
                gzip: dest.compression == OtlpCompression::Gzip,
            },
            _ => {
                let mut grpc = tonic::client::Grpc::new(grpc_channel(dest, runtime)?);
                if dest.compression == OtlpCompression::Gzip {
                    grpc = grpc.send_compressed(CompressionEncoding::Gzip);
                }
                Kind::Grpc {
                    grpc,
                    path: PathAndQuery::from_static(dest.signal.grpc_path()),
                    metadata: metadata(dest)?,
                }
            }
        };
        Ok(Self {
            signal: dest.signal,
            url: dest.url.clone(),
            timeout: dest.timeout,
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
        match &self.kind {
            Kind::Grpc {
                grpc,
                path,
                metadata,
            } => {
                let mut grpc = grpc.clone();
                grpc.ready()
                    .await
                    .map_err(|e| fail(format!("cannot connect: {e}")))?;
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() = metadata.clone();
                grpc.unary::<Bytes, (), _>(request, path.clone(), RawCodec)
                    .await
                    .map(|_| ())
                    .map_err(|status| {
                        fail(format!(
                            "gRPC status {:?}: {}",
                            status.code(),
                            status.message()
                        ))
                    })
            }
            Kind::Http {
                client,
                headers,
                gzip,
            } => {
                let mut request = client
                    .post(&self.url)
                    .headers(headers.clone())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf");
                request = if *gzip {
                    request
                        .header(http::header::CONTENT_ENCODING, "gzip")
                        .body(gzip_bytes(&body).map_err(|e| fail(format!("gzip: {e}")))?)
                } else {
                    request.body(body)
                };
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
    // tonic applies the connect timeout and, for `https://`, TLS over this
    // connector's stream, as over its own.
    Ok(endpoint.connect_with_connector_lazy(CoalescingConnector))
}

/// Connects the gRPC channels over TCP (`TCP_NODELAY`, as tonic's own
/// connector sets it) with their writes coalesced ([`Coalesced`]).
#[derive(Debug, Clone, Copy)]
struct CoalescingConnector;

type Connecting = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::io::Result<TokioIo<Coalesced<TcpStream>>>> + Send>,
>;

impl tower_service::Service<http::Uri> for CoalescingConnector {
    type Response = TokioIo<Coalesced<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host"))?;
            // `[::1]` in a URL, `::1` to resolve.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                });
            let stream = TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(Coalesced::new(stream)))
        })
    }
}

/// The most bytes a [`Coalesced`] stream holds before writing them.
const COALESCE: usize = 64 * 1024;

/// A stream whose small writes are gathered into writes of up to
/// [`COALESCE`] bytes.
///
/// h2 writes each DATA frame of a request (16 KiB, the default frame size
/// collectors advertise) with a write of its own and flushes after each:
/// 13 writes, and as many TCP segments and receiver wake-ups, for a batch
/// of 512 log records (`benches/logging.rs`). The first flush after
/// writes is answered at once and the connection's task woken; the bytes
/// go out when the task flushes again with nothing written in between
/// (h2 flushes at the end of every poll), before it reads, or when
/// [`COALESCE`] bytes wait.
/// The same batch then takes 4 writes of 64 KiB, which on loopback cost the
/// sender about half the kernel time of 13 writes of 16 KiB
/// (`docs/performance.md`, issue 13, third session).
struct Coalesced<T> {
    io: T,
    /// Bytes waiting; `buf[..sent]` are written.
    buf: Vec<u8>,
    sent: usize,
    /// Written to since the last flush.
    wrote: bool,
}

impl<T> Coalesced<T> {
    fn new(io: T) -> Self {
        Self {
            io,
            buf: Vec::new(),
            sent: 0,
            wrote: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> Coalesced<T> {
    /// Write out what waits.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Room for more bytes, writing out what waits when it is full.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.len() >= COALESCE {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(COALESCE - self.buf.len()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesced<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // Whoever reads waits for the peer, which waits for what waits
        // here (a TLS handshake reads after one flush): it goes out first.
        if !this.buf.is_empty()
            && let Poll::Ready(Err(e)) = this.poll_drain(cx)
        {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesced<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let room = ready!(this.poll_room(cx))?;
        let n = data.len().min(room);
        this.buf.extend_from_slice(&data[..n]);
        this.wrote |= n > 0;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let mut room = ready!(this.poll_room(cx))?;
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(room);
            this.buf.extend_from_slice(&b[..take]);
            (n, room) = (n + take, room - take);
            if room == 0 {
                break;
            }
        }
        this.wrote |= n > 0;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.wrote && this.buf.len() < COALESCE {
            // More may follow before the connection's task is done: answer
            // now, write when it flushes again without writing first.
            this.wrote = false;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        this.wrote = false;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
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

/// The configured headers as gRPC metadata.
pub(crate) fn metadata(dest: &Destination) -> Result<MetadataMap, Error> {
    let mut map = MetadataMap::new();
    for (k, v) in &dest.headers {
        let key = MetadataKey::from_bytes(k.as_bytes()).map_err(|e| bad_url(dest, e))?;
        let value = MetadataValue::try_from(v.as_str()).map_err(|e| bad_url(dest, e))?;
        map.append(key, value);
    }
    Ok(map)
}

/// Sends the already-encoded request as it is; ignores the response body
/// (an `Export*ServiceResponse`, whose partial success is not acted upon).
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Self::Error> {
        let n = src.remaining();
        src.advance(n);
        Ok(Some(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::env;

    /// Records the writes that reach the socket.
    #[derive(Default)]
    struct Socket {
        writes: Vec<usize>,
    }

    impl AsyncWrite for Socket {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.get_mut().writes.push(data.len());
            Poll::Ready(Ok(data.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Socket {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn frames_flushed_one_by_one_go_out_in_64_kib_writes() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut c = Coalesced::new(Socket::default());
        let write_all = |c: &mut Coalesced<Socket>, cx: &mut Context<'_>, mut data: &[u8]| {
            while !data.is_empty() {
                match Pin::new(&mut *c).poll_write(cx, data) {
                    Poll::Ready(Ok(n)) => data = &data[n..],
                    other => panic!("{other:?}"),
                }
            }
            assert!(matches!(
                Pin::new(&mut *c).poll_flush(cx),
                Poll::Ready(Ok(()))
            ));
        };
        // A request of 13 DATA frames, h2 flushing after each.
        let frame = [7u8; 16_393];
        for _ in 0..13 {
            write_all(&mut c, &mut cx, &frame);
        }
        assert_eq!(c.io.writes, [COALESCE; 3]);
        // The flush with nothing written since sends the rest.
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_ready());
        assert_eq!(c.io.writes.len(), 4);
        assert_eq!(c.io.writes.iter().sum::<usize>(), 13 * 16_393);
        // A read sends what waits first.
        write_all(&mut c, &mut cx, b"ping");
        assert_eq!(c.io.writes.len(), 4);
        let mut space = [0u8; 8];
        let mut read = ReadBuf::new(&mut space);
        assert!(Pin::new(&mut c).poll_read(&mut cx, &mut read).is_ready());
        assert_eq!(c.io.writes[4..], [4]);
        // So does a shutdown.
        write_all(&mut c, &mut cx, b"bye");
        assert!(Pin::new(&mut c).poll_shutdown(&mut cx).is_ready());
        assert_eq!(c.io.writes[5..], [3]);
    }

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

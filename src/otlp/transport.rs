//! One signal's connection to the collector: encoded export requests sent
//! over gRPC (tonic, pass-through codec) or http/protobuf (reqwest), with
//! the configured headers, gzip, timeout and TLS.

use std::{io::Write as _, str::FromStr as _, time::Duration};

use bytes::{Buf as _, BufMut as _, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue, uri::PathAndQuery};
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

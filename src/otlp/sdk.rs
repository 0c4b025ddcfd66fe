//! The OpenTelemetry SDK's span exporter, configured from the same resolved
//! [`Destination`] as [`super::Transport`]: endpoint, protocol, headers,
//! compression, timeout, and TLS with the configured CA (over gRPC through
//! our own tonic channel, over HTTP through our own reqwest client).

use std::collections::HashMap;

use opentelemetry_otlp::{
    Compression, Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig,
};

use super::{
    Destination, ExportRuntime,
    transport::{grpc_channel, http_client, metadata},
};
use crate::{Error, OtlpCompression, OtlpProtocol};

/// Build the SDK's OTLP span exporter for `dest` inside the export
/// runtime's context (tonic spawns its connection worker on the current
/// runtime).
///
/// # Errors
/// [`Error::Export`] when the exporter cannot be built (a bad URL);
/// [`Error::InvalidEnv`] for an unreadable CA file.
pub(crate) fn span_exporter(
    dest: &Destination,
    runtime: &ExportRuntime,
) -> Result<opentelemetry_otlp::SpanExporter, Error> {
    let _entered = runtime.handle().enter();
    let gzip = dest.compression == OtlpCompression::Gzip;
    let built = match dest.protocol {
        OtlpProtocol::HttpProtobuf => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(dest.url.clone())
                .with_timeout(dest.timeout)
                .with_http_client(http_client(dest)?)
                .with_headers(dest.headers.iter().cloned().collect::<HashMap<_, _>>());
            if gzip {
                builder = builder.with_compression(Compression::Gzip);
            }
            builder.build()
        }
        _ => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_protocol(Protocol::Grpc)
                .with_timeout(dest.timeout)
                .with_channel(grpc_channel(dest, runtime)?)
                .with_metadata(metadata(dest)?);
            if gzip {
                builder = builder.with_compression(Compression::Gzip);
            }
            builder.build()
        }
    };
    built.map_err(|e| Error::Export(format!("cannot export traces to {}: {e}", dest.url)))
}

//! The OTLP transport the three signals share: where and how each signal is
//! sent ([`Destination`], resolved from the configuration with the
//! per-signal variable winning over the shared one), the private runtime
//! exports run on ([`ExportRuntime`]), one connection per signal that sends
//! encoded `Export{Trace,Metrics,Logs}ServiceRequest` bodies over gRPC or
//! http/protobuf ([`Transport`]), and a bounded batch queue in front of it
//! ([`Batcher`]).
//!
//! Bodies are encoded by the signal (with the `opentelemetry-proto` types);
//! the transport never decodes them: gRPC sends each as one message of a
//! unary call to the collector's standard service path (written onto
//! tonic's `Channel` directly, the status read from the response headers or
//! trailers), HTTP posts them as `application/x-protobuf` to `/v1/traces`,
//! `/v1/metrics` or `/v1/logs`.

mod batcher;
mod destination;
mod resource;
mod runtime;
mod staging;
mod transport;
pub(crate) mod wire;

pub(crate) use batcher::Batcher;
pub(crate) use destination::{Destination, Signal};
pub(crate) use resource::{proto_resource, string_attribute};
pub(crate) use runtime::ExportRuntime;
pub(crate) use staging::{Chunk, Staging};
pub(crate) use transport::Transport;

#[cfg(feature = "testing")]
pub mod probe;

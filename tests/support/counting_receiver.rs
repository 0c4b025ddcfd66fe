//! A gRPC OTLP receiver for the benchmarks that only counts what it gets
//! (spans or log records), walking the request's protobuf wire format
//! without decoding it into structs.
//!
//! It runs beside the measured process: on the 2-vCPU machine of
//! `docs/performance.md` the vCPUs are SMT siblings, and a receiver that
//! decoded every span or record with prost (a `String` per attribute) on
//! the other vCPU slowed the measured process's own instructions, inflating
//! the CPU time of the exporting configurations (a busy sibling adds about
//! half to a process's CPU time). Counting costs a few instructions per
//! item.
#![allow(dead_code)]

use std::{
    marker::PhantomData,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

/// The OTLP collector service a [`Counter`] stands for.
pub trait Collector: Send + Sync + 'static {
    /// The gRPC service name.
    const NAME: &'static str;
}

/// `TraceService`: counts `ExportTraceServiceRequest.resource_spans(1)
/// .scope_spans(2).spans(2)`.
pub struct Traces;

impl Collector for Traces {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

/// `LogsService`: counts `ExportLogsServiceRequest.resource_logs(1)
/// .scope_logs(2).log_records(2)`.
pub struct Logs;

impl Collector for Logs {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

/// A gRPC service counting the items of every export request; clones share
/// the count.
pub struct Counter<C>(Arc<AtomicU64>, PhantomData<C>);

impl<C> Clone for Counter<C> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0), PhantomData)
    }
}

impl<C> Default for Counter<C> {
    fn default() -> Self {
        Self(Arc::default(), PhantomData)
    }
}

impl<C> Counter<C> {
    /// Items received so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Count the items of an export request that came another way (the
    /// body of an OTLP/HTTP `POST`).
    pub fn add(&self, body: &[u8]) {
        self.0.fetch_add(count_items(body), Ordering::Relaxed);
    }
}

impl<C: Collector> tonic::server::NamedService for Counter<C> {
    const NAME: &'static str = C::NAME;
}

impl<C: Collector> tower::Service<http::Request<tonic::body::Body>> for Counter<C> {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let counter = Arc::clone(&self.0);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(grpc.unary(CountRequest(counter), req).await)
        })
    }
}

/// Counts the items of one raw request (the same nesting for spans and log
/// records); answers with an empty response message.
struct CountRequest(Arc<AtomicU64>);

impl tonic::server::UnaryService<bytes::Bytes> for CountRequest {
    type Response = ();
    type Future = std::future::Ready<Result<tonic::Response<()>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<bytes::Bytes>) -> Self::Future {
        self.0
            .fetch_add(count_items(&request.into_inner()), Ordering::Relaxed);
        std::future::ready(Ok(tonic::Response::new(())))
    }
}

/// The items (spans or log records) of one encoded export request: the
/// same nesting for both, `resource_*(1).scope_*(2).items(2)`.
pub fn count_items(body: &[u8]) -> u64 {
    let mut items = 0u64;
    for resource in fields(body, 1) {
        for scope in fields(resource, 2) {
            items += fields(scope, 2).count() as u64;
        }
    }
    items
}

/// The length-delimited fields numbered `number` of the message `buf`.
fn fields(mut buf: &[u8], number: u64) -> impl Iterator<Item = &[u8]> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }
    std::iter::from_fn(move || {
        loop {
            let key = varint(&mut buf)?;
            let len = match key & 7 {
                0 => {
                    varint(&mut buf)?;
                    0
                }
                1 => 8,
                5 => 4,
                2 => usize::try_from(varint(&mut buf)?).ok()?,
                _ => return None,
            };
            let (value, rest) = (buf.get(..len)?, buf.get(len..)?);
            buf = rest;
            if key & 7 == 2 && key >> 3 == number {
                return Some(value);
            }
        }
    })
}

/// A codec that hands the request's bytes over as they are and answers with
/// an empty message.
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = ();
    type Decode = bytes::Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;

    fn encode(&mut self, (): (), _: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

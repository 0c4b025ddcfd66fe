//! A traced request through the layer reaches a real OTLP/gRPC collector
//! (tonic `TraceService`): the caller's trace continues, with name, kind,
//! attributes, resource, a DB child span, and the access line's `traceId`.

mod support;

use glimpse_obs::OtlpProtocol;
use support::{
    otlp_receiver::{Receiver, Store},
    trace_app,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_propagated_request_reaches_the_grpc_collector_as_the_callers_child_with_attributes_resource_and_db_span()
 {
    let receiver = Receiver::grpc(Store::default()).await;
    trace_app::round_trip(receiver, OtlpProtocol::Grpc, "trace-grpc-test").await;
}

//! A traced request through the layer reaches a real OTLP/gRPC collector
//! (tonic `TraceService`): the caller's trace continues, with name, kind,
//! attributes, resource, a DB child span, and the access line's `traceId`.

mod support;

use std::time::Duration;

use glimpse_obs::{Config, Environment, OtlpProtocol, testing::SharedBuffer};
use support::{
    otlp_receiver::{Receiver, Store},
    trace_app,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_propagated_request_reaches_the_grpc_collector_as_the_callers_child_with_attributes_resource_and_db_span()
 {
    let receiver = Receiver::grpc(Store::default()).await;
    let logs = SharedBuffer::new();
    let guard = Config::default()
        .service("trace-grpc-test")
        .version("1.2.3")
        .environment(Environment::Staging)
        .otlp_endpoint(Some(receiver.endpoint()))
        .otlp_protocol(OtlpProtocol::Grpc)
        .metrics_addr(None)
        .log_writer(logs.clone())
        .shutdown_timeout(Duration::from_secs(5))
        .init()
        .unwrap();
    let addr = trace_app::serve().await;
    let sent = trace_app::send_scenario(addr).await;

    // Shutting down flushes the spans; it blocks, so not on a worker thread.
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap()
        .unwrap();

    assert!(receiver.store.exports() >= 1);
    trace_app::check_scenario(&receiver.store, &logs.lines(), &sent, "trace-grpc-test");
}

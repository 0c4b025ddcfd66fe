//! What a real OTLP collector receives from an edge service: an untrusted
//! caller's sampled `traceparent` is a link of a new root span, not its
//! parent; a handler's panic is an `exception` event with `error.type`.

mod support;

use std::time::Duration;

use axum::{Router, routing::get};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode as SpanStatus};
use support::otlp_receiver::{Received, Receiver, Store};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn server_span(store: &Store, path: &str) -> Received {
    let found =
        store.find(|s| s.kind() == SpanKind::Server && s.attr("url.path").as_deref() == Some(path));
    assert_eq!(
        found.len(),
        1,
        "one server span for {path}:\n{}",
        store.summary()
    );
    found.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_callers_trace_is_a_link_and_a_panic_is_an_exception_event() {
    let receiver = Receiver::grpc(Store::default()).await;
    let logs = glimpse_obs::testing::SharedBuffer::new();
    let guard = glimpse_obs::Config::default()
        .service("edge-otlp-test")
        .otlp_endpoint(Some(receiver.endpoint()))
        .metrics_addr(None)
        .process_metrics(false)
        .trust_traceparent(false)
        .log_writer(logs.clone())
        .shutdown_timeout(Duration::from_secs(5))
        .init()
        .unwrap();
    let app: Router = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("ledger unavailable");
                }
                "never"
            }),
        )
        .layer(glimpse_obs::layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = reqwest::Client::new();
    let sent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let res = client
        .get(format!("http://{addr}/ok"))
        .header("traceparent", &sent)
        .send()
        .await
        .unwrap();
    let tp = res.headers()["traceparent"].to_str().unwrap().to_owned();
    assert_ne!(&tp[3..35], CALLER_TRACE);
    let res = client
        .get(format!("http://{addr}/panic"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);

    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap()
        .unwrap();

    let span = server_span(&receiver.store, "/ok");
    assert_ne!(span.trace_id(), CALLER_TRACE, "not the caller's trace");
    assert_eq!(span.trace_id(), &tp[3..35], "the response names it");
    assert_eq!(span.parent_span_id(), "", "a root span");
    assert_eq!(span.span.links.len(), 1, "{:?}", span.span.links);
    assert_eq!(hex(&span.span.links[0].trace_id), CALLER_TRACE);
    assert_eq!(hex(&span.span.links[0].span_id), CALLER_SPAN);

    let span = server_span(&receiver.store, "/panic");
    assert_eq!(span.status(), SpanStatus::Error);
    assert_eq!(span.attr("error.type").as_deref(), Some("panic"));
    assert_eq!(
        span.attr("http.response.status_code").as_deref(),
        Some("500")
    );
    let exception = span
        .span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .unwrap_or_else(|| panic!("no exception event: {:?}", span.span.events));
    let attr = |key: &str| {
        exception
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
            .map(|v| format!("{v:?}"))
    };
    assert!(
        attr("exception.message")
            .unwrap()
            .contains("ledger unavailable")
    );
    assert!(attr("exception.type").unwrap().contains("panic"));
}

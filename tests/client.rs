//! Outbound calls through `glimpse_obs::client` over real TCP on 127.0.0.1:
//! a service (axum + `glimpse_obs::layer()`) calls a callee server through
//! `client::Middleware` (reqwest-middleware) or `client::ClientLayer`
//! (hyper-util), with spans exported to a real OTLP/gRPC receiver. The tests
//! assert on what users see: the headers the callee receives, the spans the
//! collector receives, the `/metrics` text and the JSON lines.
//!
//! `init` configures the process once, so the tests share one telemetry
//! (exporting, metrics on a listener, logs in a buffer); each test tells its
//! own calls apart by the callee's port, method and status.

mod support;

use std::{
    net::SocketAddr,
    sync::OnceLock,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    routing::{any, get},
};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client as HyperClient, rt::TokioExecutor};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode as SpanStatus};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde_json::{Value, json};
use support::otlp_receiver::{Receiver, Store};
use tower::{Service, ServiceBuilder, ServiceExt};

/// The caller's trace, as a browser or gateway would send it.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

struct Fixture {
    guard: glimpse_obs::Guard,
    logs: glimpse_obs::testing::SharedBuffer,
    store: Store,
    _receiver: Receiver,
    /// Runs the receiver for the whole process (test runtimes end with their test).
    _rt: tokio::runtime::Runtime,
}

/// The process's telemetry, exporting to a real OTLP/gRPC receiver.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Not on a test's runtime: the receiver needs one of its own.
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let store = Store::default();
            let receiver = rt.block_on(Receiver::grpc(store.clone()));
            let logs = glimpse_obs::testing::SharedBuffer::new();
            let guard = glimpse_obs::Config::default()
                .service("client-test")
                .otlp_endpoint(Some(receiver.endpoint()))
                .metrics_addr(Some("127.0.0.1:0".parse().unwrap()))
                .process_metrics(false)
                .log_writer(logs.clone())
                .init()
                .unwrap();
            Fixture {
                guard,
                logs,
                store,
                _receiver: receiver,
                _rt: rt,
            }
        })
        .join()
        .unwrap()
    })
}

/// Flush the spans to the receiver (blocking, so off the test's workers).
async fn flush() {
    tokio::task::spawn_blocking(|| assert!(fixture().guard.flush(Duration::from_secs(10))))
        .await
        .unwrap();
}

/// The JSON lines written so far that satisfy `pred`.
fn lines(pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    fixture()
        .logs
        .lines()
        .into_iter()
        .filter(|l| pred(l))
        .collect()
}

/// The `/metrics` text, scraped over HTTP from the telemetry's listener.
async fn scrape() -> String {
    let addr = fixture().guard.metrics_addr().expect("metrics listener");
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the series `name{labels…}` (labels in any order, others ignored).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            let set = &l[..l.rfind('}').unwrap()];
            labels
                .iter()
                .all(|(k, v)| set.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The callee: answers `/echo` with the headers it received, `/status/{n}`
/// with status `n`, `/slow` after 2 s.
async fn callee() -> SocketAddr {
    async fn echo(headers: HeaderMap) -> Json<Value> {
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Json(json!({
            "traceparent": h("traceparent"),
            "tracestate": h("tracestate"),
            "baggage": h("baggage"),
            "x-request-id": h("x-request-id"),
        }))
    }
    let app = Router::new()
        .route("/echo", any(echo))
        .route(
            "/status/{n}",
            any(
                |axum::extract::Path(n): axum::extract::Path<u16>| async move {
                    StatusCode::from_u16(n).unwrap()
                },
            ),
        )
        .route(
            "/slow",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "late"
            }),
        );
    serve(app).await
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn traced_client() -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(glimpse_obs::client::Middleware::default())
        .build()
}

#[derive(serde::Deserialize)]
struct Target {
    url: String,
    #[serde(default)]
    n: usize,
}

/// The service: `/fanout?url=…&n=3` calls `url` `n` times and answers with
/// what the callee echoed; `/call?url=…` calls it once (1 s timeout) and
/// answers with the callee's status (502 when the call failed).
async fn service() -> SocketAddr {
    async fn fanout(
        State(client): State<ClientWithMiddleware>,
        Query(t): Query<Target>,
    ) -> Json<Vec<Value>> {
        let mut seen = Vec::new();
        for _ in 0..t.n {
            let res = client.get(&t.url).send().await.unwrap();
            seen.push(res.json().await.unwrap());
        }
        Json(seen)
    }
    async fn call(
        State(client): State<ClientWithMiddleware>,
        Query(t): Query<Target>,
    ) -> StatusCode {
        match client
            .get(&t.url)
            .timeout(Duration::from_millis(300))
            .send()
            .await
        {
            Ok(res) => res.status(),
            Err(_) => StatusCode::BAD_GATEWAY,
        }
    }
    let app = Router::new()
        .route("/fanout", get(fanout))
        .route("/call", get(call))
        .with_state(traced_client())
        .layer(glimpse_obs::layer());
    serve(app).await
}

/// A request into the service from a caller that continues [`TRACE`].
async fn request(service: SocketAddr, path_and_query: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("http://{service}{path_and_query}"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header("tracestate", "congo=t61rcWkgMzE")
        .header("baggage", "tenant=acme")
        .send()
        .await
        .unwrap()
}

/// The span ID in a `traceparent` value.
fn parent_id(traceparent: &str) -> &str {
    &traceparent[36..52]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_calls_from_one_request_each_send_their_own_parent_id_in_the_servers_trace() {
    fixture();
    let (callee, service) = (callee().await, service().await);
    let res = request(
        service,
        &format!("/fanout?n=3&url=http://{callee}/echo%3Fkey%3Dsecret"),
    )
    .await;
    assert_eq!(res.status(), 200);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let server_tp = res.headers()["traceparent"].to_str().unwrap().to_owned();
    let seen: Vec<Value> = res.json().await.unwrap();
    assert_eq!(seen.len(), 3);

    let tps: Vec<&str> = seen
        .iter()
        .map(|s| s["traceparent"].as_str().expect("traceparent sent"))
        .collect();
    let mut parents: Vec<&str> = tps.iter().map(|tp| parent_id(tp)).collect();
    parents.sort();
    parents.dedup();
    assert_eq!(parents.len(), 3, "three distinct parent IDs: {tps:?}");
    for (tp, s) in tps.iter().zip(&seen) {
        assert!(tp.starts_with(&format!("00-{TRACE}-")), "same trace: {tp}");
        assert!(tp.ends_with("-01"), "sampled: {tp}");
        assert_ne!(
            parent_id(tp),
            parent_id(&server_tp),
            "the parent is the call's span, not the server span"
        );
        assert_eq!(s["tracestate"], "congo=t61rcWkgMzE");
        assert_eq!(s["baggage"], "tenant=acme");
        assert_eq!(s["x-request-id"], request_id.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_spans_reach_the_collector_as_client_children_of_the_server_span() {
    fixture();
    let (callee, service) = (callee().await, service().await);
    let res = request(
        service,
        &format!("/fanout?n=3&url=http://user:pw@{callee}/echo%3Fkey%3Dsecret"),
    )
    .await;
    let server_tp = res.headers()["traceparent"].to_str().unwrap().to_owned();
    let server_id = parent_id(&server_tp).to_owned();
    let seen: Vec<Value> = res.json().await.unwrap();
    flush().await;

    let store = &fixture().store;
    let server = store
        .wait_for(Duration::from_secs(10), |s| s.span_id() == server_id)
        .await
        .unwrap_or_else(|| panic!("server span exported:\n{}", store.summary()));
    assert_eq!(server.kind(), SpanKind::Server);
    assert_eq!(server.parent_span_id(), PARENT);
    let children = store.find(|s| s.parent_span_id() == server_id);
    assert_eq!(children.len(), 3, "{}", store.summary());
    for echoed in &seen {
        let id = parent_id(echoed["traceparent"].as_str().unwrap());
        let span = children
            .iter()
            .find(|s| s.span_id() == id)
            .unwrap_or_else(|| panic!("the span named in traceparent {id} was exported"));
        assert_eq!(span.kind(), SpanKind::Client);
        assert_eq!(span.trace_id(), TRACE);
        assert_eq!(span.name(), "GET");
        assert_eq!(span.status(), SpanStatus::Unset);
        for (key, want) in [
            ("http.request.method", "GET".to_owned()),
            ("server.address", "127.0.0.1".to_owned()),
            ("server.port", callee.port().to_string()),
            (
                "url.full",
                format!("http://127.0.0.1:{}/echo", callee.port()),
            ),
            ("http.response.status_code", "200".to_owned()),
        ] {
            assert_eq!(span.attr(key).as_deref(), Some(&*want), "{key}: {span:#?}");
        }
        assert_eq!(span.attr("error.type"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duration_histogram_is_in_the_metrics_text_by_method_peer_host_and_status() {
    fixture();
    let callee = callee().await;
    let client = traced_client();
    // `localhost`: a peer host no other test calls.
    for _ in 0..2 {
        let url = format!("http://localhost:{}/status/201?token=abc", callee.port());
        assert_eq!(client.post(url).send().await.unwrap().status(), 201);
    }
    let text = scrape().await;
    assert!(text.contains("# TYPE http_client_request_duration_seconds histogram"));
    assert!(text.contains("# HELP http_client_request_duration_seconds"));
    let labels = [
        ("method", "POST"),
        ("server_address", "localhost"),
        ("status", "201"),
    ];
    assert_eq!(
        sample(&text, "http_client_request_duration_seconds_count", &labels),
        Some(2.0),
        "{text}"
    );
    let sum = sample(&text, "http_client_request_duration_seconds_sum", &labels).unwrap();
    assert!(sum > 0.0 && sum < 5.0, "{sum}");
    let mut le = labels.to_vec();
    le.push(("le", "+Inf"));
    assert_eq!(
        sample(&text, "http_client_request_duration_seconds_bucket", &le),
        Some(2.0)
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("http_client") && (l.contains("token") || l.contains("/status"))),
        "never the URL in a label"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_answer_logs_one_warn_line_with_the_peer_and_duration() {
    fixture();
    let (callee, service) = (callee().await, service().await);
    let res = request(
        service,
        &format!("/call?url=http://{callee}/status/503%3Fcard%3D4242"),
    )
    .await;
    assert_eq!(res.status(), 503);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(fixture().guard.flush(Duration::from_secs(5)));

    let peer = format!("127.0.0.1:{}", callee.port());
    let warns = lines(|l| l["message"] == "outbound call failed" && l["peer"] == peer.as_str());
    assert_eq!(warns.len(), 1, "{warns:#?}");
    let line = &warns[0];
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["target"], "glimpse_obs::client");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["http_status"], 503);
    assert_eq!(
        line["url"],
        format!("http://127.0.0.1:{}/status/503", callee.port()),
        "no query string"
    );
    let ms = line["duration_ms"].as_f64().expect("duration_ms");
    assert!(ms > 0.0 && ms < 5000.0, "{ms}");
    assert_eq!(line["requestId"], request_id.as_str(), "the request's ID");
    assert_eq!(line["traceId"], TRACE);

    let text = scrape().await;
    assert_eq!(
        sample(
            &text,
            "http_client_request_duration_seconds_count",
            &[("server_address", "127.0.0.1"), ("status", "503")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_call_is_counted_as_timeout_and_logged_with_its_duration() {
    fixture();
    let (callee, service) = (callee().await, service().await);
    let started = Instant::now();
    let res = request(service, &format!("/call?url=http://{callee}/slow")).await;
    assert_eq!(res.status(), 502);
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(fixture().guard.flush(Duration::from_secs(5)));

    let peer = format!("127.0.0.1:{}", callee.port());
    let warns = lines(|l| l["message"] == "outbound call failed" && l["peer"] == peer.as_str());
    assert_eq!(warns.len(), 1, "{warns:#?}");
    assert_eq!(warns[0]["error_type"], "timeout");
    let ms = warns[0]["duration_ms"].as_f64().unwrap();
    assert!(
        (250.0..1500.0).contains(&ms),
        "about the 300 ms timeout: {ms}"
    );
    assert!(
        !warns[0]["error"].as_str().unwrap().contains("/slow"),
        "the error message leaves the URL out: {}",
        warns[0]
    );
    let text = scrape().await;
    assert!(
        sample(
            &text,
            "http_client_request_duration_seconds_count",
            &[
                ("method", "GET"),
                ("server_address", "127.0.0.1"),
                ("status", "timeout")
            ]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_counted_as_error_and_logged_as_connect() {
    fixture();
    let closed = support::otlp_receiver::closed_port();
    let client = traced_client();
    // `127.0.0.2` (loopback too): a peer host no other test calls.
    let url = format!("http://127.0.0.2:{}/charges", closed.port());
    assert!(client.delete(url).send().await.is_err());
    assert!(fixture().guard.flush(Duration::from_secs(5)));
    let warns = lines(|l| {
        l["message"] == "outbound call failed"
            && l["peer"] == format!("127.0.0.2:{}", closed.port())
    });
    assert_eq!(warns.len(), 1, "{warns:#?}");
    assert_eq!(warns[0]["error_type"], "connect");
    assert_eq!(warns[0]["method"], "DELETE");
    let text = scrape().await;
    assert_eq!(
        sample(
            &text,
            "http_client_request_duration_seconds_count",
            &[
                ("method", "DELETE"),
                ("server_address", "127.0.0.2"),
                ("status", "error")
            ]
        ),
        Some(1.0),
        "{text}"
    );
}

type Body = Full<bytes::Bytes>;

/// One `PUT` through a tower client.
async fn put<S>(client: &mut S, uri: String) -> Result<S::Response, tower::BoxError>
where
    S: Service<http::Request<Body>, Error = tower::BoxError>,
{
    let req = http::Request::put(uri).body(Body::default()).unwrap();
    client.ready().await?.call(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_client_layer_over_hyper_util_traces_times_and_logs_each_call() {
    fixture();
    let callee = callee().await;
    let hyper = HyperClient::builder(TokioExecutor::new()).build_http::<Body>();
    let mut client = ServiceBuilder::new()
        .layer(glimpse_obs::client::ClientLayer::new())
        .timeout(Duration::from_millis(300))
        .service(hyper);

    let server = tracing::info_span!("job", otel.kind = "server");
    let (echoed, failed, slow) = {
        use tracing::Instrument;
        let base = format!("http://{callee}");
        async {
            let echoed = put(&mut client, format!("{base}/echo")).await.unwrap();
            let body = echoed.into_body().collect().await.unwrap().to_bytes();
            let failed = put(&mut client, format!("{base}/status/500"))
                .await
                .unwrap()
                .status();
            let slow = put(&mut client, format!("{base}/slow")).await;
            (
                serde_json::from_slice::<Value>(&body).unwrap(),
                failed,
                slow,
            )
        }
        .instrument(server.clone())
        .await
    };
    // The job span's IDs, as the crate propagates them.
    let (job_trace, job_span) = {
        let mut headers = http::HeaderMap::new();
        server.in_scope(|| glimpse_obs::propagation::inject(&mut headers));
        let tp = headers["traceparent"].to_str().unwrap().to_owned();
        (tp[3..35].to_owned(), tp[36..52].to_owned())
    };
    drop(server);

    // Headers: the call's own span in the job's trace.
    let tp = echoed["traceparent"].as_str().expect("traceparent sent");
    assert!(tp.starts_with(&format!("00-{job_trace}-")), "{tp}");
    assert_ne!(parent_id(tp), job_span);

    // The answers: a 500, and a timeout from the `Timeout` inside the layer.
    assert_eq!(failed, 500);
    let err = slow.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");

    // Spans: three CLIENT children of the job, the 500 an error.
    flush().await;
    let store = &fixture().store;
    let job_id = job_span.clone();
    let calls = store.find(|s| s.parent_span_id() == job_id);
    assert_eq!(calls.len(), 3, "{}", store.summary());
    assert!(
        calls
            .iter()
            .all(|s| s.kind() == SpanKind::Client && s.name() == "PUT")
    );
    let named = calls.iter().find(|s| s.span_id() == parent_id(tp)).unwrap();
    assert_eq!(
        named.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    let five = calls
        .iter()
        .find(|s| s.attr("http.response.status_code").as_deref() == Some("500"))
        .unwrap();
    assert_eq!(five.status(), SpanStatus::Error);
    assert_eq!(five.attr("error.type").as_deref(), Some("500"));
    assert!(
        calls
            .iter()
            .any(|s| s.attr("error.type").as_deref() == Some("timeout"))
    );

    // Lines: one WARN each for the 500 and the timeout.
    let peer = format!("127.0.0.1:{}", callee.port());
    let warns = lines(|l| l["message"] == "outbound call failed" && l["peer"] == peer.as_str());
    assert_eq!(warns.len(), 2, "{warns:#?}");
    assert!(
        warns
            .iter()
            .any(|l| l["http_status"] == 500 && l["method"] == "PUT")
    );
    assert!(warns.iter().any(|l| l["error_type"] == "timeout"));
    assert!(warns.iter().all(|l| l["duration_ms"].as_f64().is_some()));

    // Metrics: by status.
    let text = scrape().await;
    for (status, n) in [("200", 1.0), ("500", 1.0), ("timeout", 1.0)] {
        assert_eq!(
            sample(
                &text,
                "http_client_request_duration_seconds_count",
                &[
                    ("method", "PUT"),
                    ("server_address", "127.0.0.1"),
                    ("status", status)
                ]
            ),
            Some(n),
            "status {status}: {text}"
        );
    }
}

//! The application the trace tests send requests through, served on a real
//! TCP listener, and the checks shared by the gRPC and HTTP receiver tests.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use axum::{
    Router,
    extract::{Path, Query},
    http::StatusCode,
    routing::get,
};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode as SpanStatus};
use serde_json::Value;

use super::otlp_receiver::{Received, Receiver, Store};

/// The W3C example IDs, as a caller would send them.
pub const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const PARENT: &str = "00f067aa0ba902b7";

async fn user(Path(id): Path<String>) -> Result<String, StatusCode> {
    glimpse_obs::record_user_id(format!("u-{id}"));
    tracing::info!(user = %id, "loading user");
    glimpse_obs::db::query("get_user", async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok::<_, Infallible>(())
    })
    .await
    .map_err(|_: Infallible| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(format!("user {id}"))
}

#[derive(serde::Deserialize)]
struct Relay {
    to: String,
}

/// Calls `to` with the current trace injected, and returns its body.
async fn relay(Query(q): Query<Relay>) -> Result<String, StatusCode> {
    let mut headers = http::HeaderMap::new();
    glimpse_obs::propagation::inject(&mut headers);
    let resp = reqwest::Client::new()
        .get(&q.to)
        .headers(headers)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    resp.text().await.map_err(|_| StatusCode::BAD_GATEWAY)
}

pub fn app() -> Router {
    Router::new()
        .route("/users/{id}", get(user))
        .route("/relay", get(relay))
        .route(
            "/error",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/health", get(|| async { "ok" }))
        .layer(glimpse_obs::layer())
}

/// Serve [`app`] on 127.0.0.1 at a free port, on the current runtime.
pub async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await.unwrap() });
    addr
}

/// What the client saw of one request.
#[derive(Debug, Clone)]
pub struct Sent {
    pub path: String,
    pub status: u16,
    pub traceparent: Option<String>,
    pub request_id: Option<String>,
}

async fn get_with(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Sent {
    send_with(client, reqwest::Method::GET, base, path, headers).await
}

async fn send_with(
    client: &reqwest::Client,
    method: reqwest::Method,
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Sent {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        map.append(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_str(v).unwrap(),
        );
    }
    let resp = client
        .request(method, format!("{base}{path}"))
        .headers(map)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    Sent {
        path: path.to_owned(),
        status: resp.status().as_u16(),
        traceparent: header("traceparent"),
        request_id: header("x-request-id"),
    }
}

/// The requests of the receiver tests.
pub struct Scenario {
    pub continued: Sent,
    pub duplicated: Sent,
    pub invalid: Sent,
    pub failed: Sent,
    pub unmatched: Sent,
    pub other_method: Sent,
}

pub async fn send_scenario(addr: SocketAddr) -> Scenario {
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let valid = format!("00-{TRACE}-{PARENT}-01");
    let continued = get_with(
        &client,
        &base,
        "/users/42",
        &[
            ("traceparent", &valid),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("baggage", "tenant=acme"),
        ],
    )
    .await;
    let duplicated = get_with(
        &client,
        &base,
        "/users/43",
        &[("traceparent", &valid), ("traceparent", &valid)],
    )
    .await;
    let upper = format!("00-{}-{PARENT}-01", TRACE.to_uppercase());
    let invalid = get_with(&client, &base, "/users/44", &[("traceparent", &upper)]).await;
    let failed = get_with(&client, &base, "/error", &[("traceparent", &valid)]).await;
    let unmatched = get_with(&client, &base, "/no/such/route", &[]).await;
    let purge = reqwest::Method::from_bytes(b"PURGE").unwrap();
    let other_method = send_with(&client, purge, &base, "/cache/purge", &[]).await;
    Scenario {
        continued,
        duplicated,
        invalid,
        failed,
        unmatched,
        other_method,
    }
}

/// The receiver tests' whole run: init exporting to `receiver` over
/// `protocol`, send the scenario through a served app, shut down (which
/// flushes the spans) and check what the collector got.
pub async fn round_trip(receiver: Receiver, protocol: glimpse_obs::OtlpProtocol, service: &str) {
    let logs = glimpse_obs::testing::SharedBuffer::new();
    let guard = glimpse_obs::Config::default()
        .service(service)
        .version("1.2.3")
        .environment(glimpse_obs::Environment::Staging)
        .otlp_endpoint(Some(receiver.endpoint()))
        .otlp_protocol(protocol)
        .metrics_addr(None)
        .log_writer(logs.clone())
        .shutdown_timeout(Duration::from_secs(5))
        .init()
        .unwrap();
    let addr = serve().await;
    let sent = send_scenario(addr).await;

    // Shutting down flushes the spans; it blocks, so not on a worker thread.
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap()
        .unwrap();

    assert!(receiver.store.exports() >= 1);
    check_scenario(&receiver.store, &logs.lines(), &sent, service);
}

fn server_span(store: &Store, path: &str) -> Received {
    let found =
        store.find(|s| s.kind() == SpanKind::Server && s.attr("url.path").as_deref() == Some(path));
    assert_eq!(
        found.len(),
        1,
        "exactly one server span for {path}; got:\n{}",
        store.summary()
    );
    found.into_iter().next().unwrap()
}

/// Everything the receiver must hold after the scenario, and the access line.
pub fn check_scenario(store: &Store, logs: &[Value], sent: &Scenario, service: &str) {
    // 1. The caller's trace continues: same trace ID, the caller's span as parent.
    let server = server_span(store, "/users/42");
    assert_eq!(server.trace_id(), TRACE);
    assert_eq!(server.parent_span_id(), PARENT);
    assert_eq!(server.name(), "GET /users/{id}");
    assert_eq!(server.kind(), SpanKind::Server);
    assert_eq!(
        server.span.trace_state, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
        "tracestate headers combined in order"
    );
    for (key, want) in [
        ("http.request.method", "GET"),
        ("http.route", "/users/{id}"),
        ("url.path", "/users/42"),
        ("url.scheme", "http"),
        ("http.response.status_code", "200"),
        ("enduser.id", "u-42"),
    ] {
        assert_eq!(
            server.attr(key).as_deref(),
            Some(want),
            "attribute {key} of {server:#?}"
        );
    }
    assert_eq!(
        server.attr("glimpse.request_id"),
        sent.continued.request_id,
        "request ID on the span"
    );
    assert_eq!(server.status(), SpanStatus::Unset);
    assert_eq!(
        server.resource_attr("service.name").as_deref(),
        Some(service)
    );
    assert_eq!(
        server.resource_attr("service.version").as_deref(),
        Some("1.2.3")
    );
    assert_eq!(
        server
            .resource_attr("deployment.environment.name")
            .as_deref(),
        Some("staging")
    );
    assert_eq!(server.scope, "glimpse_obs");

    // 2. The response names the server span.
    assert_eq!(sent.continued.status, 200);
    assert_eq!(
        sent.continued.traceparent.as_deref(),
        Some(&*format!("00-{TRACE}-{}-01", server.span_id()))
    );

    // 3. The DB query is a child of the server span.
    let db: Vec<Received> =
        store.find(|s| s.trace_id() == TRACE && s.parent_span_id() == server.span_id());
    assert_eq!(db.len(), 1, "one child span; got:\n{}", store.summary());
    assert_eq!(db[0].attr("db.operation.name").as_deref(), Some("get_user"));
    assert_eq!(db[0].kind(), SpanKind::Client);

    // 4. The access line and the handler's line carry the trace.
    let access = logs
        .iter()
        .find(|l| l["message"] == "request completed" && l["path"] == "/users/42")
        .expect("an access line for /users/42");
    assert_eq!(access["traceId"], TRACE);
    assert_eq!(access["spanId"], server.span_id().as_str());
    let handler = logs
        .iter()
        .find(|l| l["message"] == "loading user" && l["user"] == "42")
        .expect("handler line");
    assert_eq!(handler["traceId"], TRACE);

    // 5. Duplicated or invalid traceparent: a new root trace.
    for (path, sent) in [
        ("/users/43", &sent.duplicated),
        ("/users/44", &sent.invalid),
    ] {
        let span = server_span(store, path);
        assert_ne!(
            span.trace_id(),
            TRACE,
            "{path} must not continue the sent trace"
        );
        assert_eq!(span.parent_span_id(), "", "{path} must be a root span");
        // The crate generated the trace ID: sampled and W3C Level 2 random.
        assert_eq!(
            sent.traceparent.as_deref(),
            Some(&*format!("00-{}-{}-03", span.trace_id(), span.span_id())),
            "{path} response header"
        );
        assert_eq!(span.span.flags & 0xff, 0x03, "{path} span flags");
        let line = logs
            .iter()
            .find(|l| l["message"] == "request completed" && l["path"] == path)
            .expect("access line");
        assert_eq!(line["traceId"], span.trace_id().as_str());
    }

    // 6. A 5xx response marks the span as an error.
    let failed = server_span(store, "/error");
    assert_eq!(sent.failed.status, 500);
    assert_eq!(failed.status(), SpanStatus::Error);
    assert_eq!(
        failed.attr("http.response.status_code").as_deref(),
        Some("500")
    );
    assert_eq!(failed.attr("error.type").as_deref(), Some("500"));
    assert_eq!(failed.trace_id(), TRACE);

    // 7. A request that matched no route is named by its method alone.
    let unmatched = server_span(store, "/no/such/route");
    assert_eq!(sent.unmatched.status, 404);
    assert_eq!(unmatched.name(), "GET");
    assert_eq!(unmatched.attr("http.route"), None, "no route matched");
    assert_eq!(unmatched.attr("http.request.method_original"), None);

    // 8. A method outside the semantic conventions' list: `_OTHER`, the
    // original kept, the span named `HTTP`.
    let other = server_span(store, "/cache/purge");
    assert_eq!(sent.other_method.status, 404);
    assert_eq!(other.name(), "HTTP");
    assert_eq!(other.attr("http.request.method").as_deref(), Some("_OTHER"));
    assert_eq!(
        other.attr("http.request.method_original").as_deref(),
        Some("PURGE")
    );
}

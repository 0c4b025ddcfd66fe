//! The crate's own span pipeline, checked by an independent decoder: the
//! request bodies the OTLP/HTTP receiver captured are decoded by the
//! OpenTelemetry Python protobufs (`tests/peers/decode_traces.py`, installed
//! by `tests/peers/setup.sh`), and the spans they hold carry the names,
//! kinds, parent IDs, status, attributes, events, links and resource a user
//! sees in Jaeger.
//!
//! Without the venv the test reports itself skipped on stderr, unless
//! `CI` or `GLIMPSE_REQUIRE_PEERS` is set, where that is a failure.

mod support;

use std::{path::PathBuf, time::Duration};

use axum::{Router, extract::Path, routing::get};
use serde_json::Value;
use support::otlp_receiver::{Receiver, Store};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

async fn user(Path(id): Path<String>) -> String {
    glimpse_obs::record_user_id(format!("u-{id}"));
    glimpse_obs::db::query("get_user", async { Ok::<_, std::convert::Infallible>(()) })
        .await
        .unwrap();
    format!("user {id}")
}

fn app() -> Router {
    Router::new()
        .route("/users/{id}", get(user))
        .route(
            "/charge",
            get(|| async {
                tracing::error!(provider = "acme", attempts = 3, "charge failed");
                "accepted"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("ledger unavailable");
                }
                "never"
            }),
        )
        .layer(glimpse_obs::layer())
}

/// A service on the public internet: a caller's `traceparent` becomes a
/// link, not the parent.
fn public_app() -> Router {
    Router::new()
        .route("/public", get(|| async { "ok" }))
        .layer(glimpse_obs::layer().public_endpoint(true))
}

fn decode(python: &std::path::Path, bodies: &[Vec<u8>]) -> Vec<Value> {
    let dir = std::env::temp_dir().join(format!("glimpse-spans-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let f = dir.join(format!("{i}.pb"));
            std::fs::write(&f, b).unwrap();
            f
        })
        .collect();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/decode_traces.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(&files)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "decoder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn server<'a>(spans: &'a [Value], path: &str) -> &'a Value {
    let found: Vec<&Value> = spans
        .iter()
        .filter(|s| s["kind"] == "SPAN_KIND_SERVER" && s["attributes"]["url.path"] == path)
        .collect();
    assert_eq!(found.len(), 1, "one server span for {path}: {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_from_the_pipeline_decode_in_python_with_names_kinds_parents_status_attributes_events_links_and_resource()
 {
    let Some(python) = support::peers::python() else {
        return;
    };
    let receiver = Receiver::http(Store::default()).await;
    let guard = glimpse_obs::Config::default()
        .service("pipeline-python")
        .version("4.5.6")
        .environment(glimpse_obs::Environment::Staging)
        .otlp_endpoint(Some(receiver.endpoint()))
        .otlp_protocol(glimpse_obs::OtlpProtocol::HttpProtobuf)
        .metrics_addr(None)
        .process_metrics(false)
        .log_writer(glimpse_obs::testing::SharedBuffer::new())
        .shutdown_timeout(Duration::from_secs(5))
        .init()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await.unwrap() });
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_addr = public.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(public, public_app()).await.unwrap() });

    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let res = client
        .get(format!("{base}/users/42"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header("tracestate", "congo=t61rcWkgMzE")
        .header("user-agent", "pipeline-test/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let tp = res.headers()["traceparent"].to_str().unwrap().to_owned();
    assert_eq!(
        client
            .get(format!("{base}/charge"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/panic"))
            .send()
            .await
            .unwrap()
            .status(),
        500
    );
    assert_eq!(
        client
            .get(format!("http://{public_addr}/public"))
            .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap()
        .unwrap();

    let bodies = receiver.store.bodies();
    assert!(!bodies.is_empty(), "the receiver got requests");
    let spans = decode(&python, &bodies);

    // The continued server span: name, kind, parent, trace state, attributes.
    let s = server(&spans, "/users/42");
    assert_eq!(s["name"], "GET /users/{id}");
    assert_eq!(s["trace_id"], TRACE);
    assert_eq!(s["parent_span_id"], PARENT);
    assert_eq!(s["trace_state"], "congo=t61rcWkgMzE");
    assert_eq!(
        tp,
        format!("00-{TRACE}-{}-01", s["span_id"].as_str().unwrap())
    );
    assert_eq!(s["status"]["code"], "STATUS_CODE_UNSET");
    let a = &s["attributes"];
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["http.route"], "/users/{id}");
    assert_eq!(a["url.scheme"], "http");
    assert_eq!(a["http.response.status_code"], 200, "an int, recorded late");
    assert_eq!(a["enduser.id"], "u-42");
    assert_eq!(a["user_agent.original"], "pipeline-test/1.0");
    assert_eq!(a["network.protocol.version"], "1.1");
    assert!(
        a["glimpse.request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(a.get("otel.kind").is_none() && a.get("otel.name").is_none());
    assert!(s["end"].as_u64().unwrap() >= s["start"].as_u64().unwrap());
    // OTLP SpanFlags: sampled, and the parent's remoteness known and remote.
    assert_eq!(s["flags"].as_u64().unwrap() & 0x3ff, 0x301);

    // Resource and scope.
    let r = &s["resource"];
    assert_eq!(r["service.name"], "pipeline-python");
    assert_eq!(r["service.version"], "4.5.6");
    assert_eq!(r["deployment.environment.name"], "staging");
    assert_eq!(s["scope"]["name"], "glimpse_obs");
    assert_eq!(s["scope"]["version"], env!("CARGO_PKG_VERSION"));

    // The db child: CLIENT, parented by the server span, same trace.
    let db: Vec<&Value> = spans
        .iter()
        .filter(|c| c["parent_span_id"] == s["span_id"])
        .collect();
    assert_eq!(db.len(), 1, "{spans:#?}");
    assert_eq!(db[0]["name"], "db.query");
    assert_eq!(db[0]["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(db[0]["trace_id"], TRACE);
    assert_eq!(db[0]["attributes"]["db.operation.name"], "get_user");

    // An ERROR log inside the request: a span event, and the status error.
    let s = server(&spans, "/charge");
    assert_eq!(s["parent_span_id"], "", "a new root");
    assert_eq!(s["status"]["code"], "STATUS_CODE_ERROR");
    let events = s["events"].as_array().unwrap();
    let e = events
        .iter()
        .find(|e| e["name"] == "charge failed")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(e["attributes"]["provider"], "acme");
    assert_eq!(e["attributes"]["attempts"], 3);
    assert_eq!(e["attributes"]["level"], "ERROR");

    // A panic: status error, 500, and an `exception` event.
    let s = server(&spans, "/panic");
    assert_eq!(s["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(s["attributes"]["http.response.status_code"], 500);
    assert_eq!(s["attributes"]["error.type"], "panic");
    let ex = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "exception")
        .unwrap_or_else(|| panic!("{s:#?}"));
    assert_eq!(ex["attributes"]["exception.type"], "panic");
    assert_eq!(ex["attributes"]["exception.message"], "ledger unavailable");

    // A public endpoint: a trace of its own, the caller's context a link.
    let s = server(&spans, "/public");
    assert_ne!(s["trace_id"], TRACE);
    assert_eq!(s["parent_span_id"], "", "a new root");
    let links = s["links"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{s:#?}");
    assert_eq!(links[0]["trace_id"], TRACE);
    assert_eq!(links[0]["span_id"], PARENT);
    // The other spans carry no link.
    for other in spans.iter().filter(|o| o["span_id"] != s["span_id"]) {
        assert_eq!(other["links"], serde_json::json!([]), "{other:#?}");
    }
}

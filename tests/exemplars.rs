//! Exemplars and the OpenMetrics exposition, as a scraper sees them: a
//! sampled request's trace ID on the bucket its duration falls in, none for
//! an unsampled one, content negotiation on the scrape listener, and the
//! OpenMetrics text accepted by the Prometheus Python client's OpenMetrics
//! parser (the peer venv of `tests/peers/setup.sh`; `GLIMPSE_REQUIRE_PEERS`
//! makes a missing venv a failure).

mod support;

use std::{process::Stdio, sync::OnceLock, time::Duration};

use axum::{Router, routing::get};
use glimpse_obs::{Config, Guard, testing::SharedBuffer};
use tower::ServiceExt;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";

fn guard() -> &'static Guard {
    static GUARD: OnceLock<Guard> = OnceLock::new();
    GUARD.get_or_init(|| {
        Config::default()
            .service("exemplar-test")
            .metrics_addr(Some("127.0.0.1:0".parse().unwrap()))
            .log_writer(SharedBuffer::new())
            .init()
            .unwrap()
    })
}

fn app() -> Router {
    Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                "slow"
            }),
        )
        // Only the exemplar-bucket test asks for this one: the tests of this
        // file run at once, and a sampled request of another test in the
        // same bucket would replace its exemplar.
        .route(
            "/timed",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                "timed"
            }),
        )
        .route("/unsampled", get(|| async { "u" }))
        .route(
            "/db",
            get(|| async {
                glimpse_obs::db::query("load_user", async { Ok::<_, std::io::Error>(1) })
                    .await
                    .unwrap();
                let conn = glimpse_obs::ws::Connection::open("chat");
                conn.latency(Duration::from_millis(3));
                "db"
            }),
        )
        .layer(glimpse_obs::layer())
}

/// Sends `GET path` (with `traceparent` when given) and returns the
/// response's `traceparent`.
async fn get_path(path: &str, traceparent: Option<&str>) -> Option<String> {
    let mut req = axum::http::Request::get(path);
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let resp = app()
        .oneshot(req.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    resp.headers()
        .get("traceparent")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// The bucket lines of `metric` whose labels contain `label`.
fn bucket_lines<'a>(text: &'a str, metric: &str, label: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}_bucket{{")) && l.contains(label))
        .collect()
}

/// `le` of a bucket line.
fn le_of(line: &str) -> f64 {
    let le = line
        .split("le=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    if le == "+Inf" {
        f64::INFINITY
    } else {
        le.parse().unwrap()
    }
}

#[tokio::test]
async fn a_sampled_requests_trace_id_is_the_exemplar_of_the_bucket_its_duration_falls_in() {
    let guard = guard();
    let tp = get_path("/timed", None)
        .await
        .expect("a sampled request answers with its traceparent");
    let trace_id = tp.split('-').nth(1).unwrap();
    let span_id = tp.split('-').nth(2).unwrap();

    let text = guard.render_openmetrics();
    let lines = bucket_lines(
        &text,
        "http_server_request_duration_seconds",
        "route=\"/timed\"",
    );
    let with_trace: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains(&format!("trace_id=\"{trace_id}\"")))
        .collect();
    assert_eq!(
        with_trace.len(),
        1,
        "one bucket holds the exemplar:\n{text}"
    );
    let line = with_trace[0];
    assert!(line.contains(&format!("span_id=\"{span_id}\"")), "{line}");
    // `… # {trace_id="…",span_id="…"} value timestamp`
    let tail = line.split("} ").last().unwrap();
    let mut parts = tail.split(' ');
    let value: f64 = parts.next().unwrap().parse().unwrap();
    let timestamp: f64 = parts.next().unwrap().parse().unwrap();
    assert!(
        value >= 0.03,
        "the exemplar value is the request's duration: {value}"
    );
    let le = le_of(line);
    let below = lines
        .iter()
        .map(|l| le_of(l))
        .filter(|b| *b < le)
        .fold(0.0, f64::max);
    assert!(
        below < value && value <= le,
        "{value} falls in ({below}, {le}]"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - timestamp).abs() < 60.0,
        "timestamp {timestamp}, now {now}"
    );
}

#[tokio::test]
async fn an_unsampled_request_leaves_no_exemplar() {
    let guard = guard();
    // The caller decided not to sample: the parent-based sampler follows.
    get_path(
        "/unsampled",
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
    )
    .await;
    let text = guard.render_openmetrics();
    let lines = bucket_lines(
        &text,
        "http_server_request_duration_seconds",
        "route=\"/unsampled\"",
    );
    assert!(!lines.is_empty(), "the request is counted:\n{text}");
    assert!(
        lines.iter().all(|l| !l.contains(" # {")),
        "no exemplar for an unsampled request:\n{}",
        lines.join("\n")
    );
}

#[tokio::test]
async fn the_scrape_listener_serves_openmetrics_only_to_a_scraper_that_asks_for_it() {
    let guard = guard();
    get_path("/slow", None).await;
    let url = format!("http://{}/metrics", guard.metrics_addr().unwrap());
    let client = reqwest::Client::new();

    let om = client
        .get(&url)
        .header("accept", OPENMETRICS)
        .send()
        .await
        .unwrap();
    assert_eq!(
        om.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = om.text().await.unwrap();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains(" # {trace_id=\""), "{om}");
    assert!(om.contains("# TYPE log_events counter"), "{om}");
    assert!(
        om.contains("# UNIT http_server_request_duration_seconds seconds"),
        "{om}"
    );

    for accept in [None, Some("text/plain;version=0.0.4"), Some("*/*")] {
        let mut req = client.get(&url);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let classic = req.send().await.unwrap();
        assert_eq!(
            classic.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let classic = classic.text().await.unwrap();
        assert!(!classic.contains("# EOF"), "{classic}");
        assert!(!classic.contains("trace_id"), "{classic}");
        assert!(
            classic.contains("# TYPE log_events_total counter"),
            "{classic}"
        );
    }
}

/// Parses stdin with `prometheus_client`'s OpenMetrics parser and prints,
/// per histogram with exemplars, `name trace_id span_id` of each exemplar.
const PARSE: &str = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        if s.exemplar is not None:
            print(family.type, family.name, s.labels["le"], s.exemplar.labels["trace_id"], s.exemplar.labels["span_id"], s.exemplar.value)
"#;

#[tokio::test]
async fn the_openmetrics_text_is_accepted_by_the_prometheus_python_clients_parser() {
    let guard = guard();
    get_path("/slow", None).await;
    get_path("/db", None).await;
    glimpse_obs::business::payment_processed(
        "stripe",
        "EUR",
        1299,
        glimpse_obs::business::PaymentStatus::Succeeded,
    );
    let Some(python) = support::peers::python() else {
        return;
    };
    let text = guard.render_openmetrics();
    let mut child = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(PARSE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the parser finishes within 20 s")
        .unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser rejected the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = String::from_utf8(out.stdout).unwrap();
    for family in [
        "histogram http_server_request_duration_seconds ",
        "histogram db_query_duration_seconds ",
        "histogram websocket_message_latency_seconds ",
    ] {
        assert!(
            seen.lines().any(|l| l.starts_with(family)),
            "the parser found no exemplar on {family}:\n{seen}\n{text}"
        );
    }
    assert!(
        text.contains("# TYPE glimpse_payment_amount counter"),
        "the crate's own revenue counter follows the negotiation:\n{text}"
    );
}

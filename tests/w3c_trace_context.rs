//! The W3C trace-context test suite (`test/test.py` of w3c/trace-context),
//! replayed through a real TCP server built with `glimpse_obs::layer()`: the
//! suite's incoming `traceparent` / `tracestate` headers go in, and each test
//! checks what the handler's outbound `propagation::inject` writes (what the
//! suite's callback server would receive) and the `traceparent` the response
//! carries. Each test names the suite's cases it covers.
//!
//! The suite's `AdvancedTest` cases make three outbound calls per request and
//! expect three parent IDs: here each call is made inside a span of its own,
//! as an HTTP client middleware does.

use std::{net::SocketAddr, sync::OnceLock};

use axum::{Json, Router, extract::Path, routing::get};
use glimpse_obs::{Config, Guard, testing::SharedBuffer};
use serde_json::{Value, json};

/// The suite's IDs.
const TRACE: &str = "12345678901234567890123456789012";
const PARENT: &str = "1234567890123456";
const ZERO_TRACE: &str = "00000000000000000000000000000000";

fn init() -> &'static Guard {
    static GUARD: OnceLock<Guard> = OnceLock::new();
    GUARD.get_or_init(|| {
        Config::default()
            .service("w3c-test")
            .metrics_addr(None)
            .log_writer(SharedBuffer::new())
            .init()
            .unwrap()
    })
}

/// The headers `propagation::inject` writes, as the callee would read them.
fn injected() -> Value {
    let mut headers = http::HeaderMap::new();
    glimpse_obs::propagation::inject(&mut headers);
    let all = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    json!({ "traceparent": all("traceparent"), "tracestate": all("tracestate") })
}

/// One outbound call from the server span itself.
async fn call() -> Json<Value> {
    Json(json!([injected()]))
}

/// `n` outbound calls, each from a span of its own (the client span an HTTP
/// client middleware opens per call).
async fn calls(Path(n): Path<usize>) -> Json<Value> {
    let out: Vec<Value> = (0..n)
        .map(|i| tracing::info_span!("outbound call", call = i).in_scope(injected))
        .collect();
    Json(Value::Array(out))
}

async fn serve() -> SocketAddr {
    init();
    let app = Router::new()
        .route("/call", get(call))
        .route("/calls/{n}", get(calls))
        .layer(glimpse_obs::layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A `traceparent` as the suite's `Traceparent.from_string` reads it.
#[derive(Debug)]
struct Traceparent {
    version: String,
    trace_id: String,
    parent_id: String,
    flags: u8,
}

impl Traceparent {
    fn parse(value: &str) -> Self {
        let fields: Vec<&str> = value.split('-').collect();
        assert_eq!(fields.len(), 4, "{value}");
        let hex = |s: &str, len: usize| {
            assert!(
                s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{value}: {s:?} is not {len} lowercase hex digits"
            );
            s.to_owned()
        };
        let tp = Self {
            version: hex(fields[0], 2),
            trace_id: hex(fields[1], 32),
            parent_id: hex(fields[2], 16),
            flags: u8::from_str_radix(&hex(fields[3], 2), 16).unwrap(),
        };
        assert_eq!(tp.version, "00", "{value}");
        assert_ne!(tp.trace_id, ZERO_TRACE, "{value}");
        assert_ne!(tp.parent_id, "0000000000000000", "{value}");
        tp
    }
}

/// One outbound call as the suite's callback server sees it.
#[derive(Debug)]
struct Outbound {
    traceparent: Traceparent,
    /// The combined `tracestate` members, in order.
    tracestate: Vec<(String, String)>,
    /// The `tracestate` as sent (one header value, or none).
    raw_tracestate: Option<String>,
}

impl Outbound {
    /// The value of `key`, as the suite's `tracestate[key]`.
    fn get(&self, key: &str) -> Option<&str> {
        self.tracestate
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn tracestate_text(&self) -> &str {
        self.raw_tracestate.as_deref().unwrap_or("")
    }
}

/// Key and value grammar the suite's `Tracestate` parser applies to what it
/// receives: a member it cannot parse fails the suite's test.
fn assert_member_is_valid(key: &str, value: &str) {
    let kb = key.as_bytes();
    assert!(
        !kb.is_empty()
            && kb.len() <= 256
            && (kb[0].is_ascii_lowercase() || kb[0].is_ascii_digit())
            && kb.iter().all(|&b| b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')),
        "key {key:?}"
    );
    let vb = value.as_bytes();
    assert!(
        !vb.is_empty()
            && vb.len() <= 256
            && vb
                .iter()
                .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
            && vb.last() != Some(&b' '),
        "value {value:?}"
    );
}

struct Seen {
    /// The `traceparent` of the response.
    response: Traceparent,
    outbound: Vec<Outbound>,
}

impl Seen {
    fn one(&self) -> &Outbound {
        assert_eq!(self.outbound.len(), 1);
        &self.outbound[0]
    }
}

/// Send a request with `headers` (in order, names as given) and read what
/// the handler injected into its `calls` outbound calls (`None`: one call
/// from the server span).
async fn send(addr: SocketAddr, headers: &[(&str, &str)], calls: Option<usize>) -> Seen {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        map.append(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_str(v).unwrap(),
        );
    }
    let path = calls.map_or_else(|| "/call".to_owned(), |n| format!("/calls/{n}"));
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .headers(map)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let response = Traceparent::parse(resp.headers()["traceparent"].to_str().unwrap());
    let body: Value = resp.json().await.unwrap();
    let outbound = body
        .as_array()
        .unwrap()
        .iter()
        .map(|call| {
            let tps = call["traceparent"].as_array().unwrap();
            assert_eq!(tps.len(), 1, "expect one traceparent header, got {tps:?}");
            let states = call["tracestate"].as_array().unwrap();
            assert!(states.len() <= 1, "one tracestate header: {states:?}");
            let raw_tracestate = states.first().map(|s| s.as_str().unwrap().to_owned());
            let mut tracestate: Vec<(String, String)> = Vec::new();
            for member in raw_tracestate.iter().flat_map(|s| s.split(',')) {
                let (k, v) = member.split_once('=').unwrap();
                assert_member_is_valid(k, v);
                assert!(
                    tracestate.iter().all(|(seen, _)| seen != k),
                    "{k} sent twice"
                );
                tracestate.push((k.to_owned(), v.to_owned()));
            }
            Outbound {
                traceparent: Traceparent::parse(tps[0].as_str().unwrap()),
                tracestate,
                raw_tracestate,
            }
        })
        .collect();
    Seen { response, outbound }
}

/// One request with `headers`, one outbound call from the server span.
async fn single(addr: SocketAddr, headers: &[(&str, &str)]) -> Outbound {
    let mut seen = send(addr, headers, None).await;
    let out = seen.outbound.remove(0);
    assert_eq!(
        out.traceparent.trace_id, seen.response.trace_id,
        "the response and the outbound call share the trace"
    );
    assert_eq!(
        out.traceparent.parent_id, seen.response.parent_id,
        "called from the server span, whose ID the response carries"
    );
    out
}

fn tp(flags: &str) -> String {
    format!("00-{TRACE}-{PARENT}-{flags}")
}

/// Suite: `test_both_traceparent_and_tracestate_missing`,
/// `test_traceparent_included_tracestate_missing`,
/// `test_traceparent_header_name_valid_casing`, `test_traceparent_ows_handling`,
/// `test_traceparent_version_0xcc` (the accepted values).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_traceparent_is_continued_with_the_server_span_as_the_new_parent() {
    let addr = serve().await;
    let fresh = single(addr, &[]).await;
    assert_ne!(fresh.traceparent.trace_id, TRACE);
    assert!(fresh.tracestate.is_empty());

    let valid = [
        ("traceparent", tp("01")),
        ("TraceParent", tp("01")),
        ("TrAcEpArEnT", tp("01")),
        ("TRACEPARENT", tp("01")),
        ("traceparent", format!(" {}", tp("01"))),
        ("traceparent", format!("\t{}", tp("01"))),
        ("traceparent", format!("{} ", tp("01"))),
        ("traceparent", format!("{}\t", tp("01"))),
        ("traceparent", format!("\t {} \t", tp("01"))),
        ("traceparent", format!("cc-{TRACE}-{PARENT}-01")),
        (
            "traceparent",
            format!("cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like"),
        ),
    ];
    for (name, value) in &valid {
        let out = single(addr, &[(name, value.as_str())]).await;
        assert_eq!(out.traceparent.trace_id, TRACE, "{name}: {value:?}");
        assert_ne!(out.traceparent.parent_id, PARENT, "{name}: {value:?}");
        assert_eq!(out.traceparent.flags & 1, 1, "sampled kept: {value:?}");
        assert!(out.tracestate.is_empty());
    }
}

/// Suite: `test_traceparent_duplicated`, `test_traceparent_header_name`,
/// `test_traceparent_version_0x00`, `test_traceparent_version_0xcc` (the
/// refused value), `test_traceparent_version_0xff`,
/// `test_traceparent_version_illegal_characters`,
/// `test_traceparent_version_too_long` / `_too_short`,
/// `test_traceparent_trace_id_all_zero` / `_illegal_characters` /
/// `_too_long` / `_too_short`, `test_traceparent_parent_id_all_zero` /
/// `_illegal_characters` / `_too_long` / `_too_short`,
/// `test_traceparent_trace_flags_illegal_characters` / `_too_long` /
/// `_too_short`; with `tracestate` sent alongside, which is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_or_duplicated_traceparent_starts_a_new_trace_and_drops_tracestate() {
    let addr = serve().await;
    let bad = [
        format!("00-{TRACE}-{PARENT}-01."),
        format!("00-{TRACE}-{PARENT}-01-what-the-future-will-be-like"),
        format!("cc-{TRACE}-{PARENT}-01.what-the-future-will-be-like"),
        format!("ff-{TRACE}-{PARENT}-01"),
        format!(".0-{TRACE}-{PARENT}-01"),
        format!("0.-{TRACE}-{PARENT}-01"),
        format!("000-{TRACE}-{PARENT}-01"),
        format!("0000-{TRACE}-{PARENT}-01"),
        format!("0-{TRACE}-{PARENT}-01"),
        format!("00-{ZERO_TRACE}-{PARENT}-01"),
        format!("00-.2345678901234567890123456789012-{PARENT}-01"),
        format!("00-1234567890123456789012345678901.-{PARENT}-01"),
        format!("00-123456789012345678901234567890123-{PARENT}-01"),
        format!("00-1234567890123456789012345678901-{PARENT}-01"),
        format!("00-{TRACE}-0000000000000000-01"),
        format!("00-{TRACE}-.234567890123456-01"),
        format!("00-{TRACE}-123456789012345.-01"),
        format!("00-{TRACE}-12345678901234567-01"),
        format!("00-{TRACE}-123456789012345-01"),
        format!("00-{TRACE}-{PARENT}-.0"),
        format!("00-{TRACE}-{PARENT}-0."),
        format!("00-{TRACE}-{PARENT}-001"),
        format!("00-{TRACE}-{PARENT}-1"),
        // Beyond the suite: uppercase hex is not lowercase hex.
        format!("00-{}-{PARENT}-01", TRACE.replace('1', "A")),
        format!("00-{TRACE}-{PARENT}-0A"),
    ];
    for value in &bad {
        let out = single(
            addr,
            &[("traceparent", value.as_str()), ("tracestate", "foo=1")],
        )
        .await;
        for refused in [
            TRACE,
            ZERO_TRACE,
            "23456789012345678901234567890123",
            &TRACE.replace('1', "a"),
        ] {
            assert_ne!(out.traceparent.trace_id, refused, "{value:?}");
        }
        assert!(
            out.tracestate.is_empty(),
            "{value:?}: {:?}",
            out.raw_tracestate
        );
    }

    let other = "00-12345678901234567890123456789011-1234567890123456-01";
    let valid = tp("01");
    for headers in [
        [("traceparent", other), ("traceparent", valid.as_str())],
        [
            ("traceparent", valid.as_str()),
            ("traceparent", valid.as_str()),
        ],
    ] {
        let out = single(addr, &headers).await;
        assert_ne!(out.traceparent.trace_id, TRACE);
        assert_ne!(out.traceparent.trace_id, &other[3..35]);
    }
    for name in ["trace-parent", "trace.parent"] {
        let out = single(addr, &[(name, valid.as_str())]).await;
        assert_ne!(out.traceparent.trace_id, TRACE, "{name}");
    }
}

/// Suite: `test_tracestate_included_traceparent_missing`,
/// `test_tracestate_included_traceparent_included`,
/// `test_tracestate_header_name`, `test_tracestate_header_name_valid_casing`,
/// `test_tracestate_empty_header`,
/// `test_tracestate_multiple_headers_different_keys`,
/// `test_tracestate_ows_handling`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracestate_is_combined_in_order_and_propagated_only_with_a_valid_traceparent() {
    let addr = serve().await;
    let alone1 = single(addr, &[("tracestate", "foo=1")]).await;
    let alone2 = single(addr, &[("tracestate", "foo=1,bar=2")]).await;
    assert_eq!(alone1.tracestate.len(), alone2.tracestate.len());
    assert!(alone1.raw_tracestate.is_none() && alone2.raw_tracestate.is_none());

    let parent = tp("00");
    let out = single(
        addr,
        &[("traceparent", &parent), ("tracestate", "foo=1,bar=2")],
    )
    .await;
    assert_eq!(out.traceparent.trace_id, TRACE);
    assert_eq!(out.traceparent.flags & 1, 0, "unsampled kept");
    assert_eq!(out.tracestate_text(), "foo=1,bar=2");

    for name in ["trace-state", "trace.state"] {
        let out = single(addr, &[("traceparent", &parent), (name, "foo=1")]).await;
        assert_eq!(out.get("foo"), None, "{name}");
    }
    for name in ["TraceState", "TrAcEsTaTe", "TRACESTATE"] {
        let out = single(addr, &[("traceparent", &parent), (name, "foo=1")]).await;
        assert_eq!(out.get("foo"), Some("1"), "{name}");
    }

    let out = single(addr, &[("traceparent", &parent), ("tracestate", "")]).await;
    assert_eq!(out.traceparent.trace_id, TRACE);
    assert_eq!(out.raw_tracestate, None, "no empty tracestate is sent");
    for headers in [
        [("tracestate", "foo=1"), ("tracestate", "")],
        [("tracestate", ""), ("tracestate", "foo=1")],
    ] {
        let mut all = vec![("traceparent", parent.as_str())];
        all.extend_from_slice(&headers);
        let out = single(addr, &all).await;
        assert_eq!(out.traceparent.trace_id, TRACE);
        assert_eq!(out.tracestate_text(), "foo=1", "{headers:?}");
    }

    let out = single(
        addr,
        &[
            ("traceparent", &parent),
            ("tracestate", "foo=1,bar=2"),
            ("tracestate", "rojo=1,congo=2"),
            ("tracestate", "baz=3"),
        ],
    )
    .await;
    assert_eq!(out.tracestate_text(), "foo=1,bar=2,rojo=1,congo=2,baz=3");

    for value in [
        "foo=1 \t , \t bar=2, \t baz=3",
        "foo=1\t \t,\t \tbar=2,\t \tbaz=3",
    ] {
        let out = single(addr, &[("traceparent", &parent), ("tracestate", value)]).await;
        assert_eq!(out.tracestate_text(), "foo=1,bar=2,baz=3", "{value:?}");
    }
    for value in [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"] {
        let out = single(addr, &[("traceparent", &parent), ("tracestate", value)]).await;
        assert_eq!(out.traceparent.trace_id, TRACE);
        assert_eq!(out.tracestate_text(), "foo=1", "{value:?}");
    }
}

/// Suite: `test_tracestate_duplicated_keys` (strict level 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_tracestate_key_is_propagated_once_instead_of_dropping_the_header() {
    let addr = serve().await;
    let parent = tp("00");
    for values in [
        &["foo=1,foo=1"][..],
        &["foo=1,foo=2"],
        &["foo=1", "foo=1"],
        &["foo=1", "foo=2"],
    ] {
        let mut headers = vec![("traceparent", parent.as_str())];
        headers.extend(values.iter().map(|v| ("tracestate", *v)));
        let out = single(addr, &headers).await;
        assert_eq!(out.traceparent.trace_id, TRACE);
        assert_eq!(out.tracestate_text(), "foo=1", "{values:?}");
    }
    let out = single(
        addr,
        &[
            ("traceparent", &parent),
            ("tracestate", "rojo=1,congo=2,rojo=3"),
            ("tracestate", "congo=4,baz=5"),
        ],
    )
    .await;
    assert_eq!(out.tracestate_text(), "rojo=1,congo=2,baz=5");
}

/// Suite: `test_tracestate_all_allowed_characters`,
/// `test_tracestate_key_illegal_characters`,
/// `test_tracestate_key_illegal_vendor_format`,
/// `test_tracestate_key_length_limit`,
/// `test_tracestate_value_illegal_characters` (strict level 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracestate_keys_and_values_follow_the_spec_grammar() {
    let addr = serve().await;
    let parent = tp("00");
    let with = |values: Vec<String>| {
        let parent = parent.clone();
        async move {
            let mut headers = vec![("traceparent", parent.as_str())];
            headers.extend(values.iter().map(|v| ("tracestate", v.as_str())));
            single(addr, &headers).await
        }
    };

    let key: String = ('a'..='z').chain('0'..='9').chain("_-*/".chars()).collect();
    let value: String = (0x20u8..=0x7e)
        .filter(|b| *b != b',' && *b != b'=')
        .map(char::from)
        .collect();
    for key in [key.clone(), format!("{key}@a-z0-9_-*/")] {
        let out = with(vec![format!("{key}={value}")]).await;
        assert_eq!(out.get(&key), Some(value.as_str()), "{key}");
    }

    for (member, key) in [
        ("foo =1", "foo "),
        ("FOO=1", "FOO"),
        ("foo.bar=1", "foo.bar"),
    ] {
        let out = with(vec![member.to_owned()]).await;
        assert_eq!(out.get(key), None, "{member}");
        assert_eq!(out.raw_tracestate, None, "{member}");
    }

    for key in ["foo@", "foo@@bar", "foo@bar@baz"] {
        let out = with(vec![format!("{key}=1,bar=2")]).await;
        assert_eq!(out.get(key), Some("1"), "{key}");
        assert_eq!(out.get("bar"), Some("2"), "{key}");
    }
    let out = with(vec!["@foo=1,bar=2".to_owned()]).await;
    assert_eq!(
        out.get("bar"),
        None,
        "a key starting with @ discards the list"
    );

    for key in [
        "z".repeat(256),
        format!("{}@{}", "t".repeat(241), "v".repeat(14)),
        format!("{}@v", "t".repeat(242)),
        format!("t@{}", "v".repeat(15)),
    ] {
        let out = with(vec!["foo=1".to_owned(), format!("{key}=1")]).await;
        assert_eq!(out.get("foo"), Some("1"), "{} characters", key.len());
        assert_eq!(out.get(&key), Some("1"), "{} characters", key.len());
    }
    let out = with(vec!["foo=1".to_owned(), format!("{}=1", "z".repeat(257))]).await;
    assert_eq!(
        out.get("foo"),
        None,
        "a 257-character key discards the list"
    );

    let out = with(vec!["foo=bar=baz".to_owned()]).await;
    assert_eq!(out.get("foo"), None);
    let out = with(vec!["foo=,bar=3".to_owned()]).await;
    assert_eq!(out.get("foo"), None);
    assert_eq!(out.get("bar"), None);
}

/// Suite: `test_tracestate_member_count_limit` (strict level 2), and the
/// spec's 512-character cut at member boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracestate_keeps_32_members_drops_33_and_is_cut_to_512_characters() {
    let addr = serve().await;
    let parent = tp("00");
    let members = |range: std::ops::RangeInclusive<usize>| {
        range
            .map(|i| format!("bar{i:02}={i:02}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let thirty_two = [members(1..=10), members(11..=20), members(21..=30)];
    let mut headers = vec![("traceparent", parent.as_str())];
    headers.extend(thirty_two.iter().map(|v| ("tracestate", v.as_str())));
    let last = members(31..=32);
    headers.push(("tracestate", &last));
    let out = single(addr, &headers).await;
    assert_eq!(out.get("bar01"), Some("01"));
    assert_eq!(out.tracestate.len(), 32);

    headers.pop();
    let last = members(31..=33);
    headers.push(("tracestate", &last));
    let out = single(addr, &headers).await;
    assert_eq!(out.get("bar01"), None);

    // 612 characters: dropping the last member would fit, but the spec
    // drops the member over 128 characters first.
    let small: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|k| format!("{k}={}", "v".repeat(100)))
        .collect();
    let value = format!(
        "{},big={},{}",
        small[0],
        "x".repeat(196),
        small[1..].join(",")
    );
    assert_eq!(value.len(), 612);
    let out = single(addr, &[("traceparent", &parent), ("tracestate", &value)]).await;
    assert_eq!(out.tracestate_text(), small.join(","));
}

/// Suite: `AdvancedTest.test_multiple_requests_with_valid_traceparent`,
/// `test_multiple_requests_without_traceparent`,
/// `test_multiple_requests_with_illegal_traceparent`: three calls, each from
/// its own span, carry three parent IDs in one trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_calls_from_their_own_spans_carry_three_parent_ids_in_one_trace() {
    let addr = serve().await;
    let illegal = format!("00-{ZERO_TRACE}-{PARENT}-01");
    let valid = tp("01");
    for (headers, expected_trace) in [
        (vec![("traceparent", valid.as_str())], Some(TRACE)),
        (vec![], None),
        (vec![("traceparent", illegal.as_str())], None),
    ] {
        let seen = send(addr, &headers, Some(3)).await;
        assert_eq!(seen.outbound.len(), 3);
        let mut traces: Vec<&str> = seen
            .outbound
            .iter()
            .map(|o| o.traceparent.trace_id.as_str())
            .collect();
        traces.dedup();
        assert_eq!(traces, [seen.response.trace_id.as_str()], "{headers:?}");
        if let Some(trace) = expected_trace {
            assert_eq!(traces, [trace]);
        }
        assert_ne!(traces, [ZERO_TRACE]);
        let mut parents: Vec<&str> = seen
            .outbound
            .iter()
            .map(|o| o.traceparent.parent_id.as_str())
            .collect();
        parents.sort_unstable();
        parents.dedup();
        assert_eq!(parents.len(), 3, "{headers:?}");
        assert!(!parents.contains(&PARENT));
        assert!(!parents.contains(&seen.response.parent_id.as_str()));
    }
    // The single-call form of the suite sees the server span as the parent.
    let seen = send(addr, &[("traceparent", &valid)], None).await;
    assert_eq!(seen.one().traceparent.parent_id, seen.response.parent_id);
}

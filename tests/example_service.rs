//! The example service as a user runs it: `cargo run --example service`.
//! Drives every route of the design over HTTP, then SIGTERM, and reads what
//! the process printed on stdout.

mod common;

use std::{
    io::Read,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

fn binary() -> PathBuf {
    common::example_binary()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A bearer token for `user`, as the example prints it
/// (`cargo run --example service -- token user123`).
fn token(user: &str) -> String {
    let out = Command::new(binary())
        .env_clear()
        .args(["token", user])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

struct Service {
    child: Child,
    base: String,
    metrics: String,
}

fn start(extra_env: &[(&str, &str)]) -> Service {
    let (port, mport) = (free_port(), free_port());
    let db = std::env::temp_dir().join(format!(
        "glimpse-example-test-{}-{port}.db",
        std::process::id()
    ));
    let mut cmd = Command::new(binary());
    cmd.env_clear()
        .env("GLIMPSE_ADDR", format!("127.0.0.1:{port}"))
        .env("GLIMPSE_METRICS_ADDR", format!("127.0.0.1:{mport}"))
        .env("GLIMPSE_DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("OTEL_SERVICE_NAME", "payment")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let svc = Service {
        child,
        base: format!("http://127.0.0.1:{port}"),
        metrics: format!("http://127.0.0.1:{mport}/metrics"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "service did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    svc
}

fn stop(mut svc: Service) -> (i32, Vec<Value>) {
    let status = Command::new("kill")
        .args(["-TERM", &svc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(s) = svc.child.try_wait().unwrap() {
            break s.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "service did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    svc.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (code, common::strict_lines(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_behaves_as_designed_and_sigterm_flushes_and_exits_zero() {
    let svc = start(&[]);
    let c = reqwest::Client::new();
    let b = &svc.base;
    let user123 = token("user123");

    let r = c.get(format!("{b}/health")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "ok".to_owned())
    );

    let r = c
        .post(format!("{b}/users"))
        .bearer_auth(&user123)
        .json(&json!({"email": "a@example.com", "password": "hunter2-SECRET"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let r = c
        .get(format!("{b}/users/{id}"))
        .bearer_auth(&user123)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["email"], "a@example.com");
    assert_eq!(
        c.get(format!("{b}/users/999999"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let r = c
        .post(format!("{b}/matches"))
        .json(&json!({"user_id": id, "other_id": "7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(format!("{b}/messages"))
        .json(&json!({"match_id": "1", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ok = c
        .post(format!("{b}/payments"))
        .bearer_auth(&user123)
        .json(&json!({"amount_minor": 1299, "currency": "EUR", "card": "4242424242424242"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    let failed = c
        .post(format!("{b}/payments"))
        .json(&json!({"amount_minor": 500, "currency": "EUR", "card": "4000000000000002"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 402);
    let r = c.get(format!("{b}/slow?ms=120")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("{b}/error"))
        .header("x-request-id", "err-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["x-request-id"], "err-1");
    assert!(r.headers().contains_key("traceparent"));

    let metrics = c
        .get(&svc.metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (name, labels) in [
        (
            "glimpse_user_registrations_total",
            vec![("method", "email")],
        ),
        ("glimpse_matches_created_total", vec![]),
        ("glimpse_messages_sent_total", vec![("kind", "text")]),
        (
            "glimpse_payments_total",
            vec![("status", "failed"), ("currency", "EUR")],
        ),
        ("glimpse_payments_total", vec![("status", "succeeded")]),
        (
            "db_query_duration_seconds_count",
            vec![("operation", "get_user"), ("outcome", "ok")],
        ),
        (
            "http_server_request_duration_seconds_count",
            vec![("route", "/users/{id}"), ("status", "404")],
        ),
        ("db_pool_connections_max", vec![("pool", "main")]),
        ("cache_requests_total", vec![("cache", "users")]),
    ] {
        let mut l = labels.clone();
        l.push(("service", "payment"));
        assert!(
            common::metric_value(&metrics, name, &l).unwrap_or(0.0) >= 1.0,
            "{name} {labels:?}"
        );
    }

    let (code, lines) = stop(svc);
    assert_eq!(code, 0, "SIGTERM exits 0");
    assert_eq!(
        lines.last().unwrap()["message"],
        "shut down cleanly",
        "every line flushed before exit"
    );
    let all = serde_json::to_string(&lines).unwrap();
    assert!(!all.contains("hunter2"), "passwords never logged");
    assert!(
        !all.contains("4000000000000002") && !all.contains("4242424242424242"),
        "card numbers never logged"
    );

    let access = |route: &str| {
        lines
            .iter()
            .filter(|l| l["message"] == "request completed" && l["route"] == route)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        access("/health").is_empty(),
        "/health stays out of the access log"
    );
    let user_line = &access("/users/{id}")[0];
    assert_eq!(user_line["userId"], "user123");
    assert!(
        !all.contains(user123.rsplit_once('.').unwrap().1),
        "the token's signature is never logged"
    );
    assert_eq!(user_line["service"], "payment");
    assert_eq!(user_line["traceId"].as_str().unwrap().len(), 32);
    let err = access("/error");
    assert_eq!(err[0]["level"], "ERROR");
    assert_eq!(err[0]["requestId"], "err-1");
    let failed_payment = lines
        .iter()
        .find(|l| l["message"] == "payment processed" && l["status"] == "failed")
        .unwrap();
    assert_eq!(failed_payment["log_type"], "payment");
    assert_eq!(failed_payment["currency"], "EUR");
    assert!(
        lines
            .iter()
            .any(|l| l["audit"] == true && l["audit_kind"] == "payment_transaction")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_that_does_not_verify_names_nobody() {
    let svc = start(&[]);
    let c = reqwest::Client::new();
    let signed_elsewhere = {
        let t = token("user123");
        let (user, sig) = t.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('0') { "1" } else { "0" };
        format!("{user}.{flipped}{}", &sig[1..])
    };
    for forged in ["user123", "victim-7", signed_elsewhere.as_str()] {
        let r = c
            .post(format!("{}/payments", svc.base))
            .bearer_auth(forged)
            .json(&json!({"amount_minor": 1299, "currency": "EUR", "card": "4242424242424242"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let metrics = c
        .get(&svc.metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (code, lines) = stop(svc);
    assert_eq!(code, 0);
    assert!(
        lines.iter().all(|l| l.get("userId").is_none()),
        "no forged identity in any line"
    );
    assert!(lines.iter().any(|l| l["audit"] == true));
    assert_eq!(
        common::metric_value(
            &metrics,
            "glimpse_auth_failures_total",
            &[("reason", "invalid_token")]
        ),
        Some(3.0)
    );
}

#[test]
fn an_invalid_environment_variable_exits_1_naming_it() {
    let out = Command::new(binary())
        .env_clear()
        .env("GLIMPSE_SLOW_QUERY_MS", "fast")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("GLIMPSE_SLOW_QUERY_MS") && err.contains("\"fast\""),
        "{err}"
    );
}

#[test]
fn a_busy_metrics_port_exits_1_naming_the_address() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = Command::new(binary())
        .env_clear()
        .env("GLIMPSE_METRICS_ADDR", &addr)
        .env("GLIMPSE_ADDR", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_ready_503_through_the_drain_while_a_slow_request_completes() {
    let svc = start(&[("GLIMPSE_SHUTDOWN_DRAIN_MS", "1500")]);
    let c = reqwest::Client::new();
    let b = svc.base.clone();
    let metrics_base = svc.metrics.trim_end_matches("/metrics").to_owned();

    for base in [&b, &metrics_base] {
        let r = c.get(format!("{base}/health/live")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{base}");
        let r = c.get(format!("{base}/health/ready")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{base}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["checks"][0]["name"], "sqlite", "{body}");
        assert_eq!(body["checks"][0]["status"], "up", "{body}");
    }

    let slow = tokio::spawn({
        let (c, url) = (c.clone(), format!("{b}/slow?ms=1000"));
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let pid = svc.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Within the drain: still serving, not ready, alive.
    let r = c.get(format!("{b}/health/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "draining");
    let r = c
        .get(format!("{metrics_base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "the metrics listener drains alike");
    let r = c.get(format!("{b}/health/live")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, text) = slow.await.unwrap();
    assert_eq!((status, text.as_str()), (200, "slept 1000 ms\n"));

    let (code, lines) = stop_after_signal(svc);
    assert_eq!(code, 0);
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("shutdown signal received")),
        "the drain is logged"
    );
    assert!(
        !lines.iter().any(|l| l["route"]
            .as_str()
            .is_some_and(|r| r.starts_with("/health/"))),
        "probes stay out of the access log"
    );
}

/// Wait for a service already sent SIGTERM to exit; its stdout lines.
fn stop_after_signal(mut svc: Service) -> (i32, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(s) = svc.child.try_wait().unwrap() {
            break s.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "service did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    svc.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (code, common::strict_lines(&out))
}

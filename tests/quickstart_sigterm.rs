//! The README's quickstart `main` (examples/quickstart.rs) under SIGTERM:
//! it drains, finishes, flushes every line and exits 0, even with a
//! collector that never answers (reported as a WARN line, nothing on stderr).

mod common;

use std::{
    io::Read,
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_quickstart_main_exits_0_with_every_line_flushed() {
    // A collector that accepts connections and never answers.
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let collector = format!("http://{}", black_hole.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        black_hole.set_nonblocking(true).unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok((c, _)) = black_hole.accept() {
                conns.push(c);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let port = free_port();
    let mut child = Command::new(common::example_binary_named("quickstart"))
        .env_clear()
        .env("GLIMPSE_ADDR", format!("127.0.0.1:{port}"))
        .env("GLIMPSE_METRICS_ADDR", "off")
        .env("GLIMPSE_SHUTDOWN_DRAIN_MS", "200")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
        .env("OTEL_BSP_EXPORT_TIMEOUT", "300")
        .env("OTEL_BSP_SCHEDULE_DELAY", "60000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if client
            .get(format!("{base}/health/live"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..20 {
        let r = client
            .get(format!("{base}/matches/{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.is_empty(), "nothing on stderr, got:\n{err}");

    let lines: Vec<Value> = common::strict_lines(&out);
    let access = lines
        .iter()
        .filter(|l| l["message"] == "request completed" && l["route"] == "/matches/{id}")
        .count();
    assert_eq!(access, 20, "every access line flushed:\n{out}");
    assert!(
        lines.iter().any(|l| l["message"] == "shut down cleanly"),
        "{out}"
    );
    let warn = lines
        .iter()
        .find(|l| l["level"] == "WARN" && l["target"] == "glimpse_obs")
        .unwrap_or_else(|| panic!("a WARN line for the spans the collector never took:\n{out}"));
    assert!(
        warn["message"].as_str().unwrap().contains("spans"),
        "{warn}"
    );
    drop(held);
}

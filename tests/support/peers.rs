//! The Python peers of `tests/peers`, installed by `tests/peers/setup.sh`
//! into `tests/peers/.venv`.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

/// The peers' Python, `None` (the test skips, saying so on stderr) when it
/// is not installed; a missing peer fails under `CI` or
/// `GLIMPSE_REQUIRE_PEERS`.
pub fn python() -> Option<PathBuf> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/.venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none() && std::env::var_os("GLIMPSE_REQUIRE_PEERS").is_none(),
        "the Python peer is not installed: run `bash tests/peers/setup.sh` first"
    );
    eprintln!("skipped: run `bash tests/peers/setup.sh` to install the Python peer");
    None
}

/// A Python OTLP receiver (`tests/peers/<script> <out.jsonl>`) that prints
/// `listening <port>` once ready and appends one JSON object per request
/// it decoded to its file; killed, and its file removed, when dropped.
pub struct PythonReceiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl PythonReceiver {
    pub fn start(python: &Path, script: &str) -> Self {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let out = std::env::temp_dir().join(format!(
            "glimpse-{script}-{}-{}.jsonl",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&out);
        let mut child = Command::new(python)
            .arg(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/peers")
                    .join(script),
            )
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the peer did not start: {line:?}"));
        Self { child, port, out }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request the peer decoded so far (one it could not decode
    /// fails the test).
    pub fn received(&self) -> Vec<Value> {
        let all: Vec<Value> = std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for r in &all {
            assert!(r.get("error").is_none(), "the peer could not decode: {r}");
        }
        all
    }

    /// The requests received once there are `n`, or after 10 s (a peer
    /// records a request before it answers it, so an export that returned
    /// is already there; the wait only guards a slow file system).
    pub fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all = self.received();
            if all.len() >= n || Instant::now() > deadline {
                return all;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The decoded bodies of the `signal` requests received so far.
    pub fn bodies(&self, signal: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r["signal"] == signal)
            .map(|r| r["body"].clone())
            .collect()
    }
}

impl Drop for PythonReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

//! The panic hook `install()` sets: a panic outside any request (a spawned
//! task) is one JSON ERROR line on stdout, nothing on stderr; dropping the
//! guard puts the previous hook back. Runs in a child process (this test
//! binary again), since the hook and the log are the process's own.

use std::process::Command;

const CHILD: &str = "GLIMPSE_PANIC_HOOK_CHILD";

fn child() {
    let guard = glimpse_obs::Config::default()
        .service("panic-probe")
        .metrics_addr(None)
        .process_metrics(false)
        .init()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let joined = rt.block_on(async {
        tokio::spawn(async {
            panic!("the nightly export task failed");
        })
        .await
    });
    assert!(joined.is_err());
    drop(rt);
    guard.shutdown().unwrap();
    // The previous (default) hook is back: this one goes to stderr.
    let _ = std::thread::spawn(|| panic!("after the guard")).join();
}

#[test]
fn a_panic_in_a_spawned_task_is_one_json_line_on_stdout_and_nothing_on_stderr() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_panic_in_a_spawned_task_is_one_json_line_on_stdout_and_nothing_on_stderr",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(CHILD, "1")
        .env_remove("GLIMPSE_LOG")
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let panics: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "glimpse_obs::panic")
        .collect();
    assert_eq!(panics.len(), 1, "{stdout}");
    let line = panics[0];
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["message"], "panic");
    assert_eq!(line["service"], "panic-probe");
    assert_eq!(line["panic.message"], "the nightly export task failed");
    assert!(
        line["panic.location"]
            .as_str()
            .unwrap()
            .starts_with("tests/panic_hook.rs:"),
        "{line}"
    );
    assert!(
        !stderr.contains("the nightly export task failed"),
        "nothing on stderr: {stderr}"
    );
    assert!(
        stderr.contains("after the guard") && !stdout.contains("after the guard"),
        "the guard restored the previous hook: {stderr}"
    );
}

//! `process_cpu_seconds_total` on `/metrics` carries the CPU time the kernel
//! reports for the process (`/proc/self/stat`), fraction of a second
//! included, so `rate()` over it measures cores used.

#![cfg(target_os = "linux")]

mod common;

use std::{process::Command, time::Duration};

use common::metric_value;
use glimpse_obs::{Config, testing::SharedBuffer};

/// Clock ticks per second (`getconf CLK_TCK`), the unit of `/proc/self/stat`.
fn clock_ticks_per_second() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `utime + stime` of this process, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15.
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Spin until this process has used at least `min` ticks and the total is
/// at least `margin` ticks away from a whole second, so that a value cut to
/// whole seconds cannot pass for the right one.
fn burn_cpu(min: u64, tck: u64, margin: u64) {
    let mut x = 0u64;
    loop {
        for i in 0..200_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let t = cpu_ticks();
        let frac = t % tck;
        if t >= min && frac >= margin && frac + margin <= tck {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_cpu_seconds_total_matches_proc_self_stat_to_the_clock_tick() {
    let guard = Config::default()
        .service("cpu-test")
        .metrics_addr(Some("127.0.0.1:0".parse().unwrap()))
        .log_writer(SharedBuffer::new())
        .init()
        .unwrap();
    let addr = guard.metrics_addr().unwrap();
    let tck = clock_ticks_per_second();
    // At least 0.3 s of CPU, and 0.2 s away from a whole second: the scrape
    // itself takes far less than 0.2 s of CPU.
    burn_cpu(tck * 3 / 10, tck, tck / 5);

    let before = cpu_ticks();
    let text = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let after = cpu_ticks();

    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter\n"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("process_cpu_seconds_total{"))
        .unwrap();
    assert!(line.contains("service=\"cpu-test\""), "{line}");
    let scraped = metric_value(&text, "process_cpu_seconds_total", &[]).unwrap();
    assert!(
        scraped.fract() > 0.0,
        "{line}: the value keeps its fraction of a second"
    );
    let (low, high) = (before as f64 / tck as f64, after as f64 / tck as f64);
    // One tick of slack on each side: the kernel's count and ours are read
    // at slightly different instants.
    let tick = 1.0 / tck as f64;
    assert!(
        scraped >= low - tick && scraped <= high + tick,
        "{line}: /proc/self/stat says {low}..{high} s"
    );
    drop(guard);
}

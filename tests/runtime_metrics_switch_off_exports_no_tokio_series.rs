//! `GLIMPSE_RUNTIME_METRICS=false`: `init()` inside a runtime samples
//! nothing, and `/metrics` has no `tokio_` series.

use std::time::Duration;

use glimpse_obs::{Config, testing::SharedBuffer};

#[test]
fn with_glimpse_runtime_metrics_false_the_metrics_text_has_no_tokio_series() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = Config::from_lookup(|name| match name {
        "GLIMPSE_RUNTIME_METRICS" => Some("false".into()),
        "GLIMPSE_METRICS_ADDR" => Some("off".into()),
        _ => None,
    })
    .unwrap()
    .service("switch-off")
    .runtime_metrics_interval(Duration::from_millis(50));
    let guard = rt
        .block_on(async { config.log_writer(SharedBuffer::new()).init() })
        .unwrap();
    rt.block_on(async {
        for _ in 0..10 {
            tokio::spawn(async { std::thread::sleep(Duration::from_millis(5)) });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    let text = guard.render_metrics();
    assert!(text.contains("glimpse_build_info"), "{text}");
    let tokio_lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ")
                .starts_with("tokio_")
        })
        .collect();
    assert!(tokio_lines.is_empty(), "{tokio_lines:#?}");
}

//! `init()` inside a multi-thread runtime samples it: when blocking calls
//! hold both workers, `tokio_busy_ratio`, `tokio_worker_busy_ratio` and
//! `tokio_global_queue_depth` rise in the `/metrics` text.

mod common;

use std::time::Duration;

use common::metric_value;
use glimpse_obs::{Config, testing::SharedBuffer};

#[test]
fn busy_ratio_and_global_queue_depth_rise_in_the_metrics_text_when_blocking_calls_hold_the_workers()
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let guard = rt
        .block_on(async {
            Config::default()
                .service("runtime-test")
                .metrics_addr(None)
                .process_metrics(false)
                .runtime_metrics_interval(Duration::from_millis(400))
                .log_writer(SharedBuffer::new())
                .init()
        })
        .unwrap();

    std::thread::sleep(Duration::from_millis(900));
    let idle = guard.render_metrics();
    let value = |text: &str, name: &str| {
        metric_value(text, name, &[("service", "runtime-test")])
            .unwrap_or_else(|| panic!("no {name} series in:\n{text}"))
    };
    assert_eq!(value(&idle, "tokio_workers"), 2.0, "{idle}");
    let idle_busy = value(&idle, "tokio_busy_ratio");
    let idle_queue = value(&idle, "tokio_global_queue_depth");
    assert!(idle_busy < 0.2, "idle runtime: busy ratio {idle_busy}");
    assert_eq!(idle_queue, 0.0);
    assert!(idle.contains("# HELP tokio_busy_ratio "), "{idle}");

    // A handler's mistake, many times over: 2 ms blocking calls on the
    // workers, queued from outside the runtime (the global queue), enough
    // to keep both workers busy for about 2 s.
    for _ in 0..2000 {
        rt.spawn(async { std::thread::sleep(Duration::from_millis(2)) });
    }
    std::thread::sleep(Duration::from_millis(1300));
    let busy = guard.render_metrics();
    let busy_ratio = value(&busy, "tokio_busy_ratio");
    let queue = value(&busy, "tokio_global_queue_depth");
    assert!(
        busy_ratio > 0.6 && busy_ratio > idle_busy,
        "busy ratio {busy_ratio} (idle {idle_busy}):\n{busy}"
    );
    assert!(queue > 50.0, "queue depth {queue}:\n{busy}");
    for w in ["0", "1"] {
        let r = metric_value(&busy, "tokio_worker_busy_ratio", &[("worker", w)]).unwrap();
        assert!(r > 0.4, "worker {w} busy ratio {r}:\n{busy}");
    }
    assert!(value(&busy, "tokio_alive_tasks") > 50.0, "{busy}");
    drop(guard);
    rt.shutdown_timeout(Duration::from_secs(5));
}

//! `metrics::Custom`: a service's own metrics carry `# HELP` (and `# TYPE`),
//! their caller-fed labels are capped like the crate's (`other` past
//! `label_cap`, counted in `glimpse_obs_label_overflow_total{metric}`), and
//! bad names are refused with an error saying how to fix them.

mod common;

use common::metric_value;
use glimpse_obs::{Config, metrics::Custom, testing::SharedBuffer};

#[test]
fn custom_metrics_carry_help_text_and_their_labels_are_capped_at_label_cap() {
    // Registered before init: described at the first record after it.
    let early = Custom::gauge("shop_jobs_queued", "Background jobs waiting, by queue.")
        .label("queue")
        .register()
        .unwrap();
    let guard = Config::default()
        .service("custom-test")
        .metrics_addr(None)
        .process_metrics(false)
        .runtime_metrics(false)
        .label_cap(3)
        .log_writer(SharedBuffer::new())
        .init()
        .unwrap();
    let orders = Custom::counter("shop_orders_total", "Orders placed, by sales channel.")
        .label("channel")
        .register()
        .unwrap();
    let checkout = Custom::histogram("shop_checkout_seconds", "Checkout duration.")
        .unit(metrics::Unit::Seconds)
        .register()
        .unwrap();
    for channel in ["web", "ios", "android", "web", "fax", "pigeon"] {
        orders.increment(&[channel], 1);
    }
    checkout.record(&[], 0.3);
    early.set(&["emails"], 4.0);

    let text = guard.render_metrics();
    for (help, kind) in [
        (
            "# HELP shop_orders_total Orders placed, by sales channel.",
            "# TYPE shop_orders_total counter",
        ),
        (
            "# HELP shop_checkout_seconds Checkout duration.",
            "# TYPE shop_checkout_seconds histogram",
        ),
        (
            "# HELP shop_jobs_queued Background jobs waiting, by queue.",
            "# TYPE shop_jobs_queued gauge",
        ),
    ] {
        assert!(text.contains(help), "{help}\n{text}");
        assert!(text.contains(kind), "{kind}\n{text}");
    }
    let series = |channel| metric_value(&text, "shop_orders_total", &[("channel", channel)]);
    assert_eq!(series("web"), Some(2.0));
    assert_eq!(series("ios"), Some(1.0));
    assert_eq!(series("android"), Some(1.0));
    assert_eq!(
        series("other"),
        Some(2.0),
        "fax and pigeon past the cap: {text}"
    );
    assert_eq!(series("fax"), None);
    assert_eq!(
        metric_value(
            &text,
            "glimpse_obs_label_overflow_total",
            &[("metric", "shop_orders_total")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "shop_checkout_seconds_count",
            &[("service", "custom-test")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&text, "shop_jobs_queued", &[("queue", "emails")]),
        Some(4.0)
    );
}

#[test]
fn bad_names_and_labels_are_refused_saying_how_to_fix_them() {
    let cases = [
        (
            Custom::counter("shop_orders", "x").register().err(),
            "_total",
        ),
        (
            Custom::counter("9lives_total", "x").register().err(),
            "Prometheus metric name",
        ),
        (
            Custom::counter("log_events_total", "x").register().err(),
            "glimpse_obs metric",
        ),
        (
            Custom::gauge("http_server_active_requests", "x")
                .register()
                .err(),
            "glimpse_obs metric",
        ),
        (
            Custom::gauge("shop_carts_total", "x").register().err(),
            "counters",
        ),
        (
            Custom::gauge("shop_carts", "x")
                .label("env")
                .register()
                .err(),
            "reserved",
        ),
        (
            Custom::gauge("shop_carts", "x")
                .label("a-b")
                .register()
                .err(),
            "label name",
        ),
        (
            Custom::gauge("shop_carts", "x")
                .label("k")
                .label("k")
                .register()
                .err(),
            "twice",
        ),
    ];
    for (err, want) in cases {
        let msg = err.expect("refused").to_string();
        assert!(msg.contains(want), "{msg:?} should say {want:?}");
    }
}

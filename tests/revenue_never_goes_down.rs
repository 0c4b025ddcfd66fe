//! `glimpse_payment_amount_total` only grows: an amount that would wrap the
//! sum (u64::MAX minor units) is rejected and counted in
//! `glimpse_payment_amount_rejected_total`, and the revenue stays as it was.

mod common;

use common::metric_value;
use glimpse_obs::{
    Config,
    business::{self, PaymentStatus},
};

#[test]
fn an_amount_that_would_wrap_the_sum_is_rejected_and_counted() {
    let guard = Config::default()
        .service("payment")
        .metrics_addr(None)
        .process_metrics(false)
        .log_writer(std::io::sink())
        .init()
        .unwrap();
    let revenue = |text: &str| {
        metric_value(text, "glimpse_payment_amount_total", &[("currency", "EUR")]).unwrap()
    };
    let rejected = |text: &str| {
        metric_value(text, "glimpse_payment_amount_rejected_total", &[]).unwrap_or(0.0)
    };

    business::payment_processed("stripe", "EUR", 1699, PaymentStatus::Succeeded);
    let before = guard.render_metrics();
    assert_eq!(revenue(&before), 16.99);

    business::payment_processed("stripe", "EUR", u64::MAX, PaymentStatus::Succeeded);
    business::payment_processed("stripe", "EUR", u64::MAX / 200, PaymentStatus::Succeeded);
    business::payment_processed("stripe", "EUR", u64::MAX / 200, PaymentStatus::Succeeded);
    let after = guard.render_metrics();
    let r = revenue(&after);
    assert!(r >= 16.99, "revenue went down: {r}\n{after}");
    assert_eq!(
        rejected(&after),
        2.0,
        "u64::MAX, then the add past the top\n{after}"
    );
    assert!(
        after.contains("# TYPE glimpse_payment_amount_rejected_total counter"),
        "{after}"
    );
    // Payments themselves are still counted.
    let payments = metric_value(
        &after,
        "glimpse_payments_total",
        &[("status", "succeeded"), ("currency", "EUR")],
    );
    assert_eq!(payments, Some(4.0));
}

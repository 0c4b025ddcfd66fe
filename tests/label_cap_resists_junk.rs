//! The label cap cannot be filled by junk: currencies that are not ISO 4217
//! codes become `other` without taking a slot, values a team registered as
//! known never overflow, and an over-long value (a 200 KB "API-key ID")
//! becomes `other` instead of landing in `/metrics`.

mod common;

use common::metric_value;
use glimpse_obs::{
    Config,
    business::{self, PaymentStatus},
    security,
};

#[test]
fn junk_label_values_never_push_real_ones_into_other() {
    let guard = Config::default()
        .metrics_addr(None)
        .process_metrics(false)
        .log_writer(std::io::sink())
        .label_cap(20)
        .known_label_values("glimpse_api_key_requests_total", ["partner-acme"])
        .label_value_max_len(64)
        .init()
        .unwrap();

    // 100 junk currencies, then a real GBP payment.
    for i in 0..100 {
        let junk = match i % 3 {
            0 => format!("ZZ{}", (b'A' + (i / 3 % 26) as u8) as char),
            1 => format!("YY{}", (b'A' + (i / 3 % 26) as u8) as char),
            _ => format!("junk-currency-{i}"),
        };
        business::payment_processed("stripe", &junk, 100, PaymentStatus::Succeeded);
    }
    business::payment_processed("stripe", "gbp", 1250, PaymentStatus::Succeeded);

    // 150 random API-key IDs, then the partner registered as known.
    for i in 0..150 {
        security::api_key_used(&format!("random-{i:x}-{}", i * 7919));
    }
    security::api_key_used("partner-acme");

    // 99 keys of 200 KB each.
    let huge = "k".repeat(200 * 1024);
    for i in 0..99 {
        security::api_key_used(&format!("{huge}{i}"));
    }

    let text = guard.render_metrics();
    assert_eq!(
        metric_value(
            &text,
            "glimpse_payment_amount_total",
            &[("currency", "GBP")]
        ),
        Some(12.5),
        "GBP keeps its own series"
    );
    assert_eq!(
        metric_value(
            &text,
            "glimpse_payments_total",
            &[("currency", "other"), ("status", "succeeded")]
        ),
        Some(100.0),
        "every junk currency is other"
    );
    assert!(!text.contains("ZZA") && !text.contains("junk-currency"));
    assert_eq!(
        metric_value(
            &text,
            "glimpse_api_key_requests_total",
            &[("key_id", "partner-acme")]
        ),
        Some(1.0),
        "a known value never overflows"
    );
    assert!(
        text.len() < 64 * 1024,
        "/metrics stays small ({} bytes)",
        text.len()
    );
    assert!(!text.contains("kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"));
    let overflow = metric_value(
        &text,
        "glimpse_obs_label_overflow_total",
        &[("metric", "glimpse_api_key_requests_total")],
    )
    .unwrap();
    assert!(overflow >= 99.0 + 130.0, "{overflow}");
}

//! Business helpers: the `/metrics` text each one changes and the payment
//! line, field by field.

mod common;

use std::{sync::OnceLock, time::Duration};

use common::{delta, keys, strict_lines};
use glimpse_obs::{
    Config, Guard, audit,
    business::{self, PaymentStatus},
    testing::{self, SharedBuffer},
};
use serde_json::Value;

fn obs() -> &'static (Guard, SharedBuffer) {
    static OBS: OnceLock<(Guard, SharedBuffer)> = OnceLock::new();
    OBS.get_or_init(|| {
        let logs = SharedBuffer::new();
        let guard = Config::default()
            .service("payment")
            .metrics_addr(None)
            .process_metrics(false)
            .log_writer(logs.clone())
            .init()
            .unwrap();
        (guard, logs)
    })
}

/// Run `f` and return the `/metrics` text before and after, and its lines.
fn run(f: impl FnOnce()) -> (String, String, Vec<Value>) {
    common::around(&obs().0, f)
}

#[test]
fn user_registered_counts_by_method_and_logs_nothing() {
    let (before, after, lines) = run(|| {
        business::user_registered("email");
        business::user_registered("email");
        business::user_registered("google");
    });
    let reg = "glimpse_user_registrations_total";
    assert_eq!(delta(&before, &after, reg, &[("method", "email")]), 2.0);
    assert_eq!(delta(&before, &after, reg, &[("method", "google")]), 1.0);
    assert!(
        after.lines().any(|l| l.starts_with(reg)
            && l.contains("method=\"email\"")
            && l.contains("service=\"payment\"")
            && l.contains("env=\"development\"")),
        "{after}"
    );
    assert!(after.contains("# TYPE glimpse_user_registrations_total counter"));
    assert!(after.contains("# HELP glimpse_user_registrations_total User registrations"));
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn match_created_counts_without_labels() {
    let (before, after, lines) = run(|| {
        business::match_created();
        business::match_created();
    });
    assert_eq!(
        delta(&before, &after, "glimpse_matches_created_total", &[]),
        2.0
    );
    assert!(lines.is_empty());
}

#[test]
fn message_sent_counts_by_kind() {
    let (before, after, lines) = run(|| {
        business::message_sent("text");
        business::message_sent("photo");
        business::message_sent("text");
    });
    let m = "glimpse_messages_sent_total";
    assert_eq!(delta(&before, &after, m, &[("kind", "text")]), 2.0);
    assert_eq!(delta(&before, &after, m, &[("kind", "photo")]), 1.0);
    assert!(lines.is_empty());
}

#[test]
fn feature_used_and_conversion_count_by_their_labels() {
    let (before, after, lines) = run(|| {
        business::feature_used("super_like");
        business::conversion("premium", "paywall_seen");
        business::conversion("premium", "paywall_seen");
        business::conversion("premium", "purchased");
    });
    assert_eq!(
        delta(
            &before,
            &after,
            "glimpse_feature_usage_total",
            &[("feature", "super_like")]
        ),
        1.0
    );
    let c = "glimpse_conversions_total";
    assert_eq!(
        delta(
            &before,
            &after,
            c,
            &[("funnel", "premium"), ("step", "paywall_seen")]
        ),
        2.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            c,
            &[("funnel", "premium"), ("step", "purchased")]
        ),
        1.0
    );
    assert!(lines.is_empty());
}

#[test]
fn a_succeeded_payment_counts_revenue_in_major_units_and_logs_one_payment_line() {
    let (before, after, lines) = run(|| {
        business::payment_processed("stripe", "EUR", 1299, PaymentStatus::Succeeded);
    });
    let by = [
        ("status", "succeeded"),
        ("provider", "stripe"),
        ("currency", "EUR"),
    ];
    assert_eq!(delta(&before, &after, "glimpse_payments_total", &by), 1.0);
    let revenue = delta(
        &before,
        &after,
        "glimpse_payment_amount_total",
        &[("currency", "EUR")],
    );
    assert!((revenue - 12.99).abs() < 1e-9, "{revenue}");

    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["level"], "INFO");
    assert_eq!(l["message"], "payment processed");
    assert_eq!(l["service"], "payment");
    assert_eq!(l["target"], "glimpse_obs::business");
    assert_eq!(l["log_type"], "payment");
    assert_eq!(l["status"], "succeeded");
    assert_eq!(l["amount"], 12.99);
    assert_eq!(l["amount_minor"], 1299);
    assert_eq!(l["currency"], "EUR");
    assert_eq!(l["provider"], "stripe");
    assert_eq!(
        keys(l),
        [
            "amount",
            "amount_minor",
            "currency",
            "level",
            "log_type",
            "message",
            "provider",
            "service",
            "status",
            "target",
            "timestamp"
        ]
    );
}

#[test]
fn a_failed_payment_is_a_warn_line_found_by_status_failed_and_adds_no_revenue() {
    let (before, after, lines) = run(|| {
        business::payment_processed("adyen", "USD", 5000, PaymentStatus::Failed);
        audit::payment_transaction("user-9", "pay_1", 5000, "USD", PaymentStatus::Failed);
    });
    let by = [
        ("status", "failed"),
        ("provider", "adyen"),
        ("currency", "USD"),
    ];
    assert_eq!(delta(&before, &after, "glimpse_payments_total", &by), 1.0);
    assert_eq!(
        delta(
            &before,
            &after,
            "glimpse_payment_amount_total",
            &[("currency", "USD")]
        ),
        0.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            "glimpse_payments_total",
            &[("status", "succeeded"), ("provider", "adyen")]
        ),
        0.0
    );

    // The guide's query `service:payment AND status:failed` finds the
    // failure once, although the audit line records it too.
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["service"] == "payment" && l["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    let l = failed[0];
    assert_eq!(l["level"], "WARN");
    assert_eq!(l["message"], "payment processed");
    assert_eq!(l["log_type"], "payment");
    assert_eq!(l["amount"], 50.0);
    assert_eq!(l["amount_minor"], 5000);
    assert_eq!(l["provider"], "adyen");
    assert!(
        l.get("audit").is_none(),
        "the business line is not the audit record"
    );
}

#[test]
fn zero_and_three_decimal_currencies_use_their_iso_4217_exponent() {
    let (before, after, lines) = run(|| {
        business::payment_processed("stripe", "JPY", 1299, PaymentStatus::Succeeded);
        business::payment_processed("stripe", "KWD", 1299, PaymentStatus::Succeeded);
        business::payment_processed("stripe", "krw", 50000, PaymentStatus::Succeeded);
    });
    let rev = |c| {
        delta(
            &before,
            &after,
            "glimpse_payment_amount_total",
            &[("currency", c)],
        )
    };
    assert_eq!(rev("JPY"), 1299.0);
    assert!((rev("KWD") - 1.299).abs() < 1e-9);
    // Lower-case codes are normalised, so one currency is one series.
    assert_eq!(rev("KRW"), 50000.0);
    assert!(!after.contains("currency=\"krw\""));
    let amounts: Vec<f64> = lines
        .iter()
        .map(|l| l["amount"].as_f64().unwrap())
        .collect();
    assert_eq!(amounts, [1299.0, 1.299, 50000.0]);
    assert_eq!(lines[2]["currency"], "KRW");
}

#[test]
fn the_revenue_series_is_a_counter_with_help_and_the_global_labels() {
    let (_, after, _) = run(|| {
        business::payment_processed("stripe", "GBP", 1, PaymentStatus::Succeeded);
    });
    assert!(
        after.contains(
            "# HELP glimpse_payment_amount_total Revenue of succeeded payments in major currency units, by currency.\n\
             # TYPE glimpse_payment_amount_total counter\n"
        ),
        "{after}"
    );
    assert_eq!(
        after.matches("# TYPE glimpse_payment_amount_total").count(),
        1
    );
    // A float value in major units, with `service` and `env` as on every
    // series of the recorder.
    assert!(
        after
            .lines()
            .any(|l| l
                == r#"glimpse_payment_amount_total{service="payment",env="development",currency="GBP"} 0.01"#),
        "{after}"
    );
}

#[test]
fn payment_lines_are_valid_json_without_duplicate_keys() {
    let (guard, logs) = obs();
    let ((), _) = testing::capture(|| {
        business::payment_processed("x\"\n\u{7}", "E\"R", 1, PaymentStatus::Failed);
    });
    assert!(guard.flush(Duration::from_secs(5)));
    let lines = strict_lines(&logs.contents());
    let l = lines.iter().find(|l| l["currency"] == "E\"R").unwrap();
    assert_eq!(l["provider"], "x\"\n\u{7}");
}

#[test]
fn revenue_is_summed_exactly_in_minor_units() {
    // Summed as floats, ten 0.10 and one 0.20 give 1.1999999999999997.
    let (_, after, _) = run(|| {
        for _ in 0..10 {
            business::payment_processed("stripe", "CHF", 10, PaymentStatus::Succeeded);
        }
        business::payment_processed("stripe", "chf", 20, PaymentStatus::Succeeded);
    });
    assert!(
        after
            .lines()
            .any(|l| l
                == r#"glimpse_payment_amount_total{service="payment",env="development",currency="CHF"} 1.2"#),
        "{after}"
    );
}

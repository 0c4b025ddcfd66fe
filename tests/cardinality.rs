//! 500 distinct caller-fed label values through each domain helper: at most
//! the cap (100 by default) appear in `/metrics`, the rest are recorded as
//! `other` and counted in `glimpse_obs_label_overflow_total{metric}`.

mod common;

use std::{collections::BTreeSet, sync::OnceLock};

use common::metric_value;
use glimpse_obs::{Config, Guard, business, cache, db, security, testing::SharedBuffer, ws};

const CAP: usize = 100;
const DISTINCT: usize = 500;

fn obs() -> &'static Guard {
    static OBS: OnceLock<Guard> = OnceLock::new();
    OBS.get_or_init(|| {
        Config::default()
            .service("cardinality-test")
            .metrics_addr(None)
            .process_metrics(false)
            .log_writer(SharedBuffer::new())
            .init()
            .unwrap()
    })
}

/// The distinct values of `label` on the series of `name`.
fn values(text: &str, name: &str, label: &str) -> BTreeSet<String> {
    let key = format!("{label}=\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| {
            let start = l.find(&key)? + key.len();
            let end = l[start..].find('"')? + start;
            Some(l[start..end].to_owned())
        })
        .collect()
}

fn overflow(text: &str, metric: &str) -> f64 {
    metric_value(
        text,
        "glimpse_obs_label_overflow_total",
        &[("metric", metric)],
    )
    .unwrap_or(0.0)
}

/// Feed `DISTINCT` values through `f`, then check the series of `name`.
fn check(name: &str, label: &str, overflow_metric: &str, f: impl Fn(&str)) {
    let guard = obs();
    for i in 0..DISTINCT {
        f(&format!("v{i}"));
    }
    let text = guard.render_metrics();
    let seen = values(&text, name, label);
    assert!(seen.contains("other"), "{name}: no `other` series");
    assert_eq!(
        seen.len(),
        CAP + 1,
        "{name}: {} values of {label}",
        seen.len()
    );
    assert!(seen.contains("v0") && seen.contains(&format!("v{}", CAP - 1)));
    assert!(!seen.contains(&format!("v{CAP}")));
    assert_eq!(
        overflow(&text, overflow_metric),
        (DISTINCT - CAP) as f64,
        "{name}"
    );
}

#[test]
fn feature_usage_keeps_the_first_hundred_features_and_folds_the_rest_into_other() {
    check(
        "glimpse_feature_usage_total",
        "feature",
        "glimpse_feature_usage_total",
        business::feature_used,
    );
    let text = obs().render_metrics();
    let other = metric_value(
        &text,
        "glimpse_feature_usage_total",
        &[("feature", "other")],
    );
    assert_eq!(
        other,
        Some((DISTINCT - CAP) as f64),
        "every overflowing use is still counted"
    );
    // An admitted value keeps its own series after the cap is reached.
    business::feature_used("v7");
    let text = obs().render_metrics();
    assert_eq!(
        metric_value(&text, "glimpse_feature_usage_total", &[("feature", "v7")]),
        Some(2.0)
    );
    assert_eq!(
        overflow(&text, "glimpse_feature_usage_total"),
        (DISTINCT - CAP) as f64
    );
}

#[test]
fn api_key_ids_are_capped() {
    check(
        "glimpse_api_key_requests_total",
        "key_id",
        "glimpse_api_key_requests_total",
        security::api_key_used,
    );
}

#[test]
fn cache_names_are_capped() {
    check(
        "cache_requests_total",
        "cache",
        "cache_requests_total",
        cache::hit,
    );
}

#[test]
fn auth_failure_reasons_are_capped() {
    check(
        "glimpse_auth_failures_total",
        "reason",
        "glimpse_auth_failures_total",
        security::auth_failed,
    );
}

#[test]
fn registration_methods_message_kinds_and_admin_actions_are_capped() {
    check(
        "glimpse_user_registrations_total",
        "method",
        "glimpse_user_registrations_total",
        business::user_registered,
    );
    check(
        "glimpse_messages_sent_total",
        "kind",
        "glimpse_messages_sent_total",
        business::message_sent,
    );
    check(
        "glimpse_admin_actions_total",
        "action",
        "glimpse_admin_actions_total",
        security::admin_action,
    );
}

#[test]
fn payment_providers_and_currencies_are_capped_separately() {
    use business::{PaymentStatus::Succeeded, payment_processed};
    check(
        "glimpse_payments_total",
        "provider",
        "glimpse_payments_total",
        |v| payment_processed(v, "EUR", 100, Succeeded),
    );
    let text = obs().render_metrics();
    // A provider past the cap keeps its currency: EUR revenue stays EUR.
    assert_eq!(
        metric_value(
            &text,
            "glimpse_payments_total",
            &[("provider", "other"), ("currency", "EUR")]
        ),
        Some((DISTINCT - CAP) as f64)
    );
    assert_eq!(
        metric_value(
            &text,
            "glimpse_payment_amount_total",
            &[("currency", "EUR")]
        ),
        Some(DISTINCT as f64)
    );
    assert_eq!(
        values(&text, "glimpse_payment_amount_total", "currency"),
        BTreeSet::from(["EUR".to_owned()])
    );

    // Currencies have a cap of their own (EUR is one of the hundred), and
    // a known provider keeps its name past it. Only ISO 4217 codes take a
    // slot (tests/label_cap_resists_junk.rs), so real ones fill it here.
    let codes: Vec<String> = (0..26 * 26 * 26)
        .map(|i| {
            let l = |n: usize| (b'A' + (n % 26) as u8) as char;
            format!("{}{}{}", l(i / 676), l(i / 26), l(i))
        })
        .filter(|c| business::is_iso4217(c) && !["EUR", "JPY", "KWD"].contains(&c.as_str()))
        .take(150)
        .collect();
    assert_eq!(codes.len(), 150);
    for code in &codes {
        payment_processed("v0", code, 100, Succeeded);
    }
    let text = obs().render_metrics();
    let currencies = values(&text, "glimpse_payment_amount_total", "currency");
    assert_eq!(currencies.len(), CAP + 1, "{currencies:?}");
    assert!(currencies.contains("EUR") && currencies.contains("other"));
    let overflowed = (codes.len() - (CAP - 1)) as f64;
    assert_eq!(
        metric_value(
            &text,
            "glimpse_payments_total",
            &[("provider", "v0"), ("currency", "other")]
        ),
        Some(overflowed)
    );
    // 100 minor units each, in major units of each currency's exponent.
    let other_revenue: f64 = codes[CAP - 1..]
        .iter()
        .map(|c| business::major_units(100, c))
        .sum();
    let other = |text: &str| {
        metric_value(
            text,
            "glimpse_payment_amount_total",
            &[("currency", "other")],
        )
        .unwrap()
    };
    assert!((other(&text) - other_revenue).abs() < 1e-6);
    assert_eq!(
        overflow(&text, "glimpse_payments_total"),
        (DISTINCT - CAP) as f64 + overflowed
    );

    // `other` sums currencies of different exponents in major units: 1299
    // JPY is 1299, 1299 KWD fils is 1.299 (not 12.99 twice).
    payment_processed("v0", "JPY", 1299, Succeeded);
    payment_processed("v0", "KWD", 1299, Succeeded);
    let text = obs().render_metrics();
    assert!((other(&text) - (other_revenue + 1299.0 + 1.299)).abs() < 1e-6);
}

#[test]
fn conversion_funnel_steps_are_capped_as_pairs() {
    check(
        "glimpse_conversions_total",
        "step",
        "glimpse_conversions_total",
        |v| business::conversion("onboarding", v),
    );
}

#[test]
fn websocket_channels_are_capped() {
    check(
        "websocket_connections_active",
        "channel",
        "websocket_connections_active",
        |v| ws::Connection::open(v).close(Some(1000)),
    );
    let text = obs().render_metrics();
    assert_eq!(
        metric_value(
            &text,
            "websocket_connections_active",
            &[("channel", "other")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric_value(
            &text,
            "websocket_closes_total",
            &[("channel", "other"), ("class", "normal")]
        ),
        Some((DISTINCT - CAP) as f64)
    );
}

#[test]
fn database_operations_and_pools_are_capped() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    check(
        "db_query_duration_seconds_count",
        "operation",
        "db_query_duration_seconds",
        |v| {
            rt.block_on(db::query(v, async { Ok::<_, std::io::Error>(()) }))
                .unwrap();
        },
    );
    check(
        "db_pool_connections_max",
        "pool",
        "db_pool_connections",
        |v| db::record_pool(v, 1, 1, 2),
    );
}

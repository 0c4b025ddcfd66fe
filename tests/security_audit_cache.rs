//! Security, audit and cache helpers: the `/metrics` text and the JSON line
//! each one produces, field by field.

mod common;

use std::{sync::OnceLock, time::Duration};

use common::{delta, keys, metric_value, strict_lines};
use glimpse_obs::{
    Config, Guard, LogType,
    audit::{self, AuditKind},
    business::PaymentStatus,
    cache, security,
    testing::SharedBuffer,
};
use serde_json::Value;

fn obs() -> &'static (Guard, SharedBuffer) {
    static OBS: OnceLock<(Guard, SharedBuffer)> = OnceLock::new();
    OBS.get_or_init(|| {
        let logs = SharedBuffer::new();
        let guard = Config::default()
            .service("accounts")
            .metrics_addr(None)
            .process_metrics(false)
            .log_writer(logs.clone())
            .init()
            .unwrap();
        (guard, logs)
    })
}

fn run(f: impl FnOnce()) -> (String, String, Vec<Value>) {
    common::around(&obs().0, f)
}

const AUDIT_KEYS: [&str; 11] = [
    "action",
    "actor",
    "audit",
    "audit_kind",
    "audit_target",
    "level",
    "log_type",
    "message",
    "service",
    "target",
    "timestamp",
];

fn with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    let mut k: Vec<&str> = base.iter().chain(extra).copied().collect();
    k.sort_unstable();
    k
}

#[test]
fn auth_failed_counts_by_reason_and_logs_one_warn_line() {
    let (before, after, lines) = run(|| {
        security::auth_failed("invalid_password");
        security::auth_failed("invalid_password");
        security::auth_failed("expired_token");
    });
    let m = "glimpse_auth_failures_total";
    assert_eq!(
        delta(&before, &after, m, &[("reason", "invalid_password")]),
        2.0
    );
    assert_eq!(
        delta(&before, &after, m, &[("reason", "expired_token")]),
        1.0
    );
    assert!(after.contains("# TYPE glimpse_auth_failures_total counter"));

    assert_eq!(lines.len(), 3);
    let l = &lines[2];
    assert_eq!(l["level"], "WARN");
    assert_eq!(l["message"], "authentication failed");
    assert_eq!(l["target"], "glimpse_obs::security");
    assert_eq!(l["service"], "accounts");
    assert_eq!(l["log_type"], "user_activity");
    assert_eq!(l["reason"], "expired_token");
    assert_eq!(
        keys(l),
        [
            "level",
            "log_type",
            "message",
            "reason",
            "service",
            "target",
            "timestamp"
        ]
    );
}

#[test]
fn api_key_used_counts_by_key_id_and_logs_nothing() {
    let (before, after, lines) = run(|| {
        security::api_key_used("partner-a");
        security::api_key_used("partner-a");
        security::api_key_used("partner-b");
    });
    let m = "glimpse_api_key_requests_total";
    assert_eq!(delta(&before, &after, m, &[("key_id", "partner-a")]), 2.0);
    assert_eq!(delta(&before, &after, m, &[("key_id", "partner-b")]), 1.0);
    assert!(lines.is_empty());
}

#[test]
fn admin_action_counts_by_action() {
    let (before, after, lines) = run(|| security::admin_action("user.ban"));
    assert_eq!(
        delta(
            &before,
            &after,
            "glimpse_admin_actions_total",
            &[("action", "user.ban")]
        ),
        1.0
    );
    assert!(lines.is_empty(), "the audit line is audit::admin_action's");
}

#[test]
fn cache_hits_and_misses_count_by_cache_and_result() {
    let (before, after, lines) = run(|| {
        cache::hit("profiles");
        cache::hit("profiles");
        cache::miss("profiles");
        cache::lookup("profiles", true);
        cache::lookup("feed", false);
    });
    let m = "cache_requests_total";
    assert_eq!(
        delta(
            &before,
            &after,
            m,
            &[("cache", "profiles"), ("result", "hit")]
        ),
        3.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            m,
            &[("cache", "profiles"), ("result", "miss")]
        ),
        1.0
    );
    assert_eq!(
        delta(&before, &after, m, &[("cache", "feed"), ("result", "miss")]),
        1.0
    );
    assert_eq!(
        delta(&before, &after, m, &[("cache", "feed"), ("result", "hit")]),
        0.0
    );
    // Hit rate of `profiles`, as the dashboard computes it: 3 / 4.
    let hits = metric_value(&after, m, &[("cache", "profiles"), ("result", "hit")]).unwrap();
    let all = metric_value(&after, m, &[("cache", "profiles")]).unwrap();
    assert_eq!(hits / all, 0.75);
    assert!(lines.is_empty());
}

#[test]
fn user_data_access_is_an_audit_line_kept_as_user_activity() {
    let (_, _, lines) = run(|| audit::user_data_access("support-3", "user-42", "export"));
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(l["level"], "INFO");
    assert_eq!(l["message"], "user data access");
    assert_eq!(l["target"], "glimpse_obs::audit");
    assert_eq!(l["audit"], true);
    assert_eq!(l["audit_kind"], "user_data_access");
    assert_eq!(l["actor"], "support-3");
    assert_eq!(l["action"], "export");
    assert_eq!(l["audit_target"], "user-42");
    assert_eq!(l["log_type"], "user_activity");
    assert_eq!(keys(l), with(&AUDIT_KEYS, &[]));
}

#[test]
fn config_change_records_old_and_new_values_and_redacts_secrets() {
    let (_, _, lines) = run(|| {
        audit::config_change(
            "admin-7",
            "matching.max_distance_km",
            Some("50"),
            Some("80"),
        );
        audit::config_change(
            "admin-7",
            "stripe_api_key",
            Some("sk_live_old"),
            Some("sk_live_new"),
        );
        audit::config_change("admin-7", "feature.beta", None, Some("on"));
    });
    assert_eq!(lines.len(), 3);
    let l = &lines[0];
    assert_eq!(l["message"], "configuration change");
    assert_eq!(l["audit"], true);
    assert_eq!(l["audit_kind"], "config_change");
    assert_eq!(l["log_type"], "user_activity");
    assert_eq!(l["actor"], "admin-7");
    assert_eq!(l["action"], "config.change");
    assert_eq!(l["audit_target"], "matching.max_distance_km");
    assert_eq!(l["old_value"], "50");
    assert_eq!(l["new_value"], "80");
    assert_eq!(keys(l), with(&AUDIT_KEYS, &["new_value", "old_value"]));

    let secret = &lines[1];
    assert_eq!(secret["audit_target"], "stripe_api_key");
    assert_eq!(secret["old_value"], "[REDACTED]");
    assert_eq!(secret["new_value"], "[REDACTED]");
    assert!(!secret.to_string().contains("sk_live"));

    let added = &lines[2];
    assert!(added.get("old_value").is_none(), "{added}");
    assert_eq!(added["new_value"], "on");
}

#[test]
fn payment_transaction_is_an_audit_line_kept_as_payment() {
    let (before, after, lines) = run(|| {
        audit::payment_transaction("user-42", "pay_81f3", 1299, "eur", PaymentStatus::Succeeded)
    });
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(l["level"], "INFO");
    assert_eq!(l["message"], "payment transaction");
    assert_eq!(l["audit"], true);
    assert_eq!(l["audit_kind"], "payment_transaction");
    assert_eq!(l["log_type"], "payment");
    assert_eq!(l["actor"], "user-42");
    assert_eq!(l["action"], "payment.succeeded");
    assert_eq!(l["audit_target"], "pay_81f3");
    assert_eq!(l["amount"], 12.99);
    assert_eq!(l["amount_minor"], 1299);
    assert_eq!(l["currency"], "EUR");
    assert_eq!(
        keys(l),
        with(&AUDIT_KEYS, &["amount", "amount_minor", "currency"])
    );
    // Audit lines log; the metrics are business::payment_processed's.
    assert_eq!(
        delta(
            &before,
            &after,
            "glimpse_payments_total",
            &[("currency", "EUR")]
        ),
        0.0
    );
}

#[test]
fn admin_action_audit_line_names_actor_action_and_target() {
    let (_, _, lines) = run(|| audit::admin_action("admin-7", "user.ban", "user-13"));
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(l["message"], "admin action");
    assert_eq!(l["audit"], true);
    assert_eq!(l["audit_kind"], "admin_action");
    assert_eq!(l["log_type"], "user_activity");
    assert_eq!(l["actor"], "admin-7");
    assert_eq!(l["action"], "user.ban");
    assert_eq!(l["audit_target"], "user-13");
    assert_eq!(keys(l), with(&AUDIT_KEYS, &[]));
}

#[test]
fn audit_kinds_map_to_the_documented_retention_classes() {
    let kinds = [
        (
            AuditKind::UserDataAccess,
            "user_data_access",
            LogType::UserActivity,
        ),
        (
            AuditKind::ConfigChange,
            "config_change",
            LogType::UserActivity,
        ),
        (
            AuditKind::PaymentTransaction,
            "payment_transaction",
            LogType::Payment,
        ),
        (
            AuditKind::AdminAction,
            "admin_action",
            LogType::UserActivity,
        ),
    ];
    for (kind, name, class) in kinds {
        assert_eq!(kind.as_str(), name);
        assert_eq!(kind.log_type(), class);
    }
}

#[test]
fn audit_lines_with_hostile_strings_stay_valid_json() {
    let (guard, logs) = obs();
    tracing::info_span!("test", tag = "audit-json").in_scope(|| {
        audit::admin_action("admin \"root\"\r\n", "user.delete", "user-1\u{0}");
    });
    assert!(guard.flush(Duration::from_secs(5)));
    let lines = strict_lines(&logs.contents());
    let l = lines.iter().find(|l| l["tag"] == "audit-json").unwrap();
    assert_eq!(l["actor"], "admin \"root\"\r\n");
    assert_eq!(l["audit_target"], "user-1\u{0}");
    assert_eq!(l["audit"], true);
}

#[tokio::test]
async fn audit_and_security_lines_inside_a_request_carry_its_request_and_user_ids() {
    use axum::{Router, routing::post};
    use tower::ServiceExt;

    let (guard, logs) = obs();
    let app = Router::new()
        .route(
            "/admin/ban",
            post(|| async {
                glimpse_obs::record_user_id("admin-7");
                security::auth_failed("mfa_required");
                audit::admin_action("admin-7", "user.ban", "user-77");
                "ok"
            }),
        )
        .layer(glimpse_obs::layer());
    let res = app
        .oneshot(
            http::Request::post("/admin/ban")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(guard.flush(Duration::from_secs(5)));
    let lines = strict_lines(&logs.contents());
    let audit_line = lines
        .iter()
        .find(|l| l["audit_target"] == "user-77")
        .unwrap();
    assert_eq!(audit_line["requestId"], request_id.as_str());
    assert_eq!(audit_line["userId"], "admin-7");
    let auth_line = lines
        .iter()
        .find(|l| l["reason"] == "mfa_required")
        .unwrap();
    assert_eq!(auth_line["requestId"], request_id.as_str());
}

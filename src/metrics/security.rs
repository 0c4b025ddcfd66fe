//! Security metrics: authentication failures, API key usage and admin
//! actions, for the guide's security alerts (a burst of failed logins, an
//! unknown key hammering the API).
//!
//! ```
//! use glimpse_obs::security;
//! # glimpse_obs::testing::capture(|| {
//! security::auth_failed("invalid_password"); // counter + one WARN line
//! security::api_key_used("key_2024_partner_a"); // the key's ID, never the key
//! security::admin_action("user.ban");
//! # });
//! ```
//!
//! Only [`auth_failed`] logs; an admin action's audit record is
//! [`crate::audit::admin_action`], which carries the actor and target.

use metrics::Counter;

use super::{
    handles::Family,
    names::{self, labels},
};

static AUTH_FAILURES: Family<Counter> = Family::new(
    names::AUTH_FAILURES,
    |reason, _| metrics::counter!(names::AUTH_FAILURES, labels::REASON => reason.to_owned()),
);

/// Count one failed authentication by `reason` (`"invalid_password"`,
/// `"expired_token"`, `"unknown_user"`) in
/// `glimpse_auth_failures_total{reason}` and log it:
///
/// | field | value |
/// |---|---|
/// | `level` | `WARN` |
/// | `message` | `authentication failed` |
/// | `reason` | as given |
/// | `log_type` | `user_activity` (1-year retention, for investigations) |
/// | `target` | `glimpse_obs::security` |
///
/// plus `requestId` and the trace IDs of the current request. Never pass
/// the rejected credential.
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::security::auth_failed("expired_token");
/// # });
/// # assert_eq!(seen.find(|l| l["message"] == "authentication failed").unwrap()["reason"], "expired_token");
/// ```
pub fn auth_failed(reason: &str) {
    tracing::warn!(
        target: "glimpse_obs::security",
        log_type = "user_activity",
        reason,
        "authentication failed"
    );
    AUTH_FAILURES.with(reason, "", |c| c.increment(1));
}

static API_KEYS: Family<Counter> = Family::new(
    names::API_KEY_REQUESTS,
    |key_id, _| metrics::counter!(names::API_KEY_REQUESTS, labels::KEY_ID => key_id.to_owned()),
);

/// Count one request authenticated by the API key `key_id` in
/// `glimpse_api_key_requests_total{key_id}`.
///
/// `key_id` is the key's public identifier (or a short fingerprint), never
/// the secret key. IDs past the label cap are counted as `other`.
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::security::api_key_used("partner-a");
/// # });
/// # assert_eq!(seen.metric_delta("glimpse_api_key_requests_total", &[("key_id", "partner-a")]), 1.0);
/// ```
#[inline]
pub fn api_key_used(key_id: &str) {
    API_KEYS.with(key_id, "", |c| c.increment(1));
}

static ADMIN_ACTIONS: Family<Counter> = Family::new(
    names::ADMIN_ACTIONS,
    |action, _| metrics::counter!(names::ADMIN_ACTIONS, labels::ACTION => action.to_owned()),
);

/// Count one admin action (`"user.ban"`, `"config.update"`) in
/// `glimpse_admin_actions_total{action}`. Record who did it to whom with
/// [`crate::audit::admin_action`].
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::security::admin_action("user.ban");
/// # });
/// # assert_eq!(seen.metric_delta("glimpse_admin_actions_total", &[("action", "user.ban")]), 1.0);
/// ```
#[inline]
pub fn admin_action(action: &str) {
    ADMIN_ACTIONS.with(action, "", |c| c.increment(1));
}

//! Typed audit events for the guide's four audit kinds: user data access,
//! configuration change, payment transaction and admin action.
//!
//! Each function writes one INFO line with `audit: true`, which the log
//! writer never drops under overload and access-log sampling never touches.
//! Every audit line carries:
//!
//! | field | value |
//! |---|---|
//! | `message` | `user data access`, `configuration change`, `payment transaction` or `admin action` |
//! | `audit` | `true` |
//! | `audit_kind` | `user_data_access`, `config_change`, `payment_transaction` or `admin_action` ([`AuditKind`]) |
//! | `actor` | who acted: a user ID, an admin's ID, a service name |
//! | `action` | what was done |
//! | `audit_target` | what it was done to: a user ID, a setting, a payment ID |
//! | `log_type` | the retention class of the kind ([`AuditKind::log_type`]) |
//! | `target` | `glimpse_obs::audit` (the log target, as on every line) |
//!
//! plus `requestId`, `userId` and the trace IDs of the current request.
//! What an audit line calls its target is written `audit_target` because
//! `target` is the log target on every line of the schema.
//!
//! Retention: payment transactions are `payment` (7 years); user data
//! access, configuration changes and admin actions are `user_activity`
//! (1 year): they are records of what people did, and 90 days (`system`) is
//! shorter than an investigation or an access review needs.
//!
//! ```
//! use glimpse_obs::{audit, business::PaymentStatus};
//! # glimpse_obs::testing::capture(|| {
//! audit::user_data_access("admin-7", "user-42", "export");
//! audit::config_change("admin-7", "matching.max_distance_km", Some("50"), Some("80"));
//! audit::payment_transaction("user-42", "pay_81f3", 1299, "EUR", PaymentStatus::Succeeded);
//! audit::admin_action("admin-7", "user.ban", "user-13");
//! # });
//! ```
//!
//! Audit lines are INFO and pass any level filter (`warn`, `off`, after
//! `Guard::set_filter` too) unless the directive names `glimpse_obs::audit`
//! itself, e.g. `warn,glimpse_obs::audit=off`.

use crate::{
    LogType,
    business::{PaymentStatus, major_units},
    logging::redact::{REDACTED, is_sensitive},
};

/// The log target of every audit line.
const TARGET: &str = "glimpse_obs::audit";

/// The four kinds of audit event of the operations guide.
///
/// | kind | `audit_kind` | `log_type` |
/// |---|---|---|
/// | user data access | `user_data_access` | `user_activity` |
/// | configuration change | `config_change` | `user_activity` |
/// | payment transaction | `payment_transaction` | `payment` |
/// | admin action | `admin_action` | `user_activity` |
///
/// ```
/// use glimpse_obs::{LogType, audit::AuditKind};
/// assert_eq!(AuditKind::PaymentTransaction.log_type(), LogType::Payment);
/// assert_eq!(AuditKind::ConfigChange.as_str(), "config_change");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditKind {
    /// Someone read, exported, changed or deleted a user's personal data.
    UserDataAccess,
    /// A setting of the service changed.
    ConfigChange,
    /// Money moved (or failed to).
    PaymentTransaction,
    /// An administrator acted on a user or on the service.
    AdminAction,
}

impl AuditKind {
    /// The `audit_kind` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UserDataAccess => "user_data_access",
            Self::ConfigChange => "config_change",
            Self::PaymentTransaction => "payment_transaction",
            Self::AdminAction => "admin_action",
        }
    }

    /// The retention class (`log_type`) of the kind's lines.
    pub const fn log_type(self) -> LogType {
        match self {
            Self::PaymentTransaction => LogType::Payment,
            Self::UserDataAccess | Self::ConfigChange | Self::AdminAction => LogType::UserActivity,
        }
    }
}

/// Record that `actor` did `action` (`"read"`, `"export"`, `"update"`,
/// `"delete"`) on the personal data of user `target`.
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::audit::user_data_access("support-3", "user-42", "read");
/// # });
/// # let line = seen.find(|l| l["audit"] == true).unwrap();
/// # assert_eq!(line["audit_kind"], "user_data_access");
/// # assert_eq!(line["audit_target"], "user-42");
/// # assert_eq!(line["log_type"], "user_activity");
/// ```
pub fn user_data_access(actor: &str, target: &str, action: &str) {
    tracing::info!(
        target: TARGET,
        audit = true,
        audit_kind = AuditKind::UserDataAccess.as_str(),
        log_type = AuditKind::UserDataAccess.log_type().as_str(),
        actor,
        action,
        audit_target = target,
        "user data access"
    );
}

/// Record that `actor` changed the setting `key` from `old_value` to
/// `new_value` (`None`: the setting was absent or is removed; the field is
/// then left out). `action` is `config.change` and `audit_target` the key.
///
/// When `key` names a secret (`stripe_api_key`, `smtp_password`: the same
/// rule as log redaction), both values are written as `"[REDACTED]"`.
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::audit::config_change("admin-7", "smtp_password", Some("hunter2"), Some("hunter3"));
/// # });
/// # let line = seen.find(|l| l["audit"] == true).unwrap();
/// # assert_eq!(line["new_value"], "[REDACTED]");
/// ```
pub fn config_change(actor: &str, key: &str, old_value: Option<&str>, new_value: Option<&str>) {
    let (old_value, new_value) = if is_sensitive(key) {
        (old_value.map(|_| REDACTED), new_value.map(|_| REDACTED))
    } else {
        (old_value, new_value)
    };
    tracing::info!(
        target: TARGET,
        audit = true,
        audit_kind = AuditKind::ConfigChange.as_str(),
        log_type = AuditKind::ConfigChange.log_type().as_str(),
        actor,
        action = "config.change",
        audit_target = key,
        old_value,
        new_value,
        "configuration change"
    );
}

/// Record a payment: `actor` paid (or tried to pay) `amount_minor` of
/// `currency` in payment `payment_id`.
///
/// `action` is `payment.succeeded` or `payment.failed`, `audit_target` the
/// payment ID; `amount` (major units), `amount_minor` and `currency` are
/// written as in [`crate::business::payment_processed`], which records the
/// metrics and the business line of the same payment. The audit line has no
/// `status` field, so `status:failed` finds each failed payment once.
///
/// ```
/// use glimpse_obs::business::PaymentStatus;
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::audit::payment_transaction("user-42", "pay_81f3", 500, "JPY", PaymentStatus::Failed);
/// # });
/// # let line = seen.find(|l| l["audit"] == true).unwrap();
/// # assert_eq!(line["action"], "payment.failed");
/// # assert_eq!(line["amount"], 500.0);
/// ```
pub fn payment_transaction(
    actor: &str,
    payment_id: &str,
    amount_minor: u64,
    currency: &str,
    status: PaymentStatus,
) {
    let mut buf = [0u8; 3];
    let currency = crate::business::upper_code(currency, &mut buf);
    let action = match status {
        PaymentStatus::Succeeded => "payment.succeeded",
        PaymentStatus::Failed => "payment.failed",
    };
    tracing::info!(
        target: TARGET,
        audit = true,
        audit_kind = AuditKind::PaymentTransaction.as_str(),
        log_type = AuditKind::PaymentTransaction.log_type().as_str(),
        actor,
        action,
        audit_target = payment_id,
        amount = major_units(amount_minor, currency),
        amount_minor,
        currency,
        "payment transaction"
    );
}

/// Record that administrator `actor` did `action` (`"user.ban"`,
/// `"match.delete"`) to `target`. Count it too with
/// [`crate::security::admin_action`].
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::audit::admin_action("admin-7", "user.ban", "user-13");
/// # });
/// # let line = seen.find(|l| l["audit"] == true).unwrap();
/// # assert_eq!(line["actor"], "admin-7");
/// ```
pub fn admin_action(actor: &str, action: &str, target: &str) {
    tracing::info!(
        target: TARGET,
        audit = true,
        audit_kind = AuditKind::AdminAction.as_str(),
        log_type = AuditKind::AdminAction.log_type().as_str(),
        actor,
        action,
        audit_target = target,
        "admin action"
    );
}

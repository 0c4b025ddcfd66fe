//! Structured JSON logging: the formatter, redaction, the request scope and
//! the non-blocking writer.

pub(crate) mod export;
pub(crate) mod filter;
pub(crate) mod index;
pub(crate) mod json;
pub(crate) mod layer;
pub(crate) mod pretty;
pub mod redact;
pub(crate) mod scope;
pub(crate) mod timestamp;
pub(crate) mod writer;

/// The retention class of a log line (`log_type`), as in the operations
/// guide's retention policy.
///
/// | `log_type` | retention | written for |
/// |---|---|---|
/// | `payment` | 7 years | [`business::payment_processed`](crate::business::payment_processed), [`audit::payment_transaction`](crate::audit::payment_transaction) |
/// | `user_activity` | 1 year | access lines of requests with a recorded user ([`record_user_id`](crate::record_user_id)), [`security::auth_failed`](crate::security::auth_failed), the other audit events (user data access, configuration change, admin action) |
/// | `system` | 90 days | every other line at INFO, WARN or ERROR |
/// | `debug` | 7 days | every other DEBUG or TRACE line |
///
/// An event chooses its class with a `log_type` field whose value is one of
/// the four names (any other value is written as `fields.log_type`):
///
/// ```
/// use glimpse_obs::LogType;
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// tracing::info!(log_type = "payment", refund_id = "re_81f3", "refund issued");
/// # });
/// # assert_eq!(seen.find(|l| l["message"] == "refund issued").unwrap()["log_type"], "payment");
/// assert_eq!(LogType::Payment.as_str(), "payment");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogType {
    /// Payments: 7 years.
    Payment,
    /// User activity: 1 year.
    UserActivity,
    /// System logs: 90 days.
    System,
    /// Debug logs: 7 days.
    Debug,
}

impl LogType {
    /// The value written in `log_type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Payment => "payment",
            Self::UserActivity => "user_activity",
            Self::System => "system",
            Self::Debug => "debug",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "payment" => Self::Payment,
            "user_activity" => Self::UserActivity,
            "system" => Self::System,
            "debug" => Self::Debug,
            _ => return None,
        })
    }
}

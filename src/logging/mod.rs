//! Structured JSON logging: the formatter, redaction, the request scope and
//! the non-blocking writer.

pub(crate) mod filter;
pub(crate) mod json;
pub(crate) mod layer;
pub mod redact;
pub(crate) mod scope;
pub(crate) mod timestamp;
pub(crate) mod writer;

/// The retention class of a log line (`log_type`), as in the operations
/// guide's retention policy.
///
/// | `log_type` | retention | written for |
/// |---|---|---|
/// | `payment` | 7 years | payment events and payment audit lines |
/// | `user_activity` | 1 year | access lines of authenticated requests, user data access audits, business events |
/// | `system` | 90 days | everything else at INFO and above |
/// | `debug` | 7 days | DEBUG and TRACE lines |
///
/// An event chooses its class with a `log_type` field:
/// `tracing::info!(log_type = "payment", "refund issued")`.
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

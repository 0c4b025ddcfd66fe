//! Which field names carry secrets.

/// Field-name fragments whose values are never written; matched
/// case-insensitively anywhere in the name (`user_password`, `X-Api-Key`).
pub const SENSITIVE: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "api-key",
    "card_number",
    "cardnumber",
    "card",
    "cvv",
    "cvc",
    "ssn",
    "private_key",
    "credential",
    "session",
    "iban",
];

/// The text written instead of a sensitive value.
pub const REDACTED: &str = "[REDACTED]";

/// Whether a field named `name` must be redacted.
pub(crate) fn is_sensitive(name: &str) -> bool {
    let bytes = name.as_bytes();
    SENSITIVE.iter().any(|pat| {
        let p = pat.as_bytes();
        bytes.len() >= p.len() && bytes.windows(p.len()).any(|w| w.eq_ignore_ascii_case(p))
    })
}

#[cfg(test)]
mod tests {
    use super::is_sensitive;

    #[test]
    fn sensitive_names_match_in_any_case_and_position() {
        for name in [
            "password",
            "user_Password",
            "X-Api-Key",
            "api_key",
            "AUTHORIZATION",
            "cvv",
            "card_number",
            "session_id",
            "refresh_token",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["user_id", "amount", "currency", "route", "method", "status"] {
            assert!(!is_sensitive(name), "{name}");
        }
    }
}

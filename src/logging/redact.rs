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

/// Whether a field named `name` must be redacted, cached per name.
///
/// Field names are `&'static str` of callsites, so a small per-thread cache
/// keyed by the name's address spares the substring scan (19 patterns) on
/// every field of every event; measured in `benches/logging.rs`.
pub(crate) fn is_sensitive_cached(name: &'static str) -> bool {
    use std::cell::Cell;
    const SLOTS: usize = 256;
    thread_local! {
        static CACHE: [Cell<(usize, usize, bool)>; SLOTS] = const { [const { Cell::new((0, 0, false)) }; SLOTS] };
    }
    let key = (name.as_ptr() as usize, name.len());
    let slot = (key.0 >> 3 ^ key.0 >> 11 ^ key.1) % SLOTS;
    CACHE.with(|c| {
        let (ptr, len, hit) = c[slot].get();
        if (ptr, len) == key {
            return hit;
        }
        let hit = is_sensitive(name);
        c[slot].set((key.0, key.1, hit));
        hit
    })
}

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

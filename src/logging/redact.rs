//! Which field names carry secrets.

/// Field-name fragments whose values are never written; matched
/// case-insensitively anywhere in the name (`user_password`, `X-Api-Key`,
/// `creditcardnumber`).
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
    "creditcard",
    "private_key",
    "privatekey",
    "credential",
];

/// Short words whose values are never written when they are a whole word of
/// the name (words split at `_`, `-`, `.` and lower-to-upper case changes):
/// `card`, `card_cvv` and `cardHolder` are redacted, `discard`,
/// `classname` and `possession` are not.
pub const SENSITIVE_WORDS: &[&str] = &["card", "cvv", "cvc", "ssn", "session", "iban", "pin"];

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
    }) || words(name).any(|w| SENSITIVE_WORDS.iter().any(|s| w.eq_ignore_ascii_case(s)))
}

/// The words of a field name: split at non-alphanumerics and where a
/// lower-case letter or digit is followed by an upper-case one.
fn words(name: &str) -> impl Iterator<Item = &str> {
    let bytes = name.as_bytes();
    let mut start = 0;
    let mut i = 0;
    std::iter::from_fn(move || {
        while i <= bytes.len() {
            let at = i;
            i += 1;
            let boundary = at == bytes.len()
                || !bytes[at].is_ascii_alphanumeric()
                || (at > start
                    && bytes[at].is_ascii_uppercase()
                    && (bytes[at - 1].is_ascii_lowercase() || bytes[at - 1].is_ascii_digit()));
            if !boundary {
                continue;
            }
            let word = &name[start..at];
            // A separator is skipped; an upper-case letter starts the next word.
            start = if at < bytes.len() && bytes[at].is_ascii_alphanumeric() {
                at
            } else {
                at + 1
            };
            if !word.is_empty() {
                return Some(word);
            }
        }
        None
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

    #[test]
    fn short_words_match_whole_words_only() {
        for name in [
            "card",
            "card_cvv",
            "cardHolder",
            "user.ssn",
            "SESSION",
            "sessionId",
            "iban",
            "pin",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in [
            "discard",
            "classname",
            "possession",
            "spinner",
            "cardinality",
            "scorecards",
        ] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn words_split_at_separators_and_case_changes() {
        let split = |n| super::words(n).collect::<Vec<_>>();
        assert_eq!(split("user_cardNumber"), ["user", "card", "Number"]);
        assert_eq!(split("X-Api-Key"), ["X", "Api", "Key"]);
        assert_eq!(split("a..b"), ["a", "b"]);
        assert_eq!(split("HTTPStatus"), ["HTTPStatus"]);
        assert_eq!(split("v2Token"), ["v2", "Token"]);
        assert_eq!(split(""), Vec::<&str>::new());
    }
}

//! Which field names carry secrets, and which values carry personal data.
//!
//! Names: a field whose name says it holds a secret is written as
//! [`REDACTED`]. Values: whatever the name, card numbers and e-mail
//! addresses found in string values, in `path` and in `url.path` are
//! masked ([`MASKED_CARD`], [`MASKED_EMAIL`]); values longer than the cap
//! end with [`TRUNCATED_SUFFIX`].

use std::borrow::Cow;

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

/// Written instead of a card number found in a value: a run of 13 to 19
/// digits (single spaces or dashes between them allowed) that passes the
/// Luhn check. Runs that fail it (order numbers, timestamps) are kept.
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// tracing::info!(note = "paid with 4111 1111 1111 1111", "payment note");
/// # });
/// # let line = seen.find(|l| l["message"] == "payment note").unwrap();
/// # assert_eq!(line["note"], "paid with [CARD]");
/// // "note":"paid with [CARD]"
/// assert_eq!(glimpse_obs::logging::redact::MASKED_CARD, "[CARD]");
/// ```
pub const MASKED_CARD: &str = "[CARD]";

/// Written instead of an e-mail address found in a value (also
/// percent-encoded, `bob%40example.com`, as in paths).
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// tracing::info!(to = "bob@example.com", "mail sent");
/// # });
/// # assert_eq!(seen.find(|l| l["message"] == "mail sent").unwrap()["to"], "[EMAIL]");
/// // "to":"[EMAIL]"
/// assert_eq!(glimpse_obs::logging::redact::MASKED_EMAIL, "[EMAIL]");
/// ```
pub const MASKED_EMAIL: &str = "[EMAIL]";

/// Ends a value cut at the length cap (`Config::log_field_max_bytes` for
/// messages and string fields, 128 bytes for `userId`): search for
/// `*truncated*` to find them.
///
/// ```
/// assert_eq!(glimpse_obs::logging::redact::TRUNCATED_SUFFIX, "…[truncated]");
/// ```
pub const TRUNCATED_SUFFIX: &str = "…[truncated]";

/// Whether `bytes` may hold a card number or an e-mail address: an `@`
/// (or `%40`), or 13 digits in one run. Almost every value answers `false`
/// at the first stage, a branch-free count of digits and `@`/`%` bytes that
/// the compiler vectorises (well under a nanosecond per byte); only values
/// with 13 digits or an `@`/`%` anywhere take the exact scan, and only those
/// that pass it pay for [`mask_personal_data`]'s parse and copy.
#[inline]
pub(crate) fn may_hold_personal_data(bytes: &[u8]) -> bool {
    let (mut digits, mut marks) = (0usize, 0usize);
    for &b in bytes {
        digits += usize::from(b.is_ascii_digit());
        marks += usize::from(b == b'@' || b == b'%');
    }
    (marks > 0 || digits >= 13) && may_hold_personal_data_exact(bytes)
}

/// The exact form of [`may_hold_personal_data`]'s question.
#[cold]
fn may_hold_personal_data_exact(bytes: &[u8]) -> bool {
    let mut digits = 0u32;
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_digit() {
            digits += 1;
            if digits >= 13 {
                return true;
            }
        } else if b == b'@' || (b == b'%' && bytes.get(i + 1..i + 3) == Some(b"40")) {
            return true;
        } else if !(matches!(b, b' ' | b'-') && digits > 0) {
            digits = 0;
        }
    }
    false
}

/// `s` with card numbers and e-mail addresses masked; borrowed (no copy)
/// when there is nothing to mask.
pub(crate) fn mask_personal_data(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    if !may_hold_personal_data(bytes) {
        return Cow::Borrowed(s);
    }
    let emails = email_ranges(bytes);
    let mut out = String::new();
    let mut copied = 0;
    let mut emails = emails.into_iter().peekable();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(&(start, end)) = emails.peek()
            && i == start
        {
            out.push_str(&s[copied..start]);
            out.push_str(MASKED_EMAIL);
            copied = end;
            i = end;
            emails.next();
            continue;
        }
        let run_start = bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit());
        if run_start && let Some(end) = card_at(bytes, i, emails.peek().map(|e| e.0)) {
            out.push_str(&s[copied..i]);
            out.push_str(MASKED_CARD);
            copied = end;
            i = end;
            continue;
        }
        i += 1;
    }
    if copied == 0 {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

/// The end of a Luhn-valid run of 13–19 digits starting at `start` (single
/// spaces or dashes between digits allowed), ending before `limit`.
fn card_at(bytes: &[u8], start: usize, limit: Option<usize>) -> Option<usize> {
    let limit = limit.unwrap_or(bytes.len());
    let mut digits = [0u8; 19];
    let mut n = 0;
    let mut i = start;
    let mut end = start;
    while i < limit {
        let b = bytes[i];
        if b.is_ascii_digit() {
            if n == digits.len() {
                return None; // longer than any card number
            }
            digits[n] = b - b'0';
            n += 1;
            i += 1;
            end = i;
        } else if matches!(b, b' ' | b'-') && i + 1 < limit && bytes[i + 1].is_ascii_digit() {
            i += 1;
        } else {
            break;
        }
    }
    // A digit right after the run (past the limit) makes it part of something longer.
    ((13..=19).contains(&n) && luhn(&digits[..n])).then_some(end)
}

/// The Luhn checksum of card numbers.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Byte ranges of the e-mail addresses in `bytes`: a local part of
/// `[A-Za-z0-9._%+-]`, `@` or `%40`, and a domain of dot-separated labels
/// of `[A-Za-z0-9-]` whose last label has two letters or more.
fn email_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    let local = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    let domain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-');
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let at_len = if bytes[i] == b'@' {
            1
        } else if bytes[i] == b'%' && bytes.get(i + 1..i + 3) == Some(b"40") {
            3
        } else {
            i += 1;
            continue;
        };
        let floor = ranges.last().map_or(0, |&(_, end)| end);
        let mut start = i;
        while start > floor && local(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = i + at_len;
        while end < bytes.len() && domain(bytes[end]) {
            end += 1;
        }
        // Trailing dots and dashes end a sentence, not the domain.
        while end > i + at_len && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let host = &bytes[i + at_len..end];
        let tld = host.rsplit(|&b| b == b'.').next().unwrap_or_default();
        let valid = start < i
            && host.contains(&b'.')
            && tld.len() >= 2
            && tld.iter().all(u8::is_ascii_alphabetic);
        if valid {
            ranges.push((start, end));
            i = end;
        } else {
            i += at_len;
        }
    }
    ranges
}

/// Cap `s` at `max` bytes (at a character boundary): the part kept, and
/// whether anything was cut.
pub(crate) fn cap(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        (s, false)
    } else {
        (&s[..s.floor_char_boundary(max)], true)
    }
}

/// Whether a field named `name` must be redacted, cached per name.
///
/// Field names are `&'static str` of callsites, so a small per-thread cache
/// keyed by the name's address spares the substring scan (19 patterns) on
/// every field of every event; measured in `benches/logging.rs`. The cache
/// is two-way set associative, indexed by a multiplicative hash of the
/// address: with one way and a hash of a few address bits, names that
/// happened to share a slot (which ones depends on how the linker placed
/// the strings) evicted each other on every event, so the same event cost
/// up to a quarter more in one build than in another.
pub(crate) fn is_sensitive_cached(name: &'static str) -> bool {
    use std::cell::Cell;
    const SETS: usize = 128;
    type Way = Cell<(usize, usize, bool)>;
    thread_local! {
        static CACHE: [[Way; 2]; SETS] =
            const { [const { [const { Cell::new((0, 0, false)) }, const { Cell::new((0, 0, false)) }] }; SETS] };
    }
    let key = (name.as_ptr() as usize, name.len());
    let h = (key.0 ^ key.1.rotate_left(48)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let set = (h >> (usize::BITS - 7)) % SETS;
    CACHE.with(|c| {
        let [first, second] = &c[set];
        let (ptr, len, hit) = first.get();
        if (ptr, len) == key {
            return hit;
        }
        let (ptr, len, hit) = second.get();
        if (ptr, len) == key {
            return hit;
        }
        // The most recent name first; the other way keeps the one before.
        let hit = is_sensitive(name);
        second.set(first.get());
        first.set((key.0, key.1, hit));
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
    use super::*;

    fn mask(s: &str) -> String {
        mask_personal_data(s).into_owned()
    }

    #[test]
    fn luhn_valid_card_numbers_are_masked_others_kept() {
        assert_eq!(mask("/cards/4111111111111111"), "/cards/[CARD]");
        assert_eq!(mask("4111 1111 1111 1111!"), "[CARD]!");
        assert_eq!(mask("pan 5500-0000-0000-0004 ok"), "pan [CARD] ok");
        assert_eq!(mask("amex 378282246310005"), "amex [CARD]");
        // Luhn fails, too short, too long: kept.
        assert_eq!(mask("order 4111111111111112"), "order 4111111111111112");
        assert_eq!(mask("411111111111"), "411111111111");
        assert_eq!(mask("41111111111111111111111"), "41111111111111111111111");
        assert_eq!(mask("ts 1733212345678"), "ts 1733212345678");
        assert!(matches!(
            mask_personal_data("no digits here"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn email_addresses_are_masked_also_percent_encoded() {
        assert_eq!(mask("/users/bob@example.com"), "/users/[EMAIL]");
        assert_eq!(mask("/users/bob%40example.com/x"), "/users/[EMAIL]/x");
        assert_eq!(mask("to: a.b+c@mail.example.co.uk."), "to: [EMAIL].");
        assert_eq!(mask("x@y@z.io"), "x@[EMAIL]");
        // Not addresses: kept, and not copied.
        for kept in [
            "@handle",
            "user@localhost",
            "a@b.c1",
            "100% @ home",
            "v1@2x",
        ] {
            assert_eq!(mask(kept), kept);
        }
        assert_eq!(
            mask("bob@example.com paid 4111111111111111"),
            "[EMAIL] paid [CARD]"
        );
    }

    #[test]
    fn caps_cut_at_character_boundaries() {
        assert_eq!(cap("héllo", 2), ("h", true));
        assert_eq!(cap("héllo", 3), ("hé", true));
        assert_eq!(cap("héllo", 6), ("héllo", false));
    }

    #[test]
    fn sensitive_names_match_in_any_case_and_position() {
        use super::is_sensitive;
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

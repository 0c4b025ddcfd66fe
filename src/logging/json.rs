//! Zero-allocation JSON writing primitives for the formatter.

use std::fmt;

use super::redact::{self, TRUNCATED_SUFFIX};

/// Characters that must be escaped in a JSON string, and how.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    // DEL is a control character too: escaping it keeps terminals safe.
    table[0x7f] = b'u';
    // Lead bytes of the multi-byte characters that are escaped too (C1
    // controls start with 0xC2; U+2028/2029 and the bidirectional controls
    // with 0xE2): checked further in `escape_into`, so the scan stays one
    // table look-up per byte.
    table[0xc2] = b'2';
    table[0xe2] = b'3';
    table
};

/// The code point of a two- or three-byte character at `bytes[i..]` that
/// must be escaped: a C1 control (U+0080–U+009F: NEL, CSI…), the line and
/// paragraph separators (U+2028, U+2029: line breaks for JavaScript and
/// some log viewers) or a bidirectional control (U+200E, U+200F,
/// U+202A–U+202E, U+2066–U+2069: they reorder what a reader sees).
#[inline]
fn escaped_multibyte(bytes: &[u8], i: usize, lead: u8) -> Option<(u32, usize)> {
    match (lead, bytes.get(i + 1), bytes.get(i + 2)) {
        (b'2', Some(&b1), _) if (0x80..=0x9f).contains(&b1) => Some((u32::from(b1), 2)),
        (b'3', Some(&0x80), Some(&b2)) if matches!(b2, 0x8e | 0x8f | 0xa8..=0xae) => {
            Some((0x2000 | u32::from(b2 & 0x3f), 3))
        }
        (b'3', Some(&0x81), Some(&b2)) if (0xa6..=0xa9).contains(&b2) => {
            Some((0x2040 | u32::from(b2 & 0x3f), 3))
        }
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Append `s` escaped for use inside a JSON string (without quotes).
///
/// Every control character, including ESC (ANSI sequences), DEL, the C1
/// controls (U+0085 NEL, U+009B CSI), U+2028/U+2029 and the bidirectional
/// controls (U+202E…), comes out as a `\uXXXX` escape, so no value can
/// break the line, a terminal or what a reader sees.
pub(crate) fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[b as usize];
        if esc == 0 {
            continue;
        }
        if esc == b'2' || esc == b'3' {
            // The continuation bytes are not in the table: the loop passes
            // over them.
            if let Some((cp, len)) = escaped_multibyte(bytes, i, esc) {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    HEX[(cp >> 12) as usize & 0xf],
                    HEX[(cp >> 8) as usize & 0xf],
                    HEX[(cp >> 4) as usize & 0xf],
                    HEX[cp as usize & 0xf],
                ]);
                start = i + len;
            }
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match esc {
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]),
            other => out.extend_from_slice(&[b'\\', other]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// How far past the length cap personal data is still looked for, so a
/// card number or an address across the cut is masked whole, not left
/// half visible (an address is at most 254 bytes).
const MASK_LOOKAHEAD: usize = 320;

/// Append `s` escaped (without quotes) as a value of the log: card numbers
/// and e-mail addresses masked, cut at `max` bytes (at a character
/// boundary) and then ending with [`TRUNCATED_SUFFIX`]; `cut` says the
/// caller already dropped a tail. The masking scan is cheap when there is
/// nothing to mask (`redact::mask_personal_data`).
pub(crate) fn value_escape_into(out: &mut Vec<u8>, s: &str, max: usize, cut: bool) {
    let (head, cut_head) = redact::cap(s, max.saturating_add(MASK_LOOKAHEAD));
    let masked = redact::mask_personal_data(head);
    let (kept, cut_kept) = redact::cap(&masked, max);
    escape_into(out, kept);
    if cut || cut_head || cut_kept {
        escape_into(out, TRUNCATED_SUFFIX);
    }
}

/// [`value_escape_into`] between quotes.
pub(crate) fn value_into(out: &mut Vec<u8>, s: &str, max: usize) {
    out.push(b'"');
    value_escape_into(out, s, max, false);
    out.push(b'"');
}

/// A `fmt::Write` into a `String` that keeps the first `limit` bytes (at
/// a character boundary) and notes whether it dropped any: a `Debug` value
/// of 200 KB is not formatted in full only to be cut.
pub(crate) struct Bounded<'a> {
    pub(crate) out: &'a mut String,
    pub(crate) limit: usize,
    pub(crate) cut: bool,
}

impl fmt::Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.limit.saturating_sub(self.out.len());
        let (kept, cut) = redact::cap(s, room);
        self.out.push_str(kept);
        self.cut |= cut;
        Ok(())
    }
}

/// A `fmt::Write` that escapes what is written through it straight into
/// `out`, keeping at most `budget` bytes (at a character boundary) and
/// noting whether it dropped any.
pub(crate) struct CappedEscaper<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) budget: usize,
    pub(crate) cut: bool,
}

impl fmt::Write for CappedEscaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let (kept, cut) = redact::cap(s, self.budget);
        escape_into(self.out, kept);
        self.budget -= kept.len();
        self.cut |= cut;
        Ok(())
    }
}

/// Append `"s"` as a JSON string.
pub(crate) fn string_into(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_into(out, s);
    out.push(b'"');
}

/// Append bytes that may not be UTF-8 as a JSON string, invalid sequences
/// replaced by U+FFFD.
pub(crate) fn lossy_string_into(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        escape_into(out, chunk.valid());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        }
    }
    out.push(b'"');
}

/// Append a float; non-finite values, which JSON cannot carry, become strings.
pub(crate) fn f64_into(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let mut b = ryu::Buffer::new();
        out.extend_from_slice(b.format_finite(v).as_bytes());
    } else if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v > 0.0 {
        out.extend_from_slice(b"\"Infinity\"");
    } else {
        out.extend_from_slice(b"\"-Infinity\"");
    }
}

/// Append `micros` microseconds as milliseconds, a JSON number with up to
/// three decimals: 1430 µs is `1.43`, 2000 µs is `2.0` — what `f64_into`
/// writes for `micros as f64 / 1000.0` (for any duration under 285 years,
/// where f64 still holds every microsecond), without float formatting: it
/// is on every access line.
pub(crate) fn millis_into(out: &mut Vec<u8>, micros: u64) {
    int_into(out, micros / 1000);
    let frac = (micros % 1000) as u32;
    let digits = [
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ];
    // `2.0`, `1.5`, `1.43`, `1.431`: trailing zeros dropped, one kept.
    let len = if frac.is_multiple_of(100) {
        2
    } else if frac.is_multiple_of(10) {
        3
    } else {
        4
    };
    out.extend_from_slice(&digits[..len]);
}

/// Append an integer.
pub(crate) fn int_into(out: &mut Vec<u8>, v: impl itoa::Integer) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_read_as_the_float_would() {
        for micros in [
            0u64,
            1,
            10,
            100,
            999,
            1000,
            1430,
            1500,
            2000,
            12_345,
            1_000_001,
            987_654_321,
        ] {
            let mut ours = Vec::new();
            millis_into(&mut ours, micros);
            let mut float = Vec::new();
            f64_into(&mut float, micros as f64 / 1000.0);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(float).unwrap()
            );
        }
    }

    fn esc(s: &str) -> String {
        let mut v = Vec::new();
        string_into(&mut v, s);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn control_quotes_and_ansi_are_escaped() {
        assert_eq!(esc("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(esc("l1\r\nl2\t"), r#""l1\r\nl2\t""#);
        assert_eq!(esc("\u{1b}[31mred\u{7f}"), r#""\u001b[31mred\u007f""#);
        assert_eq!(esc("\0"), r#""\u0000""#);
        assert_eq!(esc("héllo ✓"), "\"héllo ✓\"");
    }

    #[test]
    fn c1_separators_and_bidi_controls_are_escaped_other_characters_kept() {
        assert_eq!(
            esc("a\u{85}b\u{9b}c\u{80}\u{9f}"),
            r#""a\u0085b\u009bc\u0080\u009f""#
        );
        assert_eq!(
            esc("\u{2028}\u{2029}\u{202a}\u{202e}"),
            r#""\u2028\u2029\u202a\u202e""#
        );
        assert_eq!(
            esc("\u{200e}\u{200f}\u{2066}\u{2069}"),
            r#""\u200e\u200f\u2066\u2069""#
        );
        // Neighbours of the escaped ranges, with the same lead bytes.
        let kept = "\u{a0}©é\u{2027}\u{202f}\u{2065}\u{206a}…€✓\u{2000}";
        assert_eq!(esc(kept), format!("\"{kept}\""));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut v = Vec::new();
        lossy_string_into(&mut v, b"ok\xff\xfe!");
        assert_eq!(String::from_utf8(v).unwrap(), "\"ok\u{FFFD}\u{FFFD}!\"");
    }

    #[test]
    fn non_finite_floats_stay_valid_json() {
        for (v, want) in [
            (1.5, "1.5"),
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"Infinity\""),
        ] {
            let mut out = Vec::new();
            f64_into(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}

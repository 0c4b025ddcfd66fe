//! U+0085 (NEL), U+009B (CSI) and the other C1 controls, the line and
//! paragraph separators U+2028/U+2029 and the bidirectional controls
//! (U+202E and friends) never appear raw in a line: they are written as
//! `\uXXXX` escapes, as docs/logging.md promises.

mod common;

use glimpse_obs::{Config, testing::SharedBuffer};

#[test]
fn c1_line_separator_and_bidi_controls_are_written_as_escapes() {
    let logs = SharedBuffer::new();
    let guard = Config::default()
        .metrics_addr(None)
        .log_writer(logs.clone())
        .init()
        .unwrap();
    let nasty = "a\u{85}b\u{9b}31mc\u{2028}d\u{2029}e\u{202e}f\u{2066}g\u{200f}h";
    tracing::info!(value = nasty, dbg = ?nasty, "msg {nasty}");
    guard.flush(std::time::Duration::from_secs(5));

    let text = logs.contents();
    for raw in [
        '\u{85}', '\u{9b}', '\u{2028}', '\u{2029}', '\u{202e}', '\u{2066}', '\u{200f}',
    ] {
        assert!(!text.contains(raw), "raw U+{:04X} in {text:?}", raw as u32);
    }
    for esc in [
        r"\u0085", r"\u009b", r"\u2028", r"\u2029", r"\u202e", r"\u2066", r"\u200f",
    ] {
        assert!(text.matches(esc).count() >= 2, "{esc} in value and message");
    }
    // Still the same string once parsed, and ordinary non-ASCII is untouched.
    let lines = common::strict_lines(&text);
    assert_eq!(lines[0]["value"], nasty);
    tracing::info!(value = "héllo ✓ … €", "plain");
    guard.flush(std::time::Duration::from_secs(5));
    assert!(logs.contents().contains("héllo ✓ … €"));
}

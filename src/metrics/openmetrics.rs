//! The OpenMetrics 1.0 exposition, for scrapers that ask for it: the
//! classic text transformed line by line, with exemplars on bucket lines.
//!
//! The classic text (the recorder's, then the series the crate renders
//! itself) stays the one source of truth; this pass renames counter
//! families (`foo_total` → family `foo`, samples unchanged), types untyped
//! families `unknown`, adds `# UNIT` for `_seconds` and `_bytes` families,
//! drops blank lines, appends the exemplar of each histogram bucket line
//! that has one and ends with `# EOF`. `_created` series are omitted, as
//! OpenMetrics allows, for every family alike.

use std::fmt::Write as _;

use super::exemplar::{Index, lookup};

/// The `Content-Type` of an OpenMetrics response.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics: one of its media ranges
/// is `application/openmetrics-text` with a quality above zero. Anything
/// else (no header, `text/plain`, `*/*`) gets the classic text.
pub(crate) fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let is_om = parts
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case("application/openmetrics-text"));
            is_om
                && parts.all(|p| {
                    let Some(q) = p.strip_prefix("q=") else {
                        return true;
                    };
                    q.parse::<f32>().map_or(true, |q| q > 0.0)
                })
        })
    })
}

/// What the current family's samples need.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Histogram,
    /// A counter whose samples lack `_total`: they get it.
    CounterWithoutTotal,
    Other,
}

/// `classic` as OpenMetrics; `global` are the label keys every series
/// carries (they are not part of an exemplar cell's key).
pub(crate) fn from_classic(classic: &str, exemplars: &Index, global: &[&str]) -> String {
    let mut out = String::with_capacity(classic.len() + classic.len() / 4 + 8);
    // The classic text puts HELP before TYPE; the family's OpenMetrics name
    // is known at TYPE, so the HELP text waits for it.
    let mut help: Option<(&str, &str)> = None;
    let mut kind = Kind::Other;
    let mut family = "";
    for line in classic.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take());
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (fam, om_type) = match ty {
                "counter" => match name.strip_suffix("_total") {
                    Some(f) => {
                        kind = Kind::Other;
                        (f, "counter")
                    }
                    None => {
                        kind = Kind::CounterWithoutTotal;
                        (name, "counter")
                    }
                },
                "histogram" => {
                    kind = Kind::Histogram;
                    (name, "histogram")
                }
                "gauge" | "summary" => {
                    kind = Kind::Other;
                    (name, ty)
                }
                _ => {
                    kind = Kind::Other;
                    (name, "unknown")
                }
            };
            family = name;
            let _ = writeln!(out, "# TYPE {fam} {om_type}");
            if let Some(unit) = unit_of(fam) {
                let _ = writeln!(out, "# UNIT {fam} {unit}");
            }
            match help.take() {
                Some((h, text)) if h == name => {
                    let _ = writeln!(out, "# HELP {fam} {}", escape_help(text));
                }
                other => flush_help(&mut out, other),
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        flush_help(&mut out, help.take());
        match kind {
            Kind::CounterWithoutTotal if line.starts_with(family) => {
                out.push_str(family);
                out.push_str("_total");
                out.push_str(&line[family.len()..]);
            }
            Kind::Histogram => {
                out.push_str(line);
                push_exemplar(&mut out, line, family, exemplars, global);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    flush_help(&mut out, help);
    out.push_str("# EOF\n");
    out
}

/// A HELP line whose TYPE never came: the family is `unknown`.
fn flush_help(out: &mut String, help: Option<(&str, &str)>) {
    if let Some((name, text)) = help {
        let _ = writeln!(out, "# TYPE {name} unknown");
        let _ = writeln!(out, "# HELP {name} {}", escape_help(text));
    }
}

/// The classic format escapes `\` and line feeds in HELP; OpenMetrics
/// also escapes `"`.
fn escape_help(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('"') {
        text.replace('"', "\\\"").into()
    } else {
        text.into()
    }
}

/// The unit a family's name ends with, for `# UNIT`.
fn unit_of(family: &str) -> Option<&'static str> {
    if family.ends_with("_seconds") {
        Some("seconds")
    } else if family.ends_with("_bytes") {
        Some("bytes")
    } else {
        None
    }
}

/// ` # {trace_id="…",span_id="…"} value timestamp` when `line` is a bucket
/// line of `family` whose bucket holds an exemplar.
fn push_exemplar(out: &mut String, line: &str, family: &str, exemplars: &Index, global: &[&str]) {
    let Some(rest) = line.strip_prefix(family) else {
        return;
    };
    let Some(labels) = rest.strip_prefix("_bucket{") else {
        return;
    };
    let Some(end) = labels.rfind("} ") else {
        return;
    };
    if let Some(e) = lookup(exemplars, family, &labels[..end], global) {
        let _ = write!(
            out,
            " # {{trace_id=\"{:032x}\",span_id=\"{:016x}\"}} {}",
            e.trace_id, e.span_id, e.value
        );
        if let Some(t) = e.timestamp {
            let _ = write!(out, " {t:.3}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_accept_naming_openmetrics_gets_it() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wanted(Some(prometheus)));
        assert!(wanted(Some("application/openmetrics-text; version=1.0.0")));
        assert!(!wanted(Some("text/plain; version=0.0.4")));
        assert!(!wanted(Some("*/*")));
        assert!(!wanted(None));
        assert!(!wanted(Some("application/openmetrics-text;q=0")));
    }

    #[test]
    fn counters_lose_total_in_their_family_name_and_the_text_ends_with_eof() {
        let classic = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n\n\
                       # TYPE b counter\nb 1\n\n# TYPE c_seconds gauge\nc_seconds 2\n";
        assert_eq!(
            from_classic(classic, &Index::default(), &[]),
            "# TYPE a counter\n# HELP a Things.\na_total{x=\"1\"} 3\n\
             # TYPE b counter\nb_total 1\n\
             # TYPE c_seconds gauge\n# UNIT c_seconds seconds\nc_seconds 2\n# EOF\n"
        );
    }
}

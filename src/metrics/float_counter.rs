//! Prometheus counters with float values, for revenue in major currency units.
//!
//! The `metrics` facade's counters are `u64`: they cannot add 12.99. A gauge
//! that only grows would do the arithmetic, but `promtool check metrics`
//! rejects a `_total` name on anything but a counter. A [`FloatFamily`]
//! keeps one `f64` per label value (its bits in an `AtomicU64`, added with
//! compare-and-swap) and renders itself as a counter into the scrape text
//! ([`super::exporter::render`]), with the same global labels as the
//! recorder's series.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// One series of a [`FloatFamily`]; cloning shares the value.
#[derive(Clone, Debug)]
pub(crate) struct FloatCounter(Arc<AtomicU64>);

impl FloatCounter {
    /// A counter no family renders (before `init`, like the facade's no-op
    /// handles).
    fn detached() -> Self {
        Self(Arc::new(AtomicU64::new(0f64.to_bits())))
    }

    /// Add `v`; negative, NaN and zero amounts are ignored, since a counter
    /// never decreases.
    #[inline]
    pub(crate) fn increment(&self, v: f64) {
        if v.is_nan() || v <= 0.0 {
            return;
        }
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A float counter metric with one caller-fed label. Callers cap the label
/// values (the cardinality guard) before asking for a series.
pub(crate) struct FloatFamily {
    name: &'static str,
    label: &'static str,
    help: &'static str,
    series: Mutex<BTreeMap<Box<str>, FloatCounter>>,
}

impl FloatFamily {
    pub(crate) const fn new(name: &'static str, label: &'static str, help: &'static str) -> Self {
        Self {
            name,
            label,
            help,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// The series of `value`, created at 0 on first use. Resolve once and
    /// keep the handle: this takes a lock.
    pub(crate) fn counter(&self, value: &str) -> FloatCounter {
        if !super::handles::ready() {
            return FloatCounter::detached();
        }
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = series.get(value) {
            return c.clone();
        }
        let c = FloatCounter::detached();
        series.insert(value.into(), c.clone());
        c
    }

    /// Append `# HELP`, `# TYPE … counter` and one line per series to `out`;
    /// `global_labels` is the pre-escaped `service="…",env="…"` run (may be
    /// empty). Nothing when the family has no series yet, as for the
    /// recorder's metrics.
    pub(crate) fn render(&self, global_labels: &str, out: &mut String) {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if series.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        for (value, c) in series.iter() {
            out.push_str(self.name);
            out.push('{');
            if !global_labels.is_empty() {
                out.push_str(global_labels);
                out.push(',');
            }
            out.push_str(self.label);
            out.push_str("=\"");
            escape_label_value(value, out);
            out.push_str("\"} ");
            push_value(c.get(), out);
            out.push('\n');
        }
        out.push('\n');
    }
}

/// A label value escaped as the text exposition format requires: backslash,
/// double quote and line feed.
pub(crate) fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value as Prometheus parses it (`+Inf`, not Rust's `inf`).
fn push_value(v: f64, out: &mut String) {
    if v.is_finite() {
        out.push_str(ryu::Buffer::new().format_finite(v));
    } else if v.is_nan() {
        out.push_str("NaN");
    } else if v > 0.0 {
        out.push_str("+Inf");
    } else {
        out.push_str("-Inf");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_add_floats_and_ignore_what_a_counter_cannot_do() {
        let c = FloatCounter::detached();
        c.increment(12.99);
        c.increment(0.01);
        c.increment(-5.0);
        c.increment(f64::NAN);
        assert!((c.get() - 13.0).abs() < 1e-9, "{}", c.get());
    }

    #[test]
    fn concurrent_increments_are_not_lost() {
        let c = FloatCounter::detached();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        c.increment(1.0);
                    }
                });
            }
        });
        assert_eq!(c.get(), 40_000.0);
    }

    #[test]
    fn label_values_are_escaped_for_the_text_format() {
        let mut out = String::new();
        escape_label_value("a\\b\"c\nd€", &mut out);
        assert_eq!(out, r#"a\\b\"c\nd€"#);
    }

    #[test]
    fn values_render_as_prometheus_parses_them() {
        let render = |v| {
            let mut s = String::new();
            push_value(v, &mut s);
            s
        };
        assert_eq!(render(12.99), "12.99");
        assert_eq!(render(1299.0), "1299.0");
        assert_eq!(render(f64::INFINITY), "+Inf");
    }

    #[test]
    fn a_family_renders_help_type_and_one_line_per_series() {
        let family = FloatFamily::new("x_total", "currency", "Help text.");
        let mut series = family.series.lock().unwrap();
        let eur = FloatCounter::detached();
        eur.increment(1.5);
        series.insert("EUR".into(), eur);
        series.insert("a\"b".into(), FloatCounter::detached());
        drop(series);
        let mut out = String::new();
        family.render(r#"service="s",env="dev""#, &mut out);
        assert_eq!(
            out,
            "# HELP x_total Help text.\n# TYPE x_total counter\n\
             x_total{service=\"s\",env=\"dev\",currency=\"EUR\"} 1.5\n\
             x_total{service=\"s\",env=\"dev\",currency=\"a\\\"b\"} 0.0\n\n"
        );
        let mut empty = String::new();
        FloatFamily::new("y_total", "currency", "h").render("", &mut empty);
        assert_eq!(empty, "");
    }
}

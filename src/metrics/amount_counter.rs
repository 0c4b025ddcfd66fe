//! Money counters: revenue kept exactly as an integer and rendered in major
//! currency units.
//!
//! The `metrics` facade's counters are `u64`: they cannot add 12.99, and a
//! gauge that only grows would do the arithmetic but `promtool check
//! metrics` rejects a `_total` name on anything but a counter. An
//! [`AmountFamily`] keeps one integer per currency — the sum of the amounts
//! in ten-thousandths of a major unit ([`UNITS_PER_MAJOR`]: every ISO 4217
//! minor unit is a whole number of them, and `other`, which gathers
//! currencies past the label cap, can sum any of them), added with one
//! `fetch_add` — and renders itself as a counter in major units into the
//! scrape text ([`super::exporter::render`]), with the same global labels
//! as the recorder's series. Summing integers is exact (a float sum of 0.01s
//! drifts: 0.1 + 0.2 is not 0.3) and costs no division or compare-and-swap
//! on the payment path.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// Ten-thousandths of a major unit: the unit the counters sum in.
pub(crate) const UNITS_PER_MAJOR: u64 = 10_000;

/// One series of an [`AmountFamily`]; cloning shares the value.
#[derive(Clone, Debug)]
pub(crate) struct AmountCounter(Arc<AtomicU64>);

impl AmountCounter {
    /// A counter no family renders (before `init`, like the facade's no-op
    /// handles).
    fn detached() -> Self {
        Self(Arc::new(AtomicU64::new(0)))
    }

    /// Add `units` ten-thousandths of a major unit; `false`, adding
    /// nothing, when the total would pass `u64::MAX` of them (1.8e15 major
    /// units): a counter that wrapped would read as revenue going down (a
    /// counter reset for Prometheus). A compare-and-swap rather than a
    /// `fetch_add` for that check; payments are few, and it is uncontended.
    #[inline]
    #[must_use]
    pub(crate) fn increment(&self, units: u64) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                v.checked_add(units)
            })
            .is_ok()
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A money counter metric labelled by currency. Callers cap the currency
/// values (the cardinality guard) before asking for a series.
pub(crate) struct AmountFamily {
    name: &'static str,
    label: &'static str,
    help: &'static str,
    series: Mutex<BTreeMap<Box<str>, AmountCounter>>,
}

impl AmountFamily {
    pub(crate) const fn new(name: &'static str, label: &'static str, help: &'static str) -> Self {
        Self {
            name,
            label,
            help,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// The series of `currency`, created at 0 on first use. Resolve once
    /// and keep the handle: this takes a lock.
    pub(crate) fn counter(&self, currency: &str) -> AmountCounter {
        if !super::handles::ready() {
            return AmountCounter::detached();
        }
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = series.get(currency) {
            return c.clone();
        }
        let c = AmountCounter::detached();
        series.insert(currency.into(), c.clone());
        c
    }

    /// Append `# HELP`, `# TYPE … counter` and one line per currency, in
    /// major units, to `out`;
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
        for (currency, c) in series.iter() {
            out.push_str(self.name);
            out.push('{');
            if !global_labels.is_empty() {
                out.push_str(global_labels);
                out.push(',');
            }
            out.push_str(self.label);
            out.push_str("=\"");
            escape_label_value(currency, out);
            out.push_str("\"} ");
            push_value(c.get() as f64 / UNITS_PER_MAJOR as f64, out);
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
pub(super) fn push_value(v: f64, out: &mut String) {
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
    fn increments_sum_minor_units_exactly() {
        let c = AmountCounter::detached();
        // Ten 0.1s and a 0.2: a float sum would drift (0.1 + 0.2 != 0.3).
        for _ in 0..10 {
            assert!(c.increment(10));
        }
        assert!(c.increment(20));
        assert!(c.increment(0));
        assert_eq!(c.get(), 120);
    }

    #[test]
    fn an_increment_past_the_top_is_refused_and_the_total_kept() {
        let c = AmountCounter::detached();
        assert!(c.increment(u64::MAX - 10));
        assert!(!c.increment(11));
        assert_eq!(c.get(), u64::MAX - 10, "never wraps");
        assert!(c.increment(10));
        assert_eq!(c.get(), u64::MAX);
    }

    #[test]
    fn concurrent_increments_are_not_lost() {
        let c = AmountCounter::detached();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        assert!(c.increment(1));
                    }
                });
            }
        });
        assert_eq!(c.get(), 40_000);
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
    fn a_family_renders_help_type_and_one_line_per_series_in_major_units() {
        let family = AmountFamily::new("x_total", "currency", "Help text.");
        let mut series = family.series.lock().unwrap();
        let eur = AmountCounter::detached();
        assert!(eur.increment(15_000));
        series.insert("EUR".into(), eur);
        let jpy = AmountCounter::detached();
        assert!(jpy.increment(1299 * UNITS_PER_MAJOR));
        series.insert("JPY".into(), jpy);
        let cents = AmountCounter::detached();
        for _ in 0..3 {
            assert!(cents.increment(100));
        }
        series.insert("USD".into(), cents);
        series.insert("a\"b".into(), AmountCounter::detached());
        drop(series);
        let mut out = String::new();
        family.render(r#"service="s",env="dev""#, &mut out);
        assert_eq!(
            out,
            "# HELP x_total Help text.\n# TYPE x_total counter\n\
             x_total{service=\"s\",env=\"dev\",currency=\"EUR\"} 1.5\n\
             x_total{service=\"s\",env=\"dev\",currency=\"JPY\"} 1299.0\n\
             x_total{service=\"s\",env=\"dev\",currency=\"USD\"} 0.03\n\
             x_total{service=\"s\",env=\"dev\",currency=\"a\\\"b\"} 0.0\n\n"
        );
        let mut empty = String::new();
        AmountFamily::new("y_total", "currency", "h").render("", &mut empty);
        assert_eq!(empty, "");
    }
}

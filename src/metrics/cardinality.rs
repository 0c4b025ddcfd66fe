//! The cardinality guard for caller-fed label values.
//!
//! Each guarded metric admits at most `cap` distinct values (the `label_cap`
//! setting, default 100); later values are recorded as `other` and counted in
//! `glimpse_obs_label_overflow_total{metric}`. Three kinds of value never
//! take a slot: values registered as known for the metric
//! (`Config::known_label_values`: always themselves), values longer than
//! `label_value_max_len` (always `other`, like Prometheus'
//! `label_value_length_limit`) and values a label's own check refuses
//! (currencies that are not ISO 4217 codes: always `other`).
//!
//! All of this runs on the slow path only: an admitted value's handles are
//! cached by the helper (`handles.rs`), so the checks cost nothing per call.

use std::{
    borrow::Cow,
    collections::HashSet,
    sync::{LazyLock, OnceLock, RwLock},
};

use super::names;

/// The value that replaces labels past the cap.
pub const OVERFLOW_VALUE: &str = "other";

/// Admits label values for one metric up to the cap.
#[derive(Debug)]
pub(crate) struct LabelGuard {
    metric: &'static str,
    /// Values this refuses become `other` without taking a slot.
    accepts: Option<fn(&str) -> bool>,
    seen: LazyLock<RwLock<HashSet<Box<str>>>>,
    overflow: OnceLock<metrics::Counter>,
}

impl LabelGuard {
    pub(crate) const fn new(metric: &'static str) -> Self {
        Self::with_check(metric, None)
    }

    /// A guard whose values must also pass `accepts`.
    pub(crate) const fn with_check(
        metric: &'static str,
        accepts: Option<fn(&str) -> bool>,
    ) -> Self {
        Self {
            metric,
            accepts,
            seen: LazyLock::new(|| RwLock::new(HashSet::new())),
            overflow: OnceLock::new(),
        }
    }

    /// The metric this guard caps.
    pub(crate) fn metric(&self) -> &'static str {
        self.metric
    }

    /// `value` itself while the metric is under its cap (or the value is
    /// known), else `"other"`. A pair of values (`a` U+001F `b`) is known
    /// when both are, and too long when either is.
    pub(crate) fn admit<'a>(&self, value: &'a str) -> Cow<'a, str> {
        let settings = crate::metrics::limits::current();
        let mut parts = value.split('\u{1f}');
        if let Some(known) = settings.known_labels.get(self.metric)
            && parts.clone().all(|p| known.contains(p))
        {
            return Cow::Borrowed(value);
        }
        if parts.any(|p| p.len() > settings.label_value_max_len)
            || self.accepts.is_some_and(|accepts| !accepts(value))
        {
            return self.overflow();
        }
        if self
            .seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(value)
        {
            return Cow::Borrowed(value);
        }
        let cap = settings.label_cap;
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            return Cow::Borrowed(value);
        }
        if seen.len() < cap {
            seen.insert(value.into());
            return Cow::Borrowed(value);
        }
        drop(seen);
        self.overflow()
    }

    fn overflow<'a>(&self) -> Cow<'a, str> {
        self.overflow
            .get_or_init(
                || metrics::counter!(names::LABEL_OVERFLOW, names::labels::METRIC => self.metric),
            )
            .increment(1);
        Cow::Borrowed(OVERFLOW_VALUE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_the_cap_become_other() {
        let guard = LabelGuard::new("test_metric");
        let cap = crate::metrics::limits::current().label_cap;
        for i in 0..cap {
            assert_eq!(guard.admit(&format!("v{i}")), format!("v{i}"));
        }
        assert_eq!(guard.admit("v0"), "v0", "known values stay");
        assert_eq!(guard.admit("new"), OVERFLOW_VALUE);
    }

    #[test]
    fn over_long_and_refused_values_become_other_without_a_slot() {
        let guard = LabelGuard::with_check("test_checked", Some(|v| v.len() == 3));
        let max = crate::metrics::limits::current().label_value_max_len;
        assert_eq!(guard.admit(&"x".repeat(max + 1)), OVERFLOW_VALUE);
        assert_eq!(guard.admit("toolong"), OVERFLOW_VALUE);
        assert_eq!(guard.admit("abc"), "abc");
        assert_eq!(guard.seen.read().unwrap().len(), 1, "only abc took a slot");
    }
}

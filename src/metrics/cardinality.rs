//! The cardinality guard for caller-fed label values.
//!
//! Each guarded metric admits at most `cap` distinct values (the `label_cap`
//! setting, default 100); later values are recorded as `other` and counted in
//! `glimpse_obs_label_overflow_total{metric}`.

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
    seen: LazyLock<RwLock<HashSet<Box<str>>>>,
    overflow: OnceLock<metrics::Counter>,
}

impl LabelGuard {
    pub(crate) const fn new(metric: &'static str) -> Self {
        Self {
            metric,
            seen: LazyLock::new(|| RwLock::new(HashSet::new())),
            overflow: OnceLock::new(),
        }
    }

    /// `value` itself while the metric is under its cap (or the value is
    /// known), else `"other"`.
    pub(crate) fn admit<'a>(&self, value: &'a str) -> Cow<'a, str> {
        if self
            .seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(value)
        {
            return Cow::Borrowed(value);
        }
        let cap = super::limits::label_cap();
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            return Cow::Borrowed(value);
        }
        if seen.len() < cap {
            seen.insert(value.into());
            return Cow::Borrowed(value);
        }
        drop(seen);
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
        let cap = crate::metrics::limits::label_cap();
        for i in 0..cap {
            assert_eq!(guard.admit(&format!("v{i}")), format!("v{i}"));
        }
        assert_eq!(guard.admit("v0"), "v0", "known values stay");
        assert_eq!(guard.admit("new"), OVERFLOW_VALUE);
    }
}

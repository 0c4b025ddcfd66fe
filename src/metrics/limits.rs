//! The limits the domain helpers apply: the cardinality cap per label and
//! the slow-query threshold.
//!
//! The helpers are free functions (`business::payment_processed(..)`), so
//! they cannot be handed a configuration; they read these two values, which
//! only the facade (`install()`) sets, from the configuration it installs.
//! Until then (and in a process that composes the parts without installing
//! them) the documented defaults apply. Two atomics, read with relaxed
//! ordering on the helpers' slow paths only.

use std::{
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};

use crate::config::{DEFAULT_LABEL_CAP, DEFAULT_SLOW_QUERY};

static LABEL_CAP: AtomicUsize = AtomicUsize::new(DEFAULT_LABEL_CAP);
static SLOW_QUERY_MICROS: AtomicU64 = AtomicU64::new(DEFAULT_SLOW_QUERY.as_micros() as u64);

/// The cardinality cap per label.
pub(crate) fn label_cap() -> usize {
    LABEL_CAP.load(Ordering::Relaxed)
}

/// The slow-query threshold.
pub(crate) fn slow_query() -> Duration {
    Duration::from_micros(SLOW_QUERY_MICROS.load(Ordering::Relaxed))
}

/// Apply the installed configuration's limits; called by `install()` only.
pub(crate) fn set(label_cap: usize, slow_query: Duration) {
    LABEL_CAP.store(label_cap, Ordering::Relaxed);
    SLOW_QUERY_MICROS.store(
        u64::try_from(slow_query.as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

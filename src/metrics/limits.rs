//! The limits the domain helpers and the cardinality guard apply: the cap
//! per label, the longest label value, the values a team registered as
//! known, and the slow-query threshold.
//!
//! The helpers are free functions (`business::payment_processed(..)`), so
//! they cannot be handed a configuration; they read these values, which only
//! the facade (`install()`/`install_recorder()`) sets, from the
//! configuration it installs. Until then (and in a process that composes the
//! parts without installing the recorder) the documented defaults apply.
//! Read on the guard's slow path only (first sight of a value, a handle
//! table being sized), never per cached increment.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, LazyLock, RwLock},
    time::Duration,
};

use crate::config::{Config, DEFAULT_LABEL_CAP, DEFAULT_SLOW_QUERY};

/// The limits in force.
#[derive(Debug)]
pub(crate) struct Limits {
    /// Distinct values one label keeps before the rest become `other`.
    pub(crate) label_cap: usize,
    /// Longer label values become `other` (Prometheus'
    /// `label_value_length_limit`).
    pub(crate) label_value_max_len: usize,
    /// Label values per metric that never overflow and take no slot.
    pub(crate) known_labels: Arc<HashMap<String, HashSet<Box<str>>>>,
    /// Queries slower than this count in `db_slow_queries_total` and log WARN.
    pub(crate) slow_query: Duration,
}

static LIMITS: LazyLock<RwLock<Arc<Limits>>> = LazyLock::new(|| {
    RwLock::new(Arc::new(Limits {
        label_cap: DEFAULT_LABEL_CAP,
        label_value_max_len: crate::config::DEFAULT_LABEL_VALUE_MAX_LEN,
        known_labels: Arc::default(),
        slow_query: DEFAULT_SLOW_QUERY,
    }))
});

/// The limits in force.
pub(crate) fn current() -> Arc<Limits> {
    LIMITS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The slow-query threshold.
pub(crate) fn slow_query() -> Duration {
    current().slow_query
}

impl Limits {
    /// The limits `config` asks for.
    pub(crate) fn of(config: &Config) -> Self {
        Self {
            label_cap: config.label_cap,
            label_value_max_len: config.label_value_max_len,
            known_labels: Arc::new(config.known_labels.clone()),
            slow_query: config.slow_query,
        }
    }
}

/// Apply the installed configuration's limits; called by the facade only.
pub(crate) fn set(limits: Arc<Limits>) {
    *LIMITS.write().unwrap_or_else(|e| e.into_inner()) = limits;
}

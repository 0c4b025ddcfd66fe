//! A service's own metrics, done right: HELP text and unit registered, the
//! cardinality guard on every label, names checked.
//!
//! A bare `metrics::counter!("orders_total", "channel" => channel)` appears
//! on `/metrics` without `# HELP` and with as many series as callers invent
//! channel values. [`Custom`] registers the description and unit, and
//! passes each label value through the same guard as the crate's own
//! caller-fed labels: past `label_cap` distinct values (100 by default) a
//! value is recorded as `other` and counted in
//! `glimpse_obs_label_overflow_total{metric}`.
//!
//! ```
//! use glimpse_obs::metrics::Custom;
//!
//! # fn main() -> Result<(), glimpse_obs::Error> {
//! let guard = glimpse_obs::Config::default()
//!     .metrics_addr(None)
//!     .log_writer(std::io::sink())
//!     .init()?;
//! // Once, at start-up (after `init`): keep the handles.
//! let orders = Custom::counter("shop_orders_total", "Orders placed, by sales channel.")
//!     .label("channel")
//!     .register()?;
//! let basket = Custom::histogram("shop_basket_size_items", "Items per order.")
//!     .unit(metrics::Unit::Count)
//!     .register()?;
//!
//! // On the request path.
//! orders.increment(&["web"], 1);
//! basket.record(&[], 3.0);
//!
//! let text = guard.render_metrics();
//! assert!(text.contains("# HELP shop_orders_total Orders placed, by sales channel."));
//! assert!(text.contains("shop_orders_total{service="));
//! # Ok(()) }
//! ```
//!
//! Values are matched to the labels in the order the labels were named;
//! a missing value is recorded as an empty string, extra values are
//! ignored. Each call resolves its series (a registry look-up, a few
//! hundred nanoseconds); on a hot path keep the handle of a known series
//! from `.handle(&[..])`.

use std::{
    borrow::Cow,
    marker::PhantomData,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use metrics::{Label, Unit};

use super::{cardinality::LabelGuard, names};
use crate::Error;

mod sealed {
    pub trait Sealed {}
}

/// The kind of a custom metric: [`CounterKind`], [`GaugeKind`] or
/// [`HistogramKind`]. Sealed.
pub trait Kind: sealed::Sealed {
    /// The handle [`Custom::register`] returns.
    type Metric;
    #[doc(hidden)]
    fn describe(name: &'static str, unit: Option<Unit>, help: &'static str);
    #[doc(hidden)]
    fn wrap(spec: Arc<Spec>) -> Self::Metric;
    #[doc(hidden)]
    fn check_name(name: &str) -> Result<(), String>;
}

/// Marker of [`Custom::counter`].
#[derive(Debug)]
pub enum CounterKind {}
/// Marker of [`Custom::gauge`].
#[derive(Debug)]
pub enum GaugeKind {}
/// Marker of [`Custom::histogram`].
#[derive(Debug)]
pub enum HistogramKind {}

impl sealed::Sealed for CounterKind {}
impl sealed::Sealed for GaugeKind {}
impl sealed::Sealed for HistogramKind {}

impl Kind for CounterKind {
    type Metric = CustomCounter;
    fn describe(name: &'static str, unit: Option<Unit>, help: &'static str) {
        match unit {
            Some(u) => metrics::describe_counter!(name, u, help),
            None => metrics::describe_counter!(name, help),
        }
    }
    fn wrap(spec: Arc<Spec>) -> CustomCounter {
        CustomCounter(spec)
    }
    fn check_name(name: &str) -> Result<(), String> {
        if name.ends_with("_total") {
            Ok(())
        } else {
            Err(format!(
                "counter {name:?} must end in _total (Prometheus convention), e.g. {name}_total"
            ))
        }
    }
}

impl Kind for GaugeKind {
    type Metric = CustomGauge;
    fn describe(name: &'static str, unit: Option<Unit>, help: &'static str) {
        match unit {
            Some(u) => metrics::describe_gauge!(name, u, help),
            None => metrics::describe_gauge!(name, help),
        }
    }
    fn wrap(spec: Arc<Spec>) -> CustomGauge {
        CustomGauge(spec)
    }
    fn check_name(name: &str) -> Result<(), String> {
        if name.ends_with("_total") {
            Err(format!(
                "gauge {name:?} must not end in _total, which marks counters"
            ))
        } else {
            Ok(())
        }
    }
}

impl Kind for HistogramKind {
    type Metric = CustomHistogram;
    fn describe(name: &'static str, unit: Option<Unit>, help: &'static str) {
        match unit {
            Some(u) => metrics::describe_histogram!(name, u, help),
            None => metrics::describe_histogram!(name, help),
        }
    }
    fn wrap(spec: Arc<Spec>) -> CustomHistogram {
        CustomHistogram(spec)
    }
    fn check_name(name: &str) -> Result<(), String> {
        GaugeKind::check_name(name)
    }
}

/// The builder of a custom metric: name and HELP text, then an optional
/// unit and the labels. Finish with [`Custom::register`].
///
/// ```
/// use glimpse_obs::metrics::Custom;
///
/// let jobs = Custom::gauge("shop_jobs_queued", "Background jobs waiting, by queue.")
///     .unit(metrics::Unit::Count)
///     .label("queue")
///     .register()?;
/// jobs.set(&["emails"], 4.0);
/// # Ok::<(), glimpse_obs::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "a custom metric is only described once registered"]
pub struct Custom<K: Kind> {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    labels: Vec<&'static str>,
    kind: PhantomData<K>,
}

impl Custom<CounterKind> {
    /// A counter; its name must end in `_total`.
    ///
    /// ```
    /// let c = glimpse_obs::metrics::Custom::counter("shop_refunds_total", "Refunds issued.");
    /// ```
    pub fn counter(name: &'static str, help: &'static str) -> Self {
        Self::new(name, help)
    }
}

impl Custom<GaugeKind> {
    /// A gauge.
    ///
    /// ```
    /// let g = glimpse_obs::metrics::Custom::gauge("shop_carts_open", "Open carts.");
    /// ```
    pub fn gauge(name: &'static str, help: &'static str) -> Self {
        Self::new(name, help)
    }
}

impl Custom<HistogramKind> {
    /// A histogram, with the crate's latency buckets
    /// ([`LATENCY_BUCKETS`](super::LATENCY_BUCKETS)); name durations
    /// `…_seconds` and record seconds.
    ///
    /// ```
    /// let h = glimpse_obs::metrics::Custom::histogram("shop_checkout_seconds", "Checkout duration.");
    /// ```
    pub fn histogram(name: &'static str, help: &'static str) -> Self {
        Self::new(name, help)
    }
}

impl<K: Kind> Custom<K> {
    fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            unit: None,
            labels: Vec::new(),
            kind: PhantomData,
        }
    }

    /// The unit, carried with the HELP text. Defaults to none.
    ///
    /// ```
    /// let h = glimpse_obs::metrics::Custom::histogram("shop_checkout_seconds", "Checkout duration.")
    ///     .unit(metrics::Unit::Seconds);
    /// ```
    pub fn unit(mut self, unit: Unit) -> Self {
        self.unit = Some(unit);
        self
    }

    /// A label fed by callers; its values pass the cardinality guard
    /// (`label_cap` distinct values, then `other`). Defaults to no labels.
    ///
    /// ```
    /// let c = glimpse_obs::metrics::Custom::counter("shop_orders_total", "Orders.")
    ///     .label("channel")
    ///     .label("country");
    /// ```
    pub fn label(mut self, key: &'static str) -> Self {
        self.labels.push(key);
        self
    }

    /// Check the name and labels, describe the metric (HELP and unit) and
    /// return its handle. Register after `init()`; registered before, the
    /// description is sent at the first record after `init()`.
    ///
    /// ```
    /// let bad = glimpse_obs::metrics::Custom::counter("shop_orders", "Orders.").register();
    /// assert!(bad.unwrap_err().to_string().contains("_total"));
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the name is not a valid Prometheus
    /// name, breaks the kind's suffix convention, is one of the crate's own
    /// metrics, or a label key is invalid, reserved (`service`, `env`, `le`)
    /// or repeated.
    pub fn register(self) -> Result<K::Metric, Error> {
        let bad = |reason: String| Error::InvalidConfig {
            name: "custom metric",
            reason,
        };
        if !is_valid_name(self.name) {
            return Err(bad(format!(
                "{:?} is not a Prometheus metric name: use [a-zA-Z_:][a-zA-Z0-9_:]*",
                self.name
            )));
        }
        if names::ALL.contains(&self.name) || names::PROCESS.contains(&self.name) {
            return Err(bad(format!(
                "{:?} is a glimpse_obs metric: choose a name of your own, e.g. with your service's prefix",
                self.name
            )));
        }
        K::check_name(self.name).map_err(bad)?;
        for (i, key) in self.labels.iter().enumerate() {
            if !is_valid_name(key) || key.contains(':') || key.starts_with("__") {
                return Err(bad(format!("{key:?} is not a Prometheus label name")));
            }
            if [names::labels::SERVICE, names::labels::ENV, "le", "quantile"].contains(key) {
                return Err(bad(format!(
                    "label {key:?} of {:?} is reserved (global label or histogram bucket)",
                    self.name
                )));
            }
            if self.labels[..i].contains(key) {
                return Err(bad(format!(
                    "label {key:?} of {:?} is named twice",
                    self.name
                )));
            }
        }
        let spec = Arc::new(Spec {
            name: self.name,
            help: self.help,
            unit: self.unit,
            guards: self
                .labels
                .iter()
                .map(|k| (*k, LabelGuard::new(self.name)))
                .collect(),
            described: AtomicBool::new(false),
            describe: K::describe,
        });
        spec.describe_once();
        Ok(K::wrap(spec))
    }
}

fn is_valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A registered custom metric's name, labels and guards.
#[doc(hidden)]
pub struct Spec {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    guards: Box<[(&'static str, LabelGuard)]>,
    described: AtomicBool,
    describe: fn(&'static str, Option<Unit>, &'static str),
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("name", &self.name)
            .field(
                "labels",
                &self.guards.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Spec {
    /// Describe once the recorder is installed (a description sent before
    /// `init` reaches no recorder).
    fn describe_once(&self) {
        if !self.described.load(Ordering::Relaxed)
            && super::handles::ready()
            && !self.described.swap(true, Ordering::Relaxed)
        {
            (self.describe)(self.name, self.unit, self.help);
        }
    }

    fn labels(&self, values: &[&str]) -> Vec<Label> {
        self.describe_once();
        self.guards
            .iter()
            .enumerate()
            .map(|(i, (key, guard))| {
                let value = values.get(i).copied().unwrap_or("");
                let admitted: Cow<'_, str> = guard.admit(value);
                Label::new(*key, admitted.into_owned())
            })
            .collect()
    }
}

/// A registered custom counter.
///
/// ```
/// let refunds = glimpse_obs::metrics::Custom::counter("shop_refunds_total", "Refunds, by reason.")
///     .label("reason")
///     .register()?;
/// refunds.increment(&["damaged"], 1);
/// # Ok::<(), glimpse_obs::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CustomCounter(Arc<Spec>);

impl CustomCounter {
    /// Add `by` to the series of these label values.
    ///
    /// ```
    /// # let c = glimpse_obs::metrics::Custom::counter("a_total", "A.").label("k").register()?;
    /// c.increment(&["v"], 2);
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn increment(&self, values: &[&str], by: u64) {
        self.handle(values).increment(by);
    }

    /// The series of these label values, to keep on a hot path.
    ///
    /// ```
    /// # let c = glimpse_obs::metrics::Custom::counter("b_total", "B.").label("k").register()?;
    /// let web = c.handle(&["web"]);
    /// web.increment(1);
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn handle(&self, values: &[&str]) -> metrics::Counter {
        metrics::counter!(self.0.name, self.0.labels(values))
    }
}

/// A registered custom gauge.
///
/// ```
/// let carts = glimpse_obs::metrics::Custom::gauge("shop_carts_open", "Open carts.").register()?;
/// carts.set(&[], 12.0);
/// # Ok::<(), glimpse_obs::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CustomGauge(Arc<Spec>);

impl CustomGauge {
    /// Set the series of these label values.
    ///
    /// ```
    /// # let g = glimpse_obs::metrics::Custom::gauge("c_items", "C.").register()?;
    /// g.set(&[], 1.5);
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn set(&self, values: &[&str], value: f64) {
        self.handle(values).set(value);
    }

    /// Add `by` (negative to subtract) to the series of these label values.
    ///
    /// ```
    /// # let g = glimpse_obs::metrics::Custom::gauge("d_items", "D.").register()?;
    /// g.add(&[], 1.0);
    /// g.add(&[], -1.0);
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn add(&self, values: &[&str], by: f64) {
        self.handle(values).increment(by);
    }

    /// The series of these label values, to keep on a hot path.
    ///
    /// ```
    /// # let g = glimpse_obs::metrics::Custom::gauge("e_items", "E.").register()?;
    /// let total = g.handle(&[]);
    /// total.set(3.0);
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn handle(&self, values: &[&str]) -> metrics::Gauge {
        metrics::gauge!(self.0.name, self.0.labels(values))
    }
}

/// A registered custom histogram.
///
/// ```
/// let checkout = glimpse_obs::metrics::Custom::histogram("shop_checkout_seconds", "Checkout duration.")
///     .unit(metrics::Unit::Seconds)
///     .register()?;
/// checkout.record(&[], 0.42);
/// # Ok::<(), glimpse_obs::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CustomHistogram(Arc<Spec>);

impl CustomHistogram {
    /// Record `value` in the series of these label values.
    ///
    /// ```
    /// # let h = glimpse_obs::metrics::Custom::histogram("f_seconds", "F.").register()?;
    /// h.record(&[], 0.1);
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn record(&self, values: &[&str], value: f64) {
        self.handle(values).record(value);
    }

    /// The series of these label values, to keep on a hot path.
    ///
    /// ```
    /// # let h = glimpse_obs::metrics::Custom::histogram("g_seconds", "G.").register()?;
    /// let series = h.handle(&[]);
    /// series.record(0.2);
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    pub fn handle(&self, values: &[&str]) -> metrics::Histogram {
        metrics::histogram!(self.0.name, self.0.labels(values))
    }
}

//! Exemplars: per histogram bucket, the most recent sampled observation with
//! its trace and span ID, for the OpenMetrics exposition.
//!
//! A series' [`Exemplars`] lives beside its cached histogram handle (a
//! route's entry per status, the `db` and `ws` helpers' handle sets) and is
//! registered once with the [`ExemplarRegistry`] of the exporter that owns
//! the recorder, which reads every cell at render time. Recording is a
//! seqlock of atomics per bucket: no allocation, no lock; a writer that
//! finds the slot taken by another writer drops its exemplar (the other
//! one is as recent), and a reader retries a torn read a few times, then
//! skips the slot for this scrape (`benches/helpers.rs`, group
//! `exemplar`).
//!
//! A new histogram with exemplars (the coming
//! `http_client_request_duration_seconds`): where its handle is resolved
//! and cached, call [`ExemplarRegistry::series`] once with the same name,
//! labels and bucket bounds (the registry of the recorder the handle
//! belongs to, [`super::exporter::installed_exemplars`] for the global
//! one), keep the `Arc<Exemplars>` beside the handle, and after each
//! `record` call [`Exemplars::record_ids`] with the span's IDs
//! ([`span_ids`]) and an instant the caller already has. The exporter
//! renders it with no change; Grafana's panels list it in
//! `deploy/grafana/generate.py` (`EXEMPLAR_METRICS`).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering, fence},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use tracing_subscriber::registry::LookupSpan;

use crate::ids::SpanIds;

/// One bucket's latest exemplar, guarded by a sequence number: odd while a
/// writer is storing, bumped by two per write; `0` means never written.
#[derive(Default)]
struct Slot {
    seq: AtomicU64,
    trace_hi: AtomicU64,
    trace_lo: AtomicU64,
    span: AtomicU64,
    value: AtomicU64,
    /// Nanoseconds since the series' `base`; [`NO_TIME`] when the
    /// observation came without an instant.
    at: AtomicU64,
}

/// `Slot::at` of an observation recorded without an instant: rendered
/// without a timestamp (OpenMetrics allows it; Prometheus then uses the
/// scrape's).
const NO_TIME: u64 = u64::MAX;

/// A consistent read of one slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exemplar {
    /// The trace ID, as 128 bits.
    pub(crate) trace_id: u128,
    /// The span ID.
    pub(crate) span_id: u64,
    /// The observed value.
    pub(crate) value: f64,
    /// When it was observed, in seconds since the Unix epoch, when known.
    pub(crate) timestamp: Option<f64>,
}

impl Slot {
    #[inline]
    fn write(&self, trace_id: u128, span_id: u64, value: f64, at: u64) {
        let s = self.seq.load(Ordering::Relaxed);
        // Odd: another writer is storing right now; its exemplar is as
        // recent as ours, so ours is dropped rather than waited for.
        if s & 1 == 1
            || self
                .seq
                .compare_exchange(s, s.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        fence(Ordering::Release);
        self.trace_hi
            .store((trace_id >> 64) as u64, Ordering::Relaxed);
        self.trace_lo.store(trace_id as u64, Ordering::Relaxed);
        self.span.store(span_id, Ordering::Relaxed);
        self.value.store(value.to_bits(), Ordering::Relaxed);
        self.at.store(at, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// The slot's fields, or `None` when never written or torn on every try.
    fn read(&self) -> Option<(u128, u64, f64, u64)> {
        for _ in 0..4 {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 == 0 {
                return None;
            }
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let hi = self.trace_hi.load(Ordering::Relaxed);
            let lo = self.trace_lo.load(Ordering::Relaxed);
            let span = self.span.load(Ordering::Relaxed);
            let value = self.value.load(Ordering::Relaxed);
            let at = self.at.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                let trace = (u128::from(hi) << 64) | u128::from(lo);
                return Some((trace, span, f64::from_bits(value), at));
            }
        }
        None
    }
}

/// The exemplar cells of one histogram series: one slot per bucket of
/// `bounds`, plus `+Inf`.
pub(crate) struct Exemplars {
    name: &'static str,
    /// The series' own labels (not the global ones), escaped, sorted by
    /// key, `k="v"` joined by commas: how render time finds the series.
    key: String,
    bounds: &'static [f64],
    slots: Box<[Slot]>,
    base: Instant,
    /// `base` as seconds since the Unix epoch.
    base_unix: f64,
}

impl std::fmt::Debug for Exemplars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exemplars")
            .field("name", &self.name)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Exemplars {
    fn new(name: &'static str, labels: &[(&str, &str)], bounds: &'static [f64]) -> Self {
        let mut pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| {
                let mut s = format!("{k}=\"");
                super::amount_counter::escape_label_value(v, &mut s);
                s.push('"');
                s
            })
            .collect();
        pairs.sort_unstable();
        let base = Instant::now();
        let base_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            name,
            key: pairs.join(","),
            bounds,
            slots: (0..=bounds.len()).map(|_| Slot::default()).collect(),
            base,
            base_unix,
        }
    }

    /// The bucket `value` falls in: the first bound at or above it, or
    /// `+Inf` (the last slot).
    #[inline]
    fn bucket(&self, value: f64) -> usize {
        self.bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len())
    }

    /// Keep (`value`, trace, span) as its bucket's exemplar, observed at
    /// `now` (an instant the caller already has: reading the clock for the
    /// exemplar alone would cost more than the exemplar, see
    /// `benches/helpers.rs`). The caller records only sampled observations.
    #[inline]
    pub(crate) fn record_at(&self, value: f64, trace_id: u128, span_id: u64, now: Option<Instant>) {
        let at = now.map_or(NO_TIME, |now| {
            let at = now.saturating_duration_since(self.base).as_nanos();
            u64::try_from(at).unwrap_or(NO_TIME - 1).min(NO_TIME - 1)
        });
        self.slots[self.bucket(value)].write(trace_id, span_id, value, at);
    }

    /// [`Exemplars::record_at`] with the IDs of `ids` when it is sampled;
    /// nothing otherwise.
    #[inline]
    pub(crate) fn record_ids(&self, value: f64, ids: Option<SpanIds>, now: Option<Instant>) {
        if let Some(ids) = ids.filter(|i| i.sampled) {
            self.record_at(
                value,
                u128::from_be_bytes(ids.trace_id.to_bytes()),
                u64::from_be_bytes(ids.span_id.to_bytes()),
                now,
            );
        }
    }

    /// The exemplar of bucket `index` (`bounds.len()` is `+Inf`).
    pub(crate) fn get(&self, index: usize) -> Option<Exemplar> {
        let (trace_id, span_id, value, at) = self.slots.get(index)?.read()?;
        Some(Exemplar {
            trace_id,
            span_id,
            value,
            timestamp: (at != NO_TIME).then(|| self.base_unix + at as f64 / 1e9),
        })
    }

    /// The slot index of the bucket whose upper bound is `le` (as the
    /// exposition prints it).
    fn index_of(&self, le: &str) -> Option<usize> {
        if le == "+Inf" {
            return Some(self.bounds.len());
        }
        let le: f64 = le.parse().ok()?;
        self.bounds.iter().position(|b| {
            let tolerance = b.abs() * 1e-9;
            (b - le).abs() <= tolerance
        })
    }
}

/// The span IDs of `span` when it is sampled.
pub(crate) fn span_ids(span: &tracing::Span) -> Option<SpanIds> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let span = registry.span(id)?;
        span.scope()
            .find_map(|s| s.extensions().get::<SpanIds>().copied())
    })
    .flatten()
    .filter(|i| i.sampled)
}

/// The exemplar cells of one exporter's histogram series, registered by the
/// handle caches (the HTTP layer's route cache, the `db` and `ws` helpers,
/// and the coming HTTP client histogram through [`ExemplarRegistry::series`])
/// and read when a scrape asks for OpenMetrics.
#[derive(Default)]
pub(crate) struct ExemplarRegistry {
    series: Mutex<Index>,
}

impl std::fmt::Debug for ExemplarRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExemplarRegistry").finish_non_exhaustive()
    }
}

impl ExemplarRegistry {
    /// The exemplar cells of the histogram series `name{labels}` with
    /// buckets `bounds`, registered for rendering: the same cells for the
    /// same series (two caches racing to resolve one series share them).
    /// Called where a series' handle is resolved and cached, never per
    /// observation.
    pub(crate) fn series(
        &self,
        name: &'static str,
        labels: &[(&str, &str)],
        bounds: &'static [f64],
    ) -> Arc<Exemplars> {
        let cells = Exemplars::new(name, labels, bounds);
        let mut index = self.series.lock().unwrap_or_else(|e| e.into_inner());
        index
            .entry(name)
            .or_default()
            .entry(cells.key.clone())
            .or_insert_with(|| Arc::new(cells))
            .clone()
    }

    /// `f` run on the registered series (by name, then sorted labels), for
    /// one render; registration of a new series waits meanwhile.
    pub(crate) fn with_index<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        f(&self.series.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Series cells by metric name, then by their sorted own labels.
pub(crate) type Index = HashMap<&'static str, HashMap<String, Arc<Exemplars>>>;

/// Finds a bucket line's exemplar: `labels` is the line's label text
/// without braces; `global` lists the label keys every series carries.
pub(crate) fn lookup(index: &Index, name: &str, labels: &str, global: &[&str]) -> Option<Exemplar> {
    let pairs = split_labels(labels)?;
    let mut le = None;
    let mut own: Vec<&str> = Vec::with_capacity(pairs.len());
    for (key, pair, value) in pairs {
        if key == "le" {
            le = Some(value);
        } else if !global.contains(&key) {
            own.push(pair);
        }
    }
    own.sort_unstable();
    let series = index.get(name)?.get(&own.join(","))?;
    series.get(series.index_of(le?)?)
}

/// `k="v",…` split into (key, `k="v"`, raw escaped value) triples, `None`
/// when malformed.
fn split_labels(s: &str) -> Option<Vec<(&str, &str, &str)>> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let eq = s[i..].find('=')? + i;
        let key = &s[i..eq];
        if bytes.get(eq + 1) != Some(&b'"') {
            return None;
        }
        let mut j = eq + 2;
        while j < bytes.len() && bytes[j] != b'"' {
            j += if bytes[j] == b'\\' { 2 } else { 1 };
        }
        if j >= bytes.len() {
            return None;
        }
        out.push((key, &s[start..=j], &s[eq + 2..j]));
        i = j + 1;
        if bytes.get(i) == Some(&b',') {
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[f64] = &[0.005, 0.01, 0.1, 1.0];

    #[test]
    fn a_sampled_observation_lands_in_the_bucket_its_value_falls_in() {
        let reg = ExemplarRegistry::default();
        let cells = reg.series("h_seconds", &[("route", "/a")], BOUNDS);
        cells.record_at(0.05, 0xabc, 7, Some(Instant::now()));
        assert_eq!(cells.get(1), None);
        let e = cells.get(2).unwrap();
        assert_eq!((e.trace_id, e.span_id, e.value), (0xabc, 7, 0.05));
        let index = reg.series.lock().unwrap();
        let found = lookup(
            &index,
            "h_seconds",
            r#"service="s",route="/a",le="0.1""#,
            &["service"],
        );
        assert_eq!(found.map(|e| e.trace_id), Some(0xabc));
        let none = lookup(&index, "h_seconds", r#"route="/a",le="1""#, &[]);
        assert_eq!(none, None);
        cells.record_at(5.0, 1, 2, Some(Instant::now()));
        assert_eq!(
            lookup(&index, "h_seconds", r#"route="/a",le="+Inf""#, &[]).map(|e| e.value),
            Some(5.0)
        );
    }

    #[test]
    fn unsampled_ids_leave_no_exemplar() {
        let reg = ExemplarRegistry::default();
        let cells = reg.series("h_seconds", &[], BOUNDS);
        let ids = SpanIds {
            trace_id: opentelemetry::trace::TraceId::from(5u128),
            span_id: opentelemetry::trace::SpanId::from(6u64),
            sampled: false,
            random: false,
        };
        cells.record_ids(0.001, Some(ids), Some(Instant::now()));
        cells.record_ids(0.001, None, Some(Instant::now()));
        assert!((0..=BOUNDS.len()).all(|i| cells.get(i).is_none()));
        cells.record_ids(
            0.001,
            Some(SpanIds {
                sampled: true,
                ..ids
            }),
            None,
        );
        assert_eq!(cells.get(0).map(|e| (e.trace_id, e.span_id)), Some((5, 6)));
    }

    #[test]
    fn concurrent_recording_never_tears_a_trace_and_value_pair() {
        let cells = Arc::new(ExemplarRegistry::default().series("h_seconds", &[], &[10.0]));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (1..=4u64)
            .map(|t| {
                let (cells, stop) = (cells.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        // Every field derives from one number: a torn read
                        // mixes two and breaks the relation.
                        let k = t * 1_000_000_000 + n;
                        let trace = (u128::from(k) << 64) | u128::from(k);
                        cells.record_at(k as f64 / 1e12, trace, k, Some(Instant::now()));
                    }
                })
            })
            .collect();
        let mut seen = 0;
        let until = Instant::now() + std::time::Duration::from_millis(300);
        while Instant::now() < until {
            if let Some(e) = cells.get(0) {
                let k = e.span_id;
                assert_eq!(e.trace_id, (u128::from(k) << 64) | u128::from(k));
                assert_eq!(e.value, k as f64 / 1e12);
                seen += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        assert!(seen > 0, "the reader never saw a complete exemplar");
    }
}

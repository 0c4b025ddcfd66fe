//! Cached metric handles for the domain helpers (`ws`, `db`, `business`,
//! `security`, `cache`).
//!
//! Resolving a labelled series through the `metrics` facade builds and hashes
//! a key (allocating the label strings) and takes the registry's lock, a few
//! hundred nanoseconds; the helpers are called on request paths, so each one
//! resolves its handles once per distinct label value and keeps them here
//! (`benches/helpers.rs` measures the result against a bare cached handle).
//!
//! A [`Family`] is a lock-free, append-only open-addressing table of
//! `OnceLock` slots: a look-up hashes the values and compares at most a few
//! slots, with no atomic read-modify-write. Values reach the table only
//! after the cardinality guard admitted them (values past the cap share the
//! `other` handles), and the table is never filled beyond half, so a miss
//! ends at an empty slot after a short probe.
//!
//! Handles are only cached once `glimpse_obs` is initialised: a handle
//! resolved earlier belongs to the no-op recorder and would stay dead.

use std::{
    borrow::Cow,
    ops::Deref,
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use super::cardinality::{LabelGuard, OVERFLOW_VALUE};

/// Whether our recorder is the global one, so handles may be cached: set
/// once by the facade when it installs the recorder ([`set_ready`]).
static READY: AtomicBool = AtomicBool::new(false);

/// Whether our recorder is the global one (so handles may be cached).
pub(crate) fn ready() -> bool {
    READY.load(Ordering::Relaxed)
}

/// Our recorder became the global one: handles resolved from now on are
/// live and may be cached. Called by the exporter's `install_global` only.
pub(crate) fn set_ready() {
    READY.store(true, Ordering::Relaxed);
}

/// A handle set borrowed from a static cache, or resolved for one use.
pub(crate) enum Ref<H: 'static> {
    Static(&'static H),
    Owned(H),
}

impl<H: 'static> Deref for Ref<H> {
    type Target = H;
    #[inline]
    fn deref(&self) -> &H {
        match self {
            Ref::Static(h) => h,
            Ref::Owned(h) => h,
        }
    }
}

/// One handle set with no caller-fed labels.
pub(crate) struct Single<H: 'static> {
    cell: OnceLock<H>,
    make: fn() -> H,
}

impl<H> Single<H> {
    pub(crate) const fn new(make: fn() -> H) -> Self {
        Self {
            cell: OnceLock::new(),
            make,
        }
    }

    #[inline]
    pub(crate) fn get(&'static self) -> Ref<H> {
        if let Some(h) = self.cell.get() {
            return Ref::Static(h);
        }
        self.slow()
    }

    #[cold]
    fn slow(&'static self) -> Ref<H> {
        if ready() {
            Ref::Static(self.cell.get_or_init(self.make))
        } else {
            Ref::Owned((self.make)())
        }
    }
}

struct Slot<H> {
    /// The values' keys, inline so a look-up reads no heap string for
    /// values of up to 16 bytes.
    ka: Key,
    kb: Key,
    a: Box<str>,
    b: Box<str>,
    h: H,
}

impl<H> Slot<H> {
    #[inline(always)]
    fn is(&self, ka: Key, kb: Key, a: &str, b: &str) -> bool {
        self.ka == ka
            && self.kb == kb
            && (ka.len <= 16 || *self.a == *a)
            && (kb.len <= 16 || *self.b == *b)
    }
}

/// Table sizes: twice the cap (so probes stay short), bounded so a huge
/// `label_cap` does not allocate a huge table (values past it are resolved
/// on each call instead: slower, still correct).
const MIN_SLOTS: usize = 16;
const MAX_SLOTS: usize = 8192;

/// The table size for `entries` admitted values: twice as many slots,
/// a power of two within `MIN_SLOTS..=MAX_SLOTS` (no overflow for a huge cap).
fn table_slots(entries: usize) -> usize {
    entries
        .saturating_mul(2)
        .checked_next_power_of_two()
        .unwrap_or(MAX_SLOTS)
        .clamp(MIN_SLOTS, MAX_SLOTS)
}

/// Handle sets keyed by one or two caller-fed label values (`b` is `""` for
/// one), capped together by one [`LabelGuard`] ([`Family::new`]) or each by
/// its own ([`Family::per_label_checked`]).
pub(crate) struct Family<H: 'static> {
    guard: LabelGuard,
    /// Caps `b` on its own (then `guard` caps `a` alone).
    b_guard: Option<LabelGuard>,
    table: OnceLock<Box<[OnceLock<Slot<H>>]>>,
    /// Slots taken, kept at most half the table.
    filled: AtomicUsize,
    other: OnceLock<H>,
    make: fn(&str, &str) -> H,
}

impl<H> Family<H> {
    /// `metric` names the family in `glimpse_obs_label_overflow_total`;
    /// `make` resolves the handles of admitted values. The cap applies to
    /// (`a`, `b`) pairs; past it, both become `other`.
    pub(crate) const fn new(metric: &'static str, make: fn(&str, &str) -> H) -> Self {
        Self {
            guard: LabelGuard::new(metric),
            b_guard: None,
            table: OnceLock::new(),
            filled: AtomicUsize::new(0),
            other: OnceLock::new(),
            make,
        }
    }

    /// Like [`Family::new`], but `a` and `b` are capped separately: a new
    /// value of one past its cap becomes `other` while the other label keeps
    /// its value (a new peer host never moves a known method into `other`).
    pub(crate) const fn per_label(metric: &'static str, make: fn(&str, &str) -> H) -> Self {
        Self {
            guard: LabelGuard::new(metric),
            b_guard: Some(LabelGuard::new(metric)),
            table: OnceLock::new(),
            filled: AtomicUsize::new(0),
            other: OnceLock::new(),
            make,
        }
    }

    /// Like [`Family::per_label`] (a new payment provider never moves
    /// revenue of a known currency into `currency="other"`), and `b` values `accepts` refuses (currencies that are not ISO 4217
    /// codes) become `other` without taking a slot.
    pub(crate) const fn per_label_checked(
        metric: &'static str,
        accepts: fn(&str) -> bool,
        make: fn(&str, &str) -> H,
    ) -> Self {
        Self {
            guard: LabelGuard::new(metric),
            b_guard: Some(LabelGuard::with_check(metric, Some(accepts))),
            table: OnceLock::new(),
            filled: AtomicUsize::new(0),
            other: OnceLock::new(),
            make,
        }
    }

    /// The handles of (`a`, `b`), or the `other` handles past the cap.
    ///
    /// Inlined into each helper so the key of a constant `b` (`""` for one
    /// label) folds away and a hit returns no enum through memory: measured
    /// ~1 ns of the ~2.5 ns a helper adds to the counter increment
    /// (`benches/helpers.rs`).
    #[inline(always)]
    pub(crate) fn get(&'static self, a: &str, b: &str) -> Ref<H> {
        match self.find(a, b) {
            Some(h) => Ref::Static(h),
            None => self.slow(a, b),
        }
    }

    /// `f` applied to the handles of (`a`, `b`) (or the `other` handles
    /// past the cap), for one-shot updates: a hit calls `f` on the cached
    /// handles directly, with no [`Ref`] to match on and drop (half a
    /// nanosecond of the counter helpers, `benches/helpers.rs`).
    #[inline(always)]
    pub(crate) fn with<R>(&'static self, a: &str, b: &str, f: impl FnOnce(&H) -> R) -> R {
        match self.find(a, b) {
            Some(h) => f(h),
            None => self.slow_with(a, b, f),
        }
    }

    #[cold]
    #[inline(never)]
    fn slow_with<R>(&'static self, a: &str, b: &str, f: impl FnOnce(&H) -> R) -> R {
        f(&self.slow(a, b))
    }

    /// The cached handles of (`a`, `b`), if admitted and cached.
    #[inline(always)]
    fn find(&'static self, a: &str, b: &str) -> Option<&'static H> {
        let table = self.table.get()?;
        let (ka, kb) = (Key::of(a), Key::of(b));
        let mask = table.len() - 1;
        let mut i = hash(ka, kb) & mask;
        for _ in 0..table.len() {
            let s = table[i].get()?;
            if s.is(ka, kb, a, b) {
                return Some(&s.h);
            }
            i = (i + 1) & mask;
        }
        None
    }

    #[cold]
    #[inline(never)]
    fn slow(&'static self, a: &str, b: &str) -> Ref<H> {
        if !ready() {
            // No recorder yet: the handles would be no-ops anyway, and the
            // guard must not count values nobody will see.
            return Ref::Owned((self.make)(a, b));
        }
        let (a, b, overflow) = match &self.b_guard {
            // Each label on its own, without allocating: a caller that keeps
            // sending new values past the cap stays allocation-free.
            Some(b_guard) => {
                let (a, b) = (self.guard.admit(a), b_guard.admit(b));
                let both = a == OVERFLOW_VALUE && b == OVERFLOW_VALUE;
                (a, b, both)
            }
            None => {
                let admitted = if b.is_empty() {
                    self.guard.admit(a) == a
                } else {
                    let mut key = String::with_capacity(a.len() + 1 + b.len());
                    key.push_str(a);
                    key.push('\u{1f}');
                    key.push_str(b);
                    self.guard.admit(&key) == key.as_str()
                };
                (Cow::Borrowed(a), Cow::Borrowed(b), !admitted)
            }
        };
        if overflow {
            return Ref::Static(
                self.other
                    .get_or_init(|| (self.make)(OVERFLOW_VALUE, OVERFLOW_VALUE)),
            );
        }
        let (a, b) = (&*a, &*b);
        let table = self.table.get_or_init(|| {
            let settings = crate::metrics::limits::current();
            // Known values take no slot of the cap, but a place in the table.
            let known = settings
                .known_labels
                .get(self.guard.metric())
                .map_or(0, |k| k.len());
            let cap = settings.label_cap.saturating_add(known);
            // Per label, up to cap × cap pairs may exist; room for twice the
            // cap keeps the table small, and pairs past half of it are
            // resolved on each call (slower, still correct).
            let entries = if self.b_guard.is_some() {
                cap.saturating_mul(2)
            } else {
                cap
            };
            (0..table_slots(entries)).map(|_| OnceLock::new()).collect()
        });
        let (ka, kb) = (Key::of(a), Key::of(b));
        let mask = table.len() - 1;
        let mut i = hash(ka, kb) & mask;
        for _ in 0..table.len() {
            let slot = &table[i];
            let s = match slot.get() {
                Some(s) => s,
                None => {
                    if self.filled.load(Ordering::Relaxed) >= table.len() / 2 {
                        break;
                    }
                    // Racing inserts probe the same sequence, so the loser
                    // finds the winner's slot here and uses it if it is the
                    // same value.
                    let inserted = slot
                        .set(Slot {
                            ka,
                            kb,
                            a: a.into(),
                            b: b.into(),
                            h: (self.make)(a, b),
                        })
                        .is_ok();
                    if inserted {
                        self.filled.fetch_add(1, Ordering::Relaxed);
                    }
                    match slot.get() {
                        Some(s) => s,
                        None => break,
                    }
                }
            };
            if s.is(ka, kb, a, b) {
                return Ref::Static(&s.h);
            }
            i = (i + 1) & mask;
        }
        Ref::Owned((self.make)(a, b))
    }
}

/// A label value's length and two words covering its bytes: for values of
/// up to 16 bytes, two keys are equal iff the values are; longer values
/// are compared in full after their keys.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    len: usize,
    w0: u64,
    w1: u64,
}

impl Key {
    #[inline(always)]
    fn of(s: &str) -> Key {
        let b = s.as_bytes();
        let n = b.len();
        // Overlapping loads: first and last 8 (or 4) bytes.
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let u32_at = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&b[i..i + 4]);
            u64::from(u32::from_le_bytes(w))
        };
        let (w0, w1) = if n >= 8 {
            let (mut w0, w1) = (u64_at(0), u64_at(n - 8));
            // Fold the middle of longer values into the hash.
            let mut i = 8;
            while i + 8 < n {
                w0 = mix(w0, u64_at(i));
                i += 8;
            }
            (w0, w1)
        } else if n >= 4 {
            (u32_at(0), u32_at(n - 4))
        } else if n > 0 {
            (
                u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16,
                0,
            )
        } else {
            (0, 0)
        };
        Key { len: n, w0, w1 }
    }
}

/// FxHash's step, to fold the middle of long values: fast; the table is
/// small and holds only admitted values, so collision resistance is not needed.
#[inline(always)]
fn mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95)
}

/// One multiply over the four words (independent rotations and XORs): the
/// look-up is on every helper call.
#[inline(always)]
fn hash(a: Key, b: Key) -> usize {
    let x = a.w0
        ^ a.w1.rotate_left(29)
        ^ b.w0.rotate_left(13)
        ^ b.w1.rotate_left(43)
        ^ ((a.len as u64) << 56)
        ^ ((b.len as u64) << 48);
    let h = x.wrapping_mul(0x517c_c1b7_2722_0a95);
    (h ^ (h >> 32)) as usize
}

#[cfg(test)]
mod tests {
    use super::{Key, MAX_SLOTS, MIN_SLOTS, hash, table_slots};

    #[test]
    fn table_sizes_stay_in_bounds_for_any_cap() {
        assert_eq!(table_slots(0), MIN_SLOTS);
        assert_eq!(table_slots(100), 256);
        assert_eq!(table_slots(usize::MAX / 2 + 1), MAX_SLOTS);
        assert_eq!(table_slots(usize::MAX), MAX_SLOTS);
    }

    fn h(a: &str, b: &str) -> usize {
        hash(Key::of(a), Key::of(b))
    }

    #[test]
    fn keys_of_short_values_are_equal_iff_the_values_are() {
        let values = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcde",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
            "abcdefghijklmnopqrstuvwxyz0123",
        ];
        for x in values {
            for y in values {
                if x.len() <= 16 && y.len() <= 16 {
                    assert_eq!(Key::of(x) == Key::of(y), x == y, "{x:?} {y:?}");
                }
            }
            // Every byte position reaches the key's hash.
            for i in 0..x.len() {
                let mut changed = x.as_bytes().to_vec();
                changed[i] = b'_';
                let changed = String::from_utf8(changed).unwrap();
                assert!(x.len() > 16 || Key::of(x) != Key::of(&changed));
                assert_ne!(h(x, ""), h(&changed, ""), "{x:?} vs {changed:?}");
            }
        }
    }

    #[test]
    fn hash_separates_the_two_values() {
        assert_ne!(h("ab", ""), h("a", "b"));
        assert_ne!(h("", "ab"), h("ab", ""));
        assert_eq!(h("email", ""), h("email", ""));
    }
}

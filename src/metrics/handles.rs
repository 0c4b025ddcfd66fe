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
//! after the cardinality guard admitted them, so it holds at most `label_cap`
//! entries; values past the cap share the `other` handles.
//!
//! Handles are only cached once `glimpse_obs` is initialised: a handle
//! resolved earlier belongs to the no-op recorder and would stay dead.

use std::{
    ops::Deref,
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use super::cardinality::{LabelGuard, OVERFLOW_VALUE};

/// Whether our recorder is the global one (so handles may be cached).
pub(crate) fn ready() -> bool {
    static READY: AtomicBool = AtomicBool::new(false);
    if READY.load(Ordering::Relaxed) {
        return true;
    }
    // The exporter registers its handle after installing the recorder.
    let ready = super::exporter::installed();
    if ready {
        READY.store(true, Ordering::Relaxed);
    }
    ready
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
    a: Box<str>,
    b: Box<str>,
    h: H,
}

/// Table sizes: twice the cap (so probes stay short), bounded so a huge
/// `label_cap` does not allocate a huge table (values past it are resolved
/// on each call instead: slower, still correct).
const MIN_SLOTS: usize = 16;
const MAX_SLOTS: usize = 8192;

/// Handle sets keyed by one or two caller-fed label values (`b` is `""` for
/// one), capped together by one [`LabelGuard`].
pub(crate) struct Family<H: 'static> {
    guard: LabelGuard,
    table: OnceLock<Box<[OnceLock<Slot<H>>]>>,
    other: OnceLock<H>,
    make: fn(&str, &str) -> H,
}

impl<H> Family<H> {
    /// `metric` names the family in `glimpse_obs_label_overflow_total`;
    /// `make` resolves the handles of admitted values.
    pub(crate) const fn new(metric: &'static str, make: fn(&str, &str) -> H) -> Self {
        Self {
            guard: LabelGuard::new(metric),
            table: OnceLock::new(),
            other: OnceLock::new(),
            make,
        }
    }

    /// The handles of (`a`, `b`), or the `other` handles past the cap.
    #[inline]
    pub(crate) fn get(&'static self, a: &str, b: &str) -> Ref<H> {
        if let Some(table) = self.table.get() {
            let mask = table.len() - 1;
            let mut i = hash(a, b) & mask;
            for _ in 0..table.len() {
                match table[i].get() {
                    Some(s) if *s.a == *a && *s.b == *b => return Ref::Static(&s.h),
                    Some(_) => i = (i + 1) & mask,
                    None => break,
                }
            }
        }
        self.slow(a, b)
    }

    #[cold]
    fn slow(&'static self, a: &str, b: &str) -> Ref<H> {
        if !ready() {
            // No recorder yet: the handles would be no-ops anyway, and the
            // guard must not count values nobody will see.
            return Ref::Owned((self.make)(a, b));
        }
        let admitted = if b.is_empty() {
            self.guard.admit(a) == a
        } else {
            let mut key = String::with_capacity(a.len() + 1 + b.len());
            key.push_str(a);
            key.push('\u{1f}');
            key.push_str(b);
            self.guard.admit(&key) == key.as_str()
        };
        if !admitted {
            return Ref::Static(
                self.other
                    .get_or_init(|| (self.make)(OVERFLOW_VALUE, OVERFLOW_VALUE)),
            );
        }
        let table = self.table.get_or_init(|| {
            let cap = crate::init::settings().label_cap;
            let slots = (cap.saturating_mul(2))
                .next_power_of_two()
                .clamp(MIN_SLOTS, MAX_SLOTS);
            (0..slots).map(|_| OnceLock::new()).collect()
        });
        let mask = table.len() - 1;
        let mut i = hash(a, b) & mask;
        for _ in 0..table.len() {
            let slot = &table[i];
            let s = match slot.get() {
                Some(s) => s,
                None => {
                    // Racing inserts probe the same sequence, so the loser
                    // finds the winner's slot here and uses it if it is the
                    // same value.
                    let _ = slot.set(Slot {
                        a: a.into(),
                        b: b.into(),
                        h: (self.make)(a, b),
                    });
                    match slot.get() {
                        Some(s) => s,
                        None => break,
                    }
                }
            };
            if *s.a == *a && *s.b == *b {
                return Ref::Static(&s.h);
            }
            i = (i + 1) & mask;
        }
        Ref::Owned((self.make)(a, b))
    }
}

/// FxHash-style: fast on short label values; the table is small and filled
/// only with admitted values, so collision resistance is not needed.
#[inline]
fn hash(a: &str, b: &str) -> usize {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = 0;
    let mut add = |w: u64| h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    for part in [a.as_bytes(), b.as_bytes()] {
        let mut chunks = part.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        add(u64::from_le_bytes(w) ^ ((part.len() as u64) << 56));
    }
    (h ^ (h >> 32)) as usize
}

#[cfg(test)]
mod tests {
    use super::hash;

    #[test]
    fn hash_separates_the_two_values() {
        assert_ne!(hash("ab", ""), hash("a", "b"));
        assert_ne!(hash("", "ab"), hash("ab", ""));
        assert_eq!(hash("email", ""), hash("email", ""));
    }
}

//! Cache metrics: look-ups by cache name and result, for the hit rate.
//!
//! ```
//! use glimpse_obs::cache;
//! # glimpse_obs::testing::capture(|| {
//! let cached: Option<&str> = None;
//! cache::lookup("profiles", cached.is_some());
//! # });
//! ```
//!
//! Hit rate over five minutes, per cache:
//! `sum by (cache) (rate(cache_requests_total{result="hit"}[5m])) / sum by (cache) (rate(cache_requests_total[5m]))`.

use metrics::Counter;

use super::{
    handles::Family,
    names::{self, labels},
};

/// `[hit, miss]` of one cache.
static CACHES: Family<[Counter; 2]> = Family::new(names::CACHE_REQUESTS, |cache, _| {
    ["hit", "miss"].map(|result| {
        metrics::counter!(names::CACHE_REQUESTS,
            labels::CACHE => cache.to_owned(), labels::RESULT => result)
    })
});

/// Count a hit in `cache_requests_total{cache,result="hit"}`.
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::cache::hit("profiles");
/// # });
/// # assert_eq!(seen.metric_delta("cache_requests_total", &[("cache", "profiles"), ("result", "hit")]), 1.0);
/// ```
#[inline]
pub fn hit(cache: &str) {
    lookup(cache, true);
}

/// Count a miss in `cache_requests_total{cache,result="miss"}`.
///
/// ```
/// # let (_, seen) = glimpse_obs::testing::capture(|| {
/// glimpse_obs::cache::miss("profiles");
/// # });
/// # assert_eq!(seen.metric_delta("cache_requests_total", &[("cache", "profiles"), ("result", "miss")]), 1.0);
/// ```
#[inline]
pub fn miss(cache: &str) {
    lookup(cache, false);
}

/// Count a look-up of `cache` that hit (`true`) or missed.
///
/// ```
/// # glimpse_obs::testing::capture(|| {
/// let found = Some("profile");
/// glimpse_obs::cache::lookup("profiles", found.is_some());
/// # });
/// ```
#[inline]
pub fn lookup(cache: &str, hit: bool) {
    CACHES.with(cache, "", |c| c[usize::from(!hit)].increment(1));
}

//! Tokio runtime metrics: is the runtime starved?
//!
//! [`spawn_sampler`] samples a runtime's stable metrics (tokio's
//! [`RuntimeMetrics`](tokio::runtime::RuntimeMetrics), through the
//! [`tokio_metrics::RuntimeMonitor`] interval logic) every `interval` into
//! the `tokio_*` series below. `init()` starts one for the runtime it is
//! called in (see [`Config::runtime_metrics`](crate::Config::runtime_metrics));
//! called outside a runtime, it starts none, and a service may start one
//! itself.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `tokio_workers` | gauge | worker threads of the runtime |
//! | `tokio_alive_tasks` | gauge | tasks spawned and not yet finished |
//! | `tokio_global_queue_depth` | gauge | tasks waiting in the runtime's global (injection) queue |
//! | `tokio_busy_ratio` | gauge, 0–1 | share of the last interval the workers spent running tasks, averaged over workers |
//! | `tokio_worker_busy_ratio{worker}` | gauge, 0–1 | the same per worker (`worker` = `0`..`workers-1`) |
//! | `tokio_worker_parks_total` | counter | times the workers parked (went idle), summed over workers |
//!
//! Blocking-pool threads and budget-forced yields are only available with
//! `--cfg tokio_unstable` in tokio 1.54; this crate does not export them.
//!
//! The sampler is a thread of its own, not a task on the runtime it
//! measures: a runtime whose workers are all blocked still gets sampled
//! (that is when the numbers matter), and no request ever waits for it.
//! One caveat from tokio itself: a worker reports its busy time when it
//! parks or every 61 polls, so a worker stuck in one long blocking call
//! shows busy only once the call returns; `tokio_global_queue_depth` rises
//! meanwhile.
//!
//! ```
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), glimpse_obs::Error> {
//! let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()
//!     .map_err(|source| glimpse_obs::Error::Io { context: "building a runtime", source })?;
//! // Sample the runtime every 5 s until `sampler` is dropped.
//! let sampler = glimpse_obs::runtime::spawn_sampler(rt.handle().clone(), Duration::from_secs(5))?;
//! drop(sampler);
//! # Ok(()) }
//! ```

use std::{
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use metrics::{Counter, Gauge, Unit, describe_counter, describe_gauge};
use tokio::runtime::Handle;

use super::names::{self, labels};
use crate::Error;

/// How often `init()` samples the runtime unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = crate::config::DEFAULT_RUNTIME_METRICS_INTERVAL;

/// The running sampler of one runtime; dropping it stops the sampling
/// thread (at once, not at the next tick).
#[derive(Debug)]
#[must_use = "dropping the sampler stops it"]
pub struct Sampler {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread, which then ends.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start sampling `handle`'s runtime every `interval` (at least 10 ms)
/// into the `tokio_*` metrics, on a thread named `glimpse-runtime-metrics`,
/// until the returned [`Sampler`] is dropped. Start it after `init()`: the
/// metric handles are taken from the recorder installed when it starts.
///
/// ```
/// use std::time::Duration;
///
/// #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// async fn main() -> Result<(), glimpse_obs::Error> {
///     let guard = glimpse_obs::Config::default()
///         .metrics_addr(None)
///         .runtime_metrics(false) // sample this runtime ourselves, every second
///         .log_writer(std::io::sink())
///         .init()?;
///     let _sampler = glimpse_obs::runtime::spawn_sampler(
///         tokio::runtime::Handle::current(),
///         Duration::from_secs(1),
///     )?;
///     tokio::time::sleep(Duration::from_millis(50)).await;
///     assert!(guard.render_metrics().contains("tokio_workers"));
///     Ok(())
/// }
/// ```
///
/// # Errors
/// [`Error::Io`] when the thread cannot be started.
pub fn spawn_sampler(handle: Handle, interval: Duration) -> Result<Sampler, Error> {
    let interval = interval.max(Duration::from_millis(10));
    describe();
    let mut state = State::new(&handle);
    // The first sample right away, so the series exist from the start.
    state.sample();
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("glimpse-runtime-metrics".into())
        .spawn(move || {
            // Ends when the sender is dropped (or sends).
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                state.sample();
            }
        })
        .map_err(|source| Error::Io {
            context: "starting the runtime metrics thread",
            source,
        })?;
    Ok(Sampler {
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// What one sampler keeps between samples: tokio-metrics' interval state,
/// each worker's busy time at the last sample, and the metric handles
/// (resolved once).
struct State {
    intervals: tokio_metrics::RuntimeIntervals,
    runtime: tokio::runtime::RuntimeMetrics,
    last_at: Instant,
    last_busy: Vec<Duration>,
    workers: Gauge,
    alive: Gauge,
    queue: Gauge,
    busy: Gauge,
    worker_busy: Vec<Gauge>,
    parks: Counter,
}

impl State {
    fn new(handle: &Handle) -> Self {
        let runtime = handle.metrics();
        let n = runtime.num_workers();
        Self {
            intervals: tokio_metrics::RuntimeMonitor::new(handle).intervals(),
            last_at: Instant::now(),
            last_busy: (0..n)
                .map(|w| runtime.worker_total_busy_duration(w))
                .collect(),
            runtime,
            workers: metrics::gauge!(names::TOKIO_WORKERS),
            alive: metrics::gauge!(names::TOKIO_ALIVE_TASKS),
            queue: metrics::gauge!(names::TOKIO_GLOBAL_QUEUE_DEPTH),
            busy: metrics::gauge!(names::TOKIO_BUSY_RATIO),
            worker_busy: (0..n)
                .map(|w| metrics::gauge!(names::TOKIO_WORKER_BUSY_RATIO, labels::WORKER => w.to_string()))
                .collect(),
            parks: metrics::counter!(names::TOKIO_WORKER_PARKS),
        }
    }

    fn sample(&mut self) {
        let Some(m) = self.intervals.next() else {
            return;
        };
        self.workers.set(m.workers_count as f64);
        self.alive.set(m.live_tasks_count as f64);
        self.queue.set(m.global_queue_depth as f64);
        // tokio-metrics' `busy_ratio` sums over workers (up to N); ours is
        // the average, so 1 means every worker busy whatever N is.
        let capacity = m.elapsed.as_secs_f64() * m.workers_count.max(1) as f64;
        if capacity > 0.0 {
            self.busy
                .set((m.total_busy_duration.as_secs_f64() / capacity).clamp(0.0, 1.0));
        }
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last_at).as_secs_f64();
        self.last_at = now;
        let mut parks = 0u64;
        for (w, (last, gauge)) in self.last_busy.iter_mut().zip(&self.worker_busy).enumerate() {
            let busy = self.runtime.worker_total_busy_duration(w);
            if elapsed > 0.0 {
                let delta = busy.saturating_sub(*last).as_secs_f64();
                gauge.set((delta / elapsed).clamp(0.0, 1.0));
            }
            *last = busy;
            parks = parks.saturating_add(self.runtime.worker_park_count(w));
        }
        self.parks.absolute(parks);
    }
}

/// HELP text and units of the `tokio_*` series.
fn describe() {
    describe_gauge!(
        names::TOKIO_WORKERS,
        Unit::Count,
        "Worker threads of the tokio runtime."
    );
    describe_gauge!(
        names::TOKIO_ALIVE_TASKS,
        Unit::Count,
        "Tokio tasks spawned and not yet finished."
    );
    describe_gauge!(
        names::TOKIO_GLOBAL_QUEUE_DEPTH,
        Unit::Count,
        "Tokio tasks waiting in the runtime's global queue."
    );
    describe_gauge!(
        names::TOKIO_BUSY_RATIO,
        "Share (0-1) of the last sampling interval the tokio workers spent running tasks, averaged over workers."
    );
    describe_gauge!(
        names::TOKIO_WORKER_BUSY_RATIO,
        "Share (0-1) of the last sampling interval one tokio worker spent running tasks, by worker."
    );
    describe_counter!(
        names::TOKIO_WORKER_PARKS,
        Unit::Count,
        "Times the tokio workers parked (went idle), summed over workers."
    );
}

//! The non-blocking line writer: a bounded byte queue drained by one
//! background thread.
//!
//! Lines are appended to a shared buffer under a short lock; the thread swaps
//! that buffer for its own empty one and writes it out. Both buffers keep
//! their capacity, so the steady state allocates nothing.
//!
//! Overload policy (documented in `docs/logging.md`):
//! - INFO/DEBUG/TRACE/WARN lines that do not fit in the queue are dropped and
//!   counted in `glimpse_obs_dropped_total{signal="logs"}`.
//! - ERROR and audit lines ("critical") may use a reserve as large as the
//!   queue itself; when even that is full they wait for the writer, up to
//!   [`CRITICAL_WAIT`]. A stdout that makes no progress for that long is
//!   *stuck*: critical lines are then dropped and counted without waiting,
//!   until the writer makes progress again, so a dead stdout cannot stall
//!   every failing request.

use std::{
    io::Write,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::config::BoxWriter;

/// How long a critical line waits for room before stdout counts as stuck.
pub(crate) const CRITICAL_WAIT: Duration = Duration::from_secs(1);

/// How long the writer keeps polling after a batch before it sleeps until
/// signalled. Under load, producers then append without a futex wake-up per
/// line (a system call that cost more than formatting the line; see
/// `benches/logging.rs`); an idle service still sleeps for good.
const LINGER: Duration = Duration::from_millis(2);

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// The writer thread holds a batch it has not finished writing.
    writing: bool,
    /// The last critical wait timed out and the writer has not progressed since.
    stuck: bool,
    /// The writer waits for a signal (not lingering): only then do producers
    /// pay for a wake-up.
    sleeping: bool,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when lines arrive or the queue closes.
    work: Condvar,
    /// Signalled when the writer finished a batch.
    progress: Condvar,
    capacity: usize,
    dropped: AtomicU64,
    dropped_counter: metrics::Counter,
}

/// Handle to the queue; cheap to clone.
#[derive(Clone)]
pub(crate) struct LineQueue {
    shared: Arc<Shared>,
}

/// Owns the background thread; joining it on shutdown.
pub(crate) struct WriterThread {
    queue: LineQueue,
    handle: Option<JoinHandle<()>>,
}

impl LineQueue {
    /// Start the writer thread over `out`, with `capacity` bytes of queue.
    pub(crate) fn start(
        out: BoxWriter,
        capacity: usize,
    ) -> Result<(Self, WriterThread), crate::Error> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::with_capacity(capacity.min(1 << 20)),
                ..State::default()
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            capacity,
            dropped: AtomicU64::new(0),
            dropped_counter: metrics::counter!(crate::names::DROPPED, "signal" => "logs"),
        });
        let queue = Self { shared };
        let worker = queue.clone();
        let handle = std::thread::Builder::new()
            .name("glimpse-log-writer".into())
            .spawn(move || worker.run(out))
            .map_err(|source| crate::Error::Io {
                context: "starting the log writer thread",
                source,
            })?;
        Ok((
            queue.clone(),
            WriterThread {
                queue,
                handle: Some(handle),
            },
        ))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the buffer inconsistent
        // (appends are single extend calls), so poisoning is ignored.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue one complete line. `critical` lines (ERROR, audit) are kept
    /// while stdout is merely slow; see the module docs.
    pub(crate) fn push(&self, line: &[u8], critical: bool) {
        let cap = self.shared.capacity;
        let mut st = self.lock();
        if st.closed {
            drop(st);
            self.count_drop();
            return;
        }
        let fits =
            |st: &State, limit: usize| st.buf.is_empty() || st.buf.len() + line.len() <= limit;
        if fits(&st, cap) || (critical && fits(&st, 2 * cap)) {
            self.append(st, line);
            return;
        }
        if !critical || st.stuck {
            drop(st);
            self.count_drop();
            return;
        }
        let deadline = Instant::now() + CRITICAL_WAIT;
        loop {
            let now = Instant::now();
            if now >= deadline {
                st.stuck = true;
                drop(st);
                self.count_drop();
                return;
            }
            st = self
                .shared
                .progress
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if fits(&st, 2 * cap) {
                self.append(st, line);
                return;
            }
        }
    }

    fn append(&self, mut st: MutexGuard<'_, State>, line: &[u8]) {
        st.buf.extend_from_slice(line);
        let wake = std::mem::take(&mut st.sleeping);
        drop(st);
        if wake {
            self.shared.work.notify_one();
        }
    }

    fn count_drop(&self) {
        self.count_drops(1);
    }

    fn count_drops(&self, lines: u64) {
        self.shared.dropped.fetch_add(lines, Ordering::Relaxed);
        self.shared.dropped_counter.increment(lines);
    }

    /// Lines dropped since start.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Wait until every line queued before this call is written, up to `timeout`.
    /// Returns whether it finished.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        // A timeout past what `Instant` can hold (`Duration::MAX`) means no
        // deadline.
        let deadline = Instant::now().checked_add(timeout);
        let mut st = self.lock();
        while !st.buf.is_empty() || st.writing {
            st = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    self.shared
                        .progress
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self
                    .shared
                    .progress
                    .wait(st)
                    .unwrap_or_else(|e| e.into_inner()),
            };
        }
        true
    }

    fn run(self, mut out: BoxWriter) {
        let mut batch: Vec<u8> = Vec::new();
        let mut wrote = false;
        loop {
            {
                let mut st = self.lock();
                st.writing = false;
                st.stuck = false;
                self.shared.progress.notify_all();
                if wrote && st.buf.is_empty() && !st.closed {
                    st = self
                        .shared
                        .work
                        .wait_timeout(st, LINGER)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                while st.buf.is_empty() && !st.closed {
                    st.sleeping = true;
                    st = self.shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                st.sleeping = false;
                if st.buf.is_empty() && st.closed {
                    return;
                }
                batch.clear();
                std::mem::swap(&mut st.buf, &mut batch);
                st.writing = true;
            }
            // Room was made: wake critical lines waiting for it.
            self.shared.progress.notify_all();
            // A failing stdout (closed pipe) loses these lines; there is no
            // better place to report that than the counter.
            if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
                // Count lines, not batches (part of the batch may have been
                // written; counting all of it errs on the side of "lost").
                let lines = batch.iter().filter(|&&b| b == b'\n').count().max(1);
                self.count_drops(lines as u64);
            }
            batch.clear();
            wrote = true;
        }
    }
}

impl WriterThread {
    /// Flush what is queued, stop the thread, and report whether it finished
    /// within `timeout` (a stuck stdout leaves the thread blocked; it is
    /// detached then, never joined forever).
    pub(crate) fn shutdown(&mut self, timeout: Duration) -> bool {
        if self.handle.is_none() {
            return true;
        }
        let done = self.queue.flush(timeout);
        {
            let mut st = self.queue.lock();
            st.closed = true;
            st.sleeping = false;
        }
        self.queue.shared.work.notify_all();
        let handle = self.handle.take();
        if done && let Some(h) = handle {
            let _ = h.join();
        }
        // Not done: the thread is blocked in a write to a stuck stdout; it is
        // detached and exits by itself if the write ever returns.
        done
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<u8>>>);
    impl Write for Collect {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Blocks every write until released.
    #[derive(Clone)]
    struct Gate(Arc<AtomicBool>, Collect);
    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            while !self.0.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(2));
            }
            self.1.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_queued_line_is_written_by_shutdown() {
        let out = Collect::default();
        let (q, mut t) = LineQueue::start(Box::new(out.clone()), 1 << 20).unwrap();
        for i in 0..10_000 {
            q.push(format!("{i}\n").as_bytes(), false);
        }
        assert!(t.shutdown(Duration::from_secs(5)));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count() as u64 + q.dropped(), 10_000);
    }

    /// stdout closed: every write fails.
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_lost_to_a_failing_stdout_are_counted_one_by_one() {
        let (q, mut t) = LineQueue::start(Box::new(Closed), 1 << 20).unwrap();
        for i in 0..100 {
            q.push(format!("{i}\n").as_bytes(), false);
        }
        t.shutdown(Duration::from_secs(5));
        assert_eq!(q.dropped(), 100);
    }

    #[test]
    fn flush_and_shutdown_accept_an_unbounded_timeout() {
        let out = Collect::default();
        let (q, mut t) = LineQueue::start(Box::new(out.clone()), 1 << 20).unwrap();
        q.push(b"one\n", false);
        assert!(q.flush(Duration::MAX));
        assert_eq!(out.0.lock().unwrap().as_slice(), b"one\n");
        q.push(b"two\n", false);
        assert!(t.shutdown(Duration::MAX));
        assert_eq!(out.0.lock().unwrap().as_slice(), b"one\ntwo\n");
    }

    #[test]
    fn a_blocked_writer_drops_info_but_keeps_critical_lines_within_the_reserve() {
        let open = Arc::new(AtomicBool::new(false));
        let out = Collect::default();
        let (q, mut t) =
            LineQueue::start(Box::new(Gate(open.clone(), out.clone())), 64 * 1024).unwrap();
        let line = [b'x'; 1023];
        let mut l = line.to_vec();
        l.push(b'\n');
        for _ in 0..200 {
            q.push(&l, false);
        }
        assert!(q.dropped() > 0, "INFO lines beyond the queue are dropped");
        let before = q.dropped();
        for _ in 0..50 {
            q.push(b"critical\n", true);
        }
        assert_eq!(q.dropped(), before, "critical lines use the reserve");
        open.store(true, Ordering::Relaxed);
        assert!(t.shutdown(Duration::from_secs(5)));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().filter(|l| *l == "critical").count(), 50);
    }
}

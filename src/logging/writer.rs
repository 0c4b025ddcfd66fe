//! The non-blocking line writer: bounded byte queues drained by one
//! background thread.
//!
//! Lines are appended to a shared buffer under a short lock; the thread swaps
//! that buffer for its own empty one and writes it out in chunks of whole
//! lines ([`CHUNK`] bytes or one line, whichever is longer). Both buffers
//! keep their capacity, so the steady state allocates nothing.
//!
//! Overload policy (documented in `docs/logging.md`):
//! - Progress is measured in bytes: every `write` that returns counts, so a
//!   stdout that is slow but moving is never taken for a stuck one.
//! - INFO/DEBUG/TRACE/WARN lines that do not fit in the queue are dropped and
//!   counted in `glimpse_obs_dropped_total{signal="logs"}`.
//! - Critical lines (ERROR, audit, `log_type` payment) go to a priority lane
//!   when the writer has a backlog: the writer takes it before the next
//!   chunk of other lines, so a critical line waits at most one chunk
//!   behind INFO. The lane may use the whole queue twice over; when it is
//!   full, queued INFO lines are dropped (and counted) to make room first.
//! - A critical line is never waited for inside a tokio runtime: when even
//!   the lane is full (critical lines alone arrive faster than stdout takes
//!   them), it is dropped and counted. On a thread outside any runtime it
//!   waits for room while stdout makes progress, and gives up after
//!   [`CRITICAL_WAIT`] without a single byte written: stdout is then
//!   *stuck*, and critical lines are dropped without waiting until it moves.
//! - Lines are never cut: a chunk always ends at a line end, and shutdown
//!   past its timeout stops the writer between chunks, waiting for the chunk
//!   in flight while its bytes keep moving (see [`WriterThread::shutdown`]).

use std::{
    io::Write,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::config::BoxWriter;

/// How long a critical line waits (off the runtime) without a byte of
/// progress before stdout counts as stuck.
pub(crate) const CRITICAL_WAIT: Duration = Duration::from_secs(1);

/// How long the writer keeps polling after a batch before it sleeps until
/// signalled. Under load, producers then append without a futex wake-up per
/// line (a system call that cost more than formatting the line; see
/// `benches/logging.rs`); an idle service still sleeps for good.
const LINGER: Duration = Duration::from_millis(2);

/// The writer's unit of work: it looks at the priority lane between chunks.
/// 32 KiB is 16 ms at 2 MB/s, the longest a critical line waits behind INFO
/// on a slow stdout, and few enough system calls on a fast one.
pub(crate) const CHUNK: usize = 32 * 1024;

/// At shutdown past the timeout, how long the chunk in flight may go
/// without a byte written before the writer is left mid-line (stdout is
/// dead then; nobody reads the rest).
const SHUTDOWN_STALL: Duration = Duration::from_millis(250);

/// At shutdown past the timeout, the longest wait for the chunk in flight,
/// however it progresses.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    /// Lines in arrival order.
    buf: Vec<u8>,
    /// Critical lines queued while the writer has a backlog: written first.
    prio: Vec<u8>,
    /// The writer waits for a signal (not lingering): only then do producers
    /// pay for a wake-up.
    sleeping: bool,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when lines arrive or the queue closes.
    work: Condvar,
    /// Signalled when the writer took or wrote bytes, if `waiters` says
    /// anyone waits: a condvar signal is a system call even with nobody
    /// waiting, and the writer progresses once per chunk.
    progress: Condvar,
    capacity: usize,
    dropped: AtomicU64,
    dropped_counter: metrics::Counter,
    // Progress is kept in atomics, so the writer takes the lock only to
    // take lines, never per chunk written: under load the producers hold
    // that lock once per line.
    /// Bytes the writer took and has not written yet.
    held: AtomicUsize,
    /// Bytes written since start: the progress producers and shutdown watch.
    written: AtomicU64,
    /// A critical wait saw no progress for [`CRITICAL_WAIT`]; cleared by
    /// the next byte written.
    stuck: AtomicBool,
    /// Threads waiting on `progress` (a critical line off the runtime, a
    /// flush, shutdown).
    waiters: AtomicUsize,
    /// `prio` holds lines: the writer looks before each chunk.
    prio_pending: AtomicBool,
    /// Shutdown timed out: stop at the next chunk boundary.
    abandon: AtomicBool,
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

/// Number of lines (newlines) in `bytes`, at least one: a partial line
/// lost counts as a line.
fn lines_in(bytes: &[u8]) -> u64 {
    (bytes.iter().filter(|&&b| b == b'\n').count() as u64).max(1)
}

/// The end of the chunk starting at `pos`: the last line end within
/// [`CHUNK`] bytes, or the end of the first line when it is longer.
fn chunk_end(bytes: &[u8], pos: usize) -> usize {
    let window_end = (pos + CHUNK).min(bytes.len());
    if window_end == bytes.len() {
        return window_end;
    }
    if let Some(i) = bytes[pos..window_end].iter().rposition(|&b| b == b'\n') {
        return pos + i + 1;
    }
    bytes[window_end..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| window_end + i + 1)
}

/// Whether the calling thread runs tasks of a tokio runtime, where a wait
/// would stall every task of that worker.
fn on_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
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
            held: AtomicUsize::new(0),
            written: AtomicU64::new(0),
            stuck: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            prio_pending: AtomicBool::new(false),
            abandon: AtomicBool::new(false),
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

    /// Wait on `progress` up to `timeout`; callers count themselves in
    /// `waiters` around their waits. The count
    /// and the progress atomics are `SeqCst`: either the writer sees the
    /// waiter and signals, or the waiter sees the writer's progress.
    fn wait_progress<'a>(
        &self,
        st: MutexGuard<'a, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        match timeout {
            Some(t) => {
                self.shared
                    .progress
                    .wait_timeout(st, t)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => self
                .shared
                .progress
                .wait(st)
                .unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Signal `progress` if anyone waits.
    fn signal_progress(&self) {
        if self.shared.waiters.load(Ordering::SeqCst) > 0 {
            // Taking the lock first: a waiter that counted itself is then
            // inside its wait, so the signal cannot fall between its check
            // and its wait.
            drop(self.lock());
            self.shared.progress.notify_all();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the buffers
        // inconsistent (appends are single extend calls), so poisoning is
        // ignored.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue one complete line. `critical` lines (ERROR, audit, payment)
    /// overtake the others under pressure; see the module docs.
    pub(crate) fn push(&self, line: &[u8], critical: bool) {
        let cap = self.shared.capacity;
        let mut st = self.lock();
        if st.closed {
            drop(st);
            self.count_drop();
            return;
        }
        if !critical {
            if st.buf.is_empty() || st.buf.len() + line.len() <= cap {
                self.append(st, line, false);
            } else {
                drop(st);
                self.count_drop();
            }
            return;
        }
        // No backlog: keep the line in order with the others (it is
        // written within a chunk anyway).
        let held = self.shared.held.load(Ordering::SeqCst);
        if st.prio.is_empty() && st.buf.len() + held <= CHUNK {
            self.append(st, line, false);
            return;
        }
        let mut seen = self.shared.written.load(Ordering::SeqCst);
        let mut deadline = None;
        let mut counted = false;
        let done = loop {
            if st.prio.is_empty() || st.prio.len() + st.buf.len() + line.len() <= 2 * cap {
                break true;
            }
            if !st.buf.is_empty() {
                // INFO goes first: drop what is queued of it to make room.
                let lost = lines_in(&st.buf);
                st.buf.clear();
                self.count_drops(lost);
                continue;
            }
            if st.closed || self.shared.stuck.load(Ordering::SeqCst) || on_runtime() {
                break false;
            }
            // Off the runtime: wait for room while stdout makes progress.
            if !counted {
                self.shared.waiters.fetch_add(1, Ordering::SeqCst);
                counted = true;
            }
            let now = Instant::now();
            let written = self.shared.written.load(Ordering::SeqCst);
            if written != seen || deadline.is_none() {
                seen = written;
                deadline = Some(now + CRITICAL_WAIT);
            }
            let Some(until) = deadline.filter(|d| *d > now) else {
                self.shared.stuck.store(true, Ordering::SeqCst);
                break false;
            };
            st = self.wait_progress(st, Some(until - now));
        };
        if counted {
            self.shared.waiters.fetch_sub(1, Ordering::SeqCst);
        }
        if done {
            self.append(st, line, true);
        } else {
            drop(st);
            self.count_drop();
        }
    }

    fn append(&self, mut st: MutexGuard<'_, State>, line: &[u8], prio: bool) {
        if prio {
            st.prio.extend_from_slice(line);
            self.shared.prio_pending.store(true, Ordering::Release);
        } else {
            st.buf.extend_from_slice(line);
        }
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
        self.shared.waiters.fetch_add(1, Ordering::SeqCst);
        let done = loop {
            if st.buf.is_empty()
                && st.prio.is_empty()
                && self.shared.held.load(Ordering::SeqCst) == 0
            {
                break true;
            }
            let timeout = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    Some(deadline - now)
                }
                None => None,
            };
            st = self.wait_progress(st, timeout);
        };
        self.shared.waiters.fetch_sub(1, Ordering::SeqCst);
        done
    }

    /// Record `n` bytes written (or, with `lost`, given up) out of what the
    /// writer holds.
    fn progressed(&self, n: usize, lost: bool) {
        if !lost {
            self.shared.written.fetch_add(n as u64, Ordering::SeqCst);
            self.shared.stuck.store(false, Ordering::SeqCst);
        }
        self.shared.held.fetch_sub(n, Ordering::SeqCst);
        self.signal_progress();
    }

    /// Write `bytes` (whole lines), reporting progress after every `write`.
    /// A failing stdout (closed pipe) loses the rest; there is no better
    /// place to report that than the counter.
    fn write_chunk(&self, out: &mut BoxWriter, bytes: &[u8]) {
        let mut off = 0;
        while off < bytes.len() {
            match out.write(&bytes[off..]) {
                Ok(0) => break,
                Ok(n) => {
                    let n = n.min(bytes.len() - off);
                    off += n;
                    self.progressed(n, false);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if off < bytes.len() {
            // Count lines, not bytes: the line cut by the failure counts too.
            self.count_drops(lines_in(&bytes[off..]));
            self.progressed(bytes.len() - off, true);
        } else if out.flush().is_err() {
            self.count_drops(lines_in(bytes));
        }
    }

    fn run(self, mut out: BoxWriter) {
        // `crit` and `rest` hold what the writer took from `prio` and `buf`;
        // `cpos` and `pos` how far they are written.
        let (mut crit, mut cpos) = (Vec::<u8>::new(), 0);
        let (mut rest, mut pos) = (Vec::<u8>::new(), 0);
        let mut wrote = false;
        loop {
            if self.shared.abandon.load(Ordering::SeqCst) {
                return;
            }
            // The next chunk of `rest` needs no lock unless critical lines
            // wait (or are being written).
            let critical = if cpos >= crit.len()
                && pos < rest.len()
                && !self.shared.prio_pending.load(Ordering::Acquire)
            {
                false
            } else {
                let mut st = self.lock();
                loop {
                    if self.shared.abandon.load(Ordering::SeqCst) {
                        return;
                    }
                    if cpos < crit.len() {
                        break true;
                    }
                    if !st.prio.is_empty() {
                        crit.clear();
                        cpos = 0;
                        std::mem::swap(&mut st.prio, &mut crit);
                        self.shared.prio_pending.store(false, Ordering::Release);
                        self.shared.held.fetch_add(crit.len(), Ordering::SeqCst);
                        break true;
                    }
                    if pos < rest.len() {
                        break false;
                    }
                    if !st.buf.is_empty() {
                        rest.clear();
                        pos = 0;
                        std::mem::swap(&mut st.buf, &mut rest);
                        self.shared.held.fetch_add(rest.len(), Ordering::SeqCst);
                        break false;
                    }
                    // Idle: every line taken is written.
                    if self.shared.waiters.load(Ordering::SeqCst) > 0 {
                        self.shared.progress.notify_all();
                    }
                    if st.closed {
                        return;
                    }
                    if std::mem::take(&mut wrote) {
                        st = self
                            .shared
                            .work
                            .wait_timeout(st, LINGER)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                        continue;
                    }
                    st.sleeping = true;
                    st = self.shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
                    st.sleeping = false;
                }
            };
            // Room was made: wake critical lines waiting for it.
            self.signal_progress();
            let (bytes, at) = if critical {
                (&crit, &mut cpos)
            } else {
                (&rest, &mut pos)
            };
            let end = chunk_end(bytes, *at);
            self.write_chunk(&mut out, &bytes[*at..end]);
            *at = end;
            wrote = true;
        }
    }
}

impl WriterThread {
    /// Flush what is queued, stop the thread, and report whether it finished
    /// within `timeout`. Past the timeout the writer stops between chunks,
    /// so no line is cut: the chunk in flight is waited for while its bytes
    /// keep moving (up to [`SHUTDOWN_GRACE`]; a stdout with no progress for
    /// [`SHUTDOWN_STALL`] is dead, and the thread is detached, never joined
    /// forever).
    pub(crate) fn shutdown(&mut self, timeout: Duration) -> bool {
        let Some(handle) = self.handle.take() else {
            return true;
        };
        let shared = &self.queue.shared;
        let done = self.queue.flush(timeout);
        {
            let mut st = self.queue.lock();
            st.closed = true;
            st.sleeping = false;
            shared.abandon.store(!done, Ordering::SeqCst);
        }
        shared.work.notify_all();
        let mut seen = shared.written.load(Ordering::SeqCst);
        let start = Instant::now();
        let mut moved = start;
        while !handle.is_finished() {
            let now = Instant::now();
            if now - start >= SHUTDOWN_GRACE || now - moved >= SHUTDOWN_STALL {
                // Blocked in a write to a dead stdout: detached; it exits
                // by itself if the write ever returns.
                return done;
            }
            std::thread::sleep(Duration::from_millis(5));
            let written = shared.written.load(Ordering::SeqCst);
            if written != seen {
                seen = written;
                moved = Instant::now();
            }
        }
        let _ = handle.join();
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

    /// Takes at most `piece` bytes per write, at `bytes_per_sec`.
    struct Throttled {
        out: Collect,
        piece: usize,
        bytes_per_sec: f64,
    }
    impl Write for Throttled {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = b.len().min(self.piece);
            std::thread::sleep(Duration::from_secs_f64(n as f64 / self.bytes_per_sec));
            self.out.write(&b[..n])
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(tag: &str, len: usize) -> Vec<u8> {
        let mut l = tag.as_bytes().to_vec();
        l.resize(len - 1, b'.');
        l.push(b'\n');
        l
    }

    #[test]
    fn chunks_end_at_line_ends() {
        let mut bytes = Vec::new();
        for _ in 0..100 {
            bytes.extend_from_slice(&line("a", 1000));
        }
        let end = chunk_end(&bytes, 0);
        assert_eq!(end, 32_000, "the last whole line within the chunk");
        assert_eq!(chunk_end(&bytes, 96_000), 100_000);
        let long = line("b", 3 * CHUNK);
        assert_eq!(chunk_end(&long, 0), long.len(), "a long line is one chunk");
    }

    #[test]
    fn a_critical_line_overtakes_an_info_backlog_on_a_slow_stdout() {
        let out = Collect::default();
        let slow = Throttled {
            out: out.clone(),
            piece: 4096,
            bytes_per_sec: 2e6,
        };
        let (q, mut t) = LineQueue::start(Box::new(slow), 1 << 20).unwrap();
        for _ in 0..1000 {
            q.push(&line("info", 1000), false);
        }
        // The writer took its first batch: about 0.5 s of INFO at 2 MB/s.
        std::thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        q.push(&line("critical", 200), true);
        while !String::from_utf8_lossy(&out.0.lock().unwrap()).contains("critical") {
            assert!(start.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(1));
        }
        let waited = start.elapsed();
        assert!(
            waited < Duration::from_millis(150),
            "written after one chunk, not the backlog ({waited:?})"
        );
        assert!(t.shutdown(Duration::from_secs(10)));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1001, "nothing lost, no line cut");
    }

    #[test]
    fn critical_lines_never_wait_inside_a_tokio_runtime() {
        let open = Arc::new(AtomicBool::new(false));
        let out = Collect::default();
        let (q, mut t) =
            LineQueue::start(Box::new(Gate(open.clone(), out.clone())), 64 * 1024).unwrap();
        for _ in 0..400 {
            q.push(&line("info", 1000), false);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let start = Instant::now();
        rt.block_on(async {
            for _ in 0..400 {
                q.push(&line("critical", 1000), true);
            }
        });
        assert!(start.elapsed() < Duration::from_millis(200), "no wait");
        assert!(q.dropped() > 0, "beyond the lane, lines are counted");
        open.store(true, Ordering::Relaxed);
        assert!(t.shutdown(Duration::from_secs(5)));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let critical = text.lines().filter(|l| l.starts_with("critical")).count();
        // The whole queue twice over is the lane's room, INFO dropped first.
        assert!(critical >= 127, "{critical} critical lines kept");
        assert_eq!(text.lines().count() as u64 + q.dropped(), 800);
    }

    #[test]
    fn a_shutdown_timeout_never_cuts_a_line() {
        let out = Collect::default();
        let slow = Throttled {
            out: out.clone(),
            piece: 1000,
            bytes_per_sec: 2e6,
        };
        let (q, mut t) = LineQueue::start(Box::new(slow), 8 << 20).unwrap();
        for _ in 0..200 {
            q.push(&line("big", 20_000), true);
        }
        assert!(!t.shutdown(Duration::from_millis(100)), "it timed out");
        let text = out.0.lock().unwrap().clone();
        assert!(!text.is_empty());
        assert_eq!(text.last(), Some(&b'\n'), "the last line is whole");
        assert_eq!(text.len() % 20_000, 0);
    }
}

//! A bounded batch queue in front of a [`Transport`], with its worker on the
//! [`ExportRuntime`].
//!
//! `push` never blocks: it is a `try_send` on a bounded channel; a full
//! queue, or a batcher that has shut down, drops the item and counts it in
//! `glimpse_obs_dropped_total{signal=<label>}`. The worker wakes every
//! `scheduled_delay` (or as soon as a full batch waits), takes up to
//! `max_export_batch_size` items at a time, encodes and exports them; a
//! failed export counts its items as dropped.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use super::{ExportRuntime, Transport};
use crate::{Error, config::BatchSettings};

type Encode<T> = Arc<dyn Fn(Vec<T>) -> Bytes + Send + Sync>;
/// What the worker takes, besides the queue, before each export run: the
/// owner's partly filled item (see [`Batcher::weighted`]).
type Refill<T> = Box<dyn Fn() -> Option<T> + Send + Sync>;
type Reply = std::sync::mpsc::SyncSender<Result<(), String>>;

enum Command {
    Flush(Reply),
    Shutdown(Reply),
}

/// What the callers and the worker share.
struct Shared {
    closed: AtomicBool,
    /// A shutdown ran out of time: the worker exports nothing more.
    abandoned: AtomicBool,
    /// Weight of the export in progress, not yet counted either way.
    in_flight: AtomicUsize,
    /// Weight of what waits in the queue.
    queued: AtomicUsize,
    dropped: AtomicU64,
    label: &'static str,
    /// A full batch waits.
    full: Notify,
}

impl Shared {
    fn drop_items(&self, n: usize) {
        if n == 0 {
            return;
        }
        let n = n as u64;
        self.dropped.fetch_add(n, Ordering::Relaxed);
        // Looked up per drop, not cached: the pipeline may be built before
        // the metrics recorder is installed.
        ::metrics::counter!(
            crate::names::DROPPED,
            crate::names::labels::SIGNAL => self.label
        )
        .increment(n);
    }
}

/// A bounded batch queue exporting through one [`Transport`].
pub(crate) struct Batcher<T> {
    items: mpsc::Sender<T>,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    batch_size: usize,
    weigh: fn(&T) -> usize,
    /// Set once `shutdown` has run, so a second call and `Drop` are no-ops.
    shut_down: Mutex<bool>,
}

impl<T> std::fmt::Debug for Batcher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("label", &self.shared.label)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Batcher<T> {
    /// Start the worker on `runtime` (the probe and the tests; the
    /// pipelines weigh their items with [`Batcher::weighted`]).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn new(
        settings: BatchSettings,
        transport: Transport,
        runtime: &ExportRuntime,
        drop_label: &'static str,
        encode: impl Fn(Vec<T>) -> Bytes + Send + Sync + 'static,
    ) -> Self {
        Self::weighted(
            settings,
            transport,
            runtime,
            drop_label,
            encode,
            |_| 1,
            None,
        )
    }

    /// As [`Batcher::new`] for items that each stand for `weigh(item)`
    /// records (drops are counted in records); `refill`, when given, is
    /// called by the worker before each export run (scheduled, flush,
    /// shutdown) for an item the owner has not queued yet.
    pub(crate) fn weighted(
        settings: BatchSettings,
        transport: Transport,
        runtime: &ExportRuntime,
        drop_label: &'static str,
        encode: impl Fn(Vec<T>) -> Bytes + Send + Sync + 'static,
        weigh: fn(&T) -> usize,
        refill: Option<Refill<T>>,
    ) -> Self {
        let capacity = settings.max_queue_size.max(1);
        let batch_size = settings.max_export_batch_size.clamp(1, capacity);
        let (items, rx) = mpsc::channel(capacity);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            closed: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            label: drop_label,
            full: Notify::new(),
        });
        let worker = Worker {
            rx,
            commands: command_rx,
            shared: Arc::clone(&shared),
            transport,
            encode: Arc::new(encode),
            weigh,
            refill,
            batch_size,
            delay: settings.scheduled_delay,
            export_timeout: settings.export_timeout,
        };
        runtime.handle().spawn(worker.run());
        Self {
            items,
            commands,
            shared,
            batch_size,
            weigh,
            shut_down: Mutex::new(false),
        }
    }

    /// Queue `item` for export; `false` (and the item counted as dropped)
    /// when the queue is full or the batcher has shut down. Never blocks.
    pub(crate) fn push(&self, item: T) -> bool {
        let weight = (self.weigh)(&item);
        if self.shared.closed.load(Ordering::Relaxed) {
            self.shared.drop_items(weight);
            return false;
        }
        self.shared.queued.fetch_add(weight, Ordering::AcqRel);
        match self.items.try_send(item) {
            Ok(()) => {
                let queued = self.items.max_capacity() - self.items.capacity();
                if queued >= self.batch_size {
                    self.shared.full.notify_one();
                }
                true
            }
            Err(_) => {
                sub(&self.shared.queued, weight);
                self.shared.drop_items(weight);
                false
            }
        }
    }

    /// Export everything queued now, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::ShutdownTimeout`] when the export did not finish in time;
    /// [`Error::Export`] when an export failed.
    pub(crate) fn force_flush(&self, timeout: Duration) -> Result<(), Error> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.ask(Command::Flush, timeout)
    }

    /// Stop accepting items, export what is queued, and stop the worker,
    /// waiting at most `timeout`; what could not be exported in time is
    /// counted as dropped. A second call is a no-op.
    ///
    /// # Errors
    /// As [`Batcher::force_flush`].
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        {
            let mut done = self.shut_down.lock().unwrap_or_else(|e| e.into_inner());
            if *done {
                return Ok(());
            }
            *done = true;
        }
        self.shared.closed.store(true, Ordering::Release);
        let result = self.ask(Command::Shutdown, timeout);
        if matches!(result, Err(Error::ShutdownTimeout(_))) {
            // What is still queued or being sent is lost.
            self.shared.abandoned.store(true, Ordering::Release);
            let queued = self.shared.queued.swap(0, Ordering::AcqRel);
            let in_flight = self.shared.in_flight.swap(0, Ordering::AcqRel);
            self.shared.drop_items(queued + in_flight);
        }
        result
    }

    fn ask(&self, command: fn(Reply) -> Command, timeout: Duration) -> Result<(), Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.commands.send(command(tx)).is_err() {
            // The worker is gone (its runtime stopped).
            return Ok(());
        }
        match rx.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Export(e)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::ShutdownTimeout(timeout)),
            // The worker was cancelled (its runtime stopped) mid-way.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Ok(()),
        }
    }
}

impl<T> Batcher<T> {
    /// Items dropped so far (queue full, failed export, shut down).
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// `shutdown` or `Drop` has run: `push` drops.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    /// Count `n` records the owner could not queue as dropped.
    pub(crate) fn count_dropped(&self, n: usize) {
        self.shared.drop_items(n);
    }
}

/// `a -= n`, not below zero (an abandoned shutdown zeroes it under the worker).
fn sub(a: &AtomicUsize, n: usize) {
    let _ = a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
        Some(q.saturating_sub(n))
    });
}

impl<T> Drop for Batcher<T> {
    fn drop(&mut self) {
        // Owners call `shutdown` with their own timeout; without it the
        // worker still exports what is queued, unless its runtime stops first.
        self.shared.closed.store(true, Ordering::Release);
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        let _ = self.commands.send(Command::Shutdown(tx));
    }
}

struct Worker<T> {
    rx: mpsc::Receiver<T>,
    commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    transport: Transport,
    encode: Encode<T>,
    weigh: fn(&T) -> usize,
    refill: Option<Refill<T>>,
    batch_size: usize,
    delay: Duration,
    export_timeout: Duration,
}

impl<T: Send + 'static> Worker<T> {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Flush(reply)) => {
                        let result = self.export_queued().await;
                        let _ = reply.send(result);
                    }
                    Some(Command::Shutdown(reply)) => {
                        self.rx.close();
                        let result = self.export_queued().await;
                        let _ = reply.send(result);
                        return;
                    }
                    None => {
                        self.rx.close();
                        let _ = self.export_queued().await;
                        return;
                    }
                },
                _ = self.shared.full.notified() => {
                    while self.rx.len() >= self.batch_size {
                        let _ = self.export_one().await;
                    }
                }
                _ = tick.tick() => {
                    let _ = self.export_queued().await;
                }
            }
        }
    }

    /// Export everything queued at call time, batch by batch; the first
    /// error is returned, every failed batch counted as dropped.
    async fn export_queued(&mut self) -> Result<(), String> {
        let mut left = self.rx.len();
        let mut result = Ok(());
        while left > 0 {
            match self.export_one().await {
                Ok(0) => break,
                Ok(n) => left = left.saturating_sub(n),
                Err((n, e)) => {
                    left = left.saturating_sub(n);
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
        }
        if self.shared.abandoned.load(Ordering::Acquire) {
            return result;
        }
        if let Some(item) = self.refill.as_ref().and_then(|f| f()) {
            // Counted in `queued` as if it came from the queue.
            self.shared
                .queued
                .fetch_add((self.weigh)(&item), Ordering::AcqRel);
            if let Err((_, e)) = self.export_batch(vec![item]).await
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        result
    }

    /// Export one batch of up to `batch_size` items; `Ok(n)` items sent.
    async fn export_one(&mut self) -> Result<usize, (usize, String)> {
        if self.shared.abandoned.load(Ordering::Acquire) {
            return Ok(0);
        }
        let mut batch = Vec::with_capacity(self.batch_size.min(self.rx.len()));
        while batch.len() < self.batch_size {
            match self.rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        self.export_batch(batch).await
    }

    /// Export `batch` (items taken from the queue, their weight still in
    /// `queued`); `Ok(n)` items sent.
    async fn export_batch(&mut self, batch: Vec<T>) -> Result<usize, (usize, String)> {
        let n = batch.len();
        if n == 0 {
            return Ok(0);
        }
        let weight = batch.iter().map(self.weigh).sum();
        sub(&self.shared.queued, weight);
        self.shared.in_flight.store(weight, Ordering::Release);
        let body = (self.encode)(batch);
        let result =
            match tokio::time::timeout(self.export_timeout, self.transport.export(body)).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "{} export timed out after {:?}",
                    self.transport.signal(),
                    self.export_timeout
                )),
            };
        // Zero when an abandoned shutdown already counted the batch.
        let uncounted = self.shared.in_flight.swap(0, Ordering::AcqRel);
        match result {
            Ok(()) => Ok(n),
            Err(e) => {
                self.shared.drop_items(uncounted);
                Err((n, e))
            }
        }
    }
}

//! Access to the OTLP transport for the crate's own integration tests
//! (`tests/otlp_transport.rs`); hidden, not a public API, may change at
//! any time.

use std::time::Duration;

use bytes::Bytes;

use super::{Batcher, ExportRuntime, Signal, Transport};
use crate::{Config, Error};

fn signal(name: &str) -> Signal {
    match name {
        "metrics" => Signal::Metrics,
        "logs" => Signal::Logs,
        _ => Signal::Traces,
    }
}

/// One signal's transport on its own export runtime.
#[derive(Debug)]
pub struct Probe {
    runtime: ExportRuntime,
    transport: Transport,
}

impl Probe {
    /// The transport of `signal` (`traces`, `metrics` or `logs`) as
    /// `config` resolves it; `None` without an endpoint.
    ///
    /// ```
    /// use glimpse_obs::__otlp_probe::Probe;
    /// assert!(Probe::new(&glimpse_obs::Config::default(), "logs")?.is_none());
    /// # Ok::<(), glimpse_obs::Error>(())
    /// ```
    ///
    /// # Errors
    /// As the transport's construction.
    pub fn new(config: &Config, signal_name: &str) -> Result<Option<Self>, Error> {
        let runtime = ExportRuntime::start()?;
        let Some(transport) = Transport::new(config, signal(signal_name), &runtime)? else {
            return Ok(None);
        };
        Ok(Some(Self { runtime, transport }))
    }

    /// Export `body` on the export runtime, waiting for the result.
    ///
    /// # Errors
    /// What the export returned.
    pub fn export(&self, body: Vec<u8>) -> Result<(), Error> {
        // The runtime's own thread drives its I/O and timers.
        self.runtime
            .handle()
            .block_on(self.transport.export(Bytes::from(body)))
    }

    /// A batcher of encoded requests over this transport (a batch's body is
    /// its items concatenated: protobuf merges the repeated fields), with
    /// `queue` slots, `batch` items per export, `delay` between exports.
    pub fn batcher(
        self,
        queue: usize,
        batch: usize,
        delay: Duration,
        label: &'static str,
    ) -> ProbeBatcher {
        let settings = crate::config::BatchSettings {
            max_queue_size: queue,
            scheduled_delay: delay,
            max_export_batch_size: batch,
            export_timeout: Duration::from_secs(30),
        };
        let Self { runtime, transport } = self;
        let batcher = Batcher::new(
            settings,
            transport,
            &runtime,
            label,
            |items: Vec<Vec<u8>>| Bytes::from(items.concat()),
        );
        ProbeBatcher {
            batcher,
            _runtime: runtime,
        }
    }
}

/// A [`Probe`]'s batcher.
#[derive(Debug)]
pub struct ProbeBatcher {
    batcher: Batcher<Vec<u8>>,
    _runtime: ExportRuntime,
}

impl ProbeBatcher {
    /// Queue one encoded request; `false` when dropped.
    pub fn push(&self, body: Vec<u8>) -> bool {
        self.batcher.push(body)
    }

    /// Export what is queued, within `timeout`.
    ///
    /// # Errors
    /// As the batcher's.
    pub fn force_flush(&self, timeout: Duration) -> Result<(), Error> {
        self.batcher.force_flush(timeout)
    }

    /// Shut down within `timeout`.
    ///
    /// # Errors
    /// As the batcher's.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        self.batcher.shutdown(timeout)
    }

    /// Items dropped so far.
    pub fn dropped(&self) -> u64 {
        self.batcher.dropped()
    }
}

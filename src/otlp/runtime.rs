//! The private one-thread Tokio runtime every OTLP export runs on.
//!
//! Why a private runtime: the SDK's `BatchSpanProcessor` runs its own thread
//! and drives each export with `futures_executor::block_on`. tonic and async
//! reqwest need a Tokio reactor there ("there is no reactor running"), and a
//! blocking reqwest client panics when it is built or dropped inside the
//! application's runtime. Handing every export to a one-thread runtime owned
//! by `glimpse_obs` works the same whether the application runs a
//! multi-thread runtime, a current-thread runtime or none, never borrows the
//! application's threads, and lets shutdown cancel a stuck export by stopping
//! that runtime.

use std::{sync::Mutex, time::Duration};

use opentelemetry::Context;
use tokio::runtime::Handle;

use crate::Error;

/// A one-thread Tokio runtime on its own OS thread, for exports only.
#[derive(Debug)]
pub(crate) struct ExportRuntime {
    handle: Handle,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl ExportRuntime {
    pub(crate) fn start() -> Result<Self, Error> {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("glimpse-otlp".to_owned())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(rt.handle().clone()));
                // Anything the transport stack traces here must not become
                // spans that are exported in turn.
                let _suppressed = Context::enter_telemetry_suppressed_scope();
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
                // Cancels exports still running; returns promptly.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|source| Error::Io {
                context: "starting the OTLP export thread",
                source,
            })?;
        let handle = ready_rx
            .recv()
            .map_err(|_| Error::Export("the OTLP export thread stopped while starting".to_owned()))?
            .map_err(|source| Error::Io {
                context: "starting the OTLP export runtime",
                source,
            })?;
        Ok(Self {
            handle,
            stop: Mutex::new(Some(stop_tx)),
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Stop the runtime, cancelling any export in flight. Does not wait.
    pub(crate) fn stop(&self) {
        if let Some(tx) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_runtime_starts_and_stops_inside_and_outside_a_runtime() {
        let rt = ExportRuntime::start().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        rt.handle().spawn(async move { tx.send(2).unwrap() });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(2));
        rt.stop();
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        current.block_on(async {
            let rt = ExportRuntime::start().unwrap();
            let answer = rt.handle().spawn(async { 42 }).await.unwrap();
            assert_eq!(answer, 42);
            drop(rt);
        });
    }
}

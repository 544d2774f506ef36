//! The threads actors run on: a tokio runtime of their own, apart from the
//! one that serves SQL sessions and runs the checkpoint coordinator. Actors
//! keep every thread of theirs busy under load; sharing threads with them
//! kept a `SELECT 1` waiting for seconds and delayed barrier
//! acknowledgements, which made checkpoints look slower than they were.

use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};

use crate::{Error, Result};

pub(crate) struct ActorThreads {
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
}

impl ActorThreads {
    /// One worker per core: actors are CPU-bound, and more workers than
    /// cores only adds switching.
    pub fn start() -> Result<Self> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("tidemark-actor")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the actor threads: {e}")))?;
        let handle = runtime.handle().clone();
        Ok(Self {
            runtime: Mutex::new(Some(runtime)),
            handle,
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The runtime, unless it was already stopped.
    fn take_runtime(&self) -> Option<Runtime> {
        self.runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Stops the actors and waits (up to `patience`) for their threads to
    /// end. A process must not exit while threads that used RocksDB are
    /// still ending: their thread-local cleanup would meet RocksDB's
    /// statics already destroyed, and abort.
    pub async fn stop(&self, patience: Duration) {
        if let Some(runtime) = self.take_runtime() {
            let _ = tokio::task::spawn_blocking(move || runtime.shutdown_timeout(patience)).await;
        }
    }
}

impl Drop for ActorThreads {
    /// Stops the actors without waiting for them: dropping a runtime blocks,
    /// which is not allowed inside the async code that drops the last handle.
    fn drop(&mut self) {
        if let Some(runtime) = self.take_runtime() {
            runtime.shutdown_background();
        }
    }
}

//! The threads actors run on: a tokio runtime of their own, apart from the
//! one that serves SQL sessions and runs the checkpoint coordinator. Actors
//! keep every thread of theirs busy under load; sharing threads with them
//! kept a `SELECT 1` waiting for seconds and delayed barrier
//! acknowledgements, which made checkpoints look slower than they were.

use tokio::runtime::{Builder, Handle, Runtime};

use crate::{Error, Result};

pub(crate) struct ActorThreads {
    runtime: Option<Runtime>,
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
            runtime: Some(runtime),
            handle,
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for ActorThreads {
    /// Stops the actors without waiting for them: dropping a runtime blocks,
    /// which is not allowed inside the async code that drops the last handle.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

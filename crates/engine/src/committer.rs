//! Writes acknowledged epochs to the store, in order, on a thread of its own:
//! a write takes up to seconds, and the coordinator keeps taking
//! acknowledgements and injecting barriers meanwhile.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tidemark_state::{StateStore, WriteBatch};
use tidemark_types::Epoch;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use crate::checkpoints::{batch_size, CheckpointLog, CheckpointStats};
use crate::outputs::Shared;
use crate::Result;

/// An epoch every actor has acknowledged, with everything it writes.
pub(crate) struct Ready {
    pub epoch: Epoch,
    pub batch: WriteBatch,
    pub injected: Instant,
    pub aligned: Duration,
    pub waiters: Vec<oneshot::Sender<Result<Epoch>>>,
}

/// The outcome of one commit, back to the coordinator, which answers the
/// waiters: after a refused commit it marks every job failed first, so a
/// `FLUSH` that fails is never followed by a read that does not.
pub(crate) struct Committed {
    pub epoch: Epoch,
    /// The first commit the store refused: this one or an earlier one.
    pub failure: Option<(Epoch, String)>,
    pub waiters: Vec<oneshot::Sender<Result<Epoch>>>,
}

/// Starts the committer; it ends once the returned sender is dropped and
/// every epoch sent before is written.
pub(crate) fn start(
    store: Arc<dyn StateStore>,
    shared: Arc<Shared>,
    log: CheckpointLog,
    done: UnboundedSender<Committed>,
) -> std::io::Result<(mpsc::Sender<Ready>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<Ready>();
    let thread = std::thread::Builder::new()
        .name("tidemark-commit".into())
        .spawn(move || {
            // The first commit the store refused. No later epoch commits
            // after it: it would lack that epoch's changes.
            let mut broken: Option<(Epoch, String)> = None;
            for ready in rx {
                let epoch = ready.epoch;
                let (writes, bytes) = batch_size(&ready.batch);
                let started = Instant::now();
                if broken.is_none() {
                    if let Err(e) = store.commit(epoch, ready.batch) {
                        tracing::error!(epoch, error = %e, "checkpoint commit failed; no later checkpoint will commit");
                        broken = Some((epoch, e.to_string()));
                    }
                }
                log.record(CheckpointStats {
                    epoch,
                    committed_at: SystemTime::now(),
                    duration: ready.injected.elapsed(),
                    aligned: ready.aligned,
                    write: started.elapsed(),
                    writes,
                    bytes,
                    ok: broken.is_none(),
                });
                shared.settle(epoch);
                let _ = done.send(Committed {
                    epoch,
                    failure: broken.clone(),
                    waiters: ready.waiters,
                });
            }
        })?;
    Ok((tx, thread))
}

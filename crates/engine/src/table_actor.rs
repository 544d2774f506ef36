//! The actor that owns a table: it applies DML in arrival order, answers each
//! statement, and streams the table's changes to the views built on it.

use std::sync::Arc;

use tidemark_state::WriteBatch;
use tidemark_types::{ActorId, Barrier};
use tokio::sync::mpsc::Receiver;
use tokio::sync::oneshot;

use crate::outputs::{supervise, Outputs, Shared};
use crate::table::{DmlRequest, TableState};
use crate::Result;

/// What reaches a table's actor: statements, and barriers from the coordinator,
/// on one channel, so their order decides which epoch each statement is in.
pub enum TableMessage {
    Dml(DmlRequest, oneshot::Sender<Result<u64>>),
    Barrier(Barrier),
}

pub struct TableActor {
    pub id: ActorId,
    pub state: TableState,
    pub input: Receiver<TableMessage>,
    pub outputs: Outputs,
    pub shared: Arc<Shared>,
}

impl TableActor {
    pub fn spawn(mut self, name: String) {
        let span = tracing::info_span!("table", id = self.id, table = %name);
        let (id, shared) = (self.id, Arc::clone(&self.shared));
        supervise(id, shared, span, async move { self.run_inner().await });
    }

    async fn run_inner(&mut self) -> Result<()> {
        while let Some(msg) = self.input.recv().await {
            match msg {
                TableMessage::Dml(request, reply) => match self.state.apply(request) {
                    Ok((count, changes)) => {
                        self.outputs.send(changes.into_iter().collect()).await?;
                        let _ = reply.send(Ok(count));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                TableMessage::Barrier(barrier) => {
                    let mut batch = WriteBatch::default();
                    self.state.take_delta(&mut batch);
                    let state = &self.state;
                    let stop = self
                        .outputs
                        .pass_barrier(barrier, batch, &self.shared, || state.snapshot())
                        .await?;
                    if stop {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

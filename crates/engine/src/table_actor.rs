//! The actor that owns a table: it applies DML in arrival order, answers each
//! statement, and streams the table's changes to the views built on it.

use std::sync::Arc;

use tidemark_state::WriteBatch;
use tidemark_types::{ActorId, Barrier, StreamChunk, Watermark};

use crate::event_time::max_micros;
use tokio::sync::mpsc::Receiver;
use tokio::sync::oneshot;

use crate::operator::SnapshotPages;
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
    /// The last watermark sent, µs.
    pub watermark: Option<i64>,
}

impl TableActor {
    pub fn spawn(mut self, name: String) {
        let span = tracing::info_span!("table", id = self.id, table = %name);
        let (id, shared) = (self.id, Arc::clone(&self.shared));
        supervise(id, shared, span, async move { self.run_inner().await });
    }

    /// The table's new watermark, if the inserted rows advanced it.
    fn watermark_after(&mut self, changes: Option<&StreamChunk>) -> Option<Watermark> {
        let event_time = self.state.event_time()?;
        let latest = max_micros(changes?.batch().column(event_time.column))?;
        let value = latest.saturating_sub(event_time.delay_us);
        if self.watermark.is_some_and(|w| w >= value) {
            return None;
        }
        self.watermark = Some(value);
        Some(Watermark {
            column: event_time.column,
            value,
        })
    }

    async fn run_inner(&mut self) -> Result<()> {
        while let Some(msg) = self.input.recv().await {
            match msg {
                TableMessage::Dml(request, reply) => match self.state.apply(request) {
                    Ok((count, changes)) => {
                        let watermark = self.watermark_after(changes.as_ref());
                        let state = &self.state;
                        self.outputs
                            .send(changes.into_iter().collect(), &mut |c| {
                                state.snapshot_keys(c)
                            })
                            .await?;
                        if let Some(wm) = watermark {
                            self.outputs.send_watermark(wm).await;
                        }
                        let _ = reply.send(Ok(count));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                TableMessage::Barrier(barrier) => {
                    let mut batch = WriteBatch::default();
                    self.state.take_delta(barrier.epoch, &mut batch);
                    let pages = self.outputs.backfill_cursor(&barrier).map(|cursor| {
                        Box::new(self.state.snapshot(cursor)) as Box<dyn SnapshotPages + '_>
                    });
                    let stop = self
                        .outputs
                        .pass_barrier(barrier, batch, &self.shared, pages)
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

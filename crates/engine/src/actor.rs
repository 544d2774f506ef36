//! One running instance of a fragment: merged input, a fused operator chain,
//! and outputs, driven by one task.

use std::sync::Arc;

use tidemark_types::{ActorId, Message};

use crate::chain::Chain;
use crate::durable::ActorRecord;
use crate::merge::Merge;
use crate::metrics::JobMetrics;
use crate::outputs::{supervise, Outputs, Shared};
use crate::Result;

pub struct Actor {
    pub id: ActorId,
    pub merge: Merge,
    pub chain: Chain,
    pub outputs: Outputs,
    pub shared: Arc<Shared>,
    /// Set when this actor's input comes from outside the job: its rows are
    /// the job's rows in.
    pub count_input: Option<Arc<JobMetrics>>,
    /// Rows counted in, restored ones included.
    pub rows_in: u64,
}

impl Actor {
    /// Resumes from the record a checkpoint stored for this actor.
    pub fn restore(&mut self, record: ActorRecord) -> Result<()> {
        self.rows_in = record.rows_in;
        if let Some(m) = &self.count_input {
            m.add_rows_in(record.rows_in as usize);
            if let Some(&w) = record.merged.values().max() {
                m.set_watermark(w);
            }
        }
        for (column, value) in record.sent {
            self.outputs
                .reached(tidemark_types::Watermark { column, value });
        }
        self.merge.restore_watermarks(record.inputs, record.merged)
    }

    pub fn spawn(mut self, name: String) {
        let span = tracing::info_span!("actor", id = self.id, job = %name);
        let (id, shared) = (self.id, Arc::clone(&self.shared));
        supervise(id, shared, span, async move { self.run_inner().await });
    }

    async fn run_inner(&mut self) -> Result<()> {
        while let Some(msg) = self.merge.next().await {
            match msg {
                Message::Chunk(chunk) => {
                    if let Some(m) = &self.count_input {
                        m.add_rows_in(chunk.num_rows());
                        self.rows_in += chunk.num_rows() as u64;
                    }
                    self.chain.on_chunk(chunk, &self.outputs).await?;
                }
                Message::Watermark(wm) => {
                    if let Some(m) = &self.count_input {
                        m.set_watermark(wm.value);
                    }
                    self.chain.on_watermark(wm, &mut self.outputs).await?;
                }
                Message::Barrier(barrier) => {
                    let (inputs, merged) = self.merge.watermarks();
                    let rows_in = self.rows_in;
                    let record = |outputs: &Outputs| ActorRecord {
                        rows_in,
                        sent: outputs.watermarks().clone(),
                        inputs,
                        merged,
                        source: None,
                    };
                    let stop = self
                        .chain
                        .on_barrier(barrier, &mut self.outputs, &self.shared, record)
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

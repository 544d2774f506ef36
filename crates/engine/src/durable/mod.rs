//! What a streaming job keeps in the store so that a restart resumes it from
//! its last checkpoint instead of recomputing it: each operator's state, each
//! actor's record (input and output watermarks, source offsets, counters),
//! and the job record that says which plan the state belongs to.
//!
//! Key layout, all in the job's state table (`job_state_table(view)`):
//! `[fragment u32][operator u16][partition u16][operator's own key]`, where
//! operator [`ACTOR_RECORD`] is the actor's record and fragment
//! [`JOB_RECORD_FRAGMENT`] the job record. State read back by key rather
//! than at restore sits at the same place in the job's keyed table
//! ([`keyed_prefix`]).

mod actor_record;
mod codec;
mod keyed;
mod scalar_rows;
mod stored_windows;

pub(crate) use actor_record::{ActorRecord, SourceRecord, SplitRecord};
pub(crate) use codec::{Decoder, Encoder};
pub use keyed::{KeyedReader, StoreKeyed};
pub(crate) use scalar_rows::{merge_row, ScalarRows};
pub(crate) use stored_windows::StoredWindows;

use tidemark_plan::{FragmentId, RelationId};
use tidemark_state::{job_keyed_table, job_state_table, table_key, TableId};

/// Whether an operator's state survives a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// Keeps nothing between chunks.
    Stateless,
    /// Writes its state at every checkpoint and reads it back on restore.
    Checkpointed,
    /// Cannot restore its state: a job holding it is recomputed from its
    /// inputs after a restart, for this reason.
    Recompute(String),
}

/// The operator index of an actor's own record.
pub const ACTOR_RECORD: u16 = u16::MAX;

/// The fragment index of the job record.
pub const JOB_RECORD_FRAGMENT: FragmentId = u32::MAX;

/// The key prefix of one operator of one actor: `[fragment][operator][partition]`.
pub fn operator_prefix(
    job: RelationId,
    fragment: FragmentId,
    operator: u16,
    partition: u16,
) -> Vec<u8> {
    place_key(job_state_table(job), fragment, operator, partition)
}

/// The key prefix of one operator's keyed state (see [`KeyedReader`]): the
/// same place, in the job's keyed table.
pub fn keyed_prefix(
    job: RelationId,
    fragment: FragmentId,
    operator: u16,
    partition: u16,
) -> Vec<u8> {
    place_key(job_keyed_table(job), fragment, operator, partition)
}

fn place_key(table: TableId, fragment: FragmentId, operator: u16, partition: u16) -> Vec<u8> {
    let mut key = Vec::with_capacity(12);
    key.extend_from_slice(&fragment.to_be_bytes());
    key.extend_from_slice(&operator.to_be_bytes());
    key.extend_from_slice(&partition.to_be_bytes());
    table_key(table, &key)
}

/// The key of a job's record.
pub fn job_record_key(job: RelationId) -> Vec<u8> {
    table_key(job_state_table(job), &JOB_RECORD_FRAGMENT.to_be_bytes())
}

/// Which plan a job's stored state belongs to: its parallelism and plan
/// text. State is restored only into the same plan at the same parallelism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub parallelism: u32,
    pub plan: String,
}

impl JobRecord {
    pub fn encode(&self) -> Vec<u8> {
        Encoder::new()
            .u32(self.parallelism)
            .bytes(self.plan.as_bytes())
            .finish()
    }

    pub fn decode(bytes: &[u8]) -> crate::Result<Self> {
        let mut d = Decoder::new("job record", bytes);
        let parallelism = d.u32()?;
        let plan = String::from_utf8_lossy(d.bytes()?).into_owned();
        d.end()?;
        Ok(Self { parallelism, plan })
    }
}

/// The event-time progress of a windowed operator: its watermark and the
/// late rows it dropped, kept under the empty key of its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub watermark: Option<i64>,
    pub late: u64,
}

impl Progress {
    /// Stores it under the empty key of an operator's state.
    pub fn put(self, state: &mut tidemark_state::WriteBatch) {
        state.put(Vec::new(), self.encode());
    }

    /// Reads a stored progress back and counts its late rows in the job's
    /// metrics again.
    pub fn restore(
        bytes: &[u8],
        metrics: Option<&crate::metrics::JobMetrics>,
    ) -> crate::Result<Self> {
        let progress = Self::decode(bytes)?;
        if let Some(m) = metrics {
            m.add_late_rows(progress.late as usize);
        }
        Ok(progress)
    }

    pub fn encode(&self) -> Vec<u8> {
        Encoder::new()
            .opt_i64(self.watermark)
            .u64(self.late)
            .finish()
    }

    pub fn decode(bytes: &[u8]) -> crate::Result<Self> {
        let mut d = Decoder::new("operator progress", bytes);
        let progress = Self {
            watermark: d.opt_i64()?,
            late: d.u64()?,
        };
        d.end()?;
        Ok(progress)
    }
}

/// An operator's state scanned back: (key below the operator's prefix, value).
pub type StateEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// Order-preserving bytes of a time, for keys.
pub(crate) fn time_key(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time whose [`time_key`] `key` starts with (8 bytes at least).
pub(crate) fn time_of_key(key: &[u8]) -> i64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&key[..8]);
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The key of the state of the window (or slice) starting at `start`; the
/// empty key is the operator's [`Progress`].
pub fn window_key(start: i64) -> Vec<u8> {
    let mut key = vec![1];
    key.extend_from_slice(&time_key(start));
    key
}

/// The start of a [`window_key`].
pub fn window_of_key(key: &[u8]) -> crate::Result<i64> {
    match key.split_first() {
        Some((1, rest)) if rest.len() == 8 => Ok(time_of_key(rest)),
        _ => Err(crate::Error::Internal(format!(
            "a stored window key of {} bytes",
            key.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keys_sort_as_times() {
        let times = [i64::MIN, -5, 0, 7, i64::MAX];
        for w in times.windows(2) {
            assert!(window_key(w[0]) < window_key(w[1]));
        }
        for t in times {
            assert_eq!(window_of_key(&window_key(t)).unwrap(), t);
        }
        assert!(window_of_key(&[2; 9]).is_err());
        let record = JobRecord {
            parallelism: 4,
            plan: "p".into(),
        };
        assert_eq!(JobRecord::decode(&record.encode()).unwrap(), record);
    }
}

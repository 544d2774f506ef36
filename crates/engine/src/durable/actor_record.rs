//! An actor's own record: what it needs, besides its operators' state, to
//! resume where the checkpoint cut its input.

use std::collections::BTreeMap;

use super::{Decoder, Encoder};
use crate::Result;

/// One source split: where to resume reading, and the event time it reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitRecord {
    pub position: u64,
    pub max_time: Option<i64>,
    pub finished: bool,
}

/// A source reader's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRecord {
    pub watermark: Option<i64>,
    pub malformed: u64,
    pub splits: Vec<SplitRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorRecord {
    /// Rows this actor took in from outside the job.
    pub rows_in: u64,
    /// The last watermark sent, per output column.
    pub sent: BTreeMap<usize, i64>,
    /// Per watermark column: the last watermark of each input…
    pub inputs: BTreeMap<usize, Vec<Option<i64>>>,
    /// …and the merged one last passed on.
    pub merged: BTreeMap<usize, i64>,
    pub source: Option<SourceRecord>,
}

fn encode_map(e: &mut Encoder, map: &BTreeMap<usize, i64>) {
    e.u64(map.len() as u64);
    for (&column, &value) in map {
        e.u32(column as u32).i64(value);
    }
}

fn decode_map(d: &mut Decoder<'_>) -> Result<BTreeMap<usize, i64>> {
    let n = d.len()?;
    (0..n).map(|_| Ok((d.u32()? as usize, d.i64()?))).collect()
}

impl ActorRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u64(self.rows_in);
        encode_map(&mut e, &self.sent);
        e.u64(self.inputs.len() as u64);
        for (&column, values) in &self.inputs {
            e.u32(column as u32).u64(values.len() as u64);
            for &v in values {
                e.opt_i64(v);
            }
        }
        encode_map(&mut e, &self.merged);
        match &self.source {
            None => {
                e.u8(0);
            }
            Some(s) => {
                e.u8(1).opt_i64(s.watermark).u64(s.malformed);
                e.u64(s.splits.len() as u64);
                for split in &s.splits {
                    e.u64(split.position)
                        .opt_i64(split.max_time)
                        .u8(u8::from(split.finished));
                }
            }
        }
        e.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut d = Decoder::new("actor record", bytes);
        let rows_in = d.u64()?;
        let sent = decode_map(&mut d)?;
        let mut inputs = BTreeMap::new();
        for _ in 0..d.len()? {
            let column = d.u32()? as usize;
            let n = d.len()?;
            let values = (0..n).map(|_| d.opt_i64()).collect::<Result<Vec<_>>>()?;
            inputs.insert(column, values);
        }
        let merged = decode_map(&mut d)?;
        let source = if d.bool()? {
            let watermark = d.opt_i64()?;
            let malformed = d.u64()?;
            let n = d.len()?;
            let splits = (0..n)
                .map(|_| {
                    Ok(SplitRecord {
                        position: d.u64()?,
                        max_time: d.opt_i64()?,
                        finished: d.bool()?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Some(SourceRecord {
                watermark,
                malformed,
                splits,
            })
        } else {
            None
        };
        d.end()?;
        Ok(Self {
            rows_in,
            sent,
            inputs,
            merged,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_records_round_trip() {
        let record = ActorRecord {
            rows_in: 12,
            sent: BTreeMap::from([(2, 100)]),
            inputs: BTreeMap::from([(2, vec![Some(5), None])]),
            merged: BTreeMap::from([(2, 5)]),
            source: Some(SourceRecord {
                watermark: Some(-4),
                malformed: 3,
                splits: vec![
                    SplitRecord {
                        position: 77,
                        max_time: Some(9),
                        finished: true,
                    },
                    SplitRecord::default(),
                ],
            }),
        };
        assert_eq!(ActorRecord::decode(&record.encode()).unwrap(), record);
        let plain = ActorRecord::default();
        assert_eq!(ActorRecord::decode(&plain.encode()).unwrap(), plain);
    }
}

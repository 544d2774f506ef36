use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use tidemark_plan::{AggCall, SessionKey};
use tidemark_state::{RowCodec, WriteBatch};
use tidemark_types::{Epoch, Op, StreamChunk, Watermark};

use super::group_cache::GroupCache;
use super::session_ends::SessionEnds;
use super::{evaluate_agg_inputs, rows_to_chunk, selected_args};
use crate::cache_budget::CacheBudget;
use crate::durable::{
    merge_row, Decoder, Encoder, KeyedReader, Progress, ScalarRows, StateEntries,
};
use crate::event_time::{micros_array, timestamp_array};
use crate::metrics::JobMetrics;
use crate::{Error, Operator, Result};

struct Session {
    /// Time of the session's latest row, µs.
    last: i64,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Rows of the current chunk added to the session but not yet to its
    /// accumulators: they are added together, a batch per session.
    pending: Vec<u32>,
    /// The row last emitted for this session.
    emitted: Option<Vec<ScalarValue>>,
}

struct Partition {
    key: Vec<ScalarValue>,
    /// Sessions by start time; disjoint, each more than `gap` from the next.
    sessions: BTreeMap<i64, Session>,
}

/// What the operator is built from.
pub struct SessionAggSpec {
    pub partition: Vec<usize>,
    pub time: usize,
    pub gap: i64,
    pub aggs: Vec<AggCall>,
    pub keys: Vec<SessionKey>,
    pub emit_on_close: bool,
    pub schema: SchemaRef,
}

/// SESSION windows per partition key, aggregated. A row at most `gap` after a
/// session's last row (or before its first) joins it; a row close to two
/// sessions merges them, their accumulators merged through DataFusion's
/// aggregate state. A session is final once the watermark passes its end
/// (last row + gap): it is emitted then (when emitting on close) and purged.
/// Rows whose own session would end before the watermark are late.
pub struct SessionAgg {
    spec: SessionAggSpec,
    args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    codec: RowCodec,
    /// The partitions in memory: all of them, or (with keyed state) the
    /// recently used ones within the cache budget; the others are read
    /// back from the store when a row or a closing session needs them.
    partitions: GroupCache<Partition>,
    keyed: Option<Box<dyn KeyedReader>>,
    /// Whether the store may hold partitions memory does not: after a
    /// restore, or once one was evicted.
    stored_elsewhere: bool,
    epoch: Epoch,
    /// (end, start, partition) of sessions, to find those a watermark
    /// closes; entries of merged or extended sessions go stale and are
    /// skipped.
    ends: SessionEnds,
    /// The watermark windows close by, and the late rows dropped,
    /// restored ones included.
    progress: Progress,
    metrics: Arc<JobMetrics>,
    /// Partitions changed since the last checkpoint.
    unsaved: HashSet<Vec<u8>>,
    /// How a session's accumulator states are stored.
    state_rows: ScalarRows,
}

/// The key of a partition's sessions in the keyed state.
fn partition_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(1);
    k.extend_from_slice(key);
    k
}

/// The estimated bytes of a partition in memory.
fn partition_size(key: &[u8], p: &Partition) -> usize {
    const SESSION: usize = std::mem::size_of::<(i64, Session)>() + 32;
    let sessions: usize = p
        .sessions
        .values()
        .map(|s| {
            let row = s
                .emitted
                .as_ref()
                .map_or(0, |r| r.iter().map(ScalarValue::size).sum());
            SESSION + row + s.accumulators.iter().map(|a| a.size()).sum::<usize>()
        })
        .sum();
    2 * key.len() + std::mem::size_of::<Partition>() + 64 + sessions
}

impl SessionAgg {
    pub fn new(spec: SessionAggSpec, metrics: Arc<JobMetrics>) -> Result<Self> {
        let key_types = spec.keys.iter().enumerate().filter_map(|(i, k)| match k {
            SessionKey::Partition(_) => Some(spec.schema.field(i).data_type().clone()),
            _ => None,
        });
        let codec = RowCodec::new(key_types)?;
        let args = spec.aggs.iter().map(|a| a.expr.expressions()).collect();
        let mut types = Vec::new();
        for a in &spec.aggs {
            let mut probe = a.expr.create_accumulator()?;
            types.extend(probe.state()?.iter().map(|s| s.data_type()));
        }
        Ok(Self {
            spec,
            args,
            codec,
            partitions: GroupCache::new(CacheBudget::new(usize::MAX)),
            keyed: None,
            stored_elsewhere: false,
            epoch: 0,
            ends: SessionEnds::default(),
            progress: Progress::default(),
            metrics,
            unsaved: HashSet::new(),
            state_rows: ScalarRows::new(types)?,
        })
    }

    /// Keeps its partitions within its share of `budget`.
    pub fn with_cache_budget(mut self, budget: Arc<CacheBudget>) -> Self {
        self.partitions.set_budget(budget);
        self
    }

    fn new_accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        Ok(self
            .spec
            .aggs
            .iter()
            .map(|a| a.expr.create_accumulator())
            .collect::<datafusion::error::Result<_>>()?)
    }

    /// A partition's sessions as stored: (start, last, accumulator states) each.
    fn encode_partitions(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let mut rows = Vec::new();
        let mut shapes = Vec::new();
        for key in keys {
            let mut sessions = Vec::new();
            if let Some(p) = self.partitions.get_mut(key) {
                for (&start, session) in p.sessions.iter_mut() {
                    let mut row = Vec::new();
                    for acc in &mut session.accumulators {
                        row.extend(acc.state()?);
                    }
                    rows.push(row);
                    sessions.push((start, session.last));
                }
            }
            shapes.push(sessions);
        }
        let mut encoded = self.state_rows.encode(&rows)?.into_iter();
        let mut values = Vec::with_capacity(keys.len());
        for sessions in shapes {
            let mut e = Encoder::new();
            e.u64(sessions.len() as u64);
            for (start, last) in sessions {
                let state = encoded.next().unwrap_or_default();
                e.i64(start).i64(last).bytes(&state);
            }
            values.push(e.finish());
        }
        Ok(values)
    }

    /// One partition's stored sessions, as [`Self::encode_partitions`]
    /// wrote them.
    fn decode_partition(&self, key: &[u8], value: &[u8]) -> Result<Partition> {
        let mut d = Decoder::new("session partition", value);
        let n = d.len()?;
        let mut parts = Vec::with_capacity(n);
        for _ in 0..n {
            parts.push((d.i64()?, d.i64()?, d.bytes()?));
        }
        d.end()?;
        let states: Vec<&[u8]> = parts.iter().map(|p| p.2).collect();
        let columns = if states.is_empty() {
            Vec::new()
        } else {
            self.state_rows.decode(&states)?
        };
        let key_columns = self.codec.decode([key])?;
        let pkey = key_columns
            .iter()
            .map(|c| ScalarValue::try_from_array(c, 0))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let mut sessions = BTreeMap::new();
        for (i, (start, last, _)) in parts.into_iter().enumerate() {
            let mut accumulators = self.new_accumulators()?;
            merge_row(&mut accumulators, &columns, 0, i)?;
            let mut session = Session {
                last,
                accumulators,
                pending: Vec::new(),
                emitted: None,
            };
            // Every change was emitted by the checkpoint that stored this.
            if !self.spec.emit_on_close {
                session.emitted = Some(self.output_row(&pkey, start, &mut session)?);
            }
            sessions.insert(start, session);
        }
        Ok(Partition {
            key: pkey,
            sessions,
        })
    }

    /// Reads back the partitions of `keys` that left memory; the others
    /// are new, or were deleted by a checkpoint not yet committed.
    fn load_missing<'a>(&mut self, keys: impl Iterator<Item = &'a [u8]>) -> Result<()> {
        let Some(keyed) = self.keyed.as_ref().filter(|_| self.stored_elsewhere) else {
            return Ok(());
        };
        let unsaved = &self.unsaved;
        let stored = self.partitions.read_back(
            keyed.as_ref(),
            keys,
            |k| unsaved.contains(k),
            partition_key,
        )?;
        self.metrics.add_groups_read_back(stored.len());
        for (key, value) in stored {
            let partition = self.decode_partition(&key, &value)?;
            let size = partition_size(&key, &partition);
            self.partitions.insert(key, partition, size, 0);
        }
        Ok(())
    }

    fn output_row(
        &self,
        key: &[ScalarValue],
        start: i64,
        session: &mut Session,
    ) -> Result<Vec<ScalarValue>> {
        let time_type = self
            .spec
            .schema
            .fields()
            .iter()
            .zip(&self.spec.keys)
            .find_map(|(f, k)| {
                matches!(k, SessionKey::WindowStart | SessionKey::WindowEnd)
                    .then(|| f.data_type().clone())
            });
        let time = |micros: i64| -> Result<ScalarValue> {
            let t = time_type.as_ref().and_then(|t| timestamp_array(micros, t));
            match t {
                Some(a) => Ok(ScalarValue::try_from_array(&a, 0)?),
                None => Err(Error::Internal(
                    "session window column is not a timestamp".into(),
                )),
            }
        };
        let mut row = Vec::with_capacity(self.spec.schema.fields().len());
        for k in &self.spec.keys {
            row.push(match k {
                SessionKey::Partition(i) => key[*i].clone(),
                SessionKey::WindowStart => time(start)?,
                SessionKey::WindowEnd => time(session.last.saturating_add(self.spec.gap))?,
            });
        }
        for acc in &mut session.accumulators {
            row.push(acc.evaluate()?);
        }
        Ok(row)
    }

    /// Adds row `row` at time `t` to its partition's sessions (pending
    /// until [`SessionAgg::flush`]); returns the start of the session it
    /// ended in when that session is new to this chunk (or got a new start),
    /// and rows to retract (sessions merged away).
    fn add_row(
        &mut self,
        key: &[u8],
        t: i64,
        row: u32,
        retract: &mut Vec<Vec<ScalarValue>>,
    ) -> Result<Option<i64>> {
        let gap = self.spec.gap;
        let partition = self
            .partitions
            .get_mut(key)
            .ok_or_else(|| Error::Internal("session partition missing".into()))?;
        // Sessions the row touches: start - gap <= t <= last + gap.
        let mut touched = partition
            .sessions
            .range_mut(..=t.saturating_add(gap))
            .rev()
            .take_while(|(_, s)| s.last.saturating_add(gap) >= t);
        let first = touched.next();
        let only = first.is_some() && touched.next().is_none();
        if let (Some((&start, session)), true) = (first, only) {
            // The common case: the row extends one session. A session whose
            // end moves keeps its old entry in `ends`; closing re-files it.
            let first_in_chunk = session.pending.is_empty();
            session.pending.push(row);
            session.last = session.last.max(t);
            if t >= start {
                return Ok(first_in_chunk.then_some(start));
            }
            let end = session.last.saturating_add(gap);
            if let Some(session) = partition.sessions.remove(&start) {
                partition.sessions.insert(t, session);
            }
            self.ends.file(end, t, key);
            return Ok(Some(t));
        }
        let touched: Vec<i64> = partition
            .sessions
            .range(..=t.saturating_add(gap))
            .rev()
            .take_while(|(_, s)| s.last.saturating_add(gap) >= t)
            .map(|(start, _)| *start)
            .collect();
        let mut parts: Vec<(i64, Session)> = touched
            .into_iter()
            .filter_map(|s| partition.sessions.remove(&s).map(|session| (s, session)))
            .collect();
        parts.sort_by_key(|(s, _)| *s);
        let mut parts = parts.into_iter();
        // The earliest session keeps its accumulators; the others merge into them.
        let (mut start, mut merged) = match parts.next() {
            Some(first) => first,
            None => {
                let accumulators = self
                    .spec
                    .aggs
                    .iter()
                    .map(|a| a.expr.create_accumulator())
                    .collect::<datafusion::error::Result<_>>()?;
                let session = Session {
                    last: t,
                    accumulators,
                    pending: Vec::new(),
                    emitted: None,
                };
                (t, session)
            }
        };
        if let Some(old) = merged.emitted.take() {
            retract.push(old);
        }
        for (_, mut session) in parts {
            if let Some(old) = session.emitted.take() {
                retract.push(old);
            }
            merged.last = merged.last.max(session.last);
            merged.pending.append(&mut session.pending);
            for (into, from) in merged
                .accumulators
                .iter_mut()
                .zip(session.accumulators.iter_mut())
            {
                let state: Vec<ArrayRef> = from
                    .state()?
                    .into_iter()
                    .map(|v| v.to_array())
                    .collect::<datafusion::error::Result<_>>()?;
                into.merge_batch(&state)?;
            }
        }
        start = start.min(t);
        merged.last = merged.last.max(t);
        merged.pending.push(row);
        let end = merged.last.saturating_add(gap);
        partition.sessions.insert(start, merged);
        self.ends.file(end, start, key);
        Ok(Some(start))
    }

    /// Adds the pending rows of the sessions at `touched` to their
    /// accumulators: `values` and `filters` are the chunk's aggregate inputs.
    fn flush(
        &mut self,
        touched: &[(&[u8], i64)],
        values: &[Vec<ArrayRef>],
        filters: &[Option<BooleanArray>],
    ) -> Result<()> {
        for &(key, start) in touched {
            let Some(session) = self
                .partitions
                .get_mut(key)
                .and_then(|p| p.sessions.get_mut(&start))
            else {
                continue;
            };
            if session.pending.is_empty() {
                continue;
            }
            let rows = std::mem::take(&mut session.pending);
            for ((acc, args), filter) in session.accumulators.iter_mut().zip(values).zip(filters) {
                // FILTER (WHERE …): a row an aggregate skips still extends the session.
                let Some(taken) = selected_args(args, filter.as_ref(), &rows)? else {
                    continue;
                };
                acc.update_batch(&taken)?;
            }
        }
        Ok(())
    }

    /// Closes every session that ends before `watermark`.
    fn close(&mut self, watermark: i64, out: &mut Vec<StreamChunk>) -> Result<()> {
        let closed = self.ends.take_before(watermark, self.keyed.as_deref())?;
        if closed.is_empty() {
            return Ok(());
        }
        self.partitions.next_tick();
        self.load_missing(closed.iter().map(|(k, _)| k.as_slice()))?;
        let mut rows = Vec::new();
        for (key, start) in closed {
            let Some(partition) = self.partitions.get_mut(&key) else {
                continue;
            };
            let Some(end) = partition
                .sessions
                .get(&start)
                .map(|s| s.last.saturating_add(self.spec.gap))
            else {
                continue;
            };
            if end >= watermark {
                self.ends.file(end, start, &key);
                continue;
            }
            let Some(mut session) = partition.sessions.remove(&start) else {
                continue;
            };
            let pkey = partition.key.clone();
            if partition.sessions.is_empty() {
                self.partitions.remove(&key);
            }
            self.unsaved.insert(key);
            if self.spec.emit_on_close {
                let row = self.output_row(&pkey, start, &mut session)?;
                rows.push((Op::Insert, row));
            }
        }
        if let Some(chunk) = rows_to_chunk(&self.spec.schema, rows)? {
            out.push(chunk);
        }
        Ok(())
    }
}

impl Operator for SessionAgg {
    fn name(&self) -> &'static str {
        "SessionAgg"
    }

    fn on_chunk(&mut self, chunk: StreamChunk, out: &mut Vec<StreamChunk>) -> Result<()> {
        if chunk.has_deletes() {
            return Err(Error::Unsupported(
                "SESSION windows need an append-only input, but a row was deleted or updated upstream"
                    .into(),
            ));
        }
        let batch = chunk.batch();
        let n = batch.num_rows();
        let key_columns: Vec<ArrayRef> = self
            .spec
            .partition
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        let keys = if key_columns.is_empty() {
            vec![Vec::new(); n]
        } else {
            self.codec.encode(&key_columns)?
        };
        let (values, filters) = evaluate_agg_inputs(&self.args, &self.spec.aggs, batch)?;
        let times = micros_array(batch.column(self.spec.time).as_ref()).ok_or_else(|| {
            Error::Internal("session window over a column that is not a timestamp".into())
        })?;
        self.partitions.next_tick();
        self.load_missing(keys.iter().map(Vec::as_slice))?;
        let mut retract = Vec::new();
        // (row holding the partition key, session start)
        let mut touched: Vec<(usize, i64)> = Vec::new();
        let mut late = 0;
        for (r, key) in keys.iter().enumerate() {
            if times.is_null(r) {
                late += 1;
                continue;
            }
            let t = times.value(r);
            if self
                .progress
                .watermark
                .is_some_and(|w| t.saturating_add(self.spec.gap) < w)
            {
                late += 1;
                continue;
            }
            if !self.partitions.contains(key) {
                let scalars = key_columns
                    .iter()
                    .map(|c| ScalarValue::try_from_array(c, r))
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                let partition = Partition {
                    key: scalars,
                    sessions: BTreeMap::new(),
                };
                let size = partition_size(key, &partition);
                self.partitions.insert(key.clone(), partition, size, 0);
            }
            if let Some(start) = self.add_row(key, t, r as u32, &mut retract)? {
                touched.push((r, start));
            }
        }
        // Sessions merged away or moved are listed too: found gone, skipped.
        touched.sort_unstable_by(|a, b| keys[a.0].cmp(&keys[b.0]).then(a.1.cmp(&b.1)));
        touched.dedup_by(|a, b| a.1 == b.1 && keys[a.0] == keys[b.0]);
        let touched: Vec<(&[u8], i64)> = touched
            .into_iter()
            .map(|(r, start)| (keys[r].as_slice(), start))
            .collect();
        self.flush(&touched, &values, &filters)?;
        for (key, _) in &touched {
            if !self.unsaved.contains(*key) {
                self.unsaved.insert(key.to_vec());
            }
        }
        if late > 0 {
            self.metrics.add_late_rows(late);
            self.progress.late += late as u64;
        }
        if self.spec.emit_on_close {
            return Ok(());
        }
        let mut rows: Vec<(Op, Vec<ScalarValue>)> =
            retract.into_iter().map(|r| (Op::Delete, r)).collect();
        // Sessions merged away since they were touched are gone: skipped.
        for (key, start) in touched {
            let Some(partition) = self.partitions.get_mut(key) else {
                continue;
            };
            let pkey = partition.key.clone();
            let Some(mut session) = partition.sessions.remove(&start) else {
                continue;
            };
            let row = self.output_row(&pkey, start, &mut session)?;
            if session.emitted.as_ref() != Some(&row) {
                if let Some(old) = session.emitted.take() {
                    rows.push((Op::Delete, old));
                }
                rows.push((Op::Insert, row.clone()));
                session.emitted = Some(row);
            }
            if let Some(p) = self.partitions.get_mut(key) {
                p.sessions.insert(start, session);
            }
        }
        // A session retracted and re-emitted unchanged cancels out.
        if let Some(chunk) = rows_to_chunk(&self.spec.schema, rows)? {
            out.push(chunk);
        }
        Ok(())
    }

    fn durability(&self) -> crate::Durability {
        crate::Durability::Checkpointed
    }

    fn on_checkpoint(
        &mut self,
        epoch: Epoch,
        _batch: &mut WriteBatch,
        _out: &mut Vec<StreamChunk>,
    ) -> Result<()> {
        self.epoch = epoch;
        Ok(())
    }

    /// The progress: the sessions and their ends are keyed state.
    fn checkpoint_state(&mut self, state: &mut WriteBatch) -> Result<()> {
        self.progress.put(state);
        Ok(())
    }

    fn attach_keyed(&mut self, keyed: Box<dyn KeyedReader>) {
        self.keyed = Some(keyed);
    }

    /// The sessions of the partitions changed, with their accumulators,
    /// and the ends filed or taken.
    fn checkpoint_keyed(&mut self, keyed: &mut WriteBatch) -> Result<()> {
        self.ends.checkpoint(self.epoch, keyed);
        let keys: Vec<Vec<u8>> = std::mem::take(&mut self.unsaved).into_iter().collect();
        let values = self.encode_partitions(&keys)?;
        for (key, value) in keys.into_iter().zip(values) {
            let size = self.partitions.get(&key).map(|p| partition_size(&key, p));
            match size {
                Some(_) => keyed.put(partition_key(&key), value),
                None => keyed.delete(partition_key(&key)),
            }
            self.partitions.saved(&key, self.epoch, size);
        }
        if let Some(keyed) = &self.keyed {
            self.ends.settle(keyed.committed_epoch());
        }
        self.stored_elsewhere |=
            self.partitions
                .settle_after(self.epoch, self.keyed.as_deref(), Some(&self.metrics));
        Ok(())
    }

    fn restore(&mut self, entries: StateEntries) -> Result<()> {
        // Partitions are read back as rows or closing sessions reach them,
        // and the sessions' ends as watermarks reach them.
        self.stored_elsewhere = true;
        self.ends.restored();
        for (key, value) in entries {
            if !key.is_empty() {
                return Err(Error::Internal(format!(
                    "a stored session key of {} bytes",
                    key.len()
                )));
            }
            self.progress = Progress::restore(&value, Some(&self.metrics))?;
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        wm: Watermark,
        out: &mut Vec<StreamChunk>,
    ) -> Result<Vec<Watermark>> {
        if wm.column != self.spec.time {
            return Ok(Vec::new());
        }
        if self.progress.watermark.is_none_or(|w| wm.value > w) {
            self.progress.watermark = Some(wm.value);
            self.close(wm.value, out)?;
        }
        Ok(self
            .spec
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| matches!(k, SessionKey::WindowEnd))
            .map(|(column, _)| Watermark {
                column,
                value: wm.value,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::functions_aggregate::{count::count_udaf, min_max::max_udaf};

    use super::*;
    use crate::event_time::END_OF_TIME;
    use crate::test_util::{
        agg_call, applied_pretty, applied_rows as emitted, key_value_time_chunk as chunk,
        key_value_time_schema, random_steps, restores_over_random_streams, run_in_store, Lcg,
    };

    const GAP: i64 = 5;

    fn session_agg(emit_on_close: bool) -> SessionAgg {
        session_agg_with(emit_on_close, Arc::new(JobMetrics::default()))
    }

    fn session_agg_with(emit_on_close: bool, metrics: Arc<JobMetrics>) -> SessionAgg {
        let input = key_value_time_schema();
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("window_start", ts.clone(), true),
            Field::new("window_end", ts, true),
            Field::new("n", DataType::Int64, false),
            Field::new("top", DataType::Int64, true),
        ]));
        SessionAgg::new(
            SessionAggSpec {
                partition: vec![0],
                time: 2,
                gap: GAP,
                aggs: vec![
                    agg_call(count_udaf(), 1, &input, "n"),
                    agg_call(max_udaf(), 1, &input, "top"),
                ],
                keys: vec![
                    SessionKey::Partition(0),
                    SessionKey::WindowStart,
                    SessionKey::WindowEnd,
                ],
                emit_on_close,
                schema,
            },
            metrics,
        )
        .unwrap()
    }

    /// Sessions by brute force: per key, sorted times split where the gap exceeds GAP.
    fn expected(rows: &[(i64, i64, i64)]) -> Vec<(i64, i64, i64, i64, i64)> {
        let mut out = Vec::new();
        let mut keys: Vec<i64> = rows.iter().map(|r| r.0).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let mut mine: Vec<(i64, i64)> = rows
                .iter()
                .filter(|r| r.0 == k)
                .map(|r| (r.2, r.1))
                .collect();
            mine.sort();
            let mut start = 0;
            for i in 1..=mine.len() {
                if i == mine.len() || mine[i].0 - mine[i - 1].0 > GAP {
                    let part = &mine[start..i];
                    let top = part.iter().map(|p| p.1).max().unwrap_or(0);
                    out.push((
                        k,
                        part[0].0,
                        part[i - start - 1].0 + GAP,
                        part.len() as i64,
                        top,
                    ));
                    start = i;
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn sessions_equal_brute_force_for_any_arrival_order() {
        for (seed, emit_on_close) in (0..40u64).flat_map(|s| [(s, true), (s, false)]) {
            let mut lcg = Lcg::new(seed);
            let mut next = |m: u64| lcg.next(m);
            // Odd seeds: times rise with disorder below 20, and a watermark
            // 20 behind the newest time follows every chunk (no row is late).
            let rising = seed % 2 == 1;
            let rows: Vec<(i64, i64, i64)> = (0..60)
                .map(|i| {
                    let t = if rising {
                        i + next(20) as i64
                    } else {
                        next(80) as i64
                    };
                    (next(3) as i64, next(100) as i64, t)
                })
                .collect();
            let mut newest = i64::MIN;
            let mut agg = session_agg(emit_on_close);
            let mut out = Vec::new();
            let mut i = 0;
            while i < rows.len() {
                let n = 1 + next(7) as usize;
                let end = (i + n).min(rows.len());
                agg.on_chunk(chunk(&rows[i..end]), &mut out).unwrap();
                newest = rows[i..end].iter().map(|r| r.2).fold(newest, i64::max);
                i = end;
                if rising {
                    let wm = Watermark {
                        column: 2,
                        value: newest - 20,
                    };
                    agg.on_watermark(wm, &mut out).unwrap();
                }
            }
            if rising {
                assert_eq!(agg.metrics.stats().late_rows, 0);
            } else if emit_on_close {
                assert!(out.is_empty(), "emits only on close");
            } else {
                assert_eq!(
                    emitted(&out),
                    expected(&rows),
                    "seed {seed}, before closing"
                );
            }
            agg.on_watermark(
                Watermark {
                    column: 2,
                    value: END_OF_TIME,
                },
                &mut out,
            )
            .unwrap();
            assert_eq!(emitted(&out), expected(&rows), "seed {seed}, closed");
        }
    }

    #[test]
    fn a_restored_operator_continues_as_if_never_stopped() {
        for budget in [usize::MAX, 0] {
            restores_over_random_streams(|emit_on_close, m| {
                Box::new(
                    session_agg_with(emit_on_close, m).with_cache_budget(CacheBudget::new(budget)),
                )
            });
        }
    }

    /// With a budget of 0 every partition leaves memory once its
    /// checkpoint commits, and is read back by its next row or closing
    /// session: the same rows go out as when all stay.
    #[test]
    fn partitions_evicted_to_the_store_are_read_back() {
        let mut read_back = 0;
        for seed in 0..30u64 {
            let steps = random_steps(seed, 80, 8, 4 + seed as i64 % 7);
            for emit_on_close in [true, false] {
                // What went out, and how many partitions were read back
                // (the store's reads count the sessions' ends too).
                let run = |budget| {
                    let m = Arc::new(JobMetrics::default());
                    let op = session_agg_with(emit_on_close, Arc::clone(&m))
                        .with_cache_budget(CacheBudget::new(budget));
                    let (out, _) = run_in_store(Box::new(op), &steps);
                    (applied_pretty(&out), m.stats().groups_read_back)
                };
                let (expected, none) = run(usize::MAX);
                assert_eq!(none, 0);
                let (got, read) = run(0);
                assert_eq!(got, expected, "seed {seed}, emit on close {emit_on_close}");
                read_back += read;
            }
        }
        assert!(read_back > 50, "only {read_back} partitions were read back");
    }
}

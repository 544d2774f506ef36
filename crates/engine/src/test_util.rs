//! Readable chunks for operator tests: `"I T\n+ 1 a\n- 2 ."` is a chunk of an
//! Int64 and a Utf8 column with an insert of (1, 'a') and a delete of (2, NULL).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::AggregateUDF;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use tidemark_plan::AggCall;
use tidemark_types::{Op, StreamChunk};

fn data_type(code: &str) -> DataType {
    match code {
        "I" => DataType::Int64,
        "i" => DataType::Int32,
        "F" => DataType::Float64,
        "T" => DataType::Utf8,
        other => panic!("unknown column type code {other}"),
    }
}

/// The schema named `c0, c1, …` for the type codes of a pretty chunk.
pub fn schema_of(codes: &str) -> SchemaRef {
    let fields: Vec<Field> = codes
        .split_whitespace()
        .enumerate()
        .map(|(i, c)| Field::new(format!("c{i}"), data_type(c), true))
        .collect();
    Arc::new(Schema::new(fields))
}

pub fn chunk_from_pretty(text: &str) -> StreamChunk {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let schema = schema_of(lines.next().expect("a header line of type codes"));
    let mut ops = Vec::new();
    let mut cells: Vec<Vec<Option<String>>> = vec![Vec::new(); schema.fields().len()];
    for line in lines {
        let mut parts = line.split_whitespace();
        ops.push(match parts.next() {
            Some("+") => Op::Insert,
            Some("-") => Op::Delete,
            other => panic!("each row starts with + or -, not {other:?}"),
        });
        for (c, v) in parts.enumerate() {
            cells[c].push((v != ".").then(|| v.to_string()));
        }
    }
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .zip(cells)
        .map(|(f, vals)| -> ArrayRef {
            match f.data_type() {
                DataType::Int64 => Arc::new(Int64Array::from_iter(
                    vals.iter()
                        .map(|v| v.as_ref().map(|s| s.parse::<i64>().unwrap())),
                )),
                DataType::Int32 => Arc::new(Int32Array::from_iter(
                    vals.iter()
                        .map(|v| v.as_ref().map(|s| s.parse::<i32>().unwrap())),
                )),
                DataType::Float64 => Arc::new(Float64Array::from_iter(
                    vals.iter()
                        .map(|v| v.as_ref().map(|s| s.parse::<f64>().unwrap())),
                )),
                _ => Arc::new(StringArray::from_iter(vals.iter().cloned())),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema, columns).expect("consistent pretty chunk");
    StreamChunk::with_ops(batch, ops)
}

/// Renders chunks one row per line, `+ 1 a` / `- 2 NULL`, for comparing.
pub fn pretty(chunks: &[StreamChunk]) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in chunks {
        for row in 0..chunk.num_rows() {
            let op = match chunk.op(row) {
                Op::Insert => "+",
                Op::Delete => "-",
            };
            let values: Vec<String> = chunk
                .batch()
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(row) {
                        "NULL".to_string()
                    } else {
                        array_value_to_string(c, row).unwrap_or_default()
                    }
                })
                .collect();
            out.push(format!("{op} {}", values.join(" ")));
        }
    }
    out
}

/// `(k Int64, v Int64, ts Timestamp(µs))`: the input of the window operator tests.
pub fn key_value_time_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]))
}

/// `k, ts, count(v) AS n, min(v) AS low … GROUP BY k, ts` over
/// [`key_value_time_schema`], each distinct time a window of its own (see
/// [`time_window`]): the group keys, the aggregates and the output schema.
pub fn count_min_by_key_and_time() -> (Vec<Arc<dyn PhysicalExpr>>, Vec<AggCall>, SchemaRef) {
    use datafusion::functions_aggregate::{count::count_udaf, min_max::min_udaf};
    let input = key_value_time_schema();
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("n", DataType::Int64, false),
        Field::new("low", DataType::Int64, true),
    ]));
    let keys: Vec<Arc<dyn PhysicalExpr>> = vec![
        Arc::new(Column::new("k", 0)),
        Arc::new(Column::new("ts", 2)),
    ];
    let aggs = vec![
        agg_call(count_udaf(), 1, &input, "n"),
        agg_call(min_udaf(), 1, &input, "low"),
    ];
    (keys, aggs, schema)
}

/// The window of [`count_min_by_key_and_time`]: its `ts` key, the input's
/// time column.
pub fn time_window(emit_on_close: bool) -> tidemark_plan::WindowKey {
    tidemark_plan::WindowKey {
        key: 1,
        input_column: 2,
        emit_on_close,
    }
}

/// Inserts of `(k, v, ts)` rows of [`key_value_time_schema`].
pub fn key_value_time_chunk(rows: &[(i64, i64, i64)]) -> StreamChunk {
    let batch = RecordBatch::try_new(
        key_value_time_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.2),
            )),
        ],
    )
    .expect("rows of the key, value and time schema");
    StreamChunk::inserts(batch)
}

/// `udaf(column arg)` over `input`, named `name`.
pub fn agg_call(udaf: Arc<AggregateUDF>, arg: usize, input: &SchemaRef, name: &str) -> AggCall {
    let column = Column::new(input.field(arg).name(), arg);
    AggCall {
        expr: Arc::new(
            AggregateExprBuilder::new(udaf, vec![Arc::new(column)])
                .schema(Arc::clone(input))
                .alias(name)
                .build()
                .expect("a valid aggregate call"),
        ),
        filter: None,
    }
}

/// The rows the changes in `out` leave, applied in order, sorted: the
/// first five columns, each an Int64 or a µs timestamp (-1 for anything
/// else, or a column past the last).
pub fn applied_rows(out: &[StreamChunk]) -> Vec<(i64, i64, i64, i64, i64)> {
    let mut rows: Vec<(i64, i64, i64, i64, i64)> = Vec::new();
    for c in out {
        let b = c.batch();
        let int = |i: usize, r: usize| match b
            .columns()
            .get(i)
            .map(|c| ScalarValue::try_from_array(c, r))
        {
            Some(Ok(
                ScalarValue::Int64(Some(x)) | ScalarValue::TimestampMicrosecond(Some(x), _),
            )) => x,
            _ => -1,
        };
        for r in 0..b.num_rows() {
            let row = (int(0, r), int(1, r), int(2, r), int(3, r), int(4, r));
            match c.op(r) {
                Op::Insert => rows.push(row),
                Op::Delete => {
                    let i = rows.iter().position(|x| *x == row).unwrap_or_else(|| {
                        panic!("deletes an emitted row: {row:?} not in {rows:?}")
                    });
                    rows.remove(i);
                }
            }
        }
    }
    rows.sort();
    rows
}

/// A seeded linear congruential generator: the same numbers for a seed on
/// every run, for randomized tests without a dependency.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(6364136223846793005).wrapping_add(1))
    }

    /// The next number in `0..m`.
    pub fn next(&mut self, m: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % m
    }
}

/// One thing that happens to an operator in a restore test.
#[derive(Clone)]
pub enum Step {
    Chunk(StreamChunk),
    Watermark(tidemark_types::Watermark),
    Checkpoint,
}

/// Rows the changes in `out` leave, applied in order and sorted, as
/// [`pretty`] renders them (without the op).
pub fn applied_pretty(out: &[StreamChunk]) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    for line in pretty(out) {
        let (op, row) = line.split_at(2);
        if op == "+ " {
            rows.push(row.to_string());
        } else {
            let i = rows
                .iter()
                .position(|r| r == row)
                .unwrap_or_else(|| panic!("deletes an emitted row: {row:?} not in {rows:?}"));
            rows.remove(i);
        }
    }
    rows.sort();
    rows
}

type Made = Box<dyn crate::Operator>;

type Map = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

/// A test's store: the state restored whole, and the keyed state, shared
/// with the operator's [`crate::durable::KeyedReader`]. The keyed writes of
/// a checkpoint commit at the next one (or at [`TestStore::commit`]), as
/// when the coordinator commits an epoch after the barrier has passed.
#[derive(Default, Clone)]
struct TestStore {
    state: Map,
    /// The epoch of the last checkpoint taken.
    epoch: tidemark_types::Epoch,
    keyed: Arc<std::sync::Mutex<Keyed>>,
}

#[derive(Default)]
struct Keyed {
    map: Map,
    committed: tidemark_types::Epoch,
    pending: Option<(tidemark_types::Epoch, tidemark_state::WriteBatch)>,
    /// Values read back (found or scanned) so far.
    read_back: usize,
}

impl TestStore {
    /// Commits the keyed writes of the last checkpoint.
    fn commit(&self) {
        let mut keyed = self.keyed.lock().unwrap();
        if let Some((epoch, batch)) = keyed.pending.take() {
            apply(&mut keyed.map, batch);
            keyed.committed = epoch;
        }
    }
}

struct MapKeyed(Arc<std::sync::Mutex<Keyed>>);

impl crate::durable::KeyedReader for MapKeyed {
    fn get_many(&self, keys: &[Vec<u8>]) -> crate::Result<Vec<Option<Vec<u8>>>> {
        let mut keyed = self.0.lock().unwrap();
        let got: Vec<_> = keys.iter().map(|k| keyed.map.get(k).cloned()).collect();
        keyed.read_back += got.iter().filter(|v| v.is_some()).count();
        Ok(got)
    }

    fn scan_page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> crate::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        use std::ops::Bound;
        let mut keyed = self.0.lock().unwrap();
        let from = match after {
            Some(a) => Bound::Excluded(a.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        let page: Vec<_> = keyed
            .map
            .range((from, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        keyed.read_back += page.len();
        Ok(page)
    }

    fn committed_epoch(&self) -> tidemark_types::Epoch {
        self.0.lock().unwrap().committed
    }
}

/// Applies an operator's checkpoint writes to `map`.
fn apply(map: &mut Map, state: tidemark_state::WriteBatch) {
    for prefix in state.delete_prefixes {
        map.retain(|k, _| !k.starts_with(&prefix));
    }
    for (key, write) in state.writes {
        match write {
            tidemark_state::Write::Put(v) => {
                map.insert(key, v);
            }
            tidemark_state::Write::Delete => {
                map.remove(&key);
            }
            tidemark_state::Write::AddCount(_) => panic!("operator state counts"),
        }
    }
}

/// A new operator from `make`, reading its keyed state from `store`.
fn made(
    make: &impl Fn(Arc<crate::metrics::JobMetrics>) -> Made,
    metrics: Arc<crate::metrics::JobMetrics>,
    store: &TestStore,
) -> Made {
    let mut op = make(metrics);
    op.attach_keyed(Box::new(MapKeyed(Arc::clone(&store.keyed))));
    op
}

/// Runs `steps` through `op` with a store for its state, and a checkpoint
/// at the end; returns what it emitted and how many keyed values it read
/// back from the store.
pub fn run_in_store(mut op: Made, steps: &[Step]) -> (Vec<StreamChunk>, usize) {
    let mut store = TestStore::default();
    op.attach_keyed(Box::new(MapKeyed(Arc::clone(&store.keyed))));
    let mut out = run_steps(&mut op, steps, &mut store);
    out.extend(run_steps(&mut op, &[Step::Checkpoint], &mut store));
    let read = store.keyed.lock().unwrap().read_back;
    (out, read)
}

/// Runs `steps` through `op` with a store for its state, then checkpoints
/// until all is committed; returns the keys it left in its state and in
/// its keyed state.
pub fn stored_after(mut op: Made, steps: &[Step]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut store = TestStore::default();
    op.attach_keyed(Box::new(MapKeyed(Arc::clone(&store.keyed))));
    run_steps(&mut op, steps, &mut store);
    run_steps(&mut op, &[Step::Checkpoint], &mut store);
    store.commit();
    let keyed = store.keyed.lock().unwrap().map.keys().cloned().collect();
    (store.state.keys().cloned().collect(), keyed)
}

/// Runs `steps` through one operator, checkpointing its state into `store`;
/// returns what it emitted.
fn run_steps(op: &mut Made, steps: &[Step], store: &mut TestStore) -> Vec<StreamChunk> {
    let mut out = Vec::new();
    for step in steps {
        match step {
            Step::Chunk(c) => op.on_chunk(c.clone(), &mut out).unwrap(),
            Step::Watermark(w) => {
                op.on_watermark(*w, &mut out).unwrap();
            }
            Step::Checkpoint => {
                store.commit();
                store.epoch += 1;
                let epoch = store.epoch;
                op.on_checkpoint(epoch, &mut tidemark_state::WriteBatch::default(), &mut out)
                    .unwrap();
                let mut state = tidemark_state::WriteBatch::default();
                op.checkpoint_state(&mut state).unwrap();
                apply(&mut store.state, state);
                let mut keyed = tidemark_state::WriteBatch::default();
                op.checkpoint_keyed(&mut keyed).unwrap();
                store.keyed.lock().unwrap().pending = Some((epoch, keyed));
            }
        }
    }
    out
}

/// [`assert_restores`] for windowed operators over random streams (see
/// [`random_steps`]), cut every few steps, emitting on close and not:
/// `make(emit_on_close, metrics)` builds the operator.
pub fn restores_over_random_streams(make: impl Fn(bool, Arc<crate::metrics::JobMetrics>) -> Made) {
    for seed in 0..12u64 {
        for emit_on_close in [true, false] {
            let steps = random_steps(seed, 60, 8, 4);
            for cut in (0..steps.len()).step_by(5) {
                assert_restores(|m| make(emit_on_close, m), &steps, cut);
            }
        }
    }
}

/// Runs `steps` through an operator from `make` without a break, and again
/// with a checkpoint at step `cut` after which the operator is dropped and a
/// fresh one restored from the state it checkpointed (as after a crash):
/// both must leave the same rows and count the same late rows.
pub fn assert_restores(
    make: impl Fn(Arc<crate::metrics::JobMetrics>) -> Made,
    steps: &[Step],
    cut: usize,
) {
    use crate::metrics::JobMetrics;
    let whole_metrics = Arc::new(JobMetrics::default());
    let mut store = TestStore::default();
    let mut whole = made(&make, Arc::clone(&whole_metrics), &store);
    let mut expected = run_steps(&mut whole, steps, &mut store);
    expected.extend(run_steps(&mut whole, &[Step::Checkpoint], &mut store));

    let mut store = TestStore::default();
    let mut before = made(&make, Arc::new(JobMetrics::default()), &store);
    let mut got = run_steps(&mut before, &steps[..cut], &mut store);
    got.extend(run_steps(&mut before, &[Step::Checkpoint], &mut store));
    store.commit();
    drop(before);
    let metrics = Arc::new(JobMetrics::default());
    let mut after = made(&make, Arc::clone(&metrics), &store);
    after
        .restore(
            store
                .state
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
        .unwrap();
    got.extend(run_steps(&mut after, &steps[cut..], &mut store));
    got.extend(run_steps(&mut after, &[Step::Checkpoint], &mut store));
    assert_eq!(
        applied_pretty(&got),
        applied_pretty(&expected),
        "cut at {cut}"
    );
    assert_eq!(
        metrics.stats().late_rows,
        whole_metrics.stats().late_rows,
        "late rows, cut at {cut}"
    );
}

/// Random steps over `(k, v, ts)` rows: times rising by one per row with up
/// to `jitter` of disorder, a watermark `delay` behind the newest time after
/// each chunk (rows more than `delay` out of order are late), checkpoints
/// between, and the end of time last.
pub fn random_steps(seed: u64, rows: usize, jitter: i64, delay: i64) -> Vec<Step> {
    let mut lcg = Lcg::new(seed);
    let mut steps = Vec::new();
    let mut newest = i64::MIN;
    let mut i = 0;
    while i < rows {
        let n = 1 + lcg.next(6) as usize;
        let chunk: Vec<(i64, i64, i64)> = (i..(i + n).min(rows))
            .map(|r| {
                let t = r as i64 * 2 + lcg.next(jitter as u64 + 1) as i64 - jitter;
                (lcg.next(3) as i64, lcg.next(100) as i64, t)
            })
            .collect();
        i += n;
        newest = chunk.iter().map(|r| r.2).fold(newest, i64::max);
        steps.push(Step::Chunk(key_value_time_chunk(&chunk)));
        steps.push(Step::Watermark(tidemark_types::Watermark {
            column: 2,
            value: newest - delay,
        }));
        if lcg.next(3) == 0 {
            steps.push(Step::Checkpoint);
        }
    }
    steps.push(Step::Watermark(tidemark_types::Watermark {
        column: 2,
        value: crate::event_time::END_OF_TIME,
    }));
    steps
}

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::PhysicalExpr;

/// Index of a fragment within its job.
pub type FragmentId = u32;

/// Catalog id of a table or materialized view; also the id of its state table.
pub type RelationId = u32;

/// How many actors run a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// One actor (global aggregates, table writers).
    Single,
    /// One actor per unit of the server's parallelism, rows split by key.
    Hashed,
}

/// How rows move from an upstream to a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// By hash of these columns into key groups, key groups onto actors, so all
    /// changes to one key meet at one actor, in order.
    Hash(Vec<usize>),
    /// Everything to the single actor.
    Single,
}

/// Where a fragment reads from.
#[derive(Debug, Clone)]
pub enum FragmentInput {
    /// The changelog of an existing table or materialized view: first a snapshot
    /// of its contents, then every change after it.
    Relation {
        id: RelationId,
        name: String,
        /// The relation's columns, as its changes arrive.
        schema: SchemaRef,
        exchange: Exchange,
    },
    /// An upstream fragment of the same job.
    Fragment { id: FragmentId, exchange: Exchange },
    /// A source, read from its start position by this job's own reader.
    Source {
        id: RelationId,
        name: String,
        schema: SchemaRef,
        /// The `WITH` options, validated when the source was created.
        options: Vec<(String, String)>,
        event_time: Option<EventTime>,
    },
}

/// Where rows entering a job get their event time: watermark =
/// max(`column`) − `delay_us`, so rows up to `delay_us` out of order still count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTime {
    pub column: usize,
    pub delay_us: i64,
}

/// The group key of a windowed aggregate: a column that carries a watermark,
/// so a group whose key is below the watermark can receive no more rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowKey {
    /// Index among the group keys (and output columns).
    pub key: usize,
    /// The input column the key reads, whose watermark closes groups.
    pub input_column: usize,
    /// Emit each group once, when it closes, instead of updating it as rows arrive.
    pub emit_on_close: bool,
}

/// One aggregate call of a grouped aggregation.
#[derive(Debug, Clone)]
pub struct AggCall {
    pub expr: Arc<AggregateFunctionExpr>,
    /// Rows for which this is false are not fed to the aggregate (`FILTER (WHERE …)`).
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

/// What one operator of a chain does.
#[derive(Debug, Clone)]
pub enum OperatorSpec {
    Filter {
        predicate: Arc<dyn PhysicalExpr>,
    },
    Project {
        exprs: Vec<(Arc<dyn PhysicalExpr>, String)>,
        schema: SchemaRef,
        /// (output column, input column): outputs that rise with an input
        /// carrying a watermark, and so carry one derived from it.
        watermarks: Vec<(usize, usize)>,
    },
    /// Incremental `GROUP BY`: emits, per changed group, a delete of its old row
    /// and an insert of its new one. Output: group columns, then aggregates.
    HashAgg {
        group_exprs: Vec<(Arc<dyn PhysicalExpr>, String)>,
        aggs: Vec<AggCall>,
        schema: SchemaRef,
        window: Option<WindowKey>,
        /// (input column, output column): group keys that pass their input's
        /// watermark on.
        watermarks: Vec<(usize, usize)>,
        /// The input never deletes, so a windowed aggregate can run vectorized.
        append_only_input: bool,
    },
    /// HOP: each row once per window that contains it, with `window_start` and
    /// `window_end` appended.
    HopExpand {
        /// The event-time column.
        time: usize,
        slide_us: i64,
        size_us: i64,
        offset_us: i64,
        schema: SchemaRef,
    },
    /// SESSION windows per partition key, aggregated: a row at most `gap_us`
    /// after a session's last row extends it, and a row that bridges two
    /// sessions merges them. Needs an append-only input.
    SessionAgg {
        /// Input columns of the partition key.
        partition: Vec<usize>,
        time: usize,
        gap_us: i64,
        aggs: Vec<AggCall>,
        /// What each group column of the output is.
        keys: Vec<SessionKey>,
        emit_on_close: bool,
        schema: SchemaRef,
    },
    /// HOP windows per partition key, aggregated by slide-long slices that
    /// each window merges: a row is added once, not once per window. Needs an
    /// append-only input.
    HopAgg {
        /// Input columns of the partition key.
        partition: Vec<usize>,
        time: usize,
        slide_us: i64,
        size_us: i64,
        offset_us: i64,
        aggs: Vec<AggCall>,
        /// What each group column of the output is.
        keys: Vec<SessionKey>,
        emit_on_close: bool,
        schema: SchemaRef,
    },
    /// Keeps the view's rows (a multiset) in its state table; what SELECT reads.
    Materialize {
        relation: RelationId,
        name: String,
    },
}

impl OperatorSpec {
    pub fn name(&self) -> &'static str {
        match self {
            OperatorSpec::Filter { .. } => "Filter",
            OperatorSpec::Project { .. } => "Project",
            OperatorSpec::HashAgg { .. } => "HashAgg",
            OperatorSpec::HopExpand { .. } => "HopExpand",
            OperatorSpec::SessionAgg { .. } => "SessionAgg",
            OperatorSpec::HopAgg { .. } => "HopAgg",
            OperatorSpec::Materialize { .. } => "Materialize",
        }
    }
}

/// A group column of a session or HOP aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKey {
    /// The i-th column of the partition key.
    Partition(usize),
    WindowStart,
    WindowEnd,
}

/// A chain of operators fused in one task per actor.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub id: FragmentId,
    pub inputs: Vec<FragmentInput>,
    pub operators: Vec<OperatorSpec>,
    /// Per operator, the names of its output columns that carry a watermark.
    pub watermarks: Vec<Vec<String>>,
    pub distribution: Distribution,
    /// Schema of what the chain emits.
    pub schema: SchemaRef,
}

/// A streaming job: fragments in dependency order (upstream first); the last
/// one materializes the view.
#[derive(Debug, Clone)]
pub struct StreamGraph {
    pub fragments: Vec<Fragment>,
}

//! Vectorized grouped aggregation of append-only rows: DataFusion's group
//! interning and `GroupsAccumulator`s, a batch at a time. Window operators
//! keep one of these per window or slice.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_plan::aggregates::group_values::{new_group_values, GroupValues};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion_functions_aggregate_common::aggregate::groups_accumulator::GroupsAccumulatorAdapter;
use tidemark_plan::AggCall;

use crate::Result;

/// A `GroupsAccumulator` for `call`: DataFusion's own where the aggregate has
/// one, else its row accumulators behind DataFusion's adapter.
fn groups_accumulator(call: &AggCall) -> Result<Box<dyn GroupsAccumulator>> {
    let expr = Arc::clone(&call.expr);
    if expr.groups_accumulator_supported() {
        return Ok(expr.create_groups_accumulator()?);
    }
    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
        expr.create_accumulator()
    })))
}

fn take_rows(columns: &[ArrayRef], rows: &Option<UInt32Array>) -> Result<Vec<ArrayRef>> {
    match rows {
        None => Ok(columns.to_vec()),
        Some(rows) => Ok(columns
            .iter()
            .map(|c| take(c.as_ref(), rows, None))
            .collect::<std::result::Result<_, _>>()?),
    }
}

fn take_filters(
    filters: &[Option<BooleanArray>],
    rows: &Option<UInt32Array>,
) -> Result<Vec<Option<BooleanArray>>> {
    filters
        .iter()
        .map(|f| match (f, rows) {
            (Some(f), Some(rows)) => Ok(Some(take(f, rows, None)?.as_boolean().clone())),
            (f, _) => Ok(f.clone()),
        })
        .collect()
}

/// The contents of a [`Grouped`]: row `i` of `keys` and of each aggregate's
/// `states` columns belongs to group `i`.
#[derive(Clone, Debug)]
pub struct GroupedState {
    pub keys: Vec<ArrayRef>,
    pub states: Vec<Vec<ArrayRef>>,
}

impl GroupedState {
    pub fn num_groups(&self) -> usize {
        match (
            self.keys.first(),
            self.states.first().and_then(|s| s.first()),
        ) {
            (Some(k), _) => k.len(),
            (None, Some(s)) => s.len(),
            (None, None) => 0,
        }
    }

    /// The groups at `rows`, in that order.
    pub fn rows(&self, rows: &UInt32Array) -> Result<GroupedState> {
        let rows = Some(rows.clone());
        Ok(GroupedState {
            keys: take_rows(&self.keys, &rows)?,
            states: self
                .states
                .iter()
                .map(|s| take_rows(s, &rows))
                .collect::<Result<_>>()?,
        })
    }
}

/// Groups of rows and their aggregates. Groups are numbered in the order they
/// first appear, and keep their numbers until the state is taken.
pub struct Grouped {
    key_schema: SchemaRef,
    aggs: Vec<AggCall>,
    /// `None` when there are no key columns: every row is in group 0.
    values: Option<Box<dyn GroupValues>>,
    single_group: bool,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    groups: Vec<usize>,
}

impl Grouped {
    pub fn new(key_schema: SchemaRef, aggs: &[AggCall]) -> Result<Self> {
        let mut grouped = Self {
            key_schema,
            aggs: aggs.to_vec(),
            values: None,
            single_group: false,
            accumulators: Vec::new(),
            groups: Vec::new(),
        };
        grouped.reset()?;
        Ok(grouped)
    }

    fn reset(&mut self) -> Result<()> {
        self.values = if self.key_schema.fields().is_empty() {
            None
        } else {
            Some(new_group_values(
                Arc::clone(&self.key_schema),
                &GroupOrdering::None,
            )?)
        };
        self.single_group = false;
        self.accumulators = self
            .aggs
            .iter()
            .map(groups_accumulator)
            .collect::<Result<_>>()?;
        Ok(())
    }

    pub fn num_groups(&self) -> usize {
        match &self.values {
            Some(v) => v.len(),
            None => usize::from(self.single_group),
        }
    }

    /// Numbers the rows of `keys` by group into `self.groups`.
    fn intern(&mut self, keys: &[ArrayRef], rows: usize) -> Result<usize> {
        self.groups.clear();
        match &mut self.values {
            Some(v) => v.intern(keys, &mut self.groups)?,
            None => {
                self.single_group |= rows > 0;
                self.groups.resize(rows, 0);
            }
        }
        Ok(self.num_groups())
    }

    /// Numbers the groups of `keys` (new ones after the others) without
    /// adding to any aggregate: a new group's aggregates start empty.
    pub fn intern_keys(&mut self, keys: &[ArrayRef]) -> Result<()> {
        let rows = keys.first().map_or(0, |k| k.len());
        self.intern(keys, rows)?;
        Ok(())
    }

    /// Adds rows: their key columns, each aggregate's argument columns and
    /// its `FILTER` mask.
    pub fn update(
        &mut self,
        keys: &[ArrayRef],
        args: &[Vec<ArrayRef>],
        filters: &[Option<BooleanArray>],
        rows: usize,
    ) -> Result<()> {
        let n = self.intern(keys, rows)?;
        for ((acc, values), filter) in self.accumulators.iter_mut().zip(args).zip(filters) {
            acc.update_batch(values, &self.groups, filter.as_ref(), n)?;
        }
        Ok(())
    }

    /// Adds the rows `rows` (all `batch_rows` when `None`) of a batch's key
    /// columns, aggregate arguments and `FILTER` masks.
    pub fn update_rows(
        &mut self,
        keys: &[ArrayRef],
        args: &[Vec<ArrayRef>],
        filters: &[Option<BooleanArray>],
        rows: Option<&UInt32Array>,
        batch_rows: usize,
    ) -> Result<()> {
        let Some(rows) = rows else {
            return self.update(keys, args, filters, batch_rows);
        };
        let rows = Some(rows.clone());
        let keys = take_rows(keys, &rows)?;
        let args = args
            .iter()
            .map(|a| take_rows(a, &rows))
            .collect::<Result<Vec<_>>>()?;
        let filters = take_filters(filters, &rows)?;
        let n = rows.as_ref().map_or(0, |r| r.len());
        self.update(&keys, &args, &filters, n)
    }

    /// Adds partial aggregates, as taken from another [`Grouped`].
    pub fn merge(&mut self, state: &GroupedState) -> Result<()> {
        let n = self.intern(&state.keys, state.num_groups())?;
        for (acc, states) in self.accumulators.iter_mut().zip(&state.states) {
            acc.merge_batch(states, &self.groups, n)?;
        }
        Ok(())
    }

    /// Takes the groups out as partial aggregates, leaving this empty.
    pub fn take(&mut self) -> Result<GroupedState> {
        let keys = match &mut self.values {
            Some(v) => v.emit(EmitTo::All)?,
            None => Vec::new(),
        };
        let states = self
            .accumulators
            .iter_mut()
            .map(|acc| acc.state(EmitTo::All))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        self.reset()?;
        Ok(GroupedState { keys, states })
    }

    /// The final rows of `state`, whose groups are distinct (as
    /// [`Grouped::take`] gives them): key columns, then one column per
    /// aggregate. Leaves `self` untouched.
    pub fn evaluate(&self, state: &GroupedState) -> Result<Vec<ArrayRef>> {
        let n = state.num_groups();
        // Group `i` is row `i`: no need to number the keys again.
        let groups: Vec<usize> = (0..n).collect();
        let mut columns = state.keys.clone();
        columns.extend(merge_by_group(&self.aggs, &state.states, &groups, n)?);
        Ok(columns)
    }
}

/// The final values of `n` groups (one column per aggregate) from partial
/// states (each aggregate's state columns) whose rows belong to the groups
/// numbered by `groups`: several rows of a group are merged in order.
pub fn merge_by_group(
    aggs: &[AggCall],
    states: &[Vec<ArrayRef>],
    groups: &[usize],
    n: usize,
) -> Result<Vec<ArrayRef>> {
    let mut columns = Vec::with_capacity(aggs.len());
    for (call, states) in aggs.iter().zip(states) {
        let mut acc = groups_accumulator(call)?;
        acc.merge_batch(states, groups, n)?;
        columns.push(acc.evaluate(EmitTo::All)?);
    }
    Ok(columns)
}

//! HOP and SESSION windows in a logical plan. Unlike TUMBLE, neither is a
//! function of one row (a row is in several hopping windows; a session
//! depends on its neighbours), so each is a plan node of its own that the
//! streaming planner lowers to its operator.

use std::cmp::Ordering;
use std::fmt;
use std::hash::Hash;

use datafusion::common::{DFSchemaRef, Result as DfResult};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};

/// Which windows a [`WindowNode`] assigns, all in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum WindowSpec {
    /// Windows of `size`, one starting every `slide`, aligned to the epoch plus `offset`.
    Hop { slide: i64, size: i64, offset: i64 },
    /// Rows at most `gap` apart (per group key) share a window.
    Session { gap: i64 },
}

/// `input` with `window_start` and `window_end` appended; `time` is the index
/// of the event-time column in `input`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowNode {
    pub input: LogicalPlan,
    pub time: usize,
    pub spec: WindowSpec,
    pub schema: DFSchemaRef,
}

impl PartialOrd for WindowNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.spec.partial_cmp(&other.spec)? {
            Ordering::Equal => self.time.partial_cmp(&other.time),
            o => Some(o),
        }
    }
}

impl UserDefinedLogicalNodeCore for WindowNode {
    fn name(&self) -> &str {
        match self.spec {
            WindowSpec::Hop { .. } => "Hop",
            WindowSpec::Session { .. } => "Session",
        }
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {:?}", self.name(), self.spec)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        let input = inputs.pop().unwrap_or_else(|| self.input.clone());
        Ok(Self {
            input,
            time: self.time,
            spec: self.spec,
            schema: self.schema.clone(),
        })
    }
}

/// The window node a plan is, if it is one.
pub(crate) fn as_window(plan: &LogicalPlan) -> Option<&WindowNode> {
    match plan {
        LogicalPlan::Extension(e) => e.node.as_any().downcast_ref::<WindowNode>(),
        _ => None,
    }
}

//! The streaming job the planner produces and the engine runs: a [`StreamGraph`]
//! of fragments, each a chain of operators run by one or more actors, joined by
//! exchanges. Expressions are DataFusion physical expressions, passed as typed
//! values (never serialized) because planner and engine share a process.

mod explain;
mod explain_expr;
mod graph;

pub use graph::{
    AggCall, Distribution, EventTime, Exchange, Fragment, FragmentId, FragmentInput, OperatorSpec,
    RelationId, SessionKey, StreamGraph, WindowKey,
};

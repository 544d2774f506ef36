//! Turns a planned [`StreamGraph`] into running actors wired by channels.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use tidemark_plan::{Distribution, Exchange, FragmentInput, OperatorSpec, RelationId, StreamGraph};
use tidemark_types::{ActorId, Message};
use tokio::sync::mpsc::{self, Receiver};

use tidemark_connectors::{ConnectorConfig, SplitReader};

use crate::actor::Actor;
use crate::cache_budget::CacheBudget;
use crate::chain::{Chain, ChainPlace};
use crate::coordinator::Injector;
use crate::dispatch::{Dispatcher, Output};
use crate::durable::{operator_prefix, ActorRecord, Durability, ACTOR_RECORD};
use crate::merge::Merge;
use crate::metrics::JobMetrics;
use crate::operators::{
    Filter, HashAgg, HopAgg, HopAggSpec, HopExpand, KeyedAgg, Materialize, Project, SessionAgg,
    SessionAggSpec,
};
use crate::outputs::Outputs;
use crate::runtime::{Runtime, CHANNEL_CAPACITY};
use crate::source_actor::{SourceActor, SourceActorParts};
use crate::{Error, Operator, Result};

/// What the coordinator needs to start a built job.
pub(crate) struct BuiltJob {
    pub actors: Vec<ActorId>,
    pub output_actors: Vec<ActorId>,
    /// Actors of upstream relations that gain outputs to this job.
    pub upstream_actors: Vec<ActorId>,
    pub upstreams: Vec<RelationId>,
    /// Where the job's source readers take barriers.
    pub injectors: Vec<Injector>,
}

/// `schema` is what the fragment's chain emits (the view's rows); `index` is
/// the actor's place among its fragment's parallel actors.
fn build_operator(
    spec: &OperatorSpec,
    schema: &SchemaRef,
    index: usize,
    metrics: &Arc<JobMetrics>,
    cache_budget: &Arc<CacheBudget>,
) -> Result<Box<dyn Operator>> {
    Ok(match spec {
        OperatorSpec::Filter { predicate } => Box::new(Filter::new(Arc::clone(predicate))),
        OperatorSpec::Project {
            exprs,
            schema,
            watermarks,
        } => Box::new(Project::new(
            exprs.iter().map(|(e, _)| Arc::clone(e)).collect(),
            Arc::clone(schema),
            watermarks.clone(),
        )),
        // Plain, or by a TUMBLE window (a timestamp key), over input that
        // only inserts: vectorized, groups as keyed state.
        OperatorSpec::HashAgg {
            group_exprs,
            aggs,
            schema,
            window,
            watermarks,
            append_only_input: true,
        } if match window {
            Some(w) => matches!(
                schema.field(w.key).data_type(),
                arrow::datatypes::DataType::Timestamp(..)
            ),
            None => !group_exprs.is_empty(),
        } =>
        {
            let agg = KeyedAgg::new(
                group_exprs.iter().map(|(e, _)| Arc::clone(e)).collect(),
                aggs.clone(),
                Arc::clone(schema),
                watermarks.clone(),
                Arc::clone(metrics),
            )?
            .with_cache_budget(Arc::clone(cache_budget));
            Box::new(match window {
                Some(w) => agg.with_window(*w),
                None => agg,
            })
        }
        OperatorSpec::HashAgg {
            group_exprs,
            aggs,
            schema,
            window,
            watermarks,
            append_only_input,
        } => Box::new(
            HashAgg::new(
                group_exprs.iter().map(|(e, _)| Arc::clone(e)).collect(),
                aggs.clone(),
                Arc::clone(schema),
                *append_only_input,
            )?
            .with_window(*window, watermarks.clone(), Arc::clone(metrics))
            .with_cache_budget(Arc::clone(cache_budget)),
        ),
        OperatorSpec::HopExpand {
            time,
            slide_us,
            size_us,
            offset_us,
            schema,
        } => Box::new(HopExpand::new(
            *time,
            (*slide_us, *size_us, *offset_us),
            Arc::clone(schema),
            Arc::clone(metrics),
        )),
        OperatorSpec::SessionAgg {
            partition,
            time,
            gap_us,
            aggs,
            keys,
            emit_on_close,
            schema,
        } => Box::new(
            SessionAgg::new(
                SessionAggSpec {
                    partition: partition.clone(),
                    time: *time,
                    gap: *gap_us,
                    aggs: aggs.clone(),
                    keys: keys.clone(),
                    emit_on_close: *emit_on_close,
                    schema: Arc::clone(schema),
                },
                Arc::clone(metrics),
            )?
            .with_cache_budget(Arc::clone(cache_budget)),
        ),
        OperatorSpec::HopAgg {
            partition,
            time,
            slide_us,
            size_us,
            offset_us,
            aggs,
            keys,
            emit_on_close,
            schema,
        } => Box::new(
            HopAgg::new(
                HopAggSpec {
                    partition: partition.clone(),
                    time: *time,
                    slide: *slide_us,
                    size: *size_us,
                    offset: *offset_us,
                    aggs: aggs.clone(),
                    keys: keys.clone(),
                    emit_on_close: *emit_on_close,
                    schema: Arc::clone(schema),
                },
                Arc::clone(metrics),
            )?
            .with_cache_budget(Arc::clone(cache_budget)),
        ),
        OperatorSpec::Materialize { relation, .. } => Box::new(Materialize::new(
            *relation,
            partition_of(index)?,
            Arc::clone(schema),
        )?),
    })
}

/// A dispatcher from one upstream actor to all `targets`, plus the receivers.
fn connect(
    exchange: &Exchange,
    targets: &[ActorId],
) -> (Dispatcher, Vec<(ActorId, Receiver<Message>)>) {
    let mut outputs = Vec::new();
    let mut receivers = Vec::new();
    for &actor in targets {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        outputs.push(Output { actor, tx });
        receivers.push((actor, rx));
    }
    let dispatcher = match exchange {
        Exchange::Hash(key) if outputs.len() > 1 => Dispatcher::Hash {
            key: key.clone(),
            outputs,
        },
        _ => match outputs.pop() {
            Some(o) if outputs.is_empty() => Dispatcher::Single(o),
            Some(o) => {
                outputs.push(o);
                Dispatcher::Hash {
                    key: Vec::new(),
                    outputs,
                }
            }
            None => Dispatcher::Hash {
                key: Vec::new(),
                outputs,
            },
        },
    };
    (dispatcher, receivers)
}

/// A source opened for one reader: its splits, idle timeout, and whether it ends.
/// A source's readers, idle timeout, whether it ends, and whether FLUSH
/// waits for it to catch up.
type OpenedSource = (
    Vec<Box<dyn SplitReader>>,
    Option<std::time::Duration>,
    bool,
    bool,
);

/// Opens a source's splits for a new reader: from the start, or at the
/// split positions of a restored reader.
fn open_source(
    name: &str,
    schema: &SchemaRef,
    options: &[(String, String)],
    positions: Option<&[u64]>,
) -> Result<OpenedSource> {
    let options = options.iter().cloned().collect();
    let fail =
        |e: tidemark_connectors::ConnectorError| Error::Source(format!("source \"{name}\": {e}"));
    let config = tidemark_connectors::parse_options(&options, schema).map_err(fail)?;
    let readers =
        tidemark_connectors::open_splits(&config, Arc::clone(schema), positions).map_err(fail)?;
    let bounded = match &config.connector {
        ConnectorConfig::File(f) => !f.watch,
        ConnectorConfig::Datagen(d) => d.total_rows().is_some(),
    };
    // An endless generator without a rate never runs out of rows to catch up on.
    let catches_up = match &config.connector {
        ConnectorConfig::File(_) => true,
        ConnectorConfig::Datagen(d) => bounded || d.rows_per_second.is_some(),
    };
    Ok((readers, config.idle_timeout, bounded, catches_up))
}

/// Why a job with this plan cannot resume from its checkpointed state after
/// a restart (it is recomputed then), or `None` when it can.
pub(crate) fn recompute_reason(graph: &StreamGraph) -> Result<Option<String>> {
    let metrics = Arc::new(JobMetrics::default());
    let budget = CacheBudget::new(usize::MAX);
    for f in &graph.fragments {
        for spec in &f.operators {
            if let Durability::Recompute(why) =
                build_operator(spec, &f.schema, 0, &metrics, &budget)?.durability()
            {
                return Ok(Some(why));
            }
        }
    }
    Ok(None)
}

/// A job's committed state, by full key, when it resumes from a checkpoint.
pub(crate) type RestoredState = BTreeMap<Vec<u8>, Vec<u8>>;

/// The stored record of actor `index` of fragment `fragment`, if restoring.
fn stored_record(
    restored: Option<&RestoredState>,
    job: RelationId,
    fragment: u32,
    index: usize,
) -> Result<Option<ActorRecord>> {
    let Some(all) = restored else {
        return Ok(None);
    };
    let key = operator_prefix(job, fragment, ACTOR_RECORD, partition_of(index)?);
    all.get(&key).map(|b| ActorRecord::decode(b)).transpose()
}

fn partition_of(index: usize) -> Result<u16> {
    u16::try_from(index).map_err(|_| Error::Unsupported(format!("parallelism above {}", u16::MAX)))
}

/// Builds and starts the actors of job `job`; with `restored`, each resumes
/// from the job's checkpointed state instead of from empty.
pub(crate) fn build_job(
    runtime: &Runtime,
    job: RelationId,
    name: &str,
    graph: &StreamGraph,
    metrics: &Arc<JobMetrics>,
    restored: Option<&RestoredState>,
) -> Result<BuiltJob> {
    let parallelism = runtime.parallelism().max(1);
    let mut actors_of: HashMap<u32, Vec<ActorId>> = HashMap::new();
    for f in &graph.fragments {
        let n = match f.distribution {
            Distribution::Single => 1,
            Distribution::Hashed => parallelism,
        };
        actors_of.insert(f.id, (0..n).map(|_| runtime.next_actor_id()).collect());
    }
    // Sources open first: a missing file fails the statement before anything
    // is attached upstream.
    let mut opened = HashMap::new();
    for f in &graph.fragments {
        for input in &f.inputs {
            if let FragmentInput::Source {
                name,
                schema,
                options,
                ..
            } = input
            {
                let record = stored_record(restored, job, f.id, 0)?;
                let positions: Option<Vec<u64>> = record
                    .and_then(|r| r.source)
                    .map(|s| s.splits.iter().map(|p| p.position).collect());
                opened.insert(
                    f.id,
                    open_source(name, schema, options, positions.as_deref())?,
                );
            }
        }
    }
    let mut receivers: HashMap<ActorId, Vec<Receiver<Message>>> = HashMap::new();
    let mut dispatchers: HashMap<ActorId, Vec<Dispatcher>> = HashMap::new();
    let mut upstream_actors = Vec::new();
    let mut upstreams = Vec::new();
    for f in &graph.fragments {
        let targets = &actors_of[&f.id];
        for input in &f.inputs {
            let (sources, exchange, relation) = match input {
                FragmentInput::Relation {
                    id, exchange, name, ..
                } => {
                    if let Some(cause) = runtime.failure(*id) {
                        return Err(Error::JobFailed(name.clone(), cause.to_string()));
                    }
                    let job = runtime.job_actors(*id).ok_or_else(|| {
                        Error::Unsupported(format!("relation \"{name}\" is not running"))
                    })?;
                    (job.outputs, exchange, Some(*id))
                }
                FragmentInput::Fragment { id, exchange } => (actors_of[id].clone(), exchange, None),
                // A source's reader is this fragment's own actor.
                FragmentInput::Source { .. } => continue,
            };
            for source in sources {
                let (dispatcher, rxs) = connect(exchange, targets);
                for (actor, rx) in rxs {
                    receivers.entry(actor).or_default().push(rx);
                }
                match relation {
                    Some(rel) => {
                        runtime.shared().register_output(source, dispatcher);
                        upstream_actors.push(source);
                        if !upstreams.contains(&rel) {
                            upstreams.push(rel);
                        }
                    }
                    None => dispatchers.entry(source).or_default().push(dispatcher),
                }
            }
        }
    }
    let mut all = Vec::new();
    let mut spawned = Vec::new();
    let mut readers = Vec::new();
    let mut injectors = Vec::new();
    for f in &graph.fragments {
        let source = f.inputs.iter().find_map(|i| match i {
            FragmentInput::Source {
                name, event_time, ..
            } => Some((name, event_time)),
            _ => None,
        });
        let reads_relation = f
            .inputs
            .iter()
            .any(|i| matches!(i, FragmentInput::Relation { .. }));
        for (index, &actor) in actors_of[&f.id].iter().enumerate() {
            let mut chain = Chain::new(
                f.operators
                    .iter()
                    .map(|spec| {
                        build_operator(spec, &f.schema, index, metrics, runtime.cache_budget())
                    })
                    .collect::<Result<Vec<_>>>()?,
            )
            .at(
                ChainPlace {
                    job,
                    fragment: f.id,
                    partition: partition_of(index)?,
                },
                runtime.shared().store_handle(),
            );
            let record = match restored {
                Some(all) => chain.restore(all)?,
                None => None,
            };
            let outputs = Outputs::new(actor, dispatchers.remove(&actor).unwrap_or_default());
            match source {
                Some((source, event_time)) => {
                    let Some((split_readers, idle_timeout, bounded, catches_up)) =
                        opened.remove(&f.id)
                    else {
                        return Err(Error::Internal(format!(
                            "source \"{source}\" has several readers in one fragment"
                        )));
                    };
                    let (tx, rx) = mpsc::unbounded_channel();
                    injectors.push(Injector::Source(tx));
                    readers.push(SourceActor::new(SourceActorParts {
                        id: actor,
                        source: source.clone(),
                        readers: split_readers,
                        event_time: *event_time,
                        idle_timeout,
                        bounded,
                        catches_up,
                        barriers: rx,
                        chain,
                        outputs,
                        shared: Arc::clone(runtime.shared()),
                        metrics: Arc::clone(metrics),
                        restored: record,
                    }));
                }
                None => {
                    let mut spawn = Actor {
                        id: actor,
                        merge: Merge::new(receivers.remove(&actor).unwrap_or_default()),
                        chain,
                        outputs,
                        shared: Arc::clone(runtime.shared()),
                        count_input: reads_relation.then(|| Arc::clone(metrics)),
                        rows_in: 0,
                    };
                    if let Some(record) = record {
                        spawn.restore(record)?;
                    }
                    spawned.push(spawn);
                }
            }
            all.push(actor);
        }
    }
    for actor in spawned {
        actor.spawn(name.to_string());
    }
    for reader in readers {
        reader.spawn(name.to_string());
    }
    let output_actors = graph
        .fragments
        .last()
        .map(|f| actors_of[&f.id].clone())
        .unwrap_or_default();
    Ok(BuiltJob {
        actors: all,
        output_actors,
        upstream_actors,
        upstreams,
        injectors,
    })
}

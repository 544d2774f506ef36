//! The streaming runtime's public face: start it, create and drop jobs, send
//! DML to tables, and wait for checkpoints.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tidemark_plan::{RelationId, StreamGraph};
use tidemark_state::{job_state_table, relation_prefixes, table_prefix, StateStore, WriteBatch};
use tidemark_types::{ActorId, Epoch, Mutation};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::oneshot;

use crate::actor_threads::ActorThreads;
use crate::builder::{build_job, recompute_reason, RestoredState};
use crate::cache_budget::CacheBudget;
use crate::checkpoints::{CheckpointLog, CheckpointStats};
use crate::coordinator::{Command, Coordinator, Failures, Injector, JobChange};
use crate::durable::{job_record_key, JobRecord};
use crate::metrics::{JobMetrics, JobStats};
use crate::outputs::{Outputs, Shared};
use crate::table::{DmlRequest, TableSpec, TableState};
use crate::table_actor::{TableActor, TableMessage};
use crate::{Error, Result};

/// Capacity of every dataflow channel, in messages: what bounds memory and
/// makes a slow operator slow down its sources. Small, because a barrier
/// waits behind every chunk queued before it: at 64 (up to half a million
/// source rows per edge) a slow view took 10-27 s to align each checkpoint
/// under load, at 4 it takes 2-6 s, at the same throughput.
pub const CHANNEL_CAPACITY: usize = 4;

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Actors per hashed fragment.
    pub parallelism: usize,
    pub checkpoint_interval: Duration,
    /// Bytes of keyed state (groups of a `GROUP BY`) all operators of the
    /// server keep in memory together; past it, the least recently used go
    /// to the store.
    pub operator_cache_bytes: usize,
    /// Rows of an existing table or view a new view built on it receives
    /// per checkpoint while it is created (see `backfill`).
    pub backfill_rows: usize,
}

/// The actors of a running job; `outputs` are those whose chain ends in the
/// relation, which views built on it attach to.
#[derive(Debug, Clone)]
pub(crate) struct JobActors {
    pub all: Vec<ActorId>,
    pub outputs: Vec<ActorId>,
    pub metrics: Arc<JobMetrics>,
}

/// Handle to the streaming runtime; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    config: RuntimeConfig,
    cache_budget: Arc<CacheBudget>,
    shared: Arc<Shared>,
    checkpoints: CheckpointLog,
    commands: UnboundedSender<Command>,
    tables: RwLock<HashMap<RelationId, mpsc::Sender<TableMessage>>>,
    jobs: Mutex<HashMap<RelationId, JobActors>>,
    failures: Failures,
    next_actor: AtomicU32,
    /// Job changes one at a time, so each attaches at its own barrier.
    ddl: tokio::sync::Mutex<()>,
    /// Views restored at start by recomputing them: they send their whole
    /// contents again, so no view built on one can resume from its checkpoint.
    recomputed: Mutex<std::collections::HashSet<RelationId>>,
    /// Dropped last (fields drop in order): stops the actors once nothing
    /// else of the runtime is left.
    threads: ActorThreads,
}

/// How long a clean stop waits for the actor threads to end.
const STOP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// How a view's job started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewStart {
    /// A new view, computed from its inputs' current contents.
    Created,
    /// A restored view, resumed from its checkpointed state and source offsets.
    Resumed,
    /// A restored view whose state could not be resumed, recomputed from its
    /// inputs, for this reason.
    Recomputed(String),
}

impl Runtime {
    /// Starts the actor threads and the coordinator; must be called inside
    /// a tokio runtime, where the coordinator runs.
    pub fn start(store: Arc<dyn StateStore>, config: RuntimeConfig) -> Result<Self> {
        let threads = ActorThreads::start()?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let failures: Failures = Arc::default();
        let shared = Arc::new(Shared::new(
            events_tx,
            Arc::clone(&store),
            threads.handle().clone(),
            config.backfill_rows,
        ));
        let checkpoints = CheckpointLog::default();
        let coordinator = Coordinator::new(
            store,
            Arc::clone(&shared),
            checkpoints.clone(),
            Arc::clone(&failures),
        )?;
        tokio::spawn(coordinator.run(config.checkpoint_interval, commands_rx, events_rx));
        Ok(Self {
            inner: Arc::new(Inner {
                cache_budget: CacheBudget::new(config.operator_cache_bytes),
                config,
                shared,
                checkpoints,
                commands: commands_tx,
                tables: RwLock::default(),
                jobs: Mutex::default(),
                failures,
                next_actor: AtomicU32::new(1),
                ddl: tokio::sync::Mutex::new(()),
                recomputed: Mutex::default(),
                threads,
            }),
        })
    }

    pub fn parallelism(&self) -> usize {
        self.inner.config.parallelism
    }

    /// What the operator caches of every view share.
    pub fn cache_budget(&self) -> &Arc<CacheBudget> {
        &self.inner.cache_budget
    }

    pub(crate) fn next_actor_id(&self) -> ActorId {
        self.inner.next_actor.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub(crate) fn job_actors(&self, id: RelationId) -> Option<JobActors> {
        self.inner
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    fn register_job(&self, id: RelationId, actors: JobActors) {
        let mut jobs = self.inner.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.insert(id, actors);
    }

    async fn barrier(&self, change: JobChange) -> Result<Epoch> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Barrier {
                change: Box::new(change),
                reply: Some(tx),
            })
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)?
    }

    /// Takes a checkpoint now; returns its epoch once it is committed.
    pub async fn checkpoint(&self) -> Result<Epoch> {
        self.barrier(JobChange::default()).await
    }

    /// The end of a clean stop, after its final checkpoint: the committer
    /// writes what it was handed and its thread ends, then the actors stop
    /// and their threads end, so the process exits with no thread of ours
    /// still using the store. No checkpoint is taken after it.
    pub async fn stop(&self) {
        let (reply, done) = oneshot::channel();
        if self.inner.commands.send(Command::Stop { reply }).is_ok() {
            let _ = done.await;
        }
        self.inner.threads.stop(STOP_PATIENCE).await;
    }

    /// Returns once a checkpoint covering everything sent before the call is
    /// committed, and every source has caught up (a bounded one read to its
    /// end, a watched file to what it held when the view started), so every
    /// view reflects it.
    pub async fn flush(&self) -> Result<Epoch> {
        loop {
            let epoch = self.barrier(JobChange::default()).await?;
            let waiting: Vec<Arc<JobMetrics>> = {
                let jobs = self.inner.jobs.lock().unwrap_or_else(|e| e.into_inner());
                jobs.iter()
                    .filter(|(id, _)| self.failure(**id).is_none())
                    .map(|(_, j)| Arc::clone(&j.metrics))
                    .collect()
            };
            if waiting.iter().all(|m| m.inputs_done_by(epoch)) {
                return Ok(epoch);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Holds every source reader back, or lets them go (see
    /// [`Shared::hold_sources`]): a restart restores its views one barrier
    /// each, and a barrier would otherwise wait behind the input the views
    /// already resumed are reading.
    pub fn hold_sources(&self, held: bool) {
        self.inner.shared.hold_sources(held);
    }

    /// Whether some view restored at start was recomputed rather than
    /// resumed: its rows are incomplete until it catches up with its inputs.
    pub fn recomputed_any(&self) -> bool {
        !self
            .inner
            .recomputed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// The most recent checkpoints, oldest first.
    pub fn checkpoints(&self) -> Vec<CheckpointStats> {
        self.inner.checkpoints.recent()
    }

    /// The counters of a running job (a view), if it runs.
    pub fn job_stats(&self, id: RelationId) -> Option<JobStats> {
        self.job_actors(id).map(|j| j.metrics.stats())
    }

    /// Commits catalog records alone (for relations without a job: sources).
    pub async fn commit_catalog(&self, catalog: WriteBatch) -> Result<Epoch> {
        self.barrier(JobChange {
            catalog,
            ..JobChange::default()
        })
        .await
    }

    /// Starts the actor that owns a table, with the rows the store holds for
    /// it (none for a new table); `catalog` commits with its first epoch.
    pub async fn create_table(&self, spec: TableSpec, catalog: WriteBatch) -> Result<()> {
        let _ddl = self.inner.ddl.lock().await;
        let id = spec.id;
        let name = spec.name.clone();
        let actor = self.next_actor_id();
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let state = TableState::restore(spec, self.inner.shared.store_handle())?;
        let watermark = state.stored_watermark();
        let mut outputs = Outputs::new(actor, Vec::new());
        if let Some(wm) = watermark {
            outputs.reached(wm);
        }
        TableActor {
            id: actor,
            state,
            input: rx,
            outputs,
            shared: Arc::clone(&self.inner.shared),
            watermark: watermark.map(|wm| wm.value),
        }
        .spawn(name);
        self.inner
            .tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx.clone());
        self.register_job(
            id,
            JobActors {
                all: vec![actor],
                outputs: vec![actor],
                metrics: Arc::default(),
            },
        );
        self.barrier(JobChange {
            start: Some((id, vec![actor], Vec::new())),
            injectors: vec![Injector::Table(tx)],
            catalog,
            ..JobChange::default()
        })
        .await?;
        Ok(())
    }

    /// Applies one DML statement to a table; returns the affected row count.
    pub async fn dml(&self, table: RelationId, request: DmlRequest) -> Result<u64> {
        let tx = self
            .inner
            .tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&table)
            .cloned()
            .ok_or(Error::Shutdown)?;
        let (reply_tx, reply_rx) = oneshot::channel();
        tx.send(TableMessage::Dml(request, reply_tx))
            .await
            .map_err(|_| Error::Shutdown)?;
        reply_rx.await.map_err(|_| Error::Shutdown)?
    }

    /// Starts a view's job: its actors first receive a snapshot of every
    /// upstream relation, then all later changes. A snapshot is sent over as
    /// many epochs as its size takes (see `backfill`). Returns once the
    /// epoch that completes the view is committed (so it is readable), or
    /// its job's error. `catalog` commits with the first epoch.
    ///
    /// With `restore` (a view that existed before a restart), the job resumes
    /// from its checkpointed state and source offsets when it can, attaching
    /// to its upstreams without a snapshot; else its stored rows are cleared
    /// and it is recomputed.
    pub async fn create_view(
        &self,
        id: RelationId,
        name: &str,
        graph: &StreamGraph,
        mut catalog: WriteBatch,
        restore: bool,
    ) -> Result<ViewStart> {
        let _ddl = self.inner.ddl.lock().await;
        let record = JobRecord {
            parallelism: self.parallelism() as u32,
            plan: graph.explain(self.parallelism()).join("\n"),
        };
        // The job record says its state is whole: written once every
        // upstream has sent it all of its snapshot, so a restart before
        // then recomputes the view.
        let mut ready = WriteBatch::default();
        let (start, restored) = if restore {
            match self.resumable(id, graph, &record)? {
                Ok(state) => (ViewStart::Resumed, Some(state)),
                Err(reason) => (ViewStart::Recomputed(reason), None),
            }
        } else {
            (ViewStart::Created, None)
        };
        if restored.is_none() {
            if restore {
                catalog.delete_prefixes.extend(relation_prefixes(id));
                self.inner
                    .recomputed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id);
            }
            ready.put(job_record_key(id), record.encode());
        }
        let metrics = Arc::new(JobMetrics::default());
        let built = build_job(self, id, name, graph, &metrics, restored.as_ref())?;
        self.register_job(
            id,
            JobActors {
                all: built.actors.clone(),
                outputs: built.output_actors.clone(),
                metrics,
            },
        );
        let started = self
            .barrier(JobChange {
                mutation: Some(Mutation::AddOutputs {
                    actors: built.upstream_actors,
                    snapshot: restored.is_none(),
                }),
                start: Some((id, built.actors, built.upstreams)),
                injectors: built.injectors,
                catalog,
                ready,
                ..JobChange::default()
            })
            .await;
        match self.failure(id) {
            Some(e) => Err(Error::JobFailed(name.to_string(), e.to_string())),
            None => started.map(|_| start),
        }
    }

    /// The committed state view `id` resumes from, or why it cannot.
    fn resumable(
        &self,
        id: RelationId,
        graph: &StreamGraph,
        record: &JobRecord,
    ) -> Result<std::result::Result<RestoredState, String>> {
        if let Some(why) = recompute_reason(graph)? {
            return Ok(Err(why));
        }
        let recomputed = self
            .inner
            .recomputed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for f in &graph.fragments {
            for input in &f.inputs {
                if let tidemark_plan::FragmentInput::Relation { id, name, .. } = input {
                    if recomputed.contains(id) {
                        return Ok(Err(format!("it reads \"{name}\", which is recomputed")));
                    }
                }
            }
        }
        let prefix = table_prefix(job_state_table(id));
        let (_, mut scanned) = self
            .inner
            .shared
            .store()
            .scan_prefixes(std::slice::from_ref(&prefix))?;
        let state: RestoredState = scanned.pop().unwrap_or_default().into_iter().collect();
        let Some(stored) = state.get(&job_record_key(id)) else {
            return Ok(Err("no checkpointed state is stored for it".into()));
        };
        let stored = JobRecord::decode(stored)?;
        if stored.parallelism != record.parallelism {
            return Ok(Err(format!(
                "its state was checkpointed at parallelism {}, and the server runs at {}",
                stored.parallelism, record.parallelism
            )));
        }
        if stored.plan != record.plan {
            return Ok(Err(
                "this version plans it differently from the one that checkpointed it".into(),
            ));
        }
        Ok(Ok(state))
    }

    /// Stops a table's or view's job and deletes its state, in one checkpoint
    /// with `catalog`.
    pub async fn drop_relation(&self, id: RelationId, catalog: WriteBatch) -> Result<()> {
        let _ddl = self.inner.ddl.lock().await;
        let all = self
            .inner
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
            .map(|j| j.all)
            .unwrap_or_default();
        self.inner
            .tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.barrier(JobChange {
            mutation: Some(Mutation::Stop(all)),
            stop: Some(id),
            catalog,
            ..JobChange::default()
        })
        .await?;
        self.inner
            .failures
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        Ok(())
    }

    /// Marks view `id`, which could not start, failed with the error of the
    /// first failed relation among `upstreams` (as if it had failed with
    /// it), so it is listed and reads of it say why. Returns whether one had.
    pub fn inherit_failure(&self, id: RelationId, upstreams: &[RelationId]) -> bool {
        let Some(error) = upstreams.iter().find_map(|u| self.failure(*u)) else {
            return false;
        };
        self.register_job(
            id,
            JobActors {
                all: Vec::new(),
                outputs: Vec::new(),
                metrics: Arc::default(),
            },
        );
        self.inner
            .failures
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, error);
        true
    }

    /// The error that stopped a job, if it failed.
    pub fn failure(&self, id: RelationId) -> Option<Arc<Error>> {
        self.inner
            .failures
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }
}

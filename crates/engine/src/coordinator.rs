//! The checkpoint coordinator: injects barriers at the sources, collects every
//! actor's acknowledgement and state changes, and commits each epoch to the
//! store in one atomic write. Also the single place where jobs start and stop,
//! since those changes ride on barriers too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tidemark_plan::RelationId;
use tidemark_state::{relation_prefixes, StateStore, WriteBatch};
use tidemark_types::{ActorId, Barrier, Epoch, Mutation};
use tokio::sync::mpsc::{Sender, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use crate::checkpoints::CheckpointLog;
use crate::committer::{self, Committed, Ready};
use crate::durable::job_record_key;
use crate::outputs::{ActorEvent, Shared};
use crate::table_actor::TableMessage;
use crate::{Error, Result};

/// Periodic checkpoints wait while this many are injected and not yet
/// committed: a slow job then makes epochs longer, not more numerous.
const MAX_INFLIGHT: usize = 4;

/// Where the coordinator puts barriers into the dataflow: the actors that
/// own tables and the actors that read sources.
#[derive(Clone)]
pub enum Injector {
    Table(Sender<TableMessage>),
    Source(UnboundedSender<Barrier>),
}

impl Injector {
    async fn inject(&self, barrier: Barrier) {
        match self {
            Injector::Table(tx) => {
                let _ = tx.send(TableMessage::Barrier(barrier)).await;
            }
            Injector::Source(tx) => {
                let _ = tx.send(barrier);
            }
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Injector::Table(tx) => tx.is_closed(),
            Injector::Source(tx) => tx.is_closed(),
        }
    }
}

/// A change to the set of running jobs, applied at the next barrier.
#[derive(Default)]
pub struct JobChange {
    pub mutation: Option<Mutation>,
    /// A job that starts at this barrier: its actors must acknowledge it.
    pub start: Option<(RelationId, Vec<ActorId>, Vec<RelationId>)>,
    /// Where the starting job takes barriers in, from this one on.
    pub injectors: Vec<Injector>,
    /// A job that stops at this barrier; its state is deleted in the same commit.
    pub stop: Option<RelationId>,
    /// Catalog records written (or state cleared) in the same commit as the
    /// change, so the stored catalog always matches the stored jobs.
    pub catalog: WriteBatch,
    /// Written in the commit of the epoch in which the starting job has
    /// received every snapshot it asks for (its first, when it asks for
    /// none); the reply to the change comes once that epoch commits.
    pub ready: WriteBatch,
}

/// A starting job whose upstreams are still sending it their snapshots.
struct Backfilling {
    job: RelationId,
    /// The upstream actors that have not sent all of theirs.
    pending: HashSet<ActorId>,
    /// The starting job's `JobChange::ready`.
    ready: WriteBatch,
    waiters: Vec<oneshot::Sender<Result<Epoch>>>,
}

pub enum Command {
    /// Inject a barrier now; reply once its epoch is committed.
    Barrier {
        change: Box<JobChange>,
        reply: Option<oneshot::Sender<Result<Epoch>>>,
    },
    /// Stop: write the epochs handed to the committer, end its thread, and
    /// reply. Nothing is checkpointed after it.
    Stop { reply: oneshot::Sender<()> },
}

struct Job {
    actors: Vec<ActorId>,
    upstreams: Vec<RelationId>,
}

struct Inflight {
    injected: Instant,
    /// From injection to the last acknowledgement.
    aligned: Option<Duration>,
    pending: HashSet<ActorId>,
    batch: WriteBatch,
    waiters: Vec<oneshot::Sender<Result<Epoch>>>,
}

/// Failed jobs, by relation, with the error that stopped them.
pub type Failures = Arc<RwLock<HashMap<RelationId, Arc<Error>>>>;

pub struct Coordinator {
    failures: Failures,
    next_epoch: Epoch,
    jobs: HashMap<RelationId, Job>,
    live: HashMap<ActorId, RelationId>,
    sources: HashMap<RelationId, Vec<Injector>>,
    inflight: BTreeMap<Epoch, Inflight>,
    /// Acknowledged epochs go here, in order, to be written.
    commits: std::sync::mpsc::Sender<Ready>,
    /// The committer's thread, joined at `Command::Stop`.
    committer: Option<std::thread::JoinHandle<()>>,
    /// Epochs handed to the committer and not yet written.
    writing: usize,
    /// What the committer reports back, taken by `run`.
    committed: Option<UnboundedReceiver<Committed>>,
    /// The first commit the store refused, once the committer reports it.
    broken: Option<(Epoch, String)>,
    /// Job records of failed jobs, deleted with the next epoch injected.
    failed_records: Vec<Vec<u8>>,
    /// A source reader waits for a checkpoint that could not be injected
    /// yet (too many in flight): injected once one commits.
    wanted: bool,
    /// Jobs receiving snapshots, by the epoch that started them.
    backfills: HashMap<Epoch, Backfilling>,
}

impl Coordinator {
    /// Starts the committer thread too.
    pub fn new(
        store: Arc<dyn StateStore>,
        shared: Arc<Shared>,
        log: CheckpointLog,
        failures: Failures,
    ) -> Result<Self> {
        let next_epoch = store.committed_epoch() + 1;
        let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
        let (commits, committer) = committer::start(store, shared, log, done_tx)
            .map_err(|e| Error::Internal(format!("cannot start the committer: {e}")))?;
        Ok(Self {
            failures,
            next_epoch,
            jobs: HashMap::new(),
            live: HashMap::new(),
            sources: HashMap::new(),
            inflight: BTreeMap::new(),
            commits,
            committer: Some(committer),
            writing: 0,
            committed: Some(done_rx),
            broken: None,
            failed_records: Vec::new(),
            wanted: false,
            backfills: HashMap::new(),
        })
    }

    /// Whether another periodic checkpoint may be injected: epochs being
    /// written count, so a slow store slows checkpoints down too.
    fn has_room(&self) -> bool {
        self.inflight.len() + self.writing < MAX_INFLIGHT
    }

    pub async fn run(
        mut self,
        interval: Duration,
        mut commands: UnboundedReceiver<Command>,
        mut events: UnboundedReceiver<ActorEvent>,
    ) {
        let Some(mut committed) = self.committed.take() else {
            return;
        };
        // The first tick after one interval, not at once: a barrier racing
        // the first job's start would only shift epochs.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if !self.sources.is_empty() && self.has_room() {
                        self.inject(JobChange::default(), None).await;
                    }
                }
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::Barrier { change, reply }) => self.inject(*change, reply).await,
                    Some(Command::Stop { reply }) => {
                        let committer = self.committer.take();
                        // Its sender goes with it: the committer writes what
                        // it was handed, then its thread ends.
                        drop(self);
                        if let Some(thread) = committer {
                            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                        }
                        let _ = reply.send(());
                        return;
                    }
                },
                Some(event) = events.recv() => self.on_event(event).await,
                Some(done) = committed.recv() => self.on_committed(done).await,
            }
        }
    }

    async fn inject(&mut self, change: JobChange, reply: Option<oneshot::Sender<Result<Epoch>>>) {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let mut batch = change.catalog;
        for key in self.failed_records.drain(..) {
            batch.delete(key);
        }
        let mut waiters: Vec<_> = reply.into_iter().collect();
        match &change.mutation {
            Some(Mutation::AddOutputs {
                actors,
                snapshot: true,
            }) if !actors.is_empty() => {
                let backfilling = Backfilling {
                    job: change.start.as_ref().map_or(0, |s| s.0),
                    pending: actors.iter().copied().collect(),
                    ready: change.ready,
                    waiters: std::mem::take(&mut waiters),
                };
                self.backfills.insert(epoch, backfilling);
            }
            _ => batch.append(change.ready),
        }
        if let Some((id, actors, upstreams)) = change.start {
            for a in &actors {
                self.live.insert(*a, id);
            }
            self.jobs.insert(id, Job { actors, upstreams });
            if !change.injectors.is_empty() {
                self.sources.insert(id, change.injectors);
            }
        }
        // Readers of failed jobs have stopped.
        self.sources.retain(|_, injectors| {
            injectors.retain(|i| !i.is_closed());
            !injectors.is_empty()
        });
        let pending: HashSet<ActorId> = self.live.keys().copied().collect();
        let stopped_source = change.stop.and_then(|id| {
            batch.delete_prefixes.extend(relation_prefixes(id));
            if let Some(job) = self.jobs.remove(&id) {
                for a in &job.actors {
                    self.live.remove(a);
                }
            }
            self.sources.remove(&id)
        });
        self.inflight.insert(
            epoch,
            Inflight {
                injected: Instant::now(),
                aligned: None,
                pending,
                batch,
                waiters,
            },
        );
        let barrier = Barrier {
            epoch,
            mutation: change.mutation,
        };
        let targets: Vec<Injector> = self
            .sources
            .values()
            .chain(stopped_source.iter())
            .flatten()
            .cloned()
            .collect();
        for injector in targets {
            injector.inject(barrier.clone()).await;
        }
        self.try_commit();
    }

    async fn on_event(&mut self, event: ActorEvent) {
        match event {
            ActorEvent::Ack {
                actor,
                epoch,
                batch,
                backfilled,
            } => {
                if let Some(inflight) = self.inflight.get_mut(&epoch) {
                    if inflight.pending.remove(&actor) {
                        tracing::trace!(
                            epoch,
                            actor,
                            job = self.live.get(&actor).copied().unwrap_or_default(),
                            after_ms = inflight.injected.elapsed().as_millis() as u64,
                            "barrier acknowledged"
                        );
                        inflight.batch.append(batch);
                        if inflight.pending.is_empty() {
                            inflight.aligned = Some(inflight.injected.elapsed());
                        }
                        for started in backfilled {
                            self.backfilled(started, actor, epoch);
                        }
                    }
                }
                self.try_commit();
            }
            ActorEvent::CheckpointWanted => {
                if self.has_room() {
                    self.inject(JobChange::default(), None).await;
                } else {
                    self.wanted = true;
                }
            }
            ActorEvent::Failed { actor, error } => {
                let Some(job) = self.live.get(&actor).copied() else {
                    return;
                };
                let error = Arc::new(error);
                let stopped = self.fail_job(job, error);
                if !stopped.is_empty() {
                    let change = JobChange {
                        mutation: Some(Mutation::Stop(stopped)),
                        ..JobChange::default()
                    };
                    self.inject(change, None).await;
                }
                self.try_commit();
            }
        }
    }

    /// `actor` has sent all of the snapshot that `started` asked for, with
    /// `epoch`; when it is the last upstream to, the job is ready with it.
    fn backfilled(&mut self, started: Epoch, actor: ActorId, epoch: Epoch) {
        let std::collections::hash_map::Entry::Occupied(mut backfilling) =
            self.backfills.entry(started)
        else {
            return;
        };
        backfilling.get_mut().pending.remove(&actor);
        if !backfilling.get().pending.is_empty() {
            return;
        }
        let done = backfilling.remove();
        tracing::debug!(job = done.job, started, epoch, "snapshots sent");
        match self.inflight.get_mut(&epoch) {
            Some(inflight) => {
                inflight.batch.append(done.ready);
                inflight.waiters.extend(done.waiters);
            }
            None => {
                for w in done.waiters {
                    let _ = w.send(Err(Error::Internal(format!(
                        "a snapshot finished with epoch {epoch}, which is not in flight"
                    ))));
                }
            }
        }
    }

    /// Marks `job` and every job reading from it as failed and forgets their
    /// actors; returns those actors, to be stopped.
    fn fail_job(&mut self, job: RelationId, error: Arc<Error>) -> Vec<ActorId> {
        let mut doomed = vec![job];
        let mut i = 0;
        while i < doomed.len() {
            let current = doomed[i];
            for (id, j) in &self.jobs {
                if j.upstreams.contains(&current) && !doomed.contains(id) {
                    doomed.push(*id);
                }
            }
            i += 1;
        }
        let mut failures = self.failures.write().unwrap_or_else(|e| e.into_inner());
        let mut stopped = Vec::new();
        for id in doomed {
            failures.entry(id).or_insert_with(|| Arc::clone(&error));
            self.backfills.retain(|_, b| {
                if b.job != id {
                    return true;
                }
                for w in b.waiters.drain(..) {
                    let _ = w.send(Err(Error::JobFailed(id.to_string(), error.to_string())));
                }
                false
            });
            // The job stops short of the epochs still to commit: its stored
            // state no longer matches its inputs', so a restart must not
            // resume from it. Gone from every epoch not yet committed.
            let record = job_record_key(id);
            for inflight in self.inflight.values_mut() {
                inflight.batch.delete(record.clone());
            }
            self.failed_records.push(record);
            if let Some(j) = self.jobs.get(&id) {
                for a in &j.actors {
                    self.live.remove(a);
                    for inflight in self.inflight.values_mut() {
                        inflight.pending.remove(a);
                    }
                    stopped.push(*a);
                }
            }
        }
        stopped
    }

    /// Hands the acknowledged epochs at the head of the queue to the
    /// committer. From then on they count as committed here: a job failing
    /// later keeps its record in them, as it would in an epoch already
    /// written, and its state there matches its inputs'.
    fn try_commit(&mut self) {
        while let Some(entry) = self.inflight.first_entry() {
            if !entry.get().pending.is_empty() {
                return;
            }
            let epoch = *entry.key();
            let inflight = entry.remove();
            let ready = Ready {
                epoch,
                aligned: inflight
                    .aligned
                    .unwrap_or_else(|| inflight.injected.elapsed()),
                injected: inflight.injected,
                batch: inflight.batch,
                waiters: inflight.waiters,
            };
            if self.commits.send(ready).is_err() {
                // Its waiters are dropped with it, and hear of a shutdown.
                tracing::error!(
                    epoch,
                    "the committer has stopped; no later checkpoint will commit"
                );
                self.broken
                    .get_or_insert((epoch, "the committer has stopped".into()));
                self.fail_all();
                continue;
            }
            self.writing += 1;
        }
    }

    async fn on_committed(&mut self, done: Committed) {
        tracing::trace!(epoch = done.epoch, "checkpoint written");
        self.writing = self.writing.saturating_sub(1);
        if let Some(failure) = done.failure {
            if self.broken.is_none() {
                self.broken = Some(failure);
                self.fail_all();
            }
        }
        for w in done.waiters {
            let _ = w.send(match self.commit_failure() {
                None => Ok(done.epoch),
                Some(e) => Err(e),
            });
        }
        if self.wanted && self.has_room() {
            self.wanted = false;
            self.inject(JobChange::default(), None).await;
        }
    }

    /// The error of the first refused commit, if there was one.
    fn commit_failure(&self) -> Option<Error> {
        self.broken
            .as_ref()
            .map(|(epoch, reason)| Error::CommitFailed {
                epoch: *epoch,
                reason: reason.clone(),
            })
    }

    /// Marks every job failed with the commit failure: their state can no
    /// longer be made durable. Their actors keep running so barriers still
    /// complete.
    fn fail_all(&mut self) {
        let Some(error) = self.commit_failure().map(Arc::new) else {
            return;
        };
        let mut failures = self.failures.write().unwrap_or_else(|e| e.into_inner());
        for id in self.jobs.keys() {
            failures.entry(*id).or_insert_with(|| Arc::clone(&error));
        }
        drop(failures);
        // No epoch that would make them ready can commit now.
        for (_, backfilling) in std::mem::take(&mut self.backfills) {
            for w in backfilling.waiters {
                let _ = w.send(Err(self.commit_failure().unwrap_or(Error::Shutdown)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use tidemark_state::{Entries, MemoryStore};

    use super::*;
    use crate::{DmlRequest, Runtime, RuntimeConfig, TableSpec};

    /// A memory store whose commits fail once `failing` is set.
    #[derive(Default)]
    struct FlakyStore {
        inner: MemoryStore,
        failing: AtomicBool,
    }

    impl StateStore for FlakyStore {
        fn commit(&self, epoch: Epoch, batch: WriteBatch) -> tidemark_state::Result<()> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(tidemark_state::Error::Corrupt {
                    table: 0,
                    reason: "disk full".into(),
                });
            }
            self.inner.commit(epoch, batch)
        }

        fn committed_epoch(&self) -> Epoch {
            self.inner.committed_epoch()
        }

        fn scan_prefixes(
            &self,
            prefixes: &[Vec<u8>],
        ) -> tidemark_state::Result<(Epoch, Vec<Entries>)> {
            self.inner.scan_prefixes(prefixes)
        }

        fn get_many(&self, keys: &[Vec<u8>]) -> tidemark_state::Result<Vec<Option<Vec<u8>>>> {
            self.inner.get_many(keys)
        }

        fn scan_page(
            &self,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> tidemark_state::Result<tidemark_state::Page> {
            self.inner.scan_page(prefix, after, limit)
        }

        fn snapshot(
            self: Arc<Self>,
            prefixes: Vec<Vec<u8>>,
        ) -> tidemark_state::Result<tidemark_state::Snapshot> {
            self.inner.read_snapshot(prefixes)
        }
    }

    #[tokio::test]
    async fn no_checkpoint_commits_after_one_fails() {
        let store = Arc::new(FlakyStore::default());
        let runtime = Runtime::start(
            Arc::clone(&store) as Arc<dyn StateStore>,
            RuntimeConfig {
                parallelism: 1,
                checkpoint_interval: Duration::from_secs(3600),
                operator_cache_bytes: usize::MAX,
                backfill_rows: crate::DEFAULT_BACKFILL_ROWS,
            },
        )
        .unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        runtime
            .create_table(
                TableSpec {
                    id: 5,
                    name: "t".into(),
                    schema: Arc::clone(&schema),
                    primary_key: None,
                    append_only: false,
                    event_time: None,
                },
                WriteBatch::default(),
            )
            .await
            .unwrap();
        let rows = |v: i64| {
            DmlRequest::Insert(
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(Int64Array::from(vec![v]))],
                )
                .unwrap(),
            )
        };
        runtime.dml(5, rows(1)).await.unwrap();
        let good = runtime.checkpoint().await.unwrap();
        assert!(runtime.failure(5).is_none());

        store.failing.store(true, Ordering::SeqCst);
        runtime.dml(5, rows(2)).await.unwrap();
        let failed = runtime.checkpoint().await.unwrap_err();
        assert!(matches!(failed, Error::CommitFailed { epoch, .. } if epoch == good + 1));
        // The table is failed by the time its checkpoint's error is known.
        assert!(matches!(
            runtime.failure(5).as_deref(),
            Some(Error::CommitFailed { .. })
        ));

        // The store would take this one, but it lacks the failed epoch's row.
        store.failing.store(false, Ordering::SeqCst);
        let later = runtime.checkpoint().await.unwrap_err();
        assert!(matches!(later, Error::CommitFailed { epoch, .. } if epoch == good + 1));
        assert_eq!(store.committed_epoch(), good);
        assert!(matches!(
            runtime.failure(5).as_deref(),
            Some(Error::CommitFailed { .. })
        ));
    }
}

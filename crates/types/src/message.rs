use crate::StreamChunk;

/// A checkpoint generation. Everything before barrier `e` on every channel belongs
/// to epoch `e`; state is committed one whole epoch at a time.
pub type Epoch = u64;

/// One running instance of a fragment.
pub type ActorId = u32;

/// Event-time progress: no row with `column < value` will follow on this channel.
/// `value` is in microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    pub column: usize,
    pub value: i64,
}

/// A change to the running dataflow that takes effect exactly at a barrier, so
/// every actor switches over at the same point of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// These actors pick up their new outputs (registered with the runtime before
    /// the barrier was injected) and, when `snapshot` is set, send them a
    /// snapshot of their state first. A job restored from a checkpoint
    /// attaches without one: its state already reflects the upstream's.
    AddOutputs {
        actors: Vec<ActorId>,
        snapshot: bool,
    },
    /// These actors stop after this barrier; their upstreams drop the outputs
    /// that lead to them.
    Stop(Vec<ActorId>),
}

/// The checkpoint marker that flows in-band from the sources to the views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Barrier {
    pub epoch: Epoch,
    pub mutation: Option<Mutation>,
}

impl Barrier {
    pub fn new(epoch: Epoch) -> Self {
        Self {
            epoch,
            mutation: None,
        }
    }

    /// Whether this barrier stops `actor`.
    pub fn stops(&self, actor: ActorId) -> bool {
        matches!(&self.mutation, Some(Mutation::Stop(ids)) if ids.contains(&actor))
    }

    /// Whether `actor` gets new outputs at this barrier.
    pub fn adds_outputs_to(&self, actor: ActorId) -> bool {
        matches!(&self.mutation, Some(Mutation::AddOutputs { actors, .. }) if actors.contains(&actor))
    }

    /// Whether `actor` gets new outputs at this barrier that start from its snapshot.
    pub fn snapshots_for(&self, actor: ActorId) -> bool {
        matches!(
            &self.mutation,
            Some(Mutation::AddOutputs { actors, snapshot: true }) if actors.contains(&actor)
        )
    }
}

/// What flows on every dataflow channel.
#[derive(Debug, Clone)]
pub enum Message {
    Chunk(StreamChunk),
    Watermark(Watermark),
    Barrier(Barrier),
}

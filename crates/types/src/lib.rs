//! The vocabulary every Tidemark crate speaks: chunks of changes, the messages that
//! flow on dataflow channels, and epochs. Data only; the logic lives elsewhere.

mod chunk;
mod message;

pub use chunk::{Op, StreamChunk};
pub use message::{ActorId, Barrier, Epoch, Message, Mutation, Watermark};

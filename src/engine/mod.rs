//! Run engines and the stream hub: how a durable run gets executed, and how its events reach subscribers.
//!
//! Policy: an engine is generic over what a run does ([`RunExecutor`], implemented by the chat module), so
//! `engine/` never imports a feature. The local engine runs executors in-process, remembers what it runs so it
//! can cancel, and sweeps for unfinished runs whose lease has lapsed (a crash, a restart) to resume them. Events
//! are pushed to subscribers through the [`hub::StreamHub`], never by polling the database; the hub keeps the
//! reply text so a late or reconnecting subscriber catches up from memory without gaps or repeats. The
//! [`instances`] registry says which processes are alive, so a run held by a dead one is taken over at once;
//! on PostgreSQL the [`relay`] lets a subscriber on any instance follow a run executed on another, by push
//! (its tokens by PostgreSQL's notifications or, with `REDIS_URL`, the Redis Streams [`bus`]).

pub mod bus;
pub mod hub;
pub mod instances;
pub mod local;
pub mod relay;

pub use hub::{RunChannel, RunEvent, RunView, StreamHub};
pub use instances::Instance;
pub use local::{LocalEngine, RunExecutor};
pub use relay::Relay;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use uuid::Uuid;

/// An engine whose workers may live in other processes (Temporal, `chat::temporal`): it is told to start
/// and to stop runs, and executes them wherever its workers are.
pub trait ExternalEngine: Send + Sync {
    /// Starts `run`, or does nothing when it was started before (a repeated start never runs it twice).
    fn start(&self, run: Uuid);
    /// Asks `run` to stop; false when the engine cannot (it does not know the run, or is unreachable), so
    /// the caller ends the run directly.
    fn cancel(&self, run: Uuid) -> BoxFuture<'_, bool>;
}

/// The engine this instance hands runs to (`WORKFLOW_ENGINE`).
#[derive(Clone)]
pub enum Engine {
    /// Runs execute in this process ([`LocalEngine`]).
    Local(Arc<LocalEngine>),
    /// Runs execute on the external engine's workers.
    External(Arc<dyn ExternalEngine>),
}

impl Engine {
    /// Starts `run` (nothing when it already runs).
    pub fn start(&self, run: Uuid) {
        match self {
            Self::Local(engine) => engine.start(run),
            Self::External(engine) => engine.start(run),
        }
    }

    /// Asks `run` to stop; false when it is not executing anywhere this engine can reach.
    pub async fn cancel(&self, run: Uuid) -> bool {
        match self {
            Self::Local(engine) => engine.cancel(run),
            Self::External(engine) => engine.cancel(run).await,
        }
    }
}

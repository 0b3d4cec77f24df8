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

//! The exchange's rules: the mailbox state machine, listen sessions, expiry,
//! permissions, stats and discovery.
//!
//! Pure: no `worker` types, no clock (every operation takes `now`), no I/O. State
//! lives behind the synchronous store traits in [`crate::store`], so the same rules
//! run over SQLite in a Durable Object and over memory in native tests.

pub mod directory;
pub mod expiry;
pub mod listen;
pub mod mailbox;
pub mod permission;
pub mod stats;

//! The Academy HTTP exchange as a Cloudflare Worker.
//!
//! # Layout
//!
//! ```text
//! protocol/   the wire contract: entity ids, message headers, routes and fields,
//!             errors → HTTP status and text (one place), config, SSE framing
//! core/       the rules: mailbox state machine, permissions, stats, discovery;
//!             takes `now`, does no I/O
//! store/      synchronous storage traits the core runs on (+ in-memory, for tests)
//! rpc         the calls the Worker makes on Durable Objects (serde types)
//! edge/       wasm only: the fetch handler, one file per Durable Object
//!             (Mailbox, Directory), the SQLite stores
//! ```
//!
//! Dependency rule: `protocol` ← `core` ← `store` ← `rpc` ← `edge`. Everything but
//! `edge` is pure and tested natively with `cargo test`; `edge` is the only code that
//! touches `worker` types, the clock or the network.
//!
//! A request flows: Worker parses and validates it (`protocol::request`), then
//! calls the object of the mailbox it names (`rpc::MailboxCall`), which applies the
//! core rules over SQLite and, for `GET /message` and `/mailbox/listen`, waits in
//! memory until a send to the same object wakes it.

pub mod auth;
pub mod core;
pub mod protocol;
pub mod rpc;
pub mod store;

#[cfg(target_arch = "wasm32")]
mod edge;

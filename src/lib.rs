//! The Academy HTTP exchange as a Cloudflare Worker.
//!
//! # Layout
//!
//! ```text
//! protocol/   the wire contract: entity ids, message headers, routes and fields,
//!             errors → HTTP status and text (one place), config (and data
//!             location), SSE framing, the one log line per request, and the
//!             documents served about it (`about`: the index, the OpenAPI
//!             document and the guide from `docs/`)
//! store/      synchronous storage traits the core runs on (+ in-memory, for tests)
//! core/       the rules: mailbox state machine (with the follow-ups a change
//!             owes other objects, and counts staged between record writes),
//!             listen sessions (which message a waiting socket gets,
//!             confirmations, replay; the Worker's stream deadlines), expiry (due times, lazily stored uses and reads),
//!             permissions, stats, discovery; takes `now`, no I/O
//! auth/       who is calling: settings, bearer tokens, Globus and JWT rules
//! rpc         the calls the Worker makes on Durable Objects (one type per kind,
//!             with its reply type), and the frames of the sockets between them
//! js/         the entry module: the object classes as the runtime needs them for
//!             RPC, forwarding to the wasm ones (no rules)
//! edge/       wasm only: the fetch handler, the Worker's side of listen streams
//!             and long polls (`subscription`), one file per Durable Object
//!             (Mailbox with its alarm, Directory), carrying out follow-ups
//!             (`follow_up`), where objects live (`placement`), the SQLite
//!             stores, authentication I/O
//! ```
//!
//! Dependency rule: `protocol` ← `store` ← `core` ← `auth`, `rpc` ← `edge`.
//! Everything but `edge` is pure and tested natively with `cargo test`; `edge` is
//! the only code that touches `worker` types, the clock or the network.
//!
//! Adding a route: `docs/adding-a-route.md` lists every place it touches.
//!
//! A request flows: the Worker parses and validates it (`protocol::request`),
//! then calls the object of the mailbox it names by RPC (an `rpc::ObjectCall`),
//! which applies the core rules over SQLite. `GET /message` and `/mailbox/listen`
//! wait in the Worker on a WebSocket to the object (`rpc::Subscribe`), which the
//! object accepts with the hibernation API and pushes messages to when a send
//! wakes it.
//! Work a mailbox owes other objects (terminate replies, discovery entries) is
//! stored with the change that owes it and done by the mailbox's object, retried
//! from its alarm, which also runs expiry.

pub mod auth;
pub mod core;
pub mod protocol;
pub mod rpc;
pub mod store;

#[cfg(target_arch = "wasm32")]
mod edge;

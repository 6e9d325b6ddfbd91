//! The wire contract of academy-py's HTTP exchange: entity ids, message headers,
//! request bodies (read within a limit), routes and their fields, the error → status
//! mapping, configuration and SSE framing.
//!
//! Pure: depends only on `serde`, `serde_json` and `uuid` — never on `worker` types,
//! a clock or I/O — so every parser here is tested natively.

pub mod body;
pub mod config;
pub mod entity;
pub mod error;
pub mod message;
pub mod request;
pub mod sse;

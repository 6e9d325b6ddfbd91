//! The wire contract of academy-py's HTTP exchange: entity ids, message headers
//! (both layouts, academy-py 0.1.0's flat one too), request bodies (read within a
//! limit), routes and their fields, the error → status mapping, configuration
//! (including where objects live), SSE framing, the request log line, and the
//! documents the exchange serves about itself.
//!
//! Pure: depends only on `serde`, `serde_json`, `uuid` and `base64` — never on
//! `worker` types, a clock or I/O — so every parser here is tested natively.

pub mod about;
pub mod body;
pub mod config;
pub mod entity;
pub mod error;
pub mod flat_message;
pub mod message;
pub mod request;
pub mod request_log;
pub mod sse;

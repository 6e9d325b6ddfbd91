//! The one structured log line each public request writes: which route, how it
//! ended, what it cost, and why it failed.
//!
//! The line is built here from typed values only — a route, a mailbox uid, an
//! [`ExchangeError`], counts — so what it can hold is decided by these types: it is
//! never given a header (no tokens or credentials), a URL (no query strings), a
//! request body or a message text. The Worker writes it with `console.log`, or
//! `console.error` for server faults, so Workers Logs and `wrangler tail` show it.

use serde::Serialize;
use uuid::Uuid;

use super::error::ExchangeError;
use super::request::Route;

/// The longest text kept in a field: a client error's reason can echo part of what
/// the client sent, and a log line should stay one short line.
const TEXT_LIMIT: usize = 300;

/// The longest method kept (a request for no route can carry any method).
const METHOD_LIMIT: usize = 16;

/// What the Worker learns about a request while it handles it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestLog {
    /// The HTTP method, as sent.
    pub method: String,
    /// Set once the method and path name a route.
    pub route: Option<Route>,
    /// Set once the request's fields are valid (see [`super::request::Command::mailbox_uid`]).
    pub mailbox: Option<Uuid>,
}

/// How a request ended and what it cost, known when its response is ready.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome<'a> {
    pub status: u16,
    pub error: Option<&'a ExchangeError>,
    /// Wall time from the request's arrival to its response, in milliseconds.
    pub duration_ms: u64,
    pub object_calls: u64,
    pub rows_written: u64,
}

/// One request's record. Every field is always present (`null` where it does not
/// apply), so queries can rely on the names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogRecord {
    /// The route's name ([`Route::name`]); `null` when none matched.
    route: Option<&'static str>,
    method: String,
    status: u16,
    mailbox: Option<Uuid>,
    duration_ms: u64,
    object_calls: u64,
    rows_written: u64,
    /// The error's kind ([`ExchangeError::kind`]); `null` on success.
    error: Option<&'static str>,
    /// A server fault's cause (5xx): what an operator needs to fix it.
    cause: Option<String>,
    /// A client error's reason (4xx): the text the client was answered, or why its
    /// token was refused.
    reason: Option<String>,
}

impl RequestLog {
    pub fn new(method: &str) -> Self {
        Self {
            method: method.to_owned(),
            ..Self::default()
        }
    }

    /// The record of this request, ended with `outcome`.
    pub fn record(&self, outcome: Outcome<'_>) -> LogRecord {
        let (cause, reason) = match outcome.error {
            None => (None, None),
            Some(error) => match error {
                ExchangeError::Internal { cause } => (Some(cause.as_str()), None),
                ExchangeError::Configuration { reason }
                | ExchangeError::AuthUnavailable { reason } => (Some(reason.as_str()), None),
                ExchangeError::TokenRejected { reason } => (None, Some(reason.clone())),
                client => (None, Some(client.text())),
            },
        };
        LogRecord {
            route: self.route.map(Route::name),
            method: capped(&self.method, METHOD_LIMIT),
            status: outcome.status,
            mailbox: self.mailbox,
            duration_ms: outcome.duration_ms,
            object_calls: outcome.object_calls,
            rows_written: outcome.rows_written,
            error: outcome.error.map(ExchangeError::kind),
            cause: cause.map(|cause| capped(cause, TEXT_LIMIT)),
            reason: reason.map(|reason| capped(&reason, TEXT_LIMIT)),
        }
    }
}

impl LogRecord {
    /// A fault of the exchange or its deployment (5xx), logged as an error.
    pub fn is_fault(&self) -> bool {
        self.status >= 500
    }

    /// The record as one line of JSON.
    pub fn to_line(&self) -> String {
        // Strings, integers and uuids always serialize; the fallback is never used.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// `text` cut to at most `limit` bytes, on a character boundary, marked with `…`.
fn capped(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::config::Config;
    use crate::protocol::entity::Role;
    use crate::protocol::message::tests::{entity, message_text};
    use crate::protocol::request::parse_command;
    use serde_json::{json, Value};

    fn ended(log: &RequestLog, status: u16, error: Option<&ExchangeError>) -> Value {
        let record = log.record(Outcome {
            status,
            error,
            duration_ms: 7,
            object_calls: 2,
            rows_written: 3,
        });
        serde_json::from_str(&record.to_line()).unwrap()
    }

    #[test]
    fn a_successful_request_logs_its_route_mailbox_and_costs() {
        let uid = Uuid::new_v4();
        let log = RequestLog {
            method: "PUT".into(),
            route: Some(Route::Send),
            mailbox: Some(uid),
        };
        assert_eq!(
            ended(&log, 200, None),
            json!({
                "route": "send", "method": "PUT", "status": 200,
                "mailbox": uid.to_string(), "duration_ms": 7, "object_calls": 2,
                "rows_written": 3, "error": null, "cause": null, "reason": null,
            })
        );
    }

    #[test]
    fn a_server_fault_carries_its_cause_and_a_client_error_its_reason() {
        let log = RequestLog::new("GET");
        let fault = ExchangeError::internal("sqlite: disk I/O error");
        let line = ended(&log, 500, Some(&fault));
        assert_eq!(line["error"], "internal");
        assert_eq!(line["cause"], "sqlite: disk I/O error");
        assert_eq!(line["reason"], Value::Null);
        let record = log.record(Outcome {
            status: 500,
            error: Some(&fault),
            duration_ms: 0,
            object_calls: 0,
            rows_written: 0,
        });
        assert!(record.is_fault());

        let missing = ExchangeError::UnknownMailbox;
        let line = ended(&log, 404, Some(&missing));
        assert_eq!(line["error"], "unknown_mailbox");
        assert_eq!(line["reason"], "Unknown mailbox ID");
        assert_eq!(line["cause"], Value::Null);
        assert_eq!(line["route"], Value::Null);
    }

    #[test]
    fn a_refused_message_body_is_never_logged() {
        let src = entity(Role::User);
        let dest = entity(Role::Agent);
        let secret = "body-secret-4242";
        // A header the exchange refuses (kind is not a message kind), a body it never parses.
        let text =
            message_text(&src, &dest, "gossip", Uuid::new_v4()).replace("action-request", secret);
        let body = json!({ "message": text }).to_string();
        let error =
            parse_command(Route::Send, &[], body.as_bytes(), &Config::default()).unwrap_err();
        let log = RequestLog {
            method: "PUT".into(),
            route: Some(Route::Send),
            mailbox: None,
        };
        let line = ended(&log, error.status(), Some(&error));
        assert_eq!(line["error"], "invalid_field");
        assert!(!line.to_string().contains(secret), "{line}");
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let log = RequestLog::new(&"X".repeat(100));
        let reason = "é".repeat(TEXT_LIMIT);
        let error = ExchangeError::field("mailbox", reason);
        let line = ended(&log, 400, Some(&error));
        assert_eq!(
            line["method"].as_str().unwrap().len(),
            METHOD_LIMIT + '…'.len_utf8()
        );
        let kept = line["reason"].as_str().unwrap();
        assert!(kept.len() <= TEXT_LIMIT + '…'.len_utf8(), "{kept}");
        assert!(kept.ends_with('…'));
        assert_eq!(capped("short", 10), "short");
    }
}

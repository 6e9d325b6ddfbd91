//! Every way a request can fail, and the one place that maps each to an HTTP status
//! and body text. Texts match the upstream server where it has one, so clients and
//! people reading logs see the same words.

use serde::{Deserialize, Serialize};

/// A failed exchange operation. Serializable because objects report failures to the
/// Worker over the internal call protocol, and the Worker alone turns them into HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum ExchangeError {
    /// The body is not a JSON object (or not JSON at all).
    InvalidBody { reason: String },
    /// A required field is missing or has the wrong shape.
    InvalidField { field: String, reason: String },
    /// `timeout` outside `0 < timeout <= max`.
    InvalidTimeout { max_s: f64 },
    /// No such route.
    UnknownRoute { method: String, path: String },
    /// A known path with a method it does not serve; `allow` lists those it does
    /// (sent as the `Allow` header).
    MethodNotAllowed {
        method: String,
        path: String,
        allow: String,
    },
    /// No usable credentials were sent.
    Unauthorized,
    /// Credentials were sent but refused (unknown, inactive, expired, wrong audience).
    TokenRejected { reason: String },
    /// The identity provider could not be asked; the client should retry.
    AuthUnavailable { reason: String },
    /// The caller may not act on this mailbox.
    Forbidden,
    /// The mailbox was never created.
    UnknownMailbox,
    /// No message arrived within the timeout.
    Timeout,
    /// The message text is larger than the configured limit.
    MessageTooLarge { size: u64, limit: u64 },
    /// The whole request body is larger than any valid request could be.
    BodyTooLarge { size: u64, limit: u64 },
    /// The mailbox has been terminated.
    Terminated,
    /// The deployment's `[vars]` are invalid: a fault of the operator, not the client.
    Configuration { reason: String },
    /// A fault inside the exchange (storage, runtime). Logged with its cause; the
    /// client sees a generic text and may retry.
    Internal { cause: String },
}

impl ExchangeError {
    pub fn field(field: &str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    pub fn internal(cause: impl Into<String>) -> Self {
        Self::Internal {
            cause: cause.into(),
        }
    }

    /// The HTTP status the client maps to an exception (the table is in
    /// `docs/protocol.md`, and per route in `docs/openapi.json`).
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidBody { .. } | Self::InvalidField { .. } | Self::InvalidTimeout { .. } => {
                400
            }
            Self::Unauthorized => 401,
            Self::Forbidden | Self::TokenRejected { .. } => 403,
            Self::UnknownMailbox | Self::UnknownRoute { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::Timeout => 408,
            Self::MessageTooLarge { .. } | Self::BodyTooLarge { .. } => 413,
            Self::Terminated => 419,
            Self::Configuration { .. } | Self::Internal { .. } => 500,
            Self::AuthUnavailable { .. } => 503,
        }
    }

    /// The error's name, as its `error` tag reads on the wire between object and
    /// Worker: what the request log records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidBody { .. } => "invalid_body",
            Self::InvalidField { .. } => "invalid_field",
            Self::InvalidTimeout { .. } => "invalid_timeout",
            Self::UnknownRoute { .. } => "unknown_route",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::TokenRejected { .. } => "token_rejected",
            Self::AuthUnavailable { .. } => "auth_unavailable",
            Self::Forbidden => "forbidden",
            Self::UnknownMailbox => "unknown_mailbox",
            Self::Timeout => "timeout",
            Self::MessageTooLarge { .. } => "message_too_large",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::Terminated => "terminated",
            Self::Configuration { .. } => "configuration",
            Self::Internal { .. } => "internal",
        }
    }

    /// Seconds a client should wait before retrying, sent as `Retry-After`.
    pub fn retry_after_s(&self) -> Option<u32> {
        match self {
            Self::AuthUnavailable { .. } => Some(5),
            _ => None,
        }
    }

    /// The methods the path serves, sent as `Allow` with a 405.
    pub fn allow(&self) -> Option<&str> {
        match self {
            Self::MethodNotAllowed { allow, .. } => Some(allow),
            _ => None,
        }
    }

    /// The response body text (sent as `text/plain`).
    pub fn text(&self) -> String {
        match self {
            Self::InvalidBody { reason } => format!("Invalid request body: {reason}"),
            Self::InvalidField { field, reason } => {
                format!("Missing or invalid field: '{field}' ({reason})")
            }
            Self::InvalidTimeout { max_s } => format!(
                "Invalid timeout (must be less than {} and greater than 0)",
                format_seconds(*max_s)
            ),
            Self::UnknownRoute { method, path } => format!("No route for {method} {path}"),
            Self::MethodNotAllowed { method, path, .. } => {
                format!("Method {method} is not allowed on {path}")
            }
            Self::Unauthorized => "Missing required headers.".to_owned(),
            Self::TokenRejected { .. } => "Token expired or revoked.".to_owned(),
            Self::AuthUnavailable { .. } => {
                "Authentication service unavailable; retry later".to_owned()
            }
            Self::Forbidden => "Incorrect permissions".to_owned(),
            Self::UnknownMailbox => "Unknown mailbox ID".to_owned(),
            Self::Timeout => "Request timeout".to_owned(),
            Self::MessageTooLarge { size, limit } => {
                format!("Message of size {size} larger than limit {limit}.")
            }
            Self::BodyTooLarge { size, limit } => {
                format!("Request body of size {size} larger than limit {limit}.")
            }
            Self::Terminated => "Mailbox was closed".to_owned(),
            Self::Configuration { reason } => format!("Invalid exchange configuration: {reason}"),
            Self::Internal { .. } => {
                "Internal exchange error; the request may be retried".to_owned()
            }
        }
    }
}

/// Seconds as a person writes them: `60`, not `60.0`; `1.5` stays `1.5`.
pub fn format_seconds(seconds: f64) -> String {
    if seconds.fract() == 0.0 && seconds.abs() < 1e15 {
        format!("{}", seconds as i64)
    } else {
        format!("{seconds}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_what_the_client_maps_to_exceptions() {
        assert_eq!(ExchangeError::Forbidden.status(), 403);
        assert_eq!(ExchangeError::UnknownMailbox.status(), 404);
        assert_eq!(ExchangeError::Timeout.status(), 408);
        assert_eq!(ExchangeError::Terminated.status(), 419);
        let too_large = ExchangeError::MessageTooLarge { size: 10, limit: 5 };
        assert_eq!(too_large.status(), 413);
        assert_eq!(too_large.text(), "Message of size 10 larger than limit 5.");
    }

    #[test]
    fn bad_input_is_never_a_server_error() {
        for error in [
            ExchangeError::InvalidBody { reason: "x".into() },
            ExchangeError::field("mailbox", "missing"),
            ExchangeError::InvalidTimeout { max_s: 60.0 },
            ExchangeError::BodyTooLarge { size: 2, limit: 1 },
        ] {
            assert!((400..500).contains(&error.status()), "{error:?}");
        }
    }

    #[test]
    fn timeout_text_matches_upstream() {
        let text = ExchangeError::InvalidTimeout { max_s: 60.0 }.text();
        assert_eq!(
            text,
            "Invalid timeout (must be less than 60 and greater than 0)"
        );
    }

    #[test]
    fn internal_errors_hide_their_cause_from_clients() {
        let error = ExchangeError::internal("sqlite: disk I/O error");
        assert_eq!(error.status(), 500);
        assert!(!error.text().contains("sqlite"));
    }

    #[test]
    fn an_errors_kind_is_its_wire_tag() {
        for error in [
            ExchangeError::InvalidBody { reason: "x".into() },
            ExchangeError::field("mailbox", "missing"),
            ExchangeError::InvalidTimeout { max_s: 60.0 },
            ExchangeError::UnknownRoute {
                method: "GET".into(),
                path: "/x".into(),
            },
            ExchangeError::MethodNotAllowed {
                method: "PUT".into(),
                path: "/mailbox".into(),
                allow: "POST, DELETE, GET".into(),
            },
            ExchangeError::Unauthorized,
            ExchangeError::TokenRejected { reason: "x".into() },
            ExchangeError::AuthUnavailable { reason: "x".into() },
            ExchangeError::Forbidden,
            ExchangeError::UnknownMailbox,
            ExchangeError::Timeout,
            ExchangeError::MessageTooLarge { size: 2, limit: 1 },
            ExchangeError::BodyTooLarge { size: 2, limit: 1 },
            ExchangeError::Terminated,
            ExchangeError::Configuration { reason: "x".into() },
            ExchangeError::internal("x"),
        ] {
            let wire = serde_json::to_value(&error).unwrap();
            assert_eq!(wire["error"], error.kind(), "{error:?}");
        }
    }

    #[test]
    fn errors_survive_the_trip_between_object_and_worker() {
        let error = ExchangeError::MessageTooLarge { size: 7, limit: 3 };
        let json = serde_json::to_string(&error).unwrap();
        assert_eq!(serde_json::from_str::<ExchangeError>(&json).unwrap(), error);
    }
}

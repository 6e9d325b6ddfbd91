//! Public requests: which route a method and path name, and the typed command its
//! fields make. Every malformed input becomes an [`ExchangeError`] with a 4xx status.
//!
//! Fields come from a JSON object body — the client sends bodies on GET and DELETE
//! too — and, for GET, also from query parameters. Unknown fields are ignored, and
//! never stored.
//!
//! `behavior` is read as the older name of `agent` (academy-py 0.1.0's HTTP client
//! sends it on `POST /mailbox` and `GET /discover`); `agent` wins when both are sent.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::{to_raw_value, RawValue};
use uuid::Uuid;

use super::config::Config;
use super::entity::{EntityId, JsonKind};
use super::error::ExchangeError;
use super::message::IncomingMessage;

/// The optional path prefix of every route (the hosted exchange's base path).
pub const API_VERSION_PREFIX: &str = "/v1";

/// What a method and path ask for: one of the exchange's operations, or a document
/// about the exchange, which anyone may read (no credentials, no body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Document(Document),
    Operation(Route),
}

/// The documents that describe the exchange ([`super::about`] writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// `GET /`: what this service is, with links to the other two.
    Index,
    /// `GET /openapi.json`: the OpenAPI description of every route.
    OpenApi,
    /// `GET /docs`: the protocol guide.
    Guide,
}

/// The thirteen operations of the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    CreateMailbox,
    Terminate,
    Status,
    Send,
    Receive,
    Listen,
    Discover,
    Share,
    ListShares,
    Unshare,
    Heartbeat,
    HeartbeatAge,
    Stats,
}

impl Route {
    /// The route's name in the request log: stable, and free of anything the client
    /// put in the URL.
    pub fn name(self) -> &'static str {
        match self {
            Route::CreateMailbox => "create_mailbox",
            Route::Terminate => "terminate",
            Route::Status => "status",
            Route::Send => "send",
            Route::Receive => "receive",
            Route::Listen => "listen",
            Route::Discover => "discover",
            Route::Share => "share",
            Route::ListShares => "list_shares",
            Route::Unshare => "unshare",
            Route::Heartbeat => "heartbeat",
            Route::HeartbeatAge => "heartbeat_age",
            Route::Stats => "stats",
        }
    }
}

impl Endpoint {
    /// Finds what `method` and `path` ask for (a trailing slash is ignored).
    ///
    /// Everything is also served under `/v1`: academy's hosted exchange lives at
    /// `…/v1`, and users give that pattern to `HttpExchangeFactory(url)`.
    pub fn resolve(method: &str, path: &str) -> Result<Self, ExchangeError> {
        use Endpoint::Operation;
        let path = match path.strip_prefix(API_VERSION_PREFIX) {
            Some("") => "/",
            Some(rest) if rest.starts_with('/') => rest,
            _ => path,
        };
        let trimmed = match path.strip_suffix('/') {
            Some(rest) if !rest.is_empty() => rest,
            _ => path,
        };
        let by_method: &[(&str, Endpoint)] = match trimmed {
            "/" => &[("GET", Endpoint::Document(Document::Index))],
            "/openapi.json" => &[("GET", Endpoint::Document(Document::OpenApi))],
            "/docs" => &[("GET", Endpoint::Document(Document::Guide))],
            "/mailbox" => &[
                ("POST", Operation(Route::CreateMailbox)),
                ("DELETE", Operation(Route::Terminate)),
                ("GET", Operation(Route::Status)),
            ],
            "/message" => &[
                ("PUT", Operation(Route::Send)),
                ("GET", Operation(Route::Receive)),
            ],
            "/mailbox/listen" => &[("GET", Operation(Route::Listen))],
            "/discover" => &[("GET", Operation(Route::Discover))],
            "/mailbox/share" => &[
                ("POST", Operation(Route::Share)),
                ("GET", Operation(Route::ListShares)),
                ("DELETE", Operation(Route::Unshare)),
            ],
            "/mailbox/heartbeat" => &[
                ("POST", Operation(Route::Heartbeat)),
                ("GET", Operation(Route::HeartbeatAge)),
            ],
            "/mailbox/stats" => &[("GET", Operation(Route::Stats))],
            _ => {
                return Err(ExchangeError::UnknownRoute {
                    method: method.to_owned(),
                    path: path.to_owned(),
                })
            }
        };
        by_method
            .iter()
            .find(|(allowed, _)| allowed.eq_ignore_ascii_case(method))
            .map(|(_, endpoint)| *endpoint)
            .ok_or_else(|| ExchangeError::MethodNotAllowed {
                method: method.to_owned(),
                path: trimmed.to_owned(),
                allow: by_method
                    .iter()
                    .map(|(allowed, _)| *allowed)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    CreateMailbox {
        mailbox: EntityId,
        /// The agent's class MRO, most derived first; `None` for users.
        agent: Option<Vec<String>>,
    },
    Terminate {
        mailbox: EntityId,
    },
    Status {
        mailbox: EntityId,
    },
    Send {
        message: IncomingMessage,
    },
    Receive {
        mailbox: EntityId,
        timeout_s: f64,
    },
    Listen {
        mailbox: EntityId,
        timeout_s: f64,
    },
    Discover {
        agent: String,
        allow_subclasses: bool,
    },
    Share {
        mailbox: EntityId,
        group_id: String,
    },
    ListShares {
        mailbox: EntityId,
    },
    Unshare {
        mailbox: EntityId,
        group_id: String,
    },
    Heartbeat {
        mailbox: EntityId,
    },
    HeartbeatAge {
        mailbox: EntityId,
    },
    Stats {
        mailbox: EntityId,
    },
}

impl Command {
    /// The mailbox the request acts on (a send's destination); `None` for discovery,
    /// which names a class.
    pub fn mailbox_uid(&self) -> Option<Uuid> {
        match self {
            Command::Send { message } => Some(message.header.dest.uid),
            Command::Discover { .. } => None,
            Command::CreateMailbox { mailbox, .. }
            | Command::Terminate { mailbox }
            | Command::Status { mailbox }
            | Command::Receive { mailbox, .. }
            | Command::Listen { mailbox, .. }
            | Command::Share { mailbox, .. }
            | Command::ListShares { mailbox }
            | Command::Unshare { mailbox, .. }
            | Command::Heartbeat { mailbox }
            | Command::HeartbeatAge { mailbox }
            | Command::Stats { mailbox } => Some(mailbox.uid),
        }
    }
}

/// The `Last-Event-Id` a reconnecting listen stream sends: the id of the last
/// event it parsed. Anything but a positive integer means none (academy's client
/// treats 0 as none, and never sends anything else).
pub fn last_event_id(header: Option<&str>) -> Option<u64> {
    header?.trim().parse().ok().filter(|id| *id > 0)
}

/// The header every academy-py 1.0 request carries (in the client session's
/// default headers); clients before 1.0 send none.
pub const ACADEMY_VERSION_HEADER: &str = "academy_version";

/// Whether a request also stamps the heartbeat of the mailbox it acts for (a
/// send's sender, a receive's or listen's mailbox). academy-py 0.5 clients never
/// send `POST /mailbox/heartbeat`: their server stamped the heartbeat whenever a
/// client sent, received or opened a stream, and so does this exchange for
/// requests without [`ACADEMY_VERSION_HEADER`]. Clients that send it (1.0 and
/// later) send their heartbeats themselves, and their messages write no extra row.
pub fn stamps_heartbeat(route: Route, academy_version: Option<&str>) -> bool {
    academy_version.is_none() && matches!(route, Route::Send | Route::Receive | Route::Listen)
}

/// Parses the fields of a request for `route`. `query` holds the decoded query
/// parameters (used by GET only); `body` the raw body bytes, already read within
/// the body limit ([`super::body::BodyBuffer`]).
pub fn parse_command(
    route: Route,
    query: &[(String, String)],
    body: &[u8],
    config: &Config,
) -> Result<Command, ExchangeError> {
    let fields = Fields::read(body, query)?;
    let mailbox = || fields.entity("mailbox");
    Ok(match route {
        Route::CreateMailbox => Command::CreateMailbox {
            mailbox: mailbox()?,
            agent: fields.agent_mro()?,
        },
        Route::Terminate => Command::Terminate {
            mailbox: mailbox()?,
        },
        Route::Status => Command::Status {
            mailbox: mailbox()?,
        },
        Route::Send => Command::Send {
            message: fields.message(config.message_size_limit)?,
        },
        Route::Receive => Command::Receive {
            mailbox: mailbox()?,
            timeout_s: fields.timeout(config.listen_timeout_s)?,
        },
        Route::Listen => Command::Listen {
            mailbox: mailbox()?,
            timeout_s: fields.timeout(config.listen_timeout_s)?,
        },
        Route::Discover => Command::Discover {
            agent: fields.class_name()?,
            allow_subclasses: fields.boolean("allow_subclasses")?,
        },
        Route::Share => Command::Share {
            mailbox: mailbox()?,
            group_id: fields.non_empty_string("group_id")?,
        },
        Route::ListShares => Command::ListShares {
            mailbox: mailbox()?,
        },
        Route::Unshare => Command::Unshare {
            mailbox: mailbox()?,
            group_id: fields.non_empty_string("group_id")?,
        },
        Route::Heartbeat => Command::Heartbeat {
            mailbox: mailbox()?,
        },
        Route::HeartbeatAge => Command::HeartbeatAge {
            mailbox: mailbox()?,
        },
        Route::Stats => Command::Stats {
            mailbox: mailbox()?,
        },
    })
}

/// Checks a receive/listen timeout as upstream does: `0 < timeout <= max`.
pub fn validate_timeout(timeout_s: f64, max_s: f64) -> Result<f64, ExchangeError> {
    if timeout_s.is_finite() && timeout_s > 0.0 && timeout_s <= max_s {
        Ok(timeout_s)
    } else {
        Err(ExchangeError::InvalidTimeout { max_s })
    }
}

/// Every field some route reads. A body's other fields are skipped unread.
const FIELD_NAMES: [&str; 7] = [
    "mailbox",
    "agent",
    "behavior",
    "message",
    "timeout",
    "allow_subclasses",
    "group_id",
];

/// Most classes an agent's MRO may list: registering an agent writes one directory
/// object per class, and terminating it writes them again.
pub const MRO_CLASS_LIMIT: usize = 64;

/// Longest class name, in bytes (a class name names a directory object).
pub const CLASS_NAME_LIMIT: usize = 1024;

/// The request's fields, each kept as the JSON text it was sent as: the body
/// object's, with query parameters filling the gaps. Only [`FIELD_NAMES`] are kept —
/// the rest are skipped while parsing, not stored — and a field is read into a typed
/// value only by the route that needs it, so no shape of body (many fields, long
/// arrays, deep nesting) makes parsing hold more than the body's own size. A
/// `serde_json::Value` of the body could take 10 to 30 times its size.
#[derive(Default)]
struct Fields(Vec<(&'static str, Box<RawValue>)>);

impl Fields {
    fn read(body: &[u8], query: &[(String, String)]) -> Result<Self, ExchangeError> {
        let mut fields = if body.iter().all(u8::is_ascii_whitespace) {
            Self::default()
        } else if JsonKind::of(body) == JsonKind::Object {
            serde_json::from_slice(body).map_err(not_json)?
        } else {
            // Checked, without storing anything, to tell the client which it is.
            serde_json::from_slice::<IgnoredAny>(body).map_err(not_json)?;
            return Err(ExchangeError::InvalidBody {
                reason: format!("expected a JSON object, got {}", JsonKind::of(body)),
            });
        };
        for (key, text) in query {
            let Some(name) = FIELD_NAMES.into_iter().find(|name| name == key) else {
                continue;
            };
            if fields.get(name).is_some() {
                continue; // the body's value wins
            }
            // Query values are text; numbers and booleans are read as such.
            let value = match serde_json::from_str::<Box<RawValue>>(text) {
                Ok(value)
                    if matches!(
                        JsonKind::of(value.get().as_bytes()),
                        JsonKind::Number | JsonKind::Boolean
                    ) =>
                {
                    value
                }
                _ => to_raw_value(text).map_err(|e| ExchangeError::field(name, e.to_string()))?,
            };
            fields.0.push((name, value));
        }
        Ok(fields)
    }

    fn get(&self, name: &str) -> Option<&RawValue> {
        self.0
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, value)| &**value)
    }

    fn present(&self, name: &str) -> Option<&RawValue> {
        self.get(name).filter(|value| kind(value) != JsonKind::Null)
    }

    fn required(&self, name: &str) -> Result<&RawValue, ExchangeError> {
        self.present(name)
            .ok_or_else(|| ExchangeError::field(name, "missing"))
    }

    fn entity(&self, name: &str) -> Result<EntityId, ExchangeError> {
        EntityId::from_field(self.required(name)?)
            .map_err(|reason| ExchangeError::field(name, reason))
    }

    fn non_empty_string(&self, name: &str) -> Result<String, ExchangeError> {
        let text = match self.required(name)? {
            value if kind(value) == JsonKind::String => {
                string(value).map_err(|e| ExchangeError::field(name, e.to_string()))?
            }
            other => {
                return Err(ExchangeError::field(
                    name,
                    format!("expected a string, got {}", kind(other)),
                ))
            }
        };
        if text.is_empty() {
            return Err(ExchangeError::field(name, "must not be empty"));
        }
        Ok(text)
    }

    fn boolean(&self, name: &str) -> Result<bool, ExchangeError> {
        let value = self.required(name)?;
        match value.get() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ExchangeError::field(
                name,
                format!("expected true or false, got {}", kind(value)),
            )),
        }
    }

    /// Which field names the agent's class: `agent`, or else its older name
    /// `behavior` if only that was sent. Errors then name the field the client sent.
    fn agent_field_name(&self) -> &'static str {
        if self.present("agent").is_none() && self.present("behavior").is_some() {
            "behavior"
        } else {
            "agent"
        }
    }

    /// `agent` (or `behavior`) on create: the comma-joined MRO, most derived class first.
    fn agent_mro(&self) -> Result<Option<Vec<String>>, ExchangeError> {
        let name = self.agent_field_name();
        if self.present(name).is_none() {
            return Ok(None);
        }
        let joined = self.non_empty_string(name)?;
        // Counted before anything is stored: one past the limit is enough to refuse.
        let mro: Vec<&str> = joined
            .split(',')
            .map(str::trim)
            .take(MRO_CLASS_LIMIT + 1)
            .collect();
        if mro.len() > MRO_CLASS_LIMIT {
            return Err(ExchangeError::field(
                name,
                format!("an MRO of more than {MRO_CLASS_LIMIT} classes"),
            ));
        }
        for class in &mro {
            check_class_name(name, class)?;
        }
        Ok(Some(mro.into_iter().map(str::to_owned).collect()))
    }

    /// `agent` (or `behavior`) on discover: one class name.
    fn class_name(&self) -> Result<String, ExchangeError> {
        let name = self.agent_field_name();
        let class = self.non_empty_string(name)?;
        check_class_name(name, &class)?;
        Ok(class)
    }

    fn timeout(&self, max_s: f64) -> Result<f64, ExchangeError> {
        match self.present("timeout") {
            None => Ok(max_s),
            Some(value) if kind(value) == JsonKind::Number => {
                validate_timeout(serde_json::from_str(value.get()).unwrap_or(f64::NAN), max_s)
            }
            Some(other) => Err(ExchangeError::field(
                "timeout",
                format!("expected a number of seconds, got {}", kind(other)),
            )),
        }
    }

    /// `message`: the message JSON as a string (as the client sends it), or an
    /// object, whose text is then taken as it was sent.
    fn message(&self, size_limit: u64) -> Result<IncomingMessage, ExchangeError> {
        let value = self.required("message")?;
        let text = match kind(value) {
            JsonKind::String => {
                string(value).map_err(|e| ExchangeError::field("message", e.to_string()))?
            }
            JsonKind::Object => value.get().to_owned(),
            other => {
                return Err(ExchangeError::field(
                    "message",
                    format!("expected a message JSON string, got {other}"),
                ))
            }
        };
        if text.len() as u64 > size_limit {
            return Err(ExchangeError::MessageTooLarge {
                size: text.len() as u64,
                limit: size_limit,
            });
        }
        IncomingMessage::parse(text).map_err(|reason| ExchangeError::field("message", reason))
    }
}

/// Reads a body object, keeping only [`FIELD_NAMES`]; a repeated field keeps its
/// last value (as Python's `json` does).
impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Fields;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Fields::default();
                while let Some(key) = map.next_key::<String>()? {
                    let Some(name) = FIELD_NAMES.into_iter().find(|name| *name == key) else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    let value: Box<RawValue> = map.next_value()?;
                    fields.0.retain(|(known, _)| *known != name);
                    fields.0.push((name, value));
                }
                Ok(fields)
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

fn kind(value: &RawValue) -> JsonKind {
    JsonKind::of(value.get().as_bytes())
}

/// The text of a JSON string value.
fn string(value: &RawValue) -> Result<String, serde_json::Error> {
    serde_json::from_str(value.get())
}

fn not_json(error: serde_json::Error) -> ExchangeError {
    ExchangeError::InvalidBody {
        reason: format!("not valid JSON ({error})"),
    }
}

fn check_class_name(field: &str, class: &str) -> Result<(), ExchangeError> {
    if class.is_empty() {
        return Err(ExchangeError::field(field, "class names must not be empty"));
    }
    if class.len() > CLASS_NAME_LIMIT {
        return Err(ExchangeError::field(
            field,
            format!("a class name longer than {CLASS_NAME_LIMIT} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::entity::Role;
    use crate::protocol::message::tests::{entity, message_text};
    use serde_json::{json, Value};

    fn parse(route: Route, body: Value) -> Result<Command, ExchangeError> {
        parse_command(route, &[], body.to_string().as_bytes(), &Config::default())
    }

    fn id_field(id: &EntityId) -> Value {
        Value::String(serde_json::to_string(id).unwrap())
    }

    #[test]
    fn last_event_id_is_a_positive_integer_or_none() {
        assert_eq!(
            last_event_id(Some("1763700000123000")),
            Some(1_763_700_000_123_000)
        );
        assert_eq!(last_event_id(Some(" 7 ")), Some(7));
        for none in [
            None,
            Some(""),
            Some("0"),
            Some("-3"),
            Some("abc"),
            Some("1.5"),
        ] {
            assert_eq!(last_event_id(none), None, "{none:?}");
        }
    }

    #[test]
    fn only_sends_receives_and_listens_without_the_academy_version_header_stamp_heartbeats() {
        let stamping = [Route::Send, Route::Receive, Route::Listen];
        for route in stamping {
            assert!(stamps_heartbeat(route, None), "{route:?}");
            assert!(!stamps_heartbeat(route, Some("1.0.0")), "{route:?}");
            // Any value, even an empty one, marks a client that sends heartbeats.
            assert!(!stamps_heartbeat(route, Some("")), "{route:?}");
        }
        for route in [
            Route::CreateMailbox,
            Route::Terminate,
            Route::Status,
            Route::Discover,
            Route::Share,
            Route::ListShares,
            Route::Unshare,
            Route::Heartbeat,
            Route::HeartbeatAge,
            Route::Stats,
        ] {
            assert!(!stamps_heartbeat(route, None), "{route:?}");
        }
    }

    #[test]
    fn every_route_resolves_from_its_method_and_path() {
        let table = [
            ("POST", "/mailbox", Route::CreateMailbox),
            ("DELETE", "/mailbox", Route::Terminate),
            ("GET", "/mailbox", Route::Status),
            ("PUT", "/message", Route::Send),
            ("GET", "/message", Route::Receive),
            ("GET", "/mailbox/listen", Route::Listen),
            ("GET", "/discover", Route::Discover),
            ("POST", "/mailbox/share", Route::Share),
            ("GET", "/mailbox/share", Route::ListShares),
            ("DELETE", "/mailbox/share", Route::Unshare),
            ("POST", "/mailbox/heartbeat", Route::Heartbeat),
            ("GET", "/mailbox/heartbeat", Route::HeartbeatAge),
            ("GET", "/mailbox/stats", Route::Stats),
        ];
        for (method, path, route) in table {
            assert_eq!(
                Endpoint::resolve(method, path),
                Ok(Endpoint::Operation(route)),
                "{method} {path}"
            );
        }
        let status = Ok(Endpoint::Operation(Route::Status));
        assert_eq!(Endpoint::resolve("get", "/mailbox/"), status);
        assert_eq!(Endpoint::resolve("GET", "/v1/mailbox"), status);
        assert_eq!(
            Endpoint::resolve("GET", "/v1/mailbox/listen/"),
            Ok(Endpoint::Operation(Route::Listen))
        );
        for not_routes in ["/v1mailbox", "/v2/mailbox", "/v1/v1/mailbox", "/v1/v1"] {
            assert_eq!(
                Endpoint::resolve("GET", not_routes).unwrap_err().status(),
                404,
                "{not_routes}"
            );
        }
    }

    #[test]
    fn the_documents_resolve_at_the_root_and_under_v1() {
        let table = [
            ("/", Document::Index),
            ("/v1", Document::Index),
            ("/v1/", Document::Index),
            ("/openapi.json", Document::OpenApi),
            ("/v1/openapi.json", Document::OpenApi),
            ("/docs", Document::Guide),
            ("/v1/docs/", Document::Guide),
        ];
        for (path, document) in table {
            assert_eq!(
                Endpoint::resolve("GET", path),
                Ok(Endpoint::Document(document)),
                "{path}"
            );
        }
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405_with_the_allowed_ones() {
        assert_eq!(Endpoint::resolve("GET", "/nope").unwrap_err().status(), 404);
        assert_eq!(
            Endpoint::resolve("PATCH", "/mailbox").unwrap_err(),
            ExchangeError::MethodNotAllowed {
                method: "PATCH".into(),
                path: "/mailbox".into(),
                allow: "POST, DELETE, GET".into(),
            }
        );
        let wrong_method = Endpoint::resolve("POST", "/message").unwrap_err();
        assert_eq!(wrong_method.status(), 405);
        assert_eq!(wrong_method.allow(), Some("PUT, GET"));
        assert_eq!(
            Endpoint::resolve("POST", "/openapi.json")
                .unwrap_err()
                .allow(),
            Some("GET")
        );
    }

    #[test]
    fn create_reads_the_id_and_splits_the_agent_mro() {
        let id = entity(Role::Agent);
        let command = parse(
            Route::CreateMailbox,
            json!({"mailbox": id_field(&id), "agent": "mod.C,mod.A"}),
        )
        .unwrap();
        assert_eq!(
            command,
            Command::CreateMailbox {
                mailbox: id,
                agent: Some(vec!["mod.C".into(), "mod.A".into()])
            }
        );
    }

    #[test]
    fn create_without_agent_is_a_plain_mailbox_and_empty_class_names_are_rejected() {
        let id = entity(Role::User);
        let command = parse(
            Route::CreateMailbox,
            json!({"mailbox": id_field(&id), "agent": null}),
        );
        assert_eq!(
            command,
            Ok(Command::CreateMailbox {
                mailbox: id.clone(),
                agent: None
            })
        );
        let error = parse(
            Route::CreateMailbox,
            json!({"mailbox": id_field(&id), "agent": "a,,b"}),
        );
        assert_eq!(error.unwrap_err().status(), 400);
    }

    /// Parses `POST /mailbox` for a new agent id with these class fields.
    fn create_agent(class_fields: Value) -> (EntityId, Result<Command, ExchangeError>) {
        let id = entity(Role::Agent);
        let mut body = class_fields;
        body["mailbox"] = id_field(&id);
        let command = parse(Route::CreateMailbox, body);
        (id, command)
    }

    fn agent_created(mailbox: EntityId, mro: &[&str]) -> Command {
        Command::CreateMailbox {
            mailbox,
            agent: Some(mro.iter().map(|class| (*class).to_owned()).collect()),
        }
    }

    #[test]
    fn create_reads_behavior_as_the_older_name_of_agent() {
        let (id, command) = create_agent(json!({"behavior": "mod.C,mod.A"}));
        assert_eq!(command, Ok(agent_created(id, &["mod.C", "mod.A"])));
        let (_, empty_class) = create_agent(json!({"behavior": "mod.C,"}));
        assert_eq!(
            empty_class,
            Err(ExchangeError::field(
                "behavior",
                "class names must not be empty"
            ))
        );
    }

    #[test]
    fn create_prefers_agent_over_behavior() {
        let (id, both) = create_agent(json!({"agent": "mod.New", "behavior": "mod.Old"}));
        assert_eq!(both, Ok(agent_created(id, &["mod.New"])));
        // A null `agent` counts as absent, as for every field.
        let (id, null_agent) = create_agent(json!({"agent": null, "behavior": "mod.Old"}));
        assert_eq!(null_agent, Ok(agent_created(id, &["mod.Old"])));
    }

    #[test]
    fn every_mailbox_route_requires_a_valid_mailbox() {
        for route in [
            Route::Terminate,
            Route::Status,
            Route::Receive,
            Route::Listen,
            Route::ListShares,
            Route::Heartbeat,
            Route::HeartbeatAge,
            Route::Stats,
        ] {
            let missing = parse(route, json!({})).unwrap_err();
            assert_eq!(
                missing,
                ExchangeError::field("mailbox", "missing"),
                "{route:?}"
            );
            let invalid = parse(
                route,
                json!({"mailbox": "{\"uid\": \"x\", \"role\": \"user\"}"}),
            );
            assert_eq!(invalid.unwrap_err().status(), 400, "{route:?}");
        }
    }

    #[test]
    fn timeouts_default_to_the_maximum_and_are_bounded() {
        let id = entity(Role::User);
        let ok = parse(
            Route::Receive,
            json!({"mailbox": id_field(&id), "timeout": 1.5}),
        )
        .unwrap();
        assert_eq!(
            ok,
            Command::Receive {
                mailbox: id.clone(),
                timeout_s: 1.5
            }
        );
        let default = parse(Route::Listen, json!({"mailbox": id_field(&id)})).unwrap();
        assert_eq!(
            default,
            Command::Listen {
                mailbox: id.clone(),
                timeout_s: 60.0
            }
        );
        for bad in [json!(0), json!(-1), json!(60.5)] {
            let error = parse(
                Route::Receive,
                json!({"mailbox": id_field(&id), "timeout": bad}),
            );
            assert_eq!(
                error.unwrap_err(),
                ExchangeError::InvalidTimeout { max_s: 60.0 }
            );
        }
        let typed = parse(
            Route::Receive,
            json!({"mailbox": id_field(&id), "timeout": "soon"}),
        );
        assert_eq!(typed.unwrap_err().status(), 400);
    }

    #[test]
    fn a_command_names_its_mailbox_and_a_send_its_destination() {
        let src = entity(Role::User);
        let dest = entity(Role::Agent);
        let text = message_text(&src, &dest, "request", Uuid::new_v4());
        let send = parse(Route::Send, json!({ "message": text })).unwrap();
        assert_eq!(send.mailbox_uid(), Some(dest.uid));
        let stats = parse(Route::Stats, json!({"mailbox": id_field(&src)})).unwrap();
        assert_eq!(stats.mailbox_uid(), Some(src.uid));
        let discover = parse(
            Route::Discover,
            json!({"agent": "m.A", "allow_subclasses": true}),
        )
        .unwrap();
        assert_eq!(discover.mailbox_uid(), None);
    }

    #[test]
    fn the_maximum_timeout_itself_is_allowed() {
        assert_eq!(validate_timeout(60.0, 60.0), Ok(60.0));
        assert!(validate_timeout(f64::NAN, 60.0).is_err());
    }

    #[test]
    fn send_keeps_the_message_text_and_checks_its_size() {
        let (src, dest) = (entity(Role::User), entity(Role::Agent));
        let text = message_text(&src, &dest, "request", Uuid::new_v4());
        let Command::Send { message } = parse(Route::Send, json!({"message": text})).unwrap()
        else {
            panic!("not a send");
        };
        assert_eq!(message.text, text);

        let config = Config {
            message_size_limit: 10,
            ..Config::default()
        };
        let body = json!({"message": text}).to_string();
        let error = parse_command(Route::Send, &[], body.as_bytes(), &config).unwrap_err();
        assert_eq!(
            error,
            ExchangeError::MessageTooLarge {
                size: text.len() as u64,
                limit: 10
            }
        );
    }

    #[test]
    fn send_rejects_missing_and_malformed_messages() {
        for body in [
            json!({}),
            json!({"message": 5}),
            json!({"message": "{}"}),
            json!({"message": "nope"}),
        ] {
            assert_eq!(
                parse(Route::Send, body.clone()).unwrap_err().status(),
                400,
                "{body}"
            );
        }
    }

    #[test]
    fn discover_needs_a_class_name_and_a_boolean() {
        let ok = parse(
            Route::Discover,
            json!({"agent": "m.A", "allow_subclasses": false}),
        );
        assert_eq!(
            ok,
            Ok(Command::Discover {
                agent: "m.A".into(),
                allow_subclasses: false
            })
        );
        for body in [
            json!({"agent": "m.A"}),
            json!({"allow_subclasses": true}),
            json!({"agent": "", "allow_subclasses": true}),
            json!({"agent": "m.A", "allow_subclasses": "yes"}),
        ] {
            assert_eq!(
                parse(Route::Discover, body.clone()).unwrap_err().status(),
                400,
                "{body}"
            );
        }
    }

    fn discover_command(agent: &str, allow_subclasses: bool) -> Command {
        Command::Discover {
            agent: agent.into(),
            allow_subclasses,
        }
    }

    fn query_pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn discover_reads_behavior_from_the_body_and_agent_wins() {
        let older = parse(
            Route::Discover,
            json!({"behavior": "m.Old", "allow_subclasses": true}),
        );
        assert_eq!(older, Ok(discover_command("m.Old", true)));
        let both = parse(
            Route::Discover,
            json!({"agent": "m.New", "behavior": "m.Old", "allow_subclasses": false}),
        );
        assert_eq!(both, Ok(discover_command("m.New", false)));
        let empty = parse(
            Route::Discover,
            json!({"behavior": "", "allow_subclasses": true}),
        );
        assert_eq!(
            empty,
            Err(ExchangeError::field("behavior", "must not be empty"))
        );
        let neither = parse(Route::Discover, json!({"allow_subclasses": true}));
        assert_eq!(neither, Err(ExchangeError::field("agent", "missing")));
    }

    #[test]
    fn discover_reads_behavior_from_the_query_and_agent_wins() {
        let discover = |pairs: &[(&str, &str)], body: &[u8]| {
            parse_command(
                Route::Discover,
                &query_pairs(pairs),
                body,
                &Config::default(),
            )
        };
        let older = discover(&[("behavior", "m.Old"), ("allow_subclasses", "false")], b"");
        assert_eq!(older, Ok(discover_command("m.Old", false)));
        let both = discover(
            &[
                ("behavior", "m.Old"),
                ("agent", "m.New"),
                ("allow_subclasses", "true"),
            ],
            b"",
        );
        assert_eq!(both, Ok(discover_command("m.New", true)));
        // Wherever each comes from: `agent` in the query beats `behavior` in the body.
        let mixed = discover(
            &[("agent", "m.New")],
            br#"{"behavior": "m.Old", "allow_subclasses": true}"#,
        );
        assert_eq!(mixed, Ok(discover_command("m.New", true)));
    }

    #[test]
    fn share_routes_need_a_group_id() {
        let id = entity(Role::User);
        let ok = parse(
            Route::Share,
            json!({"mailbox": id_field(&id), "group_id": "g1"}),
        );
        assert_eq!(
            ok,
            Ok(Command::Share {
                mailbox: id.clone(),
                group_id: "g1".into()
            })
        );
        let missing = parse(Route::Unshare, json!({"mailbox": id_field(&id)}));
        assert_eq!(
            missing.unwrap_err(),
            ExchangeError::field("group_id", "missing")
        );
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_rejected() {
        for body in [&b"not json"[..], b"[1, 2]", b"\"text\"", b"{\"mailbox\": "] {
            let error = parse_command(Route::Status, &[], body, &Config::default()).unwrap_err();
            assert!(
                matches!(error, ExchangeError::InvalidBody { .. }),
                "{error:?}"
            );
        }
    }

    #[test]
    fn query_parameters_fill_fields_on_get() {
        let id = entity(Role::User);
        let query = vec![
            ("mailbox".to_owned(), serde_json::to_string(&id).unwrap()),
            ("timeout".to_owned(), "2".to_owned()),
        ];
        let command = parse_command(Route::Receive, &query, b"", &Config::default()).unwrap();
        assert_eq!(
            command,
            Command::Receive {
                mailbox: id,
                timeout_s: 2.0
            }
        );
        let discover = query_pairs(&[("agent", "m.A"), ("allow_subclasses", "true")]);
        let command = parse_command(Route::Discover, &discover, b"", &Config::default());
        assert_eq!(command, Ok(discover_command("m.A", true)));
    }

    #[test]
    fn unknown_fields_are_skipped_and_a_repeated_field_keeps_its_last_value() {
        let (old, id) = (entity(Role::User), entity(Role::User));
        let body = format!(
            r#"{{"mailbox": {}, "padding": [[1, 2], {{"deep": [[[]]]}}], "mailbox": {}}}"#,
            id_field(&old),
            id_field(&id)
        );
        let command =
            parse_command(Route::Status, &[], body.as_bytes(), &Config::default()).unwrap();
        assert_eq!(command, Command::Status { mailbox: id });
    }

    #[test]
    fn a_body_of_many_fields_or_long_arrays_keeps_only_the_fields_routes_read() {
        let mut body = String::from(r#"{"mailbox": null, "list": ["#);
        body.push_str(&"0,".repeat(100_000));
        body.push_str(r#"0], "#);
        for n in 0..10_000 {
            body.push_str(&format!(r#""f{n}": {n}, "#));
        }
        body.push_str(r#""timeout": 1}"#);
        let fields = Fields::read(body.as_bytes(), &[]).unwrap();
        let kept: Vec<&str> = fields.0.iter().map(|(name, _)| *name).collect();
        assert_eq!(kept, ["mailbox", "timeout"]);
        assert_eq!(fields.present("mailbox").map(RawValue::get), None);
        assert_eq!(fields.timeout(60.0), Ok(1.0));
    }

    #[test]
    fn deep_nesting_is_skipped_in_fields_no_route_reads_and_refused_in_read_ones() {
        let id = entity(Role::User);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = format!(r#"{{"extra": {deep}, "mailbox": {}}}"#, id_field(&id));
        let command = parse_command(Route::Status, &[], body.as_bytes(), &Config::default());
        assert_eq!(command, Ok(Command::Status { mailbox: id }));
        for (route, body) in [
            (Route::Status, format!(r#"{{"mailbox": {deep}}}"#)),
            (
                Route::Status,
                format!(r#"{{"mailbox": {{"uid": {deep}, "role": "user"}}}}"#),
            ),
            (
                Route::Send,
                format!(r#"{{"message": {{"header": {deep}, "body": {deep}}}}}"#),
            ),
        ] {
            let error = parse_command(route, &[], body.as_bytes(), &Config::default());
            assert_eq!(error.unwrap_err().status(), 400, "{route:?}");
        }
    }

    #[test]
    fn a_known_field_of_the_wrong_kind_is_named_in_the_refusal() {
        let error = parse(Route::Status, json!({"mailbox": [1, 2, 3]})).unwrap_err();
        assert_eq!(
            error,
            ExchangeError::field(
                "mailbox",
                "expected an entity id (a JSON string or object), got an array"
            )
        );
        let error = parse(
            Route::Discover,
            json!({"agent": {"a": 1}, "allow_subclasses": true}),
        );
        assert_eq!(
            error.unwrap_err(),
            ExchangeError::field("agent", "expected a string, got an object")
        );
    }

    #[test]
    fn an_agent_mro_and_its_class_names_are_bounded() {
        let id = entity(Role::Agent);
        let create = |agent: String| {
            parse(
                Route::CreateMailbox,
                json!({"mailbox": id_field(&id), "agent": agent}),
            )
        };
        let longest: Vec<String> = (0..MRO_CLASS_LIMIT).map(|n| format!("m.C{n}")).collect();
        let Command::CreateMailbox { agent, .. } = create(longest.join(",")).unwrap() else {
            panic!("not a create");
        };
        assert_eq!(agent, Some(longest));
        let too_many = ",m.C".repeat(MRO_CLASS_LIMIT);
        assert_eq!(
            create(format!("m.A{too_many}")).unwrap_err(),
            ExchangeError::field("agent", "an MRO of more than 64 classes")
        );
        let long_name = format!("m.{}", "A".repeat(CLASS_NAME_LIMIT));
        assert_eq!(create(long_name.clone()).unwrap_err().status(), 400);
        let discover = parse(
            Route::Discover,
            json!({"agent": long_name, "allow_subclasses": true}),
        );
        assert_eq!(
            discover.unwrap_err(),
            ExchangeError::field("agent", "a class name longer than 1024 bytes")
        );
    }

    #[test]
    fn an_object_message_is_kept_as_the_text_it_was_sent_as() {
        let (src, dest) = (entity(Role::User), entity(Role::Agent));
        let text = message_text(&src, &dest, "request", Uuid::new_v4());
        let body = format!(r#"{{"message": {text}}}"#);
        let command = parse_command(Route::Send, &[], body.as_bytes(), &Config::default());
        let Ok(Command::Send { message }) = command else {
            panic!("not a send: {command:?}");
        };
        assert_eq!(message.text, text);
    }

    #[test]
    fn query_parameters_do_not_override_the_body_and_unknown_ones_are_ignored() {
        let id = entity(Role::User);
        let body = json!({"mailbox": id_field(&id), "timeout": 3}).to_string();
        let query = vec![
            ("timeout".to_owned(), "2".to_owned()),
            ("other".to_owned(), "x".repeat(100)),
        ];
        let command =
            parse_command(Route::Receive, &query, body.as_bytes(), &Config::default()).unwrap();
        assert_eq!(
            command,
            Command::Receive {
                mailbox: id,
                timeout_s: 3.0
            }
        );
    }
}

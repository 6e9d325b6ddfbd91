//! Public requests: which route a method and path name, and the typed command its
//! fields make. Every malformed input becomes an [`ExchangeError`] with a 4xx status.
//!
//! Fields come from a JSON object body — the client sends bodies on GET and DELETE
//! too — and, for GET, also from query parameters. Unknown fields are ignored.
//!
//! `behavior` is read as the older name of `agent` (academy-py 0.1.0's HTTP client
//! sends it on `POST /mailbox` and `GET /discover`); `agent` wins when both are sent.

use serde_json::{Map, Value};

use super::config::Config;
use super::entity::{json_kind, EntityId};
use super::error::ExchangeError;
use super::message::IncomingMessage;

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
    /// Finds the route for `method` and `path` (a trailing slash is ignored).
    pub fn resolve(method: &str, path: &str) -> Result<Self, ExchangeError> {
        let trimmed = match path.strip_suffix('/') {
            Some(rest) if !rest.is_empty() => rest,
            _ => path,
        };
        let by_method: &[(&str, Route)] = match trimmed {
            "/mailbox" => &[
                ("POST", Route::CreateMailbox),
                ("DELETE", Route::Terminate),
                ("GET", Route::Status),
            ],
            "/message" => &[("PUT", Route::Send), ("GET", Route::Receive)],
            "/mailbox/listen" => &[("GET", Route::Listen)],
            "/discover" => &[("GET", Route::Discover)],
            "/mailbox/share" => &[
                ("POST", Route::Share),
                ("GET", Route::ListShares),
                ("DELETE", Route::Unshare),
            ],
            "/mailbox/heartbeat" => &[("POST", Route::Heartbeat), ("GET", Route::HeartbeatAge)],
            "/mailbox/stats" => &[("GET", Route::Stats)],
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
            .map(|(_, route)| *route)
            .ok_or_else(|| ExchangeError::MethodNotAllowed {
                method: method.to_owned(),
                path: trimmed.to_owned(),
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

/// Parses the fields of a request for `route`. `query` holds the decoded query
/// parameters (used by GET only); `body` the raw body bytes.
pub fn parse_command(
    route: Route,
    query: &[(String, String)],
    body: &[u8],
    config: &Config,
) -> Result<Command, ExchangeError> {
    if body.len() as u64 > config.body_size_limit() {
        return Err(ExchangeError::BodyTooLarge {
            size: body.len() as u64,
            limit: config.body_size_limit(),
        });
    }
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
            agent: fields.non_empty_string(fields.agent_field_name())?,
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

/// The request's fields: the body object, with query parameters filling the gaps.
struct Fields(Map<String, Value>);

impl Fields {
    fn read(body: &[u8], query: &[(String, String)]) -> Result<Self, ExchangeError> {
        let mut fields = if body.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => map,
                Ok(other) => {
                    return Err(ExchangeError::InvalidBody {
                        reason: format!("expected a JSON object, got {}", json_kind(&other)),
                    })
                }
                Err(error) => {
                    return Err(ExchangeError::InvalidBody {
                        reason: format!("not valid JSON ({error})"),
                    })
                }
            }
        };
        for (key, text) in query {
            // Query values are text; numbers and booleans are read as such.
            let value = match serde_json::from_str::<Value>(text) {
                Ok(value @ (Value::Number(_) | Value::Bool(_))) => value,
                _ => Value::String(text.clone()),
            };
            fields.entry(key.clone()).or_insert(value);
        }
        Ok(Self(fields))
    }

    fn present(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|value| !value.is_null())
    }

    fn required(&self, name: &str) -> Result<&Value, ExchangeError> {
        self.present(name)
            .ok_or_else(|| ExchangeError::field(name, "missing"))
    }

    fn entity(&self, name: &str) -> Result<EntityId, ExchangeError> {
        EntityId::from_field(self.required(name)?)
            .map_err(|reason| ExchangeError::field(name, reason))
    }

    fn non_empty_string(&self, name: &str) -> Result<String, ExchangeError> {
        match self.required(name)? {
            Value::String(text) if !text.is_empty() => Ok(text.clone()),
            Value::String(_) => Err(ExchangeError::field(name, "must not be empty")),
            other => Err(ExchangeError::field(
                name,
                format!("expected a string, got {}", json_kind(other)),
            )),
        }
    }

    fn boolean(&self, name: &str) -> Result<bool, ExchangeError> {
        match self.required(name)? {
            Value::Bool(flag) => Ok(*flag),
            other => Err(ExchangeError::field(
                name,
                format!("expected true or false, got {}", json_kind(other)),
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
        let mro: Vec<String> = joined
            .split(',')
            .map(|class| class.trim().to_owned())
            .collect();
        if mro.iter().any(String::is_empty) {
            return Err(ExchangeError::field(name, "class names must not be empty"));
        }
        Ok(Some(mro))
    }

    fn timeout(&self, max_s: f64) -> Result<f64, ExchangeError> {
        match self.present("timeout") {
            None => Ok(max_s),
            Some(Value::Number(number)) => {
                validate_timeout(number.as_f64().unwrap_or(f64::NAN), max_s)
            }
            Some(other) => Err(ExchangeError::field(
                "timeout",
                format!("expected a number of seconds, got {}", json_kind(other)),
            )),
        }
    }

    /// `message`: the message JSON as a string (as the client sends it), or an object.
    fn message(&self, size_limit: u64) -> Result<IncomingMessage, ExchangeError> {
        let text = match self.required("message")? {
            Value::String(text) => text.clone(),
            object @ Value::Object(_) => object.to_string(),
            other => {
                return Err(ExchangeError::field(
                    "message",
                    format!("expected a message JSON string, got {}", json_kind(other)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::entity::Role;
    use crate::protocol::message::tests::{entity, message_text};
    use serde_json::json;
    use uuid::Uuid;

    fn parse(route: Route, body: Value) -> Result<Command, ExchangeError> {
        parse_command(route, &[], body.to_string().as_bytes(), &Config::default())
    }

    fn id_field(id: &EntityId) -> Value {
        Value::String(serde_json::to_string(id).unwrap())
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
            assert_eq!(Route::resolve(method, path), Ok(route), "{method} {path}");
        }
        assert_eq!(Route::resolve("get", "/mailbox/"), Ok(Route::Status));
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        assert_eq!(Route::resolve("GET", "/nope").unwrap_err().status(), 404);
        assert_eq!(Route::resolve("GET", "/").unwrap_err().status(), 404);
        assert_eq!(
            Route::resolve("PATCH", "/mailbox").unwrap_err().status(),
            405
        );
        assert_eq!(
            Route::resolve("POST", "/message").unwrap_err().status(),
            405
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
    fn oversized_bodies_are_refused_before_parsing() {
        let config = Config {
            message_size_limit: 1,
            ..Config::default()
        };
        let body = vec![b' '; config.body_size_limit() as usize + 1];
        let error = parse_command(Route::Send, &[], &body, &config).unwrap_err();
        assert_eq!(error.status(), 413);
    }
}

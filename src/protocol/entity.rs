//! Entity ids: `{"uid": "<uuid>", "name": <string|null>, "role": "user"|"agent"}`
//! (academy-py 0.1.0 names its users `"client"`).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// Whether an entity is a user (client) or an agent. Only agents are discoverable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Agent,
    /// academy-py 0.1.0's name for a user (its `ClientId`). A variant of its own,
    /// not an alias of `User`: ids the exchange echoes back (in terminate replies)
    /// must keep the role the client wrote, or that client cannot read them.
    Client,
}

/// The id of a mailbox's owner entity. Mailboxes are keyed by `uid` alone; `name`
/// and `role` are kept so the exchange can echo the id back (e.g. in terminate replies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityId {
    pub uid: Uuid,
    #[serde(default)]
    pub name: Option<String>,
    pub role: Role,
}

/// Longest entity name a request may give a mailbox, in bytes: its object keeps
/// the owner's id in memory and in one SQLite row (at most 2 MB on the platform).
pub const NAME_LIMIT: usize = 4096;

impl EntityId {
    /// Reads an id from a request field (its JSON text). The client sends
    /// `id.model_dump_json()`, a JSON *string* whose content is the id object; a
    /// plain object is accepted too.
    pub fn from_field(field: &RawValue) -> Result<Self, String> {
        let json = field.get();
        let id: Self = match JsonKind::of(json.as_bytes()) {
            JsonKind::String => {
                let text: String = serde_json::from_str(json).map_err(|e| e.to_string())?;
                serde_json::from_str(&text).map_err(|e| e.to_string())?
            }
            JsonKind::Object => serde_json::from_str(json).map_err(|e| e.to_string())?,
            other => {
                return Err(format!(
                    "expected an entity id (a JSON string or object), got {other}"
                ))
            }
        };
        if id.name.as_ref().is_some_and(|name| name.len() > NAME_LIMIT) {
            return Err(format!("a name longer than {NAME_LIMIT} bytes"));
        }
        Ok(id)
    }
}

/// The type of a JSON value, told by its first byte: enough to route or refuse a
/// field without parsing (and storing) its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl JsonKind {
    /// The kind of the value `json` holds; `json` must be valid JSON text.
    pub fn of(json: &[u8]) -> Self {
        match json.iter().find(|byte| !byte.is_ascii_whitespace()) {
            Some(b'n') => Self::Null,
            Some(b't' | b'f') => Self::Boolean,
            Some(b'"') => Self::String,
            Some(b'[') => Self::Array,
            Some(b'{') => Self::Object,
            _ => Self::Number,
        }
    }
}

/// A short name for the kind, for error messages.
impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Null => "null",
            Self::Boolean => "a boolean",
            Self::Number => "a number",
            Self::String => "a string",
            Self::Array => "an array",
            Self::Object => "an object",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use serde_json::value::to_raw_value;

    fn field(value: serde_json::Value) -> Box<RawValue> {
        to_raw_value(&value).unwrap()
    }

    const UID: &str = "0eeb5a3c-8d3c-4c4b-9a57-2b4b1b2f9a10";

    #[test]
    fn an_id_is_read_from_a_json_string_as_the_client_sends_it() {
        let sent = field(json!(format!(
            r#"{{"uid":"{UID}","name":"alice","role":"user"}}"#
        )));
        let id = EntityId::from_field(&sent).unwrap();
        assert_eq!(id.uid.to_string(), UID);
        assert_eq!(id.name.as_deref(), Some("alice"));
        assert_eq!(id.role, Role::User);
    }

    #[test]
    fn an_id_is_read_from_a_plain_object_and_name_may_be_absent() {
        let id = EntityId::from_field(&field(json!({"uid": UID, "role": "agent"}))).unwrap();
        assert_eq!(id.role, Role::Agent);
        assert_eq!(id.name, None);
    }

    #[test]
    fn an_academy_0_1_client_id_keeps_its_role_client() {
        let id = EntityId::from_field(&field(json!(format!(
            r#"{{"uid":"{UID}","name":null,"role":"client"}}"#
        ))))
        .unwrap();
        assert_eq!(id.role, Role::Client);
        assert_eq!(serde_json::to_value(&id).unwrap()["role"], "client");
    }

    #[test]
    fn malformed_ids_are_rejected_with_a_reason() {
        for bad in [
            json!("not json"),
            json!({"uid": "not-a-uuid", "role": "user"}),
            json!({"uid": UID, "role": "robot"}),
            json!({"uid": UID}),
            json!(42),
            json!(null),
            json!([UID]),
        ] {
            let err = EntityId::from_field(&field(bad.clone())).unwrap_err();
            assert!(!err.is_empty(), "{bad} gave an empty reason");
        }
    }

    #[test]
    fn a_name_is_bounded() {
        let named = |length: usize| {
            let name = "n".repeat(length);
            field(json!({"uid": UID, "name": name, "role": "user"}))
        };
        assert!(EntityId::from_field(&named(NAME_LIMIT)).is_ok());
        assert_eq!(
            EntityId::from_field(&named(NAME_LIMIT + 1)).unwrap_err(),
            "a name longer than 4096 bytes"
        );
    }

    #[test]
    fn a_json_kind_is_told_by_the_first_byte() {
        for (json, kind) in [
            ("null", JsonKind::Null),
            (" true", JsonKind::Boolean),
            ("false", JsonKind::Boolean),
            ("-1.5e3", JsonKind::Number),
            ("\"x\"", JsonKind::String),
            ("\n[1]", JsonKind::Array),
            ("{}", JsonKind::Object),
        ] {
            assert_eq!(JsonKind::of(json.as_bytes()), kind, "{json}");
        }
        assert_eq!(JsonKind::Array.to_string(), "an array");
    }
}

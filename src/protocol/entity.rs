//! Entity ids: `{"uid": "<uuid>", "name": <string|null>, "role": "user"|"agent"}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Whether an entity is a user (client) or an agent. Only agents are discoverable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Agent,
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

impl EntityId {
    /// Reads an id from a request field. The client sends `id.model_dump_json()`, a
    /// JSON *string* whose content is the id object; a plain object is accepted too.
    pub fn from_field(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(text) => serde_json::from_str(text).map_err(|e| e.to_string()),
            Value::Object(_) => Self::deserialize(value).map_err(|e| e.to_string()),
            other => Err(format!(
                "expected an entity id (a JSON string or object), got {}",
                json_kind(other)
            )),
        }
    }
}

/// A short name for the type of a JSON value, for error messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const UID: &str = "0eeb5a3c-8d3c-4c4b-9a57-2b4b1b2f9a10";

    #[test]
    fn an_id_is_read_from_a_json_string_as_the_client_sends_it() {
        let field = json!(format!(r#"{{"uid":"{UID}","name":"alice","role":"user"}}"#));
        let id = EntityId::from_field(&field).unwrap();
        assert_eq!(id.uid.to_string(), UID);
        assert_eq!(id.name.as_deref(), Some("alice"));
        assert_eq!(id.role, Role::User);
    }

    #[test]
    fn an_id_is_read_from_a_plain_object_and_name_may_be_absent() {
        let id = EntityId::from_field(&json!({"uid": UID, "role": "agent"})).unwrap();
        assert_eq!(id.role, Role::Agent);
        assert_eq!(id.name, None);
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
        ] {
            let err = EntityId::from_field(&bad).unwrap_err();
            assert!(!err.is_empty(), "{bad} gave an empty reason");
        }
    }
}

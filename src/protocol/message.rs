//! Messages as the exchange sees them: an opaque text whose header alone is parsed.
//! The text is stored and returned byte for byte (bodies may hold pickled data, and
//! re-serializing would change what the sender signed off on).

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::entity::EntityId;

/// The academy version the exchange claims on replies it writes itself.
pub const ACADEMY_VERSION: &str = "1.0.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Request,
    Response,
}

/// The routing part of a message. Unknown header fields are ignored, as upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageHeader {
    pub src: EntityId,
    pub dest: EntityId,
    /// Matches a response to its request.
    pub tag: Uuid,
    #[serde(default)]
    pub label: Option<Uuid>,
    pub kind: MessageKind,
    /// Copied onto replies the exchange writes, so the requester accepts them.
    #[serde(default)]
    pub protocol_version: Option<String>,
}

/// A message as received: the exact text, plus its parsed header.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMessage {
    pub text: String,
    pub header: MessageHeader,
}

/// The shape every message must have; the body must be present but stays unparsed.
#[derive(Deserialize)]
struct Envelope {
    header: MessageHeader,
    #[allow(dead_code)] // present-but-ignored: deserializing checks the body exists
    body: IgnoredAny,
}

impl IncomingMessage {
    pub fn parse(text: String) -> Result<Self, String> {
        let envelope: Envelope = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        Ok(Self {
            text,
            header: envelope.header,
        })
    }
}

/// The reply the exchange sends, on the terminated mailbox's behalf, to the sender
/// of a request that will now never be answered; the client raises
/// `MailboxTerminatedError` from it. Mirrors upstream's
/// `_respond_pending_requests_on_terminate`: src/dest swapped, tag and label kept.
pub fn terminated_reply(request: &MessageHeader) -> String {
    json!({
        "header": {
            "src": request.dest,
            "dest": request.src,
            "tag": request.tag,
            "label": request.label,
            "kind": MessageKind::Response,
            "protocol_version": request.protocol_version,
            "academy_version": ACADEMY_VERSION,
        },
        "body": {
            "error_code": 0,
            "mailbox_id": request.dest,
            "kind": "academy-error-response",
        },
    })
    .to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::entity::Role;
    use serde_json::Value;

    pub(crate) fn entity(role: Role) -> EntityId {
        EntityId {
            uid: Uuid::new_v4(),
            name: None,
            role,
        }
    }

    /// A message text with deliberate odd spacing and escapes, as a client might send.
    pub(crate) fn message_text(src: &EntityId, dest: &EntityId, kind: &str, tag: Uuid) -> String {
        format!(
            r#"{{"header": {{"src": {}, "dest": {},  "tag": "{tag}", "label": null, "kind": "{kind}", "protocol_version": "1.0", "academy_version": "1.0.0", "extra": 1}},
  "body": {{"kind": "action-request", "args": "\u00e9 é  \n"}}}}"#,
            serde_json::to_string(src).unwrap(),
            serde_json::to_string(dest).unwrap(),
        )
    }

    #[test]
    fn parsing_keeps_the_text_exactly_and_reads_the_header() {
        let (src, dest, tag) = (entity(Role::User), entity(Role::Agent), Uuid::new_v4());
        let text = message_text(&src, &dest, "request", tag);
        let message = IncomingMessage::parse(text.clone()).unwrap();
        assert_eq!(message.text, text);
        assert_eq!(message.header.src, src);
        assert_eq!(message.header.dest, dest);
        assert_eq!(message.header.tag, tag);
        assert_eq!(message.header.kind, MessageKind::Request);
    }

    #[test]
    fn messages_without_header_or_body_are_rejected() {
        assert!(IncomingMessage::parse(r#"{"body": {}}"#.into()).is_err());
        let (src, dest) = (entity(Role::User), entity(Role::Agent));
        let header_only = format!(
            r#"{{"header": {{"src": {}, "dest": {}, "tag": "{}", "kind": "request"}}}}"#,
            serde_json::to_string(&src).unwrap(),
            serde_json::to_string(&dest).unwrap(),
            Uuid::new_v4()
        );
        assert!(IncomingMessage::parse(header_only).is_err());
        assert!(IncomingMessage::parse("[]".into()).is_err());
        assert!(IncomingMessage::parse("not json".into()).is_err());
    }

    #[test]
    fn the_terminated_reply_answers_the_request_from_the_terminated_mailbox() {
        let (src, dest, tag) = (entity(Role::User), entity(Role::Agent), Uuid::new_v4());
        let request = IncomingMessage::parse(message_text(&src, &dest, "request", tag)).unwrap();
        let reply: Value = serde_json::from_str(&terminated_reply(&request.header)).unwrap();
        assert_eq!(reply["header"]["src"], serde_json::to_value(&dest).unwrap());
        assert_eq!(reply["header"]["dest"], serde_json::to_value(&src).unwrap());
        assert_eq!(reply["header"]["tag"], tag.to_string());
        assert_eq!(reply["header"]["kind"], "response");
        assert_eq!(reply["header"]["protocol_version"], "1.0");
        assert_eq!(reply["body"]["kind"], "academy-error-response");
        assert_eq!(reply["body"]["error_code"], 0);
        assert_eq!(reply["body"]["mailbox_id"]["uid"], dest.uid.to_string());
        // And it is itself a valid message the exchange would accept.
        let parsed = IncomingMessage::parse(terminated_reply(&request.header)).unwrap();
        assert_eq!(parsed.header.kind, MessageKind::Response);
    }
}

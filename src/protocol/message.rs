//! Messages as the exchange sees them: an opaque text whose routing fields alone are
//! parsed. The text is stored and returned byte for byte (bodies may hold pickled data,
//! and re-serializing would change what the sender signed off on).
//!
//! Two layouts: `{"header": {...}, "body": {...}}` (academy-py 0.5 and 1.0), read
//! here, and academy-py 0.1.0's flat messages, read in [`super::flat_message`].

use serde::de::{Deserializer, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::entity::EntityId;
use super::flat_message::{self, FlatRequest};

/// The academy version the exchange claims on replies it writes itself.
pub const ACADEMY_VERSION: &str = "1.0.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Request,
    Response,
}

/// The routing part of a message, whichever layout it came in. Also what the
/// exchange keeps of a request in flight (serialized), to answer it on terminate.
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
    /// Set for academy-py 0.1.0's requests: what a reply the exchange writes needs
    /// to take their layout, the only one that client reads. Absent from requests
    /// kept before it existed, which were all in the header/body layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flat_request: Option<FlatRequest>,
}

/// A message as received: the exact text, plus its parsed header.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMessage {
    pub text: String,
    pub header: MessageHeader,
}

/// The header/body layout. Without a `header` the message may be a flat one; with
/// one, the body must be present but stays unparsed.
#[derive(Deserialize)]
struct Envelope {
    header: Option<EnvelopeHeader>,
    #[serde(default)]
    body: Presence,
}

/// `header` in the header/body layout. Unknown header fields are ignored, as upstream.
#[derive(Deserialize)]
struct EnvelopeHeader {
    src: EntityId,
    dest: EntityId,
    tag: Uuid,
    #[serde(default)]
    label: Option<Uuid>,
    kind: MessageKind,
    #[serde(default)]
    protocol_version: Option<String>,
}

/// Whether a field was there at all, whatever it held (even `null`), without
/// keeping its value.
#[derive(Default)]
struct Presence(bool);

impl<'de> Deserialize<'de> for Presence {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Self(true))
    }
}

impl IncomingMessage {
    /// Reads the header from `header` when the message has one, else the flat
    /// routing fields of academy-py 0.1.0 from the top level.
    pub fn parse(text: String) -> Result<Self, String> {
        let envelope: Envelope = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let header = match envelope.header {
            Some(header) if envelope.body.0 => MessageHeader {
                src: header.src,
                dest: header.dest,
                tag: header.tag,
                label: header.label,
                kind: header.kind,
                protocol_version: header.protocol_version,
                flat_request: None,
            },
            Some(_) => return Err("missing field `body`".into()),
            None => flat_message::header(&text).map_err(|reason| {
                format!("missing field `header`, and not a flat academy-py 0.1 message: {reason}")
            })?,
        };
        Ok(Self { text, header })
    }
}

/// The reply the exchange sends, on the terminated mailbox's behalf, to the sender
/// of a request that will now never be answered; the client raises
/// `MailboxTerminatedError` from it. Mirrors upstream's
/// `_respond_pending_requests_on_terminate`: src/dest swapped, tag and label kept.
/// A 0.1.0 request gets its reply in its own layout, or none
/// ([`flat_message::terminated_reply`]).
pub fn terminated_reply(request: &MessageHeader) -> Option<String> {
    if let Some(flat_request) = &request.flat_request {
        return flat_message::terminated_reply(request, flat_request);
    }
    let reply = json!({
        "header": reply_header(request),
        "body": {
            "error_code": 0,
            "mailbox_id": request.dest,
            "kind": "academy-error-response",
        },
    });
    Some(reply.to_string())
}

/// The reply the exchange sends, on the destination's behalf, to the sender of a
/// request that expired unread in the destination's queue (`MESSAGE_EXPIRY_S`):
/// an error response the client raises from the call that sent the request, so
/// no caller waits forever. Upstream drops such requests silently (its issue
/// #203). academy-py 0.5 and 1.0 read it as a `user-error-response` whose
/// exception is JSON (no pickle: the exchange writes no Python objects) and
/// raise `AcademyRemoteError` with `reason` in its text; 0.1.0 gets a pickled
/// `TimeoutError` in its own layout.
pub fn expired_reply(request: &MessageHeader, expiry_s: f64) -> Option<String> {
    let reason = format!(
        "MessageExpiredError: the request was not read by {} within {expiry_s} s \
         (MESSAGE_EXPIRY_S) and was dropped by the exchange",
        request.dest.uid
    );
    if let Some(flat_request) = &request.flat_request {
        return flat_message::expired_reply(request, flat_request, &reason);
    }
    let exception = json!({ "__exception__": true, "exception_str": reason });
    let reply = json!({
        "header": reply_header(request),
        "body": {
            "kind": "user-error-response",
            "serialization": "json",
            "exception": exception.to_string(),
        },
    });
    Some(reply.to_string())
}

/// The header of a reply the exchange writes to `request`: src and dest
/// swapped, tag and label kept, the request's protocol version.
fn reply_header(request: &MessageHeader) -> serde_json::Value {
    json!({
        "src": request.dest,
        "dest": request.src,
        "tag": request.tag,
        "label": request.label,
        "kind": MessageKind::Response,
        "protocol_version": request.protocol_version,
        "academy_version": ACADEMY_VERSION,
    })
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
        assert_eq!(
            IncomingMessage::parse(header_only).unwrap_err(),
            "missing field `body`"
        );
        assert!(IncomingMessage::parse("[]".into()).is_err());
        assert!(IncomingMessage::parse("not json".into()).is_err());
    }

    #[test]
    fn a_message_with_neither_header_nor_flat_fields_is_told_what_is_missing() {
        let reason = IncomingMessage::parse(r#"{"body": {}}"#.into()).unwrap_err();
        assert!(
            reason.starts_with("missing field `header`, and not a flat academy-py 0.1 message: "),
            "{reason}"
        );
        assert!(reason.contains("missing field `src`"), "{reason}");
    }

    #[test]
    fn a_body_is_required_but_may_hold_anything_even_null() {
        let (src, dest, tag) = (entity(Role::User), entity(Role::Agent), Uuid::new_v4());
        let text = message_text(&src, &dest, "request", tag);
        let null_body = text.replace(
            r#"{"kind": "action-request", "args": "\u00e9 é  \n"}"#,
            "null",
        );
        assert_ne!(null_body, text);
        assert!(IncomingMessage::parse(null_body).is_ok());
    }

    #[test]
    fn with_a_header_the_top_level_routing_fields_of_the_flat_layout_are_ignored() {
        let (src, dest, tag) = (entity(Role::User), entity(Role::Agent), Uuid::new_v4());
        let text = message_text(&src, &dest, "response", tag);
        let odd = format!(
            r#"{{"kind": "ping-request", "src": 5, "tag": [], {}"#,
            &text[1..]
        );
        let message = IncomingMessage::parse(odd).unwrap();
        assert_eq!(message.header.kind, MessageKind::Response);
        assert_eq!(message.header.tag, tag);
        assert_eq!(message.header.flat_request, None);
    }

    #[test]
    fn a_kept_header_reads_back_the_same_and_old_rows_have_no_flat_request() {
        let (src, dest, tag) = (entity(Role::User), entity(Role::Agent), Uuid::new_v4());
        let header = IncomingMessage::parse(message_text(&src, &dest, "request", tag))
            .unwrap()
            .header;
        let kept = serde_json::to_string(&header).unwrap();
        // Rows of header/body requests stay exactly as before 0.1.0 messages existed.
        assert!(!kept.contains("flat_request"), "{kept}");
        assert_eq!(
            serde_json::from_str::<MessageHeader>(&kept).unwrap(),
            header
        );
        let flat = MessageHeader {
            flat_request: Some(FlatRequest::Action {
                action: "add".into(),
            }),
            ..header
        };
        let kept = serde_json::to_string(&flat).unwrap();
        assert_eq!(serde_json::from_str::<MessageHeader>(&kept).unwrap(), flat);
    }

    #[test]
    fn the_terminated_reply_answers_the_request_from_the_terminated_mailbox() {
        let (src, dest, tag) = (entity(Role::User), entity(Role::Agent), Uuid::new_v4());
        let request = IncomingMessage::parse(message_text(&src, &dest, "request", tag)).unwrap();
        let reply = terminated_reply(&request.header).unwrap();
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["header"]["src"], serde_json::to_value(&dest).unwrap());
        assert_eq!(reply["header"]["dest"], serde_json::to_value(&src).unwrap());
        assert_eq!(reply["header"]["tag"], tag.to_string());
        assert_eq!(reply["header"]["kind"], "response");
        assert_eq!(reply["header"]["protocol_version"], "1.0");
        assert_eq!(reply["body"]["kind"], "academy-error-response");
        assert_eq!(reply["body"]["error_code"], 0);
        assert_eq!(reply["body"]["mailbox_id"]["uid"], dest.uid.to_string());
        // And it is itself a valid message the exchange would accept.
        let parsed = IncomingMessage::parse(terminated_reply(&request.header).unwrap()).unwrap();
        assert_eq!(parsed.header.kind, MessageKind::Response);
    }

    #[test]
    fn the_expired_reply_carries_a_json_exception_saying_why() {
        let (src, dest, tag) = (entity(Role::User), entity(Role::Agent), Uuid::new_v4());
        let request = IncomingMessage::parse(message_text(&src, &dest, "request", tag)).unwrap();
        let text = expired_reply(&request.header, 4.0).unwrap();
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reply["header"]["dest"], serde_json::to_value(&src).unwrap());
        assert_eq!(reply["header"]["tag"], tag.to_string());
        assert_eq!(reply["body"]["kind"], "user-error-response");
        assert_eq!(reply["body"]["serialization"], "json");
        // The exception is itself JSON text, as academy's JSON serializer writes it.
        let exception: Value =
            serde_json::from_str(reply["body"]["exception"].as_str().unwrap()).unwrap();
        assert_eq!(exception["__exception__"], true);
        let reason = exception["exception_str"].as_str().unwrap();
        assert!(reason.contains("MessageExpiredError"), "{reason}");
        assert!(reason.contains(&dest.uid.to_string()), "{reason}");
        assert_eq!(
            IncomingMessage::parse(text).unwrap().header.kind,
            MessageKind::Response
        );
    }

    #[test]
    fn a_flat_request_expires_into_a_pickled_timeout_error_in_its_own_layout() {
        use crate::protocol::flat_message::tests::flat_text;
        let (src, dest, tag) = (entity(Role::User), entity(Role::Agent), Uuid::new_v4());
        let request =
            IncomingMessage::parse(flat_text(&src, &dest, "action-request", tag)).unwrap();
        let reply: Value =
            serde_json::from_str(&expired_reply(&request.header, 4.0).unwrap()).unwrap();
        assert_eq!(reply["kind"], "action-response");
        assert_eq!(reply["tag"], tag.to_string());
        let pickled = reply["exception"][1].as_str().unwrap();
        use base64::Engine;
        let pickle = base64::engine::general_purpose::STANDARD
            .decode(pickled)
            .unwrap();
        assert!(pickle.starts_with(b"\x80\x02cbuiltins\nTimeoutError\nX"));
        assert!(pickle.ends_with(b"\x85R."));
    }
}

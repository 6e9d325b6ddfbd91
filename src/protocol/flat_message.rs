//! academy-py 0.1.0's messages. They are flat: the routing fields (`tag`, `src`,
//! `dest`, `label`) sit at the top level next to the payload, and `kind` names the
//! message type ("ping-request", "action-response", …). That client tells requests
//! from responses by type (its `RequestMessage` and `ResponseMessage` unions), and
//! so does the exchange here; its own server accepted these six types and no other.
//!
//! Also the reply the exchange writes, in that layout, to a 0.1.0 request whose
//! destination is terminated.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entity::{EntityId, Role};
use super::message::{MessageHeader, MessageKind};

/// The message types of academy-py 0.1.0 (`academy.message`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum FlatKind {
    ActionRequest,
    ActionResponse,
    PingRequest,
    PingResponse,
    ShutdownRequest,
    ShutdownResponse,
}

/// The fields of a flat message the exchange reads; the rest stays unparsed.
#[derive(Deserialize)]
struct FlatMessage {
    src: EntityId,
    dest: EntityId,
    tag: Uuid,
    #[serde(default)]
    label: Option<Uuid>,
    kind: FlatKind,
    /// The action an action request calls: its reply must name it again.
    #[serde(default)]
    action: Option<String>,
}

/// A 0.1.0 request, as the exchange keeps it to answer it in its own layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlatRequest {
    Action { action: String },
    Ping,
    Shutdown,
}

/// The header of a flat message (`text`), or why it is not one.
pub(super) fn header(text: &str) -> Result<MessageHeader, String> {
    let message: FlatMessage = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let flat_request = match message.kind {
        FlatKind::ActionRequest => Some(FlatRequest::Action {
            action: message
                .action
                .ok_or("an action-request without an `action`")?,
        }),
        FlatKind::PingRequest => Some(FlatRequest::Ping),
        FlatKind::ShutdownRequest => Some(FlatRequest::Shutdown),
        FlatKind::ActionResponse | FlatKind::PingResponse | FlatKind::ShutdownResponse => None,
    };
    Ok(MessageHeader {
        src: message.src,
        dest: message.dest,
        tag: message.tag,
        label: message.label,
        kind: if flat_request.is_some() {
            MessageKind::Request
        } else {
            MessageKind::Response
        },
        protocol_version: None,
        flat_request,
    })
}

/// The response of the request's own type, from its (terminated) destination,
/// carrying `MailboxClosedError` as its exception: 0.1.0's handle raises that
/// exception from the call that sent the request (0.1.0's own server sent nothing,
/// and the caller waited forever).
///
/// None for a shutdown request: a 0.1.0 agent never answers one — it shuts down,
/// terminating its mailbox with the request still in flight — and its handles
/// ignore shutdown responses, so a reply would only reach a manager that has
/// already let go of the handle, which logs it as an error.
pub(super) fn terminated_reply(
    request: &MessageHeader,
    flat_request: &FlatRequest,
) -> Option<String> {
    error_reply(request, flat_request, &mailbox_closed_pickle(&request.dest))
}

/// The response of the request's own type, from its destination, carrying
/// `TimeoutError(<reason>)`: the request expired unread in the destination's
/// queue. None for a shutdown request, as [`terminated_reply`].
pub(super) fn expired_reply(
    request: &MessageHeader,
    flat_request: &FlatRequest,
    reason: &str,
) -> Option<String> {
    error_reply(
        request,
        flat_request,
        &exception_pickle("builtins\nTimeoutError", reason),
    )
}

/// A response of the request's own type carrying `pickle` as its exception.
fn error_reply(
    request: &MessageHeader,
    flat_request: &FlatRequest,
    pickle: &[u8],
) -> Option<String> {
    let exception = STANDARD.encode(pickle);
    let payload = match flat_request {
        FlatRequest::Action { action } => ReplyPayload::ActionResponse {
            action,
            result: (),
            exception: ("__pickled__", exception),
        },
        FlatRequest::Ping => ReplyPayload::PingResponse { exception },
        FlatRequest::Shutdown => return None,
    };
    let reply = FlatReply {
        tag: request.tag,
        src: &request.dest,
        dest: &request.src,
        label: request.label,
        payload,
    };
    // Serializing plain strings, ids and uuids cannot fail.
    serde_json::to_string(&reply).ok()
}

/// A 0.1.0 response as the exchange writes it. That client forbids unknown fields.
#[derive(Serialize)]
struct FlatReply<'a> {
    tag: Uuid,
    src: &'a EntityId,
    dest: &'a EntityId,
    label: Option<Uuid>,
    #[serde(flatten)]
    payload: ReplyPayload<'a>,
}

/// The fields of each response type the exchange writes; `exception` holds a
/// base64 pickle.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum ReplyPayload<'a> {
    /// `result` is null; unlike a ping's, its exception is tagged as pickled.
    ActionResponse {
        action: &'a str,
        result: (),
        exception: (&'static str, String),
    },
    PingResponse {
        exception: String,
    },
}

/// A pickle (protocol 2) of `academy.exception.MailboxClosedError(<mailbox as 0.1.0
/// prints an id>)`: 0.1.0 carries a response's exception only pickled. Opcodes:
/// PROTO 2, GLOBAL module/class, BINUNICODE (length-prefixed UTF-8, so any name goes
/// in as it is), TUPLE1, REDUCE, STOP. Unpickling calls the class with that one
/// argument, so the error reads as 0.1.0's own: "Mailbox for AgentID<x> has been
/// closed."
fn mailbox_closed_pickle(mailbox: &EntityId) -> Vec<u8> {
    exception_pickle(
        "academy.exception\nMailboxClosedError",
        &printed_id(mailbox),
    )
}

/// A pickle (protocol 2) of the exception class `global` (`module\nclass`)
/// called with the one string `argument`.
fn exception_pickle(global: &str, argument: &str) -> Vec<u8> {
    // A name from a message within the size limit always fits.
    let length = u32::try_from(argument.len()).unwrap_or(u32::MAX);
    let mut pickle = b"\x80\x02c".to_vec();
    pickle.extend_from_slice(global.as_bytes());
    pickle.extend_from_slice(b"\nX");
    pickle.extend_from_slice(&length.to_le_bytes());
    pickle.extend_from_slice(argument.as_bytes());
    pickle.extend_from_slice(b"\x85R.");
    pickle
}

/// `str()` of a 0.1.0 id: `AgentID<name>`, or the first 8 characters of the uid
/// when it has no name.
fn printed_id(id: &EntityId) -> String {
    let class = match id.role {
        Role::Agent => "AgentID",
        Role::User | Role::Client => "ClientID",
    };
    let name = match &id.name {
        Some(name) => name.clone(),
        None => id.uid.to_string().chars().take(8).collect(),
    };
    format!("{class}<{name}>")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::message::tests::{entity, message_text};
    use crate::protocol::message::{terminated_reply, IncomingMessage};
    use serde_json::Value;

    /// A flat message as academy-py 0.1.0's `model_dump_json()` writes one, with a
    /// payload the exchange must leave alone.
    pub(crate) fn flat_text(src: &EntityId, dest: &EntityId, kind: &str, tag: Uuid) -> String {
        format!(
            r#"{{"tag":"{tag}","src":{},"dest":{},"label":null,"action":"add","args":"gASVBQAAAAAAAABLAUsChpQu","kwargs":"gAR9lC4=","kind":"{kind}"}}"#,
            serde_json::to_string(src).unwrap(),
            serde_json::to_string(dest).unwrap(),
        )
    }

    fn named(role: Role, name: &str) -> EntityId {
        EntityId {
            name: Some(name.into()),
            ..entity(role)
        }
    }

    #[test]
    fn each_0_1_message_type_is_a_request_or_a_response_by_its_kind() {
        let (src, dest) = (entity(Role::Client), entity(Role::Agent));
        for (kind, expected, flat_request) in [
            (
                "action-request",
                MessageKind::Request,
                Some(FlatRequest::Action {
                    action: "add".into(),
                }),
            ),
            (
                "ping-request",
                MessageKind::Request,
                Some(FlatRequest::Ping),
            ),
            (
                "shutdown-request",
                MessageKind::Request,
                Some(FlatRequest::Shutdown),
            ),
            ("action-response", MessageKind::Response, None),
            ("ping-response", MessageKind::Response, None),
            ("shutdown-response", MessageKind::Response, None),
        ] {
            let tag = Uuid::new_v4();
            let text = flat_text(&src, &dest, kind, tag);
            let message = IncomingMessage::parse(text.clone()).unwrap();
            assert_eq!(message.text, text, "{kind}");
            assert_eq!(message.header.kind, expected, "{kind}");
            assert_eq!(message.header.flat_request, flat_request, "{kind}");
            assert_eq!(message.header.src, src);
            assert_eq!(message.header.dest, dest);
            assert_eq!(message.header.tag, tag);
            assert_eq!(message.header.label, None);
        }
    }

    #[test]
    fn flat_messages_of_other_types_or_without_routing_fields_are_rejected() {
        let (src, dest) = (entity(Role::Client), entity(Role::Agent));
        let tag = Uuid::new_v4();
        for (text, reason) in [
            (
                flat_text(&src, &dest, "request", tag),
                "unknown variant `request`",
            ),
            (
                flat_text(&src, &dest, "hello-request", tag),
                "unknown variant",
            ),
            (
                flat_text(&src, &dest, "ping-request", tag).replace(r#""tag""#, r#""tug""#),
                "missing field `tag`",
            ),
            (
                flat_text(&src, &dest, "action-request", tag).replace(r#""action""#, r#""act""#),
                "an action-request without an `action`",
            ),
        ] {
            let error = IncomingMessage::parse(text).unwrap_err();
            assert!(error.contains(reason), "{error} lacks {reason}");
        }
    }

    #[test]
    fn the_closed_mailbox_error_is_a_pickle_of_0_1_s_exception_class() {
        // The bytes `pickletools.dis` reads as PROTO 2, GLOBAL 'academy.exception
        // MailboxClosedError', BINUNICODE 'AgentID<probe>', TUPLE1, REDUCE, STOP.
        assert_eq!(
            mailbox_closed_pickle(&named(Role::Agent, "probe")),
            b"\x80\x02cacademy.exception\nMailboxClosedError\nX\x0e\x00\x00\x00AgentID<probe>\x85R."
        );
        let unnamed = entity(Role::Client);
        let printed = format!("ClientID<{}>", &unnamed.uid.to_string()[..8]);
        let pickle = mailbox_closed_pickle(&unnamed);
        assert_eq!(pickle[40], b'X');
        assert_eq!(&pickle[41..45], &(printed.len() as u32).to_le_bytes());
        assert_eq!(&pickle[45..pickle.len() - 3], printed.as_bytes());
        // The length counts UTF-8 bytes, not characters.
        let pickle = mailbox_closed_pickle(&named(Role::Agent, "é"));
        assert_eq!(&pickle[41..45], &11u32.to_le_bytes());
    }

    fn reply_to(request: &str) -> (Value, IncomingMessage) {
        let header = IncomingMessage::parse(request.into()).unwrap().header;
        let reply = terminated_reply(&header).unwrap();
        (
            serde_json::from_str(&reply).unwrap(),
            IncomingMessage::parse(reply).unwrap(),
        )
    }

    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn a_0_1_ping_is_answered_in_its_layout_with_the_pickled_error() {
        let (src, dest, tag) = (
            entity(Role::Client),
            named(Role::Agent, "probe"),
            Uuid::new_v4(),
        );
        let (reply, parsed) = reply_to(&flat_text(&src, &dest, "ping-request", tag));
        assert_eq!(
            keys(&reply),
            ["dest", "exception", "kind", "label", "src", "tag"]
        );
        assert_eq!(reply["kind"], "ping-response");
        assert_eq!(reply["src"], serde_json::to_value(&dest).unwrap());
        assert_eq!(reply["dest"]["role"], "client");
        assert_eq!(reply["tag"], tag.to_string());
        assert_eq!(reply["label"], Value::Null);
        let pickle = STANDARD
            .decode(reply["exception"].as_str().unwrap())
            .unwrap();
        assert_eq!(pickle, mailbox_closed_pickle(&dest));
        // And the exchange accepts it as the response that completes the request.
        assert_eq!(parsed.header.kind, MessageKind::Response);
        assert_eq!(parsed.header.tag, tag);
        assert_eq!(parsed.header.dest, src);
    }

    #[test]
    fn a_0_1_action_is_answered_with_its_action_and_a_tagged_pickle() {
        let (src, dest, tag) = (entity(Role::Client), entity(Role::Agent), Uuid::new_v4());
        let (reply, parsed) = reply_to(&flat_text(&src, &dest, "action-request", tag));
        assert_eq!(
            keys(&reply),
            [
                "action",
                "dest",
                "exception",
                "kind",
                "label",
                "result",
                "src",
                "tag"
            ]
        );
        assert_eq!(reply["kind"], "action-response");
        assert_eq!(reply["action"], "add");
        assert_eq!(reply["result"], Value::Null);
        assert_eq!(reply["exception"][0], "__pickled__");
        let pickle = STANDARD
            .decode(reply["exception"][1].as_str().unwrap())
            .unwrap();
        assert_eq!(pickle, mailbox_closed_pickle(&dest));
        assert_eq!(parsed.header.kind, MessageKind::Response);
    }

    #[test]
    fn a_0_1_shutdown_is_kept_in_flight_but_never_answered() {
        let (src, dest, tag) = (entity(Role::Client), entity(Role::Agent), Uuid::new_v4());
        let request = flat_text(&src, &dest, "shutdown-request", tag);
        let header = IncomingMessage::parse(request).unwrap().header;
        assert_eq!(header.kind, MessageKind::Request);
        assert_eq!(terminated_reply(&header), None);
    }

    #[test]
    fn a_header_body_request_is_still_answered_in_its_own_layout() {
        let (src, dest, tag) = (entity(Role::User), entity(Role::Agent), Uuid::new_v4());
        let (reply, _) = reply_to(&message_text(&src, &dest, "request", tag));
        assert_eq!(keys(&reply), ["body", "header"]);
        assert_eq!(reply["body"]["kind"], "academy-error-response");
    }
}

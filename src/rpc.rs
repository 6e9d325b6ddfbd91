//! The calls the Worker (and a mailbox's follow-ups) make on Durable Objects, and
//! their answers. Each kind of call is its own type with its own reply type
//! ([`ObjectCall`]); it travels by RPC as JSON, through the `rpc` method of the
//! object classes in `src/js/entry.mjs`, with a message's text beside it rather
//! than escaped inside the JSON. Failures travel as [`ExchangeError`] so the
//! Worker maps every error to HTTP in one place.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::mailbox::MailboxStatus;
use crate::core::permission::Identity;
use crate::core::stats::Stats;
use crate::protocol::entity::EntityId;
use crate::protocol::error::ExchangeError;
use crate::protocol::message::MessageHeader;
use crate::store::DirectoryEntry;

/// One kind of call on an object: the argument is the implementing type.
pub trait ObjectCall: Serialize + DeserializeOwned {
    /// Names the call for the object's dispatch; unique per object class.
    const KIND: &'static str;
    /// What the object answers when the call succeeds.
    type Reply: Serialize + DeserializeOwned;

    /// Text that travels beside the JSON, verbatim.
    fn text(&self) -> Option<&str> {
        None
    }

    /// Puts back the text that travelled beside the JSON.
    fn with_text(self, _text: Option<String>) -> Result<Self, ExchangeError> {
        Ok(self)
    }
}

/// Calls on a mailbox's object that may leave work owed to other objects
/// (terminate replies, discovery entries), which the object then carries out
/// before answering. A repeated create or terminate carries out what an earlier
/// one left owed.
pub trait MailboxCall: ObjectCall {
    const MAY_OWE_FOLLOW_UPS: bool = false;
}

macro_rules! object_calls {
    ($($call:ident => $kind:literal, $reply:ty;)*) => {$(
        impl ObjectCall for $call {
            const KIND: &'static str = $kind;
            type Reply = $reply;
        }
    )*};
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Create {
    pub caller: Identity,
    pub mailbox: EntityId,
    pub agent: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub caller: Identity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Terminate {
    pub caller: Identity,
}

/// Queue a message, whose header the Worker parsed; its exact text travels
/// beside the JSON. `caller` is `None` for the exchange's own terminate and
/// expiry replies. `from_here`: the sender is this same mailbox, so its
/// [`NoteSent`] bookkeeping is done in this call, saving a hop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deliver {
    pub caller: Option<Identity>,
    pub header: MessageHeader,
    #[serde(skip)]
    pub text: String,
    pub from_here: bool,
    /// How long delivered messages are kept for replay (`REPLAY_WINDOW_S`).
    pub replay_window_s: f64,
    /// With `from_here`, the send also stamps the sender's heartbeat
    /// ([`crate::protocol::request::stamps_heartbeat`]).
    pub stamps_heartbeat: bool,
}

/// Sender-side bookkeeping after a delivery (outgoing / completed counts).
/// `heartbeat`: the caller, when the send also stamps the sender's heartbeat
/// ([`crate::protocol::request::stamps_heartbeat`]); done in the same write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteSent {
    pub header: MessageHeader,
    pub heartbeat: Option<Identity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub caller: Identity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatAge {
    pub caller: Identity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetStats {
    pub caller: Identity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub caller: Identity,
    pub group_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListShares {
    pub caller: Identity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unshare {
    pub caller: Identity,
    pub group_id: String,
}

object_calls! {
    Create => "create", ();
    Status => "status", MailboxStatus;
    Terminate => "terminate", ();
    NoteSent => "note_sent", ();
    Heartbeat => "heartbeat", ();
    HeartbeatAge => "heartbeat_age", Option<f64>;
    GetStats => "stats", Stats;
    Share => "share", ();
    ListShares => "list_shares", Vec<String>;
    Unshare => "unshare", ();
}

impl ObjectCall for Deliver {
    const KIND: &'static str = "deliver";
    type Reply = ();

    fn text(&self) -> Option<&str> {
        Some(&self.text)
    }

    fn with_text(self, text: Option<String>) -> Result<Self, ExchangeError> {
        let text = text.ok_or_else(|| ExchangeError::internal("deliver without a text"))?;
        Ok(Self { text, ..self })
    }
}

impl MailboxCall for Create {
    const MAY_OWE_FOLLOW_UPS: bool = true;
}
impl MailboxCall for Terminate {
    const MAY_OWE_FOLLOW_UPS: bool = true;
}
impl MailboxCall for Share {
    const MAY_OWE_FOLLOW_UPS: bool = true;
}
impl MailboxCall for Unshare {
    const MAY_OWE_FOLLOW_UPS: bool = true;
}
impl MailboxCall for Status {}
impl MailboxCall for Deliver {}
impl MailboxCall for NoteSent {}
impl MailboxCall for Heartbeat {}
impl MailboxCall for HeartbeatAge {}
impl MailboxCall for GetStats {}
impl MailboxCall for ListShares {}

/// List an agent in one class's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    pub entry: DirectoryEntry,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unregister {
    pub uid: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discover {
    pub caller: Identity,
    pub allow_subclasses: bool,
}

object_calls! {
    Register => "register", ();
    Unregister => "unregister", ();
    Discover => "discover", Vec<Uuid>;
}

/// An object's answer to one call, with what the call cost there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer<R> {
    pub outcome: Result<R, ExchangeError>,
    pub costs: CallCosts,
}

/// What one call cost at the object, for the Worker's cost headers and log line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallCosts {
    /// SQLite rows the call wrote.
    pub rows_written: u64,
    /// Object calls the object made for it (its follow-ups): they count as the
    /// caller's.
    pub object_calls: u64,
    /// About the mailbox object instance that answered (absent for directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceReport>,
}

/// A mailbox object instance, as the benchmark watches it across calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// Drawn when the instance was constructed: a change means it slept.
    pub boot_id: String,
    /// SQLite rows its isolate has written so far: the difference between two
    /// answers counts what happened in between, including work no answer
    /// reports (a listen stream's confirmations).
    pub isolate_rows_written: u64,
    /// SQLite rows this object instance has written so far (alarms set
    /// included): between two answers of the same instance, what happened in
    /// this object alone, including writes no answer reports (a sender's
    /// counts written by its timer).
    pub object_rows_written: u64,
    /// Mailbox object instances its isolate has constructed so far: between two
    /// answers, how often objects woke from hibernation or eviction.
    pub isolate_objects_constructed: u64,
}

/// A listen stream or long poll asking a mailbox object for messages. Sent as a
/// WebSocket upgrade request (JSON in the URL's `call` parameter: an upgrade is a
/// GET, which has no body). The object answers with a socket that it accepts with
/// the hibernation API or, when it can answer at once (an error, or a long poll
/// with a message queued), with an [`Answer`] of a message's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    pub caller: Identity,
    /// Subscribing also stamps the caller's heartbeat
    /// ([`crate::protocol::request::stamps_heartbeat`]).
    pub stamps_heartbeat: bool,
    pub wait: Wait,
    /// How long delivered messages are kept for replay (`REPLAY_WINDOW_S`).
    pub replay_window_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// `GET /mailbox/listen`; `last_event_id` from the client's `Last-Event-Id`.
    Stream { last_event_id: Option<u64> },
    /// `GET /message`.
    Poll,
}

/// What the mailbox object sends the Worker over a subscriber socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Pushed {
    /// A message for the client; the Worker confirms it once written.
    Message { seq: u64, text: String },
    /// The subscription is over (terminated, access lost, superseded).
    End(ExchangeError),
}

impl Pushed {
    /// `m<seq>\n<text>` or `e<error JSON>`: the message text travels as is, not
    /// escaped inside JSON.
    pub fn encode(&self) -> String {
        match self {
            Pushed::Message { seq, text } => format!("m{seq}\n{text}"),
            Pushed::End(error) => match serde_json::to_string(error) {
                Ok(json) => format!("e{json}"),
                // Unreachable for these plain enums; an empty end still ends.
                Err(_) => "e".to_owned(),
            },
        }
    }

    pub fn decode(frame: &str) -> Result<Self, String> {
        if let Some(rest) = frame.strip_prefix('m') {
            let (seq, text) = rest.split_once('\n').ok_or("message frame without text")?;
            let seq = seq
                .parse()
                .map_err(|_| format!("bad sequence number {seq:?}"))?;
            return Ok(Pushed::Message {
                seq,
                text: text.to_owned(),
            });
        }
        if let Some(json) = frame.strip_prefix('e') {
            return serde_json::from_str(json)
                .map(Pushed::End)
                .map_err(|e| format!("end frame: {e}"));
        }
        let start: String = frame.chars().take(20).collect();
        Err(format!("unknown frame {start:?}"))
    }
}

/// The Worker's confirmation that it wrote message `seq` to its client.
pub fn confirmation(seq: u64) -> String {
    format!("c{seq}")
}

/// Reads a [`confirmation`]; `None` for anything else.
pub fn parse_confirmation(frame: &str) -> Option<u64> {
    frame.strip_prefix('c')?.parse().ok()
}

/// Keep-alive the Worker sends over an idle socket; the runtime answers [`PONG`]
/// itself, without waking a hibernating object.
pub const PING: &str = "ping";
pub const PONG: &str = "pong";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_outcomes_survive_json() {
        let call = Subscribe {
            caller: Identity::anonymous(),
            stamps_heartbeat: true,
            wait: Wait::Stream {
                last_event_id: Some(7),
            },
            replay_window_s: 60.0,
        };
        let json = serde_json::to_string(&call).unwrap();
        assert_eq!(serde_json::from_str::<Subscribe>(&json).unwrap(), call);
        let answer = Answer::<String> {
            outcome: Ok("{\"x\": 1}".into()),
            costs: CallCosts {
                rows_written: 2,
                object_calls: 1,
                instance: None,
            },
        };
        let json = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            serde_json::from_str::<Answer<String>>(&json).unwrap(),
            answer
        );
        let failed = Answer::<()> {
            outcome: Err(ExchangeError::Terminated),
            costs: CallCosts::default(),
        };
        let json = serde_json::to_string(&failed).unwrap();
        assert_eq!(serde_json::from_str::<Answer<()>>(&json).unwrap(), failed);
    }

    #[test]
    fn a_delivery_carries_its_text_beside_the_json_not_in_it() {
        let header: MessageHeader = serde_json::from_value(serde_json::json!({
            "src": {"uid": Uuid::nil(), "role": "user"},
            "dest": {"uid": Uuid::nil(), "role": "user"},
            "tag": Uuid::nil(),
            "kind": "request",
        }))
        .unwrap();
        let deliver = Deliver {
            caller: None,
            header,
            text: "{\"secret\": 1}".into(),
            from_here: false,
            replay_window_s: 60.0,
            stamps_heartbeat: false,
        };
        let json = serde_json::to_string(&deliver).unwrap();
        assert!(!json.contains("secret"), "{json}");
        let back: Deliver = serde_json::from_str(&json).unwrap();
        assert!(back.clone().with_text(None).is_err());
        let back = back.with_text(deliver.text().map(str::to_owned)).unwrap();
        assert_eq!(back, deliver);
    }

    #[test]
    fn pushed_frames_round_trip_with_the_text_verbatim() {
        for pushed in [
            Pushed::Message {
                seq: 1_763_700_000_123_000,
                text: "{\"a\":\n \"b\"}".into(),
            },
            Pushed::End(ExchangeError::Terminated),
            Pushed::End(ExchangeError::Forbidden),
        ] {
            assert_eq!(Pushed::decode(&pushed.encode()), Ok(pushed));
        }
        for bad in ["x", "m12", "mnope\n{}", "e{"] {
            assert!(Pushed::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn confirmations_round_trip_and_nothing_else_parses_as_one() {
        assert_eq!(parse_confirmation(&confirmation(42)), Some(42));
        for other in [PING, PONG, "c", "c-1", "m1\n{}"] {
            assert_eq!(parse_confirmation(other), None);
        }
    }
}

//! The calls the Worker makes on Durable Objects, and their answers. Sent as JSON in
//! the body of an internal POST (a stub cannot be sent a GET with a body). Failures
//! travel as [`ExchangeError`] so the Worker maps every error to HTTP in one place.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::mailbox::MailboxStatus;
use crate::core::permission::Identity;
use crate::core::stats::Stats;
use crate::protocol::error::ExchangeError;
use crate::protocol::message::MessageHeader;
use crate::store::DirectoryEntry;

/// An operation on one mailbox's object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MailboxCall {
    Create {
        caller: Identity,
        mailbox: crate::protocol::entity::EntityId,
        agent: Option<Vec<String>>,
    },
    Status {
        caller: Identity,
    },
    Terminate {
        caller: Identity,
    },
    /// Queue `message` (its exact text). `caller` is `None` for the exchange's own
    /// terminate replies. `from_here`: the sender is this same mailbox, so its
    /// [`MailboxCall::NoteSent`] bookkeeping is done in this call, saving a hop.
    ///
    /// `replay_window_s`: how long delivered messages are kept for replay.
    /// `stamps_heartbeat`: with `from_here`, the send also stamps the sender's
    /// heartbeat ([`crate::protocol::request::stamps_heartbeat`]).
    Deliver {
        caller: Option<Identity>,
        message: String,
        from_here: bool,
        replay_window_s: f64,
        stamps_heartbeat: bool,
    },
    /// Sender-side bookkeeping after a delivery (outgoing / completed counts).
    /// `heartbeat`: the caller, when the send also stamps the sender's heartbeat
    /// ([`crate::protocol::request::stamps_heartbeat`]); done in the same write.
    NoteSent {
        header: MessageHeader,
        heartbeat: Option<Identity>,
    },
    Heartbeat {
        caller: Identity,
    },
    HeartbeatAge {
        caller: Identity,
    },
    Stats {
        caller: Identity,
    },
    Share {
        caller: Identity,
        group_id: String,
    },
    ListShares {
        caller: Identity,
    },
    Unshare {
        caller: Identity,
        group_id: String,
    },
}

impl MailboxCall {
    /// Whether the call may leave work owed to other objects (terminate
    /// replies, discovery entries), which the object then carries out before
    /// answering. A repeated create or terminate carries out what an earlier
    /// one left owed.
    pub fn may_owe_follow_ups(&self) -> bool {
        matches!(
            self,
            MailboxCall::Create { .. }
                | MailboxCall::Terminate { .. }
                | MailboxCall::Share { .. }
                | MailboxCall::Unshare { .. }
        )
    }
}

/// A listen stream or long poll asking a mailbox object for messages. Sent as a
/// WebSocket upgrade request (JSON in the URL's `call` parameter: an upgrade is a
/// GET, which has no body). The object answers with a socket that it accepts with
/// the hibernation API or, when it can answer at once (an error, or a long poll
/// with a message queued), with an [`Outcome`].
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

/// An operation on one class name's discovery directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DirectoryCall {
    Register {
        entry: DirectoryEntry,
    },
    Unregister {
        uid: Uuid,
    },
    Discover {
        caller: Identity,
        allow_subclasses: bool,
    },
}

/// A successful answer from an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Done,
    Status(MailboxStatus),
    Message(String),
    HeartbeatAge(Option<f64>),
    Stats(Stats),
    Shares(Vec<String>),
    Agents(Vec<Uuid>),
}

/// What an object answers: a reply or the error to report.
pub type Outcome = Result<Reply, ExchangeError>;

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
        for outcome in [
            Ok(Reply::Message("{\"x\": 1}".into())),
            Err(ExchangeError::Terminated),
        ] {
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), outcome);
        }
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

//! The calls the Worker makes on Durable Objects, and their answers. Sent as JSON in
//! the body of an internal POST (a stub cannot be sent a GET with a body). Failures
//! travel as [`ExchangeError`] so the Worker maps every error to HTTP in one place.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::mailbox::{MailboxStatus, Registration, Termination};
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
    Deliver {
        caller: Option<Identity>,
        message: String,
        from_here: bool,
    },
    /// Sender-side bookkeeping after a delivery (outgoing / completed counts).
    NoteSent {
        header: MessageHeader,
    },
    Receive {
        caller: Identity,
        timeout_s: f64,
    },
    /// Answered with an SSE stream rather than a [`Reply`].
    Listen {
        caller: Identity,
        timeout_s: f64,
        keepalive_s: f64,
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
    Registered(Option<Registration>),
    Status(MailboxStatus),
    Terminated(Termination),
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
        let call = MailboxCall::Receive {
            caller: Identity::anonymous(),
            timeout_s: 1.5,
        };
        let json = serde_json::to_string(&call).unwrap();
        assert_eq!(serde_json::from_str::<MailboxCall>(&json).unwrap(), call);
        for outcome in [
            Ok(Reply::Message("{\"x\": 1}".into())),
            Err(ExchangeError::Terminated),
        ] {
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), outcome);
        }
    }
}

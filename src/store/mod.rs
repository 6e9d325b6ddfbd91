//! The storage ports the core runs on: small synchronous traits, because a Durable
//! Object's SQLite calls are synchronous and run inside the object's input gate.
//! `memory` implements them for native tests; `edge::sqlite` for the Worker.

#[cfg(test)]
pub mod memory;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::protocol::entity::EntityId;
use crate::protocol::error::ExchangeError;
use crate::protocol::message::MessageHeader;

/// A storage failure, carried as text (it is logged, never shown to clients).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreError(pub String);

impl From<StoreError> for ExchangeError {
    fn from(error: StoreError) -> Self {
        ExchangeError::internal(format!("storage: {}", error.0))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The one row that says what a mailbox is, stored as JSON.
///
/// Compatibility, since stored records outlive the code that wrote them: a field
/// is never renamed or removed, and every field added after the first version
/// carries `#[serde(default)]`, so a record written by older code still reads;
/// fields this code does not know (written by newer code) are ignored. Every
/// field up to `outgoing` is from the first version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxRecord {
    pub id: EntityId,
    /// Client id of the creator.
    pub owner: String,
    /// The agent's class MRO for discovery; `None` for users.
    pub agent_mro: Option<Vec<String>>,
    pub created_at: f64,
    /// When terminated: the gravestone. Never cleared.
    pub terminated_at: Option<f64>,
    pub heartbeat_at: Option<f64>,
    /// Requests this mailbox has answered.
    pub completed: u64,
    /// Requests this mailbox has sent.
    pub outgoing: u64,
    /// When the mailbox was last used, as stored: a use rewrites it only once
    /// it is older than [`crate::core::expiry::Expiry::use_slack`], so uses
    /// cost no extra row write. `None` in records from before expiry: then the
    /// latest of creation, heartbeat and termination stands in.
    #[serde(default)]
    pub used_at: Option<f64>,
    /// When a message was last read, stored as lazily as `used_at` (with
    /// [`crate::core::expiry::Expiry::read_slack`]).
    #[serde(default)]
    pub read_at: Option<f64>,
    /// Set when the mailbox expired: it answers as missing while its
    /// follow-ups finish, then its storage is deleted.
    #[serde(default)]
    pub removed_at: Option<f64>,
}

/// Work a mailbox owes other objects, stored in the same write as the change
/// that makes it owed, and done by the mailbox's object until it succeeds (so a
/// crash between the two cannot lose it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FollowUp {
    /// Queue `text`, an error reply the exchange writes, in `to`'s mailbox.
    Reply { to: EntityId, text: String },
    /// Bring the mailbox's discovery entries in line with its record (listed
    /// with its current shares while an active agent, else unlisted).
    SyncDirectory,
}

/// A queued message and its position in the mailbox's sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedMessage {
    /// Strictly increasing per mailbox, never reused; the SSE event id.
    pub seq: u64,
    pub text: String,
}

/// Which delivered messages a reconnecting stream gets again: those after the
/// last event id it saw, confirmed no earlier than the start of the replay window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    pub after: u64,
    pub since: f64,
}

/// The sequence number of a message pushed at `now` (seconds) after `last`: the
/// larger of `last + 1` and `now` in microseconds.
///
/// Tying the sequence to the clock keeps it from going back when a store forgets
/// `last` (an object restarted with an empty queue starts again from 0) without
/// writing a counter row on every push. A number could only be reused if a mailbox
/// had taken, on average, more than a thousand messages per millisecond (the
/// clock's resolution) over its whole life before the restart. The numbers stay
/// below 2^53 (exact in JSON and JavaScript) until the year 2255.
pub fn next_seq(last: u64, now: f64) -> u64 {
    (last + 1).max((now * 1e6).round() as u64)
}

/// Everything one mailbox keeps.
pub trait MailboxStore {
    fn load(&self) -> StoreResult<Option<MailboxRecord>>;
    fn save(&mut self, record: &MailboxRecord) -> StoreResult<()>;

    fn shares(&self) -> StoreResult<Vec<String>>;
    fn add_share(&mut self, group_id: &str) -> StoreResult<()>;
    fn remove_share(&mut self, group_id: &str) -> StoreResult<()>;

    /// Appends a message; returns its sequence number. If the oldest stored
    /// message was delivered before `recycle_before` (out of the replay window),
    /// the new message takes over its row: one row written, where an insert now
    /// and a delete later would write two.
    fn push(&mut self, text: &str, now: f64, recycle_before: f64) -> StoreResult<u64>;
    /// At most `limit` messages in sequence order: every undelivered one and, with
    /// `replay`, the delivered ones it asks for.
    fn deliverable(&self, replay: Option<Replay>, limit: usize) -> StoreResult<Vec<QueuedMessage>>;
    /// A stream confirmed the message: it stops being queued and is kept (for
    /// replay) until its row is recycled.
    fn mark_delivered(&mut self, seq: u64, now: f64) -> StoreResult<()>;
    fn remove(&mut self, seq: u64) -> StoreResult<()>;
    /// Messages not delivered yet.
    fn queued(&self) -> StoreResult<u64>;
    /// When the oldest message not delivered yet arrived.
    fn oldest_unread_at(&self) -> StoreResult<Option<f64>>;
    /// Empties the queue (delivered messages kept for replay too); returns the
    /// texts of those not delivered yet, in order.
    fn take_queue(&mut self) -> StoreResult<Vec<String>>;

    /// Records a request sent to this mailbox and not yet answered.
    fn add_in_flight(&mut self, header: &MessageHeader) -> StoreResult<()>;
    /// Forgets an in-flight request; `true` if it was there.
    fn complete_in_flight(&mut self, tag: Uuid) -> StoreResult<bool>;
    fn in_flight(&self) -> StoreResult<u64>;
    /// Removes and returns every in-flight request.
    fn take_in_flight(&mut self) -> StoreResult<Vec<MessageHeader>>;

    fn add_follow_up(&mut self, follow_up: &FollowUp) -> StoreResult<()>;
    /// Follow-ups not done yet, oldest first, each with its id.
    fn follow_ups(&self) -> StoreResult<Vec<(u64, FollowUp)>>;
    fn remove_follow_up(&mut self, id: u64) -> StoreResult<()>;
}

/// An agent as listed in one class's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    pub uid: Uuid,
    pub owner: String,
    /// The class is the agent's own (MRO[0]), not a base class.
    pub exact: bool,
    /// Groups the agent's mailbox is shared with (kept in step by share/unshare).
    pub shares: Vec<String>,
}

/// One class name's directory: the agents whose MRO contains it.
pub trait DirectoryStore {
    /// Adds the entry, or updates it if its uid is listed already (keeping its
    /// place in registration order).
    fn upsert(&mut self, entry: &DirectoryEntry) -> StoreResult<()>;
    fn remove(&mut self, uid: Uuid) -> StoreResult<()>;
    /// Entries in registration order; only exact ones if `exact_only`.
    fn list(&self, exact_only: bool) -> StoreResult<Vec<DirectoryEntry>>;
}

#[cfg(test)]
mod tests {
    use super::next_seq;

    #[test]
    fn sequence_numbers_follow_the_clock_and_never_repeat_within_a_millisecond() {
        let now = 1_763_700_000.123;
        let first = next_seq(0, now);
        assert_eq!(first, 1_763_700_000_123_000);
        let second = next_seq(first, now);
        assert_eq!(second, first + 1);
        assert_eq!(next_seq(second, now + 0.001), first + 1_000);
    }

    #[test]
    fn a_store_that_forgot_its_last_number_still_goes_forward() {
        let before_restart = (0..500).fold(next_seq(0, 100.0), |last, _| next_seq(last, 100.0));
        assert!(next_seq(0, 100.001) > before_restart);
    }

    #[test]
    fn a_record_written_by_the_first_version_still_reads_and_unknown_fields_are_ignored() {
        use super::MailboxRecord;
        // Exactly as the first version stored it (a terminated agent).
        let first = r#"{"id":{"uid":"5f0c5f7e-2a43-4c5e-9e52-3b0d8f1f6a10","name":"echo","role":"agent"},"owner":"alice","agent_mro":["m.Echo","academy.agent.Agent"],"created_at":1763700000.5,"terminated_at":1763700100.25,"heartbeat_at":null,"completed":3,"outgoing":2}"#;
        let record: MailboxRecord = serde_json::from_str(first).unwrap();
        assert_eq!(record.owner, "alice");
        assert_eq!(record.terminated_at, Some(1_763_700_100.25));
        assert_eq!((record.completed, record.outgoing), (3, 2));
        // What this version writes reads back the same.
        let again = serde_json::to_string(&record).unwrap();
        assert_eq!(
            serde_json::from_str::<MailboxRecord>(&again).unwrap(),
            record
        );
        // A field from a newer version is ignored, not an error.
        let newer = first.replace(r#""outgoing":2"#, r#""outgoing":2,"expires_at":9.5"#);
        assert_eq!(
            serde_json::from_str::<MailboxRecord>(&newer).unwrap(),
            record
        );
    }

    #[test]
    fn sequence_numbers_stay_exact_in_javascript_for_centuries() {
        let year_2250 = 8_835_000_000.0;
        assert!(next_seq(0, year_2250) < 1 << 53);
    }
}

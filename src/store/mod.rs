//! The storage ports the core runs on: small synchronous traits, because a Durable
//! Object's SQLite calls are synchronous and run inside the object's input gate.
//! `memory` implements them for native tests; `edge::sqlite` for the Worker.

#[cfg(test)]
pub mod memory;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::protocol::entity::EntityId;
use crate::protocol::error::ExchangeError;
use crate::protocol::message::{IncomingMessage, MessageHeader, MessageKind};

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

/// Where the requests in flight that a version before the fold kept in a table
/// of their own go in the messages' rows: [`fold_in_flight`]'s answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InFlightFold {
    /// A stored message that is the request itself carries it: `(seq, tag,
    /// header)`. Its queue state is its own, so a queued request still expires
    /// with a reply and a read one is kept, as before.
    pub carried: Vec<(u64, String, String)>,
    /// A request no stored message is (it was read with `GET /message`, or its
    /// row was dropped) gets a placeholder row, taken: in flight, neither
    /// queued nor replayable. `(tag, header)`.
    pub placeholders: Vec<(String, String)>,
}

/// Matches the old in-flight records (`(tag, header JSON)`) with the stored
/// messages (`(seq, text)`, in sequence order): each goes to the first message
/// that is a request with its tag, else to a placeholder.
pub fn fold_in_flight(messages: &[(u64, String)], in_flight: &[(String, String)]) -> InFlightFold {
    let mut fold = InFlightFold::default();
    let mut carried_tags = Vec::new();
    for (seq, text) in messages {
        let Ok(message) = IncomingMessage::parse(text.clone()) else {
            continue;
        };
        let tag = message.header.tag.to_string();
        if message.header.kind != MessageKind::Request || carried_tags.contains(&tag) {
            continue;
        }
        if let Some((_, header)) = in_flight.iter().find(|(known, _)| *known == tag) {
            fold.carried.push((*seq, tag.clone(), header.clone()));
            carried_tags.push(tag);
        }
    }
    fold.placeholders = in_flight
        .iter()
        .filter(|(tag, _)| !carried_tags.contains(tag))
        .cloned()
        .collect();
    fold
}

/// How many of the oldest rows a push looks through for one to take over:
/// requests read and not answered yet sit there, and looking past all of them
/// would cost every push a walk through them. With more than this many at the
/// head, pushes insert until some are answered.
pub const RECYCLE_LOOKAHEAD: usize = 16;

/// Everything one mailbox keeps.
pub trait MailboxStore {
    /// The current record: the one last saved, or staged since.
    fn load(&self) -> StoreResult<Option<MailboxRecord>>;
    /// Writes `record` at `now` (so with it any change staged before).
    fn save(&mut self, record: &MailboxRecord, now: f64) -> StoreResult<()>;
    /// Makes `record` the current one without writing it: a change that may
    /// wait for the next [`Self::save`] (see `core::mailbox::RECORD_WRITE_INTERVAL_S`).
    /// It lives as long as this object instance: a crash loses it.
    fn stage(&mut self, record: &MailboxRecord);
    /// When this object instance last wrote the record (`None`: not yet).
    fn record_written_at(&self) -> Option<f64>;
    /// Whether the current record has a change staged and not written yet.
    fn record_staged(&self) -> bool;

    fn shares(&self) -> StoreResult<Vec<String>>;
    fn add_share(&mut self, group_id: &str) -> StoreResult<()>;
    fn remove_share(&mut self, group_id: &str) -> StoreResult<()>;

    /// Appends a message; returns its sequence number. A request (`request`: its
    /// header) is in flight from now until [`Self::complete_in_flight`], and its
    /// row carries that state (written in the same row write as the message);
    /// a request whose tag is in flight already takes its place. If the oldest
    /// stored message that is neither queued nor in flight, among the oldest
    /// [`RECYCLE_LOOKAHEAD`], was delivered before `recycle_before` (out of the
    /// replay window), the new message takes over its row: one row written,
    /// where an insert now and a delete later would write two. A row in flight
    /// is never taken over.
    fn push(
        &mut self,
        text: &str,
        request: Option<&MessageHeader>,
        now: f64,
        recycle_before: f64,
    ) -> StoreResult<u64>;
    /// At most `limit` messages in sequence order: every queued one and, with
    /// `replay`, the stream-delivered ones it asks for.
    fn deliverable(&self, replay: Option<Replay>, limit: usize) -> StoreResult<Vec<QueuedMessage>>;
    /// A stream confirmed the message: it stops being queued and is kept (for
    /// replay) until its row is recycled. A request stays in flight.
    fn mark_delivered(&mut self, seq: u64, now: f64) -> StoreResult<()>;
    /// A `GET /message` (or long poll) took the message: it is neither queued
    /// nor replayable any more. Its row is deleted, unless it is a request in
    /// flight: then the row is kept (taken) until the request is completed.
    fn take(&mut self, seq: u64) -> StoreResult<()>;
    /// Messages queued (not delivered nor taken yet).
    fn queued(&self) -> StoreResult<u64>;
    /// When the oldest queued message arrived.
    fn oldest_unread_at(&self) -> StoreResult<Option<f64>>;
    /// Empties the queue and what is kept for replay (expiry): requests in
    /// flight that were delivered or taken stay in flight (and are no longer
    /// replayable); queued requests in flight are dropped, no longer in flight,
    /// and returned, in order.
    fn drop_queue(&mut self) -> StoreResult<Vec<MessageHeader>>;
    /// Deletes every message (termination); returns every request that was in
    /// flight, queued or taken, in order.
    fn clear(&mut self) -> StoreResult<Vec<MessageHeader>>;

    /// The request `tag` was answered: it is no longer in flight (its row is
    /// deleted if it was taken, since nothing needs it any more); `true` if it
    /// was in flight.
    fn complete_in_flight(&mut self, tag: Uuid) -> StoreResult<bool>;
    /// Requests in flight: queued, delivered or taken, and not answered.
    fn in_flight(&self) -> StoreResult<u64>;

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
    fn old_in_flight_records_go_to_their_stored_request_or_to_a_placeholder() {
        use super::{fold_in_flight, InFlightFold};
        use crate::protocol::entity::Role;
        use crate::protocol::flat_message::tests::flat_text;
        use crate::protocol::message::tests::{entity, message_text};
        use uuid::Uuid;
        let (user, agent) = (entity(Role::User), entity(Role::Agent));
        let [queued, flat, read, answered] = [(); 4].map(|_| Uuid::new_v4());
        let messages = vec![
            // A response with a request's tag is not that request.
            (1, message_text(&agent, &user, "response", queued)),
            (2, message_text(&user, &agent, "request", queued)),
            (3, flat_text(&user, &agent, "action-request", flat)),
            // The same request sent twice: the record goes to the first.
            (4, message_text(&user, &agent, "request", queued)),
            (5, message_text(&user, &agent, "request", answered)),
        ];
        let record = |tag: Uuid| (tag.to_string(), format!("header of {tag}"));
        let in_flight = vec![record(read), record(queued), record(flat)];
        let carried = |seq, tag: Uuid| (seq, record(tag).0, record(tag).1);
        assert_eq!(
            fold_in_flight(&messages, &in_flight),
            InFlightFold {
                carried: vec![carried(2, queued), carried(3, flat)],
                placeholders: vec![record(read)],
            }
        );
    }

    #[test]
    fn sequence_numbers_stay_exact_in_javascript_for_centuries() {
        let year_2250 = 8_835_000_000.0;
        assert!(next_seq(0, year_2250) < 1 << 53);
    }
}

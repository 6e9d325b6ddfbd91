//! One mailbox's state machine: create, terminate (gravestone), deliver, take and
//! remove, heartbeats, shares, stats and expiry — the rules of upstream's
//! `MailboxBackend`, over a [`MailboxStore`].
//!
//! Work owed to other objects (terminate replies, discovery entries) is stored
//! as [`FollowUp`]s in the same write as the change that owes it; the mailbox's
//! object does it ([`Mailbox::directory_sync`] says what discovery must show).
//! Listen streams and long polls that wait for messages are in [`super::listen`].

use std::cell::Cell;

use serde::{Deserialize, Serialize};

use super::expiry::{note_read, note_use, Expiry, FOLLOW_UP_RETRY_S};
use super::permission::{may_access, may_manage_shares, may_share_with, Identity};
use super::stats::Stats;
use crate::protocol::entity::EntityId;
use crate::protocol::error::ExchangeError;
use crate::protocol::message::{
    expired_reply, terminated_reply, IncomingMessage, MessageHeader, MessageKind,
};
use crate::store::{FollowUp, MailboxRecord, MailboxStore, QueuedMessage};

type Result<T> = std::result::Result<T, ExchangeError>;

/// The record is written at most once per this many seconds for changes that
/// only count (outgoing and completed requests, with the heartbeat stamp an
/// academy-py 0.5 send makes): one
/// that comes sooner after the last write is staged, visible at once to every
/// call, and written by the next write or this long after the last one (the
/// object calls [`Mailbox::write_staged`]). A message's path then writes no record row
/// while its sender is busy; the price is that a crash of the object loses the
/// counts and stamps of at most this long. Short, so the object is not kept
/// from hibernating for long.
pub const RECORD_WRITE_INTERVAL_S: f64 = 1.0;

/// When a mailbox's object must call [`Mailbox::write_staged`]: a change to
/// the record is staged, due [`RECORD_WRITE_INTERVAL_S`] after its last write.
pub fn staged_write_due(store: &impl MailboxStore) -> Option<f64> {
    store.record_staged().then(|| {
        store
            .record_written_at()
            .map_or(0.0, |written| written + RECORD_WRITE_INTERVAL_S)
    })
}

/// A mailbox's lifecycle state, as `GET /mailbox` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MailboxStatus {
    Missing,
    Active,
    Terminated,
}

/// `GET /mailbox`'s answer. academy-py 0.5 and 1.0 read `status`; 0.1.0's client
/// reads only `exists`, which its server set for a closed mailbox too, so it holds
/// for every mailbox ever created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusAnswer {
    pub status: MailboxStatus,
    pub exists: bool,
}

impl From<MailboxStatus> for StatusAnswer {
    fn from(status: MailboxStatus) -> Self {
        Self {
            status,
            exists: status != MailboxStatus::Missing,
        }
    }
}

/// What discovery must learn about an agent mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub id: EntityId,
    pub owner: String,
    pub agent_mro: Vec<String>,
    /// Groups the mailbox is shared with: discovery shows the agent to them too.
    pub shares: Vec<String>,
}

/// What a mailbox's discovery entries must be now.
#[derive(Debug, Clone, PartialEq)]
pub enum DirectorySync {
    /// Not an agent (or nothing stored): no entries.
    Nothing,
    /// An active agent: listed under every class of its MRO.
    List(Registration),
    /// A terminated or removed agent: listed nowhere.
    Unlist(Registration),
}

/// What an expiry alarm found to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlarmWork {
    /// Nothing is stored: no alarm is needed.
    Nothing,
    /// Due work is done (a dropped queue's replies are stored as follow-ups);
    /// the next alarm rings at this time.
    Next(f64),
    /// The mailbox expired: it answers as missing; once its follow-ups are done
    /// its storage is to be deleted.
    Remove,
}

pub struct Mailbox<S> {
    store: S,
    expiry: Expiry,
    /// The time by which the object's alarm must ring, as this object's calls
    /// so far require (the earliest of them); `None` if they require none.
    alarm_by: Cell<Option<f64>>,
}

impl<S: MailboxStore> Mailbox<S> {
    pub fn new(store: S, expiry: Expiry) -> Self {
        Self {
            store,
            expiry,
            alarm_by: Cell::new(None),
        }
    }

    pub(super) fn store(&self) -> &S {
        &self.store
    }

    pub(super) fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The time by which the object's alarm must ring after the calls made on
    /// this value: an arrival's queue expiry, a follow-up's retry, the
    /// mailbox's removal.
    pub fn alarm_by(&self) -> Option<f64> {
        self.alarm_by.get()
    }

    /// Writes the record if a change to it is staged ([`staged_write_due`]).
    pub fn write_staged(&mut self, now: f64) -> Result<()> {
        if self.store.record_staged() {
            if let Some(record) = self.store.load()? {
                self.store.save(&record, now)?;
            }
        }
        Ok(())
    }

    fn ring_by(&self, at: f64) {
        let earliest = self.alarm_by.get().map_or(at, |known| known.min(at));
        self.alarm_by.set(Some(earliest));
    }

    /// Creates the mailbox if it does not exist. Idempotent; a gravestone stays a
    /// gravestone. An agent's discovery entries are owed as a follow-up.
    pub fn create(
        &mut self,
        caller: &Identity,
        id: &EntityId,
        agent_mro: Option<Vec<String>>,
        now: f64,
    ) -> Result<()> {
        match self.store.load()? {
            Some(record) if record.removed_at.is_none() => {
                self.check_access(caller, &record)?;
                self.used(record, now)?;
                return Ok(());
            }
            // Created again while its expired self is being removed: nothing
            // of that one carries over.
            Some(_) => {
                for group in self.store.shares()? {
                    self.store.remove_share(&group)?;
                }
            }
            None => {}
        }
        let record = MailboxRecord {
            id: id.clone(),
            owner: caller.client_id.clone(),
            agent_mro: agent_mro.filter(|_| id.role == crate::protocol::entity::Role::Agent),
            created_at: now,
            terminated_at: None,
            heartbeat_at: None,
            completed: 0,
            outgoing: 0,
            used_at: Some(now),
            read_at: None,
            removed_at: None,
        };
        self.store.save(&record, now)?;
        if record.agent_mro.is_some() {
            self.owe(&FollowUp::SyncDirectory, now)?;
        }
        self.ring_by(self.expiry.removal_due(&record));
        Ok(())
    }

    /// Missing needs no permission (as upstream); otherwise the caller needs access.
    pub fn status(&mut self, caller: &Identity, now: f64) -> Result<MailboxStatus> {
        let Some(record) = self.current()? else {
            return Ok(MailboxStatus::Missing);
        };
        self.check_access(caller, &record)?;
        let record = self.used(record, now)?;
        Ok(if record.terminated_at.is_some() {
            MailboxStatus::Terminated
        } else {
            MailboxStatus::Active
        })
    }

    /// Marks the gravestone, drops the queue and owes a reply to every request
    /// in flight (except academy-py 0.1.0's shutdown requests: see
    /// [`terminated_reply`]) and the removal of an agent's discovery entries.
    /// Idempotent, and a no-op for unknown mailboxes.
    pub fn terminate(&mut self, caller: &Identity, now: f64) -> Result<()> {
        let Some(mut record) = self.current()? else {
            return Ok(());
        };
        self.check_access(caller, &record)?;
        if record.terminated_at.is_some() {
            self.used(record, now)?;
            return Ok(());
        }
        self.close(&mut record, now)
    }

    /// Termination's changes, all in one write: the gravestone, the queue
    /// dropped, the follow-ups owed.
    fn close(&mut self, record: &mut MailboxRecord, now: f64) -> Result<()> {
        record.terminated_at = Some(now);
        self.save_with_use(record, now)?;
        for request in self.store.clear()? {
            if let Some(text) = terminated_reply(&request) {
                let to = request.src;
                self.owe(&FollowUp::Reply { to, text }, now)?;
            }
        }
        if record.agent_mro.is_some() {
            self.owe(&FollowUp::SyncDirectory, now)?;
        }
        Ok(())
    }

    /// Stores a follow-up; the alarm rings to retry it should the first try
    /// fail or never finish.
    fn owe(&mut self, follow_up: &FollowUp, now: f64) -> Result<()> {
        self.store.add_follow_up(follow_up)?;
        self.ring_by(now + FOLLOW_UP_RETRY_S);
        Ok(())
    }

    /// Queues a message sent to this mailbox. `caller` is `None` for replies the
    /// exchange itself writes (they need no permission). Requests are remembered as
    /// in flight until answered. A delivered message kept for replay longer than
    /// `replay_window_s` may give its row to this one.
    pub fn deliver(
        &mut self,
        caller: Option<&Identity>,
        message: &IncomingMessage,
        now: f64,
        replay_window_s: f64,
    ) -> Result<u64> {
        let record = self.current()?.ok_or(ExchangeError::UnknownMailbox)?;
        if let Some(caller) = caller {
            self.check_access(caller, &record)?;
        }
        if record.terminated_at.is_some() {
            return Err(ExchangeError::Terminated);
        }
        self.used(record, now)?;
        let request = Some(&message.header).filter(|header| header.kind == MessageKind::Request);
        let seq = self
            .store
            .push(&message.text, request, now, now - replay_window_s)?;
        self.ring_by(self.expiry.queue_due_for_arrival(now));
        Ok(seq)
    }

    /// Bookkeeping at the *sender's* mailbox once a message is queued at its
    /// destination: a request counts as outgoing; a response completes the request
    /// it answers. With `heartbeat_by` (the caller, for a request that stamps
    /// heartbeats: [`crate::protocol::request::stamps_heartbeat`]), the send also
    /// stamps the sender's heartbeat if it is active and the caller may act for
    /// it, in the same save as the counts. Silently nothing if the sender has no
    /// mailbox here.
    pub fn note_sent(
        &mut self,
        header: &MessageHeader,
        heartbeat_by: Option<&Identity>,
        now: f64,
    ) -> Result<()> {
        let Some(mut record) = self.current()? else {
            return Ok(());
        };
        let counted = match header.kind {
            MessageKind::Request => {
                record.outgoing += 1;
                true
            }
            MessageKind::Response => {
                let completed = self.store.complete_in_flight(header.tag)?;
                if completed {
                    record.completed += 1;
                }
                completed
            }
        };
        let stamped = match heartbeat_by {
            Some(caller)
                if record.terminated_at.is_none()
                    && may_access(caller, &record.owner, &self.store.shares()?) =>
            {
                record.heartbeat_at = Some(now);
                true
            }
            _ => false,
        };
        if !(counted || stamped) {
            self.used(record, now)?;
            return Ok(());
        }
        self.save_soon(&mut record, now)
    }

    /// Fails unless the mailbox exists, is active and the caller may read it:
    /// the check a waiting socket's messages pass before each push.
    pub fn ensure_active(&self, caller: &Identity) -> Result<()> {
        self.active(caller).map(drop)
    }

    /// A `GET /message` answered at once: takes and returns the oldest queued
    /// message that no socket holds (a request stays in flight) (`leased`); `None` if there is none.
    pub fn receive(
        &mut self,
        caller: &Identity,
        leased: &[u64],
        now: f64,
    ) -> Result<Option<QueuedMessage>> {
        let record = self.active(caller)?;
        let next = self
            .store
            .deliverable(None, leased.len() + 1)?
            .into_iter()
            .find(|message| !leased.contains(&message.seq));
        match &next {
            Some(message) => {
                self.store.take(message.seq)?;
                self.read(record, now)?;
            }
            None => {
                self.used(record, now)?;
            }
        }
        Ok(next)
    }

    pub fn heartbeat(&mut self, caller: &Identity, now: f64) -> Result<()> {
        let mut record = self.active(caller)?;
        record.heartbeat_at = Some(now);
        self.save_with_use(&mut record, now)
    }

    /// Seconds since the last heartbeat, `None` if there was none.
    pub fn heartbeat_age(&mut self, caller: &Identity, now: f64) -> Result<Option<f64>> {
        let record = self.active_record(caller, now)?;
        Ok(record.heartbeat_at.map(|stamp| (now - stamp).max(0.0)))
    }

    pub fn stats(&mut self, caller: &Identity, now: f64) -> Result<Stats> {
        let record = self.load(caller)?;
        let record = self.used(record, now)?;
        Ok(Stats::compute(
            self.store.queued()?,
            self.store.in_flight()?,
            record.completed,
            record.outgoing,
        ))
    }

    /// Shares with a group; the agent's discovery entries are owed the change.
    pub fn share(&mut self, caller: &Identity, group_id: &str, now: f64) -> Result<()> {
        let record = self.owned_record(caller, now)?;
        if !may_share_with(caller, &record.owner, group_id) {
            return Err(ExchangeError::Forbidden);
        }
        self.store.add_share(group_id)?;
        self.shares_changed(&record, now)
    }

    pub fn shares(&mut self, caller: &Identity, now: f64) -> Result<Vec<String>> {
        self.owned_record(caller, now)?;
        Ok(self.store.shares()?)
    }

    /// Removing a group the mailbox is not shared with is a no-op.
    pub fn unshare(&mut self, caller: &Identity, group_id: &str, now: f64) -> Result<()> {
        let record = self.owned_record(caller, now)?;
        self.store.remove_share(group_id)?;
        self.shares_changed(&record, now)
    }

    fn shares_changed(&mut self, record: &MailboxRecord, now: f64) -> Result<()> {
        if record.agent_mro.is_some() {
            self.owe(&FollowUp::SyncDirectory, now)?;
        }
        Ok(())
    }

    /// What this mailbox's discovery entries must be now (also after it was
    /// removed, until its storage is deleted).
    pub fn directory_sync(&self) -> Result<DirectorySync> {
        let Some(record) = self.store.load()? else {
            return Ok(DirectorySync::Nothing);
        };
        let Some(mro) = &record.agent_mro else {
            return Ok(DirectorySync::Nothing);
        };
        let registration = Registration {
            id: record.id.clone(),
            owner: record.owner.clone(),
            agent_mro: mro.clone(),
            shares: self.store.shares()?,
        };
        Ok(
            if record.terminated_at.is_none() && record.removed_at.is_none() {
                DirectorySync::List(registration)
            } else {
                DirectorySync::Unlist(registration)
            },
        )
    }

    /// Whether the mailbox expired and waits for its storage to be deleted.
    pub fn is_removed(&self) -> Result<bool> {
        Ok(self
            .store
            .load()?
            .is_some_and(|record| record.removed_at.is_some()))
    }

    /// The follow-ups still owed, oldest first, with their ids.
    pub fn follow_ups(&self) -> Result<Vec<(u64, FollowUp)>> {
        Ok(self.store.follow_ups()?)
    }

    /// A follow-up succeeded.
    pub fn follow_up_done(&mut self, id: u64) -> Result<()> {
        Ok(self.store.remove_follow_up(id)?)
    }

    /// The expiry alarm rang at `now`: drops a queue nobody read in time
    /// (owing each dropped request's sender an error reply), or removes a
    /// mailbox nobody used in time (an active one is first terminated, so its
    /// requesters and discovery learn of it). Idempotent: a repeat finds
    /// nothing due, or a removal still to finish.
    pub fn on_alarm(&mut self, now: f64) -> Result<AlarmWork> {
        let Some(mut record) = self.store.load()? else {
            return Ok(AlarmWork::Nothing);
        };
        if record.removed_at.is_some() {
            return Ok(AlarmWork::Remove);
        }
        self.write_staged(now)?;
        let removal_due = self.expiry.removal_due(&record);
        if now >= removal_due {
            record.removed_at = Some(now);
            if record.terminated_at.is_none() {
                self.close(&mut record, now)?;
            } else {
                self.store.save(&record, now)?;
            }
            return Ok(AlarmWork::Remove);
        }
        let queue_due = self
            .expiry
            .queue_due(&record, self.store.oldest_unread_at()?);
        match queue_due {
            Some(due) if now >= due => {
                self.drop_queue(now)?;
                Ok(AlarmWork::Next(removal_due))
            }
            Some(due) => Ok(AlarmWork::Next(due.min(removal_due))),
            None => Ok(AlarmWork::Next(removal_due)),
        }
    }

    /// Drops the whole queue; each request in it is no longer in flight, and
    /// its sender is owed an [`expired_reply`]. Requests read already stay in
    /// flight.
    fn drop_queue(&mut self, now: f64) -> Result<()> {
        for request in self.store.drop_queue()? {
            if let Some(text) = expired_reply(&request, self.expiry.message_expiry_s) {
                let to = request.src;
                self.owe(&FollowUp::Reply { to, text }, now)?;
            }
        }
        Ok(())
    }

    fn check_access(&self, caller: &Identity, record: &MailboxRecord) -> Result<()> {
        if may_access(caller, &record.owner, &self.store.shares()?) {
            Ok(())
        } else {
            Err(ExchangeError::Forbidden)
        }
    }

    /// The record as every call but the alarm sees it: a removed mailbox is
    /// missing.
    pub(super) fn current(&self) -> Result<Option<MailboxRecord>> {
        Ok(self
            .store
            .load()?
            .filter(|record| record.removed_at.is_none()))
    }

    /// Saves a record that changed anyway, stamping the use at no extra cost,
    /// and asks for the alarm of its removal.
    fn save_with_use(&mut self, record: &mut MailboxRecord, now: f64) -> Result<()> {
        self.stamp_use(record, now);
        Ok(self.store.save(record, now)?)
    }

    /// Saves a change that only counts or stamps: now if the record was not
    /// written in the last [`RECORD_WRITE_INTERVAL_S`], else staged, to be
    /// written then ([`Self::write_staged`]), with its use stamped alike.
    fn save_soon(&mut self, record: &mut MailboxRecord, now: f64) -> Result<()> {
        let written_lately = self
            .store
            .record_written_at()
            .is_some_and(|written| now < written + RECORD_WRITE_INTERVAL_S);
        if !written_lately {
            return self.save_with_use(record, now);
        }
        self.stamp_use(record, now);
        self.store.stage(record);
        Ok(())
    }

    /// Stamps a use on a record about to be saved or staged (at no extra cost),
    /// and asks for the alarm of its removal.
    fn stamp_use(&self, record: &mut MailboxRecord, now: f64) {
        record.used_at = Some(now);
        self.ring_by(self.expiry.removal_due(record));
    }

    /// Notes a use of the mailbox: saves the record only if its stored use is
    /// stale, and asks for the alarm of its removal.
    fn used(&mut self, mut record: MailboxRecord, now: f64) -> Result<MailboxRecord> {
        if note_use(&self.expiry, &mut record, now) {
            self.store.save(&record, now)?;
        }
        self.ring_by(self.expiry.removal_due(&record));
        Ok(record)
    }

    /// Notes a read of the queue (a use too), saving the record only if a
    /// stored stamp is stale.
    pub(super) fn read(&mut self, mut record: MailboxRecord, now: f64) -> Result<()> {
        let read = note_read(&self.expiry, &mut record, now);
        let used = note_use(&self.expiry, &mut record, now);
        if read || used {
            self.store.save(&record, now)?;
        }
        self.ring_by(self.expiry.removal_due(&record));
        Ok(())
    }

    /// Exists (404) and the caller may access it (403).
    fn load(&self, caller: &Identity) -> Result<MailboxRecord> {
        let record = self.current()?.ok_or(ExchangeError::UnknownMailbox)?;
        self.check_access(caller, &record)?;
        Ok(record)
    }

    /// As [`Self::load`], and not terminated (419).
    pub(super) fn active(&self, caller: &Identity) -> Result<MailboxRecord> {
        let record = self.load(caller)?;
        match record.terminated_at {
            Some(_) => Err(ExchangeError::Terminated),
            None => Ok(record),
        }
    }

    /// As [`Self::active`]; a use.
    pub(super) fn active_record(&mut self, caller: &Identity, now: f64) -> Result<MailboxRecord> {
        let record = self.active(caller)?;
        self.used(record, now)
    }

    /// Share management, checked in upstream's order: 404, 419, then owner-only
    /// 403; a use.
    fn owned_record(&mut self, caller: &Identity, now: f64) -> Result<MailboxRecord> {
        let record = self.current()?.ok_or(ExchangeError::UnknownMailbox)?;
        if record.terminated_at.is_some() {
            return Err(ExchangeError::Terminated);
        }
        if !may_manage_shares(caller, &record.owner) {
            return Err(ExchangeError::Forbidden);
        }
        self.used(record, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::expiry::tests::TEST_EXPIRY;
    use crate::protocol::entity::Role;
    use crate::protocol::flat_message::tests::flat_text;
    use crate::protocol::message::tests::{entity, message_text};
    use crate::store::memory::MemoryMailbox;
    use uuid::Uuid;

    const WINDOW: f64 = 60.0;

    fn alice() -> Identity {
        Identity {
            client_id: "alice".into(),
            groups: vec!["team".into()],
        }
    }

    fn bob() -> Identity {
        Identity {
            client_id: "bob".into(),
            groups: vec!["team".into()],
        }
    }

    fn created(id: &EntityId, owner: &Identity) -> Mailbox<MemoryMailbox> {
        let mut mailbox = Mailbox::new(MemoryMailbox::default(), TEST_EXPIRY);
        mailbox.create(owner, id, None, 0.0).unwrap();
        mailbox
    }

    fn message(src: &EntityId, dest: &EntityId, kind: &str, tag: Uuid) -> IncomingMessage {
        IncomingMessage::parse(message_text(src, dest, kind, tag)).unwrap()
    }

    /// The replies the mailbox owes, by requester.
    fn replies(mailbox: &Mailbox<MemoryMailbox>) -> Vec<(EntityId, String)> {
        mailbox
            .follow_ups()
            .unwrap()
            .into_iter()
            .filter_map(|(_, follow_up)| match follow_up {
                FollowUp::Reply { to, text } => Some((to, text)),
                FollowUp::SyncDirectory => None,
            })
            .collect()
    }

    fn owes_directory_sync(mailbox: &Mailbox<MemoryMailbox>) -> bool {
        mailbox
            .follow_ups()
            .unwrap()
            .iter()
            .any(|(_, follow_up)| *follow_up == FollowUp::SyncDirectory)
    }

    /// Marks every follow-up done.
    fn settle(mailbox: &mut Mailbox<MemoryMailbox>) {
        for (id, _) in mailbox.follow_ups().unwrap() {
            mailbox.follow_up_done(id).unwrap();
        }
    }

    #[test]
    fn the_status_answer_says_exists_for_every_mailbox_ever_created() {
        for (status, exists, json) in [
            (
                MailboxStatus::Missing,
                false,
                r#"{"status":"MISSING","exists":false}"#,
            ),
            (
                MailboxStatus::Active,
                true,
                r#"{"status":"ACTIVE","exists":true}"#,
            ),
            (
                MailboxStatus::Terminated,
                true,
                r#"{"status":"TERMINATED","exists":true}"#,
            ),
        ] {
            let answer = StatusAnswer::from(status);
            assert_eq!(answer.exists, exists);
            assert_eq!(serde_json::to_string(&answer).unwrap(), json);
        }
    }

    #[test]
    fn a_new_mailbox_is_missing_then_active() {
        let id = entity(Role::User);
        let mut mailbox = Mailbox::new(MemoryMailbox::default(), TEST_EXPIRY);
        assert_eq!(mailbox.status(&alice(), 1.0), Ok(MailboxStatus::Missing));
        mailbox.create(&alice(), &id, None, 1.0).unwrap();
        assert_eq!(mailbox.status(&alice(), 1.0), Ok(MailboxStatus::Active));
    }

    #[test]
    fn creating_an_agent_owes_its_listing_and_repeats_are_idempotent() {
        let id = entity(Role::Agent);
        let mro = vec!["m.B".to_owned(), "m.A".to_owned()];
        let mut mailbox = Mailbox::new(MemoryMailbox::default(), TEST_EXPIRY);
        mailbox
            .create(&alice(), &id, Some(mro.clone()), 1.0)
            .unwrap();
        assert!(owes_directory_sync(&mailbox));
        // The retry alarm rings soon after the follow-up was stored.
        assert_eq!(mailbox.alarm_by(), Some(1.0 + FOLLOW_UP_RETRY_S));
        let DirectorySync::List(first) = mailbox.directory_sync().unwrap() else {
            panic!("an active agent is listed");
        };
        assert_eq!(first.agent_mro, mro);
        assert_eq!(first.owner, "alice");
        settle(&mut mailbox);
        // A repeat (even with another MRO) keeps the first record and owes nothing.
        mailbox
            .create(&alice(), &id, Some(vec!["x.Y".into()]), 2.0)
            .unwrap();
        assert!(mailbox.follow_ups().unwrap().is_empty());
        assert_eq!(mailbox.directory_sync(), Ok(DirectorySync::List(first)));
    }

    #[test]
    fn users_are_never_registered_for_discovery() {
        let id = entity(Role::User);
        let mut mailbox = Mailbox::new(MemoryMailbox::default(), TEST_EXPIRY);
        mailbox
            .create(&alice(), &id, Some(vec!["m.A".into()]), 1.0)
            .unwrap();
        assert!(mailbox.follow_ups().unwrap().is_empty());
        assert_eq!(mailbox.directory_sync(), Ok(DirectorySync::Nothing));
    }

    #[test]
    fn a_terminated_mailbox_is_a_gravestone_that_create_does_not_revive() {
        let id = entity(Role::Agent);
        let mut mailbox = Mailbox::new(MemoryMailbox::default(), TEST_EXPIRY);
        mailbox
            .create(&alice(), &id, Some(vec!["m.A".into()]), 1.0)
            .unwrap();
        settle(&mut mailbox);
        mailbox.terminate(&alice(), 2.0).unwrap();
        assert!(owes_directory_sync(&mailbox));
        let DirectorySync::Unlist(registration) = mailbox.directory_sync().unwrap() else {
            panic!("a terminated agent is unlisted");
        };
        assert_eq!(registration.id, id);
        mailbox
            .create(&alice(), &id, Some(vec!["m.A".into()]), 3.0)
            .unwrap();
        assert_eq!(mailbox.status(&alice(), 1.0), Ok(MailboxStatus::Terminated));
    }

    #[test]
    fn terminate_is_idempotent_and_a_no_op_for_unknown_mailboxes() {
        let mut unknown = Mailbox::new(MemoryMailbox::default(), TEST_EXPIRY);
        assert_eq!(unknown.terminate(&alice(), 1.0), Ok(()));
        assert_eq!(unknown.status(&alice(), 1.0), Ok(MailboxStatus::Missing));
        assert!(unknown.follow_ups().unwrap().is_empty());
        let (requester, id) = (entity(Role::User), entity(Role::User));
        let mut mailbox = created(&id, &alice());
        let request = message(&requester, &id, "request", Uuid::new_v4());
        mailbox.deliver(None, &request, 1.0, WINDOW).unwrap();
        mailbox.terminate(&alice(), 1.0).unwrap();
        assert_eq!(replies(&mailbox).len(), 1);
        // A repeat owes nothing more: the first reply is still owed once.
        assert_eq!(mailbox.terminate(&alice(), 2.0), Ok(()));
        assert_eq!(replies(&mailbox).len(), 1);
    }

    #[test]
    fn messages_come_out_in_the_order_they_went_in_byte_for_byte() {
        let (src, dest) = (entity(Role::User), entity(Role::Agent));
        let mut mailbox = created(&dest, &alice());
        let sent: Vec<IncomingMessage> = (0..5)
            .map(|_| message(&src, &dest, "response", Uuid::new_v4()))
            .collect();
        for item in &sent {
            mailbox.deliver(Some(&alice()), item, 1.0, WINDOW).unwrap();
        }
        for item in &sent {
            let got = mailbox.receive(&alice(), &[], 1.0).unwrap().unwrap();
            assert_eq!(got.text, item.text);
        }
        assert_eq!(mailbox.receive(&alice(), &[], 1.0), Ok(None));
    }

    #[test]
    fn sequence_numbers_increase_and_are_not_reused_after_the_queue_empties() {
        let (src, dest) = (entity(Role::User), entity(Role::User));
        let mut mailbox = created(&dest, &alice());
        let first = mailbox
            .deliver(
                None,
                &message(&src, &dest, "response", Uuid::new_v4()),
                1.0,
                WINDOW,
            )
            .unwrap();
        mailbox.receive(&alice(), &[], 1.0).unwrap();
        let second = mailbox
            .deliver(
                None,
                &message(&src, &dest, "response", Uuid::new_v4()),
                1.0,
                WINDOW,
            )
            .unwrap();
        assert!(second > first);
    }

    #[test]
    fn a_receive_skips_messages_a_socket_holds() {
        let (src, dest) = (entity(Role::User), entity(Role::User));
        let mut mailbox = created(&dest, &alice());
        let one = message(&src, &dest, "response", Uuid::new_v4());
        let two = message(&src, &dest, "response", Uuid::new_v4());
        let held = mailbox.deliver(None, &one, 1.0, WINDOW).unwrap();
        mailbox.deliver(None, &two, 1.0, WINDOW).unwrap();
        let got = mailbox.receive(&alice(), &[held], 1.0).unwrap().unwrap();
        assert_eq!(got.text, two.text);
        assert_eq!(mailbox.receive(&alice(), &[held], 1.0), Ok(None));
        // Released by its socket, it is received next.
        assert_eq!(
            mailbox.receive(&alice(), &[], 1.0).unwrap().unwrap().text,
            one.text
        );
    }

    #[test]
    fn delivery_needs_an_active_mailbox_the_caller_may_access() {
        let (src, dest) = (entity(Role::User), entity(Role::Agent));
        let item = message(&src, &dest, "request", Uuid::new_v4());
        let mut unknown = Mailbox::new(MemoryMailbox::default(), TEST_EXPIRY);
        assert_eq!(
            unknown.deliver(Some(&alice()), &item, 1.0, WINDOW),
            Err(ExchangeError::UnknownMailbox)
        );
        let mut mailbox = created(&dest, &alice());
        assert_eq!(
            mailbox.deliver(Some(&bob()), &item, 1.0, WINDOW),
            Err(ExchangeError::Forbidden)
        );
        mailbox.terminate(&alice(), 2.0).unwrap();
        assert_eq!(
            mailbox.deliver(Some(&alice()), &item, 3.0, WINDOW),
            Err(ExchangeError::Terminated)
        );
    }

    #[test]
    fn taking_from_unknown_terminated_or_foreign_mailboxes_fails() {
        let id = entity(Role::User);
        let mut unknown = Mailbox::new(MemoryMailbox::default(), TEST_EXPIRY);
        assert_eq!(
            unknown.receive(&alice(), &[], 1.0),
            Err(ExchangeError::UnknownMailbox)
        );
        let mut mailbox = created(&id, &alice());
        assert_eq!(
            mailbox.receive(&bob(), &[], 1.0),
            Err(ExchangeError::Forbidden)
        );
        mailbox.terminate(&alice(), 1.0).unwrap();
        assert_eq!(
            mailbox.receive(&alice(), &[], 1.0),
            Err(ExchangeError::Terminated)
        );
    }

    /// An agent's mailbox holding one request (`kind`) from an academy-py 0.1.0
    /// client: the mailbox, the client, the agent and the request's tag.
    fn with_flat_request(kind: &str) -> (Mailbox<MemoryMailbox>, EntityId, EntityId, Uuid) {
        let (requester, agent, tag) = (entity(Role::Client), entity(Role::Agent), Uuid::new_v4());
        let mut mailbox = created(&agent, &alice());
        let request = IncomingMessage::parse(flat_text(&requester, &agent, kind, tag)).unwrap();
        mailbox
            .deliver(Some(&alice()), &request, 1.0, WINDOW)
            .unwrap();
        (mailbox, requester, agent, tag)
    }

    #[test]
    fn an_academy_0_1_request_is_completed_by_its_flat_response() {
        let (mut mailbox, requester, agent, tag) = with_flat_request("ping-request");
        let response = flat_text(&agent, &requester, "ping-response", tag);
        let response = IncomingMessage::parse(response).unwrap();
        mailbox.note_sent(&response.header, None, 1.0).unwrap();
        let stats = mailbox.stats(&alice(), 1.0).unwrap();
        assert_eq!((stats.completed, stats.incoming), (1, 1));
        mailbox.terminate(&alice(), 2.0).unwrap();
        assert!(replies(&mailbox).is_empty());
    }

    #[test]
    fn an_academy_0_1_request_in_flight_is_answered_in_its_flat_layout() {
        let (mut mailbox, requester, _, tag) = with_flat_request("action-request");
        mailbox.terminate(&alice(), 2.0).unwrap();
        let owed = replies(&mailbox);
        let [(to, text)] = owed.as_slice() else {
            panic!("one reply expected: {owed:?}");
        };
        assert_eq!(to, &requester);
        let reply: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(reply["kind"], "action-response");
        assert_eq!(reply["tag"], tag.to_string());
        assert_eq!(reply["dest"]["role"], "client");
        assert!(reply.get("header").is_none(), "{reply}");
    }

    #[test]
    fn terminate_drops_the_queue_and_answers_every_request_in_flight() {
        let (requester, agent) = (entity(Role::User), entity(Role::Agent));
        let mut mailbox = created(&agent, &alice());
        let tags = [Uuid::new_v4(), Uuid::new_v4()];
        for tag in tags {
            mailbox
                .deliver(
                    Some(&alice()),
                    &message(&requester, &agent, "request", tag),
                    1.0,
                    WINDOW,
                )
                .unwrap();
        }
        // A response queued here is not a request in flight and gets no reply.
        mailbox
            .deliver(
                Some(&alice()),
                &message(&requester, &agent, "response", Uuid::new_v4()),
                1.0,
                WINDOW,
            )
            .unwrap();
        mailbox.terminate(&alice(), 2.0).unwrap();
        let owed = replies(&mailbox);
        assert_eq!(owed.len(), 2);
        for ((to, text), tag) in owed.iter().zip(tags) {
            assert_eq!(to, &requester);
            let reply = IncomingMessage::parse(text.clone()).unwrap();
            assert_eq!(reply.header.tag, tag);
            assert_eq!(reply.header.src, agent);
            assert_eq!(reply.header.kind, MessageKind::Response);
        }
        assert_eq!(mailbox.stats(&alice(), 1.0).unwrap().queued, 0);
    }

    /// A listen stream takes every queued message and confirms it at `now`.
    fn stream_delivers_all(mailbox: &mut Mailbox<MemoryMailbox>, now: f64) {
        use crate::core::listen::{Push, SubscriberKind};
        let kind = SubscriberKind::Stream { replay_after: None };
        let opened = mailbox
            .subscribe(&alice(), kind, None, WINDOW, &mut [], now)
            .unwrap();
        let mut subs = vec![opened.subscriber];
        for (_, push) in mailbox.dispatch(&mut subs, now).unwrap() {
            if let Push::Message(message) = push {
                mailbox.confirm(&mut subs[0], message.seq, now).unwrap();
            }
        }
    }

    /// A mailbox holding three requests from `requester`: one taken by a
    /// receive, one delivered to a stream, one queued; their tags in that order.
    fn with_taken_delivered_and_queued_requests(
        requester: &EntityId,
        agent: &EntityId,
    ) -> (Mailbox<MemoryMailbox>, [Uuid; 3]) {
        let mut mailbox = Mailbox::new(MemoryMailbox::default(), SHORT);
        mailbox.create(&alice(), agent, None, 0.0).unwrap();
        let tags = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
        let request = |tag| message(requester, agent, "request", tag);
        mailbox
            .deliver(None, &request(tags[0]), 1.0, WINDOW)
            .unwrap();
        mailbox.receive(&alice(), &[], 2.0).unwrap().unwrap();
        mailbox
            .deliver(None, &request(tags[1]), 3.0, WINDOW)
            .unwrap();
        stream_delivers_all(&mut mailbox, 4.0);
        mailbox
            .deliver(None, &request(tags[2]), 5.0, WINDOW)
            .unwrap();
        let stats = mailbox.stats(&alice(), 6.0).unwrap();
        assert_eq!((stats.queued, stats.in_progress, stats.incoming), (1, 2, 3));
        (mailbox, tags)
    }

    fn reply_tags(mailbox: &Mailbox<MemoryMailbox>) -> Vec<Uuid> {
        replies(mailbox)
            .into_iter()
            .map(|(_, text)| IncomingMessage::parse(text).unwrap().header.tag)
            .collect()
    }

    #[test]
    fn terminate_answers_requests_taken_delivered_and_queued() {
        let (requester, agent) = (entity(Role::User), entity(Role::Agent));
        let (mut mailbox, tags) = with_taken_delivered_and_queued_requests(&requester, &agent);
        mailbox.terminate(&alice(), 10.0).unwrap();
        assert_eq!(reply_tags(&mailbox), tags);
        let stats = mailbox.stats(&alice(), 11.0).unwrap();
        assert_eq!((stats.queued, stats.incoming), (0, 0));
    }

    #[test]
    fn expiry_answers_only_the_queued_request_and_the_read_ones_stay_in_flight() {
        let (requester, agent) = (entity(Role::User), entity(Role::Agent));
        let (mut mailbox, tags) = with_taken_delivered_and_queued_requests(&requester, &agent);
        // The queue is due 400 s after its oldest queued message (5 s).
        assert!(matches!(mailbox.on_alarm(405.0), Ok(AlarmWork::Next(_))));
        assert_eq!(reply_tags(&mailbox), [tags[2]]);
        let stats = mailbox.stats(&alice(), 406.0).unwrap();
        assert_eq!((stats.queued, stats.in_progress), (0, 2));
        // The read ones are answered as usual, and terminate owes nothing for them.
        for tag in &tags[..2] {
            let response = message(&agent, &requester, "response", *tag);
            mailbox.note_sent(&response.header, None, 407.0).unwrap();
        }
        let stats = mailbox.stats(&alice(), 408.0).unwrap();
        assert_eq!((stats.completed, stats.in_progress), (2, 0));
        mailbox.terminate(&alice(), 409.0).unwrap();
        assert_eq!(reply_tags(&mailbox), [tags[2]]);
    }

    #[test]
    fn a_request_sent_again_with_its_tag_is_in_flight_once() {
        let (requester, agent) = (entity(Role::User), entity(Role::Agent));
        let mut mailbox = created(&agent, &alice());
        let request = message(&requester, &agent, "request", Uuid::new_v4());
        mailbox.deliver(None, &request, 1.0, WINDOW).unwrap();
        mailbox.receive(&alice(), &[], 2.0).unwrap().unwrap();
        mailbox.deliver(None, &request, 3.0, WINDOW).unwrap();
        let stats = mailbox.stats(&alice(), 4.0).unwrap();
        assert_eq!((stats.queued, stats.incoming), (1, 1));
        mailbox.terminate(&alice(), 5.0).unwrap();
        assert_eq!(reply_tags(&mailbox), [request.header.tag]);
    }

    #[test]
    fn stats_follow_a_request_from_queued_to_in_progress_to_completed() {
        let (user, agent) = (entity(Role::User), entity(Role::Agent));
        let mut sender = created(&user, &alice());
        let mut receiver = created(&agent, &alice());
        let tags = [Uuid::new_v4(), Uuid::new_v4()];
        for tag in tags {
            let request = message(&user, &agent, "request", tag);
            receiver
                .deliver(Some(&alice()), &request, 1.0, WINDOW)
                .unwrap();
            sender.note_sent(&request.header, None, 1.0).unwrap();
        }
        let stats = receiver.stats(&alice(), 1.0).unwrap();
        assert_eq!((stats.queued, stats.incoming, stats.in_progress), (2, 2, 0));
        receiver.receive(&alice(), &[], 1.0).unwrap();
        let stats = receiver.stats(&alice(), 1.0).unwrap();
        assert_eq!((stats.queued, stats.in_progress), (1, 1));
        // The agent answers the first request: its mailbox completes it.
        let response = message(&agent, &user, "response", tags[0]);
        sender
            .deliver(Some(&alice()), &response, 2.0, WINDOW)
            .unwrap();
        receiver.note_sent(&response.header, None, 1.0).unwrap();
        let stats = receiver.stats(&alice(), 1.0).unwrap();
        assert_eq!(
            (stats.completed, stats.incoming, stats.in_progress),
            (1, 2, 0)
        );
        assert_eq!(sender.stats(&alice(), 1.0).unwrap().outgoing, 2);
        // A response to an unknown request completes nothing.
        receiver
            .note_sent(
                &message(&agent, &user, "response", Uuid::new_v4()).header,
                None,
                1.0,
            )
            .unwrap();
        assert_eq!(receiver.stats(&alice(), 1.0).unwrap().completed, 1);
    }

    #[test]
    fn heartbeats_report_seconds_since_the_last_stamp() {
        let mut mailbox = created(&entity(Role::Agent), &alice());
        assert_eq!(mailbox.heartbeat_age(&alice(), 5.0), Ok(None));
        mailbox.heartbeat(&alice(), 10.0).unwrap();
        assert_eq!(mailbox.heartbeat_age(&alice(), 12.5), Ok(Some(2.5)));
        mailbox.terminate(&alice(), 13.0).unwrap();
        assert_eq!(
            mailbox.heartbeat_age(&alice(), 14.0),
            Err(ExchangeError::Terminated)
        );
        let mut unknown = Mailbox::new(MemoryMailbox::default(), TEST_EXPIRY);
        assert_eq!(
            unknown.heartbeat_age(&alice(), 1.0),
            Err(ExchangeError::UnknownMailbox)
        );
    }

    #[test]
    fn a_send_stamps_the_senders_heartbeat_only_when_asked_and_allowed() {
        let (user, agent) = (entity(Role::User), entity(Role::Agent));
        let mut sender = created(&user, &alice());
        let request = message(&user, &agent, "request", Uuid::new_v4());
        sender.note_sent(&request.header, None, 1.0).unwrap();
        assert_eq!(sender.heartbeat_age(&alice(), 5.0), Ok(None));
        sender
            .note_sent(&request.header, Some(&alice()), 10.0)
            .unwrap();
        assert_eq!(sender.heartbeat_age(&alice(), 12.0), Ok(Some(2.0)));
        assert_eq!(sender.stats(&alice(), 12.0).unwrap().outgoing, 2);
        // A response that completes nothing is still a heartbeat.
        let response = message(&user, &agent, "response", Uuid::new_v4());
        sender
            .note_sent(&response.header, Some(&alice()), 11.0)
            .unwrap();
        assert_eq!(sender.heartbeat_age(&alice(), 12.0), Ok(Some(1.0)));
        // Someone who may not act for the sender does not keep it alive.
        sender
            .note_sent(&request.header, Some(&bob()), 20.0)
            .unwrap();
        assert_eq!(sender.heartbeat_age(&alice(), 22.0), Ok(Some(11.0)));
        assert_eq!(sender.stats(&alice(), 22.0).unwrap().outgoing, 3);
    }

    #[test]
    fn a_terminated_sender_is_not_stamped() {
        let (user, agent) = (entity(Role::User), entity(Role::Agent));
        let mut sender = created(&user, &alice());
        sender.terminate(&alice(), 1.0).unwrap();
        let response = message(&user, &agent, "response", Uuid::new_v4());
        sender
            .note_sent(&response.header, Some(&alice()), 2.0)
            .unwrap();
        assert_eq!(sender.store().load().unwrap().unwrap().heartbeat_at, None);
    }

    #[test]
    fn sharing_grants_access_to_group_members_until_unshared() {
        let id = entity(Role::Agent);
        let mut mailbox = Mailbox::new(MemoryMailbox::default(), TEST_EXPIRY);
        mailbox
            .create(&alice(), &id, Some(vec!["m.A".into()]), 0.0)
            .unwrap();
        let carol = Identity {
            client_id: "carol".into(),
            groups: vec!["team".into()],
        };
        assert_eq!(mailbox.status(&carol, 1.0), Err(ExchangeError::Forbidden));
        settle(&mut mailbox);
        mailbox.share(&alice(), "team", 1.0).unwrap();
        assert!(owes_directory_sync(&mailbox));
        let DirectorySync::List(registration) = mailbox.directory_sync().unwrap() else {
            panic!("an active agent is listed");
        };
        assert_eq!(registration.shares, vec!["team".to_owned()]);
        assert_eq!(mailbox.shares(&alice(), 1.0), Ok(vec!["team".to_owned()]));
        assert_eq!(mailbox.status(&carol, 1.0), Ok(MailboxStatus::Active));
        assert_eq!(mailbox.receive(&carol, &[], 1.0), Ok(None));
        mailbox.unshare(&alice(), "team", 1.0).unwrap();
        let DirectorySync::List(registration) = mailbox.directory_sync().unwrap() else {
            panic!("an active agent is listed");
        };
        assert!(registration.shares.is_empty());
        assert_eq!(mailbox.status(&carol, 1.0), Err(ExchangeError::Forbidden));
    }

    #[test]
    fn only_the_owner_shares_and_only_with_its_own_groups() {
        let mut mailbox = created(&entity(Role::Agent), &alice());
        assert_eq!(
            mailbox.share(&alice(), "other", 1.0),
            Err(ExchangeError::Forbidden)
        );
        assert_eq!(
            mailbox.share(&bob(), "team", 1.0),
            Err(ExchangeError::Forbidden)
        );
        assert_eq!(mailbox.shares(&bob(), 1.0), Err(ExchangeError::Forbidden));
        assert_eq!(
            mailbox.unshare(&bob(), "team", 1.0),
            Err(ExchangeError::Forbidden)
        );
        assert!(mailbox.unshare(&alice(), "never-shared", 1.0).is_ok());
        mailbox.terminate(&alice(), 1.0).unwrap();
        assert_eq!(
            mailbox.share(&alice(), "team", 1.0),
            Err(ExchangeError::Terminated)
        );
    }

    /// Messages expire after 400 s unread (read slack 4 s), mailboxes after
    /// 1200 s unused (use slack 12 s).
    const SHORT: Expiry = Expiry {
        message_expiry_s: 400.0,
        gravestone_expiry_s: 1200.0,
    };

    fn short_lived(id: &EntityId, mro: Option<Vec<String>>) -> Mailbox<MemoryMailbox> {
        let mut mailbox = Mailbox::new(MemoryMailbox::default(), SHORT);
        mailbox.create(&alice(), id, mro, 0.0).unwrap();
        settle(&mut mailbox);
        mailbox
    }

    #[test]
    fn an_arrival_asks_the_alarm_to_ring_by_its_queue_expiry() {
        let (src, dest) = (entity(Role::User), entity(Role::Agent));
        let mut mailbox = Mailbox::new(MemoryMailbox::default(), SHORT);
        mailbox.create(&alice(), &dest, None, 0.0).unwrap();
        assert_eq!(mailbox.alarm_by(), Some(1212.0));
        let mut later = Mailbox::new(std::mem::take(&mut mailbox.store), SHORT);
        let request = message(&src, &dest, "request", Uuid::new_v4());
        later.deliver(None, &request, 100.0, WINDOW).unwrap();
        assert_eq!(later.alarm_by(), Some(500.0));
    }

    #[test]
    fn an_unread_queue_is_dropped_and_each_request_in_it_is_answered() {
        let (src, dest) = (entity(Role::User), entity(Role::Agent));
        let mut mailbox = short_lived(&dest, None);
        let (request, read_request) = (Uuid::new_v4(), Uuid::new_v4());
        for tag in [read_request, request] {
            let sent = message(&src, &dest, "request", tag);
            mailbox.deliver(None, &sent, 10.0, WINDOW).unwrap();
        }
        let response = message(&src, &dest, "response", Uuid::new_v4());
        mailbox.deliver(None, &response, 20.0, WINDOW).unwrap();
        // The first request is read (and stays in flight until answered).
        assert!(mailbox.receive(&alice(), &[], 11.0).unwrap().is_some());
        // Not due yet: the read renewed the queue (11 s + 4 s slack + 400 s).
        assert_eq!(mailbox.on_alarm(410.0), Ok(AlarmWork::Next(415.0)));
        // (Reading the stats is a use: the mailbox lives on from then.)
        assert_eq!(mailbox.stats(&alice(), 410.0).unwrap().queued, 2);
        assert_eq!(mailbox.on_alarm(415.0), Ok(AlarmWork::Next(410.0 + 1212.0)));
        let stats = mailbox.stats(&alice(), 416.0).unwrap();
        assert_eq!((stats.queued, stats.in_progress), (0, 1));
        // Only the unread request's sender is answered, with the expiry error.
        let owed = replies(&mailbox);
        let [(to, text)] = owed.as_slice() else {
            panic!("one reply expected: {owed:?}");
        };
        assert_eq!(to, &src);
        let reply = IncomingMessage::parse(text.clone()).unwrap();
        assert_eq!(reply.header.tag, request);
        assert!(text.contains("MessageExpiredError"), "{text}");
        // A repeat of the alarm finds nothing more to do.
        assert_eq!(mailbox.on_alarm(416.0), Ok(AlarmWork::Next(410.0 + 1212.0)));
        assert_eq!(replies(&mailbox).len(), 1);
    }

    #[test]
    fn a_queue_is_due_from_its_oldest_unread_message_not_its_newest() {
        let (src, dest) = (entity(Role::User), entity(Role::User));
        let mut mailbox = short_lived(&dest, None);
        for now in [10.0, 300.0] {
            let sent = message(&src, &dest, "response", Uuid::new_v4());
            mailbox.deliver(None, &sent, now, WINDOW).unwrap();
        }
        assert_eq!(mailbox.on_alarm(409.0), Ok(AlarmWork::Next(410.0)));
        mailbox.on_alarm(410.0).unwrap();
        assert_eq!(mailbox.stats(&alice(), 411.0).unwrap().queued, 0);
    }

    #[test]
    fn an_unused_agent_is_removed_its_requesters_answered_and_unlisted() {
        let (requester, agent) = (entity(Role::User), entity(Role::Agent));
        let mut mailbox = short_lived(&agent, Some(vec!["m.A".into()]));
        let request = message(&requester, &agent, "request", Uuid::new_v4());
        mailbox.deliver(None, &request, 5.0, WINDOW).unwrap();
        mailbox.receive(&alice(), &[], 6.0).unwrap().unwrap();
        // A status read is a use: it renews (a stale stamp is rewritten).
        mailbox.status(&alice(), 100.0).unwrap();
        assert_eq!(mailbox.on_alarm(1311.0), Ok(AlarmWork::Next(1312.0)));
        assert_eq!(mailbox.on_alarm(1312.0), Ok(AlarmWork::Remove));
        // Gone for every call, though its storage is not deleted yet.
        assert_eq!(mailbox.status(&alice(), 1313.0), Ok(MailboxStatus::Missing));
        assert_eq!(
            mailbox.receive(&alice(), &[], 1313.0),
            Err(ExchangeError::UnknownMailbox)
        );
        assert!(mailbox.is_removed().unwrap());
        // Its requester learns it is gone; discovery forgets it.
        let owed = replies(&mailbox);
        assert_eq!(owed.len(), 1);
        assert!(owed[0].1.contains("academy-error-response"), "{owed:?}");
        assert!(owes_directory_sync(&mailbox));
        assert!(matches!(
            mailbox.directory_sync(),
            Ok(DirectorySync::Unlist(_))
        ));
        // Ringing again repeats the removal, owing nothing twice.
        assert_eq!(mailbox.on_alarm(1400.0), Ok(AlarmWork::Remove));
        assert_eq!(replies(&mailbox).len(), 1);
    }

    #[test]
    fn a_gravestone_lives_from_its_last_use_then_is_removed() {
        let id = entity(Role::Agent);
        let mut mailbox = short_lived(&id, Some(vec!["m.A".into()]));
        mailbox.terminate(&alice(), 50.0).unwrap();
        settle(&mut mailbox);
        assert_eq!(mailbox.on_alarm(1261.0), Ok(AlarmWork::Next(1262.0)));
        assert_eq!(
            mailbox.status(&alice(), 1261.0),
            Ok(MailboxStatus::Terminated)
        );
        // That status was a use.
        assert_eq!(
            mailbox.on_alarm(1262.0),
            Ok(AlarmWork::Next(1261.0 + 1212.0))
        );
        assert_eq!(mailbox.on_alarm(1261.0 + 1212.0), Ok(AlarmWork::Remove));
        assert_eq!(mailbox.status(&alice(), 3000.0), Ok(MailboxStatus::Missing));
        // A gravestone's follow-ups were done at termination: nothing new.
        assert!(mailbox.follow_ups().unwrap().is_empty());
    }

    #[test]
    fn uses_within_the_slack_write_nothing_and_sends_stamp_the_sender() {
        let (user, agent) = (entity(Role::User), entity(Role::Agent));
        let mut sender = short_lived(&user, None);
        let stamp =
            |mailbox: &Mailbox<MemoryMailbox>| mailbox.store.load().unwrap().unwrap().used_at;
        sender.status(&alice(), 11.0).unwrap();
        assert_eq!(stamp(&sender), Some(0.0));
        sender.status(&alice(), 13.0).unwrap();
        assert_eq!(stamp(&sender), Some(13.0));
        // A sent request is counted in a write that stamps the use as well.
        let request = message(&user, &agent, "request", Uuid::new_v4());
        sender.note_sent(&request.header, None, 14.0).unwrap();
        assert_eq!(stamp(&sender), Some(14.0));
    }

    #[test]
    fn counts_within_a_second_of_the_last_write_are_staged_seen_at_once_then_written() {
        let (user, agent) = (entity(Role::User), entity(Role::Agent));
        let mut sender = created(&user, &alice());
        let written = |mailbox: &Mailbox<MemoryMailbox>| {
            mailbox
                .store
                .written_record()
                .map_or(0, |record| record.outgoing)
        };
        let send = |sender: &mut Mailbox<MemoryMailbox>, now: f64| {
            let request = message(&user, &agent, "request", Uuid::new_v4());
            sender.note_sent(&request.header, None, now).unwrap();
        };
        // Created at 0.0: a send within the second after is staged, not written.
        send(&mut sender, 0.5);
        assert_eq!(sender.stats(&alice(), 0.5).unwrap().outgoing, 1);
        assert_eq!(written(&sender), 0);
        assert!(sender.store.record_staged());
        send(&mut sender, 0.9);
        assert_eq!(sender.stats(&alice(), 0.9).unwrap().outgoing, 2);
        assert_eq!(written(&sender), 0);
        // The object writes what is staged when it is due.
        sender.write_staged(1.0).unwrap();
        assert_eq!(written(&sender), 2);
        assert!(!sender.store.record_staged());
        assert_eq!(sender.store.record_written_at(), Some(1.0));
        // A send more than a second after the last write is written at once.
        send(&mut sender, 2.5);
        assert_eq!(written(&sender), 3);
        // A send's heartbeat stamp (academy-py 0.5) is staged with its count;
        // the alarm writes what is staged too.
        let request = message(&user, &agent, "request", Uuid::new_v4());
        sender
            .note_sent(&request.header, Some(&alice()), 2.6)
            .unwrap();
        assert_eq!(written(&sender), 3);
        assert!(sender.store.record_staged());
        sender.on_alarm(3.9).unwrap();
        assert_eq!(written(&sender), 4);
        assert_eq!(
            sender.store.written_record().unwrap().heartbeat_at,
            Some(2.6)
        );
        // A heartbeat of its own is written at once: the client was told so.
        sender.heartbeat(&alice(), 4.0).unwrap();
        assert!(!sender.store.record_staged());
        assert_eq!(
            sender.store.written_record().unwrap().heartbeat_at,
            Some(4.0)
        );
        // Nothing staged: writing what is staged writes nothing.
        sender.write_staged(9.0).unwrap();
        assert_eq!(sender.store.record_written_at(), Some(4.0));
    }

    #[test]
    fn completions_are_staged_but_the_request_leaves_flight_at_once() {
        let (user, agent) = (entity(Role::User), entity(Role::Agent));
        let mut receiver = created(&agent, &alice());
        let tag = Uuid::new_v4();
        receiver
            .deliver(
                Some(&alice()),
                &message(&user, &agent, "request", tag),
                0.1,
                WINDOW,
            )
            .unwrap();
        receiver.receive(&alice(), &[], 0.2).unwrap();
        receiver
            .note_sent(&message(&agent, &user, "response", tag).header, None, 0.3)
            .unwrap();
        let stats = receiver.stats(&alice(), 0.3).unwrap();
        assert_eq!((stats.completed, stats.in_progress), (1, 0));
        assert_eq!(receiver.store.written_record().unwrap().completed, 0);
        assert_eq!(receiver.store.in_flight(), Ok(0));
        receiver.write_staged(1.0).unwrap();
        assert_eq!(receiver.store.written_record().unwrap().completed, 1);
    }

    #[test]
    fn a_mailbox_created_again_during_its_removal_starts_afresh() {
        let id = entity(Role::Agent);
        let mut mailbox = short_lived(&id, Some(vec!["m.A".into()]));
        mailbox.share(&alice(), "team", 1.0).unwrap();
        assert_eq!(mailbox.on_alarm(2000.0), Ok(AlarmWork::Remove));
        mailbox
            .create(&alice(), &id, Some(vec!["m.A".into()]), 2001.0)
            .unwrap();
        assert!(!mailbox.is_removed().unwrap());
        assert_eq!(mailbox.shares(&alice(), 2001.0), Ok(vec![]));
        assert_eq!(mailbox.status(&alice(), 2001.0), Ok(MailboxStatus::Active));
    }
}

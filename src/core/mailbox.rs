//! One mailbox's state machine: create, terminate (gravestone), deliver, take and
//! remove, heartbeats, shares and stats — the rules of upstream's
//! `MailboxBackend`, over a [`MailboxStore`].
//!
//! Listen streams and long polls that wait for messages are in [`super::listen`].

use serde::{Deserialize, Serialize};

use super::permission::{may_access, may_manage_shares, may_share_with, Identity};
use super::stats::Stats;
use crate::protocol::entity::EntityId;
use crate::protocol::error::ExchangeError;
use crate::protocol::message::{terminated_reply, IncomingMessage, MessageHeader, MessageKind};
use crate::store::{MailboxRecord, MailboxStore, QueuedMessage};

type Result<T> = std::result::Result<T, ExchangeError>;

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

/// What discovery must learn about an active agent mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub id: EntityId,
    pub owner: String,
    pub agent_mro: Vec<String>,
    /// Groups the mailbox is shared with: discovery shows the agent to them too.
    pub shares: Vec<String>,
}

/// The follow-up work of a termination, done by the caller (the Worker) because it
/// reaches other objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Termination {
    /// Error replies for requests that will never be answered, by requester.
    pub replies: Vec<(EntityId, String)>,
    /// The agent to remove from discovery, if this was an active agent.
    pub unregister: Option<Registration>,
}

/// A heartbeat that rides on another request of its mailbox's client
/// ([`crate::protocol::request::stamps_heartbeat`]): who made it, and when.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    pub caller: &'a Identity,
    pub now: f64,
}

pub struct Mailbox<S> {
    store: S,
}

impl<S: MailboxStore> Mailbox<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }

    pub(super) fn store(&self) -> &S {
        &self.store
    }

    pub(super) fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Creates the mailbox if it does not exist. Idempotent; a gravestone stays a
    /// gravestone. Returns the discovery registration of an active agent (also on
    /// repeats, so a create retried after a partial failure completes it).
    pub fn create(
        &mut self,
        caller: &Identity,
        id: &EntityId,
        agent_mro: Option<Vec<String>>,
        now: f64,
    ) -> Result<Option<Registration>> {
        let record = match self.store.load()? {
            Some(record) => {
                self.check_access(caller, &record)?;
                record
            }
            None => {
                let record = MailboxRecord {
                    id: id.clone(),
                    owner: caller.client_id.clone(),
                    agent_mro: agent_mro
                        .filter(|_| id.role == crate::protocol::entity::Role::Agent),
                    created_at: now,
                    terminated_at: None,
                    heartbeat_at: None,
                    completed: 0,
                    outgoing: 0,
                };
                self.store.save(&record)?;
                record
            }
        };
        if record.terminated_at.is_some() {
            return Ok(None);
        }
        self.registration(&record)
    }

    /// Missing needs no permission (as upstream); otherwise the caller needs access.
    pub fn status(&self, caller: &Identity) -> Result<MailboxStatus> {
        let Some(record) = self.store.load()? else {
            return Ok(MailboxStatus::Missing);
        };
        self.check_access(caller, &record)?;
        Ok(if record.terminated_at.is_some() {
            MailboxStatus::Terminated
        } else {
            MailboxStatus::Active
        })
    }

    /// Marks the gravestone, drops the queue and answers every request in flight
    /// (except academy-py 0.1.0's shutdown requests: see [`terminated_reply`]).
    /// Idempotent, and a no-op for unknown mailboxes.
    pub fn terminate(&mut self, caller: &Identity, now: f64) -> Result<Termination> {
        let Some(mut record) = self.store.load()? else {
            return Ok(Termination::default());
        };
        self.check_access(caller, &record)?;
        if record.terminated_at.is_some() {
            return Ok(Termination::default());
        }
        record.terminated_at = Some(now);
        self.store.save(&record)?;
        self.store.clear_queue()?;
        let replies = self
            .store
            .take_in_flight()?
            .iter()
            .filter_map(|request| Some((request.src.clone(), terminated_reply(request)?)))
            .collect();
        Ok(Termination {
            replies,
            unregister: self.registration(&record)?,
        })
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
        let record = self.store.load()?.ok_or(ExchangeError::UnknownMailbox)?;
        if let Some(caller) = caller {
            self.check_access(caller, &record)?;
        }
        if record.terminated_at.is_some() {
            return Err(ExchangeError::Terminated);
        }
        let seq = self.store.push(&message.text, now, now - replay_window_s)?;
        if message.header.kind == MessageKind::Request {
            self.store.add_in_flight(&message.header)?;
        }
        Ok(seq)
    }

    /// Bookkeeping at the *sender's* mailbox once a message is queued at its
    /// destination: a request counts as outgoing; a response completes the request
    /// it answers. With `heartbeat`, the send also stamps the sender's heartbeat if
    /// it is active and the caller may act for it, in the same save as the counts.
    /// Silently nothing if the sender has no mailbox here.
    pub fn note_sent(
        &mut self,
        header: &MessageHeader,
        heartbeat: Option<Stamp<'_>>,
    ) -> Result<()> {
        let Some(mut record) = self.store.load()? else {
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
        let stamped = match heartbeat {
            Some(stamp)
                if record.terminated_at.is_none()
                    && may_access(stamp.caller, &record.owner, &self.store.shares()?) =>
            {
                record.heartbeat_at = Some(stamp.now);
                true
            }
            _ => false,
        };
        if counted || stamped {
            self.store.save(&record)?;
        }
        Ok(())
    }

    /// Fails unless the mailbox exists, is active and the caller may read it: the
    /// check a listen stream makes before it opens.
    pub fn ensure_active(&self, caller: &Identity) -> Result<()> {
        self.active_record(caller).map(|_| ())
    }

    /// A `GET /message` answered at once: removes and returns the oldest queued
    /// message that no socket holds (`leased`); `None` if there is none.
    pub fn receive(&mut self, caller: &Identity, leased: &[u64]) -> Result<Option<QueuedMessage>> {
        self.active_record(caller)?;
        let next = self
            .store
            .deliverable(None, leased.len() + 1)?
            .into_iter()
            .find(|message| !leased.contains(&message.seq));
        if let Some(message) = &next {
            self.store.remove(message.seq)?;
        }
        Ok(next)
    }

    pub fn heartbeat(&mut self, caller: &Identity, now: f64) -> Result<()> {
        let mut record = self.active_record(caller)?;
        record.heartbeat_at = Some(now);
        Ok(self.store.save(&record)?)
    }

    /// Seconds since the last heartbeat, `None` if there was none.
    pub fn heartbeat_age(&self, caller: &Identity, now: f64) -> Result<Option<f64>> {
        let record = self.active_record(caller)?;
        Ok(record.heartbeat_at.map(|stamp| (now - stamp).max(0.0)))
    }

    pub fn stats(&self, caller: &Identity) -> Result<Stats> {
        let record = self.load(caller)?;
        Ok(Stats::compute(
            self.store.queued()?,
            self.store.in_flight()?,
            record.completed,
            record.outgoing,
        ))
    }

    /// Shares with a group; returns the agent's updated discovery registration.
    pub fn share(&mut self, caller: &Identity, group_id: &str) -> Result<Option<Registration>> {
        let record = self.owned_record(caller)?;
        if !may_share_with(caller, &record.owner, group_id) {
            return Err(ExchangeError::Forbidden);
        }
        self.store.add_share(group_id)?;
        self.registration(&record)
    }

    pub fn shares(&self, caller: &Identity) -> Result<Vec<String>> {
        self.owned_record(caller)?;
        Ok(self.store.shares()?)
    }

    /// Removing a group the mailbox is not shared with is a no-op. Returns the
    /// agent's updated discovery registration.
    pub fn unshare(&mut self, caller: &Identity, group_id: &str) -> Result<Option<Registration>> {
        let record = self.owned_record(caller)?;
        self.store.remove_share(group_id)?;
        self.registration(&record)
    }

    /// What discovery lists for this mailbox, if it is an agent.
    fn registration(&self, record: &MailboxRecord) -> Result<Option<Registration>> {
        let Some(mro) = &record.agent_mro else {
            return Ok(None);
        };
        Ok(Some(Registration {
            id: record.id.clone(),
            owner: record.owner.clone(),
            agent_mro: mro.clone(),
            shares: self.store.shares()?,
        }))
    }

    fn check_access(&self, caller: &Identity, record: &MailboxRecord) -> Result<()> {
        if may_access(caller, &record.owner, &self.store.shares()?) {
            Ok(())
        } else {
            Err(ExchangeError::Forbidden)
        }
    }

    /// Exists (404) and the caller may access it (403).
    fn load(&self, caller: &Identity) -> Result<MailboxRecord> {
        let record = self.store.load()?.ok_or(ExchangeError::UnknownMailbox)?;
        self.check_access(caller, &record)?;
        Ok(record)
    }

    /// As [`Self::load`], and not terminated (419).
    fn active_record(&self, caller: &Identity) -> Result<MailboxRecord> {
        let record = self.load(caller)?;
        match record.terminated_at {
            Some(_) => Err(ExchangeError::Terminated),
            None => Ok(record),
        }
    }

    /// Share management, checked in upstream's order: 404, 419, then owner-only 403.
    fn owned_record(&self, caller: &Identity) -> Result<MailboxRecord> {
        let record = self.store.load()?.ok_or(ExchangeError::UnknownMailbox)?;
        if record.terminated_at.is_some() {
            return Err(ExchangeError::Terminated);
        }
        if !may_manage_shares(caller, &record.owner) {
            return Err(ExchangeError::Forbidden);
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let mut mailbox = Mailbox::new(MemoryMailbox::default());
        mailbox.create(owner, id, None, 0.0).unwrap();
        mailbox
    }

    fn message(src: &EntityId, dest: &EntityId, kind: &str, tag: Uuid) -> IncomingMessage {
        IncomingMessage::parse(message_text(src, dest, kind, tag)).unwrap()
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
        let mut mailbox = Mailbox::new(MemoryMailbox::default());
        assert_eq!(mailbox.status(&alice()), Ok(MailboxStatus::Missing));
        mailbox.create(&alice(), &id, None, 1.0).unwrap();
        assert_eq!(mailbox.status(&alice()), Ok(MailboxStatus::Active));
    }

    #[test]
    fn creating_an_agent_returns_its_registration_and_repeats_are_idempotent() {
        let id = entity(Role::Agent);
        let mro = vec!["m.B".to_owned(), "m.A".to_owned()];
        let mut mailbox = Mailbox::new(MemoryMailbox::default());
        let first = mailbox
            .create(&alice(), &id, Some(mro.clone()), 1.0)
            .unwrap()
            .unwrap();
        assert_eq!(first.agent_mro, mro);
        assert_eq!(first.owner, "alice");
        // A repeat (even with another MRO) keeps the first record.
        let again = mailbox
            .create(&alice(), &id, Some(vec!["x.Y".into()]), 2.0)
            .unwrap();
        assert_eq!(again, Some(first));
    }

    #[test]
    fn users_are_never_registered_for_discovery() {
        let id = entity(Role::User);
        let mut mailbox = Mailbox::new(MemoryMailbox::default());
        assert_eq!(
            mailbox.create(&alice(), &id, Some(vec!["m.A".into()]), 1.0),
            Ok(None)
        );
    }

    #[test]
    fn a_terminated_mailbox_is_a_gravestone_that_create_does_not_revive() {
        let id = entity(Role::Agent);
        let mut mailbox = Mailbox::new(MemoryMailbox::default());
        mailbox
            .create(&alice(), &id, Some(vec!["m.A".into()]), 1.0)
            .unwrap();
        let termination = mailbox.terminate(&alice(), 2.0).unwrap();
        assert_eq!(termination.unregister.unwrap().id, id);
        assert_eq!(
            mailbox.create(&alice(), &id, Some(vec!["m.A".into()]), 3.0),
            Ok(None)
        );
        assert_eq!(mailbox.status(&alice()), Ok(MailboxStatus::Terminated));
    }

    #[test]
    fn terminate_is_idempotent_and_a_no_op_for_unknown_mailboxes() {
        let mut unknown = Mailbox::new(MemoryMailbox::default());
        assert_eq!(unknown.terminate(&alice(), 1.0), Ok(Termination::default()));
        assert_eq!(unknown.status(&alice()), Ok(MailboxStatus::Missing));
        let mut mailbox = created(&entity(Role::User), &alice());
        mailbox.terminate(&alice(), 1.0).unwrap();
        assert_eq!(mailbox.terminate(&alice(), 2.0), Ok(Termination::default()));
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
            let got = mailbox.receive(&alice(), &[]).unwrap().unwrap();
            assert_eq!(got.text, item.text);
        }
        assert_eq!(mailbox.receive(&alice(), &[]), Ok(None));
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
        mailbox.receive(&alice(), &[]).unwrap();
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
        let got = mailbox.receive(&alice(), &[held]).unwrap().unwrap();
        assert_eq!(got.text, two.text);
        assert_eq!(mailbox.receive(&alice(), &[held]), Ok(None));
        // Released by its socket, it is received next.
        assert_eq!(
            mailbox.receive(&alice(), &[]).unwrap().unwrap().text,
            one.text
        );
    }

    #[test]
    fn delivery_needs_an_active_mailbox_the_caller_may_access() {
        let (src, dest) = (entity(Role::User), entity(Role::Agent));
        let item = message(&src, &dest, "request", Uuid::new_v4());
        let mut unknown = Mailbox::new(MemoryMailbox::default());
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
        let mut unknown = Mailbox::new(MemoryMailbox::default());
        assert_eq!(
            unknown.receive(&alice(), &[]),
            Err(ExchangeError::UnknownMailbox)
        );
        let mut mailbox = created(&id, &alice());
        assert_eq!(mailbox.receive(&bob(), &[]), Err(ExchangeError::Forbidden));
        mailbox.terminate(&alice(), 1.0).unwrap();
        assert_eq!(
            mailbox.receive(&alice(), &[]),
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
        mailbox.note_sent(&response.header, None).unwrap();
        let stats = mailbox.stats(&alice()).unwrap();
        assert_eq!((stats.completed, stats.incoming), (1, 1));
        assert!(mailbox.terminate(&alice(), 2.0).unwrap().replies.is_empty());
    }

    #[test]
    fn an_academy_0_1_request_in_flight_is_answered_in_its_flat_layout() {
        let (mut mailbox, requester, _, tag) = with_flat_request("action-request");
        let termination = mailbox.terminate(&alice(), 2.0).unwrap();
        let [(to, text)] = termination.replies.as_slice() else {
            panic!("one reply expected: {:?}", termination.replies);
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
        let termination = mailbox.terminate(&alice(), 2.0).unwrap();
        assert_eq!(termination.replies.len(), 2);
        for ((to, text), tag) in termination.replies.iter().zip(tags) {
            assert_eq!(to, &requester);
            let reply = IncomingMessage::parse(text.clone()).unwrap();
            assert_eq!(reply.header.tag, tag);
            assert_eq!(reply.header.src, agent);
            assert_eq!(reply.header.kind, MessageKind::Response);
        }
        assert_eq!(mailbox.stats(&alice()).unwrap().queued, 0);
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
            sender.note_sent(&request.header, None).unwrap();
        }
        let stats = receiver.stats(&alice()).unwrap();
        assert_eq!((stats.queued, stats.incoming, stats.in_progress), (2, 2, 0));
        receiver.receive(&alice(), &[]).unwrap();
        let stats = receiver.stats(&alice()).unwrap();
        assert_eq!((stats.queued, stats.in_progress), (1, 1));
        // The agent answers the first request: its mailbox completes it.
        let response = message(&agent, &user, "response", tags[0]);
        sender
            .deliver(Some(&alice()), &response, 2.0, WINDOW)
            .unwrap();
        receiver.note_sent(&response.header, None).unwrap();
        let stats = receiver.stats(&alice()).unwrap();
        assert_eq!(
            (stats.completed, stats.incoming, stats.in_progress),
            (1, 2, 0)
        );
        assert_eq!(sender.stats(&alice()).unwrap().outgoing, 2);
        // A response to an unknown request completes nothing.
        receiver
            .note_sent(
                &message(&agent, &user, "response", Uuid::new_v4()).header,
                None,
            )
            .unwrap();
        assert_eq!(receiver.stats(&alice()).unwrap().completed, 1);
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
        let unknown = Mailbox::new(MemoryMailbox::default());
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
        sender.note_sent(&request.header, None).unwrap();
        assert_eq!(sender.heartbeat_age(&alice(), 5.0), Ok(None));
        let by_alice = Stamp {
            caller: &alice(),
            now: 10.0,
        };
        sender.note_sent(&request.header, Some(by_alice)).unwrap();
        assert_eq!(sender.heartbeat_age(&alice(), 12.0), Ok(Some(2.0)));
        assert_eq!(sender.stats(&alice()).unwrap().outgoing, 2);
        // A response that completes nothing is still a heartbeat.
        let response = message(&user, &agent, "response", Uuid::new_v4());
        let later = Stamp {
            now: 11.0,
            ..by_alice
        };
        sender.note_sent(&response.header, Some(later)).unwrap();
        assert_eq!(sender.heartbeat_age(&alice(), 12.0), Ok(Some(1.0)));
        // Someone who may not act for the sender does not keep it alive.
        let by_bob = Stamp {
            caller: &bob(),
            now: 20.0,
        };
        sender.note_sent(&request.header, Some(by_bob)).unwrap();
        assert_eq!(sender.heartbeat_age(&alice(), 22.0), Ok(Some(11.0)));
        assert_eq!(sender.stats(&alice()).unwrap().outgoing, 3);
    }

    #[test]
    fn a_terminated_sender_is_not_stamped() {
        let (user, agent) = (entity(Role::User), entity(Role::Agent));
        let mut sender = created(&user, &alice());
        sender.terminate(&alice(), 1.0).unwrap();
        let response = message(&user, &agent, "response", Uuid::new_v4());
        let stamp = Stamp {
            caller: &alice(),
            now: 2.0,
        };
        sender.note_sent(&response.header, Some(stamp)).unwrap();
        assert_eq!(sender.store().load().unwrap().unwrap().heartbeat_at, None);
    }

    #[test]
    fn sharing_grants_access_to_group_members_until_unshared() {
        let id = entity(Role::Agent);
        let mut mailbox = Mailbox::new(MemoryMailbox::default());
        mailbox
            .create(&alice(), &id, Some(vec!["m.A".into()]), 0.0)
            .unwrap();
        let carol = Identity {
            client_id: "carol".into(),
            groups: vec!["team".into()],
        };
        assert_eq!(mailbox.status(&carol), Err(ExchangeError::Forbidden));
        let registration = mailbox.share(&alice(), "team").unwrap().unwrap();
        assert_eq!(registration.shares, vec!["team".to_owned()]);
        assert_eq!(mailbox.shares(&alice()), Ok(vec!["team".to_owned()]));
        assert_eq!(mailbox.status(&carol), Ok(MailboxStatus::Active));
        assert_eq!(mailbox.receive(&carol, &[]), Ok(None));
        let registration = mailbox.unshare(&alice(), "team").unwrap().unwrap();
        assert!(registration.shares.is_empty());
        assert_eq!(mailbox.status(&carol), Err(ExchangeError::Forbidden));
    }

    #[test]
    fn only_the_owner_shares_and_only_with_its_own_groups() {
        let mut mailbox = created(&entity(Role::Agent), &alice());
        assert_eq!(
            mailbox.share(&alice(), "other"),
            Err(ExchangeError::Forbidden)
        );
        assert_eq!(mailbox.share(&bob(), "team"), Err(ExchangeError::Forbidden));
        assert_eq!(mailbox.shares(&bob()), Err(ExchangeError::Forbidden));
        assert_eq!(
            mailbox.unshare(&bob(), "team"),
            Err(ExchangeError::Forbidden)
        );
        assert!(mailbox.unshare(&alice(), "never-shared").is_ok());
        mailbox.terminate(&alice(), 1.0).unwrap();
        assert_eq!(
            mailbox.share(&alice(), "team"),
            Err(ExchangeError::Terminated)
        );
    }
}

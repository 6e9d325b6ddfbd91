//! Listening without keeping the mailbox awake: the rules of the sockets between
//! the Worker, which holds a client's listen stream or long poll, and the mailbox
//! object, which accepts the socket with the hibernation API and sleeps while
//! nothing happens.
//!
//! Two state machines, both sans-I/O (they take `now` and say what to do):
//! - [`Subscriber`] and the `Mailbox` methods below are the object's side: what a
//!   socket is sent next, what a confirmation removes, what `Last-Event-Id`
//!   replays, what a closed socket releases. A subscriber's state is kept in its
//!   socket's attachment, so it survives hibernation; messages and their delivery
//!   marks are in the store.
//! - [`StreamSession`] is the Worker's side of one SSE stream: the preamble, one
//!   event per pushed message, the confirmation once the runtime has taken the
//!   event, keep-alives and the idle deadline.
//!
//! At most [`STREAM_WINDOW`] messages are in flight per stream socket (one per
//! long poll): the object pushes more as the Worker confirms, and a broken socket
//! holds at most that many, which go back to the queue. The Worker writes every
//! message it has in one chunk and confirms cumulatively (all up to a sequence
//! number) once the runtime has taken the chunk, so under load one confirmation
//! covers many messages.

use serde::{Deserialize, Serialize};

use super::mailbox::Mailbox;
use super::permission::Identity;
use crate::protocol::error::ExchangeError;
use crate::protocol::sse;
use crate::store::{MailboxStore, QueuedMessage, Replay};

type Result<T> = std::result::Result<T, ExchangeError>;

/// Most messages pushed to one stream socket and not yet confirmed.
pub const STREAM_WINDOW: usize = 16;

/// One socket's delivery state at the mailbox object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscriber {
    /// Checked again before every push: a mailbox unshared mid-stream stops.
    pub caller: Identity,
    pub kind: SubscriberKind,
    /// How long confirmed messages stay replayable (`REPLAY_WINDOW_S` as the
    /// Worker that opened the socket read it).
    pub replay_window_s: f64,
    /// The messages pushed to the socket and not yet confirmed, oldest first:
    /// leased, so no other socket gets them; back in the queue if it closes.
    pub pending: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum SubscriberKind {
    /// A listen stream. `replay_after`: it still gets again the delivered
    /// messages after this one (it reconnected with `Last-Event-Id`); advanced as
    /// they are pushed, `None` once the replay is done.
    Stream { replay_after: Option<u64> },
    /// A long poll: one message, then the Worker closes the socket.
    Poll { served: bool },
}

impl Subscriber {
    /// How many more messages it may be sent now.
    fn room(&self) -> usize {
        match self.kind {
            SubscriberKind::Stream { .. } => STREAM_WINDOW.saturating_sub(self.pending.len()),
            SubscriberKind::Poll { served } => usize::from(!served),
        }
    }
}

/// What the object does for one subscriber after a change.
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    /// Send this message (it is added to the subscriber's `pending`).
    Message(QueuedMessage),
    /// Tell the Worker why its stream or poll ends, then close the socket.
    End(ExchangeError),
}

/// What a new subscription starts with.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub subscriber: Subscriber,
    /// Other subscribers (by index) whose pending messages the new stream took
    /// over: they are superseded and their sockets are closed.
    pub superseded: Vec<usize>,
}

impl<S: MailboxStore> Mailbox<S> {
    /// A new listen stream or long poll by `caller`. With `last_event_id` (a
    /// stream that reconnects), the messages up to it are confirmed, and the
    /// delivered ones after it, still in the replay window, are sent again
    /// before the queue. Messages after it that another socket
    /// holds unconfirmed are taken over, in order: that socket is the broken
    /// stream this one replaces.
    pub fn subscribe(
        &mut self,
        caller: &Identity,
        kind: SubscriberKind,
        last_event_id: Option<u64>,
        replay_window_s: f64,
        others: &mut [Subscriber],
        now: f64,
    ) -> Result<Opened> {
        self.active_record(caller, now)?;
        let mut superseded = Vec::new();
        let mut kind = kind;
        if let (SubscriberKind::Stream { replay_after }, Some(after)) = (&mut kind, last_event_id) {
            for (index, other) in others.iter_mut().enumerate() {
                if other.pending.is_empty() || !matches!(other.kind, SubscriberKind::Stream { .. })
                {
                    continue;
                }
                for seq in std::mem::take(&mut other.pending) {
                    if seq <= after {
                        // The client saw it: the confirmation was lost with the stream.
                        self.store_mut().mark_delivered(seq, now)?;
                    }
                }
                superseded.push(index);
            }
            // A stream is sent the oldest message first, so a message up to
            // `after` that is neither delivered nor held by a socket went to this
            // client's broken stream, and its confirmation was lost with the
            // Worker or the object (a restart): the client saw it.
            let held: Vec<u64> = others
                .iter()
                .flat_map(|other| other.pending.iter().copied())
                .collect();
            let seen: Vec<u64> = self
                .store()
                .deliverable(None, held.len() + STREAM_WINDOW)?
                .into_iter()
                .map(|message| message.seq)
                .filter(|seq| *seq <= after && !held.contains(seq))
                .collect();
            for seq in seen {
                self.store_mut().mark_delivered(seq, now)?;
            }
            *replay_after = Some(after);
        }
        Ok(Opened {
            subscriber: Subscriber {
                caller: caller.clone(),
                kind,
                replay_window_s,
                pending: Vec::new(),
            },
            superseded,
        })
    }

    /// After anything that may let a message go out (a subscription, a delivery,
    /// a confirmation, a socket closing): what each subscriber that waits is
    /// sent, oldest message first, none to two sockets. Subscribers whose caller
    /// lost access, or of a terminated mailbox, are told to end.
    pub fn dispatch(&self, subscribers: &mut [Subscriber], now: f64) -> Result<Vec<(usize, Push)>> {
        let mut pushes = Vec::new();
        let mut leased: Vec<u64> = subscribers
            .iter()
            .flat_map(|s| s.pending.iter().copied())
            .collect();
        for (index, subscriber) in subscribers.iter_mut().enumerate() {
            let room = subscriber.room();
            if room == 0 {
                continue;
            }
            if let Err(error) = self.ensure_active(&subscriber.caller) {
                pushes.push((index, Push::End(error)));
                continue;
            }
            let replay = match subscriber.kind {
                SubscriberKind::Stream {
                    replay_after: Some(after),
                } => Some(Replay {
                    after,
                    since: now - subscriber.replay_window_s,
                }),
                _ => None,
            };
            let next: Vec<QueuedMessage> = self
                .store()
                .deliverable(replay, leased.len() + room)?
                .into_iter()
                .filter(|message| !leased.contains(&message.seq))
                .take(room)
                .collect();
            if next.len() < room {
                if let SubscriberKind::Stream { replay_after } = &mut subscriber.kind {
                    // Nothing more to replay: from now on only the queue.
                    *replay_after = None;
                }
            }
            for message in next {
                leased.push(message.seq);
                subscriber.pending.push(message.seq);
                match &mut subscriber.kind {
                    SubscriberKind::Stream {
                        replay_after: Some(after),
                    } => *after = message.seq,
                    SubscriberKind::Stream { replay_after: None } => {}
                    SubscriberKind::Poll { served } => *served = true,
                }
                pushes.push((index, Push::Message(message)));
            }
        }
        Ok(pushes)
    }

    /// The Worker wrote every message it was sent up to `seq` to its client
    /// (confirmations are cumulative): a stream's are kept for replay, a poll's
    /// is taken (as by `GET /message`). Idempotent; a confirmation for a message the subscriber no
    /// longer holds (taken over) still counts, since its client got it.
    pub fn confirm(&mut self, subscriber: &mut Subscriber, seq: u64, now: f64) -> Result<()> {
        let mut confirmed: Vec<u64> = Vec::new();
        subscriber.pending.retain(|held| {
            let done = *held <= seq;
            if done {
                confirmed.push(*held);
            }
            !done
        });
        if !confirmed.contains(&seq) {
            confirmed.push(seq);
        }
        for seq in confirmed {
            match subscriber.kind {
                SubscriberKind::Stream { .. } => self.store_mut().mark_delivered(seq, now)?,
                SubscriberKind::Poll { .. } => self.store_mut().take(seq)?,
            }
        }
        if let Some(record) = self.current()? {
            self.read(record, now)?;
        }
        Ok(())
    }
}

/// A Worker confirms what the runtime took at most this long after, or sooner
/// once [`CONFIRM_BATCH`] messages wait: one object event then covers many
/// messages, long before the object could hibernate (10 s idle) or the stream's
/// window fills.
pub const CONFIRM_DELAY_S: f64 = 0.25;
pub const CONFIRM_BATCH: usize = STREAM_WINDOW / 2;

/// What the Worker does next for one SSE stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamStep {
    /// Write this chunk to the client.
    Write(String),
    /// Tell the object that the client's connection took every message up to
    /// this one, then ask again.
    Confirm(u64),
    /// Write a keep-alive comment and ping the object's socket (answered by the
    /// runtime without waking the object), so neither connection sits silent.
    KeepAlive,
    /// Wait for a message until `until`, then ask again.
    Wait { until: f64 },
    /// End the stream cleanly (the client reconnects after `retry`).
    End,
}

/// The Worker's side of one listen stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSession {
    timeout_s: f64,
    keepalive_s: f64,
    retry_ms: u64,
    opened: bool,
    ended: bool,
    /// The last event of the chunk written last, and how many events it held:
    /// taken once the runtime asks for the next chunk.
    written: Option<(u64, usize)>,
    /// The last event the runtime took and the object was not told of yet.
    taken: Option<u64>,
    /// How many taken events wait for the confirmation.
    taken_count: usize,
    /// The confirmation goes out then at the latest.
    confirm_due: f64,
    /// The stream ends if no message arrives before this.
    idle_deadline: f64,
    /// A keep-alive is due then.
    keepalive_due: f64,
}

impl StreamSession {
    pub fn new(now: f64, timeout_s: f64, keepalive_s: f64, retry_ms: u64) -> Self {
        Self {
            timeout_s,
            keepalive_s,
            retry_ms,
            opened: false,
            ended: false,
            written: None,
            taken: None,
            taken_count: 0,
            confirm_due: f64::INFINITY,
            idle_deadline: now + timeout_s,
            keepalive_due: now + keepalive_s,
        }
    }

    /// The runtime asks for the next chunk, so it has taken the previous one:
    /// its events are owed a confirmation.
    pub fn next_pulled(&mut self, now: f64) {
        if let Some((last, count)) = self.written.take() {
            if self.taken.is_none() {
                self.confirm_due = now + CONFIRM_DELAY_S;
            }
            self.taken = Some(last);
            self.taken_count += count;
        }
    }

    /// What to do with nothing received.
    pub fn step(&mut self, now: f64) -> StreamStep {
        if self.ended {
            return StreamStep::End;
        }
        if !self.opened {
            self.opened = true;
            return StreamStep::Write(sse::preamble(self.retry_ms));
        }
        if self.taken_count >= CONFIRM_BATCH || now >= self.confirm_due {
            if let Some(last) = self.take_confirmation() {
                return StreamStep::Confirm(last);
            }
        }
        if now >= self.idle_deadline {
            return self.end();
        }
        if now >= self.keepalive_due {
            self.keepalive_due = now + self.keepalive_s;
            return StreamStep::KeepAlive;
        }
        StreamStep::Wait {
            until: self
                .idle_deadline
                .min(self.keepalive_due)
                .min(self.confirm_due),
        }
    }

    /// The object pushed messages (oldest first): write them as events, all in
    /// one chunk.
    pub fn messages(&mut self, messages: &[(u64, String)], now: f64) -> StreamStep {
        let Some((last, _)) = messages.last() else {
            return self.step(now);
        };
        if self.ended {
            return StreamStep::End;
        }
        self.written = Some((*last, messages.len()));
        self.idle_deadline = now + self.timeout_s;
        self.keepalive_due = now + self.keepalive_s;
        StreamStep::Write(
            messages
                .iter()
                .map(|(seq, text)| sse::event(*seq, text))
                .collect(),
        )
    }

    /// The object ended the subscription, or its socket closed. Events written
    /// but not taken are not confirmed: the object releases them.
    pub fn end(&mut self) -> StreamStep {
        self.ended = true;
        self.written = None;
        StreamStep::End
    }

    /// The confirmation owed for what the runtime took, if any: sent when it
    /// is due, and before the Worker closes its socket.
    pub fn take_confirmation(&mut self) -> Option<u64> {
        self.taken_count = 0;
        self.confirm_due = f64::INFINITY;
        self.taken.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::expiry::tests::TEST_EXPIRY;
    use crate::protocol::entity::{EntityId, Role};
    use crate::protocol::message::tests::{entity, message_text};
    use crate::protocol::message::IncomingMessage;
    use crate::store::memory::MemoryMailbox;
    use crate::store::RECYCLE_LOOKAHEAD;
    use uuid::Uuid;

    const WINDOW: f64 = 60.0;

    fn owner() -> Identity {
        Identity::anonymous()
    }

    fn mailbox() -> (Mailbox<MemoryMailbox>, EntityId) {
        let id = entity(Role::Agent);
        let mut mailbox = Mailbox::new(MemoryMailbox::default(), TEST_EXPIRY);
        mailbox.create(&owner(), &id, None, 0.0).unwrap();
        (mailbox, id)
    }

    fn send(mailbox: &mut Mailbox<MemoryMailbox>, dest: &EntityId, now: f64) -> u64 {
        let text = message_text(&entity(Role::User), dest, "response", Uuid::new_v4());
        let message = IncomingMessage::parse(text).unwrap();
        mailbox.deliver(None, &message, now, WINDOW).unwrap()
    }

    /// `count` messages sent one second apart, from 1 s; their sequence numbers.
    fn send_many(mailbox: &mut Mailbox<MemoryMailbox>, dest: &EntityId, count: usize) -> Vec<u64> {
        (0..count)
            .map(|i| send(mailbox, dest, 1.0 + i as f64))
            .collect()
    }

    fn stream(mailbox: &mut Mailbox<MemoryMailbox>, last_event_id: Option<u64>) -> Subscriber {
        mailbox
            .subscribe(
                &owner(),
                SubscriberKind::Stream { replay_after: None },
                last_event_id,
                WINDOW,
                &mut [],
                0.0,
            )
            .unwrap()
            .subscriber
    }

    fn pushed(pushes: &[(usize, Push)]) -> Vec<(usize, u64)> {
        pushes
            .iter()
            .map(|(index, push)| match push {
                Push::Message(message) => (*index, message.seq),
                Push::End(error) => panic!("unexpected end: {error:?}"),
            })
            .collect()
    }

    #[test]
    fn a_stream_gets_a_window_of_messages_and_more_as_it_confirms() {
        let (mut mailbox, id) = mailbox();
        let count = STREAM_WINDOW + 3;
        let seqs = send_many(&mut mailbox, &id, count);
        let mut subs = vec![stream(&mut mailbox, None)];
        let first: Vec<(usize, u64)> = seqs[..STREAM_WINDOW].iter().map(|seq| (0, *seq)).collect();
        assert_eq!(pushed(&mailbox.dispatch(&mut subs, 0.0).unwrap()), first);
        // Nothing more until the Worker confirms.
        assert!(mailbox.dispatch(&mut subs, 0.0).unwrap().is_empty());
        // One confirmation covers everything up to it.
        mailbox.confirm(&mut subs[0], seqs[1], 50.0).unwrap();
        assert_eq!(
            pushed(&mailbox.dispatch(&mut subs, 0.0).unwrap()),
            [(0, seqs[STREAM_WINDOW]), (0, seqs[STREAM_WINDOW + 1])]
        );
        // Confirmed messages are no longer queued, but kept.
        assert_eq!(
            mailbox.stats(&owner(), 1.0).unwrap().queued,
            count as u64 - 2
        );
    }

    #[test]
    fn two_sockets_never_get_the_same_message() {
        let (mut mailbox, id) = mailbox();
        let mut subs = vec![stream(&mut mailbox, None), stream(&mut mailbox, None)];
        // The first socket's window fills first.
        for i in 0..STREAM_WINDOW {
            send(&mut mailbox, &id, i as f64);
        }
        mailbox.dispatch(&mut subs, 0.0).unwrap();
        let a = send(&mut mailbox, &id, 100.0);
        let b = send(&mut mailbox, &id, 101.0);
        assert_eq!(
            pushed(&mailbox.dispatch(&mut subs, 0.0).unwrap()),
            [(1, a), (1, b)]
        );
        assert!(subs[0]
            .pending
            .iter()
            .all(|seq| !subs[1].pending.contains(seq)));
    }

    #[test]
    fn a_closed_socket_releases_its_unconfirmed_message_to_the_next_listener() {
        let (mut mailbox, id) = mailbox();
        let a = send(&mut mailbox, &id, 1.0);
        let mut subs = vec![stream(&mut mailbox, None)];
        mailbox.dispatch(&mut subs, 0.0).unwrap();
        // The socket closes: its subscriber is dropped, and with it the lease.
        subs.clear();
        subs.push(stream(&mut mailbox, None));
        assert_eq!(pushed(&mailbox.dispatch(&mut subs, 0.0).unwrap()), [(0, a)]);
    }

    #[test]
    fn last_event_id_replays_confirmed_messages_after_it_then_the_queue() {
        let (mut mailbox, id) = mailbox();
        let seqs = send_many(&mut mailbox, &id, 4);
        let mut subs = vec![stream(&mut mailbox, None)];
        // All four are pushed; the first three written and confirmed; the client
        // read only the first, and the stream broke.
        assert_eq!(mailbox.dispatch(&mut subs, 0.0).unwrap().len(), 4);
        mailbox.confirm(&mut subs[0], seqs[2], 10.0).unwrap();
        let mut subs = vec![stream(&mut mailbox, Some(seqs[0]))];
        let again = pushed(&mailbox.dispatch(&mut subs, 5.0 + WINDOW).unwrap());
        let expected: Vec<(usize, u64)> = seqs[1..].iter().map(|seq| (0, *seq)).collect();
        assert_eq!(again, expected);
        mailbox.confirm(&mut subs[0], seqs[3], 21.0).unwrap();
        assert!(mailbox
            .dispatch(&mut subs, 5.0 + WINDOW)
            .unwrap()
            .is_empty());
        assert_eq!(mailbox.stats(&owner(), 1.0).unwrap().queued, 0);
    }

    #[test]
    fn replay_stops_at_the_window() {
        let (mut mailbox, id) = mailbox();
        let old = send(&mut mailbox, &id, 1.0);
        let recent = send(&mut mailbox, &id, 2.0);
        let mut subs = vec![stream(&mut mailbox, None)];
        mailbox.dispatch(&mut subs, 0.0).unwrap();
        mailbox.confirm(&mut subs[0], old, 10.0).unwrap();
        mailbox.dispatch(&mut subs, 0.0).unwrap();
        mailbox.confirm(&mut subs[0], recent, 80.0).unwrap();
        // At 100 s with a 60 s window, only the message confirmed at 80 s replays.
        let mut subs = vec![stream(&mut mailbox, Some(0))];
        assert_eq!(
            pushed(&mailbox.dispatch(&mut subs, 100.0).unwrap()),
            [(0, recent)]
        );
    }

    #[test]
    fn a_reconnect_takes_over_what_the_broken_stream_held_in_order() {
        let (mut mailbox, id) = mailbox();
        let seqs = send_many(&mut mailbox, &id, 3);
        let mut subs = vec![stream(&mut mailbox, None)];
        mailbox.dispatch(&mut subs, 0.0).unwrap();
        mailbox.confirm(&mut subs[0], seqs[0], 5.0).unwrap();
        mailbox.dispatch(&mut subs, 0.0).unwrap();
        // The client read seqs[1] but the stream broke before the confirmation,
        // and the old socket has not closed yet.
        let opened = mailbox
            .subscribe(
                &owner(),
                SubscriberKind::Stream { replay_after: None },
                Some(seqs[1]),
                WINDOW,
                &mut subs,
                6.0,
            )
            .unwrap();
        assert_eq!(opened.superseded, [0]);
        assert!(subs[0].pending.is_empty());
        subs.push(opened.subscriber);
        subs.remove(0);
        assert_eq!(
            pushed(&mailbox.dispatch(&mut subs, 0.0).unwrap()),
            [(0, seqs[2])]
        );
        assert_eq!(mailbox.stats(&owner(), 1.0).unwrap().queued, 1);
    }

    #[test]
    fn after_a_restart_last_event_id_confirms_what_the_lost_stream_showed() {
        let (mut mailbox, id) = mailbox();
        let seqs = send_many(&mut mailbox, &id, 3);
        let mut subs = vec![stream(&mut mailbox, None)];
        mailbox.dispatch(&mut subs, 0.0).unwrap();
        // The object restarts: its sockets and their unconfirmed messages are
        // gone. The client had read the first two.
        let mut subs = vec![stream(&mut mailbox, Some(seqs[1]))];
        assert_eq!(
            pushed(&mailbox.dispatch(&mut subs, 0.0).unwrap()),
            [(0, seqs[2])]
        );
    }

    #[test]
    fn a_reconnect_gets_again_what_the_broken_stream_held_but_the_client_missed() {
        let (mut mailbox, id) = mailbox();
        let a = send(&mut mailbox, &id, 1.0);
        let mut subs = vec![stream(&mut mailbox, None)];
        mailbox.dispatch(&mut subs, 0.0).unwrap();
        let opened = mailbox
            .subscribe(
                &owner(),
                SubscriberKind::Stream { replay_after: None },
                Some(a - 1),
                WINDOW,
                &mut subs,
                6.0,
            )
            .unwrap();
        let mut subs = vec![opened.subscriber];
        assert_eq!(pushed(&mailbox.dispatch(&mut subs, 0.0).unwrap()), [(0, a)]);
    }

    #[test]
    fn a_poll_gets_one_message_and_its_confirmation_removes_it() {
        let (mut mailbox, id) = mailbox();
        let a = send(&mut mailbox, &id, 1.0);
        send(&mut mailbox, &id, 2.0);
        let opened = mailbox
            .subscribe(
                &owner(),
                SubscriberKind::Poll { served: false },
                None,
                WINDOW,
                &mut [],
                0.0,
            )
            .unwrap();
        let mut subs = vec![opened.subscriber];
        assert_eq!(pushed(&mailbox.dispatch(&mut subs, 0.0).unwrap()), [(0, a)]);
        mailbox.confirm(&mut subs[0], a, 3.0).unwrap();
        assert!(mailbox.dispatch(&mut subs, 0.0).unwrap().is_empty());
        assert_eq!(mailbox.stats(&owner(), 1.0).unwrap().queued, 1);
        // Nothing of it is kept for replay.
        let mut subs = vec![stream(&mut mailbox, Some(0))];
        assert_ne!(pushed(&mailbox.dispatch(&mut subs, 0.0).unwrap()), [(0, a)]);
    }

    #[test]
    fn subscribing_needs_an_active_mailbox_and_termination_ends_every_subscriber() {
        let (mut mailbox, _) = mailbox();
        let mut subs = vec![stream(&mut mailbox, None)];
        mailbox.terminate(&owner(), 1.0).unwrap();
        let pushes = mailbox.dispatch(&mut subs, 0.0).unwrap();
        assert_eq!(pushes, [(0, Push::End(ExchangeError::Terminated))]);
        let again = mailbox.subscribe(
            &owner(),
            SubscriberKind::Stream { replay_after: None },
            None,
            WINDOW,
            &mut [],
            2.0,
        );
        assert_eq!(again, Err(ExchangeError::Terminated));
    }

    #[test]
    fn a_confirmed_row_out_of_the_window_is_recycled_by_the_next_send() {
        let (mut mailbox, id) = mailbox();
        let a = send(&mut mailbox, &id, 1.0);
        let mut subs = vec![stream(&mut mailbox, None)];
        mailbox.dispatch(&mut subs, 0.0).unwrap();
        mailbox.confirm(&mut subs[0], a, 2.0).unwrap();
        send(&mut mailbox, &id, 2.0 + WINDOW + 1.0);
        // The old message is gone: a replay from the start finds only the new one.
        let mut subs = vec![stream(&mut mailbox, Some(0))];
        let pushes = pushed(&mailbox.dispatch(&mut subs, 0.0).unwrap());
        assert_ne!(pushes[0].1, a);
    }

    /// A request from a user to `dest` at `now`: its sequence number and tag.
    fn send_request(
        mailbox: &mut Mailbox<MemoryMailbox>,
        dest: &EntityId,
        now: f64,
    ) -> (u64, Uuid) {
        let tag = Uuid::new_v4();
        let text = message_text(&entity(Role::User), dest, "request", tag);
        let message = IncomingMessage::parse(text).unwrap();
        (mailbox.deliver(None, &message, now, WINDOW).unwrap(), tag)
    }

    /// `mailbox` answers the request `tag` (its agent sent the response).
    fn answer(mailbox: &mut Mailbox<MemoryMailbox>, id: &EntityId, tag: Uuid, now: f64) {
        let text = message_text(id, &entity(Role::User), "response", tag);
        let response = IncomingMessage::parse(text).unwrap();
        mailbox.note_sent(&response.header, None, now).unwrap();
    }

    #[test]
    fn a_request_taken_by_a_receive_stays_in_flight_but_is_never_replayed() {
        let (mut mailbox, id) = mailbox();
        let (taken, tag) = send_request(&mut mailbox, &id, 1.0);
        let got = mailbox.receive(&owner(), &[], 2.0).unwrap().unwrap();
        assert_eq!(got.seq, taken);
        let stats = mailbox.stats(&owner(), 2.0).unwrap();
        assert_eq!((stats.queued, stats.in_progress), (0, 1));
        // A stream replaying from the start gets only what arrives later.
        let later = send(&mut mailbox, &id, 3.0);
        let mut subs = vec![stream(&mut mailbox, Some(0))];
        assert_eq!(
            pushed(&mailbox.dispatch(&mut subs, 4.0).unwrap()),
            [(0, later)]
        );
        answer(&mut mailbox, &id, tag, 5.0);
        let stats = mailbox.stats(&owner(), 5.0).unwrap();
        assert_eq!((stats.completed, stats.in_progress), (1, 0));
        // Answered, it is gone for good: still not replayed.
        let mut subs = vec![stream(&mut mailbox, Some(0))];
        assert_eq!(
            pushed(&mailbox.dispatch(&mut subs, 6.0).unwrap()),
            [(0, later)]
        );
    }

    #[test]
    fn a_request_delivered_to_a_stream_is_replayed_and_stays_in_flight() {
        let (mut mailbox, id) = mailbox();
        let (seq, tag) = send_request(&mut mailbox, &id, 1.0);
        let mut subs = vec![stream(&mut mailbox, None)];
        mailbox.dispatch(&mut subs, 1.0).unwrap();
        mailbox.confirm(&mut subs[0], seq, 2.0).unwrap();
        let stats = mailbox.stats(&owner(), 2.0).unwrap();
        assert_eq!((stats.queued, stats.in_progress), (0, 1));
        // Answering it does not take it from the replay window.
        answer(&mut mailbox, &id, tag, 3.0);
        let mut subs = vec![stream(&mut mailbox, Some(0))];
        assert_eq!(
            pushed(&mailbox.dispatch(&mut subs, 4.0).unwrap()),
            [(0, seq)]
        );
        assert_eq!(mailbox.stats(&owner(), 4.0).unwrap().in_progress, 0);
    }

    #[test]
    fn a_send_never_recycles_the_row_of_a_request_in_flight() {
        let (mut mailbox, id) = mailbox();
        // A request and then a response, both confirmed by a stream long ago.
        let (request, tag) = send_request(&mut mailbox, &id, 1.0);
        let response = send(&mut mailbox, &id, 1.5);
        let mut subs = vec![stream(&mut mailbox, None)];
        mailbox.dispatch(&mut subs, 2.0).unwrap();
        mailbox.confirm(&mut subs[0], response, 2.0).unwrap();
        assert!(request < response);
        // Each later send may recycle an old row: not the request's.
        for i in 0..3 {
            send(&mut mailbox, &id, 100.0 + f64::from(i));
        }
        // (`in_progress` is what is in flight less what is queued: 1 − 3, so 0.)
        assert_eq!(mailbox.stats(&owner(), 104.0).unwrap().incoming, 1);
        answer(&mut mailbox, &id, tag, 105.0);
        let stats = mailbox.stats(&owner(), 105.0).unwrap();
        assert_eq!(
            (stats.completed, stats.in_progress, stats.queued),
            (1, 0, 3)
        );
    }

    #[test]
    fn a_send_looks_for_a_row_to_take_over_only_among_the_oldest() {
        let (mut mailbox, id) = mailbox();
        // As many requests as a push looks through, read and not answered...
        let tags: Vec<Uuid> = (0..RECYCLE_LOOKAHEAD)
            .map(|i| {
                let (_, tag) = send_request(&mut mailbox, &id, 1.0 + i as f64 / 100.0);
                mailbox.receive(&owner(), &[], 1.5).unwrap().unwrap();
                tag
            })
            .collect();
        // ...then a message confirmed by a stream long ago.
        let old = send(&mut mailbox, &id, 2.0);
        let mut subs = vec![stream(&mut mailbox, None)];
        mailbox.dispatch(&mut subs, 2.0).unwrap();
        mailbox.confirm(&mut subs[0], old, 2.0).unwrap();
        let rows = RECYCLE_LOOKAHEAD + 1;
        assert_eq!(mailbox.store().rows(), rows);
        // Out of every window, but past the lookahead: not taken over.
        send(&mut mailbox, &id, 100.0);
        assert_eq!(mailbox.store().rows(), rows + 1);
        // One request answered: its row goes, and the next send takes over
        // the old message's row.
        answer(&mut mailbox, &id, tags[0], 101.0);
        assert_eq!(mailbox.store().rows(), rows);
        send(&mut mailbox, &id, 102.0);
        assert_eq!(mailbox.store().rows(), rows);
        assert_eq!(mailbox.stats(&owner(), 102.0).unwrap().queued, 2);
    }

    #[test]
    fn a_stream_session_opens_writes_confirms_keeps_alive_and_ends_idle() {
        let mut session = StreamSession::new(0.0, 10.0, 3.0, 100);
        assert_eq!(session.step(0.0), StreamStep::Write(sse::preamble(100)));
        session.next_pulled(0.0);
        assert_eq!(session.step(0.0), StreamStep::Wait { until: 3.0 });
        assert_eq!(session.step(3.0), StreamStep::KeepAlive);
        assert_eq!(session.step(3.5), StreamStep::Wait { until: 6.0 });
        assert_eq!(
            session.messages(&[(7, "{}".into())], 4.0),
            StreamStep::Write(sse::event(7, "{}"))
        );
        // Taken when the runtime pulls again; confirmed a moment later, once.
        session.next_pulled(4.0);
        let due = 4.0 + CONFIRM_DELAY_S;
        assert_eq!(session.step(4.0), StreamStep::Wait { until: due });
        assert_eq!(session.step(due), StreamStep::Confirm(7));
        assert_eq!(session.step(due), StreamStep::Wait { until: 7.0 });
        // A message pushes both deadlines out.
        assert_eq!(session.step(7.0), StreamStep::KeepAlive);
        assert_eq!(session.step(12.0), StreamStep::KeepAlive);
        assert_eq!(session.step(13.0), StreamStep::Wait { until: 14.0 });
        assert_eq!(session.step(14.0), StreamStep::End);
        assert_eq!(session.step(14.0), StreamStep::End);
    }

    #[test]
    fn a_batch_of_taken_events_is_confirmed_at_once_by_the_last() {
        let mut session = StreamSession::new(0.0, 10.0, 3.0, 100);
        session.step(0.0);
        let batch: Vec<(u64, String)> = (1..=CONFIRM_BATCH as u64)
            .map(|seq| (seq, "{}".to_owned()))
            .collect();
        let chunk: String = batch
            .iter()
            .map(|(seq, text)| sse::event(*seq, text))
            .collect();
        assert_eq!(session.messages(&batch, 1.0), StreamStep::Write(chunk));
        session.next_pulled(1.0);
        assert_eq!(session.step(1.0), StreamStep::Confirm(CONFIRM_BATCH as u64));
        // An empty batch writes nothing.
        assert_eq!(session.messages(&[], 1.5), StreamStep::Wait { until: 4.0 });
    }

    #[test]
    fn an_ended_session_confirms_only_what_the_runtime_took() {
        let mut session = StreamSession::new(0.0, 10.0, 3.0, 100);
        session.step(0.0);
        session.messages(&[(7, "{}".into())], 1.0);
        session.next_pulled(1.0);
        session.messages(&[(8, "{}".into())], 1.1);
        assert_eq!(session.end(), StreamStep::End);
        // 7 was taken and is owed; 8 was written but never taken.
        assert_eq!(session.take_confirmation(), Some(7));
        assert_eq!(session.take_confirmation(), None);
        assert_eq!(session.messages(&[(9, "{}".into())], 2.0), StreamStep::End);
    }
}

//! The Durable Object of one mailbox (named by its uid). It owns the mailbox's
//! SQLite (record, queue, in-flight requests, shares; the record and shares also
//! cached in memory) and the in-memory waiters:
//! a `GET /message` or listen stream with nothing to read parks a oneshot here,
//! and the next delivery (or termination, or a released lease) wakes it at once.
//! The object runs one event at a time, so no `RefCell` borrow is held over `await`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::stream;
use worker::{durable_object, Delay, Env, Headers, Request, Response, State};

use super::sqlite::rows_written_so_far;
use super::sqlite::SqliteMailbox;
use super::{now_s, outcome_response, read_call};
use crate::core::mailbox::{Leases, Mailbox as MailboxRules};
use crate::core::permission::Identity;
use crate::protocol::error::ExchangeError;
use crate::protocol::message::IncomingMessage;
use crate::protocol::sse;
use crate::rpc::{MailboxCall, Outcome, Reply};

/// How long the client waits before reconnecting after a stream ends: short, so a
/// listener that timed out idle is back within a blink.
const RETRY_MS: u64 = 100;

#[durable_object]
pub struct Mailbox {
    store: SqliteMailbox,
    live: Rc<Live>,
}

/// What exists only in memory, shared with open streams.
#[derive(Default)]
struct Live {
    leases: RefCell<Leases>,
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
}

impl Live {
    /// A future that completes at the next [`Live::wake_all`].
    fn next_wake(&self) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        let mut waiters = self.waiters.borrow_mut();
        waiters.retain(|waiter| !waiter.is_canceled());
        waiters.push(sender);
        receiver
    }

    fn wake_all(&self) {
        for waiter in self.waiters.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
    }
}

impl worker::DurableObject for Mailbox {
    fn new(state: State, _env: Env) -> Self {
        Self {
            store: SqliteMailbox::new(state.storage().sql(), Rc::default()),
            live: Rc::default(),
        }
    }

    async fn fetch(&self, request: Request) -> worker::Result<Response> {
        let rows_before = rows_written_so_far();
        let outcome = match read_call(&request).await {
            Err(error) => Err(error),
            Ok(MailboxCall::Receive { caller, timeout_s }) => {
                self.receive(&caller, timeout_s).await
            }
            Ok(MailboxCall::Listen {
                caller,
                timeout_s,
                keepalive_s,
            }) => match self.rules().ensure_active(&caller) {
                Ok(()) => {
                    let listener = Listener::new(self, caller, timeout_s, keepalive_s);
                    return listener.into_response();
                }
                Err(error) => Err(error),
            },
            Ok(call) => self.apply(call),
        };
        outcome_response(&outcome, rows_before)
    }
}

impl Mailbox {
    fn rules(&self) -> MailboxRules<SqliteMailbox> {
        MailboxRules::new(self.store.clone())
    }

    /// Every call that answers at once.
    fn apply(&self, call: MailboxCall) -> Outcome {
        let mut mailbox = self.rules();
        let now = now_s();
        match call {
            MailboxCall::Create {
                caller,
                mailbox: id,
                agent,
            } => mailbox
                .create(&caller, &id, agent, now)
                .map(Reply::Registered),
            MailboxCall::Status { caller } => mailbox.status(&caller).map(Reply::Status),
            MailboxCall::Terminate { caller } => {
                let termination = mailbox.terminate(&caller, now)?;
                // Waiting receivers re-check and answer 419; open streams end.
                self.live.wake_all();
                Ok(Reply::Terminated(termination))
            }
            MailboxCall::Deliver {
                caller,
                message,
                from_here,
            } => {
                let message = IncomingMessage::parse(message)
                    .map_err(|reason| ExchangeError::field("message", reason))?;
                mailbox.deliver(caller.as_ref(), &message, now)?;
                if from_here {
                    mailbox.note_sent(&message.header)?;
                }
                self.live.wake_all();
                Ok(Reply::Done)
            }
            MailboxCall::NoteSent { header } => mailbox.note_sent(&header).map(|()| Reply::Done),
            MailboxCall::Heartbeat { caller } => {
                mailbox.heartbeat(&caller, now).map(|()| Reply::Done)
            }
            MailboxCall::HeartbeatAge { caller } => {
                mailbox.heartbeat_age(&caller, now).map(Reply::HeartbeatAge)
            }
            MailboxCall::Stats { caller } => mailbox.stats(&caller).map(Reply::Stats),
            MailboxCall::Share { caller, group_id } => {
                mailbox.share(&caller, &group_id).map(Reply::Registered)
            }
            MailboxCall::ListShares { caller } => mailbox.shares(&caller).map(Reply::Shares),
            MailboxCall::Unshare { caller, group_id } => {
                mailbox.unshare(&caller, &group_id).map(Reply::Registered)
            }
            MailboxCall::Receive { .. } | MailboxCall::Listen { .. } => Err(
                ExchangeError::internal("waiting calls are not applied directly"),
            ),
        }
    }

    /// Long poll: answer with the oldest message, waiting up to `timeout_s` for one.
    async fn receive(&self, caller: &Identity, timeout_s: f64) -> Outcome {
        let deadline = now_s() + timeout_s;
        loop {
            let taken = self
                .rules()
                .receive(caller, &mut self.live.leases.borrow_mut())?;
            if let Some(message) = taken {
                return Ok(Reply::Message(message.text));
            }
            let remaining = deadline - now_s();
            if remaining <= 0.0 {
                return Err(ExchangeError::Timeout);
            }
            let timer = Delay::from(Duration::from_secs_f64(remaining));
            // Woken or timed out, the loop re-reads the queue before deciding.
            let _ = select(self.live.next_wake(), timer).await;
        }
    }
}

/// One open listen stream's state. Dropping it (stream ended or client gone)
/// releases a message it took but had not seen acknowledged, for the next reader.
struct Listener {
    store: SqliteMailbox,
    live: Rc<Live>,
    caller: Identity,
    timeout_s: f64,
    keepalive_s: f64,
    opened: bool,
    /// The message sent in the previous chunk, acknowledged when the next is asked for.
    unacknowledged: Option<u64>,
    /// When the stream ends if nothing arrives.
    idle_deadline: f64,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(seq) = self.unacknowledged.take() {
            self.live.leases.borrow_mut().release(seq);
            self.live.wake_all();
        }
    }
}

enum Step {
    Send(String),
    End,
}

impl Listener {
    fn new(mailbox: &Mailbox, caller: Identity, timeout_s: f64, keepalive_s: f64) -> Self {
        Self {
            store: mailbox.store.clone(),
            live: mailbox.live.clone(),
            caller,
            timeout_s,
            keepalive_s,
            opened: false,
            unacknowledged: None,
            idle_deadline: now_s() + timeout_s,
        }
    }

    async fn next_chunk(&mut self) -> Step {
        if !self.opened {
            self.opened = true;
            return Step::Send(sse::preamble(RETRY_MS));
        }
        let mut rules = MailboxRules::new(self.store.clone());
        if let Some(seq) = self.unacknowledged.take() {
            if let Err(error) = rules.acknowledge(seq, &mut self.live.leases.borrow_mut()) {
                worker::console_error!("listen: acknowledging {seq} failed: {error:?}");
                return Step::End;
            }
        }
        loop {
            let taken = rules.take(&self.caller, &mut self.live.leases.borrow_mut());
            match taken {
                Ok(Some(message)) => {
                    self.unacknowledged = Some(message.seq);
                    self.idle_deadline = now_s() + self.timeout_s;
                    return Step::Send(sse::event(message.seq, &message.text));
                }
                Ok(None) => {}
                Err(ExchangeError::Terminated) => return Step::End,
                Err(error) => {
                    worker::console_error!("listen: {error:?}");
                    return Step::End;
                }
            }
            let idle_left = self.idle_deadline - now_s();
            if idle_left <= 0.0 {
                return Step::End;
            }
            let nap = idle_left.min(self.keepalive_s);
            let timer = Delay::from(Duration::from_secs_f64(nap));
            if let Either::Right(_) = select(self.live.next_wake(), timer).await {
                if self.idle_deadline - now_s() > 0.0 {
                    return Step::Send(sse::KEEP_ALIVE.to_owned());
                }
            }
        }
    }
}

impl Listener {
    /// The SSE stream: a first byte at once, then one event per message, keep-
    /// alives while idle, and the end after `timeout_s` without a message or when
    /// the mailbox is terminated.
    fn into_response(self) -> worker::Result<Response> {
        let chunks = stream::unfold(self, |mut listener| async move {
            match listener.next_chunk().await {
                Step::Send(chunk) => {
                    Some((Ok::<Vec<u8>, worker::Error>(chunk.into_bytes()), listener))
                }
                Step::End => None,
            }
        });
        let headers = Headers::new();
        headers.set("content-type", "text/event-stream")?;
        headers.set("cache-control", "no-cache")?;
        Ok(Response::from_stream(chunks)?.with_headers(headers))
    }
}

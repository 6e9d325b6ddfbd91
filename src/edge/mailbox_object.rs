//! The Durable Object of one mailbox (named by its uid). It owns the mailbox's
//! SQLite (record, queue with delivery marks, in-flight requests, shares; the
//! record and shares also cached in memory) and the sockets of the Worker
//! requests that wait for its messages.
//!
//! A listen stream or long poll is held by the Worker, which opens a WebSocket to
//! this object; the object accepts it with the hibernation API, so while nothing
//! happens it can be evicted from memory with the socket still open, and the
//! runtime answers the Worker's pings itself. A delivery wakes it: it stores the
//! message, then pushes it to a waiting socket ([`crate::core::listen`] decides
//! which). Each socket's state lives in its attachment, which survives
//! hibernation; the in-memory copy is rebuilt from the attachments after a wake.
//! The object never holds a `RefCell` borrow across an `await`.
//!
//! Expiry and follow-ups run on the object's one alarm: every call's rules say by
//! when it must ring (an arrival's queue expiry, a follow-up's retry, the
//! mailbox's removal), and the object moves it earlier when needed, in the same
//! turn as the call's writes (so they commit together). The work a call owes
//! other objects (terminate replies, discovery entries) is stored by the rules
//! and carried out here before the call is answered, and by the alarm until it
//! succeeds.
//!
//! Counts and stamps that change on a message's path (outgoing and completed
//! requests, heartbeats) are written at most once a second
//! ([`crate::core::mailbox::RECORD_WRITE_INTERVAL_S`]): a change staged in between is written by a
//! timer when due, which keeps the object awake until then.

use std::cell::{Cell, RefCell, RefMut};
use std::rc::Rc;
use std::time::Duration;

use futures::lock::Mutex;

use wasm_bindgen::prelude::wasm_bindgen;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::spawn_local;
use worker::{
    durable_object, js_sys, Delay, Env, Request, Response, ScheduledTime, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use super::follow_up::Reach;
use super::sqlite::rows_written_so_far;
use super::sqlite::{MailboxCache, SqliteMailbox};
use super::{answer_json, config, js_internal, now_s, read_call, unknown_call, Costs};
use crate::core::expiry::{Expiry, FOLLOW_UP_RETRY_S};
use crate::core::listen::{Push, Subscriber, SubscriberKind};
use crate::core::mailbox::{staged_write_due, AlarmWork, Mailbox as MailboxRules};
use crate::protocol::config::Config;
use crate::protocol::error::ExchangeError;
use crate::protocol::message::IncomingMessage;
use crate::rpc::{
    self, parse_confirmation, Answer, CallCosts, InstanceReport, MailboxCall, ObjectCall, Pushed,
    Subscribe, Wait, PING, PONG,
};

thread_local! {
    /// Mailbox object instances constructed by this isolate (a global: it counts
    /// across evictions, which keep the isolate).
    static CONSTRUCTED: Cell<u64> = const { Cell::new(0) };
}

/// WebSocket close code for a socket whose stream another took over.
const SUPERSEDED: u16 = 4000;

#[durable_object]
pub struct Mailbox {
    state: State,
    env: Env,
    store: SqliteMailbox,
    cache: Rc<MailboxCache>,
    /// The settings, read once per instance (the Worker checks them on every
    /// request and refuses all of them while they are bad, so only an alarm can
    /// meet bad settings here; it then uses the defaults).
    config: Config,
    /// The alarm's time, as last read or set (`None`: not read yet by this
    /// instance; `Some(None)`: no alarm is set).
    alarm: Cell<Option<Option<f64>>>,
    /// The earliest time by which the calls since the last [`Mailbox::arm`]
    /// need the alarm to ring.
    alarm_needed_by: Cell<Option<f64>>,
    /// One follow-up run at a time, so two runs never race to write the same
    /// discovery entries in different orders.
    follow_up_turn: Mutex<()>,
    /// Drawn when this instance is constructed (not a global: globals survive an
    /// eviction), so a caller can tell that the object slept and was rebuilt.
    boot_id: String,
    /// The open sockets and their subscriber states, as in their attachments;
    /// `None` until first needed after construction.
    sockets: RefCell<Option<Sockets>>,
    /// A timer will write the staged record ([`Mailbox::write_staged_when_due`]).
    staged_write_pending: Rc<Cell<bool>>,
}

/// Open sockets and their states, index for index: the rules work on
/// `subscribers` in place.
#[derive(Default)]
struct Sockets {
    handles: Vec<Handle>,
    subscribers: Vec<Subscriber>,
}

struct Handle {
    /// The tag the socket was accepted with: how an event finds its state.
    tag: String,
    ws: WebSocket,
}

impl Sockets {
    fn index_of(&self, tag: &str) -> Option<usize> {
        self.handles.iter().position(|handle| handle.tag == tag)
    }

    fn remove(&mut self, index: usize) -> Handle {
        self.subscribers.remove(index);
        self.handles.remove(index)
    }

    /// Keeps socket `index`'s attachment in step with its state, so it is right
    /// after hibernation. Stored as one JSON string: one value for the runtime to
    /// clone, where a structured object costs a runtime call per field.
    fn save(&self, index: usize) -> Result<(), ExchangeError> {
        let json = serde_json::to_string(&self.subscribers[index])
            .map_err(|e| ExchangeError::internal(format!("attachment: {e}")))?;
        self.handles[index]
            .ws
            .serialize_attachment(json)
            .map_err(|e| ExchangeError::internal(format!("attachment: {e}")))
    }
}

impl worker::DurableObject for Mailbox {
    fn new(state: State, env: Env) -> Self {
        CONSTRUCTED.with(|count| count.set(count.get() + 1));
        // Pings are answered by the runtime, without waking this object.
        match worker::worker_sys::WebSocketRequestResponsePair::new(PING, PONG) {
            Ok(pair) => {
                if let Err(error) = state.as_raw().set_websocket_auto_response(&pair) {
                    worker::console_error!("auto-response: {error:?}");
                }
            }
            Err(error) => worker::console_error!("auto-response pair: {error:?}"),
        }
        let config = config(&env).unwrap_or_else(|error| {
            worker::console_error!("mailbox settings: {error:?}");
            Config::default()
        });
        let cache = Rc::new(MailboxCache::default());
        Self {
            store: SqliteMailbox::new(state.storage().sql(), cache.clone()),
            cache,
            state,
            env,
            config,
            alarm: Cell::new(None),
            alarm_needed_by: Cell::new(None),
            follow_up_turn: Mutex::new(()),
            boot_id: random_id(),
            sockets: RefCell::new(None),
            staged_write_pending: Rc::new(Cell::new(false)),
        }
    }

    /// Only listen streams and long polls come here: a WebSocket upgrade (every
    /// other call comes by RPC, [`Mailbox::rpc`]).
    async fn fetch(&self, request: Request) -> worker::Result<Response> {
        let rows_before = rows_written_so_far();
        let subscribed = match self.read_alarm().await {
            Ok(()) => subscribe_call(&request).and_then(|call| self.subscribe(call)),
            Err(error) => Err(error),
        };
        self.arm().await;
        let outcome = match subscribed {
            Ok(Subscribed::Socket(client)) => return Response::from_websocket(client),
            Ok(Subscribed::Answered(text)) => Ok(text),
            Err(error) => Err(error),
        };
        let answer = Answer {
            outcome,
            costs: self.costs(rows_before, &Costs::default()),
        };
        Response::ok(answer_json(&answer))
    }

    /// The alarm rang: expiry's due work, then the follow-ups owed; the alarm is
    /// set again for the next due time (sooner if a follow-up failed). Each step
    /// is idempotent, since an alarm may ring more than once.
    async fn alarm(&self) -> worker::Result<Response> {
        // The alarm that rang is spent.
        self.alarm.set(Some(None));
        let now = now_s();
        let work = self.rules_then(|rules| rules.on_alarm(now));
        let next = match work {
            Ok(AlarmWork::Nothing) => None,
            Ok(AlarmWork::Next(at)) => match self.follow_up(&Costs::default()).await {
                Ok(()) => Some(at),
                Err(error) => {
                    worker::console_error!("follow-ups: {error:?}");
                    Some(at.min(now + FOLLOW_UP_RETRY_S))
                }
            },
            Ok(AlarmWork::Remove) => {
                // Waiting sockets learn the mailbox is gone.
                self.dispatch(now);
                match self.follow_up(&Costs::default()).await {
                    Ok(()) => match self.delete_storage().await {
                        Ok(()) => None,
                        Err(error) => {
                            worker::console_error!("removal: {error:?}");
                            Some(now + FOLLOW_UP_RETRY_S)
                        }
                    },
                    Err(error) => {
                        worker::console_error!("follow-ups: {error:?}");
                        Some(now + FOLLOW_UP_RETRY_S)
                    }
                }
            }
            Err(error) => {
                worker::console_error!("expiry: {error:?}");
                Some(now + FOLLOW_UP_RETRY_S)
            }
        };
        if let Some(at) = next {
            self.need_alarm_by(Some(at));
        }
        self.arm().await;
        Response::empty()
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let WebSocketIncomingMessage::String(text) = message else {
            return Ok(());
        };
        let Some(seq) = parse_confirmation(&text) else {
            return Ok(());
        };
        let confirmed = match self.read_alarm().await {
            Ok(()) => self.confirmed(&ws, seq),
            Err(error) => Err(error),
        };
        if let Err(error) = confirmed {
            worker::console_error!("confirming {seq}: {error:?}");
        }
        self.arm().await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        self.closed(&ws);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.closed(&ws);
        Ok(())
    }
}

#[wasm_bindgen(
    wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
    js_sys = ::worker::js_sys
)]
impl Mailbox {
    /// Every call but a subscription, by RPC through `src/js/entry.mjs`: `kind`
    /// names the call ([`ObjectCall::KIND`]), `call` is its JSON and `text` a
    /// delivery's message. Answers the call's [`Answer`] as JSON; never fails.
    pub async fn rpc(&self, kind: String, call: String, text: Option<String>) -> String {
        let call = call.as_str();
        match kind.as_str() {
            rpc::Create::KIND => {
                self.serve(call, text, |rules, c: rpc::Create, now| {
                    rules.create(&c.caller, &c.mailbox, c.agent, now)
                })
                .await
            }
            rpc::Status::KIND => {
                self.serve(call, text, |rules, c: rpc::Status, now| {
                    rules.status(&c.caller, now)
                })
                .await
            }
            rpc::Terminate::KIND => {
                self.serve(call, text, |rules, c: rpc::Terminate, now| {
                    rules.terminate(&c.caller, now)?;
                    // Every waiting stream and poll is told, and its socket closed.
                    self.dispatch(now);
                    Ok(())
                })
                .await
            }
            rpc::Deliver::KIND => {
                self.serve(call, text, |rules, c: rpc::Deliver, now| {
                    let message = IncomingMessage {
                        text: c.text,
                        header: c.header,
                    };
                    rules.deliver(c.caller.as_ref(), &message, now, c.replay_window_s)?;
                    if c.from_here {
                        let heartbeat_by = c.caller.as_ref().filter(|_| c.stamps_heartbeat);
                        rules.note_sent(&message.header, heartbeat_by, now)?;
                    }
                    self.dispatch(now);
                    Ok(())
                })
                .await
            }
            rpc::NoteSent::KIND => {
                self.serve(call, text, |rules, c: rpc::NoteSent, now| {
                    rules.note_sent(&c.header, c.heartbeat.as_ref(), now)
                })
                .await
            }
            rpc::Heartbeat::KIND => {
                self.serve(call, text, |rules, c: rpc::Heartbeat, now| {
                    rules.heartbeat(&c.caller, now)
                })
                .await
            }
            rpc::HeartbeatAge::KIND => {
                self.serve(call, text, |rules, c: rpc::HeartbeatAge, now| {
                    rules.heartbeat_age(&c.caller, now)
                })
                .await
            }
            rpc::GetStats::KIND => {
                self.serve(call, text, |rules, c: rpc::GetStats, now| {
                    rules.stats(&c.caller, now)
                })
                .await
            }
            rpc::Share::KIND => {
                self.serve(call, text, |rules, c: rpc::Share, now| {
                    rules.share(&c.caller, &c.group_id, now)
                })
                .await
            }
            rpc::ListShares::KIND => {
                self.serve(call, text, |rules, c: rpc::ListShares, now| {
                    rules.shares(&c.caller, now)
                })
                .await
            }
            rpc::Unshare::KIND => {
                self.serve(call, text, |rules, c: rpc::Unshare, now| {
                    rules.unshare(&c.caller, &c.group_id, now)
                })
                .await
            }
            other => unknown_call(other),
        }
    }
}

/// What a subscription got: a socket for the Worker, or an answer at once.
enum Subscribed {
    Socket(WebSocket),
    /// A long poll's message, queued already.
    Answered(String),
}

/// Reads the [`Subscribe`] call from the upgrade request's URL.
fn subscribe_call(request: &Request) -> Result<Subscribe, ExchangeError> {
    let url = request
        .url()
        .map_err(|e| ExchangeError::internal(format!("subscribe url: {e}")))?;
    let json = url
        .query_pairs()
        .find(|(name, _)| name == "call")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| ExchangeError::internal("subscribe without a call"))?;
    serde_json::from_str(&json).map_err(|e| ExchangeError::internal(format!("subscribe call: {e}")))
}

/// A short random hex id.
fn random_id() -> String {
    let draw = || (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
    format!("{:08x}{:08x}", draw(), draw())
}

impl Mailbox {
    fn rules(&self) -> MailboxRules<SqliteMailbox> {
        let expiry = Expiry {
            message_expiry_s: self.config.message_expiry_s as f64,
            gravestone_expiry_s: self.config.gravestone_expiry_s as f64,
        };
        MailboxRules::new(self.store.clone(), expiry)
    }

    /// Runs `work` on the rules, and notes by when it needs the alarm.
    fn rules_then<T>(&self, work: impl FnOnce(&mut MailboxRules<SqliteMailbox>) -> T) -> T {
        let mut rules = self.rules();
        let result = work(&mut rules);
        self.need_alarm_by(rules.alarm_by());
        result
    }

    fn need_alarm_by(&self, at: Option<f64>) {
        let earliest = match (self.alarm_needed_by.get(), at) {
            (Some(known), Some(at)) => Some(known.min(at)),
            (known, at) => known.or(at),
        };
        self.alarm_needed_by.set(earliest);
    }

    /// Learns the alarm's time, once per instance, so that [`Self::arm`] can
    /// decide without waiting (and so in the same turn as the writes).
    async fn read_alarm(&self) -> Result<(), ExchangeError> {
        if self.alarm.get().is_none() {
            let at = self
                .state
                .storage()
                .get_alarm()
                .await
                .map_err(|e| ExchangeError::internal(format!("alarm: {e}")))?;
            self.alarm.set(Some(at.map(|ms| ms as f64 / 1000.0)));
        }
        Ok(())
    }

    /// Moves the alarm earlier if the calls since the last arm need it sooner
    /// than it rings (or no alarm is set). Most calls need no change, so most
    /// write nothing. A failure is logged: the next call or alarm retries.
    async fn arm(&self) {
        self.write_staged_when_due();
        let Some(needed) = self.alarm_needed_by.take() else {
            return;
        };
        if let Some(Some(at)) = self.alarm.get() {
            if at <= needed {
                return;
            }
        }
        // An absolute time (an integer given to `set_alarm` is an offset).
        let at = js_sys::Date::new(&JsValue::from_f64((needed * 1000.0).ceil()));
        match self.state.storage().set_alarm(ScheduledTime::new(at)).await {
            Ok(()) => {
                self.cache.count_alarm_set();
                self.alarm.set(Some(Some(needed)));
            }
            Err(error) => {
                // Unknown again: the next call reads it.
                self.alarm.set(None);
                worker::console_error!("set alarm: {error}");
            }
        }
    }

    /// If a change to the record is staged, writes it when due
    /// ([`staged_write_due`]), by a timer (one at a time). Not by the
    /// alarm: setting it is billed as a row written, and setting it back for
    /// expiry another, which would cost more rows than staging saves.
    fn write_staged_when_due(&self) {
        let Some(due) = staged_write_due(&self.store) else {
            return;
        };
        if self.staged_write_pending.replace(true) {
            return;
        }
        let mut rules = self.rules();
        let wait = Duration::from_secs_f64((due - now_s()).max(0.0));
        let pending = self.staged_write_pending.clone();
        spawn_local(async move {
            Delay::from(wait).await;
            pending.set(false);
            if let Err(error) = rules.write_staged(now_s()) {
                worker::console_error!("staged record: {error:?}");
            }
        });
    }

    /// Carries out every follow-up still owed; fails with the first failure
    /// (the rest stay owed, and the alarm retries them).
    async fn follow_up(&self, costs: &Costs) -> Result<(), ExchangeError> {
        let _turn = self.follow_up_turn.lock().await;
        let rules = self.rules();
        let owed = rules.follow_ups()?;
        if owed.is_empty() {
            return Ok(());
        }
        let reach = Reach::new(&self.env, &self.config, costs)?;
        let (done, failure) = reach.carry_out(owed, rules.directory_sync()?).await;
        let mut rules = self.rules();
        for id in done {
            rules.follow_up_done(id)?;
        }
        failure.map_or(Ok(()), Err)
    }

    /// Deletes everything the expired mailbox stored, unless it was created
    /// again meanwhile; from now on it is missing.
    async fn delete_storage(&self) -> Result<(), ExchangeError> {
        let still_removed =
            self.rules().follow_ups().map(|owed| owed.is_empty())? && self.rules().is_removed()?;
        if !still_removed {
            return Ok(());
        }
        let storage = self.state.storage();
        let failed = |e: worker::Error| ExchangeError::internal(format!("delete storage: {e}"));
        storage.delete_alarm().await.map_err(failed)?;
        storage.delete_all().await.map_err(failed)?;
        self.cache.forget_all();
        self.alarm.set(Some(None));
        Ok(())
    }

    /// What a call cost here since `rows_before`, and this instance.
    fn costs(&self, rows_before: u64, costs: &Costs) -> CallCosts {
        CallCosts {
            rows_written: rows_written_so_far() - rows_before,
            object_calls: costs.object_calls.get(),
            instance: Some(InstanceReport {
                boot_id: self.boot_id.clone(),
                isolate_rows_written: rows_written_so_far(),
                object_rows_written: self.cache.rows_written(),
                isolate_objects_constructed: CONSTRUCTED.with(Cell::get),
            }),
        }
    }

    /// Serves one call of kind `C`: `apply` runs it on the rules; the alarm is
    /// moved in the same turn as its writes, and the follow-ups it owes are
    /// carried out before it is answered.
    async fn serve<C: MailboxCall>(
        &self,
        call: &str,
        text: Option<String>,
        apply: impl FnOnce(&mut MailboxRules<SqliteMailbox>, C, f64) -> Result<C::Reply, ExchangeError>,
    ) -> String {
        let rows_before = rows_written_so_far();
        // The calls this object makes for the caller (its follow-ups).
        let costs = Costs::default();
        let outcome = self.outcome(call, text, apply, &costs).await;
        let answer = Answer {
            outcome,
            costs: self.costs(rows_before, &costs),
        };
        answer_json(&answer)
    }

    async fn outcome<C: MailboxCall>(
        &self,
        call: &str,
        text: Option<String>,
        apply: impl FnOnce(&mut MailboxRules<SqliteMailbox>, C, f64) -> Result<C::Reply, ExchangeError>,
        costs: &Costs,
    ) -> Result<C::Reply, ExchangeError> {
        self.read_alarm().await?;
        let call = read_call::<C>(call, text)?;
        let now = now_s();
        let reply = self.rules_then(|rules| apply(rules, call, now));
        self.arm().await;
        let reply = reply?;
        if C::MAY_OWE_FOLLOW_UPS {
            self.follow_up(costs).await?;
            self.arm().await;
        }
        Ok(reply)
    }

    /// Opens a listen stream's or long poll's socket, or answers at once: an
    /// error, or a long poll's message when one is queued (one call, no socket).
    fn subscribe(&self, call: Subscribe) -> Result<Subscribed, ExchangeError> {
        let now = now_s();
        let mut rules = self.rules();
        if call.stamps_heartbeat {
            rules.heartbeat(&call.caller, now)?;
        }
        let mut sockets = self.sockets()?;
        let (kind, last_event_id) = match call.wait {
            Wait::Poll => {
                let leased: Vec<u64> = sockets
                    .subscribers
                    .iter()
                    .flat_map(|subscriber| subscriber.pending.iter().copied())
                    .collect();
                let received = rules.receive(&call.caller, &leased, now);
                self.need_alarm_by(rules.alarm_by());
                if let Some(message) = received? {
                    return Ok(Subscribed::Answered(message.text));
                }
                (SubscriberKind::Poll { served: false }, None)
            }
            Wait::Stream { last_event_id } => {
                (SubscriberKind::Stream { replay_after: None }, last_event_id)
            }
        };
        let opened = rules.subscribe(
            &call.caller,
            kind,
            last_event_id,
            call.replay_window_s,
            &mut sockets.subscribers,
            now,
        );
        self.need_alarm_by(rules.alarm_by());
        let opened = match opened {
            Ok(opened) => opened,
            Err(error) => {
                drop(sockets);
                self.forget_sockets();
                return Err(error);
            }
        };
        for index in opened.superseded.iter().rev() {
            let handle = sockets.remove(*index);
            let _ = handle.ws.close(Some(SUPERSEDED), Some("superseded"));
        }
        let pair = WebSocketPair::new().map_err(|e| ExchangeError::internal(e.to_string()))?;
        let tag = random_id();
        self.state
            .as_raw()
            .accept_websocket_with_tags(pair.server.as_ref(), vec![JsValue::from_str(&tag)])
            .map_err(js_internal("accept socket"))?;
        sockets.handles.push(Handle {
            tag,
            ws: pair.server,
        });
        sockets.subscribers.push(opened.subscriber);
        sockets.save(sockets.handles.len() - 1)?;
        drop(sockets);
        self.dispatch(now);
        Ok(Subscribed::Socket(pair.client))
    }

    /// The Worker wrote message `seq` to its client.
    fn confirmed(&self, ws: &WebSocket, seq: u64) -> Result<(), ExchangeError> {
        let now = now_s();
        let tag = self.tag_of(ws)?;
        {
            let mut sockets = self.sockets()?;
            let Some(index) = sockets.index_of(&tag) else {
                return Ok(());
            };
            let confirmed =
                self.rules_then(|rules| rules.confirm(&mut sockets.subscribers[index], seq, now));
            if let Err(error) = confirmed {
                drop(sockets);
                self.forget_sockets();
                return Err(error);
            }
            sockets.save(index)?;
        }
        self.dispatch(now);
        Ok(())
    }

    /// A socket closed (the Worker's request ended, or it broke): the message it
    /// held goes to the next waiting socket.
    fn closed(&self, ws: &WebSocket) {
        // Since compatibility date 2026-04-07 the runtime replies to a close
        // itself; before it, the object must.
        let _ = ws.close(Some(1000), Some("closed"));
        let Ok(tag) = self.tag_of(ws) else { return };
        match self.sockets() {
            Ok(mut sockets) => {
                if let Some(index) = sockets.index_of(&tag) {
                    sockets.remove(index);
                }
            }
            Err(error) => worker::console_error!("socket closed: {error:?}"),
        }
        self.dispatch(now_s());
    }

    /// Pushes what the rules say to the sockets that wait, and ends those that
    /// must end. Failures are logged: the messages stay queued.
    fn dispatch(&self, now: f64) {
        let mut sockets = match self.sockets() {
            Ok(sockets) => sockets,
            Err(error) => {
                worker::console_error!("dispatch: {error:?}");
                return;
            }
        };
        if sockets.handles.is_empty() {
            return;
        }
        let pushes = match self.rules().dispatch(&mut sockets.subscribers, now) {
            Ok(pushes) => pushes,
            Err(error) => {
                worker::console_error!("dispatch: {error:?}");
                drop(sockets);
                self.forget_sockets();
                return;
            }
        };
        let mut ended = Vec::new();
        for (index, push) in pushes {
            let frame = match push {
                Push::Message(message) => Pushed::Message {
                    seq: message.seq,
                    text: message.text,
                },
                Push::End(error) => {
                    ended.push(index);
                    Pushed::End(error)
                }
            };
            if let Err(error) = sockets.save(index) {
                worker::console_error!("{error:?}");
            }
            if let Err(error) = sockets.handles[index].ws.send_with_str(frame.encode()) {
                // The socket is going away; its close event releases the message.
                worker::console_error!("push: {error:?}");
            }
        }
        for index in ended.into_iter().rev() {
            let handle = sockets.remove(index);
            let _ = handle.ws.close(Some(1000), Some("ended"));
        }
    }

    /// The sockets' states, loaded from their attachments on first use after
    /// construction.
    fn sockets(&self) -> Result<RefMut<'_, Sockets>, ExchangeError> {
        let mut guard = self.sockets.borrow_mut();
        if guard.is_none() {
            let mut loaded = Sockets::default();
            let open = self
                .state
                .as_raw()
                .get_websockets()
                .map_err(js_internal("sockets"))?;
            for raw in open {
                let ws = WebSocket::from(raw);
                let tag = self.tag_of(&ws)?;
                match load_attachment(&ws) {
                    Ok(subscriber) => {
                        loaded.handles.push(Handle { tag, ws });
                        loaded.subscribers.push(subscriber);
                    }
                    Err(error) => worker::console_error!("{error:?}"),
                }
            }
            *guard = Some(loaded);
        }
        Ok(RefMut::map(guard, |sockets| {
            sockets.get_or_insert_with(Sockets::default)
        }))
    }

    /// Drops the in-memory states after the rules failed halfway through
    /// changing them: the next use reloads them from the attachments, which
    /// hold the last states that were acted on.
    fn forget_sockets(&self) {
        *self.sockets.borrow_mut() = None;
    }

    fn tag_of(&self, ws: &WebSocket) -> Result<String, ExchangeError> {
        self.state
            .as_raw()
            .get_tags(ws.as_ref())
            .map_err(js_internal("socket tags"))?
            .into_iter()
            .next()
            .ok_or_else(|| ExchangeError::internal("socket without a tag"))
    }
}

/// A socket's state as [`Sockets::save`] stored it.
fn load_attachment(ws: &WebSocket) -> Result<Subscriber, ExchangeError> {
    let json = ws
        .deserialize_attachment::<String>()
        .map_err(|e| ExchangeError::internal(format!("attachment: {e}")))?
        .ok_or_else(|| ExchangeError::internal("socket without an attachment"))?;
    serde_json::from_str(&json).map_err(|e| ExchangeError::internal(format!("attachment: {e}")))
}

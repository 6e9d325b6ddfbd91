//! The Worker's side of the requests that wait for messages: `GET /mailbox/listen`
//! (an SSE stream) and `GET /message` (a long poll). The Worker holds the client's
//! request and a WebSocket to the mailbox object, which hibernates while nothing
//! happens; the Worker is billed for CPU, not for the time it waits.
//!
//! The stream's decisions (preamble, events, confirmations, keep-alives, idle end)
//! are made by [`StreamSession`]; this file only moves bytes.

use std::cell::RefCell;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::{stream, StreamExt};
use worker::wasm_bindgen::closure::Closure;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::ext::{ResponseExt, WebSocketExt};
use worker::{js_sys, web_sys, Delay, Headers, Response};

use super::{js_internal, now_s, read_answer, Costs, PlacedNamespace};
use crate::core::listen::{StreamSession, StreamStep};
use crate::core::permission::Identity;
use crate::protocol::config::Config;
use crate::protocol::error::ExchangeError;
use crate::protocol::sse;
use crate::rpc::{confirmation, Answer, CallCosts, Pushed, Subscribe, Wait, PING, PONG};

/// How long the client waits before reconnecting after a stream ends: short, so a
/// listener that timed out idle is back within a blink.
const RETRY_MS: u64 = 100;

/// A long poll whose socket keeps closing (the object restarting) gives up after
/// this many tries rather than spin until its deadline.
const POLL_ATTEMPTS: u32 = 5;

/// Who waits for messages, as the Worker learned it from the request.
pub(super) struct Waiter {
    pub(super) caller: Identity,
    /// Waiting also stamps the caller's heartbeat
    /// ([`crate::protocol::request::stamps_heartbeat`]).
    pub(super) stamps_heartbeat: bool,
}

/// What the object answered a subscription with.
enum Opened {
    Socket(ObjectSocket),
    /// An answer at once: an error, or a long poll's queued message.
    Answered(Result<String, ExchangeError>),
}

/// Asks the object `uid` of `namespace` to subscribe: a WebSocket upgrade whose
/// URL carries the call.
async fn open(
    costs: &Costs,
    namespace: &PlacedNamespace,
    uid: &str,
    call: &Subscribe,
) -> Result<Opened, ExchangeError> {
    let json = serde_json::to_string(call).map_err(|e| ExchangeError::internal(e.to_string()))?;
    let url = format!(
        "https://object/subscribe?call={}",
        js_sys::encode_uri_component(&json)
    );
    let headers = web_sys::Headers::new().map_err(js_internal("headers"))?;
    headers
        .set("upgrade", "websocket")
        .map_err(js_internal("headers"))?;
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    init.set_headers(&headers);
    let request = web_sys::Request::new_with_str_and_init(&url, &init)
        .map_err(js_internal("subscribe request"))?;
    let stub: worker::worker_sys::DurableObject = namespace.stub(uid)?.into_rpc();
    let promise = stub
        .fetch_with_request(&request)
        .map_err(js_internal("subscribe"))?;
    let response: web_sys::Response = JsFuture::from(promise)
        .await
        .map_err(js_internal("subscribe"))?
        .unchecked_into();
    if let Some(ws) = response.websocket() {
        // The socket's own costs are not reported (no rows are written to open it).
        costs.record(CallCosts::default());
        return Ok(Opened::Socket(ObjectSocket::accept(ws)?));
    }
    let text = response.text().map_err(js_internal("subscribe answer"))?;
    let text = JsFuture::from(text)
        .await
        .map_err(js_internal("subscribe answer"))?;
    let answer: Answer<String> = read_answer(&text)?;
    costs.record(answer.costs);
    Ok(Opened::Answered(answer.outcome))
}

/// What arrives on the socket from the object.
enum Arrival {
    Pushed(Pushed),
    /// Closed or failed: the object restarted, was reset, or ended the socket.
    Closed,
}

/// The Worker's end of a socket to a mailbox object. Dropping it closes the
/// socket, which tells the object to release what it pushed and was not
/// confirmed.
struct ObjectSocket {
    ws: web_sys::WebSocket,
    arrivals: mpsc::UnboundedReceiver<Arrival>,
    /// The event handlers; kept alive as long as the socket is used.
    _handlers: [Closure<dyn FnMut(JsValue)>; 3],
}

impl ObjectSocket {
    fn accept(ws: web_sys::WebSocket) -> Result<Self, ExchangeError> {
        let (sender, arrivals) = mpsc::unbounded();
        let sender = Rc::new(RefCell::new(sender));
        let on_message = {
            let sender = sender.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                let data = event
                    .unchecked_ref::<web_sys::MessageEvent>()
                    .data()
                    .as_string();
                let Some(frame) = data.filter(|frame| frame != PONG) else {
                    return;
                };
                match Pushed::decode(&frame) {
                    Ok(pushed) => {
                        let _ = sender.borrow().unbounded_send(Arrival::Pushed(pushed));
                    }
                    Err(error) => worker::console_error!("object socket: {error}"),
                }
            })
        };
        let on_end = |sender: Rc<RefCell<mpsc::UnboundedSender<Arrival>>>| {
            Closure::<dyn FnMut(JsValue)>::new(move |_event: JsValue| {
                let _ = sender.borrow().unbounded_send(Arrival::Closed);
            })
        };
        let on_close = on_end(sender.clone());
        let on_error = on_end(sender);
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        ws.accept().map_err(js_internal("accept socket"))?;
        Ok(Self {
            ws,
            arrivals,
            _handlers: [on_message, on_close, on_error],
        })
    }

    /// Sends a frame; `false` if the socket is no longer open.
    fn send(&self, frame: &str) -> bool {
        self.ws.send_with_str(frame).is_ok()
    }

    async fn next(&mut self) -> Arrival {
        self.arrivals.next().await.unwrap_or(Arrival::Closed)
    }

    /// An arrival that is already there, without waiting.
    fn ready(&mut self) -> Option<Arrival> {
        match self.arrivals.try_recv() {
            Ok(arrival) => Some(arrival),
            Err(mpsc::TryRecvError::Closed) => Some(Arrival::Closed),
            Err(mpsc::TryRecvError::Empty) => None,
        }
    }
}

impl Drop for ObjectSocket {
    fn drop(&mut self) {
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close_with_code_and_reason(1000, "done");
    }
}

/// Waits until `until` (seconds since the epoch) or for the next arrival.
async fn arrival_before(socket: &mut ObjectSocket, until: f64) -> Option<Arrival> {
    let wait = Duration::from_secs_f64((until - now_s()).clamp(0.0, 86_400.0));
    let timer = pin!(Delay::from(wait));
    let arrival = pin!(socket.next());
    match select(arrival, timer).await {
        Either::Left((arrival, _)) => Some(arrival),
        Either::Right(_) => None,
    }
}

/// `GET /message`: the oldest message, waiting up to `timeout_s` for one.
pub(super) async fn receive(
    costs: &Costs,
    namespace: &PlacedNamespace,
    uid: &str,
    waiter: Waiter,
    timeout_s: f64,
    config: &Config,
) -> Result<String, ExchangeError> {
    let call = Subscribe {
        caller: waiter.caller,
        stamps_heartbeat: waiter.stamps_heartbeat,
        wait: Wait::Poll,
        replay_window_s: config.replay_window_s,
    };
    let deadline = now_s() + timeout_s;
    for _ in 0..POLL_ATTEMPTS {
        let mut socket = match open(costs, namespace, uid, &call).await? {
            Opened::Answered(outcome) => return outcome,
            Opened::Socket(socket) => socket,
        };
        match arrival_before(&mut socket, deadline).await {
            None => return Err(ExchangeError::Timeout),
            Some(Arrival::Pushed(Pushed::Message { seq, text })) => {
                // The answer is built: the object may drop the message.
                socket.send(&confirmation(seq));
                return Ok(text);
            }
            Some(Arrival::Pushed(Pushed::End(error))) => return Err(error),
            // The object restarted under the poll: ask again.
            Some(Arrival::Closed) if now_s() < deadline => {}
            Some(Arrival::Closed) => return Err(ExchangeError::Timeout),
        }
    }
    Err(ExchangeError::internal(
        "long poll: the mailbox object kept closing its socket",
    ))
}

/// `GET /mailbox/listen`: an SSE stream relayed from the object's socket, or the
/// error the object answered at once (unknown, terminated, forbidden).
pub(super) async fn listen(
    costs: &Costs,
    namespace: &PlacedNamespace,
    uid: &str,
    waiter: Waiter,
    last_event_id: Option<u64>,
    timeout_s: f64,
    config: &Config,
) -> Result<Response, ExchangeError> {
    let call = Subscribe {
        caller: waiter.caller,
        stamps_heartbeat: waiter.stamps_heartbeat,
        wait: Wait::Stream { last_event_id },
        replay_window_s: config.replay_window_s,
    };
    let socket = match open(costs, namespace, uid, &call).await? {
        Opened::Socket(socket) => socket,
        // Only a long poll is answered with a message.
        Opened::Answered(outcome) => {
            return Err(outcome.err().unwrap_or_else(|| {
                ExchangeError::internal("a listen stream was answered a message")
            }))
        }
    };
    let relay = Relay {
        socket,
        session: StreamSession::new(now_s(), timeout_s, config.sse_keepalive_s, RETRY_MS),
    };
    let chunks = stream::unfold(relay, |mut relay| async move {
        let chunk = relay.next_chunk().await?;
        Some((Ok::<Vec<u8>, worker::Error>(chunk.into_bytes()), relay))
    });
    let headers = Headers::new();
    let stream_response = || -> worker::Result<Response> {
        headers.set("content-type", "text/event-stream")?;
        headers.set("cache-control", "no-cache")?;
        Ok(Response::from_stream(chunks)?.with_headers(headers))
    };
    stream_response().map_err(|e| ExchangeError::internal(format!("stream: {e}")))
}

/// One listen stream: the object's socket and the session's rules.
struct Relay {
    socket: ObjectSocket,
    session: StreamSession,
}

impl Drop for Relay {
    /// The stream is over (ended, or the client went away): what the runtime
    /// took is confirmed before the socket closes; the rest is released.
    fn drop(&mut self) {
        if let Some(seq) = self.session.take_confirmation() {
            self.socket.send(&confirmation(seq));
        }
    }
}

impl Relay {
    /// The next chunk for the client, or `None` to end the stream cleanly.
    async fn next_chunk(&mut self) -> Option<String> {
        // The runtime took the previous chunk: its events are owed a confirmation.
        self.session.next_pulled(now_s());
        loop {
            match self.session.step(now_s()) {
                StreamStep::Confirm(seq) => {
                    if !self.socket.send(&confirmation(seq)) {
                        self.session.end();
                        return None;
                    }
                }
                StreamStep::Write(chunk) => return Some(chunk),
                StreamStep::KeepAlive => {
                    self.socket.send(PING);
                    return Some(sse::KEEP_ALIVE.to_owned());
                }
                StreamStep::End => return None,
                StreamStep::Wait { until } => {
                    let Some(first) = arrival_before(&mut self.socket, until).await else {
                        continue;
                    };
                    // Every message already there goes out in this one chunk.
                    let mut messages = Vec::new();
                    let mut arrival = Some(first);
                    while let Some(next) = arrival {
                        match next {
                            Arrival::Pushed(Pushed::Message { seq, text }) => {
                                messages.push((seq, text));
                                arrival = self.socket.ready();
                            }
                            Arrival::Pushed(Pushed::End(_)) | Arrival::Closed => {
                                // What came before the end is not written: the
                                // object releases it with the socket.
                                self.session.end();
                                return None;
                            }
                        }
                    }
                    return match self.session.messages(&messages, now_s()) {
                        StreamStep::Write(chunk) => Some(chunk),
                        _ => None,
                    };
                }
            }
        }
    }
}

//! The wasm shell: everything that touches `worker` types, the clock or the network.
//! `fetch` is the public HTTP front; `mailbox_object` and `directory_object` are the
//! Durable Objects; `sqlite` implements the core's store traits over their SQLite;
//! `follow_up` carries out the work a mailbox owes other objects; `placement`
//! decides where the objects the Worker reaches live.

mod authenticate;
mod directory_object;
mod fetch;
mod follow_up;
mod mailbox_object;
mod placement;
mod sqlite;
mod subscription;

use std::cell::{Cell, RefCell};

use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{js_sys, web_sys, Date, Env, Response};

use crate::protocol::config::Config;
use crate::protocol::error::ExchangeError;
use crate::rpc::{Outcome, Reply};
use placement::PlacedNamespace;

/// Seconds since the epoch: the `now` every core operation takes.
fn now_s() -> f64 {
    Date::now().as_millis() as f64 / 1000.0
}

/// The exchange's settings from the Worker's `[vars]` and, for credentials,
/// secrets (both are strings).
fn config(env: &Env) -> Result<Config, ExchangeError> {
    Config::from_vars(|name| setting(env, name))
        .map_err(|reason| ExchangeError::Configuration { reason })
}

/// One setting: a secret of that name, else a var.
fn setting(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .or_else(|_| env.var(name))
        .ok()
        .map(|value| value.to_string())
}

/// Any runtime failure is an internal fault (never the client's).
fn internal(context: &str) -> impl Fn(worker::Error) -> ExchangeError + '_ {
    move |error| ExchangeError::internal(format!("{context}: {error}"))
}

/// The header in which an object reports the SQLite rows one call wrote.
const ROWS_WRITTEN_HEADER: &str = "x-exchange-rows-written";

/// The header in which an object reports the object calls it made for one call
/// (its follow-ups): they count as the caller's.
const OBJECT_CALLS_HEADER: &str = "x-exchange-object-calls";

/// What one public request cost: object calls made and SQLite rows they wrote.
/// Sent back as response headers when `EXCHANGE_COST_HEADERS` is set (benchmarks).
#[derive(Default)]
struct Costs {
    /// Whether to report them (`EXCHANGE_COST_HEADERS`, once the settings are read).
    pub(crate) reported: Cell<bool>,
    pub(crate) object_calls: Cell<u64>,
    pub(crate) rows_written: Cell<u64>,
    /// The headers about the mailbox object instance that answered last (its
    /// boot id; its isolate's rows written and objects constructed so far),
    /// passed on as they are.
    pub(crate) object_instance: RefCell<Vec<(&'static str, String)>>,
}

impl Costs {
    fn record(&self, response: &web_sys::Response) {
        let count = |name: &str| {
            response
                .headers()
                .get(name)
                .ok()
                .flatten()
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let rows = count(ROWS_WRITTEN_HEADER);
        let nested = count(OBJECT_CALLS_HEADER);
        self.object_calls.set(self.object_calls.get() + 1 + nested);
        self.rows_written.set(self.rows_written.get() + rows);
        let reported = [
            mailbox_object::BOOT_HEADER,
            mailbox_object::ISOLATE_ROWS_HEADER,
            mailbox_object::CONSTRUCTED_HEADER,
        ];
        let instance: Vec<(&'static str, String)> = reported
            .into_iter()
            .filter_map(|name| Some((name, response.headers().get(name).ok()??)))
            .collect();
        if !instance.is_empty() {
            *self.object_instance.borrow_mut() = instance;
        }
    }
}

/// An object answered with a reply of the wrong kind for the call: a fault.
fn unexpected(reply: Reply) -> ExchangeError {
    ExchangeError::internal(format!("unexpected object reply {reply:?}"))
}

/// Any failure of a JavaScript call on the way to or from an object.
fn js_internal(context: &str) -> impl Fn(JsValue) -> ExchangeError + '_ {
    move |error| ExchangeError::internal(format!("{context}: {error:?}"))
}

/// Sends `call` (JSON) to the object `name` of `namespace`; returns its raw response.
///
/// Works on the runtime's own `Request`/`Response` rather than `worker`'s wrappers:
/// those read a body chunk by chunk through a stream reader and copy headers and
/// `cf` properties on every call, which showed up in CPU profiles as a large part
/// of each object call.
async fn call_object(
    costs: &Costs,
    namespace: &PlacedNamespace,
    name: &str,
    call: &impl serde::Serialize,
) -> Result<web_sys::Response, ExchangeError> {
    let body = serde_json::to_string(call).map_err(|e| ExchangeError::internal(e.to_string()))?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(&body));
    let request = web_sys::Request::new_with_str_and_init("https://object/", &init)
        .map_err(js_internal("object request"))?;
    fetch_object(costs, namespace, name, &request).await
}

/// Sends `request` to the object `name` of `namespace`; returns its raw response.
async fn fetch_object(
    costs: &Costs,
    namespace: &PlacedNamespace,
    name: &str,
    request: &web_sys::Request,
) -> Result<web_sys::Response, ExchangeError> {
    let stub: worker::worker_sys::DurableObject = namespace.stub(name)?.into_rpc();
    let promise = stub
        .fetch_with_request(request)
        .map_err(js_internal("object call"))?;
    let response: web_sys::Response = JsFuture::from(promise)
        .await
        .map_err(js_internal("object call"))?
        .unchecked_into();
    costs.record(&response);
    Ok(response)
}

/// A body read whole, in one call into the runtime.
async fn body_text(promise: Result<js_sys::Promise, JsValue>) -> Result<String, ExchangeError> {
    let text = JsFuture::from(promise.map_err(js_internal("body"))?)
        .await
        .map_err(js_internal("body"))?;
    text.as_string()
        .ok_or_else(|| ExchangeError::internal("body is not text"))
}

/// Reads an object's [`Outcome`] from its response.
async fn read_outcome(response: web_sys::Response) -> Outcome {
    let text = body_text(response.text()).await?;
    serde_json::from_str::<Outcome>(&text).map_err(|e| {
        let start: String = text.chars().take(200).collect();
        ExchangeError::internal(format!("object reply: {e} in {start:?}"))
    })?
}

/// The call an object was sent, parsed with serde_json from the body text (not
/// through a JavaScript object, which costs a runtime call per field).
async fn read_call<T: serde::de::DeserializeOwned>(
    request: &worker::Request,
) -> Result<T, ExchangeError> {
    let text = body_text(request.inner().text()).await?;
    serde_json::from_str(&text).map_err(|e| ExchangeError::internal(format!("object call: {e}")))
}

/// An object's answer to the Worker, with the rows written since `rows_before`.
fn outcome_response(outcome: &Outcome, rows_before: u64) -> worker::Result<Response> {
    let mut response = Response::from_json(outcome)?;
    let rows = sqlite::rows_written_so_far() - rows_before;
    response
        .headers_mut()
        .set(ROWS_WRITTEN_HEADER, &rows.to_string())?;
    Ok(response)
}

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

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;

use worker::wasm_bindgen::prelude::wasm_bindgen;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{js_sys, Date, Env};

use crate::auth::AuthSettings;
use crate::protocol::config::Config;
use crate::protocol::error::ExchangeError;
use crate::rpc::{Answer, CallCosts, InstanceReport, ObjectCall};
use placement::PlacedNamespace;

/// Seconds since the epoch: the `now` every core operation takes.
fn now_s() -> f64 {
    Date::now().as_millis() as f64 / 1000.0
}

/// The exchange's settings and how callers are authenticated, from the Worker's
/// `[vars]` and, for credentials, secrets (both are strings).
struct Settings {
    config: Config,
    auth: AuthSettings,
}

thread_local! {
    /// The settings, read once per isolate: vars and secrets cannot change while
    /// an isolate lives (a new deployment or secret starts new isolates), and
    /// reading them costs about twenty calls into JavaScript per request.
    static SETTINGS: OnceCell<Result<Rc<Settings>, ExchangeError>> = const { OnceCell::new() };
}

/// The settings, read on the isolate's first request (see [`SETTINGS`]). A
/// setting that is wrong stays wrong until the deployment changes, so the error
/// is kept too.
fn settings(env: &Env) -> Result<Rc<Settings>, ExchangeError> {
    SETTINGS.with(|settings| {
        settings
            .get_or_init(|| {
                let read = |name: &str| setting(env, name);
                let invalid = |reason| ExchangeError::Configuration { reason };
                Ok(Rc::new(Settings {
                    config: Config::from_vars(read).map_err(invalid)?,
                    auth: AuthSettings::from_vars(read).map_err(invalid)?,
                }))
            })
            .clone()
    })
}

/// The exchange's settings alone, for the objects: they authenticate no one.
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

/// What one public request cost: object calls made and SQLite rows they wrote.
/// Sent back as response headers when `EXCHANGE_COST_HEADERS` is set (benchmarks).
#[derive(Default)]
struct Costs {
    /// Whether to report them (`EXCHANGE_COST_HEADERS`, once the settings are read).
    pub(crate) reported: Cell<bool>,
    pub(crate) object_calls: Cell<u64>,
    pub(crate) rows_written: Cell<u64>,
    /// The mailbox object instance that answered last, passed on as it is.
    pub(crate) instance: RefCell<Option<InstanceReport>>,
}

impl Costs {
    /// One object call and what it cost at the object.
    fn record(&self, costs: CallCosts) {
        self.object_calls
            .set(self.object_calls.get() + 1 + costs.object_calls);
        self.rows_written
            .set(self.rows_written.get() + costs.rows_written);
        if costs.instance.is_some() {
            *self.instance.borrow_mut() = costs.instance;
        }
    }

    /// The response headers reporting the costs.
    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (
                "x-exchange-object-calls",
                self.object_calls.get().to_string(),
            ),
            (
                "x-exchange-rows-written",
                self.rows_written.get().to_string(),
            ),
        ];
        if let Some(instance) = self.instance.take() {
            headers.extend([
                ("x-exchange-object-boot", instance.boot_id),
                (
                    "x-exchange-isolate-rows-written",
                    instance.isolate_rows_written.to_string(),
                ),
                (
                    "x-exchange-object-rows-written",
                    instance.object_rows_written.to_string(),
                ),
                (
                    "x-exchange-isolate-objects-constructed",
                    instance.isolate_objects_constructed.to_string(),
                ),
            ]);
        }
        headers
    }
}

/// Any failure of a JavaScript call on the way to or from an object.
fn js_internal(context: &str) -> impl Fn(JsValue) -> ExchangeError + '_ {
    move |error| ExchangeError::internal(format!("{context}: {error:?}"))
}

#[wasm_bindgen]
extern "C" {
    /// A stub of one of this Worker's objects, reached by RPC: the `rpc` method
    /// of the object classes in `src/js/entry.mjs`.
    #[wasm_bindgen(extends = js_sys::Object)]
    type ObjectStub;

    /// Resolves to the object's [`Answer`] as JSON.
    #[wasm_bindgen(method, catch)]
    fn rpc(
        this: &ObjectStub,
        kind: &str,
        call: &str,
        text: Option<&str>,
    ) -> Result<js_sys::Promise, JsValue>;
}

/// Makes `call` on the object `name` of `namespace`, by RPC: one string of JSON
/// each way (plus a message's text), rather than a `Request` and a `Response`
/// whose wrappers read method, URL, headers and body on both sides of every call.
async fn call_object<C: ObjectCall>(
    costs: &Costs,
    namespace: &PlacedNamespace,
    name: &str,
    call: &C,
) -> Result<C::Reply, ExchangeError> {
    let json = serde_json::to_string(call).map_err(|e| ExchangeError::internal(e.to_string()))?;
    let stub: ObjectStub = namespace.stub(name)?.into_rpc();
    let promise = stub
        .rpc(C::KIND, &json, call.text())
        .map_err(js_internal("object call"))?;
    let answer = JsFuture::from(promise)
        .await
        .map_err(js_internal("object call"))?;
    let answer: Answer<C::Reply> = read_answer(&answer)?;
    costs.record(answer.costs);
    answer.outcome
}

/// An object's [`Answer`] from its JSON.
fn read_answer<R: serde::de::DeserializeOwned>(json: &JsValue) -> Result<Answer<R>, ExchangeError> {
    let text = json
        .as_string()
        .ok_or_else(|| ExchangeError::internal("object answer is not text"))?;
    serde_json::from_str(&text).map_err(|e| {
        let start: String = text.chars().take(200).collect();
        ExchangeError::internal(format!("object answer: {e} in {start:?}"))
    })
}

/// Reads a call of kind `C` that arrived by RPC.
fn read_call<C: ObjectCall>(json: &str, text: Option<String>) -> Result<C, ExchangeError> {
    serde_json::from_str::<C>(json)
        .map_err(|e| ExchangeError::internal(format!("object call {}: {e}", C::KIND)))?
        .with_text(text)
}

/// An object's answer as JSON. Serializing these plain types cannot fail; if it
/// did, the caller reads an internal error from the empty answer.
fn answer_json<R: serde::Serialize>(answer: &Answer<R>) -> String {
    serde_json::to_string(answer).unwrap_or_default()
}

/// The answer to a call of a kind the object does not take.
fn unknown_call(kind: &str) -> String {
    answer_json(&Answer::<()> {
        outcome: Err(ExchangeError::internal(format!(
            "unknown object call {kind:?}"
        ))),
        costs: CallCosts::default(),
    })
}

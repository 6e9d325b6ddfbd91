//! The wasm shell: everything that touches `worker` types, the clock or the network.
//! `fetch` is the public HTTP front; `mailbox_object` and `directory_object` are the
//! Durable Objects; `sqlite` implements the core's store traits over their SQLite.

mod authenticate;
mod directory_object;
mod fetch;
mod mailbox_object;
mod sqlite;

use std::cell::Cell;

use worker::{Date, Method, ObjectNamespace, Request, RequestInit, Response};

use crate::protocol::error::ExchangeError;
use crate::rpc::Outcome;

/// Seconds since the epoch: the `now` every core operation takes.
fn now_s() -> f64 {
    Date::now().as_millis() as f64 / 1000.0
}

/// Any runtime failure is an internal fault (never the client's).
fn internal(context: &str) -> impl Fn(worker::Error) -> ExchangeError + '_ {
    move |error| ExchangeError::internal(format!("{context}: {error}"))
}

/// The header in which an object reports the SQLite rows one call wrote.
const ROWS_WRITTEN_HEADER: &str = "x-exchange-rows-written";

/// What one public request cost: object calls made and SQLite rows they wrote.
/// Sent back as response headers when `EXCHANGE_COST_HEADERS` is set (benchmarks).
#[derive(Default)]
struct Costs {
    pub(crate) object_calls: Cell<u64>,
    pub(crate) rows_written: Cell<u64>,
}

impl Costs {
    fn record(&self, response: &Response) {
        let rows = response
            .headers()
            .get(ROWS_WRITTEN_HEADER)
            .ok()
            .flatten()
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0);
        self.object_calls.set(self.object_calls.get() + 1);
        self.rows_written.set(self.rows_written.get() + rows);
    }
}

/// Sends `call` (JSON) to the object `name` of `namespace`; returns its raw response.
async fn call_object(
    costs: &Costs,
    namespace: &ObjectNamespace,
    name: &str,
    call: &impl serde::Serialize,
) -> Result<Response, ExchangeError> {
    let body = serde_json::to_string(call).map_err(|e| ExchangeError::internal(e.to_string()))?;
    let stub = namespace
        .id_from_name(name)
        .and_then(|id| id.get_stub())
        .map_err(internal("object stub"))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let request =
        Request::new_with_init("https://object/", &init).map_err(internal("object request"))?;
    let response = stub
        .fetch_with_request(request)
        .await
        .map_err(internal("object call"))?;
    costs.record(&response);
    Ok(response)
}

/// Reads an object's [`Outcome`] from its response.
async fn read_outcome(mut response: Response) -> Outcome {
    let text = response.text().await.map_err(internal("object reply"))?;
    serde_json::from_str::<Outcome>(&text).map_err(|e| {
        let start: String = text.chars().take(200).collect();
        ExchangeError::internal(format!("object reply: {e} in {start:?}"))
    })?
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

//! The Durable Object of one class name's discovery directory (named by the class,
//! e.g. `mymodule.MyAgent`). Lists the agents whose MRO contains the class, in
//! registration order. Registration and termination write here before answering,
//! so a `discover` right after a register sees it.

use wasm_bindgen::prelude::wasm_bindgen;
use worker::{durable_object, Env, Request, Response, State};

use super::sqlite::rows_written_so_far;
use super::sqlite::SqliteDirectory;
use super::{answer_json, read_call, unknown_call};
use crate::core::directory::discover;
use crate::protocol::error::ExchangeError;
use crate::rpc::{Answer, CallCosts, Discover, ObjectCall, Register, Unregister};
use crate::store::DirectoryStore;

#[durable_object]
pub struct Directory {
    state: State,
    /// Set if creating the table failed; every call then reports it.
    schema_error: Option<String>,
}

impl worker::DurableObject for Directory {
    fn new(state: State, _env: Env) -> Self {
        let schema_error = state
            .storage()
            .sql()
            .exec(SqliteDirectory::SCHEMA, None)
            .err()
            .map(|error| error.to_string());
        Self {
            state,
            schema_error,
        }
    }

    /// Directories are called by RPC only ([`Directory::rpc`]).
    async fn fetch(&self, _request: Request) -> worker::Result<Response> {
        Response::error("directories are called by RPC", 404)
    }
}

#[wasm_bindgen(
    wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
    js_sys = ::worker::js_sys
)]
impl Directory {
    /// Every call, by RPC through `src/js/entry.mjs`: `kind` names the call
    /// ([`ObjectCall::KIND`]) and `call` is its JSON. Answers the call's
    /// [`Answer`] as JSON; never fails.
    pub async fn rpc(&self, kind: String, call: String) -> String {
        match kind.as_str() {
            Register::KIND => self.serve(&call, |store, c: Register| {
                store.upsert(&c.entry).map_err(Into::into)
            }),
            Unregister::KIND => self.serve(&call, |store, c: Unregister| {
                store.remove(c.uid).map_err(Into::into)
            }),
            Discover::KIND => self.serve(&call, |store, c: Discover| {
                discover(store, &c.caller, c.allow_subclasses)
            }),
            other => unknown_call(other),
        }
    }
}

impl Directory {
    /// Serves one call of kind `C` with `apply`, and counts the rows it wrote.
    fn serve<C: ObjectCall>(
        &self,
        call: &str,
        apply: impl FnOnce(&mut SqliteDirectory, C) -> Result<C::Reply, ExchangeError>,
    ) -> String {
        let rows_before = rows_written_so_far();
        let outcome = match &self.schema_error {
            Some(error) => Err(ExchangeError::internal(format!(
                "directory schema: {error}"
            ))),
            None => read_call::<C>(call, None)
                .and_then(|call| apply(&mut SqliteDirectory(self.state.storage().sql()), call)),
        };
        answer_json(&Answer {
            outcome,
            costs: CallCosts {
                rows_written: rows_written_so_far() - rows_before,
                ..CallCosts::default()
            },
        })
    }
}

//! The Durable Object of one class name's discovery directory (named by the class,
//! e.g. `mymodule.MyAgent`). Lists the agents whose MRO contains the class, in
//! registration order. Registration and termination write here before answering,
//! so a `discover` right after a register sees it.

use worker::{durable_object, Env, Request, Response, State};

use super::sqlite::rows_written_so_far;
use super::sqlite::SqliteDirectory;
use super::{outcome_response, read_call};
use crate::core::directory::discover;
use crate::protocol::error::ExchangeError;
use crate::rpc::{DirectoryCall, Outcome, Reply};
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

    async fn fetch(&self, request: Request) -> worker::Result<Response> {
        let rows_before = rows_written_so_far();
        let outcome: Outcome = match (&self.schema_error, read_call(&request).await) {
            (Some(error), _) => Err(ExchangeError::internal(format!(
                "directory schema: {error}"
            ))),
            (None, Err(error)) => Err(error),
            (None, Ok(call)) => {
                let mut store = SqliteDirectory(self.state.storage().sql());
                match call {
                    DirectoryCall::Register { entry } => store
                        .upsert(&entry)
                        .map(|()| Reply::Done)
                        .map_err(Into::into),
                    DirectoryCall::Unregister { uid } => {
                        store.remove(uid).map(|()| Reply::Done).map_err(Into::into)
                    }
                    DirectoryCall::Discover {
                        caller,
                        allow_subclasses,
                    } => discover(&store, &caller, allow_subclasses).map(Reply::Agents),
                }
            }
        };
        outcome_response(&outcome, rows_before)
    }
}

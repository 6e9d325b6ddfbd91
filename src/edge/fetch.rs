//! The public HTTP front. It parses and validates each request, then calls the
//! object of the mailbox (or class directory) it names, and turns the outcome into
//! the HTTP answer — every error through [`error_response`], the one mapping.
//! Work that spans objects (a send's bookkeeping at the sender, terminate replies,
//! discovery registration) is sequenced here, before the client gets its answer.

use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{ReadableStreamDefaultReader, ReadableStreamReadResult};
use worker::{event, Context, Env, ObjectNamespace, Request, Response};

use super::authenticate::authenticate;
use super::subscription;
use super::{call_object, internal, js_internal, read_outcome, unexpected, Costs};
use crate::auth::AuthSettings;
use crate::core::directory::entries_for;
use crate::core::mailbox::{Registration, StatusAnswer, Termination};
use crate::core::permission::Identity;
use crate::protocol::about::{self, Page};
use crate::protocol::body::BodyBuffer;
use crate::protocol::config::Config;
use crate::protocol::error::ExchangeError;
use crate::protocol::request::{last_event_id, parse_command, Command, Endpoint};
use crate::rpc::{DirectoryCall, MailboxCall, Reply};

#[event(fetch)]
async fn fetch(mut request: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let costs = Costs::default();
    let mut response = match handle(&mut request, &env, &costs).await {
        Ok(response) => response,
        Err(error) => error_response(&error)?,
    };
    if costs.reported.get() {
        // A streamed listen response's headers are sent before its costs are
        // known; they are not reported, so a failure here is ignored.
        let headers = response.headers_mut();
        let _ = headers.set(
            "x-exchange-object-calls",
            &costs.object_calls.get().to_string(),
        );
        let _ = headers.set(
            "x-exchange-rows-written",
            &costs.rows_written.get().to_string(),
        );
        for (name, value) in costs.object_instance.take() {
            let _ = headers.set(name, &value);
        }
    }
    Ok(response)
}

/// The one place an [`ExchangeError`] becomes HTTP: its status and its text as
/// `text/plain`. Server faults are logged with their cause; clients see only the
/// public text.
fn error_response(error: &ExchangeError) -> worker::Result<Response> {
    match error {
        ExchangeError::Internal { cause } => worker::console_error!("internal error: {cause}"),
        ExchangeError::AuthUnavailable { reason } => {
            worker::console_error!("authentication: {reason}")
        }
        ExchangeError::Configuration { reason } => {
            worker::console_error!("configuration: {reason}")
        }
        _ => {}
    }
    let mut response = Response::builder()
        .with_status(error.status())
        .ok(error.text())?;
    if let Some(seconds) = error.retry_after_s() {
        response
            .headers_mut()
            .set("retry-after", &seconds.to_string())?;
    }
    if let Some(methods) = error.allow() {
        response.headers_mut().set("allow", methods)?;
    }
    Ok(response)
}

struct Objects<'a> {
    mailboxes: ObjectNamespace,
    directories: ObjectNamespace,
    costs: &'a Costs,
    config: &'a Config,
}

impl Objects<'_> {
    async fn mailbox(&self, uid: Uuid, call: &MailboxCall) -> Result<Reply, ExchangeError> {
        read_outcome(call_object(self.costs, &self.mailboxes, &uid.to_string(), call).await?).await
    }

    async fn directory(&self, class: &str, call: &DirectoryCall) -> Result<Reply, ExchangeError> {
        read_outcome(call_object(self.costs, &self.directories, class, call).await?).await
    }

    /// Lists an agent under every class of its MRO, all before answering.
    async fn register(&self, registration: &Registration) -> Result<(), ExchangeError> {
        let calls = entries_for(registration)
            .into_iter()
            .map(|(class, entry)| async move {
                self.directory(&class, &DirectoryCall::Register { entry })
                    .await
            });
        join_all(calls)
            .await
            .into_iter()
            .try_for_each(|reply| reply.map(drop))
    }

    /// After a share or unshare: an agent's directory entries learn its new
    /// groups before the client is answered, so discovery reflects it at once.
    async fn share_changed(&self, reply: Reply) -> Result<Response, ExchangeError> {
        match reply {
            Reply::Registered(Some(registration)) => self.register(&registration).await?,
            Reply::Registered(None) => {}
            other => return Err(unexpected(other)),
        }
        empty()
    }

    /// Delivers the terminate replies and removes the agent from discovery.
    async fn finish_termination(&self, termination: Termination) -> Result<(), ExchangeError> {
        for (requester, reply) in termination.replies {
            let call = MailboxCall::Deliver {
                caller: None,
                message: reply,
                from_here: false,
                replay_window_s: self.config.replay_window_s,
            };
            match self.mailbox(requester.uid, &call).await {
                // A requester that is gone needs no reply (as upstream).
                Ok(_) | Err(ExchangeError::Terminated | ExchangeError::UnknownMailbox) => {}
                Err(error) => return Err(error),
            }
        }
        if let Some(registration) = termination.unregister {
            let uid = registration.id.uid;
            let calls = entries_for(&registration)
                .into_iter()
                .map(|(class, _)| async move {
                    self.directory(&class, &DirectoryCall::Unregister { uid })
                        .await
                });
            join_all(calls)
                .await
                .into_iter()
                .try_for_each(|reply| reply.map(drop))?;
        }
        Ok(())
    }
}

fn json_response(value: serde_json::Value) -> Result<Response, ExchangeError> {
    Response::from_json(&value).map_err(internal("response"))
}

fn document_response(page: Page) -> Result<Response, ExchangeError> {
    let mut response = Response::builder()
        .with_header("content-type", page.content_type)
        .map_err(internal("response"))?
        .fixed(page.body.into_owned().into_bytes());
    if page.negotiated {
        response
            .headers_mut()
            .set("vary", "Accept")
            .map_err(internal("response"))?;
    }
    Ok(response)
}

fn empty() -> Result<Response, ExchangeError> {
    Response::empty().map_err(internal("response"))
}

async fn handle(
    request: &mut Request,
    env: &Env,
    costs: &Costs,
) -> Result<Response, ExchangeError> {
    // Settings come from [vars] and, for credentials, secrets; both are strings.
    let setting = |name: &str| {
        env.secret(name)
            .or_else(|_| env.var(name))
            .ok()
            .map(|value| value.to_string())
    };
    let config =
        Config::from_vars(setting).map_err(|reason| ExchangeError::Configuration { reason })?;
    costs.reported.set(config.cost_headers);
    let auth = AuthSettings::from_vars(setting)
        .map_err(|reason| ExchangeError::Configuration { reason })?;
    let method = request.method().to_string();
    let url = request.url().map_err(internal("url"))?;
    let route = match Endpoint::resolve(&method, url.path())? {
        Endpoint::Operation(route) => route,
        // Documents about the exchange are for anyone: no credentials, no body.
        Endpoint::Document(document) => {
            let accept = request.headers().get("accept").ok().flatten();
            return document_response(about::page(document, accept.as_deref()));
        }
    };
    // Who is calling comes only from the authenticator, never from client headers.
    let caller = authenticate(request, &auth).await?;

    let body = read_body(request, config.body_size_limit()).await?;
    let query: Vec<(String, String)> = if method == "GET" {
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    } else {
        Vec::new()
    };
    let command = parse_command(route, &query, &body, &config)?;
    let last_event_id = last_event_id(
        request
            .headers()
            .get("last-event-id")
            .ok()
            .flatten()
            .as_deref(),
    );

    let objects = Objects {
        mailboxes: env
            .durable_object("MAILBOX")
            .map_err(internal("MAILBOX binding"))?,
        directories: env
            .durable_object("DIRECTORY")
            .map_err(internal("DIRECTORY binding"))?,
        costs,
        config: &config,
    };
    dispatch(command, caller, last_event_id, &objects).await
}

/// Reads the request body, and stops at `limit`. A body without a declared length
/// (chunked) is read chunk by chunk from the runtime's stream: a chunk that would
/// pass the limit is refused before it is copied into the Worker's memory, and the
/// rest of the upload is cancelled, so a body never costs more than `limit`.
async fn read_body(request: &Request, limit: u64) -> Result<Vec<u8>, ExchangeError> {
    let declared = request
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|length| length.parse::<u64>().ok());
    let mut body = BodyBuffer::new(declared, limit)?;
    let unreadable = |error: JsValue| ExchangeError::InvalidBody {
        reason: format!("the body could not be read ({error:?})"),
    };
    if declared.is_some() {
        // A declared length within the limit (checked above) is read in one call,
        // without making a stream object: the runtime ends such a body at its
        // declared length, so it cannot bring more than the limit.
        let whole = JsFuture::from(request.inner().array_buffer().map_err(unreadable)?)
            .await
            .map_err(unreadable)?;
        return Ok(Uint8Array::new(&whole).to_vec());
    }
    let Some(stream) = request.inner().body() else {
        return Ok(body.into_bytes());
    };
    let reader = ReadableStreamDefaultReader::new(&stream).map_err(unreadable)?;
    loop {
        let next: ReadableStreamReadResult = JsFuture::from(reader.read())
            .await
            .map_err(unreadable)?
            .unchecked_into();
        if next.get_done().unwrap_or(true) {
            return Ok(body.into_bytes());
        }
        let chunk: Uint8Array = next
            .get_value()
            .dyn_into()
            .map_err(js_internal("body chunk"))?;
        match body.room_for(chunk.length() as usize) {
            Ok(room) => chunk.copy_to(room),
            Err(refusal) => {
                // The answer does not wait for the cancellation; a failure to
                // cancel only means the runtime discards the rest itself.
                let _ = reader.cancel();
                return Err(refusal);
            }
        }
    }
}

/// Carries out one validated command.
async fn dispatch(
    command: Command,
    caller: Identity,
    last_event_id: Option<u64>,
    objects: &Objects<'_>,
) -> Result<Response, ExchangeError> {
    let config = objects.config;
    match command {
        Command::CreateMailbox { mailbox, agent } => {
            let call = MailboxCall::Create {
                caller,
                mailbox: mailbox.clone(),
                agent,
            };
            match objects.mailbox(mailbox.uid, &call).await? {
                Reply::Registered(Some(registration)) => objects.register(&registration).await?,
                Reply::Registered(None) => {}
                other => return Err(unexpected(other)),
            }
            empty()
        }
        Command::Terminate { mailbox } => match objects
            .mailbox(mailbox.uid, &MailboxCall::Terminate { caller })
            .await?
        {
            Reply::Terminated(termination) => {
                objects.finish_termination(termination).await?;
                empty()
            }
            other => Err(unexpected(other)),
        },
        Command::Status { mailbox } => match objects
            .mailbox(mailbox.uid, &MailboxCall::Status { caller })
            .await?
        {
            Reply::Status(status) => json_response(json!(StatusAnswer::from(status))),
            other => Err(unexpected(other)),
        },
        Command::Send { message } => {
            let header = message.header;
            let from_here = header.src.uid == header.dest.uid;
            let deliver = MailboxCall::Deliver {
                caller: Some(caller),
                message: message.text,
                from_here,
                replay_window_s: config.replay_window_s,
            };
            objects.mailbox(header.dest.uid, &deliver).await?;
            if !from_here {
                let src = header.src.uid;
                objects
                    .mailbox(src, &MailboxCall::NoteSent { header })
                    .await?;
            }
            empty()
        }
        Command::Receive { mailbox, timeout_s } => {
            let uid = mailbox.uid.to_string();
            let text = subscription::receive(
                objects.costs,
                &objects.mailboxes,
                &uid,
                caller,
                timeout_s,
                config,
            )
            .await?;
            json_response(json!({ "message": text }))
        }
        Command::Listen { mailbox, timeout_s } => {
            let uid = mailbox.uid.to_string();
            subscription::listen(
                objects.costs,
                &objects.mailboxes,
                &uid,
                caller,
                last_event_id,
                timeout_s,
                config,
            )
            .await
        }
        Command::Discover {
            agent,
            allow_subclasses,
        } => {
            match objects
                .directory(
                    &agent,
                    &DirectoryCall::Discover {
                        caller,
                        allow_subclasses,
                    },
                )
                .await?
            {
                Reply::Agents(uids) => {
                    let joined: Vec<String> = uids.iter().map(Uuid::to_string).collect();
                    json_response(json!({ "agent_ids": joined.join(",") }))
                }
                other => Err(unexpected(other)),
            }
        }
        Command::Share { mailbox, group_id } => {
            let call = MailboxCall::Share { caller, group_id };
            objects
                .share_changed(objects.mailbox(mailbox.uid, &call).await?)
                .await
        }
        Command::ListShares { mailbox } => match objects
            .mailbox(mailbox.uid, &MailboxCall::ListShares { caller })
            .await?
        {
            Reply::Shares(groups) => json_response(json!({ "group_ids": groups })),
            other => Err(unexpected(other)),
        },
        Command::Unshare { mailbox, group_id } => {
            let call = MailboxCall::Unshare { caller, group_id };
            objects
                .share_changed(objects.mailbox(mailbox.uid, &call).await?)
                .await
        }
        Command::Heartbeat { mailbox } => {
            objects
                .mailbox(mailbox.uid, &MailboxCall::Heartbeat { caller })
                .await?;
            empty()
        }
        Command::HeartbeatAge { mailbox } => {
            match objects
                .mailbox(mailbox.uid, &MailboxCall::HeartbeatAge { caller })
                .await?
            {
                Reply::HeartbeatAge(age) => json_response(json!({ "heartbeat": age })),
                other => Err(unexpected(other)),
            }
        }
        Command::Stats { mailbox } => match objects
            .mailbox(mailbox.uid, &MailboxCall::Stats { caller })
            .await?
        {
            Reply::Stats(stats) => json_response(
                serde_json::to_value(stats).map_err(|e| ExchangeError::internal(e.to_string()))?,
            ),
            other => Err(unexpected(other)),
        },
    }
}

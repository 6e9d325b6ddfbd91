//! The public HTTP front. It parses and validates each request, then calls the
//! object of the mailbox (or class directory) it names, and turns the outcome into
//! the HTTP answer — every error through [`error_response`], the one mapping.
//! A send's bookkeeping at the sender is sequenced here, before the client gets
//! its answer; the work a mailbox owes other objects (terminate replies,
//! discovery entries) its own object does (`follow_up`), also before answering.

use serde_json::json;
use uuid::Uuid;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{self, ReadableStreamDefaultReader, ReadableStreamReadResult};
use worker::{event, Context, Date, Env, Response, Url};

use super::authenticate::authenticate;
use super::subscription::{self, Waiter};
use super::{call_object, internal, js_internal, settings, Costs, PlacedNamespace};
use crate::core::mailbox::StatusAnswer;
use crate::core::permission::Identity;
use crate::protocol::about::{self, Page};
use crate::protocol::body::BodyBuffer;
use crate::protocol::config::Config;
use crate::protocol::error::ExchangeError;
use crate::protocol::request::{
    last_event_id, parse_command, stamps_heartbeat, Command, Endpoint, ACADEMY_VERSION_HEADER,
};
use crate::protocol::request_log::{self, RequestLog};
use crate::rpc::{self, ObjectCall};

/// Takes the runtime's own request: `worker::Request` would read its method,
/// URL, headers and `cf` properties across the wasm boundary on every request,
/// used or not.
#[event(fetch)]
async fn fetch(request: web_sys::Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    // The runtime's clock only moves across I/O: the duration is the time spent
    // waiting on objects, identity providers and the client's body, not CPU time.
    let started_ms = Date::now().as_millis();
    let costs = Costs::default();
    let method = request.method();
    let mut log = RequestLog::new(&method);
    let outcome = handle(&request, &method, &env, &costs, &mut log).await;
    write_log(&log, &outcome, started_ms, &costs);
    let mut response = match outcome {
        Ok(response) => response,
        Err(error) => error_response(&error)?,
    };
    if costs.reported.get() {
        // A streamed listen response's headers are sent before its costs are
        // known; they are not reported, so a failure here is ignored.
        let headers = response.headers_mut();
        for (name, value) in costs.headers() {
            let _ = headers.set(name, &value);
        }
    }
    Ok(response)
}

/// Writes the request's one log line. A listen stream is logged when its response
/// starts: its status and costs are those of opening it.
fn write_log(
    log: &RequestLog,
    outcome: &Result<Response, ExchangeError>,
    started_ms: u64,
    costs: &Costs,
) {
    let record = log.record(request_log::Outcome {
        status: match outcome {
            Ok(response) => response.status_code(),
            Err(error) => error.status(),
        },
        error: outcome.as_ref().err(),
        duration_ms: Date::now().as_millis().saturating_sub(started_ms),
        object_calls: costs.object_calls.get(),
        rows_written: costs.rows_written.get(),
    });
    if record.is_fault() {
        worker::console_error!("{}", record.to_line());
    } else {
        worker::console_log!("{}", record.to_line());
    }
}

/// The one place an [`ExchangeError`] becomes HTTP: its status and its text as
/// `text/plain`. Clients see only the public text; the request's log line carries
/// a server fault's cause.
fn error_response(error: &ExchangeError) -> worker::Result<Response> {
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
    mailboxes: PlacedNamespace,
    env: &'a Env,
    costs: &'a Costs,
    config: &'a Config,
}

impl Objects<'_> {
    /// The class directories, opened only by the one route that calls them.
    async fn directory<C: ObjectCall>(
        &self,
        class: &str,
        call: &C,
    ) -> Result<C::Reply, ExchangeError> {
        let directories = PlacedNamespace::open(self.env, "DIRECTORY", self.config.data_location)?;
        call_object(self.costs, &directories, class, call).await
    }

    async fn mailbox<C: ObjectCall>(&self, uid: Uuid, call: &C) -> Result<C::Reply, ExchangeError> {
        call_object(self.costs, &self.mailboxes, &uid.to_string(), call).await
    }

    /// A call whose only answer is success.
    async fn mailbox_done<C: ObjectCall<Reply = ()>>(
        &self,
        uid: Uuid,
        call: &C,
    ) -> Result<Response, ExchangeError> {
        self.mailbox(uid, call).await?;
        empty()
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
    request: &web_sys::Request,
    method: &str,
    env: &Env,
    costs: &Costs,
    log: &mut RequestLog,
) -> Result<Response, ExchangeError> {
    let settings = settings(env)?;
    let (config, auth) = (&settings.config, &settings.auth);
    costs.reported.set(config.cost_headers);
    let url =
        Url::parse(&request.url()).map_err(|e| ExchangeError::internal(format!("url: {e}")))?;
    let headers = request.headers();
    let header = |name: &str| headers.get(name).ok().flatten();
    let route = match Endpoint::resolve(method, url.path())? {
        Endpoint::Operation(route) => route,
        // Documents about the exchange are for anyone: no credentials, no body.
        Endpoint::Document(document) => {
            return document_response(about::page(document, header("accept").as_deref()));
        }
    };
    log.route = Some(route);
    // Who is calling comes only from the authenticator, never from client headers.
    let caller = authenticate(&headers, auth).await?;

    let body = read_body(request, header("content-length"), config.body_size_limit()).await?;
    let query: Vec<(String, String)> = if method == "GET" {
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    } else {
        Vec::new()
    };
    let command = parse_command(route, &query, &body, config)?;
    log.mailbox = command.mailbox_uid();
    let last_event_id = last_event_id(header("last-event-id").as_deref());
    let stamps_heartbeat = stamps_heartbeat(route, header(ACADEMY_VERSION_HEADER).as_deref());

    let objects = Objects {
        mailboxes: PlacedNamespace::open(env, "MAILBOX", config.data_location)?,
        env,
        costs,
        config,
    };
    dispatch(command, caller, stamps_heartbeat, last_event_id, &objects).await
}

/// Reads the request body, and stops at `limit`. A body without a declared length
/// (chunked) is read chunk by chunk from the runtime's stream: a chunk that would
/// pass the limit is refused before it is copied into the Worker's memory, and the
/// rest of the upload is cancelled, so a body never costs more than `limit`.
async fn read_body(
    request: &web_sys::Request,
    content_length: Option<String>,
    limit: u64,
) -> Result<Vec<u8>, ExchangeError> {
    let declared = content_length.and_then(|length| length.parse::<u64>().ok());
    let mut body = BodyBuffer::new(declared, limit)?;
    let unreadable = |error: JsValue| ExchangeError::InvalidBody {
        reason: format!("the body could not be read ({error:?})"),
    };
    if declared.is_some() {
        // A declared length within the limit (checked above) is read in one call,
        // without making a stream object: the runtime ends such a body at its
        // declared length, so it cannot bring more than the limit.
        let whole = JsFuture::from(request.array_buffer().map_err(unreadable)?)
            .await
            .map_err(unreadable)?;
        return Ok(Uint8Array::new(&whole).to_vec());
    }
    let Some(stream) = request.body() else {
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

/// Carries out one validated command. `stamps_heartbeat`: the command also
/// stamps the heartbeat of the mailbox it acts for (see [`stamps_heartbeat`]).
async fn dispatch(
    command: Command,
    caller: Identity,
    stamps_heartbeat: bool,
    last_event_id: Option<u64>,
    objects: &Objects<'_>,
) -> Result<Response, ExchangeError> {
    let config = objects.config;
    match command {
        Command::CreateMailbox { mailbox, agent } => {
            let call = rpc::Create {
                caller,
                mailbox: mailbox.clone(),
                agent,
            };
            objects.mailbox_done(mailbox.uid, &call).await
        }
        Command::Terminate { mailbox } => {
            objects
                .mailbox_done(mailbox.uid, &rpc::Terminate { caller })
                .await
        }
        Command::Status { mailbox } => {
            let status = objects
                .mailbox(mailbox.uid, &rpc::Status { caller })
                .await?;
            json_response(json!(StatusAnswer::from(status)))
        }
        Command::Send { message } => {
            let header = message.header;
            let from_here = header.src.uid == header.dest.uid;
            let dest = header.dest.uid;
            let src = header.src.uid;
            // The sender's heartbeat rides on its bookkeeping call (or, sent to
            // itself, on the delivery): no call or row write of its own.
            let heartbeat = (stamps_heartbeat && !from_here).then(|| caller.clone());
            let deliver = rpc::Deliver {
                caller: Some(caller),
                header,
                text: message.text,
                from_here,
                replay_window_s: config.replay_window_s,
                stamps_heartbeat,
            };
            objects.mailbox(dest, &deliver).await?;
            if !from_here {
                let header = deliver.header;
                objects
                    .mailbox(src, &rpc::NoteSent { header, heartbeat })
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
                Waiter {
                    caller,
                    stamps_heartbeat,
                },
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
                Waiter {
                    caller,
                    stamps_heartbeat,
                },
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
            let call = rpc::Discover {
                caller,
                allow_subclasses,
            };
            let uids = objects.directory(&agent, &call).await?;
            let joined: Vec<String> = uids.iter().map(Uuid::to_string).collect();
            json_response(json!({ "agent_ids": joined.join(",") }))
        }
        Command::Share { mailbox, group_id } => {
            let call = rpc::Share { caller, group_id };
            objects.mailbox_done(mailbox.uid, &call).await
        }
        Command::ListShares { mailbox } => {
            let groups = objects
                .mailbox(mailbox.uid, &rpc::ListShares { caller })
                .await?;
            json_response(json!({ "group_ids": groups }))
        }
        Command::Unshare { mailbox, group_id } => {
            let call = rpc::Unshare { caller, group_id };
            objects.mailbox_done(mailbox.uid, &call).await
        }
        Command::Heartbeat { mailbox } => {
            objects
                .mailbox_done(mailbox.uid, &rpc::Heartbeat { caller })
                .await
        }
        Command::HeartbeatAge { mailbox } => {
            let age = objects
                .mailbox(mailbox.uid, &rpc::HeartbeatAge { caller })
                .await?;
            json_response(json!({ "heartbeat": age }))
        }
        Command::Stats { mailbox } => {
            let stats = objects
                .mailbox(mailbox.uid, &rpc::GetStats { caller })
                .await?;
            json_response(
                serde_json::to_value(stats).map_err(|e| ExchangeError::internal(e.to_string()))?,
            )
        }
    }
}

//! Carrying out a mailbox's follow-ups: the work it owes other objects (terminate
//! and expiry replies to requesters' mailboxes, its discovery entries), stored in
//! its SQLite by the rules. The mailbox's object calls these right after the
//! change that owed them and again from its alarm until they succeed; each is
//! safe to repeat (a reply may then arrive twice, never not at all).

use futures::future::join_all;
use worker::Env;

use super::{call_object, Costs, PlacedNamespace};
use crate::core::directory::entries_for;
use crate::core::mailbox::DirectorySync;
use crate::protocol::config::Config;
use crate::protocol::entity::EntityId;
use crate::protocol::error::ExchangeError;
use crate::protocol::message::IncomingMessage;
use crate::rpc::{Deliver, Register, Unregister};
use crate::store::FollowUp;

/// The objects follow-ups reach, placed as the Worker places them.
pub(super) struct Reach<'a> {
    mailboxes: PlacedNamespace,
    directories: PlacedNamespace,
    replay_window_s: f64,
    /// Where the calls made are counted.
    costs: &'a Costs,
}

impl<'a> Reach<'a> {
    pub(super) fn new(env: &Env, config: &Config, costs: &'a Costs) -> Result<Self, ExchangeError> {
        Ok(Self {
            mailboxes: PlacedNamespace::open(env, "MAILBOX", config.data_location)?,
            directories: PlacedNamespace::open(env, "DIRECTORY", config.data_location)?,
            replay_window_s: config.replay_window_s,
            costs,
        })
    }

    /// Carries out every follow-up in `owed` at once (discovery entries only
    /// once, to `sync`, however many times they are owed). Returns the ids of
    /// those that succeeded, and the first failure.
    pub(super) async fn carry_out(
        &self,
        owed: Vec<(u64, FollowUp)>,
        sync: DirectorySync,
    ) -> (Vec<u64>, Option<ExchangeError>) {
        let (syncs, replies): (Vec<_>, Vec<_>) = owed
            .into_iter()
            .partition(|(_, follow_up)| *follow_up == FollowUp::SyncDirectory);
        let sync_result = if syncs.is_empty() {
            Ok(())
        } else {
            self.sync_directory(sync).await
        };
        let replies = replies.into_iter().map(|(id, follow_up)| async move {
            let result = match follow_up {
                FollowUp::Reply { to, text } => self.reply(&to, text).await,
                FollowUp::SyncDirectory => Ok(()),
            };
            (id, result)
        });
        let mut done = Vec::new();
        let mut failure = None;
        let sync_results = syncs.into_iter().map(|(id, _)| (id, sync_result.clone()));
        for (id, result) in join_all(replies).await.into_iter().chain(sync_results) {
            match result {
                Ok(()) => done.push(id),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        (done, failure)
    }

    /// Queues an error reply the exchange writes in the requester's mailbox. A
    /// requester that is gone needs none (as upstream).
    async fn reply(&self, to: &EntityId, text: String) -> Result<(), ExchangeError> {
        // The exchange wrote this text itself; its header is read here, once.
        let message = IncomingMessage::parse(text)
            .map_err(|reason| ExchangeError::internal(format!("reply text: {reason}")))?;
        let call = Deliver {
            caller: None,
            header: message.header,
            text: message.text,
            from_here: false,
            replay_window_s: self.replay_window_s,
            stamps_heartbeat: false,
        };
        let name = to.uid.to_string();
        match call_object(self.costs, &self.mailboxes, &name, &call).await {
            Ok(()) | Err(ExchangeError::Terminated | ExchangeError::UnknownMailbox) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Lists an agent under every class of its MRO, or removes it from all.
    async fn sync_directory(&self, sync: DirectorySync) -> Result<(), ExchangeError> {
        let (registration, listed) = match sync {
            DirectorySync::Nothing => return Ok(()),
            DirectorySync::List(registration) => (registration, true),
            DirectorySync::Unlist(registration) => (registration, false),
        };
        let uid = registration.id.uid;
        let calls = entries_for(&registration)
            .into_iter()
            .map(|(class, entry)| async move {
                if listed {
                    call_object(self.costs, &self.directories, &class, &Register { entry }).await
                } else {
                    call_object(self.costs, &self.directories, &class, &Unregister { uid }).await
                }
            });
        join_all(calls).await.into_iter().collect()
    }
}

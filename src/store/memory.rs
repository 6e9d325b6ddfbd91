//! In-memory stores with the same contract as the SQLite ones, for native tests.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::*;

/// Where a stored message is in its life.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Delivery {
    Queued,
    /// Confirmed by a stream at this time: replayable within the window.
    Delivered(f64),
    /// Taken by `GET /message`: kept only while its request is in flight.
    Taken,
}

/// One message row, as the SQLite store keeps it.
struct Stored {
    text: String,
    enqueued_at: f64,
    delivery: Delivery,
    /// The request's header while it is in flight.
    request: Option<MessageHeader>,
}

#[derive(Default)]
pub struct MemoryMailbox {
    record: Option<MailboxRecord>,
    /// The record as last written (what a crash would leave).
    written: Option<MailboxRecord>,
    written_at: Option<f64>,
    shares: BTreeSet<String>,
    /// By sequence number.
    messages: BTreeMap<u64, Stored>,
    last_seq: u64,
    follow_ups: BTreeMap<u64, FollowUp>,
    last_follow_up: u64,
}

impl MemoryMailbox {
    /// How many message rows are stored.
    pub fn rows(&self) -> usize {
        self.messages.len()
    }

    /// The record as last written: what a crash of the object would leave.
    pub fn written_record(&self) -> Option<MailboxRecord> {
        self.written.clone()
    }
}

impl MailboxStore for MemoryMailbox {
    fn load(&self) -> StoreResult<Option<MailboxRecord>> {
        Ok(self.record.clone())
    }
    fn save(&mut self, record: &MailboxRecord, now: f64) -> StoreResult<()> {
        self.record = Some(record.clone());
        self.written = Some(record.clone());
        self.written_at = Some(now);
        Ok(())
    }
    fn stage(&mut self, record: &MailboxRecord) {
        self.record = Some(record.clone());
    }
    fn record_written_at(&self) -> Option<f64> {
        self.written_at
    }
    fn record_staged(&self) -> bool {
        self.record != self.written
    }
    fn shares(&self) -> StoreResult<Vec<String>> {
        Ok(self.shares.iter().cloned().collect())
    }
    fn add_share(&mut self, group_id: &str) -> StoreResult<()> {
        self.shares.insert(group_id.to_owned());
        Ok(())
    }
    fn remove_share(&mut self, group_id: &str) -> StoreResult<()> {
        self.shares.remove(group_id);
        Ok(())
    }
    fn push(
        &mut self,
        text: &str,
        request: Option<&MessageHeader>,
        now: f64,
        recycle_before: f64,
    ) -> StoreResult<u64> {
        if let Some(request) = request {
            self.complete_in_flight(request.tag)?;
        }
        let recyclable = self
            .messages
            .iter()
            .take(RECYCLE_LOOKAHEAD)
            .find(|(_, stored)| stored.request.is_none() || stored.delivery == Delivery::Queued)
            .filter(|(_, stored)| {
                stored.request.is_none()
                    && matches!(stored.delivery, Delivery::Delivered(at) if at < recycle_before)
            })
            .map(|(seq, _)| *seq);
        if let Some(seq) = recyclable {
            self.messages.remove(&seq);
        }
        self.last_seq = next_seq(self.last_seq, now);
        let stored = Stored {
            text: text.to_owned(),
            enqueued_at: now,
            delivery: Delivery::Queued,
            request: request.cloned(),
        };
        self.messages.insert(self.last_seq, stored);
        Ok(self.last_seq)
    }
    fn deliverable(&self, replay: Option<Replay>, limit: usize) -> StoreResult<Vec<QueuedMessage>> {
        Ok(self
            .messages
            .iter()
            .filter(|(seq, stored)| match (stored.delivery, replay) {
                (Delivery::Queued, _) => true,
                (Delivery::Delivered(at), Some(replay)) => {
                    **seq > replay.after && at >= replay.since
                }
                _ => false,
            })
            .take(limit)
            .map(|(seq, stored)| QueuedMessage {
                seq: *seq,
                text: stored.text.clone(),
            })
            .collect())
    }
    fn mark_delivered(&mut self, seq: u64, now: f64) -> StoreResult<()> {
        if let Some(stored) = self.messages.get_mut(&seq) {
            if stored.delivery != Delivery::Taken {
                stored.delivery = Delivery::Delivered(now);
            }
        }
        Ok(())
    }
    fn take(&mut self, seq: u64) -> StoreResult<()> {
        match self.messages.get_mut(&seq) {
            Some(stored) if stored.request.is_some() => stored.delivery = Delivery::Taken,
            _ => {
                self.messages.remove(&seq);
            }
        }
        Ok(())
    }
    fn queued(&self) -> StoreResult<u64> {
        Ok(self
            .messages
            .values()
            .filter(|stored| stored.delivery == Delivery::Queued)
            .count() as u64)
    }
    fn oldest_unread_at(&self) -> StoreResult<Option<f64>> {
        Ok(self
            .messages
            .values()
            .find(|stored| stored.delivery == Delivery::Queued)
            .map(|stored| stored.enqueued_at))
    }
    fn drop_queue(&mut self) -> StoreResult<Vec<MessageHeader>> {
        let mut dropped = Vec::new();
        self.messages.retain(|_, stored| {
            if stored.delivery == Delivery::Queued {
                dropped.extend(stored.request.take());
                return false;
            }
            stored.delivery = Delivery::Taken;
            stored.request.is_some()
        });
        Ok(dropped)
    }
    fn clear(&mut self) -> StoreResult<Vec<MessageHeader>> {
        Ok(std::mem::take(&mut self.messages)
            .into_values()
            .filter_map(|stored| stored.request)
            .collect())
    }
    fn complete_in_flight(&mut self, tag: Uuid) -> StoreResult<bool> {
        let Some((&seq, stored)) = self
            .messages
            .iter_mut()
            .find(|(_, stored)| stored.request.as_ref().is_some_and(|r| r.tag == tag))
        else {
            return Ok(false);
        };
        if stored.delivery == Delivery::Taken {
            self.messages.remove(&seq);
        } else {
            stored.request = None;
        }
        Ok(true)
    }
    fn in_flight(&self) -> StoreResult<u64> {
        Ok(self
            .messages
            .values()
            .filter(|stored| stored.request.is_some())
            .count() as u64)
    }
    fn add_follow_up(&mut self, follow_up: &FollowUp) -> StoreResult<()> {
        self.last_follow_up += 1;
        self.follow_ups
            .insert(self.last_follow_up, follow_up.clone());
        Ok(())
    }
    fn follow_ups(&self) -> StoreResult<Vec<(u64, FollowUp)>> {
        Ok(self
            .follow_ups
            .iter()
            .map(|(id, follow_up)| (*id, follow_up.clone()))
            .collect())
    }
    fn remove_follow_up(&mut self, id: u64) -> StoreResult<()> {
        self.follow_ups.remove(&id);
        Ok(())
    }
}

#[derive(Default)]
pub struct MemoryDirectory {
    entries: Vec<DirectoryEntry>,
}

impl DirectoryStore for MemoryDirectory {
    fn upsert(&mut self, entry: &DirectoryEntry) -> StoreResult<()> {
        match self.entries.iter_mut().find(|known| known.uid == entry.uid) {
            Some(known) => *known = entry.clone(),
            None => self.entries.push(entry.clone()),
        }
        Ok(())
    }
    fn remove(&mut self, uid: Uuid) -> StoreResult<()> {
        self.entries.retain(|known| known.uid != uid);
        Ok(())
    }
    fn list(&self, exact_only: bool) -> StoreResult<Vec<DirectoryEntry>> {
        Ok(self
            .entries
            .iter()
            .filter(|entry| entry.exact || !exact_only)
            .cloned()
            .collect())
    }
}

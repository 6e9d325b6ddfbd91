//! In-memory stores with the same contract as the SQLite ones, for native tests.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::*;

#[derive(Default)]
pub struct MemoryMailbox {
    record: Option<MailboxRecord>,
    shares: BTreeSet<String>,
    /// By sequence number: the text, and when it was delivered (kept for replay).
    queue: BTreeMap<u64, (String, Option<f64>)>,
    last_seq: u64,
    in_flight: Vec<MessageHeader>,
    /// By sequence number: when each queued message arrived.
    arrivals: BTreeMap<u64, f64>,
    follow_ups: BTreeMap<u64, FollowUp>,
    last_follow_up: u64,
}

impl MailboxStore for MemoryMailbox {
    fn load(&self) -> StoreResult<Option<MailboxRecord>> {
        Ok(self.record.clone())
    }
    fn save(&mut self, record: &MailboxRecord) -> StoreResult<()> {
        self.record = Some(record.clone());
        Ok(())
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
    fn push(&mut self, text: &str, now: f64, recycle_before: f64) -> StoreResult<u64> {
        if let Some(entry) = self.queue.first_entry() {
            if entry.get().1.is_some_and(|at| at < recycle_before) {
                self.arrivals.remove(entry.key());
                entry.remove();
            }
        }
        self.last_seq = next_seq(self.last_seq, now);
        self.queue.insert(self.last_seq, (text.to_owned(), None));
        self.arrivals.insert(self.last_seq, now);
        Ok(self.last_seq)
    }
    fn deliverable(&self, replay: Option<Replay>, limit: usize) -> StoreResult<Vec<QueuedMessage>> {
        Ok(self
            .queue
            .iter()
            .filter(|(seq, (_, delivered_at))| match (delivered_at, replay) {
                (None, _) => true,
                (Some(at), Some(replay)) => **seq > replay.after && *at >= replay.since,
                (Some(_), None) => false,
            })
            .take(limit)
            .map(|(seq, (text, _))| QueuedMessage {
                seq: *seq,
                text: text.clone(),
            })
            .collect())
    }
    fn mark_delivered(&mut self, seq: u64, now: f64) -> StoreResult<()> {
        if let Some((_, delivered_at)) = self.queue.get_mut(&seq) {
            *delivered_at = Some(now);
        }
        Ok(())
    }
    fn remove(&mut self, seq: u64) -> StoreResult<()> {
        self.queue.remove(&seq);
        self.arrivals.remove(&seq);
        Ok(())
    }
    fn queued(&self) -> StoreResult<u64> {
        Ok(self.queue.values().filter(|(_, at)| at.is_none()).count() as u64)
    }
    fn oldest_unread_at(&self) -> StoreResult<Option<f64>> {
        Ok(self
            .queue
            .iter()
            .find(|(_, (_, delivered_at))| delivered_at.is_none())
            .map(|(seq, _)| self.arrivals[seq]))
    }
    fn take_queue(&mut self) -> StoreResult<Vec<String>> {
        self.arrivals.clear();
        Ok(std::mem::take(&mut self.queue)
            .into_values()
            .filter(|(_, delivered_at)| delivered_at.is_none())
            .map(|(text, _)| text)
            .collect())
    }
    fn add_in_flight(&mut self, header: &MessageHeader) -> StoreResult<()> {
        self.in_flight.retain(|known| known.tag != header.tag);
        self.in_flight.push(header.clone());
        Ok(())
    }
    fn complete_in_flight(&mut self, tag: Uuid) -> StoreResult<bool> {
        let before = self.in_flight.len();
        self.in_flight.retain(|known| known.tag != tag);
        Ok(self.in_flight.len() < before)
    }
    fn in_flight(&self) -> StoreResult<u64> {
        Ok(self.in_flight.len() as u64)
    }
    fn take_in_flight(&mut self) -> StoreResult<Vec<MessageHeader>> {
        Ok(std::mem::take(&mut self.in_flight))
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

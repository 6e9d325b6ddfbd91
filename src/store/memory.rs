//! In-memory stores with the same contract as the SQLite ones, for native tests.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::*;

#[derive(Default)]
pub struct MemoryMailbox {
    record: Option<MailboxRecord>,
    shares: BTreeSet<String>,
    queue: BTreeMap<u64, String>,
    last_seq: u64,
    in_flight: Vec<MessageHeader>,
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
    fn push(&mut self, text: &str, now: f64) -> StoreResult<u64> {
        self.last_seq = next_seq(self.last_seq, now);
        self.queue.insert(self.last_seq, text.to_owned());
        Ok(self.last_seq)
    }
    fn oldest(&self, limit: usize) -> StoreResult<Vec<QueuedMessage>> {
        Ok(self
            .queue
            .iter()
            .take(limit)
            .map(|(seq, text)| QueuedMessage {
                seq: *seq,
                text: text.clone(),
            })
            .collect())
    }
    fn remove(&mut self, seq: u64) -> StoreResult<()> {
        self.queue.remove(&seq);
        Ok(())
    }
    fn queued(&self) -> StoreResult<u64> {
        Ok(self.queue.len() as u64)
    }
    fn clear_queue(&mut self) -> StoreResult<()> {
        self.queue.clear();
        Ok(())
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

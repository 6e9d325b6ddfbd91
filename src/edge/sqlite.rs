//! The core's store traits over a Durable Object's SQLite. Calls are synchronous
//! and run inside the object's input gate; writes with no `await` between them
//! commit together, and the object's reply waits until they are durable.

use std::cell::Cell;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use uuid::Uuid;
use worker::{SqlStorage, SqlStorageValue};

use crate::protocol::message::MessageHeader;
use crate::store::{
    DirectoryEntry, DirectoryStore, MailboxRecord, MailboxStore, QueuedMessage, StoreError,
    StoreResult,
};

thread_local! {
    /// SQLite rows written by this isolate so far (what Cloudflare bills), for the
    /// cost headers: an object reports the difference across one call.
    static ROWS_WRITTEN: Cell<u64> = const { Cell::new(0) };
}

pub fn rows_written_so_far() -> u64 {
    ROWS_WRITTEN.with(Cell::get)
}

/// Runs `sql` and reads every row it returns (consuming the cursor runs it fully).
fn query<T: DeserializeOwned>(
    db: &SqlStorage,
    sql: &str,
    bindings: Vec<SqlStorageValue>,
) -> StoreResult<Vec<T>> {
    let cursor = db
        .exec(sql, bindings)
        .map_err(|error| StoreError(format!("{sql}: {error}")))?;
    let rows = cursor
        .to_array::<T>()
        .map_err(|error| StoreError(format!("{sql}: {error}")))?;
    ROWS_WRITTEN.with(|total| total.set(total.get() + cursor.rows_written() as u64));
    Ok(rows)
}

fn execute(db: &SqlStorage, sql: &str, bindings: Vec<SqlStorageValue>) -> StoreResult<()> {
    query::<serde::de::IgnoredAny>(db, sql, bindings).map(|_| ())
}

fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|error| StoreError(error.to_string()))
}

fn from_json<T: DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|error| StoreError(error.to_string()))
}

#[derive(Deserialize)]
struct Count {
    n: u64,
}

fn count(db: &SqlStorage, sql: &str) -> StoreResult<u64> {
    Ok(query::<Count>(db, sql, vec![])?
        .first()
        .map_or(0, |row| row.n))
}

/// One mailbox's tables. `seq` is AUTOINCREMENT so event ids are never reused.
pub struct SqliteMailbox(pub SqlStorage);

impl SqliteMailbox {
    pub const SCHEMA: &'static str = "
        CREATE TABLE IF NOT EXISTS mailbox (id INTEGER PRIMARY KEY CHECK (id = 1), record TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS shares (group_id TEXT PRIMARY KEY) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL, enqueued_at REAL NOT NULL);
        CREATE TABLE IF NOT EXISTS in_flight (tag TEXT PRIMARY KEY, header TEXT NOT NULL) WITHOUT ROWID;
    ";
}

#[derive(Deserialize)]
struct RecordRow {
    record: String,
}

#[derive(Deserialize)]
struct GroupRow {
    group_id: String,
}

#[derive(Deserialize)]
struct MessageRow {
    seq: u64,
    text: String,
}

#[derive(Deserialize)]
struct HeaderRow {
    header: String,
}

impl MailboxStore for SqliteMailbox {
    fn load(&self) -> StoreResult<Option<MailboxRecord>> {
        let rows = query::<RecordRow>(&self.0, "SELECT record FROM mailbox WHERE id = 1", vec![])?;
        rows.first().map(|row| from_json(&row.record)).transpose()
    }

    fn save(&mut self, record: &MailboxRecord) -> StoreResult<()> {
        execute(
            &self.0,
            "INSERT OR REPLACE INTO mailbox (id, record) VALUES (1, ?)",
            vec![to_json(record)?.into()],
        )
    }

    fn shares(&self) -> StoreResult<Vec<String>> {
        let rows = query::<GroupRow>(
            &self.0,
            "SELECT group_id FROM shares ORDER BY group_id",
            vec![],
        )?;
        Ok(rows.into_iter().map(|row| row.group_id).collect())
    }

    fn add_share(&mut self, group_id: &str) -> StoreResult<()> {
        execute(
            &self.0,
            "INSERT OR IGNORE INTO shares (group_id) VALUES (?)",
            vec![group_id.into()],
        )
    }

    fn remove_share(&mut self, group_id: &str) -> StoreResult<()> {
        execute(
            &self.0,
            "DELETE FROM shares WHERE group_id = ?",
            vec![group_id.into()],
        )
    }

    fn push(&mut self, text: &str, now: f64) -> StoreResult<u64> {
        #[derive(Deserialize)]
        struct Seq {
            seq: u64,
        }
        let rows = query::<Seq>(
            &self.0,
            "INSERT INTO messages (text, enqueued_at) VALUES (?, ?) RETURNING seq",
            vec![text.into(), now.into()],
        )?;
        rows.first()
            .map(|row| row.seq)
            .ok_or_else(|| StoreError("insert returned no seq".into()))
    }

    fn oldest(&self, limit: usize) -> StoreResult<Vec<QueuedMessage>> {
        let rows = query::<MessageRow>(
            &self.0,
            "SELECT seq, text FROM messages ORDER BY seq LIMIT ?",
            vec![(limit as i64).into()],
        )?;
        Ok(rows
            .into_iter()
            .map(|row| QueuedMessage {
                seq: row.seq,
                text: row.text,
            })
            .collect())
    }

    fn remove(&mut self, seq: u64) -> StoreResult<()> {
        execute(
            &self.0,
            "DELETE FROM messages WHERE seq = ?",
            vec![(seq as i64).into()],
        )
    }

    fn queued(&self) -> StoreResult<u64> {
        count(&self.0, "SELECT COUNT(*) AS n FROM messages")
    }

    fn clear_queue(&mut self) -> StoreResult<()> {
        execute(&self.0, "DELETE FROM messages", vec![])
    }

    fn add_in_flight(&mut self, header: &MessageHeader) -> StoreResult<()> {
        execute(
            &self.0,
            "INSERT OR REPLACE INTO in_flight (tag, header) VALUES (?, ?)",
            vec![header.tag.to_string().into(), to_json(header)?.into()],
        )
    }

    fn complete_in_flight(&mut self, tag: Uuid) -> StoreResult<bool> {
        let removed = query::<HeaderRow>(
            &self.0,
            "DELETE FROM in_flight WHERE tag = ? RETURNING header",
            vec![tag.to_string().into()],
        )?;
        Ok(!removed.is_empty())
    }

    fn in_flight(&self) -> StoreResult<u64> {
        count(&self.0, "SELECT COUNT(*) AS n FROM in_flight")
    }

    fn take_in_flight(&mut self) -> StoreResult<Vec<MessageHeader>> {
        let rows = query::<HeaderRow>(&self.0, "DELETE FROM in_flight RETURNING header", vec![])?;
        rows.iter().map(|row| from_json(&row.header)).collect()
    }
}

/// One class name's directory, in registration order.
pub struct SqliteDirectory(pub SqlStorage);

impl SqliteDirectory {
    pub const SCHEMA: &'static str = "
        CREATE TABLE IF NOT EXISTS entries (
            position INTEGER PRIMARY KEY AUTOINCREMENT,
            uid TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, exact INTEGER NOT NULL,
            shares TEXT NOT NULL);
    ";
}

#[derive(Deserialize)]
struct EntryRow {
    uid: String,
    owner: String,
    exact: i64,
    /// JSON list of group ids.
    shares: String,
}

impl DirectoryStore for SqliteDirectory {
    fn upsert(&mut self, entry: &DirectoryEntry) -> StoreResult<()> {
        execute(
            &self.0,
            "INSERT INTO entries (uid, owner, exact, shares) VALUES (?, ?, ?, ?)
             ON CONFLICT (uid) DO UPDATE SET owner = excluded.owner, shares = excluded.shares",
            vec![
                entry.uid.to_string().into(),
                entry.owner.as_str().into(),
                i64::from(entry.exact).into(),
                to_json(&entry.shares)?.into(),
            ],
        )
    }

    fn remove(&mut self, uid: Uuid) -> StoreResult<()> {
        execute(
            &self.0,
            "DELETE FROM entries WHERE uid = ?",
            vec![uid.to_string().into()],
        )
    }

    fn list(&self, exact_only: bool) -> StoreResult<Vec<DirectoryEntry>> {
        let sql = if exact_only {
            "SELECT uid, owner, exact, shares FROM entries WHERE exact = 1 ORDER BY position"
        } else {
            "SELECT uid, owner, exact, shares FROM entries ORDER BY position"
        };
        query::<EntryRow>(&self.0, sql, vec![])?
            .into_iter()
            .map(|row| {
                Ok(DirectoryEntry {
                    uid: Uuid::parse_str(&row.uid).map_err(|e| StoreError(e.to_string()))?,
                    owner: row.owner,
                    exact: row.exact != 0,
                    shares: from_json(&row.shares)?,
                })
            })
            .collect()
    }
}

//! The core's store traits over a Durable Object's SQLite. Calls are synchronous
//! and run inside the object's input gate; writes with no `await` between them
//! commit together, and the object's reply waits until they are durable.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use uuid::Uuid;
use worker::{SqlStorage, SqlStorageValue};

use crate::protocol::message::MessageHeader;
use crate::store::{
    next_seq, DirectoryEntry, DirectoryStore, FollowUp, MailboxRecord, MailboxStore, QueuedMessage,
    Replay, StoreError, StoreResult,
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

/// What a mailbox object remembers of its own SQLite between calls, so the common
/// calls read no rows. The object is its storage's only writer, so the copies stay
/// true; a failed write forgets the copy it touched, and the next read refetches.
#[derive(Default)]
pub struct MailboxCache {
    /// Whether the tables exist (`None`: not checked yet). They are made by the
    /// first save, so asking about a mailbox that was never created leaves no
    /// storage behind.
    tables: Cell<Option<bool>>,
    /// The record (`None`: not read yet; `Some(None)`: there is none).
    record: RefCell<Option<Option<MailboxRecord>>>,
    shares: RefCell<Option<Vec<String>>>,
    /// The last sequence number pushed (`None`: not read yet).
    last_seq: Cell<Option<u64>>,
}

impl MailboxCache {
    /// The object's storage was deleted: nothing is stored any more.
    pub fn forget_all(&self) {
        self.tables.set(Some(false));
        *self.record.borrow_mut() = Some(None);
        *self.shares.borrow_mut() = Some(Vec::new());
        self.last_seq.set(None);
    }
}

/// One mailbox's tables, read through the object's [`MailboxCache`].
#[derive(Clone)]
pub struct SqliteMailbox {
    sql: SqlStorage,
    cache: Rc<MailboxCache>,
}

impl SqliteMailbox {
    const SCHEMA: &'static str = "
        CREATE TABLE IF NOT EXISTS mailbox (id INTEGER PRIMARY KEY CHECK (id = 1), record TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS shares (group_id TEXT PRIMARY KEY) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS messages (
            seq INTEGER PRIMARY KEY, text TEXT NOT NULL, enqueued_at REAL NOT NULL,
            delivered_at REAL);
        CREATE TABLE IF NOT EXISTS in_flight (tag TEXT PRIMARY KEY, header TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS follow_ups (id INTEGER PRIMARY KEY, follow_up TEXT NOT NULL);
    ";

    pub fn new(sql: SqlStorage, cache: Rc<MailboxCache>) -> Self {
        Self { sql, cache }
    }

    fn tables_exist(&self) -> StoreResult<bool> {
        if let Some(known) = self.cache.tables.get() {
            return Ok(known);
        }
        let exist = count(
            &self.sql,
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'mailbox'",
        )? > 0;
        if exist {
            self.upgrade_tables()?;
        }
        self.cache.tables.set(Some(exist));
        Ok(exist)
    }

    /// Brings tables made by earlier versions up to [`Self::SCHEMA`]; run once per
    /// object instance, before the tables are first used.
    fn upgrade_tables(&self) -> StoreResult<()> {
        let has_delivered_at = count(
            &self.sql,
            "SELECT COUNT(*) AS n FROM pragma_table_info('messages') WHERE name = 'delivered_at'",
        )? > 0;
        if !has_delivered_at {
            execute(
                &self.sql,
                "ALTER TABLE messages ADD COLUMN delivered_at REAL",
                vec![],
            )?;
        }
        // Added with expiry; writes nothing when it exists.
        execute(
            &self.sql,
            "CREATE TABLE IF NOT EXISTS follow_ups (id INTEGER PRIMARY KEY, follow_up TEXT NOT NULL)",
            vec![],
        )
    }

    fn create_tables(&self) -> StoreResult<()> {
        if !self.tables_exist()? {
            execute(&self.sql, Self::SCHEMA, vec![])?;
            self.cache.tables.set(Some(true));
        }
        Ok(())
    }

    /// Runs a write; if it fails, `forget` drops the cached copy it may have
    /// made stale.
    fn write(
        &self,
        sql: &str,
        bindings: Vec<SqlStorageValue>,
        forget: impl FnOnce(&MailboxCache),
    ) -> StoreResult<()> {
        execute(&self.sql, sql, bindings).inspect_err(|_| forget(&self.cache))
    }
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
        if let Some(record) = self.cache.record.borrow().as_ref() {
            return Ok(record.clone());
        }
        let record = if self.tables_exist()? {
            let rows =
                query::<RecordRow>(&self.sql, "SELECT record FROM mailbox WHERE id = 1", vec![])?;
            rows.first().map(|row| from_json(&row.record)).transpose()?
        } else {
            None
        };
        *self.cache.record.borrow_mut() = Some(record.clone());
        Ok(record)
    }

    fn save(&mut self, record: &MailboxRecord) -> StoreResult<()> {
        self.create_tables()?;
        self.write(
            "INSERT OR REPLACE INTO mailbox (id, record) VALUES (1, ?)",
            vec![to_json(record)?.into()],
            |cache| *cache.record.borrow_mut() = None,
        )?;
        *self.cache.record.borrow_mut() = Some(Some(record.clone()));
        Ok(())
    }

    fn shares(&self) -> StoreResult<Vec<String>> {
        if let Some(shares) = self.cache.shares.borrow().as_ref() {
            return Ok(shares.clone());
        }
        let shares: Vec<String> = if self.tables_exist()? {
            query::<GroupRow>(
                &self.sql,
                "SELECT group_id FROM shares ORDER BY group_id",
                vec![],
            )?
            .into_iter()
            .map(|row| row.group_id)
            .collect()
        } else {
            Vec::new()
        };
        *self.cache.shares.borrow_mut() = Some(shares.clone());
        Ok(shares)
    }

    fn add_share(&mut self, group_id: &str) -> StoreResult<()> {
        self.write(
            "INSERT OR IGNORE INTO shares (group_id) VALUES (?)",
            vec![group_id.into()],
            |cache| *cache.shares.borrow_mut() = None,
        )?;
        if let Some(shares) = self.cache.shares.borrow_mut().as_mut() {
            if let Err(at) = shares.binary_search_by(|held| held.as_str().cmp(group_id)) {
                shares.insert(at, group_id.to_owned());
            }
        }
        Ok(())
    }

    fn remove_share(&mut self, group_id: &str) -> StoreResult<()> {
        self.write(
            "DELETE FROM shares WHERE group_id = ?",
            vec![group_id.into()],
            |cache| *cache.shares.borrow_mut() = None,
        )?;
        if let Some(shares) = self.cache.shares.borrow_mut().as_mut() {
            shares.retain(|held| held != group_id);
        }
        Ok(())
    }

    fn push(&mut self, text: &str, now: f64, recycle_before: f64) -> StoreResult<u64> {
        #[derive(Deserialize)]
        struct Last {
            seq: Option<u64>,
        }
        let last = match self.cache.last_seq.get() {
            Some(last) => last,
            None => query::<Last>(&self.sql, "SELECT MAX(seq) AS seq FROM messages", vec![])?
                .first()
                .and_then(|row| row.seq)
                .unwrap_or(0),
        };
        let seq = next_seq(last, now);
        let forget_last = |cache: &MailboxCache| cache.last_seq.set(None);
        let recycled = query::<Last>(
            &self.sql,
            "UPDATE messages SET seq = ?1, text = ?2, enqueued_at = ?3, delivered_at = NULL
             WHERE seq = (SELECT MIN(seq) FROM messages) AND delivered_at < ?4
             RETURNING seq",
            vec![
                (seq as i64).into(),
                text.into(),
                now.into(),
                recycle_before.into(),
            ],
        )
        .inspect_err(|_| forget_last(&self.cache))?;
        if recycled.is_empty() {
            self.write(
                "INSERT INTO messages (seq, text, enqueued_at) VALUES (?, ?, ?)",
                vec![(seq as i64).into(), text.into(), now.into()],
                forget_last,
            )?;
        }
        self.cache.last_seq.set(Some(seq));
        Ok(seq)
    }

    fn deliverable(&self, replay: Option<Replay>, limit: usize) -> StoreResult<Vec<QueuedMessage>> {
        let rows = match replay {
            None => query::<MessageRow>(
                &self.sql,
                "SELECT seq, text FROM messages WHERE delivered_at IS NULL ORDER BY seq LIMIT ?",
                vec![(limit as i64).into()],
            )?,
            Some(replay) => query::<MessageRow>(
                &self.sql,
                "SELECT seq, text FROM messages
                 WHERE delivered_at IS NULL OR (seq > ? AND delivered_at >= ?)
                 ORDER BY seq LIMIT ?",
                vec![
                    (replay.after as i64).into(),
                    replay.since.into(),
                    (limit as i64).into(),
                ],
            )?,
        };
        Ok(rows
            .into_iter()
            .map(|row| QueuedMessage {
                seq: row.seq,
                text: row.text,
            })
            .collect())
    }

    fn mark_delivered(&mut self, seq: u64, now: f64) -> StoreResult<()> {
        execute(
            &self.sql,
            "UPDATE messages SET delivered_at = ? WHERE seq = ?",
            vec![now.into(), (seq as i64).into()],
        )
    }

    fn remove(&mut self, seq: u64) -> StoreResult<()> {
        execute(
            &self.sql,
            "DELETE FROM messages WHERE seq = ?",
            vec![(seq as i64).into()],
        )
    }

    fn queued(&self) -> StoreResult<u64> {
        count(
            &self.sql,
            "SELECT COUNT(*) AS n FROM messages WHERE delivered_at IS NULL",
        )
    }

    fn oldest_unread_at(&self) -> StoreResult<Option<f64>> {
        #[derive(Deserialize)]
        struct Oldest {
            at: Option<f64>,
        }
        Ok(query::<Oldest>(
            &self.sql,
            "SELECT MIN(enqueued_at) AS at FROM messages WHERE delivered_at IS NULL",
            vec![],
        )?
        .first()
        .and_then(|row| row.at))
    }

    fn take_queue(&mut self) -> StoreResult<Vec<String>> {
        let unread = query::<MessageRow>(
            &self.sql,
            "SELECT seq, text FROM messages WHERE delivered_at IS NULL ORDER BY seq",
            vec![],
        )?;
        execute(&self.sql, "DELETE FROM messages", vec![])?;
        Ok(unread.into_iter().map(|row| row.text).collect())
    }

    fn add_in_flight(&mut self, header: &MessageHeader) -> StoreResult<()> {
        execute(
            &self.sql,
            "INSERT OR REPLACE INTO in_flight (tag, header) VALUES (?, ?)",
            vec![header.tag.to_string().into(), to_json(header)?.into()],
        )
    }

    fn complete_in_flight(&mut self, tag: Uuid) -> StoreResult<bool> {
        let removed = query::<HeaderRow>(
            &self.sql,
            "DELETE FROM in_flight WHERE tag = ? RETURNING header",
            vec![tag.to_string().into()],
        )?;
        Ok(!removed.is_empty())
    }

    fn in_flight(&self) -> StoreResult<u64> {
        count(&self.sql, "SELECT COUNT(*) AS n FROM in_flight")
    }

    fn take_in_flight(&mut self) -> StoreResult<Vec<MessageHeader>> {
        let rows = query::<HeaderRow>(&self.sql, "DELETE FROM in_flight RETURNING header", vec![])?;
        rows.iter().map(|row| from_json(&row.header)).collect()
    }

    fn add_follow_up(&mut self, follow_up: &FollowUp) -> StoreResult<()> {
        self.create_tables()?;
        execute(
            &self.sql,
            "INSERT INTO follow_ups (follow_up) VALUES (?)",
            vec![to_json(follow_up)?.into()],
        )
    }

    fn follow_ups(&self) -> StoreResult<Vec<(u64, FollowUp)>> {
        #[derive(Deserialize)]
        struct FollowUpRow {
            id: u64,
            follow_up: String,
        }
        if !self.tables_exist()? {
            return Ok(Vec::new());
        }
        query::<FollowUpRow>(
            &self.sql,
            "SELECT id, follow_up FROM follow_ups ORDER BY id",
            vec![],
        )?
        .into_iter()
        .map(|row| Ok((row.id, from_json(&row.follow_up)?)))
        .collect()
    }

    fn remove_follow_up(&mut self, id: u64) -> StoreResult<()> {
        execute(
            &self.sql,
            "DELETE FROM follow_ups WHERE id = ?",
            vec![(id as i64).into()],
        )
    }
}

/// One class name's directory, in registration order: `position` is the rowid,
/// and a new row always gets the largest plus one, so the order holds without
/// `AUTOINCREMENT` (and the counter row it writes on every insert).
pub struct SqliteDirectory(pub SqlStorage);

impl SqliteDirectory {
    pub const SCHEMA: &'static str = "
        CREATE TABLE IF NOT EXISTS entries (
            position INTEGER PRIMARY KEY,
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

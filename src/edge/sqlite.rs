//! The core's store traits over a Durable Object's SQLite. Calls are synchronous
//! and run inside the object's input gate; writes with no `await` between them
//! commit together, and the object's reply waits until they are durable.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use uuid::Uuid;
use worker::{SqlStorage, SqlStorageValue};

use crate::protocol::message::MessageHeader;
use crate::store::{
    fold_in_flight, next_seq, DirectoryEntry, DirectoryStore, FollowUp, MailboxRecord,
    MailboxStore, QueuedMessage, Replay, StoreError, StoreResult, RECYCLE_LOOKAHEAD,
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
    /// No row below this sequence number is queued (`None`: not known yet).
    /// The queries for queued rows start there: rows kept for replay or while
    /// their request is in flight sit below it, and a busy mailbox keeps
    /// thousands, which every delivery would otherwise walk past.
    queued_from: Cell<Option<u64>>,
    /// SQLite rows this object instance has written (an alarm set counts as
    /// one, as billed), for the cost headers: unlike the isolate's count, no
    /// other object's writes are in it.
    rows_written: Cell<u64>,
    /// When this instance last wrote the record.
    record_written_at: Cell<Option<f64>>,
    /// `record` holds a change not written yet ([`MailboxStore::stage`]).
    record_staged: Cell<bool>,
    /// The requests in flight: tag → the sequence number of the row that
    /// carries it (`None`: not read yet). `messages` has no index on `tag`
    /// (every index update is a row written), so this copy is what finds a
    /// request's row when it is answered, without reading the table.
    in_flight: RefCell<Option<HashMap<Uuid, u64>>>,
}

impl MailboxCache {
    /// SQLite rows this object instance has written so far.
    pub fn rows_written(&self) -> u64 {
        self.rows_written.get()
    }

    /// The object set its alarm: billed as one row written, counted as one
    /// for it and its isolate.
    pub fn count_alarm_set(&self) {
        ROWS_WRITTEN.with(|total| total.set(total.get() + 1));
        self.rows_written.set(self.rows_written.get() + 1);
    }

    /// The object's storage was deleted: nothing is stored any more.
    pub fn forget_all(&self) {
        self.tables.set(Some(false));
        *self.record.borrow_mut() = Some(None);
        *self.shares.borrow_mut() = Some(Vec::new());
        self.last_seq.set(None);
        *self.in_flight.borrow_mut() = Some(HashMap::new());
        self.queued_from.set(None);
        self.record_staged.set(false);
    }

    fn forget_in_flight(&self) {
        *self.in_flight.borrow_mut() = None;
    }
}

/// One mailbox's tables, read through the object's [`MailboxCache`].
#[derive(Clone)]
pub struct SqliteMailbox {
    sql: SqlStorage,
    cache: Rc<MailboxCache>,
}

/// `delivered_at` of a message taken by `GET /message` and kept only because
/// its request is in flight: before every replay window (a window reaches back
/// at most `MAX_SECONDS` from now), so it is never replayed; not NULL, so it is
/// not queued. Such a row always carries its request (`tag` is set): it is
/// deleted when the request is completed.
const TAKEN: f64 = -1.0;

impl SqliteMailbox {
    /// `messages`: the queue, the messages kept for replay, and the requests in
    /// flight. `delivered_at` is NULL while queued, the stream's confirmation
    /// time once delivered, [`TAKEN`] once taken. `tag` and `header` (JSON) are
    /// set while the message is a request in flight, so recording one costs no
    /// row beyond the message's own.
    const SCHEMA: &'static str = "
        CREATE TABLE IF NOT EXISTS mailbox (id INTEGER PRIMARY KEY CHECK (id = 1), record TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS shares (group_id TEXT PRIMARY KEY) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS messages (
            seq INTEGER PRIMARY KEY, text TEXT NOT NULL, enqueued_at REAL NOT NULL,
            delivered_at REAL, tag TEXT, header TEXT);
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
    /// object instance, before the tables are first used. Each step checks
    /// whether it is done, so a run cut short is finished by the next.
    fn upgrade_tables(&self) -> StoreResult<()> {
        let has_column = |name: &str| -> StoreResult<bool> {
            Ok(self
                .query::<Count>(
                    "SELECT COUNT(*) AS n FROM pragma_table_info('messages') WHERE name = ?",
                    vec![name.into()],
                )?
                .first()
                .is_some_and(|row| row.n > 0))
        };
        if !has_column("delivered_at")? {
            self.execute("ALTER TABLE messages ADD COLUMN delivered_at REAL", vec![])?;
        }
        if !has_column("tag")? {
            self.execute("ALTER TABLE messages ADD COLUMN tag TEXT", vec![])?;
            self.execute("ALTER TABLE messages ADD COLUMN header TEXT", vec![])?;
        }
        let has_in_flight_table = count(
            &self.sql,
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'in_flight'",
        )? > 0;
        if has_in_flight_table {
            self.fold_in_flight_table()?;
        }
        // Added with expiry; writes nothing when it exists.
        self.execute("CREATE TABLE IF NOT EXISTS follow_ups (id INTEGER PRIMARY KEY, follow_up TEXT NOT NULL)",
            vec![],
        )
    }

    /// Moves the requests in flight from the `in_flight (tag, header)` table of
    /// versions before the fold into `messages` (see [`fold_in_flight`]), then
    /// drops that table, so nothing is read from two places afterwards.
    ///
    /// A placeholder row (empty text, taken) is inserted without a `seq`, so
    /// SQLite gives it the largest one plus one: unique, positive, and the
    /// next push still numbers above every row (`next_seq` goes on from the
    /// largest). Being taken, it is never sent, replayed nor counted as queued,
    /// and it is deleted when its request is answered.
    fn fold_in_flight_table(&self) -> StoreResult<()> {
        #[derive(Deserialize)]
        struct OldInFlight {
            tag: String,
            header: String,
        }
        #[derive(Deserialize)]
        struct CarriedTag {
            tag: String,
        }
        // A run cut short carried some already.
        let carried: Vec<String> = self
            .query::<CarriedTag>("SELECT tag FROM messages WHERE tag IS NOT NULL", vec![])?
            .into_iter()
            .map(|row| row.tag)
            .collect();
        let old: Vec<(String, String)> = self
            .query::<OldInFlight>("SELECT tag, header FROM in_flight", vec![])?
            .into_iter()
            .filter(|row| !carried.contains(&row.tag))
            .map(|row| (row.tag, row.header))
            .collect();
        let messages: Vec<(u64, String)> = self
            .query::<MessageRow>(
                "SELECT seq, text FROM messages WHERE tag IS NULL ORDER BY seq",
                vec![],
            )?
            .into_iter()
            .map(|row| (row.seq, row.text))
            .collect();
        let fold = fold_in_flight(&messages, &old);
        for (seq, tag, header) in fold.carried {
            self.execute(
                "UPDATE messages SET tag = ?, header = ? WHERE seq = ?",
                vec![tag.into(), header.into(), (seq as i64).into()],
            )?;
        }
        for (tag, header) in fold.placeholders {
            self.execute(
                "INSERT INTO messages (text, enqueued_at, delivered_at, tag, header)
                 VALUES ('', 0, ?, ?, ?)",
                vec![TAKEN.into(), tag.into(), header.into()],
            )?;
        }
        self.execute("DROP TABLE in_flight", vec![])
    }

    /// [`query`] on this mailbox's tables, counting the rows it writes as this
    /// object's too (the call is synchronous: no other object's write is in it).
    fn query<T: DeserializeOwned>(
        &self,
        sql: &str,
        bindings: Vec<SqlStorageValue>,
    ) -> StoreResult<Vec<T>> {
        let before = rows_written_so_far();
        let rows = query(&self.sql, sql, bindings);
        let written = rows_written_so_far() - before;
        self.cache
            .rows_written
            .set(self.cache.rows_written.get() + written);
        rows
    }

    fn execute(&self, sql: &str, bindings: Vec<SqlStorageValue>) -> StoreResult<()> {
        self.query::<serde::de::IgnoredAny>(sql, bindings)
            .map(|_| ())
    }

    /// Where the queries for queued rows start ([`MailboxCache::queued_from`]).
    fn queued_from(&self) -> u64 {
        self.cache.queued_from.get().unwrap_or(0)
    }

    /// Reads the requests in flight (tag → seq), from the table once per
    /// object instance.
    fn with_in_flight<T>(&self, read: impl FnOnce(&HashMap<Uuid, u64>) -> T) -> StoreResult<T> {
        if let Some(known) = self.cache.in_flight.borrow().as_ref() {
            return Ok(read(known));
        }
        #[derive(Deserialize)]
        struct InFlightRow {
            seq: u64,
            tag: String,
        }
        let rows = if self.tables_exist()? {
            self.query::<InFlightRow>(
                "SELECT seq, tag FROM messages WHERE tag IS NOT NULL",
                vec![],
            )?
        } else {
            Vec::new()
        };
        let known = rows
            .into_iter()
            .map(|row| {
                let tag = Uuid::parse_str(&row.tag).map_err(|e| StoreError(e.to_string()))?;
                Ok((tag, row.seq))
            })
            .collect::<StoreResult<HashMap<Uuid, u64>>>()?;
        let answer = read(&known);
        *self.cache.in_flight.borrow_mut() = Some(known);
        Ok(answer)
    }

    /// Changes the cached requests in flight, if they were read.
    fn update_in_flight(&self, change: impl FnOnce(&mut HashMap<Uuid, u64>)) {
        if let Some(known) = self.cache.in_flight.borrow_mut().as_mut() {
            change(known);
        }
    }

    /// The headers of deleted rows (`RETURNING seq, header`) that carried a
    /// request in flight, in sequence order.
    fn requests_in(&self, mut rows: Vec<DeletedRow>) -> StoreResult<Vec<MessageHeader>> {
        rows.sort_by_key(|row| row.seq);
        rows.into_iter()
            .filter_map(|row| row.header)
            .map(|header| from_json(&header))
            .collect()
    }

    fn create_tables(&self) -> StoreResult<()> {
        if !self.tables_exist()? {
            self.execute(Self::SCHEMA, vec![])?;
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
        self.execute(sql, bindings)
            .inspect_err(|_| forget(&self.cache))
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
struct DeletedRow {
    seq: u64,
    header: Option<String>,
}

impl MailboxStore for SqliteMailbox {
    fn load(&self) -> StoreResult<Option<MailboxRecord>> {
        if let Some(record) = self.cache.record.borrow().as_ref() {
            return Ok(record.clone());
        }
        let record = if self.tables_exist()? {
            let rows =
                self.query::<RecordRow>("SELECT record FROM mailbox WHERE id = 1", vec![])?;
            rows.first().map(|row| from_json(&row.record)).transpose()?
        } else {
            None
        };
        *self.cache.record.borrow_mut() = Some(record.clone());
        Ok(record)
    }

    fn save(&mut self, record: &MailboxRecord, now: f64) -> StoreResult<()> {
        self.create_tables()?;
        self.write(
            "INSERT OR REPLACE INTO mailbox (id, record) VALUES (1, ?)",
            vec![to_json(record)?.into()],
            // A staged change is lost with the copy: the stored record is read again.
            |cache| {
                *cache.record.borrow_mut() = None;
                cache.record_staged.set(false);
            },
        )?;
        *self.cache.record.borrow_mut() = Some(Some(record.clone()));
        self.cache.record_written_at.set(Some(now));
        self.cache.record_staged.set(false);
        Ok(())
    }

    fn stage(&mut self, record: &MailboxRecord) {
        *self.cache.record.borrow_mut() = Some(Some(record.clone()));
        self.cache.record_staged.set(true);
    }

    fn record_written_at(&self) -> Option<f64> {
        self.cache.record_written_at.get()
    }

    fn record_staged(&self) -> bool {
        self.cache.record_staged.get()
    }

    fn shares(&self) -> StoreResult<Vec<String>> {
        if let Some(shares) = self.cache.shares.borrow().as_ref() {
            return Ok(shares.clone());
        }
        let shares: Vec<String> = if self.tables_exist()? {
            self.query::<GroupRow>("SELECT group_id FROM shares ORDER BY group_id", vec![])?
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

    fn push(
        &mut self,
        text: &str,
        request: Option<&MessageHeader>,
        now: f64,
        recycle_before: f64,
    ) -> StoreResult<u64> {
        #[derive(Deserialize)]
        struct Last {
            seq: Option<u64>,
        }
        if let Some(request) = request {
            self.complete_in_flight(request.tag)?;
        }
        let last = match self.cache.last_seq.get() {
            Some(last) => last,
            None => self
                .query::<Last>("SELECT MAX(seq) AS seq FROM messages", vec![])?
                .first()
                .and_then(|row| row.seq)
                .unwrap_or(0),
        };
        let seq = next_seq(last, now);
        let tag = request.map(|request| request.tag.to_string());
        let header = request.map(to_json).transpose()?;
        let forget = |cache: &MailboxCache| {
            cache.last_seq.set(None);
            cache.forget_in_flight();
        };
        // The candidate is the oldest row that is queued or not in flight,
        // among the oldest RECYCLE_LOOKAHEAD (the search passes only requests
        // delivered and not answered yet); it is taken over if it is not in
        // flight and out of the replay window.
        let recycled = self
            .query::<Last>(
                "UPDATE messages SET seq = ?1, text = ?2, enqueued_at = ?3, delivered_at = NULL,
                 tag = ?5, header = ?6
             WHERE seq = (SELECT seq FROM (SELECT seq, tag, delivered_at FROM messages
                                           ORDER BY seq LIMIT ?7)
                          WHERE tag IS NULL OR delivered_at IS NULL ORDER BY seq LIMIT 1)
               AND tag IS NULL AND delivered_at < ?4
             RETURNING seq",
                vec![
                    (seq as i64).into(),
                    text.into(),
                    now.into(),
                    recycle_before.into(),
                    tag.clone().into(),
                    header.clone().into(),
                    (RECYCLE_LOOKAHEAD as i64).into(),
                ],
            )
            .inspect_err(|_| forget(&self.cache))?;
        if recycled.is_empty() {
            self.write(
                "INSERT INTO messages (seq, text, enqueued_at, tag, header) VALUES (?, ?, ?, ?, ?)",
                vec![
                    (seq as i64).into(),
                    text.into(),
                    now.into(),
                    tag.into(),
                    header.into(),
                ],
                forget,
            )?;
        }
        self.cache.last_seq.set(Some(seq));
        if let Some(request) = request {
            self.update_in_flight(|known| {
                known.insert(request.tag, seq);
            });
        }
        Ok(seq)
    }

    fn deliverable(&self, replay: Option<Replay>, limit: usize) -> StoreResult<Vec<QueuedMessage>> {
        let from = self.queued_from();
        let rows = match replay {
            None => {
                let rows = self.query::<MessageRow>(
                    "SELECT seq, text FROM messages WHERE seq >= ? AND delivered_at IS NULL
                     ORDER BY seq LIMIT ?",
                    vec![(from as i64).into(), (limit as i64).into()],
                )?;
                // Nothing between `from` and the first row found is queued;
                // none found: nothing up to the last one pushed is.
                let first_queued = match rows.first() {
                    Some(row) => Some(row.seq),
                    None => self.cache.last_seq.get().map(|last| last + 1),
                };
                if let Some(first) = first_queued {
                    self.cache.queued_from.set(Some(first));
                }
                rows
            }
            // A taken row's `delivered_at` is before every window.
            Some(replay) => self.query::<MessageRow>(
                "SELECT seq, text FROM messages
                 WHERE (seq >= ? AND delivered_at IS NULL) OR (seq > ? AND delivered_at >= ?)
                 ORDER BY seq LIMIT ?",
                vec![
                    (from as i64).into(),
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
        self.execute(
            "UPDATE messages SET delivered_at = ? WHERE seq = ? AND delivered_at IS NOT ?",
            vec![now.into(), (seq as i64).into(), TAKEN.into()],
        )
    }

    fn take(&mut self, seq: u64) -> StoreResult<()> {
        // The cached requests in flight say which statement it takes: one.
        let in_flight = self.with_in_flight(|known| known.values().any(|&held| held == seq))?;
        if in_flight {
            self.execute(
                "UPDATE messages SET delivered_at = ? WHERE seq = ?",
                vec![TAKEN.into(), (seq as i64).into()],
            )
        } else {
            self.execute(
                "DELETE FROM messages WHERE seq = ?",
                vec![(seq as i64).into()],
            )
        }
    }

    fn queued(&self) -> StoreResult<u64> {
        Ok(self
            .query::<Count>(
                "SELECT COUNT(*) AS n FROM messages WHERE seq >= ? AND delivered_at IS NULL",
                vec![(self.queued_from() as i64).into()],
            )?
            .first()
            .map_or(0, |row| row.n))
    }

    fn oldest_unread_at(&self) -> StoreResult<Option<f64>> {
        #[derive(Deserialize)]
        struct Oldest {
            at: Option<f64>,
        }
        Ok(self.query::<Oldest>("SELECT MIN(enqueued_at) AS at FROM messages WHERE seq >= ? AND delivered_at IS NULL",
            vec![(self.queued_from() as i64).into()],
        )?
        .first()
        .and_then(|row| row.at))
    }

    fn drop_queue(&mut self) -> StoreResult<Vec<MessageHeader>> {
        let dropped = self.query::<DeletedRow>("DELETE FROM messages WHERE delivered_at IS NULL OR tag IS NULL RETURNING seq, header",
            vec![],
        )
        .inspect_err(|_| self.cache.forget_in_flight())?;
        // What stays is in flight and read: no longer replayable.
        self.execute(
            "UPDATE messages SET delivered_at = ?1 WHERE delivered_at IS NOT ?1",
            vec![TAKEN.into()],
        )
        .inspect_err(|_| self.cache.forget_in_flight())?;
        let requests = self.requests_in(dropped)?;
        self.update_in_flight(|known| {
            for request in &requests {
                known.remove(&request.tag);
            }
        });
        Ok(requests)
    }

    fn clear(&mut self) -> StoreResult<Vec<MessageHeader>> {
        let deleted = self
            .query::<DeletedRow>("DELETE FROM messages RETURNING seq, header", vec![])
            .inspect_err(|_| self.cache.forget_in_flight())?;
        *self.cache.in_flight.borrow_mut() = Some(HashMap::new());
        self.requests_in(deleted)
    }

    fn complete_in_flight(&mut self, tag: Uuid) -> StoreResult<bool> {
        let Some(seq) = self.with_in_flight(|known| known.get(&tag).copied())? else {
            return Ok(false);
        };
        let bindings = || vec![(seq as i64).into(), tag.to_string().into()];
        let forget = |cache: &MailboxCache| cache.forget_in_flight();
        let mut taken_deleted = bindings();
        taken_deleted.push(TAKEN.into());
        let deleted = self
            .query::<DeletedRow>(
                "DELETE FROM messages WHERE seq = ? AND tag = ? AND delivered_at = ?
             RETURNING seq, header",
                taken_deleted,
            )
            .inspect_err(|_| forget(&self.cache))?;
        if deleted.is_empty() {
            self.write(
                "UPDATE messages SET tag = NULL, header = NULL WHERE seq = ? AND tag = ?",
                bindings(),
                forget,
            )?;
        }
        self.update_in_flight(|known| {
            known.remove(&tag);
        });
        Ok(true)
    }

    fn in_flight(&self) -> StoreResult<u64> {
        self.with_in_flight(|known| known.len() as u64)
    }

    fn add_follow_up(&mut self, follow_up: &FollowUp) -> StoreResult<()> {
        self.create_tables()?;
        self.execute(
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
        self.query::<FollowUpRow>("SELECT id, follow_up FROM follow_ups ORDER BY id", vec![])?
            .into_iter()
            .map(|row| Ok((row.id, from_json(&row.follow_up)?)))
            .collect()
    }

    fn remove_follow_up(&mut self, id: u64) -> StoreResult<()> {
        self.execute(
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

//! The outbox: every event the agent has read and the cloud has not yet accepted, in one SQLite file.
//!
//! Guarantees:
//! - **Durable before processed.** A file's events and the record that the file was processed are written
//!   in one transaction (WAL, `synchronous=FULL`), so after a crash or power loss either both exist or
//!   neither does: a file is never marked processed without its events, and events are never written
//!   twice for one file.
//! - **Identity by content.** A result is processed once per content hash, whatever its path: a rescan, a
//!   restart, or the same result in the 電子カルテ's trash folder yields nothing new. The hash is of the
//!   parsed document (see `oqs::Parsed::content_hash`), so a trailing CRLF or a re-encoding is the same
//!   result; a file that cannot be parsed is recorded by the hash of its bytes. Event ids also derive from
//!   the content, so even a lost outbox cannot create different ids for the same result.
//! - **Deleted only when accepted.** Rows leave the outbox when the cloud answered 202 for them (`ack`), or
//!   move to `rejected` when the cloud refused them permanently (4xx other than 401/429), where they stay
//!   for inspection. Nothing is dropped.
//! - **Corruption never stalls delivery.** A row whose body no longer decodes as an event (a damaged page,
//!   a hand edit) is moved by `peek`, in one transaction, to the `corrupt` table with the reason and the
//!   time, and delivery goes on with the next rows. Such a row is never delivered and never silently
//!   dropped: it stays in `corrupt` for inspection, is logged at WARN, and is counted (`corrupt_count`,
//!   shown by `onshi-agent status`).
//! - **FIFO.** Events are delivered in the order they were read (`seq`).
//! - **Bounded.** `has_room` compares the bytes of buffered events (plus a per-row overhead) with the
//!   configured budget; when it is full the agent stops reading new result files (they stay in the
//!   terminal's folder) until deliveries free space. The WAL is capped by `journal_size_limit`, and the
//!   bookkeeping of processed files (a few hundred bytes per file) is pruned after a year. A real
//!   disk-full error makes the commit fail, with the same effect: nothing is marked processed.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use onshi_domain::AgentEvent;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database error")]
    Db(#[from] rusqlite::Error),
    /// An event could not be encoded for storage (never a stored row: those are set aside by `peek`).
    #[error("event could not be encoded for the outbox")]
    Encode(#[from] serde_json::Error),
}

/// What committing a file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The file's events are now in the outbox.
    Events(usize),
    /// This content was processed before (another path, a restart): nothing new.
    AlreadyProcessed,
}

pub struct Outbox {
    conn: Mutex<Connection>,
    max_bytes: u64,
    /// Bytes of buffered events, kept in step with the `events` table under the same lock.
    buffered: std::sync::atomic::AtomicU64,
    /// Rows set aside as corrupt by this process.
    corrupt_seen: std::sync::atomic::AtomicU64,
}

/// Storage overhead counted per buffered event besides its JSON (row header, id, index entry).
const ROW_OVERHEAD: u64 = 96;
/// Processed-file records older than this are pruned: a result file does not come back after a year.
const KEEP_PROCESSED_SECS: i64 = 400 * 24 * 3600;

/// A queued event with its position.
#[derive(Debug, Clone)]
pub struct Queued {
    pub seq: i64,
    pub event: AgentEvent,
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Bytes of buffered events as counted against the budget, from the table itself.
fn count_buffered(conn: &Connection) -> Result<u64, OutboxError> {
    let bytes: i64 = conn.query_row(
        "SELECT COALESCE(SUM(LENGTH(CAST(body AS BLOB))), 0) + COUNT(*) * ?1 FROM events",
        params![ROW_OVERHEAD as i64],
        |r| r.get(0),
    )?;
    Ok(bytes.max(0) as u64)
}

/// Rows of `events` that do not decode: position and reason.
type Undecodable = Vec<(i64, String)>;

/// The first `limit` rows of `events`: those that decode, and the others with the reason they do not.
fn read_batch(conn: &Connection, limit: usize) -> Result<(Vec<Queued>, Undecodable), OutboxError> {
    let mut stmt = conn.prepare_cached("SELECT seq, body FROM events ORDER BY seq LIMIT ?1")?;
    let mut rows = stmt.query(params![limit as i64])?;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        match decode_body(row.get_ref(1)?) {
            Ok(event) => good.push(Queued { seq, event }),
            Err(reason) => bad.push((seq, reason)),
        }
    }
    Ok((good, bad))
}

/// A stored body as an event, or why it is not one. The reason comes from the JSON decoder (a position
/// and what was expected); bodies hold pseudonymised events only, so it carries no personal data.
fn decode_body(body: ValueRef<'_>) -> Result<AgentEvent, String> {
    let bytes = match body {
        ValueRef::Text(b) | ValueRef::Blob(b) => b,
        ValueRef::Null => return Err("body is NULL".to_owned()),
        ValueRef::Integer(_) | ValueRef::Real(_) => return Err("body is a number, not JSON text".to_owned()),
    };
    let text = std::str::from_utf8(bytes).map_err(|e| format!("body is not UTF-8: {e}"))?;
    serde_json::from_str(text).map_err(|e| format!("body is not a valid event: {e}").chars().take(300).collect())
}

impl Outbox {
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, OutboxError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk when it returns, also across power loss (NORMAL may lose the last ones).
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Truncate the WAL back to 4 MiB after checkpoints, so it cannot grow without bound.
        conn.pragma_update(None, "journal_size_limit", 4 * 1024 * 1024)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 id TEXT NOT NULL UNIQUE,
                 body TEXT NOT NULL,
                 created_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS processed (
                 content_hash TEXT PRIMARY KEY,
                 path TEXT NOT NULL,
                 size INTEGER NOT NULL,
                 outcome TEXT NOT NULL,
                 processed_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS seen_paths (
                 path TEXT PRIMARY KEY,
                 size INTEGER NOT NULL,
                 modified INTEGER NOT NULL,
                 content_hash TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS rejected (
                 seq INTEGER PRIMARY KEY,
                 id TEXT NOT NULL,
                 body TEXT NOT NULL,
                 status INTEGER NOT NULL,
                 reason TEXT NOT NULL,
                 rejected_at INTEGER NOT NULL);
             -- Rows of `events` that no longer decode, kept as they were found (`id` and `body` untyped:
             -- whatever the damaged row held is copied unchanged).
             CREATE TABLE IF NOT EXISTS corrupt (
                 seq INTEGER PRIMARY KEY,
                 id,
                 body,
                 reason TEXT NOT NULL,
                 found_at INTEGER NOT NULL);",
        )?;
        let cutoff = now() - KEEP_PROCESSED_SECS;
        conn.execute("DELETE FROM processed WHERE processed_at < ?1", params![cutoff])?;
        conn.execute("DELETE FROM seen_paths WHERE content_hash NOT IN (SELECT content_hash FROM processed)", [])?;
        let buffered = count_buffered(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            max_bytes,
            buffered: std::sync::atomic::AtomicU64::new(buffered),
            corrupt_seen: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn add_buffered(&self, bytes: u64) {
        self.buffered.fetch_add(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    fn sub_buffered(&self, bytes: u64) {
        let _ =
            self.buffered.fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |b| {
                Some(b.saturating_sub(bytes))
            });
    }

    /// Bytes of events waiting for delivery, as counted against the budget.
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes the database uses (main file pages in use plus the WAL).
    pub fn used_bytes(&self) -> Result<u64, OutboxError> {
        let conn = self.conn();
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let wal = conn
            .path()
            .map(|p| format!("{p}-wal"))
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(u64::try_from((pages - free).max(0) * page_size).unwrap_or(0) + wal)
    }

    /// Whether the agent may read more files.
    pub fn has_room(&self) -> Result<bool, OutboxError> {
        Ok(self.buffered_bytes() < self.max_bytes)
    }

    /// The content hash recorded for this path at this size and modification time, if any: lets a
    /// rescan skip unchanged files without reading them.
    pub fn known_path(&self, path: &str, size: u64, modified: i64) -> Result<Option<String>, OutboxError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT content_hash FROM seen_paths WHERE path = ?1 AND size = ?2 AND modified = ?3",
                params![path, size as i64, modified],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn remember_path(&self, path: &str, size: u64, modified: i64, hash: &str) -> Result<(), OutboxError> {
        self.conn().execute(
            "INSERT INTO seen_paths (path, size, modified, content_hash) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(path) DO UPDATE SET size = excluded.size, modified = excluded.modified, content_hash = excluded.content_hash",
            params![path, size as i64, modified, hash],
        )?;
        Ok(())
    }

    pub fn is_processed(&self, hash: &str) -> Result<bool, OutboxError> {
        Ok(self
            .conn()
            .query_row("SELECT 1 FROM processed WHERE content_hash = ?1", params![hash], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Stores a file's events and marks the file processed, atomically.
    pub fn commit_file(
        &self,
        hash: &str,
        path: &str,
        size: u64,
        events: &[AgentEvent],
    ) -> Result<Committed, OutboxError> {
        let bodies: Vec<(String, String)> = events
            .iter()
            .map(|e| Ok((e.id.to_string(), serde_json::to_string(e)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let seen: Option<()> =
            tx.query_row("SELECT 1 FROM processed WHERE content_hash = ?1", params![hash], |_| Ok(())).optional()?;
        if seen.is_some() {
            return Ok(Committed::AlreadyProcessed);
        }
        let created = now();
        let mut added = 0u64;
        for (id, body) in &bodies {
            let n = tx.execute(
                "INSERT OR IGNORE INTO events (id, body, created_at) VALUES (?1, ?2, ?3)",
                params![id, body, created],
            )?;
            if n > 0 {
                added += body.len() as u64 + ROW_OVERHEAD;
            }
        }
        tx.execute(
            "INSERT INTO processed (content_hash, path, size, outcome, processed_at) VALUES (?1, ?2, ?3, 'events', ?4)",
            params![hash, path, size as i64, created],
        )?;
        tx.commit()?;
        self.add_buffered(added);
        Ok(Committed::Events(bodies.len()))
    }

    /// Marks a file processed without events (it was quarantined), so rescans do not quarantine it again.
    pub fn mark_quarantined(&self, hash: &str, path: &str, size: u64) -> Result<(), OutboxError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO processed (content_hash, path, size, outcome, processed_at) VALUES (?1, ?2, ?3, 'quarantined', ?4)",
            params![hash, path, size as i64, now()],
        )?;
        Ok(())
    }

    /// The oldest `limit` events, in order. A row that does not decode is set aside (see the module
    /// documentation) and the batch is filled from the rows after it, so one damaged row never blocks
    /// the others.
    pub fn peek(&self, limit: usize) -> Result<Vec<Queued>, OutboxError> {
        let mut conn = self.conn();
        let (good, bad) = read_batch(&conn, limit)?;
        if bad.is_empty() {
            return Ok(good);
        }
        // Damaged rows: set them aside and read again, all in one write transaction, so the batch returned
        // is exactly the first `limit` decodable rows.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut set_aside: Vec<(i64, Option<String>, String)> = Vec::new();
        let good = loop {
            let (good, bad) = read_batch(&tx, limit)?;
            if bad.is_empty() {
                break good;
            }
            for (seq, reason) in bad {
                let id: Option<String> =
                    tx.query_row("SELECT CAST(id AS TEXT) FROM events WHERE seq = ?1", params![seq], |r| r.get(0))?;
                tx.execute(
                    "INSERT OR REPLACE INTO corrupt (seq, id, body, reason, found_at)
                     SELECT seq, id, body, ?2, ?3 FROM events WHERE seq = ?1",
                    params![seq, reason, now()],
                )?;
                tx.execute("DELETE FROM events WHERE seq = ?1", params![seq])?;
                set_aside.push((seq, id, reason));
            }
        };
        // A damaged row's length is not what was counted when it was written: count the budget afresh.
        let buffered = count_buffered(&tx)?;
        tx.commit()?;
        self.buffered.store(buffered, std::sync::atomic::Ordering::SeqCst);
        self.corrupt_seen.fetch_add(set_aside.len() as u64, std::sync::atomic::Ordering::SeqCst);
        for (seq, id, reason) in set_aside {
            tracing::warn!(
                seq,
                id = id.as_deref().unwrap_or("?"),
                %reason,
                "outbox row does not decode as an event: set aside in the outbox's corrupt table, never delivered"
            );
        }
        Ok(good)
    }

    /// Removes events the cloud accepted.
    pub fn ack(&self, seqs: &[i64]) -> Result<(), OutboxError> {
        self.remove(seqs, None)
    }

    /// Moves events the cloud refused for good to `rejected`, with the reason.
    /// The position of a queued event, by id (for an event delivered outside the delivery loop, as
    /// `uke import` does); `None` when it is no longer queued.
    pub fn seq_of(&self, id: &onshi_domain::EventId) -> Result<Option<i64>, OutboxError> {
        Ok(self
            .conn()
            .query_row("SELECT seq FROM events WHERE id = ?1", params![id.to_string()], |r| r.get(0))
            .optional()?)
    }

    pub fn reject(&self, seqs: &[i64], status: u16, reason: &str) -> Result<(), OutboxError> {
        self.remove(seqs, Some((status, reason)))
    }

    /// Deletes events in one transaction, first copying them to `rejected` when given a refusal, and
    /// releases their bytes from the budget.
    fn remove(&self, seqs: &[i64], refusal: Option<(u16, &str)>) -> Result<(), OutboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut freed = 0u64;
        for seq in seqs {
            let len: Option<i64> = tx
                .query_row("SELECT LENGTH(CAST(body AS BLOB)) FROM events WHERE seq = ?1", params![seq], |r| r.get(0))
                .optional()?;
            let Some(len) = len else { continue };
            if let Some((status, reason)) = refusal {
                tx.execute(
                    "INSERT OR REPLACE INTO rejected (seq, id, body, status, reason, rejected_at)
                     SELECT seq, id, body, ?2, ?3, ?4 FROM events WHERE seq = ?1",
                    params![seq, i64::from(status), reason, now()],
                )?;
            }
            tx.execute("DELETE FROM events WHERE seq = ?1", params![seq])?;
            freed += len.max(0) as u64 + ROW_OVERHEAD;
        }
        tx.commit()?;
        self.sub_buffered(freed);
        Ok(())
    }

    pub fn depth(&self) -> Result<u64, OutboxError> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))?.max(0) as u64)
    }

    pub fn rejected_count(&self) -> Result<u64, OutboxError> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM rejected", [], |r| r.get::<_, i64>(0))?.max(0) as u64)
    }

    /// Rows set aside because they no longer decoded (all time, from the `corrupt` table).
    pub fn corrupt_count(&self) -> Result<u64, OutboxError> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM corrupt", [], |r| r.get::<_, i64>(0))?.max(0) as u64)
    }

    /// Rows this process has set aside as corrupt since it opened the outbox.
    pub fn corrupt_seen(&self) -> u64 {
        self.corrupt_seen.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn processed_count(&self) -> Result<u64, OutboxError> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM processed", [], |r| r.get::<_, i64>(0))?.max(0) as u64)
    }

    /// Age in seconds of the oldest undelivered event.
    pub fn oldest_age_secs(&self) -> Result<Option<u64>, OutboxError> {
        let oldest: Option<i64> = self.conn().query_row("SELECT MIN(created_at) FROM events", [], |r| r.get(0))?;
        Ok(oldest.map(|t| (now() - t).max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onshi_domain::{EventId, EventPayload, Heartbeat};

    fn event(n: u64) -> AgentEvent {
        AgentEvent {
            id: EventId::new(),
            occurred_at: OffsetDateTime::now_utc(),
            payload: EventPayload::Heartbeat(Heartbeat {
                agent_version: format!("v{n}"),
                outbox_depth: 0,
                oldest_undelivered_secs: None,
                reader_ok: None,
                network_ok: None,
                last_result_at: None,
                clock_skew_secs: None,
                backpressure: false,
                quarantined: 0,
                corrupt_outbox_rows: 0,
                timed_by_file_name: 0,
                last_quarantine: None,
            }),
        }
    }

    #[test]
    fn a_file_is_committed_once_and_delivered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("o.db"), u64::MAX).unwrap();
        let events: Vec<_> = (0..3).map(event).collect();
        assert_eq!(outbox.commit_file("h1", "a.xml", 10, &events).unwrap(), Committed::Events(3));
        assert_eq!(outbox.commit_file("h1", "trash/a.xml", 10, &events).unwrap(), Committed::AlreadyProcessed);
        assert!(outbox.is_processed("h1").unwrap());
        let queued = outbox.peek(10).unwrap();
        assert_eq!(
            queued.iter().map(|q| q.event.id).collect::<Vec<_>>(),
            events.iter().map(|e| e.id).collect::<Vec<_>>()
        );
        outbox.ack(&[queued[0].seq]).unwrap();
        outbox.reject(&[queued[1].seq], 422, "bad").unwrap();
        assert_eq!(outbox.depth().unwrap(), 1);
        assert_eq!(outbox.rejected_count().unwrap(), 1);
        assert_eq!(outbox.peek(10).unwrap()[0].event.id, events[2].id);
    }

    #[test]
    fn the_outbox_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        {
            let outbox = Outbox::open(&path, u64::MAX).unwrap();
            outbox.commit_file("h", "a.xml", 1, &[event(1)]).unwrap();
        }
        let outbox = Outbox::open(&path, u64::MAX).unwrap();
        assert_eq!(outbox.depth().unwrap(), 1);
        assert!(outbox.is_processed("h").unwrap());
    }

    /// Overwrites stored bodies through a second connection, as a damaged page or a hand edit would.
    fn damage(path: &Path, sql: &str, seq: i64) {
        let raw = Connection::open(path).unwrap();
        raw.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(raw.execute(sql, params![seq]).unwrap(), 1, "{sql}");
    }

    #[test]
    fn a_corrupt_row_is_set_aside_and_delivery_goes_on_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let outbox = Outbox::open(&path, u64::MAX).unwrap();
        let events: Vec<_> = (0..8).map(event).collect();
        outbox.commit_file("h1", "a.xml", 10, &events).unwrap();
        let seqs: Vec<i64> = outbox.peek(100).unwrap().iter().map(|q| q.seq).collect();
        let before = outbox.buffered_bytes();
        // Three kinds of damage: JSON cut short, bytes that are not UTF-8, JSON that is not an event.
        damage(&path, "UPDATE events SET body = substr(body, 1, 20) WHERE seq = ?1", seqs[0]);
        damage(&path, "UPDATE events SET body = x'ff00fe' WHERE seq = ?1", seqs[3]);
        damage(&path, "UPDATE events SET body = '{\"id\": 1}' WHERE seq = ?1", seqs[4]);

        // Batches of two: the damaged rows never reach a batch, the others come in their order.
        let mut delivered = Vec::new();
        loop {
            let batch = outbox.peek(2).unwrap();
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() == 2 || outbox.depth().unwrap() == batch.len() as u64, "a batch was not filled");
            delivered.extend(batch.iter().map(|q| q.event.id));
            outbox.ack(&batch.iter().map(|q| q.seq).collect::<Vec<_>>()).unwrap();
        }
        let expected: Vec<_> =
            events.iter().enumerate().filter(|(i, _)| ![0, 3, 4].contains(i)).map(|(_, e)| e.id).collect();
        assert_eq!(delivered, expected);
        assert_eq!(outbox.depth().unwrap(), 0);
        assert_eq!(outbox.corrupt_count().unwrap(), 3);
        assert_eq!(outbox.corrupt_seen(), 3);
        assert_eq!(outbox.buffered_bytes(), 0, "set-aside rows still counted against the budget ({before} before)");

        // Each damaged row is kept with its id, its body as found, a reason and a time.
        let raw = Connection::open(&path).unwrap();
        let rows: Vec<(i64, String, String, i64)> = raw
            .prepare("SELECT seq, id, reason, found_at FROM corrupt ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![seqs[0], seqs[3], seqs[4]]);
        assert_eq!(rows[0].1, events[0].id.to_string());
        assert!(rows[0].2.contains("not a valid event"), "{}", rows[0].2);
        assert!(rows[1].2.contains("not UTF-8"), "{}", rows[1].2);
        assert!(rows[2].2.contains("not a valid event"), "{}", rows[2].2);
        assert!(rows.iter().all(|r| r.3 > 0));
        let blob: Vec<u8> =
            raw.query_row("SELECT body FROM corrupt WHERE seq = ?1", params![seqs[3]], |r| r.get(0)).unwrap();
        assert_eq!(blob, vec![0xff, 0x00, 0xfe]);

        // The count is the table's, so it survives a restart.
        drop(outbox);
        assert_eq!(Outbox::open(&path, u64::MAX).unwrap().corrupt_count().unwrap(), 3);
    }

    #[test]
    fn a_peek_after_damage_returns_the_rows_behind_it_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let outbox = Outbox::open(&path, u64::MAX).unwrap();
        let events: Vec<_> = (0..3).map(event).collect();
        outbox.commit_file("h1", "a.xml", 10, &events).unwrap();
        let first = outbox.peek(1).unwrap()[0].seq;
        damage(&path, "UPDATE events SET body = 'garbage' WHERE seq = ?1", first);
        // Before the change this was an error on every call: delivery stalled for good.
        let batch = outbox.peek(1).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].event.id, events[1].id);
        assert_eq!(outbox.depth().unwrap(), 2);
        assert_eq!(outbox.corrupt_count().unwrap(), 1);
    }

    #[test]
    fn the_budget_counts_buffered_events_and_frees_on_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        let outbox = Outbox::open(&path, 500).unwrap();
        assert!(outbox.has_room().unwrap());
        outbox.commit_file("h1", "a.xml", 1, &[event(1), event(2)]).unwrap();
        assert!(!outbox.has_room().unwrap(), "{} bytes buffered", outbox.buffered_bytes());
        // The count survives a restart.
        let reopened = Outbox::open(&path, 500).unwrap();
        assert_eq!(reopened.buffered_bytes(), outbox.buffered_bytes());
        drop(outbox);
        let queued = reopened.peek(10).unwrap();
        reopened.ack(&[queued[0].seq]).unwrap();
        reopened.reject(&[queued[1].seq], 422, "bad").unwrap();
        assert_eq!(reopened.buffered_bytes(), 0);
        assert!(reopened.has_room().unwrap());
        // Processed-file bookkeeping does not count against the budget.
        for i in 0..50 {
            reopened.mark_quarantined(&format!("q{i}"), "x.xml", 1).unwrap();
        }
        assert!(reopened.has_room().unwrap());
    }
}

//! The outbox: every event the agent has read and the cloud has not yet accepted, in one SQLite file.
//!
//! Guarantees:
//! - **Durable before processed.** A file's events and the record that the file was processed are written
//!   in one transaction (WAL, `synchronous=FULL`), so after a crash or power loss either both exist or
//!   neither does: a file is never marked processed without its events, and events are never written
//!   twice for one file.
//! - **Identity by content.** A file is processed once per content hash, whatever its path: a rescan, a
//!   restart, or the same result in the 電子カルテ's trash folder yields nothing new. Event ids also derive
//!   from the content, so even a lost outbox cannot create different ids for the same result.
//! - **Deleted only when accepted.** Rows leave the outbox when the cloud answered 202 for them (`ack`), or
//!   move to `rejected` when the cloud refused them permanently (4xx other than 401/429), where they stay
//!   for inspection. Nothing is dropped.
//! - **FIFO.** Events are delivered in the order they were read (`seq`).
//! - **Bounded.** `has_room` compares the bytes of buffered events (plus a per-row overhead) with the
//!   configured budget; when it is full the agent stops reading new result files (they stay in the
//!   terminal's folder) until deliveries free space. The WAL is capped by `journal_size_limit`, and the
//!   bookkeeping of processed files (a few hundred bytes per file) is pruned after a year. A real
//!   disk-full error makes the commit fail, with the same effect: nothing is marked processed.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use onshi_domain::AgentEvent;
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database error")]
    Db(#[from] rusqlite::Error),
    #[error("outbox row is not a valid event")]
    Corrupt(#[from] serde_json::Error),
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
                 rejected_at INTEGER NOT NULL);",
        )?;
        let cutoff = now() - KEEP_PROCESSED_SECS;
        conn.execute("DELETE FROM processed WHERE processed_at < ?1", params![cutoff])?;
        conn.execute("DELETE FROM seen_paths WHERE content_hash NOT IN (SELECT content_hash FROM processed)", [])?;
        let buffered: i64 = conn.query_row(
            "SELECT COALESCE(SUM(LENGTH(body)), 0) + COUNT(*) * ?1 FROM events",
            params![ROW_OVERHEAD as i64],
            |r| r.get(0),
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
            max_bytes,
            buffered: std::sync::atomic::AtomicU64::new(buffered.max(0) as u64),
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

    /// The oldest `limit` events, in order.
    pub fn peek(&self, limit: usize) -> Result<Vec<Queued>, OutboxError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT seq, body FROM events ORDER BY seq LIMIT ?1")?;
        let rows = stmt.query_map(params![limit as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row?;
            out.push(Queued { seq, event: serde_json::from_str(&body)? });
        }
        Ok(out)
    }

    /// Removes events the cloud accepted.
    pub fn ack(&self, seqs: &[i64]) -> Result<(), OutboxError> {
        self.remove(seqs, None)
    }

    /// Moves events the cloud refused for good to `rejected`, with the reason.
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
                .query_row("SELECT LENGTH(body) FROM events WHERE seq = ?1", params![seq], |r| r.get(0))
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

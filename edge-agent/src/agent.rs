//! The agent at work: three loops over one outbox.
//!
//! - **reader**: wakes on a file-system notification or every `rescan_secs`, lists the watched folders,
//!   reads each new file once it is stable (size and modification time unchanged over `stable_ms`, and
//!   during the read), parses it and commits its events (or quarantines it). A result already processed
//!   under any name or bytes (see `oqs::Parsed::content_hash`) yields nothing new. Stops reading while the
//!   outbox is over budget.
//! - **delivery**: sends the oldest events in batches; deletes them on 202; sets permanently refused ones
//!   aside; otherwise retries with a backoff capped at `retry_max_ms`. A refused batch is split until the
//!   refused event is found, so one bad event never blocks the others; an outbox row that no longer
//!   decodes is set aside by the outbox itself. A successful heartbeat or token renewal ends a backoff
//!   wait at once (`Uplink::recovered`).
//! - **heartbeat**: every `heartbeat_secs`, probes the reader and the network and reports the agent's
//!   state directly (not through the outbox: a stale heartbeat is worth nothing).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use notify::Watcher;
use onshi_domain::{AgentEvent, EventId, EventPayload, Heartbeat};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::credentials::{Credentials, CredentialsError};
use crate::oqs::{self, FileKind, MAX_FILE_BYTES, TimeSource, parse_file};
use crate::outbox::{Committed, Outbox, OutboxError};
use crate::source::{self, Candidate, Stamp};
use crate::uplink::{Backoff, Delivery, Uplink};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("outbox {path}: {source}")]
    Outbox { path: String, source: OutboxError },
    #[error("could not create {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

/// What the agent knows about itself, for heartbeats and `status`.
#[derive(Default)]
pub struct AgentState {
    pub last_result_at: AtomicI64,
    pub max_skew_secs: AtomicI64,
    pub backpressure: AtomicBool,
    pub quarantined: AtomicU64,
    pub files_read: AtomicU64,
    /// Results whose header had no `ProcessExecutionTime`, timed by their file name instead.
    pub timed_by_file_name: AtomicU64,
    pub revoked: AtomicBool,
    /// Delivery attempts the cloud refused as from an unknown or revoked device, since start.
    pub refused_attempts: AtomicU64,
    /// The latest quarantine's category and time, reported in heartbeats.
    pub last_quarantine: std::sync::Mutex<Option<onshi_domain::QuarantineNote>>,
}

pub struct Agent {
    config: AgentConfig,
    credentials: Credentials,
    outbox: Arc<Outbox>,
    uplink: Arc<Uplink>,
    pub state: Arc<AgentState>,
    files_changed: Arc<Notify>,
    events_ready: Arc<Notify>,
}

impl Agent {
    pub fn open(config: AgentConfig) -> Result<Self, AgentError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| AgentError::DataDir { path: config.data_dir.display().to_string(), source })?;
        let credentials = Credentials::load(&config.data_dir)?;
        let outbox = Outbox::open(&config.outbox_path(), config.max_outbox_bytes)
            .map_err(|source| AgentError::Outbox { path: config.outbox_path().display().to_string(), source })?;
        let uplink = Uplink::new(credentials.clone(), config.server.as_deref());
        // Said at start-up too, where an operator looks; heartbeats carry the count to the fleet page.
        match outbox.corrupt_count() {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(rows = n, "outbox rows set aside as corrupt (never delivered); see `onshi-agent status`")
            }
            Err(e) => tracing::warn!(error = %e, "cannot count corrupt outbox rows"),
        }
        Ok(Self {
            config,
            credentials,
            outbox: Arc::new(outbox),
            uplink: Arc::new(uplink),
            state: Arc::new(AgentState::default()),
            files_changed: Arc::new(Notify::new()),
            events_ready: Arc::new(Notify::new()),
        })
    }

    pub fn outbox(&self) -> Arc<Outbox> {
        self.outbox.clone()
    }

    /// Runs until `stop`. Returns when all three loops have ended.
    pub async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        // Notifications are a hint; a failure to watch (a network share) leaves the periodic rescan.
        let notify = this.files_changed.clone();
        let watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| notify.notify_one());
        let _watcher = match watcher {
            Ok(mut w) => {
                for folder in &this.config.watch {
                    if let Err(e) = w.watch(folder, notify::RecursiveMode::NonRecursive) {
                        tracing::info!(folder = %folder.display(), error = %e, "no file notifications; relying on rescans");
                    }
                }
                Some(w)
            }
            Err(e) => {
                tracing::info!(error = %e, "no file notifications; relying on rescans");
                None
            }
        };
        tracing::info!(device = %this.credentials.device, folders = this.config.watch.len(), "agent running");
        let reader = tokio::spawn(this.clone().reader(stop.clone()));
        let delivery = tokio::spawn(this.clone().delivery(stop.clone()));
        let heartbeat = tokio::spawn(this.clone().heartbeats(stop.clone()));
        let _ = tokio::join!(reader, delivery, heartbeat);
    }

    async fn reader(self: Arc<Self>, stop: CancellationToken) {
        loop {
            self.scan_once(&stop).await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.files_changed.notified() => {
                    // Let a burst of notifications (a writer's several writes) settle into one scan.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                () = tokio::time::sleep(self.config.rescan()) => {}
            }
        }
    }

    /// One pass over every watched folder.
    pub async fn scan_once(&self, stop: &CancellationToken) {
        let folders = self.config.watch.iter().map(|f| (f, source::FolderKind::Results));
        let folders = folders.chain(self.config.uke_watch.iter().map(|f| (f, source::FolderKind::Claims)));
        for (folder, kind) in folders {
            let listed = {
                let folder = folder.clone();
                tokio::task::spawn_blocking(move || source::list_kind(&folder, kind)).await
            };
            let candidates = match listed {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::warn!(folder = %folder.display(), error = %e, "cannot list folder");
                    continue;
                }
                Err(_) => continue,
            };
            // Files not seen at this size and modification time are new (or changed).
            let mut fresh = Vec::new();
            for candidate in candidates {
                match self.outbox.known_path(&candidate.path.display().to_string(), candidate.size, candidate.modified)
                {
                    Ok(Some(_)) => {}
                    Ok(None) => fresh.push(candidate),
                    Err(e) => tracing::warn!(file = %candidate.name, error = %e, "cannot check the file"),
                }
            }
            for chunk in fresh.chunks(READ_CHUNK) {
                if stop.is_cancelled() || !self.room() {
                    return;
                }
                // Every file of a chunk is stamped (size, modification time), then after one `stable_ms`
                // pause read only if its stamp has not moved (and does not move during the read), so a
                // backlog costs one pause per chunk rather than one per file.
                let before = stamp_all(chunk).await;
                tokio::time::sleep(self.config.stable()).await;
                for (candidate, before) in chunk.iter().zip(before) {
                    if !self.room() {
                        return;
                    }
                    let Some(before) = before else { continue };
                    let limit = match kind {
                        source::FolderKind::Results => MAX_FILE_BYTES,
                        source::FolderKind::Claims => crate::uke::MAX_UKE_BYTES,
                    };
                    let bytes = match source::read_stable(&candidate.path, before, limit).await {
                        Ok(Some(bytes)) => bytes,
                        // Still being written; next scan.
                        Ok(None) => {
                            tracing::debug!(file = %candidate.name, "still changing; will look again");
                            continue;
                        }
                        // Gone or unreadable for now; next scan.
                        Err(_) => continue,
                    };
                    // Remember the file as it was read, not as it was listed.
                    let read = Candidate { size: before.size, modified: before.modified_secs(), ..candidate.clone() };
                    let considered = match kind {
                        source::FolderKind::Results => self.consider(&read, bytes).await,
                        source::FolderKind::Claims => self.consider_claims(&read, bytes).await,
                    };
                    if let Err(e) = considered {
                        // The file stays unprocessed and is retried on the next scan.
                        tracing::warn!(file = %candidate.name, error = %e, "could not record the file");
                    }
                }
            }
        }
    }

    /// Whether the outbox has room, keeping the backpressure flag (and its log lines) in step.
    fn room(&self) -> bool {
        let room = self.outbox.has_room().unwrap_or(false);
        if room {
            if self.state.backpressure.swap(false, Ordering::Relaxed) {
                tracing::info!("outbox has room again; reading files");
            }
        } else if !self.state.backpressure.swap(true, Ordering::Relaxed) {
            tracing::warn!("outbox full: not reading new files until deliveries free space");
        }
        room
    }

    /// A claims file from a watched folder: one event, by the file's SHA-256; a file that cannot be read
    /// is quarantined with its reason like a result file.
    async fn consider_claims(&self, c: &Candidate, bytes: Vec<u8>) -> Result<(), OutboxError> {
        let path = c.path.display().to_string();
        let hash = hex::encode(Sha256::digest(&bytes));
        if self.outbox.is_processed(&hash)? {
            self.outbox.remember_path(&path, c.size, c.modified, &hash)?;
            return Ok(());
        }
        match crate::uke::parse(&bytes, &self.credentials.parse_context()) {
            Ok(claims) => {
                let receipts = claims.receipts.len();
                let event = crate::uke::event_of(claims);
                self.outbox.commit_file(&hash, &path, c.size, std::slice::from_ref(&event))?;
                self.outbox.remember_path(&path, c.size, c.modified, &hash)?;
                tracing::info!(file = %c.name, receipts, "claims file read");
                self.events_ready.notify_one();
            }
            Err(e) => {
                // Only the reason is written: the file stays where the レセコン put it, and a copy of a whole
                // month of names and insurance numbers is not made.
                self.set_aside(c, &hash, &e, || refused_claims_note(&self.config.quarantine_dir(), c, &hash, &e))?;
            }
        }
        Ok(())
    }

    /// Sets aside a file that cannot be read, once it has settled (a file changed within `settle_secs`
    /// is probably still being written and is looked at again later): `write` records why in the
    /// quarantine folder, then the file is counted and marked so rescans skip it. True when set aside.
    fn set_aside(
        &self,
        c: &Candidate,
        hash: &str,
        reason: &dyn std::fmt::Display,
        write: impl FnOnce() -> std::io::Result<()>,
    ) -> Result<bool, OutboxError> {
        let age = OffsetDateTime::now_utc().unix_timestamp() - c.modified;
        if age < self.config.settle_secs as i64 {
            tracing::debug!(file = %c.name, %reason, "not readable yet; will retry");
            return Ok(false);
        }
        tracing::warn!(file = %c.name, %reason, "quarantined");
        if let Err(io) = write() {
            tracing::error!(error = %io, "could not write to quarantine; will retry");
            return Ok(false);
        }
        self.state.quarantined.fetch_add(1, Ordering::Relaxed);
        let path = c.path.display().to_string();
        self.outbox.mark_quarantined(hash, &path, c.size)?;
        self.outbox.remember_path(&path, c.size, c.modified, hash)?;
        Ok(true)
    }

    async fn consider(&self, c: &Candidate, bytes: Vec<u8>) -> Result<(), OutboxError> {
        let path = c.path.display().to_string();
        // Files that could not be parsed are recorded by the hash of their bytes (and so were all files
        // before identities came from the parsed document): the same bytes are not looked at again.
        let bytes_hash = hex::encode(Sha256::digest(&bytes));
        if self.outbox.is_processed(&bytes_hash)? {
            self.outbox.remember_path(&path, c.size, c.modified, &bytes_hash)?;
            return Ok(());
        }
        match parse_file(&c.name, &bytes, &self.credentials.parse_context()) {
            Ok(parsed) => {
                // One result, one set of events: the identity is the parsed document's, so the same result
                // with a trailing CRLF, other whitespace or another encoding is not read again.
                let hash = &parsed.content_hash;
                if self.outbox.is_processed(hash)? {
                    tracing::debug!(file = %c.name, "same result as a file read before; nothing new");
                    self.outbox.remember_path(&path, c.size, c.modified, hash)?;
                    return Ok(());
                }
                if parsed.kind == FileKind::Face
                    && let Some(named) = oqs::file_name_time(&c.name)
                {
                    // Only a name ahead of our clock says something about the terminal's clock: a name
                    // behind it is as likely a file read late (a backlog after a restart).
                    let ahead = (named - OffsetDateTime::now_utc()).whole_seconds();
                    self.state.max_skew_secs.fetch_max(ahead, Ordering::Relaxed);
                }
                let n = parsed.events.len();
                let committed = self.outbox.commit_file(hash, &path, c.size, &parsed.events)?;
                self.outbox.remember_path(&path, c.size, c.modified, hash)?;
                if let Committed::Events(_) = committed {
                    self.state.files_read.fetch_add(1, Ordering::Relaxed);
                    self.state.last_result_at.store(OffsetDateTime::now_utc().unix_timestamp(), Ordering::Relaxed);
                    if parsed.time_source == TimeSource::FileName {
                        // Each event says so (`time_source`); the heartbeat counts it for the fleet page.
                        self.state.timed_by_file_name.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            file = %c.name,
                            time_source = "file_name",
                            "no ProcessExecutionTime in the header; occurred_at taken from the file name"
                        );
                    }
                    tracing::info!(file = %c.name, events = n, "result read");
                    self.events_ready.notify_one();
                }
            }
            Err(e) => {
                let quarantine_dir = self.config.quarantine_dir();
                let write = || quarantine(&quarantine_dir, c, &bytes, &bytes_hash, &e);
                if self.set_aside(c, &bytes_hash, &e, write)?
                    && let Ok(mut last) = self.state.last_quarantine.lock()
                {
                    *last = Some(onshi_domain::QuarantineNote { kind: e.kind(), at: OffsetDateTime::now_utc() });
                }
            }
        }
        Ok(())
    }

    async fn delivery(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = Backoff::new(self.config.retry_min(), self.config.retry_max());
        let mut size = self.config.batch_size;
        loop {
            let batch = match self.outbox.peek(size) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox");
                    Vec::new()
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.events_ready.notified() => {}
                    // Commits wake this loop; the timer only covers a missed wake-up.
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                continue;
            }
            // A claims event (a month's レセ電 file) goes alone; the events before it go first.
            let is_claims = |q: &crate::outbox::Queued| matches!(q.event.payload, EventPayload::Claims(_));
            let take = match batch.iter().position(is_claims) {
                Some(0) => 1,
                Some(k) => k,
                None => batch.len(),
            };
            let batch = &batch[..take];
            let events: Vec<AgentEvent> = batch.iter().map(|q| q.event.clone()).collect();
            let seqs: Vec<i64> = batch.iter().map(|q| q.seq).collect();
            // How long to wait before the next attempt, and whether a sign of the cloud may cut it short.
            let wait = match self.uplink.deliver(&events).await {
                Delivery::Accepted => {
                    if let Err(e) = self.outbox.ack(&seqs) {
                        tracing::error!(error = %e, "delivered but could not delete from the outbox; will resend");
                    }
                    backoff.reset();
                    size = self.config.batch_size;
                    if self.state.revoked.swap(false, Ordering::Relaxed) {
                        tracing::info!("the cloud accepts this device again");
                    }
                    None
                }
                Delivery::Rejected { status, reason } if seqs.len() == 1 => {
                    tracing::error!(status, %reason, "the cloud refused an event; set aside in the outbox's rejected table");
                    if let Err(e) = self.outbox.reject(&seqs, status, &reason) {
                        tracing::error!(error = %e, "could not set the event aside");
                    }
                    size = self.config.batch_size;
                    None
                }
                Delivery::Rejected { status, reason } => {
                    // Find the bad event by halving; the good ones go through.
                    tracing::warn!(status, %reason, batch = seqs.len(), "batch refused; splitting");
                    size = (seqs.len() / 2).max(1);
                    None
                }
                Delivery::Unauthorized => {
                    self.state.refused_attempts.fetch_add(1, Ordering::Relaxed);
                    if !self.state.revoked.swap(true, Ordering::Relaxed) {
                        tracing::error!("the cloud does not accept this device (revoked?); events stay in the outbox");
                    }
                    Some((self.config.revoked_recheck(), true))
                }
                // The cloud said when (capped in the uplink): honour it, and after a 429 do not let a
                // heartbeat cut it short.
                Delivery::Retry { reason, after: Some(after), rate_limited } => {
                    tracing::info!(%reason, retry_in_ms = after.as_millis() as u64, "delivery failed; will retry");
                    Some((after, !rate_limited))
                }
                Delivery::Retry { reason, after: None, .. } => {
                    let delay = backoff.next_delay();
                    tracing::info!(%reason, retry_in_ms = delay.as_millis() as u64, "delivery failed; will retry");
                    Some((delay, true))
                }
            };
            if let Some((wait, wake_on_recovery)) = wait {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                    () = self.uplink.recovered().notified(), if wake_on_recovery => {
                        tracing::info!("the cloud answered again; resending now");
                        backoff.reset();
                    }
                }
            }
        }
    }

    /// The heartbeat the agent would send now.
    pub async fn heartbeat(&self, client: &reqwest::Client) -> AgentEvent {
        let last = self.state.last_result_at.load(Ordering::Relaxed);
        let skew = self.state.max_skew_secs.load(Ordering::Relaxed);
        AgentEvent {
            id: EventId::new(),
            occurred_at: OffsetDateTime::now_utc(),
            payload: EventPayload::Heartbeat(Heartbeat {
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                outbox_depth: self.outbox.depth().unwrap_or(0),
                oldest_undelivered_secs: self.outbox.oldest_age_secs().unwrap_or(None),
                reader_ok: match &self.config.reader_probe {
                    Some(target) => Some(crate::probe::probe(client, target).await),
                    None => None,
                },
                network_ok: crate::probe::all(client, &self.config.network_probes).await,
                last_result_at: (last > 0).then(|| OffsetDateTime::from_unix_timestamp(last).ok()).flatten(),
                clock_skew_secs: (skew != 0).then_some(skew),
                backpressure: self.state.backpressure.load(Ordering::Relaxed),
                quarantined: self.state.quarantined.load(Ordering::Relaxed),
                corrupt_outbox_rows: self.outbox.corrupt_count().unwrap_or(0),
                timed_by_file_name: self.state.timed_by_file_name.load(Ordering::Relaxed),
                last_quarantine: self.state.last_quarantine.lock().ok().and_then(|l| *l),
            }),
        }
    }

    async fn heartbeats(self: Arc<Self>, stop: CancellationToken) {
        let client = crate::uplink::client();
        loop {
            let event = self.heartbeat(&client).await;
            match self.uplink.deliver(std::slice::from_ref(&event)).await {
                // The cloud is there: a delivery loop waiting out a backoff may send now.
                Delivery::Accepted => self.uplink.cloud_answered(),
                Delivery::Retry { reason, .. } => tracing::debug!(%reason, "heartbeat not delivered"),
                Delivery::Rejected { .. } | Delivery::Unauthorized => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(self.config.heartbeat_secs)) => {}
            }
        }
    }
}

/// Files read per stability pause.
const READ_CHUNK: usize = 64;

async fn stamp_all(chunk: &[Candidate]) -> Vec<Option<Stamp>> {
    let mut out = Vec::with_capacity(chunk.len());
    for c in chunk {
        out.push(source::stamp(&c.path).await.ok());
    }
    out
}

/// Copies a file the agent cannot read into its own quarantine folder with a reason file. The terminal's
/// file is left where it is. 12-digit numbers that pass the 個人番号 check digit are masked in the copy.
fn quarantine(dir: &Path, c: &Candidate, bytes: &[u8], hash: &str, reason: &oqs::ParseError) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let stamp = OffsetDateTime::now_utc().unix_timestamp();
    let base = format!("{stamp}_{}_{}", &hash[..12], c.name);
    std::fs::write(dir.join(&base), mask_individual_numbers(bytes))?;
    let note = format!(
        "file: {}\nsize: {} bytes\nsha256: {hash}\nquarantined at: {}\nreason: {reason}\n",
        c.path.display(),
        c.size,
        OffsetDateTime::now_utc()
    );
    std::fs::write(dir.join(format!("{base}.reason.txt")), note)
}

/// The reason a claims file was refused, beside the quarantined result files (without a copy of the file).
fn refused_claims_note(dir: &Path, c: &Candidate, hash: &str, reason: &crate::uke::UkeError) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let stamp = OffsetDateTime::now_utc().unix_timestamp();
    let note = format!(
        "file: {}\nsize: {} bytes\nsha256: {hash}\nrefused at: {}\nreason: {reason}\nthe file was not copied; fix it in the レセコン or import it by hand: onshi-agent uke import FILE\n",
        c.path.display(),
        c.size,
        OffsetDateTime::now_utc()
    );
    std::fs::write(dir.join(format!("{stamp}_{}_{}.reason.txt", &hash[..12], c.name)), note)
}

/// Masks runs of exactly twelve ASCII digits that pass the 個人番号 check digit (the same bytes in UTF-8
/// and Shift_JIS).
fn mask_individual_numbers(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i < out.len() {
        if !out[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < out.len() && out[i].is_ascii_digit() {
            i += 1;
        }
        if i - start == 12
            && let Ok(run) = std::str::from_utf8(&out[start..i])
            && onshi_domain::mynumber::is_individual_number(run)
        {
            out[start..i].fill(b'*');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_copies_mask_individual_numbers() {
        let number = (0..10)
            .map(|d| format!("12345678901{d}"))
            .find(|n| onshi_domain::mynumber::is_individual_number(n))
            .unwrap();
        let masked = mask_individual_numbers(format!("<a>{number}</a><b>1311234560</b><c>{number}0</c>").as_bytes());
        let text = String::from_utf8(masked).unwrap();
        assert!(text.contains("<a>************</a>"), "{text}");
        assert!(text.contains("1311234560"));
        // Thirteen digits are not a 個人番号 and are left alone.
        assert!(text.contains(&format!("{number}0")));
    }
}

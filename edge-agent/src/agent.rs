//! The agent at work: three loops over one outbox.
//!
//! - **reader**: wakes on a file-system notification or every `rescan_secs`, lists the watched folders,
//!   reads each new file once it is stable, parses it and commits its events (or quarantines it). Stops
//!   reading while the outbox is over budget.
//! - **delivery**: sends the oldest events in batches; deletes them on 202; sets permanently refused ones
//!   aside; otherwise retries with backoff. A refused batch is split until the refused event is found, so
//!   one bad event never blocks the others.
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
use crate::oqs::{self, FileKind, MAX_FILE_BYTES, ParseContext, parse_file};
use crate::outbox::{Committed, Outbox, OutboxError};
use crate::source::{self, Candidate};
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
    pub revoked: AtomicBool,
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
        for folder in &self.config.watch {
            let listed = {
                let folder = folder.clone();
                tokio::task::spawn_blocking(move || source::list(&folder)).await
            };
            let candidates = match listed {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::warn!(folder = %folder.display(), error = %e, "cannot list folder");
                    continue;
                }
                Err(_) => continue,
            };
            // New files are read in chunks: every file of a chunk is read, then after one `stable_ms` pause
            // read again, so a backlog costs one pause per chunk rather than one per file.
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
                let first = read_all(chunk).await;
                tokio::time::sleep(self.config.stable()).await;
                let second = read_all(chunk).await;
                for ((candidate, a), b) in chunk.iter().zip(first).zip(second) {
                    if !self.room() {
                        return;
                    }
                    // Unreadable, or changed between the two reads: still being written; next scan.
                    let (Some(a), Some(b)) = (a, b) else { continue };
                    if a != b {
                        continue;
                    }
                    if let Err(e) = self.consider(candidate, a).await {
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

    async fn consider(&self, c: &Candidate, bytes: Vec<u8>) -> Result<(), OutboxError> {
        let path = c.path.display().to_string();
        let hash = hex::encode(Sha256::digest(&bytes));
        if self.outbox.is_processed(&hash)? {
            self.outbox.remember_path(&path, c.size, c.modified, &hash)?;
            return Ok(());
        }
        let ctx = ParseContext {
            clinic: Some(self.credentials.institution_code.clone()),
            pseudonym_key: self.credentials.pseudonym_key_bytes(),
        };
        match parse_file(&c.name, &bytes, &ctx) {
            Ok(parsed) => {
                if parsed.kind == FileKind::Face
                    && let Some(named) = oqs::file_name_time(&c.name)
                {
                    let skew = (named - OffsetDateTime::now_utc()).whole_seconds();
                    let prev = self.state.max_skew_secs.load(Ordering::Relaxed);
                    if skew.abs() > prev.abs() {
                        self.state.max_skew_secs.store(skew, Ordering::Relaxed);
                    }
                }
                let n = parsed.events.len();
                let committed = self.outbox.commit_file(&hash, &path, c.size, &parsed.events)?;
                self.outbox.remember_path(&path, c.size, c.modified, &hash)?;
                if let Committed::Events(_) = committed {
                    self.state.files_read.fetch_add(1, Ordering::Relaxed);
                    self.state.last_result_at.store(OffsetDateTime::now_utc().unix_timestamp(), Ordering::Relaxed);
                    tracing::info!(file = %c.name, events = n, "result read");
                    self.events_ready.notify_one();
                }
            }
            Err(e) => {
                let age = OffsetDateTime::now_utc().unix_timestamp() - c.modified;
                if age < self.config.settle_secs as i64 {
                    // Probably still being written (a slow copy): look again later.
                    tracing::debug!(file = %c.name, reason = %e, "not readable yet; will retry");
                    return Ok(());
                }
                tracing::warn!(file = %c.name, reason = %e, "quarantined");
                if let Err(io) = quarantine(&self.config.quarantine_dir(), c, &bytes, &hash, &e) {
                    tracing::error!(error = %io, "could not write to quarantine; will retry");
                    return Ok(());
                }
                self.state.quarantined.fetch_add(1, Ordering::Relaxed);
                self.outbox.mark_quarantined(&hash, &path, c.size)?;
                self.outbox.remember_path(&path, c.size, c.modified, &hash)?;
            }
        }
        Ok(())
    }

    async fn delivery(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
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
            let events: Vec<AgentEvent> = batch.iter().map(|q| q.event.clone()).collect();
            let seqs: Vec<i64> = batch.iter().map(|q| q.seq).collect();
            let wait = match self.uplink.deliver(&events).await {
                Delivery::Accepted => {
                    if let Err(e) = self.outbox.ack(&seqs) {
                        tracing::error!(error = %e, "delivered but could not delete from the outbox; will resend");
                    }
                    backoff.reset();
                    size = self.config.batch_size;
                    self.state.revoked.store(false, Ordering::Relaxed);
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
                    if !self.state.revoked.swap(true, Ordering::Relaxed) {
                        tracing::error!("the cloud does not accept this device (revoked?); events stay in the outbox");
                    }
                    Some(Duration::from_secs(30))
                }
                Delivery::Retry { reason, after } => {
                    let delay = after.unwrap_or_else(|| backoff.next_delay());
                    tracing::info!(%reason, retry_in_ms = delay.as_millis() as u64, "delivery failed; will retry");
                    Some(delay)
                }
            };
            if let Some(wait) = wait {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
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
            }),
        }
    }

    async fn heartbeats(self: Arc<Self>, stop: CancellationToken) {
        let client = crate::uplink::client();
        loop {
            let event = self.heartbeat(&client).await;
            if let Delivery::Retry { reason, .. } = self.uplink.deliver(std::slice::from_ref(&event)).await {
                tracing::debug!(%reason, "heartbeat not delivered");
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

async fn read_all(chunk: &[Candidate]) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::with_capacity(chunk.len());
    for c in chunk {
        out.push(source::read_limited(&c.path, MAX_FILE_BYTES).await.ok());
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

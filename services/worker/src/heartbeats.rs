//! The heartbeat writer: every `heartbeat_flush`, takes the agents' latest heartbeats that the ingest
//! handler left in the cache (`onshi_store::LatestHeartbeat`) and writes them in one transaction per
//! tenant. Every worker process runs one; the cache hands each entry to exactly one of them.
//!
//! A write that fails puts the entries back (unless a newer heartbeat of the same agent and state came
//! in meanwhile), so a database outage delays heartbeats and loses none that still matter.

use std::time::Duration;

use onshi_cache::CacheBackend;
use onshi_store::{LatestHeartbeat, PENDING_HEARTBEATS};
use tokio_util::sync::CancellationToken;

use crate::Worker;

impl Worker {
    /// Writes pending heartbeats every `heartbeat_flush` until `shutdown`, then once more.
    pub(crate) async fn write_heartbeats(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.heartbeat_flush);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            self.flush_heartbeats().await;
        }
        self.flush_heartbeats().await;
    }

    /// One round: take, write, put back on failure. Returns how many agents' rows were written.
    pub async fn flush_heartbeats(&self) -> usize {
        let taken = match self.cache.take_map(PENDING_HEARTBEATS).await {
            Ok(taken) if taken.is_empty() => return 0,
            Ok(taken) => taken,
            Err(e) => {
                tracing::debug!(error = %onshi_telemetry::Chain(&e), "pending heartbeats not readable");
                return 0;
            }
        };
        let started = std::time::Instant::now();
        let pending: Vec<LatestHeartbeat> = taken
            .iter()
            .filter_map(|(field, bytes)| match LatestHeartbeat::from_cache(bytes) {
                Ok(h) => Some(h),
                Err(e) => {
                    // Only the ingest handler writes here; an unreadable entry is from another version.
                    tracing::warn!(error = %onshi_telemetry::Chain(&e), field, "unreadable pending heartbeat dropped");
                    None
                }
            })
            .collect();
        let m = onshi_telemetry::metrics();
        match self.store.system().record_heartbeats(&pending).await {
            Ok(written) => {
                m.heartbeat_flushes.inc();
                m.heartbeat_states.inc_by(pending.len() as u64);
                tracing::debug!(
                    states = pending.len(),
                    agents = written,
                    took_ms = started.elapsed().as_millis() as u64,
                    "heartbeats written"
                );
                written
            }
            Err(e) => {
                tracing::warn!(error = %onshi_telemetry::Chain(&e), states = pending.len(), "writing heartbeats failed; putting them back");
                if let Err(e) = self.cache.map_restore(PENDING_HEARTBEATS, &taken).await {
                    tracing::warn!(error = %onshi_telemetry::Chain(&e), "heartbeats could not be put back; the next ones replace them");
                }
                0
            }
        }
    }
}

/// How long the heartbeat writer waits between rounds by default.
pub const DEFAULT_FLUSH: Duration = Duration::from_secs(5);

//! Device authentication without a database read on every request. Each API process keeps the devices
//! it has authenticated for [`TTL`]; a revocation is announced on the cache's pub/sub channel
//! [`REVOCATIONS`] and every process forgets that device at once, so a revoked agent is refused within
//! the time a publish takes to arrive (milliseconds), not after the TTL.
//!
//! The cache is used only while this process's subscription to that channel is up: until the first
//! subscription, and from the moment it is lost until it is back (then everything is forgotten, since
//! announcements may have been missed), every request reads the database as before. A revocation racing
//! with a database read cannot leave a stale entry: an entry is stored only if no revocation arrived
//! since the read began ([`Lookup`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use onshi_cache::{Cache, CacheBackend};
use onshi_domain::{ClinicId, DeviceId, TenantId};
use onshi_store::DeviceAuth;
use tokio_util::sync::CancellationToken;

/// The pub/sub channel on which revocations are announced (the payload is the device id).
pub const REVOCATIONS: &str = "devices:revoked";

/// How long an authenticated device is trusted without reading it again. Revocation, the one change
/// that must stop an agent, is announced and does not wait for it; the rest of what is kept (the device's
/// and its clinic's names) may lag this long. Agents send at least every 20 s, so an agent whose requests
/// reach one process is read once in 15 requests (once in 3 with the minute this was until 2026-12).
pub const TTL: Duration = Duration::from_secs(300);

/// Entries kept at most. Beyond it expired entries are swept; if that is not enough, devices not yet kept
/// are read from the database on each request until some expire (forgetting everything instead would
/// send every agent to the database at once).
const CAPACITY: usize = 200_000;

pub struct DeviceAuthCache {
    entries: Mutex<HashMap<DeviceId, (DeviceAuth, Instant)>>,
    capacity: usize,
    /// The subscription to [`REVOCATIONS`] is up.
    live: AtomicBool,
    /// Bumped by every revocation and every loss of the subscription.
    generation: AtomicU64,
}

/// A database read in progress: remembers the generation it started in.
pub struct Lookup(u64);

impl Default for DeviceAuthCache {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl DeviceAuthCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_capacity(capacity: usize) -> Self {
        Self { entries: Mutex::default(), capacity, live: AtomicBool::default(), generation: AtomicU64::default() }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, (DeviceAuth, Instant)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The device, if it was authenticated (active) within the TTL and the token's claims match it.
    pub fn get(&self, tenant: TenantId, clinic: ClinicId, device: DeviceId) -> Option<DeviceAuth> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries();
        let (auth, at) = entries.get(&device)?;
        (at.elapsed() < TTL && auth.scope.tenant_id() == tenant && auth.clinic.id == clinic).then(|| auth.clone())
    }

    /// Call before reading the database.
    pub fn lookup(&self) -> Lookup {
        Lookup(self.generation.load(Ordering::Acquire))
    }

    /// Keeps an active device read by `lookup`, unless a revocation arrived or the subscription was lost
    /// meanwhile.
    pub fn keep(&self, lookup: Lookup, auth: &DeviceAuth) {
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries();
        // Checked under the lock that `forget` also takes, so a revocation cannot slip in between.
        if self.generation.load(Ordering::Acquire) != lookup.0 {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&auth.device.id) {
            entries.retain(|_, (_, at)| at.elapsed() < TTL);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(auth.device.id, (auth.clone(), Instant::now()));
    }

    fn forget(&self, device: Option<DeviceId>) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        match device {
            Some(id) => {
                entries.remove(&id);
            }
            None => entries.clear(),
        }
    }

    fn set_live(&self, live: bool) {
        // Whatever was announced while no one listened is unknown: start empty either way.
        self.forget(None);
        self.live.store(live, Ordering::Release);
    }

    /// Follows [`REVOCATIONS`] until `shutdown`, resubscribing with a growing pause after a loss.
    pub async fn follow(self: std::sync::Arc<Self>, cache: Cache, shutdown: CancellationToken) {
        let mut pause = Duration::from_millis(500);
        loop {
            match cache.subscribe(REVOCATIONS).await {
                Ok(mut stream) => {
                    self.set_live(true);
                    pause = Duration::from_millis(500);
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => {
                                self.set_live(false);
                                return;
                            }
                            message = stream.next() => match message {
                                Some(payload) => {
                                    let device = std::str::from_utf8(&payload).ok().and_then(|s| s.parse().ok());
                                    // An unreadable announcement forgets everything rather than nothing.
                                    self.forget(device);
                                }
                                None => break,
                            }
                        }
                    }
                    self.set_live(false);
                    tracing::warn!("lost the revocation channel; authenticating devices from the database");
                }
                Err(e) => tracing::debug!(error = %onshi_telemetry::Chain(&e), "revocation channel unavailable"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    }
}

/// Tells every API process that `device` is revoked (after the revocation committed). Tried three times:
/// a process that kept the device would otherwise trust it until [`TTL`].
pub async fn announce_revocation(cache: &Cache, device: DeviceId) {
    let payload = device.to_string();
    for attempt in 1..=3 {
        match cache.publish(REVOCATIONS, payload.as_bytes()).await {
            Ok(()) => return,
            // Subscribers that miss it have most likely lost their subscription to the same outage, and
            // then forget everything.
            Err(e) if attempt == 3 => {
                tracing::warn!(error = %onshi_telemetry::Chain(&e), %device, "revocation not announced")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_kept_before_the_channel_is_followed() {
        let cache = DeviceAuthCache::new();
        assert!(!cache.live.load(Ordering::Acquire));
        assert_eq!(cache.entries().len(), 0);
    }

    #[tokio::test]
    async fn a_revocation_during_a_read_keeps_the_read_out_of_the_cache() {
        let cache = DeviceAuthCache::new();
        cache.set_live(true);
        let before = cache.lookup();
        cache.forget(Some(DeviceId::new()));
        assert_ne!(before.0, cache.lookup().0, "a revocation moves the generation");
    }

    fn auth() -> DeviceAuth {
        let clinic = ClinicId::new();
        DeviceAuth {
            scope: onshi_store::TenantScope::operator(TenantId::new()),
            clinic: onshi_store::Clinic {
                id: clinic,
                code: onshi_domain::MedicalInstitutionCode::parse("2711234562").expect("a valid code"),
                name: "テスト医院".to_owned(),
                kind: onshi_domain::FacilityKind::Medical,
                oqs_start: None,
                code_confirmed: true,
                hours: None,
                alert_after_minutes: 30,
                terminal_cert_expires: None,
                terminal_os: None,
            },
            device: crate::fixtures::agent(clinic, time::OffsetDateTime::now_utc()),
        }
    }

    #[test]
    fn a_full_cache_keeps_what_it_has_and_reads_newcomers_from_the_database() {
        let cache = DeviceAuthCache::with_capacity(2);
        cache.set_live(true);
        let (a, b, c) = (auth(), auth(), auth());
        for kept in [&a, &b, &c] {
            cache.keep(cache.lookup(), kept);
        }
        let found = |x: &DeviceAuth| cache.get(x.scope.tenant_id(), x.clinic.id, x.device.id).is_some();
        assert!(found(&a) && found(&b), "the devices kept before it was full stay");
        assert!(!found(&c), "a newcomer is not kept while nothing has expired");
        cache.keep(cache.lookup(), &a);
        assert!(found(&a), "a kept device is refreshed even when full");
    }
}

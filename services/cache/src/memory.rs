//! In-memory backend for the embedded mode. Expired entries are dropped lazily on access and swept when
//! the map grows, so memory stays bounded by the live keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::broadcast;

use crate::{CacheBackend, CacheError, Subscription, Window};

/// Live updates buffered per subscriber before the slowest one starts missing some.
const CHANNEL_CAPACITY: usize = 1024;

#[derive(Clone, Default)]
pub struct MemoryCache {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    channels: Mutex<HashMap<String, broadcast::Sender<Vec<u8>>>>,
    maps: Mutex<HashMap<String, HashMap<String, Vec<u8>>>>,
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, (Vec<u8>, Instant)>> {
        self.inner.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn maps(&self) -> MutexGuard<'_, HashMap<String, HashMap<String, Vec<u8>>>> {
        self.inner.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `incr_window`'s count, for the callers that check a window inside another operation.
    fn count(&self, key: &str, window: Duration) -> u64 {
        let now = Instant::now();
        let mut entries = self.entries();
        if entries.len() > 10_000 {
            entries.retain(|_, (_, expires)| *expires > now);
        }
        // Counters are kept as decimal text, as Redis keeps them, so `get` reads the same in both modes.
        let entry = entries.entry(key.to_owned()).or_insert_with(|| (b"0".to_vec(), now + window));
        if entry.1 <= now {
            *entry = (b"0".to_vec(), now + window);
        }
        let value = std::str::from_utf8(&entry.0).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) + 1;
        entry.0 = value.to_string().into_bytes();
        value
    }

    fn sender(&self, channel: &str) -> broadcast::Sender<Vec<u8>> {
        let mut channels = self.inner.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels.retain(|_, tx| tx.receiver_count() > 0);
        channels.entry(channel.to_owned()).or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0).clone()
    }
}

impl CacheBackend for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut entries = self.entries();
        match entries.get(key) {
            Some((_, expires)) if *expires <= Instant::now() => {
                entries.remove(key);
                Ok(None)
            }
            Some((value, _)) => Ok(Some(value.clone())),
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let now = Instant::now();
        let mut entries = self.entries();
        if entries.len() > 10_000 {
            entries.retain(|_, (_, expires)| *expires > now);
        }
        entries.insert(key.to_owned(), (value.to_vec(), now + ttl));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.entries().remove(key);
        Ok(())
    }

    async fn incr_window(&self, key: &str, window: Duration) -> Result<u64, CacheError> {
        Ok(self.count(key, window))
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), CacheError> {
        // No subscriber is not an error: live updates are best effort by design.
        let _ = self.sender(channel).send(payload.to_vec());
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription, CacheError> {
        let rx = self.sender(channel).subscribe();
        let stream = tokio_stream_from(rx);
        Ok(Box::pin(stream))
    }

    async fn map_set(
        &self,
        key: &str,
        fields: &[(String, Vec<u8>)],
        window: Option<Window<'_>>,
    ) -> Result<bool, CacheError> {
        if let Some(window) = window
            && self.count(window.key, window.length) > window.limit
        {
            return Ok(false);
        }
        let mut maps = self.maps();
        let map = maps.entry(key.to_owned()).or_default();
        for (field, value) in fields {
            map.insert(field.clone(), value.clone());
        }
        Ok(true)
    }

    async fn map_restore(&self, key: &str, entries: &[(String, Vec<u8>)]) -> Result<(), CacheError> {
        let mut maps = self.maps();
        let map = maps.entry(key.to_owned()).or_default();
        for (field, value) in entries {
            map.entry(field.clone()).or_insert_with(|| value.clone());
        }
        Ok(())
    }

    async fn take_map(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, CacheError> {
        Ok(self.maps().remove(key).map(|m| m.into_iter().collect()).unwrap_or_default())
    }
}

/// Turns a broadcast receiver into a stream that skips over lagged gaps instead of ending.
fn tokio_stream_from(rx: broadcast::Receiver<Vec<u8>>) -> impl futures_util::Stream<Item = Vec<u8>> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(msg) => return Some((msg, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

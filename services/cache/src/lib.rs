//! Short-lived shared state: rate-limit counters, cached values with a lifetime, and pub/sub for live
//! updates (the reception feed). Redis in full mode, so several API processes share counters and every
//! subscriber sees every publish; an in-memory map and broadcast channels in embedded mode.
//!
//! Nothing here is a source of truth: losing the cache loses counters and live notifications, never data.
//! Keys and channels are prefixed with the configured `cache_prefix`. No personal data goes into a key
//! or a channel name.

mod memory;
mod redis_cache;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;

pub use memory::MemoryCache;
pub use redis_cache::RedisCache;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
    /// Redis failed to answer a moment ago; not tried again yet (see `RedisCache`).
    #[error("redis unavailable")]
    Unavailable,
}

/// A fixed-window count (as [`CacheBackend::incr_window`] keeps) that admits at most `limit` counts.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub key: &'a str,
    pub length: Duration,
    pub limit: u64,
}

/// A stream of published payloads for one channel.
pub type Subscription = Pin<Box<dyn Stream<Item = Vec<u8>> + Send>>;

pub trait CacheBackend {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, CacheError>> + Send;
    fn set(&self, key: &str, value: &[u8], ttl: Duration) -> impl Future<Output = Result<(), CacheError>> + Send;
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), CacheError>> + Send;
    /// Increments a counter that expires `window` after its first increment; returns the new value.
    /// A fixed-window rate limiter is one call.
    fn incr_window(&self, key: &str, window: Duration) -> impl Future<Output = Result<u64, CacheError>> + Send;
    fn publish(&self, channel: &str, payload: &[u8]) -> impl Future<Output = Result<(), CacheError>> + Send;
    fn subscribe(&self, channel: &str) -> impl Future<Output = Result<Subscription, CacheError>> + Send;
    /// Sets `fields` of the map at `key` (a later set of the same field replaces it): latest state
    /// coalesced per field, taken in bulk by [`CacheBackend::take_map`]. With a `window`, first counts
    /// one in it as [`CacheBackend::incr_window`] does, and sets nothing if the count is then above its
    /// limit: a rate-limited write in one round trip. Returns whether the fields were set.
    fn map_set(
        &self,
        key: &str,
        fields: &[(String, Vec<u8>)],
        window: Option<Window<'_>>,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send;
    /// Sets the fields that are not set yet (a taker putting back what it could not write: anything set
    /// meanwhile is newer and wins).
    fn map_restore(
        &self,
        key: &str,
        entries: &[(String, Vec<u8>)],
    ) -> impl Future<Output = Result<(), CacheError>> + Send;
    /// Removes the whole map at `key` and returns its fields, atomically: of several takers each field
    /// goes to exactly one.
    fn take_map(&self, key: &str) -> impl Future<Output = Result<Vec<(String, Vec<u8>)>, CacheError>> + Send;
}

#[derive(Clone)]
pub enum Cache {
    Redis(RedisCache),
    Memory(MemoryCache),
}

impl Cache {
    pub fn kind(&self) -> &'static str {
        match self {
            Cache::Redis(_) => "redis",
            Cache::Memory(_) => "memory",
        }
    }
}

impl CacheBackend for Cache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        match self {
            Cache::Redis(c) => c.get(key).await,
            Cache::Memory(c) => c.get(key).await,
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        match self {
            Cache::Redis(c) => c.set(key, value, ttl).await,
            Cache::Memory(c) => c.set(key, value, ttl).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        match self {
            Cache::Redis(c) => c.delete(key).await,
            Cache::Memory(c) => c.delete(key).await,
        }
    }

    async fn incr_window(&self, key: &str, window: Duration) -> Result<u64, CacheError> {
        match self {
            Cache::Redis(c) => c.incr_window(key, window).await,
            Cache::Memory(c) => c.incr_window(key, window).await,
        }
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), CacheError> {
        match self {
            Cache::Redis(c) => c.publish(channel, payload).await,
            Cache::Memory(c) => c.publish(channel, payload).await,
        }
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription, CacheError> {
        match self {
            Cache::Redis(c) => c.subscribe(channel).await,
            Cache::Memory(c) => c.subscribe(channel).await,
        }
    }

    async fn map_set(
        &self,
        key: &str,
        fields: &[(String, Vec<u8>)],
        window: Option<Window<'_>>,
    ) -> Result<bool, CacheError> {
        match self {
            Cache::Redis(c) => c.map_set(key, fields, window).await,
            Cache::Memory(c) => c.map_set(key, fields, window).await,
        }
    }

    async fn map_restore(&self, key: &str, entries: &[(String, Vec<u8>)]) -> Result<(), CacheError> {
        match self {
            Cache::Redis(c) => c.map_restore(key, entries).await,
            Cache::Memory(c) => c.map_restore(key, entries).await,
        }
    }

    async fn take_map(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, CacheError> {
        match self {
            Cache::Redis(c) => c.take_map(key).await,
            Cache::Memory(c) => c.take_map(key).await,
        }
    }
}

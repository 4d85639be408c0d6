//! Redis backend. Commands share one auto-reconnecting `ConnectionManager`; each subscription holds a
//! dedicated pub/sub connection, as the protocol requires.
//!
//! Redis being away must cost its callers nothing but the cache: the worker publishes a live update per
//! applied batch and the API counts requests, so a command that waits seconds for a server that is gone
//! stalls every batch and request behind it. Two things keep a failure quick: reconnecting tries briefly
//! (`manager_config`), and after the server failed to answer, commands fail at once for `REST` instead of
//! each waiting on a reconnect (`Breaker`), so at most one command a second finds out whether it is back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::{CacheBackend, CacheError, Subscription, Window};

/// `map_set` under a window, atomically: KEYS[1] the window's counter, KEYS[2] the map; ARGV[1] the
/// window in seconds, ARGV[2] its limit, then field and value pairs. The counter is kept as
/// `incr_window` keeps it. Both keys must live on one server (a Redis Cluster would need a hash tag).
static MAP_SET_WITHIN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local n = redis.call('INCR', KEYS[1]) \
         redis.call('EXPIRE', KEYS[1], ARGV[1], 'NX') \
         if n > tonumber(ARGV[2]) then return 0 end \
         redis.call('HSET', KEYS[2], unpack(ARGV, 3)) \
         return 1",
    )
});

/// How long commands fail at once after the server failed to answer.
const REST: Duration = Duration::from_secs(1);

/// Reconnecting: two quick retries (up to 0.1 s and 0.2 s apart), each attempt bounded by a second. The
/// library's default (six retries up to 6.4 s apart) makes every command wait up to 13 s while the
/// server is away.
fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_millis(500)))
}

/// Fails commands at once for `REST` after the server failed to answer (see the module's note).
#[derive(Debug)]
struct Breaker {
    rest: Duration,
    epoch: Instant,
    /// Milliseconds after `epoch` until which commands fail at once (0: closed).
    open_until: AtomicU64,
}

impl Breaker {
    fn new(rest: Duration) -> Self {
        Self { rest, epoch: Instant::now(), open_until: AtomicU64::new(0) }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn check(&self) -> Result<(), CacheError> {
        if self.now() < self.open_until.load(Ordering::Relaxed) {
            return Err(CacheError::Unavailable);
        }
        Ok(())
    }

    /// Opens on a failure of the link (not on a command the server refused).
    fn record<T>(&self, result: Result<T, redis::RedisError>) -> Result<T, CacheError> {
        if let Err(e) = &result
            && (e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout())
        {
            let until = self.now().saturating_add(u64::try_from(self.rest.as_millis()).unwrap_or(u64::MAX));
            self.open_until.store(until, Ordering::Relaxed);
        }
        Ok(result?)
    }
}

#[derive(Clone)]
pub struct RedisCache {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    breaker: Arc<Breaker>,
}

impl RedisCache {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new_with_config(client.clone(), manager_config()).await?;
        Ok(Self { client, conn, prefix: prefix.to_owned(), breaker: Arc::new(Breaker::new(REST)) })
    }

    /// Runs one command through the breaker.
    async fn guarded<T>(
        &self,
        command: impl std::future::Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, CacheError> {
        self.breaker.check()?;
        self.breaker.record(command.await)
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    /// Removes every key under this cache's prefix. For tests.
    pub async fn clear(&self) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = conn.keys(format!("{}:*", self.prefix)).await?;
        if !keys.is_empty() {
            let _: () = conn.del(keys).await?;
        }
        Ok(())
    }
}

impl CacheBackend for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut conn = self.conn.clone();
        self.guarded(conn.get(self.key(key))).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        self.guarded(conn.set_ex(self.key(key), value, ttl.as_secs().max(1))).await
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        self.guarded(conn.del(self.key(key))).await
    }

    async fn incr_window(&self, key: &str, window: Duration) -> Result<u64, CacheError> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        // INCR and EXPIRE NX in one round trip: the window starts at the first increment.
        let mut pipe = redis::pipe();
        pipe.atomic().incr(&key, 1u64).cmd("EXPIRE").arg(&key).arg(window.as_secs().max(1)).arg("NX");
        let (value, _): (u64, i64) = self.guarded(pipe.query_async(&mut conn)).await?;
        Ok(value)
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        self.guarded(conn.publish(self.key(channel), payload)).await
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription, CacheError> {
        self.breaker.check()?;
        let mut pubsub = self.breaker.record(self.client.get_async_pubsub().await)?;
        self.breaker.record(pubsub.subscribe(self.key(channel)).await)?;
        let (sink, stream) = pubsub.split();
        // Keep the sink alive as long as the stream: dropping it would end the subscription.
        let stream = stream.map(move |msg| {
            let _keep = &sink;
            msg.get_payload_bytes().to_vec()
        });
        Ok(Box::pin(stream))
    }

    async fn map_set(
        &self,
        key: &str,
        fields: &[(String, Vec<u8>)],
        window: Option<Window<'_>>,
    ) -> Result<bool, CacheError> {
        if fields.is_empty() {
            return Ok(true);
        }
        let mut conn = self.conn.clone();
        let Some(window) = window else {
            let pairs: Vec<(&str, &[u8])> = fields.iter().map(|(f, v)| (f.as_str(), v.as_slice())).collect();
            let () = self.guarded(conn.hset_multiple(self.key(key), &pairs)).await?;
            return Ok(true);
        };
        let mut invocation = MAP_SET_WITHIN.key(self.key(window.key));
        invocation.key(self.key(key)).arg(window.length.as_secs().max(1)).arg(window.limit);
        for (field, value) in fields {
            invocation.arg(field).arg(value.as_slice());
        }
        let set: i64 = self.guarded(invocation.invoke_async(&mut conn)).await?;
        Ok(set == 1)
    }

    async fn map_restore(&self, key: &str, entries: &[(String, Vec<u8>)]) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        let mut pipe = redis::pipe();
        for (field, value) in entries {
            pipe.hset_nx(&key, field, value.as_slice()).ignore();
        }
        self.guarded(pipe.query_async(&mut conn)).await
    }

    async fn take_map(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, CacheError> {
        let mut conn = self.conn.clone();
        // HGETALL and DEL in one transaction: a field set in between would otherwise be deleted unread.
        let mut pipe = redis::pipe();
        pipe.atomic().hgetall(self.key(key)).del(self.key(key));
        let (entries, _): (std::collections::HashMap<String, Vec<u8>>, i64) =
            self.guarded(pipe.query_async(&mut conn)).await?;
        Ok(entries.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error(kind: std::io::ErrorKind) -> redis::RedisError {
        std::io::Error::new(kind, "test").into()
    }

    #[test]
    fn a_failed_link_fails_commands_at_once_for_a_while() {
        let breaker = Breaker::new(Duration::from_millis(200));
        assert!(breaker.check().is_ok());
        assert!(breaker.record::<()>(Err(io_error(std::io::ErrorKind::ConnectionRefused))).is_err());
        assert!(matches!(breaker.check(), Err(CacheError::Unavailable)));
        std::thread::sleep(Duration::from_millis(250));
        assert!(breaker.check().is_ok(), "tried again after the rest");
        assert_eq!(breaker.record(Ok(7)).unwrap(), 7);
    }

    #[test]
    fn a_command_the_server_refused_leaves_the_link_trusted() {
        let breaker = Breaker::new(Duration::from_secs(60));
        let refused = redis::RedisError::from((redis::ErrorKind::Client, "wrong type"));
        assert!(breaker.record::<()>(Err(refused)).is_err());
        assert!(breaker.check().is_ok());
    }
}

//! Redis backend. Commands share one auto-reconnecting `ConnectionManager`; each subscription holds a
//! dedicated pub/sub connection, as the protocol requires.

use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::{CacheBackend, CacheError, Subscription};

#[derive(Clone)]
pub struct RedisCache {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
}

impl RedisCache {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client.clone()).await?;
        Ok(Self { client, conn, prefix: prefix.to_owned() })
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
        Ok(conn.get(self.key(key)).await?)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let _: () = conn.set_ex(self.key(key), value, ttl.as_secs().max(1)).await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let _: () = conn.del(self.key(key)).await?;
        Ok(())
    }

    async fn incr_window(&self, key: &str, window: Duration) -> Result<u64, CacheError> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        // INCR and EXPIRE NX in one round trip: the window starts at the first increment.
        let (value, _): (u64, i64) = redis::pipe()
            .atomic()
            .incr(&key, 1u64)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(window.as_secs().max(1))
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        Ok(value)
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let _: () = conn.publish(self.key(channel), payload).await?;
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription, CacheError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(self.key(channel)).await?;
        let (sink, stream) = pubsub.split();
        // Keep the sink alive as long as the stream: dropping it would end the subscription.
        let stream = stream.map(move |msg| {
            let _keep = &sink;
            msg.get_payload_bytes().to_vec()
        });
        Ok(Box::pin(stream))
    }

    async fn map_set(&self, key: &str, field: &str, value: &[u8]) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let _: () = conn.hset(self.key(key), field, value).await?;
        Ok(())
    }

    async fn map_restore(&self, key: &str, entries: &[(String, Vec<u8>)]) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        let mut pipe = redis::pipe();
        for (field, value) in entries {
            pipe.hset_nx(&key, field, value.as_slice()).ignore();
        }
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    async fn take_map(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, CacheError> {
        let mut conn = self.conn.clone();
        // HGETALL and DEL in one transaction: a field set in between would otherwise be deleted unread.
        let (entries, _): (std::collections::HashMap<String, Vec<u8>>, i64) =
            redis::pipe().atomic().hgetall(self.key(key)).del(self.key(key)).query_async(&mut conn).await?;
        Ok(entries.into_iter().collect())
    }
}

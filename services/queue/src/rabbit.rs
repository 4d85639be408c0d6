//! RabbitMQ backend. Topology, declared idempotently at connect:
//! - `<name>`: quorum queue, durable, `x-delivery-limit`, dead-lettering at-least-once to `<name>.dlq`
//!   (which requires `x-overflow: reject-publish`, so a full queue refuses publishes instead of dropping).
//! - `<name>.dlq`: quorum queue, durable; inspected by operators, never consumed automatically.
//!
//! Messages go through the default exchange with the queue name as routing key, persistent (delivery
//! mode 2) and `mandatory`, so an unroutable message comes back as an error rather than vanishing.

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use crate::{Acker, Delivery, Headers, MessageConsumer, QueueError};

/// The AMQP header that carries W3C trace context.
const TRACEPARENT: &str = "traceparent";

#[derive(Clone)]
pub struct RabbitQueue {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    queue: String,
    dlq: String,
    delivery_limit: u32,
    /// The publishing connection and its confirm-mode channel, shared by every publish and re-established
    /// after a failure.
    publisher: Mutex<Option<(Connection, Channel)>>,
}

pub struct RabbitConsumer {
    // The connection must outlive the consumer stream.
    _connection: Connection,
    _channel: Channel,
    stream: lapin::Consumer,
}

/// AMQP heartbeats every few seconds unless the URL sets its own: without them a broker that vanished
/// without closing the TCP connection (a host gone, a cut link) is noticed only after minutes.
const HEARTBEAT_SECS: u16 = 5;

fn with_heartbeat(url: &str) -> String {
    if url.contains("heartbeat=") {
        return url.to_owned();
    }
    let join = if url.contains('?') { '&' } else { '?' };
    format!("{url}{join}heartbeat={HEARTBEAT_SECS}")
}

impl RabbitQueue {
    /// Connects, declares the topology and prepares a confirm-mode publishing channel.
    pub async fn connect(url: &str, queue: &str, delivery_limit: u32) -> Result<Self, QueueError> {
        let this = Self {
            inner: Arc::new(Inner {
                url: with_heartbeat(url),
                queue: queue.to_owned(),
                dlq: format!("{queue}.dlq"),
                delivery_limit,
                publisher: Mutex::new(None),
            }),
        };
        let (conn, channel) = this.open().await?;
        this.declare(&channel).await?;
        *this.inner.publisher.lock().await = Some((conn, channel));
        Ok(this)
    }

    pub fn queue_name(&self) -> &str {
        &self.inner.queue
    }

    async fn open(&self) -> Result<(Connection, Channel), QueueError> {
        let conn = Connection::connect(&self.inner.url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok((conn, channel))
    }

    async fn declare(&self, channel: &Channel) -> Result<(), QueueError> {
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        let mut dlq_args = FieldTable::default();
        dlq_args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
        channel.queue_declare(self.inner.dlq.as_str().into(), durable, dlq_args).await?;

        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(i32::try_from(self.inner.delivery_limit).unwrap_or(i32::MAX)),
        );
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from("")));
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(LongString::from(self.inner.dlq.as_str())),
        );
        args.insert("x-dead-letter-strategy".into(), AMQPValue::LongString(LongString::from("at-least-once")));
        args.insert("x-overflow".into(), AMQPValue::LongString(LongString::from("reject-publish")));
        channel.queue_declare(self.inner.queue.as_str().into(), durable, args).await?;
        Ok(())
    }

    async fn publish_on(&self, channel: &Channel, payload: &[u8], headers: &Headers) -> Result<(), QueueError> {
        let mut table = FieldTable::default();
        if let Some(traceparent) = &headers.traceparent {
            table.insert(TRACEPARENT.into(), AMQPValue::LongString(LongString::from(traceparent.as_str())));
        }
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_headers(table);
        let confirm = channel
            .basic_publish(
                ShortString::from(""),
                self.inner.queue.as_str().into(),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                payload,
                properties,
            )
            .await?
            .await?;
        if confirm.is_nack() {
            return Err(QueueError::Nacked);
        }
        if confirm.take_message().is_some() {
            return Err(QueueError::Unroutable(self.inner.queue.clone()));
        }
        Ok(())
    }

    pub async fn publish(&self, payload: &[u8], headers: &Headers) -> Result<(), QueueError> {
        // One reconnect attempt: a broker restart or a dropped connection should cost one request at
        // most a retry, not a process restart.
        for attempt in 0..2 {
            let channel = match self.publishing_channel().await {
                Ok(channel) => channel,
                Err(e) if attempt == 0 => {
                    tracing::warn!(error = %onshi_telemetry::Chain(&e), "reconnecting to the broker failed; trying once more");
                    continue;
                }
                Err(e) => return Err(e),
            };
            match self.publish_on(&channel, payload, headers).await {
                Ok(()) => return Ok(()),
                Err(QueueError::Broker(e)) if attempt == 0 => {
                    tracing::warn!(error = %onshi_telemetry::Chain(&e), "publish failed; reconnecting once");
                    self.forget_channel(&channel).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(QueueError::Closed)
    }

    /// The shared confirm-mode channel, reconnected if it dropped. The lock is held only to look at (or
    /// replace) the channel, never while a publish waits for its confirm: requests publish concurrently
    /// on one channel and their confirms arrive pipelined, instead of one round trip after another.
    async fn publishing_channel(&self) -> Result<Channel, QueueError> {
        let mut guard = self.inner.publisher.lock().await;
        if guard.as_ref().is_none_or(|(conn, ch)| !conn.status().connected() || !ch.status().connected()) {
            *guard = Some(self.open().await?);
        }
        guard.as_ref().map(|(_, channel)| channel.clone()).ok_or(QueueError::Closed)
    }

    /// Drops the shared channel after a failure on it, unless another request already replaced it.
    async fn forget_channel(&self, failed: &Channel) {
        let mut guard = self.inner.publisher.lock().await;
        if guard.as_ref().is_some_and(|(_, channel)| channel.id() == failed.id()) {
            *guard = None;
        }
    }

    pub async fn consume(&self, prefetch: u16) -> Result<RabbitConsumer, QueueError> {
        let conn = Connection::connect(&self.inner.url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
        let stream = channel
            .basic_consume(
                self.inner.queue.as_str().into(),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(RabbitConsumer { _connection: conn, _channel: channel, stream })
    }

    /// Messages ready in `queue`, by a passive declare on the shared channel: readiness probes and metric
    /// scrapes run every few seconds in every pod, and a connection each time would churn the broker.
    async fn count(&self, queue: &str) -> Result<u64, QueueError> {
        let channel = self.publishing_channel().await?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(q) => Ok(u64::from(q.message_count())),
            Err(e) => {
                // A failed passive declare closes the channel; the next caller opens a new one.
                self.forget_channel(&channel).await;
                Err(e.into())
            }
        }
    }

    pub async fn dead_letter_count(&self) -> Result<u64, QueueError> {
        self.count(&self.inner.dlq).await
    }

    pub async fn depth(&self) -> Result<u64, QueueError> {
        self.count(&self.inner.queue).await
    }

    /// Deletes the queue and its dead-letter queue. For tests and for tearing down a deployment.
    pub async fn delete(&self) -> Result<(), QueueError> {
        let (conn, channel) = self.open().await?;
        channel.queue_delete(self.inner.queue.as_str().into(), QueueDeleteOptions::default()).await?;
        channel.queue_delete(self.inner.dlq.as_str().into(), QueueDeleteOptions::default()).await?;
        let _ = conn.close(200, "done".into()).await;
        Ok(())
    }
}

impl MessageConsumer for RabbitConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        let delivery = match self.stream.next().await? {
            Ok(d) => d,
            Err(e) => return Some(Err(e.into())),
        };
        let table = delivery.properties.headers().as_ref();
        let traceparent = table.and_then(|h| match h.inner().get(TRACEPARENT) {
            Some(AMQPValue::LongString(s)) => Some(s.to_string()),
            _ => None,
        });
        // Quorum queues count returns in x-delivery-count (absent on the first delivery).
        let returned = table
            .and_then(|h| h.inner().get("x-delivery-count").cloned())
            .and_then(|v| match v {
                AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
                AMQPValue::LongInt(n) => u32::try_from(n).ok(),
                AMQPValue::LongUInt(n) => Some(n),
                _ => None,
            })
            .unwrap_or(0);
        Some(Ok(Delivery {
            payload: delivery.data,
            delivery_count: returned + 1,
            headers: Headers { traceparent },
            acker: Acker::Rabbit(delivery.acker),
        }))
    }

    fn ready(&mut self) -> Option<Delivery> {
        use futures_util::FutureExt;
        // Polled once: lapin's consumer is a channel of received deliveries, so a pending poll dropped
        // here loses nothing. An error is left for the next `next`, which reports it.
        match self.next().now_or_never() {
            Some(Some(Ok(delivery))) => Some(delivery),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_heartbeat;

    #[test]
    fn a_heartbeat_is_asked_for_unless_the_url_sets_one() {
        assert_eq!(with_heartbeat("amqp://h:5672/%2f"), "amqp://h:5672/%2f?heartbeat=5");
        assert_eq!(with_heartbeat("amqp://h/v?frame_max=8192"), "amqp://h/v?frame_max=8192&heartbeat=5");
        assert_eq!(with_heartbeat("amqp://h/v?heartbeat=30"), "amqp://h/v?heartbeat=30");
    }
}

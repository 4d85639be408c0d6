//! The work queue between the API (which accepts event batches) and the workers (which apply them).
//!
//! One contract, two real backends, chosen once at start-up:
//! - [`RabbitQueue`] (full mode): a durable quorum queue; messages are persistent and `publish` returns
//!   only after the broker's publisher confirm; consumers ack manually; a message returned more than
//!   `delivery_limit` times, or rejected as poison, goes to the dead-letter queue `<name>.dlq`.
//! - [`EmbeddedQueue`] (embedded mode): the same semantics over a table in the embedded database, so
//!   `publish` returns only after the row is committed. In-process consumers are woken at once; other
//!   processes would find messages by polling, but the embedded mode runs API and worker in one process.
//!
//! Guarantees common to both: at-least-once delivery (a message is removed only by `ack`), FIFO per queue
//! apart from redeliveries, bounded redelivery, and nothing dropped silently: every message ends acked or
//! dead-lettered. Consumers must therefore be idempotent; the worker is.
//!
//! A message may carry several payloads ([`parts`]): the API publishes concurrent requests' batches
//! together through [`Coalescing`], and consumers read every message as parts.

mod coalesce;
mod embedded;
mod health;
pub mod parts;
mod rabbit;

use std::future::Future;

pub use coalesce::Coalescing;
pub use embedded::{EmbeddedConsumer, EmbeddedQueue};
pub use health::{ConsumerHealth, ConsumerState};
pub use rabbit::{RabbitConsumer, RabbitQueue};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("message broker error")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused the message (negative confirm)")]
    Nacked,
    #[error("the message could not be routed to queue `{0}`")]
    Unroutable(String),
    #[error("embedded queue storage error")]
    Storage(#[from] sea_orm::DbErr),
    #[error("the consumer stopped")]
    Closed,
    #[error("the broker did not confirm the message in time")]
    Unconfirmed,
    #[error("a payload with a raw newline cannot be queued: messages are read as JSON lines")]
    NotOnePart,
    /// A failure of a message that carried this payload among others ([`Coalescing`]).
    #[error(transparent)]
    Shared(std::sync::Arc<QueueError>),
}

/// Message metadata that travels beside the payload: AMQP headers with RabbitMQ, columns with the
/// embedded queue. Only trace context today; never personal data (brokers show headers in their UIs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// W3C trace context of the publishing request, so the worker's span joins the same trace.
    pub traceparent: Option<String>,
}

/// What a queue backend offers. Both backends implement it, and so does [`Queue`], which callers hold.
pub trait MessageQueue {
    type Consumer: MessageConsumer;

    /// Stores the message durably; returns only once it can no longer be lost.
    fn publish(&self, payload: &[u8], headers: &Headers) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Starts a consumer that holds at most `prefetch` unacknowledged messages.
    fn consume(&self, prefetch: u16) -> impl Future<Output = Result<Self::Consumer, QueueError>> + Send;

    /// Messages waiting in the dead-letter queue.
    fn dead_letter_count(&self) -> impl Future<Output = Result<u64, QueueError>> + Send;

    /// Messages waiting in the main queue (ready, not in flight where the backend can tell).
    fn depth(&self) -> impl Future<Output = Result<u64, QueueError>> + Send;
}

pub trait MessageConsumer: Send {
    /// The next message, or `None` when the consumer was closed.
    fn next(&mut self) -> impl Future<Output = Option<Result<Delivery, QueueError>>> + Send;
    /// A message already received, without waiting: `None` when none is at hand, or when the backend
    /// cannot tell without waiting (the embedded queue). The worker groups what it has at hand.
    fn ready(&mut self) -> Option<Delivery>;
}

/// One delivered message. Settle it exactly once with `ack`, `retry` or `dead_letter`; dropping it
/// unsettled leaves it in flight until the connection (or process) ends, then it is redelivered.
pub struct Delivery {
    pub payload: Vec<u8>,
    /// 1 on first delivery, 2 on the first redelivery, and so on (as far as the backend knows).
    pub delivery_count: u32,
    pub headers: Headers,
    acker: Acker,
}

enum Acker {
    Rabbit(lapin::Acker),
    Embedded {
        queue: EmbeddedQueue,
        id: i64,
        attempts: i32,
        /// Returned to the consumer's prefetch budget when the delivery is settled or dropped.
        _permit: tokio::sync::OwnedSemaphorePermit,
    },
}

impl Delivery {
    /// Done: remove the message.
    pub async fn ack(self) -> Result<(), QueueError> {
        match self.acker {
            Acker::Rabbit(acker) => {
                acker.ack(lapin::options::BasicAckOptions::default()).await?;
                Ok(())
            }
            Acker::Embedded { queue, id, .. } => queue.ack(id).await,
        }
    }

    /// Failed for a reason that may pass (a database restart): deliver again later. Counts towards the
    /// delivery limit, past which the message is dead-lettered.
    pub async fn retry(self) -> Result<(), QueueError> {
        match self.acker {
            Acker::Rabbit(acker) => {
                acker.nack(lapin::options::BasicNackOptions { requeue: true, multiple: false }).await?;
                Ok(())
            }
            Acker::Embedded { queue, id, attempts, .. } => queue.retry(id, attempts).await,
        }
    }

    /// Will never succeed (undecodable, unknown version): move to the dead-letter queue now.
    pub async fn dead_letter(self, reason: &str) -> Result<(), QueueError> {
        match self.acker {
            Acker::Rabbit(acker) => {
                // The broker records why in the x-death header; the reason goes to our log.
                tracing::warn!(reason, "dead-lettering message");
                acker.reject(lapin::options::BasicRejectOptions { requeue: false }).await?;
                Ok(())
            }
            Acker::Embedded { queue, id, attempts, .. } => queue.dead_letter(id, attempts, reason).await,
        }
    }
}

/// The queue the services hold: one of the two backends.
#[derive(Clone)]
pub enum Queue {
    Rabbit(RabbitQueue),
    Embedded(EmbeddedQueue),
}

pub enum Consumer {
    // Boxed: the lapin consumer is large and the enum is moved around.
    Rabbit(Box<RabbitConsumer>),
    Embedded(EmbeddedConsumer),
}

impl MessageConsumer for Consumer {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        match self {
            Consumer::Rabbit(c) => c.next().await,
            Consumer::Embedded(c) => c.next().await,
        }
    }

    fn ready(&mut self) -> Option<Delivery> {
        match self {
            Consumer::Rabbit(c) => c.ready(),
            Consumer::Embedded(c) => c.ready(),
        }
    }
}

impl Queue {
    pub fn kind(&self) -> &'static str {
        match self {
            Queue::Rabbit(_) => "rabbitmq",
            Queue::Embedded(_) => "embedded",
        }
    }
}

impl MessageQueue for Queue {
    type Consumer = Consumer;

    async fn publish(&self, payload: &[u8], headers: &Headers) -> Result<(), QueueError> {
        match self {
            Queue::Rabbit(q) => q.publish(payload, headers).await,
            Queue::Embedded(q) => q.publish(payload, headers).await,
        }
    }

    async fn consume(&self, prefetch: u16) -> Result<Consumer, QueueError> {
        Ok(match self {
            Queue::Rabbit(q) => Consumer::Rabbit(Box::new(q.consume(prefetch).await?)),
            Queue::Embedded(q) => Consumer::Embedded(q.consume(prefetch).await?),
        })
    }

    async fn dead_letter_count(&self) -> Result<u64, QueueError> {
        match self {
            Queue::Rabbit(q) => q.dead_letter_count().await,
            Queue::Embedded(q) => q.dead_letter_count().await,
        }
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        match self {
            Queue::Rabbit(q) => q.depth().await,
            Queue::Embedded(q) => q.depth().await,
        }
    }
}

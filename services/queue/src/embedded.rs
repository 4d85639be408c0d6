//! Embedded backend: the queue is a table in the embedded database (`queue_messages`), so a published
//! message is as durable as a committed row. In-flight messages are tracked in memory: after a crash
//! they are simply still in the table and are delivered again, which is the at-least-once contract.
//! Dead letters move to `queue_dead_letters` in the same transaction that removes them from the queue.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use time::OffsetDateTime;
use tokio::sync::{Notify, Semaphore};

use crate::{Acker, Delivery, Headers, MessageConsumer, QueueError};

mod messages {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "queue_messages")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub queue: String,
        pub payload: Vec<u8>,
        pub attempts: i32,
        pub created_at: TimeDateTimeWithTimeZone,
        pub traceparent: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod dead_letters {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "queue_dead_letters")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub queue: String,
        pub payload: Vec<u8>,
        pub attempts: i32,
        pub reason: String,
        pub dead_at: TimeDateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// How long an idle consumer sleeps before looking at the table again even without a wake-up (covers
/// messages published by another process sharing the database).
const POLL: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct EmbeddedQueue {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    queue: String,
    delivery_limit: u32,
    notify: Notify,
    in_flight: Mutex<HashSet<i64>>,
}

pub struct EmbeddedConsumer {
    queue: EmbeddedQueue,
    permits: Arc<Semaphore>,
}

impl EmbeddedQueue {
    /// The tables come from the migrations; this only binds to them.
    pub fn new(db: DatabaseConnection, queue: &str, delivery_limit: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                queue: queue.to_owned(),
                delivery_limit,
                notify: Notify::new(),
                in_flight: Mutex::new(HashSet::new()),
            }),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        // A poisoned lock only means a panic elsewhere while holding it; the set itself stays valid.
        self.inner.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub async fn publish(&self, payload: &[u8], headers: &Headers) -> Result<(), QueueError> {
        messages::ActiveModel {
            traceparent: Set(headers.traceparent.clone()),
            queue: Set(self.inner.queue.clone()),
            payload: Set(payload.to_vec()),
            attempts: Set(0),
            created_at: Set(OffsetDateTime::now_utc()),
            ..Default::default()
        }
        .insert(&self.inner.db)
        .await?;
        self.inner.notify.notify_waiters();
        Ok(())
    }

    pub async fn consume(&self, prefetch: u16) -> Result<EmbeddedConsumer, QueueError> {
        Ok(EmbeddedConsumer { queue: self.clone(), permits: Arc::new(Semaphore::new(usize::from(prefetch.max(1)))) })
    }

    /// Takes the oldest message that no consumer of this process holds.
    async fn claim(&self) -> Result<Option<messages::Model>, QueueError> {
        let busy: Vec<i64> = self.in_flight().iter().copied().collect();
        let mut query = messages::Entity::find()
            .filter(messages::Column::Queue.eq(self.inner.queue.as_str()))
            .order_by_asc(messages::Column::Id)
            .limit(1);
        if !busy.is_empty() {
            query = query.filter(messages::Column::Id.is_not_in(busy));
        }
        let Some(row) = query.one(&self.inner.db).await? else { return Ok(None) };
        // Another consumer of this process may have claimed it between the query and now.
        if !self.in_flight().insert(row.id) {
            return Ok(None);
        }
        Ok(Some(row))
    }

    fn release(&self, id: i64) {
        self.in_flight().remove(&id);
        self.inner.notify.notify_waiters();
    }

    pub(crate) async fn ack(&self, id: i64) -> Result<(), QueueError> {
        let result = messages::Entity::delete_by_id(id).exec(&self.inner.db).await;
        self.release(id);
        result?;
        Ok(())
    }

    pub(crate) async fn retry(&self, id: i64, attempts: i32) -> Result<(), QueueError> {
        let returned = attempts + 1;
        // Same rule as RabbitMQ's x-delivery-limit: dead-letter once returned more often than the limit.
        if u32::try_from(returned).unwrap_or(u32::MAX) > self.inner.delivery_limit {
            return self.dead_letter(id, returned, "delivery limit exceeded").await;
        }
        let result = messages::Entity::update_many()
            .col_expr(messages::Column::Attempts, Expr::value(returned))
            .filter(messages::Column::Id.eq(id))
            .exec(&self.inner.db)
            .await;
        self.release(id);
        result?;
        Ok(())
    }

    pub(crate) async fn dead_letter(&self, id: i64, attempts: i32, reason: &str) -> Result<(), QueueError> {
        let result = async {
            // IMMEDIATE: this transaction reads, then writes; see onshi_store::begin_write for why.
            let txn = self
                .inner
                .db
                .begin_with_options(sea_orm::TransactionOptions {
                    sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                    ..Default::default()
                })
                .await?;
            if let Some(row) = messages::Entity::find_by_id(id).one(&txn).await? {
                dead_letters::ActiveModel {
                    id: Set(row.id),
                    queue: Set(row.queue),
                    payload: Set(row.payload),
                    attempts: Set(attempts),
                    reason: Set(reason.chars().take(500).collect()),
                    dead_at: Set(OffsetDateTime::now_utc()),
                }
                .insert(&txn)
                .await?;
                messages::Entity::delete_by_id(id).exec(&txn).await?;
            }
            txn.commit().await
        }
        .await;
        self.release(id);
        tracing::warn!(reason, "dead-lettered a message");
        result?;
        Ok(())
    }

    pub async fn dead_letter_count(&self) -> Result<u64, QueueError> {
        Ok(dead_letters::Entity::find()
            .filter(dead_letters::Column::Queue.eq(self.inner.queue.as_str()))
            .count(&self.inner.db)
            .await?)
    }

    pub async fn depth(&self) -> Result<u64, QueueError> {
        Ok(messages::Entity::find()
            .filter(messages::Column::Queue.eq(self.inner.queue.as_str()))
            .count(&self.inner.db)
            .await?)
    }
}

impl MessageConsumer for EmbeddedConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        // One permit per unsettled delivery: the prefetch bound.
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return None,
        };
        loop {
            // Register interest before looking, so a publish between the look and the wait still wakes us.
            let notified = self.queue.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.queue.claim().await {
                Ok(Some(row)) => {
                    return Some(Ok(Delivery {
                        payload: row.payload,
                        delivery_count: u32::try_from(row.attempts).unwrap_or(0) + 1,
                        headers: Headers { traceparent: row.traceparent },
                        acker: Acker::Embedded {
                            queue: self.queue.clone(),
                            id: row.id,
                            attempts: row.attempts,
                            _permit: permit,
                        },
                    }));
                }
                Ok(None) => {
                    let _ = tokio::time::timeout(POLL, notified).await;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn ready(&mut self) -> Option<Delivery> {
        // Claiming is a database write: a claim interrupted half-way would strand the message until
        // its lease ends. The embedded mode applies one message at a time.
        None
    }
}

//! Outbound webhooks: a group's endpoints and the deliveries owed to them.
//!
//! The deliveries are an outbox: `enqueue_webhook_in` writes one row per subscribed endpoint inside the
//! transaction of the fact it announces (a month closed, a claims file imported, a usage warning claimed,
//! a device's outage recorded), so a fact is never committed without its announcement, nor announced
//! without being committed. A worker claims due rows with a lease (`claim_due_webhooks`), sends them and
//! records the outcome (`finish_webhook_delivery`): delivered, retried after the next delay of the
//! schedule, or failed for good once the schedule is spent, at which point an endpoint that has not
//! succeeded since its failures began is disabled. Delivery is at least once: a worker that dies after
//! sending and before recording sends again when the lease ends; receivers deduplicate on `webhook-id`.

use onshi_domain::{AuditAction, UserId, WebhookEvent};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::entities::{devices, webhook_deliveries, webhook_endpoints};
use crate::{AuditEntry, Store, StoreError, TenantScope, TenantStore};

/// Why a skipped delivery was not sent (the page shows its status alone).
const ENDPOINT_DISABLED: &str = "the endpoint is disabled";

/// An endpoint as the webhooks page shows it (never its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    pub events: Vec<WebhookEvent>,
    pub enabled: bool,
    pub disabled_reason: Option<DisabledReason>,
    /// Since when every delivery to it has failed; `None` after a success.
    pub failing_since: Option<OffsetDateTime>,
    /// Until when the secret before the last rotation still signs deliveries.
    pub previous_secret_until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

/// The length of the `disabled_reason` column.
const DISABLED_REASON_MAX: usize = 300;

/// Why an endpoint was turned off. Stored as JSON in `disabled_reason` and worded by the page in the
/// reader's language (a sentence stored in English read wrong on a Japanese page).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DisabledReason {
    /// Someone with the right turned it off on the page.
    ByPerson,
    /// Every delivery failed for a whole retry schedule; the last failure as the sender put it.
    EveryDeliveryFailed {
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
        last_error: String,
    },
    /// A reason stored as text before reasons had kinds, shown as it is.
    #[serde(skip)]
    Text(String),
}

impl DisabledReason {
    fn to_column(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            reason => serde_json::to_string(reason).unwrap_or_default(),
        }
    }

    fn from_column(text: String) -> Self {
        if let Ok(reason) = serde_json::from_str(&text) {
            return reason;
        }
        // The sentences stored before reasons had kinds.
        if text == "disabled by a person" {
            return Self::ByPerson;
        }
        let old = text.strip_prefix("every delivery failed since ").and_then(|rest| rest.split_once("; last: "));
        if let Some((since, last_error)) = old
            && let Ok(since) = OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
        {
            return Self::EveryDeliveryFailed { since, last_error: last_error.to_owned() };
        }
        Self::Text(text)
    }

    /// The failure reason for the column's 300 characters: the last error cut until the JSON fits.
    fn every_delivery_failed(since: OffsetDateTime, error: &str) -> Self {
        let mut last_error: String = error.chars().take(200).collect();
        loop {
            let reason = Self::EveryDeliveryFailed { since, last_error: last_error.clone() };
            if reason.to_column().chars().count() <= DISABLED_REASON_MAX || last_error.pop().is_none() {
                return reason;
            }
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its first or next attempt.
    Pending,
    Delivered,
    /// Every attempt of the schedule failed.
    Failed,
    /// Not sent: its endpoint was disabled when it came due.
    Skipped,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            "skipped" => Self::Skipped,
            _ => Self::Pending,
        }
    }
}

/// A delivery as the log shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    pub id: Uuid,
    pub endpoint: Uuid,
    pub message_id: Uuid,
    pub event: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: OffsetDateTime,
    pub last_attempt_at: Option<OffsetDateTime>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
    pub delivered_at: Option<OffsetDateTime>,
}

/// A delivery a worker has claimed: what to send where, and the secrets to sign it with (the current
/// one first, then the previous one during a rotation's overlap).
#[derive(Clone)]
pub struct DueDelivery {
    pub id: Uuid,
    pub endpoint: Uuid,
    pub url: String,
    pub secrets: Vec<String>,
    pub message_id: Uuid,
    pub payload: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
}

impl std::fmt::Debug for DueDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DueDelivery").field("id", &self.id).field("attempt", &self.attempt).finish_non_exhaustive()
    }
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered { status: u16 },
    Failed { status: Option<u16>, error: String },
}

/// An endpoint just disabled after persistent failure, for telling the group's owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledEndpoint {
    pub id: Uuid,
    pub url: String,
}

/// Device outages newly announced and ended by `announce_device_transitions`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transitions {
    pub offline: usize,
    pub recovered: usize,
}

fn endpoint_from(row: webhook_endpoints::Model) -> WebhookEndpoint {
    let events = row
        .event_types
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().and_then(WebhookEvent::parse)).collect())
        .unwrap_or_default();
    WebhookEndpoint {
        id: row.id,
        url: row.url,
        description: row.description,
        events,
        enabled: row.enabled,
        disabled_reason: row.disabled_reason.map(DisabledReason::from_column),
        failing_since: row.failing_since,
        previous_secret_until: row.previous_secret_until,
        created_at: row.created_at,
    }
}

fn delivery_from(row: webhook_deliveries::Model) -> WebhookDelivery {
    WebhookDelivery {
        id: row.id,
        endpoint: row.endpoint_id,
        message_id: row.message_id,
        event: row.event_type,
        status: DeliveryStatus::parse(&row.status),
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        next_attempt_at: row.next_attempt_at,
        last_attempt_at: row.last_attempt_at,
        last_status: row.last_status,
        last_error: row.last_error,
        created_at: row.created_at,
        delivered_at: row.delivered_at,
    }
}

/// A time as payloads and reasons write it (RFC 3339, UTC as stored).
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The body every delivery carries: Standard Webhooks' `{type, timestamp, data}`.
fn envelope(event: WebhookEvent, data: &serde_json::Value, at: OffsetDateTime) -> String {
    serde_json::json!({ "type": event.as_str(), "timestamp": rfc3339(at), "data": data }).to_string()
}

fn new_delivery(
    tenant: Uuid,
    endpoint: Uuid,
    message_id: Uuid,
    event: &str,
    payload: String,
    now: OffsetDateTime,
) -> webhook_deliveries::ActiveModel {
    webhook_deliveries::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant),
        endpoint_id: Set(endpoint),
        message_id: Set(message_id),
        event_type: Set(event.to_owned()),
        payload: Set(payload),
        status: Set(DeliveryStatus::Pending.as_str().to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_attempt_at: Set(None),
        last_status: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        delivered_at: Set(None),
    }
}

impl TenantStore<'_> {
    /// Adds an endpoint subscribed to `events`, signing with `secret`; audited.
    pub async fn create_webhook_endpoint(
        &self,
        url: &str,
        description: &str,
        events: &[WebhookEvent],
        secret: &str,
        created_by: UserId,
        audit: &AuditEntry,
    ) -> Result<Uuid, StoreError> {
        let txn = self.write().await?;
        let id = Uuid::now_v7();
        webhook_endpoints::ActiveModel {
            id: Set(id),
            tenant_id: Set(self.tenant_uuid()),
            url: Set(url.to_owned()),
            description: Set(description.chars().take(200).collect()),
            event_types: Set(serde_json::json!(events.iter().map(|e| e.as_str()).collect::<Vec<_>>())),
            secret: Set(secret.to_owned()),
            previous_secret: Set(None),
            previous_secret_until: Set(None),
            enabled: Set(true),
            disabled_reason: Set(None),
            failing_since: Set(None),
            created_by: Set(Some(created_by.as_uuid())),
            created_at: Set(OffsetDateTime::now_utc()),
        }
        .insert(&txn)
        .await?;
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(id)
    }

    /// The group's endpoints, oldest first.
    pub async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let txn = self.read().await?;
        let rows = webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::TenantId.eq(self.tenant_uuid()))
            .order_by_asc(webhook_endpoints::Column::CreatedAt)
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows.into_iter().map(endpoint_from).collect())
    }

    async fn endpoint_in(&self, txn: &DatabaseTransaction, id: Uuid) -> Result<webhook_endpoints::Model, StoreError> {
        webhook_endpoints::Entity::find_by_id(id)
            .filter(webhook_endpoints::Column::TenantId.eq(self.tenant_uuid()))
            .one(txn)
            .await?
            .ok_or(StoreError::NotFound { what: "webhook endpoint" })
    }

    /// Replaces an endpoint's secret; the old one keeps signing (as a second signature) for `overlap`,
    /// so the receiver can switch without losing a delivery. Audited.
    pub async fn rotate_webhook_secret(
        &self,
        id: Uuid,
        secret: &str,
        overlap: Duration,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let txn = self.write().await?;
        let row = self.endpoint_in(&txn, id).await?;
        let now = OffsetDateTime::now_utc();
        // A second rotation inside the overlap keeps the secret the receiver may still be using (the one
        // before the first rotation) rather than one it may never have installed.
        let previous = match (&row.previous_secret, row.previous_secret_until) {
            (Some(previous), Some(until)) if until > now => previous.clone(),
            _ => row.secret.clone(),
        };
        let mut active: webhook_endpoints::ActiveModel = row.into();
        active.previous_secret = Set(Some(previous));
        active.previous_secret_until = Set(Some(now + overlap));
        active.secret = Set(secret.to_owned());
        active.update(&txn).await?;
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Turns an endpoint off or back on (which forgets why it was disabled and its failures). Audited.
    pub async fn set_webhook_enabled(&self, id: Uuid, enabled: bool, audit: &AuditEntry) -> Result<(), StoreError> {
        let txn = self.write().await?;
        let row = self.endpoint_in(&txn, id).await?;
        let mut active: webhook_endpoints::ActiveModel = row.into();
        active.enabled = Set(enabled);
        active.disabled_reason = Set((!enabled).then(|| DisabledReason::ByPerson.to_column()));
        if enabled {
            active.failing_since = Set(None);
        }
        active.update(&txn).await?;
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The newest deliveries, newest first.
    pub async fn webhook_deliveries(&self, limit: u64) -> Result<Vec<WebhookDelivery>, StoreError> {
        let txn = self.read().await?;
        let rows = webhook_deliveries::Entity::find()
            .filter(webhook_deliveries::Column::TenantId.eq(self.tenant_uuid()))
            .order_by_desc(webhook_deliveries::Column::CreatedAt)
            .order_by_desc(webhook_deliveries::Column::Id)
            .limit(limit)
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(rows.into_iter().map(delivery_from).collect())
    }

    /// Sends a delivery's message again, as a new delivery with the same `webhook-id` (a receiver that
    /// processed it already recognises it). Audited.
    pub async fn replay_webhook_delivery(&self, id: Uuid, audit: &AuditEntry) -> Result<Uuid, StoreError> {
        let txn = self.write().await?;
        let row = webhook_deliveries::Entity::find_by_id(id)
            .filter(webhook_deliveries::Column::TenantId.eq(self.tenant_uuid()))
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound { what: "webhook delivery" })?;
        let endpoint = self.endpoint_in(&txn, row.endpoint_id).await?;
        if !endpoint.enabled {
            return Err(StoreError::Conflict { what: "a disabled endpoint" });
        }
        let copy = new_delivery(
            self.tenant_uuid(),
            row.endpoint_id,
            row.message_id,
            &row.event_type,
            row.payload,
            OffsetDateTime::now_utc(),
        );
        let new_id = copy.insert(&txn).await?.id;
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(new_id)
    }

    /// Queues a test event for one endpoint. Audited.
    pub async fn enqueue_webhook_test(&self, endpoint: Uuid, audit: &AuditEntry) -> Result<(), StoreError> {
        let txn = self.write().await?;
        let row = self.endpoint_in(&txn, endpoint).await?;
        if !row.enabled {
            return Err(StoreError::Conflict { what: "a disabled endpoint" });
        }
        let now = OffsetDateTime::now_utc();
        let data = serde_json::json!({ "endpoint_id": endpoint });
        let payload = envelope(WebhookEvent::Test, &data, now);
        new_delivery(self.tenant_uuid(), endpoint, Uuid::now_v7(), WebhookEvent::Test.as_str(), payload, now)
            .insert(&txn)
            .await?;
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Announces `event` to every enabled endpoint subscribed to it, inside `txn` (the transaction of
    /// the fact itself). Returns how many deliveries were queued.
    pub(crate) async fn enqueue_webhook_in(
        &self,
        txn: &DatabaseTransaction,
        event: WebhookEvent,
        data: &serde_json::Value,
    ) -> Result<usize, StoreError> {
        let endpoints = webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::TenantId.eq(self.tenant_uuid()))
            .filter(webhook_endpoints::Column::Enabled.eq(true))
            .all(txn)
            .await?;
        let subscribed: Vec<_> =
            endpoints.into_iter().map(endpoint_from).filter(|e| e.events.contains(&event)).collect();
        if subscribed.is_empty() {
            return Ok(0);
        }
        let now = OffsetDateTime::now_utc();
        let payload = envelope(event, data, now);
        let message_id = Uuid::now_v7();
        let rows = subscribed
            .iter()
            .map(|e| new_delivery(self.tenant_uuid(), e.id, message_id, event.as_str(), payload.clone(), now));
        webhook_deliveries::Entity::insert_many(rows).exec_without_returning(txn).await?;
        Ok(subscribed.len())
    }

    /// The same in a transaction of its own, for facts that are not rows of this store.
    pub async fn enqueue_webhook(&self, event: WebhookEvent, data: &serde_json::Value) -> Result<usize, StoreError> {
        let txn = self.write().await?;
        let n = self.enqueue_webhook_in(&txn, event, data).await?;
        txn.commit().await?;
        Ok(n)
    }

    /// Claims up to `limit` due deliveries for `lease`: another worker will not take them until the lease
    /// ends (when this one would have died). Deliveries of a disabled endpoint are marked skipped.
    pub async fn claim_due_webhooks(&self, lease: Duration, limit: u64) -> Result<Vec<DueDelivery>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let txn = self.write().await?;
        let rows = webhook_deliveries::Entity::find()
            .filter(webhook_deliveries::Column::TenantId.eq(self.tenant_uuid()))
            .filter(webhook_deliveries::Column::Status.eq(DeliveryStatus::Pending.as_str()))
            .filter(webhook_deliveries::Column::NextAttemptAt.lte(now))
            .order_by_asc(webhook_deliveries::Column::NextAttemptAt)
            .limit(limit)
            .all(&txn)
            .await?;
        // The group's endpoints, read once for all the rows (a handful per group).
        let endpoints: std::collections::HashMap<Uuid, webhook_endpoints::Model> = webhook_endpoints::Entity::find()
            .filter(webhook_endpoints::Column::TenantId.eq(self.tenant_uuid()))
            .all(&txn)
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let mut active: webhook_deliveries::ActiveModel = row.clone().into();
            let Some(endpoint) = endpoints.get(&row.endpoint_id).filter(|e| e.enabled) else {
                active.status = Set(DeliveryStatus::Skipped.as_str().to_owned());
                active.last_error = Set(Some(ENDPOINT_DISABLED.to_owned()));
                active.update(&txn).await?;
                continue;
            };
            // Claimed only if no other worker took it since it was read (same attempt count).
            let taken = webhook_deliveries::Entity::update_many()
                .col_expr(webhook_deliveries::Column::Attempts, Expr::value(row.attempts + 1))
                .col_expr(webhook_deliveries::Column::NextAttemptAt, Expr::value(now + lease))
                .col_expr(webhook_deliveries::Column::LastAttemptAt, Expr::value(Some(now)))
                .filter(webhook_deliveries::Column::Id.eq(row.id))
                .filter(webhook_deliveries::Column::Attempts.eq(row.attempts))
                .filter(webhook_deliveries::Column::Status.eq(DeliveryStatus::Pending.as_str()))
                .exec(&txn)
                .await?
                .rows_affected;
            if taken != 1 {
                continue;
            }
            let mut secrets = vec![endpoint.secret.clone()];
            if let (Some(previous), Some(until)) = (&endpoint.previous_secret, endpoint.previous_secret_until)
                && until > now
            {
                secrets.push(previous.clone());
            }
            claimed.push(DueDelivery {
                id: row.id,
                endpoint: endpoint.id,
                url: endpoint.url.clone(),
                secrets,
                message_id: row.message_id,
                payload: row.payload,
                attempt: u32::try_from(row.attempts + 1).unwrap_or(u32::MAX),
            });
        }
        txn.commit().await?;
        Ok(claimed)
    }

    /// Records an attempt's outcome. A failure is retried after `backoff[attempt - 1]` seconds; past the
    /// end of the schedule the delivery has failed for good, and its endpoint, if nothing succeeded there
    /// since its failures began, is disabled (audited, with the e-mail `tell` writes to the owners queued
    /// in the same transaction) and returned.
    pub async fn finish_webhook_delivery(
        &self,
        delivery: &DueDelivery,
        outcome: &DeliveryOutcome,
        backoff: &[u64],
        tell: impl FnOnce(&DisabledEndpoint, &[crate::User]) -> Vec<crate::NewMail> + Send,
    ) -> Result<Option<DisabledEndpoint>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let txn = self.write().await?;
        // Locked while we decide, so a worker that claims the delivery meanwhile (our lease ran out) waits and
        // finds it changed, and two outcomes are never recorded for one attempt.
        let Some(row) = webhook_deliveries::Entity::find_by_id(delivery.id)
            .filter(webhook_deliveries::Column::TenantId.eq(self.tenant_uuid()))
            .lock_exclusive()
            .one(&txn)
            .await?
        else {
            return Ok(None);
        };
        // Recorded only while the claim is ours: a worker whose lease ran out (another has the delivery now,
        // or has finished it) must not overwrite the outcome.
        if row.status != DeliveryStatus::Pending.as_str()
            || row.attempts != i32::try_from(delivery.attempt).unwrap_or(-1)
        {
            return Ok(None);
        }
        let endpoint = self.endpoint_in(&txn, row.endpoint_id).await?;
        let mut active: webhook_deliveries::ActiveModel = row.into();
        let mut endpoint_active: webhook_endpoints::ActiveModel = endpoint.clone().into();
        let mut disabled = None;
        match outcome {
            DeliveryOutcome::Delivered { status } => {
                active.status = Set(DeliveryStatus::Delivered.as_str().to_owned());
                active.delivered_at = Set(Some(now));
                active.last_status = Set(Some(i32::from(*status)));
                active.last_error = Set(None);
                endpoint_active.failing_since = Set(None);
            }
            DeliveryOutcome::Failed { status, error } => {
                active.last_status = Set(status.map(i32::from));
                active.last_error = Set(Some(error.chars().take(300).collect()));
                let failing_since = endpoint.failing_since.unwrap_or(now);
                endpoint_active.failing_since = Set(Some(failing_since));
                match backoff.get(delivery.attempt.saturating_sub(1) as usize) {
                    Some(delay) => {
                        let delay = Duration::seconds(i64::try_from(*delay).unwrap_or(7 * 86_400));
                        active.next_attempt_at = Set(now.checked_add(delay).unwrap_or(now));
                    }
                    None => {
                        active.status = Set(DeliveryStatus::Failed.as_str().to_owned());
                        // Disabled only when nothing succeeded there for a whole retry schedule: one payload
                        // the receiver keeps refusing must not turn off an endpoint that takes the others.
                        let schedule =
                            Duration::seconds(i64::try_from(backoff.iter().sum::<u64>()).unwrap_or(i64::MAX / 2));
                        if endpoint.enabled && now - failing_since >= schedule {
                            let since = rfc3339(failing_since);
                            endpoint_active.enabled = Set(false);
                            let reason = DisabledReason::every_delivery_failed(failing_since, error);
                            endpoint_active.disabled_reason = Set(Some(reason.to_column()));
                            let entry = AuditEntry::system(
                                AuditAction::WebhookEndpointDisabled,
                                &format!("webhook:{}", endpoint.id),
                            )
                            .details(serde_json::json!({ "failing_since": since, "attempts": delivery.attempt }));
                            self.append_in(&txn, &entry).await?;
                            disabled = Some(DisabledEndpoint { id: endpoint.id, url: endpoint.url.clone() });
                        }
                    }
                }
            }
        }
        active.update(&txn).await?;
        if endpoint_active.is_changed() {
            endpoint_active.update(&txn).await?;
        }
        if let Some(endpoint) = &disabled {
            self.queue_composed_in(&txn, |users| tell(endpoint, users)).await?;
        }
        txn.commit().await?;
        Ok(disabled)
    }

    /// Records which agents went silent for `after_secs` and which came back, each once, and announces
    /// both (`device.offline`, `device.recovered`) in the same transaction.
    pub async fn announce_device_transitions(&self, after_secs: i64) -> Result<Transitions, StoreError> {
        let now = OffsetDateTime::now_utc();
        let cutoff = now - Duration::seconds(after_secs);
        let txn = self.write().await?;
        // In id order, so the updates below lock the rows in the order every other writer of devices does.
        let rows = devices::Entity::find()
            .filter(devices::Column::TenantId.eq(self.tenant_uuid()))
            .filter(devices::Column::Status.eq("active"))
            .filter(devices::Column::LastSeenAt.is_not_null())
            .order_by_asc(devices::Column::Id)
            .all(&txn)
            .await?;
        let mut done = Transitions::default();
        for row in rows {
            let Some(last_seen) = row.last_seen_at else { continue };
            let went_offline = row.offline_announced_at.is_none() && last_seen < cutoff;
            let came_back = row.offline_announced_at.is_some() && last_seen >= cutoff;
            if !went_offline && !came_back {
                continue;
            }
            let mut data = serde_json::json!({
                "device_id": onshi_domain::DeviceId::from_uuid(row.id),
                "clinic_id": onshi_domain::ClinicId::from_uuid(row.clinic_id),
                "device_name": row.name,
                "last_seen_at": rfc3339(last_seen),
            });
            // Recorded only if the row is still as it was read: of several workers looking at once, one
            // changes it (the others wait on its row lock, then find nothing to change) and announces it.
            let mut update = devices::Entity::update_many()
                .col_expr(devices::Column::OfflineAnnouncedAt, Expr::value(if went_offline { Some(now) } else { None }))
                .filter(devices::Column::Id.eq(row.id))
                .filter(devices::Column::TenantId.eq(self.tenant_uuid()));
            update = if went_offline {
                update.filter(devices::Column::OfflineAnnouncedAt.is_null())
            } else {
                update.filter(devices::Column::OfflineAnnouncedAt.eq(row.offline_announced_at))
            };
            if update.exec(&txn).await?.rows_affected != 1 {
                continue;
            }
            if went_offline {
                self.enqueue_webhook_in(&txn, WebhookEvent::DeviceOffline, &data).await?;
                done.offline += 1;
            } else {
                data["offline_announced_at"] = serde_json::json!(row.offline_announced_at.map(rfc3339));
                self.enqueue_webhook_in(&txn, WebhookEvent::DeviceRecovered, &data).await?;
                done.recovered += 1;
            }
        }
        txn.commit().await?;
        Ok(done)
    }
}

/// What a SQLite tenant query binds: the time now (PostgreSQL uses its own `now()`), or a cutoff this many
/// seconds ago, `times` times (PostgreSQL takes the seconds once).
#[derive(Debug, Clone, Copy)]
pub(crate) enum TenantsDue {
    /// Nothing to bind.
    Always,
    Now,
    Cutoff {
        after_secs: i64,
        times: usize,
    },
}

impl Store {
    /// The tenants with deliveries due now. On PostgreSQL through a SECURITY DEFINER function that
    /// returns tenant ids only (the application role sees one tenant's rows at a time).
    pub async fn webhook_tenants_due(&self) -> Result<Vec<TenantScope>, StoreError> {
        self.tenant_list(
            "SELECT onshi_webhook_tenants_due AS tenant_id FROM onshi_webhook_tenants_due()",
            "SELECT DISTINCT tenant_id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?",
            TenantsDue::Now,
        )
        .await
    }

    /// The tenants with an agent whose outage is to be announced or whose recovery is.
    pub async fn device_transition_tenants(&self, after_secs: i64) -> Result<Vec<TenantScope>, StoreError> {
        self.tenant_list(
            "SELECT onshi_device_transition_tenants AS tenant_id FROM onshi_device_transition_tenants($1)",
            "SELECT DISTINCT tenant_id FROM devices WHERE status = 'active' AND last_seen_at IS NOT NULL \
             AND ((offline_announced_at IS NULL AND last_seen_at < ?) OR (offline_announced_at IS NOT NULL AND last_seen_at >= ?))",
            TenantsDue::Cutoff { after_secs, times: 2 },
        )
        .await
    }

    /// The tenants a worker has work in, by a query of each backend (on PostgreSQL a SECURITY DEFINER
    /// function, as the application role sees one tenant at a time).
    pub(crate) async fn tenant_list(
        &self,
        postgres: &str,
        sqlite: &str,
        due: TenantsDue,
    ) -> Result<Vec<TenantScope>, StoreError> {
        let db = &self.db;
        let statement = match (db.get_database_backend(), due) {
            (backend, TenantsDue::Always) => {
                let sql = if backend == sea_orm::DatabaseBackend::Postgres { postgres } else { sqlite };
                Statement::from_string(backend, sql)
            }
            (sea_orm::DatabaseBackend::Postgres, TenantsDue::Now) => {
                Statement::from_sql_and_values(sea_orm::DatabaseBackend::Postgres, postgres, [])
            }
            (sea_orm::DatabaseBackend::Postgres, TenantsDue::Cutoff { after_secs, .. }) => {
                let secs: sea_orm::Value = i32::try_from(after_secs).unwrap_or(i32::MAX).into();
                Statement::from_sql_and_values(sea_orm::DatabaseBackend::Postgres, postgres, [secs])
            }
            (backend, TenantsDue::Now) => {
                Statement::from_sql_and_values(backend, sqlite, [OffsetDateTime::now_utc().into()])
            }
            (backend, TenantsDue::Cutoff { after_secs, times }) => {
                let cutoff = OffsetDateTime::now_utc() - Duration::seconds(after_secs);
                Statement::from_sql_and_values(backend, sqlite, (0..times).map(|_| cutoff.into()))
            }
        };
        let rows = db.query_all_raw(statement).await?;
        rows.iter()
            .map(|r| {
                let id: Uuid = r.try_get("", "tenant_id")?;
                Ok(TenantScope::new(onshi_domain::TenantId::from_uuid(id)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::DisabledReason;

    #[test]
    fn a_disabled_reason_keeps_its_kind_and_a_reason_stored_as_text_reads_as_text() {
        let failed = DisabledReason::EveryDeliveryFailed {
            since: time::macros::datetime!(2026-12-07 08:30 UTC),
            last_error: "HTTP 503".to_owned(),
        };
        for reason in [DisabledReason::ByPerson, failed] {
            assert_eq!(DisabledReason::from_column(reason.to_column()), reason);
        }
        // The sentences stored before reasons had kinds read as their kinds; anything else as text.
        assert_eq!(DisabledReason::from_column("disabled by a person".to_owned()), DisabledReason::ByPerson);
        assert_eq!(
            DisabledReason::from_column("every delivery failed since 2026-12-01T00:00:00Z; last: HTTP 500".to_owned()),
            DisabledReason::EveryDeliveryFailed {
                since: time::macros::datetime!(2026-12-01 00:00 UTC),
                last_error: "HTTP 500".to_owned()
            }
        );
        assert_eq!(DisabledReason::from_column("other".to_owned()), DisabledReason::Text("other".to_owned()));
        // An error full of characters JSON escapes still fits the column.
        let quoted = "\"".repeat(400);
        let reason = DisabledReason::every_delivery_failed(time::OffsetDateTime::UNIX_EPOCH, &quoted);
        assert!(reason.to_column().chars().count() <= super::DISABLED_REASON_MAX);
        assert!(matches!(reason, DisabledReason::EveryDeliveryFailed { last_error, .. } if !last_error.is_empty()));
    }
}

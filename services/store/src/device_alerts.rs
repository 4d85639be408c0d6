//! Alerts about a tenant's agents that know the clinic's opening hours (`onshi_domain::device_alert`):
//! a row per agent and fault from when the fault is first seen, raised once it has lasted the clinic's
//! wait in opening hours, resolved when it is over. Raising and resolving write the audit entry and the
//! webhook announcement in the same transaction; the worker e-mails the managers after the commit.

use onshi_domain::device_alert::{self, AlertKind, Step, Tracked};
use onshi_domain::{AuditAction, ClinicId, DeviceId, WebhookEvent};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::entities::{device_alerts, devices};
use crate::error::StoreError;
use crate::{AuditEntry, Clinic, Store, TenantScope, TenantStore};

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceAlert {
    pub id: Uuid,
    pub clinic: ClinicId,
    pub clinic_name: String,
    /// The clinic's prefecture (first two digits of its 医療機関コード), for "is it us or everyone?".
    pub prefecture: u8,
    pub device: DeviceId,
    pub device_name: String,
    pub kind: AlertKind,
    pub since: OffsetDateTime,
    pub raised_at: Option<OffsetDateTime>,
    pub resolved_at: Option<OffsetDateTime>,
}

impl DeviceAlert {
    fn announcement(&self) -> serde_json::Value {
        let at = |t: Option<OffsetDateTime>| t.map(crate::webhooks::rfc3339);
        serde_json::json!({
            "alert_id": self.id,
            "kind": self.kind.code(),
            "clinic_id": self.clinic,
            "device_id": self.device,
            "device_name": self.device_name,
            "since": crate::webhooks::rfc3339(self.since),
            "raised_at": at(self.raised_at),
            "resolved_at": at(self.resolved_at),
        })
    }
}

impl TenantStore<'_> {
    /// Looks at every active agent of the tenant as of `now` and applies the steps the domain decides.
    /// Returns the alerts raised or resolved; the managers' e-mail about them (`tell` writes it) is queued
    /// in the same transaction. The tenant's agent rows are locked while this runs, so two workers looking
    /// at once do not both raise one alert.
    pub async fn evaluate_device_alerts(
        &self,
        now: OffsetDateTime,
        tell: impl Fn(&DeviceAlert, &[crate::User]) -> Vec<crate::NewMail> + Send,
    ) -> Result<Vec<DeviceAlert>, StoreError> {
        let txn = self.write().await?;
        let all_agents = devices::Entity::find()
            .filter(devices::Column::TenantId.eq(self.tenant_uuid()))
            .order_by_asc(devices::Column::Id)
            .lock_exclusive()
            .all(&txn)
            .await?;
        let (agents, gone): (Vec<_>, Vec<_>) =
            all_agents.into_iter().partition(|d| d.status == "active" && d.last_seen_at.is_some());
        let clinics = self.clinics_in(&txn).await?;
        let open = device_alerts::Entity::find()
            .filter(device_alerts::Column::TenantId.eq(self.tenant_uuid()))
            .filter(device_alerts::Column::ResolvedAt.is_null())
            .all(&txn)
            .await?;
        let mut told = Vec::new();
        for agent in agents {
            let Some(clinic) = clinics.iter().find(|c| c.id.as_uuid() == agent.clinic_id) else { continue };
            let heartbeat: Option<onshi_domain::Heartbeat> =
                agent.last_heartbeat.clone().and_then(|j| serde_json::from_value(j).ok());
            let rows: Vec<&device_alerts::Model> = open.iter().filter(|r| r.device_id == agent.id).collect();
            let tracked: Vec<Tracked> = rows
                .iter()
                .filter_map(|r| {
                    Some(Tracked { kind: AlertKind::parse(&r.kind)?, since: r.since, raised: r.raised_at.is_some() })
                })
                .collect();
            let observed = device_alert::observe(agent.last_seen_at, heartbeat.as_ref(), now);
            let after = Duration::minutes(i64::from(clinic.alert_after_minutes));
            for step in device_alert::steps(&observed, &tracked, &clinic.opening_hours(), after, now) {
                let row_of = |kind: AlertKind| rows.iter().find(|r| r.kind == kind.code()).map(|r| (*r).clone());
                match step {
                    Step::Start { kind, since, raise } => {
                        let row = device_alerts::ActiveModel {
                            id: Set(Uuid::new_v4()),
                            tenant_id: Set(self.tenant_uuid()),
                            clinic_id: Set(agent.clinic_id),
                            device_id: Set(agent.id),
                            kind: Set(kind.code().to_owned()),
                            // UTC, so SQLite's text comparisons order it with every other time.
                            since: Set(since.to_offset(time::UtcOffset::UTC)),
                            raised_at: Set(raise.then_some(now)),
                            resolved_at: Set(None),
                            created_at: Set(now),
                        }
                        .insert(&txn)
                        .await?;
                        if raise {
                            told.push(self.announce_in(&txn, alert_from(&row, &clinics, &agent.name)?).await?);
                        }
                    }
                    Step::Raise(kind) => {
                        let Some(mut row) = row_of(kind) else { continue };
                        set(&txn, row.id, device_alerts::Column::RaisedAt, now).await?;
                        row.raised_at = Some(now);
                        told.push(self.announce_in(&txn, alert_from(&row, &clinics, &agent.name)?).await?);
                    }
                    Step::Resolve(kind) => {
                        let Some(mut row) = row_of(kind) else { continue };
                        set(&txn, row.id, device_alerts::Column::ResolvedAt, now).await?;
                        row.resolved_at = Some(now);
                        told.push(self.announce_in(&txn, alert_from(&row, &clinics, &agent.name)?).await?);
                    }
                    Step::Forget(kind) => {
                        let Some(row) = row_of(kind) else { continue };
                        device_alerts::Entity::delete_by_id(row.id).exec(&txn).await?;
                    }
                }
            }
        }
        // A revoked agent says nothing more: what it left open is over (told if it was raised).
        for row in open.iter().filter(|r| gone.iter().any(|d| d.id == r.device_id)) {
            let Some(agent) = gone.iter().find(|d| d.id == row.device_id) else { continue };
            if row.raised_at.is_none() {
                device_alerts::Entity::delete_by_id(row.id).exec(&txn).await?;
                continue;
            }
            set(&txn, row.id, device_alerts::Column::ResolvedAt, now).await?;
            let over = device_alerts::Model { resolved_at: Some(now), ..row.clone() };
            told.push(self.announce_in(&txn, alert_from(&over, &clinics, &agent.name)?).await?);
        }
        if !told.is_empty() {
            self.queue_composed_in(&txn, |users| told.iter().flat_map(|alert| tell(alert, users)).collect()).await?;
        }
        txn.commit().await?;
        Ok(told)
    }

    /// Audits and announces an alert raised or resolved, in the caller's transaction.
    async fn announce_in(&self, txn: &DatabaseTransaction, alert: DeviceAlert) -> Result<DeviceAlert, StoreError> {
        let (action, event) = match alert.resolved_at {
            None => (AuditAction::DeviceAlertRaised, WebhookEvent::AlertRaised),
            Some(_) => (AuditAction::DeviceAlertResolved, WebhookEvent::AlertResolved),
        };
        let entry = AuditEntry::system(action, &format!("device:{}", alert.device)).details(serde_json::json!({
            "clinic_id": alert.clinic,
            "kind": alert.kind.code(),
            "since": crate::webhooks::rfc3339(alert.since),
        }));
        self.append_in(txn, &entry).await?;
        self.enqueue_webhook_in(txn, event, &alert.announcement()).await?;
        Ok(alert)
    }

    /// The alerts managers were told of that are still open, or were raised or began after `from`; open
    /// ones first, then newest first.
    pub async fn device_alerts(&self, from: OffsetDateTime) -> Result<Vec<DeviceAlert>, StoreError> {
        let txn = self.read().await?;
        let rows = device_alerts::Entity::find()
            .filter(device_alerts::Column::TenantId.eq(self.tenant_uuid()))
            .filter(device_alerts::Column::RaisedAt.is_not_null())
            // Open ones however old, and those raised or begun since `from`.
            .filter(
                sea_orm::Condition::any()
                    .add(device_alerts::Column::ResolvedAt.is_null())
                    .add(device_alerts::Column::RaisedAt.gte(from))
                    .add(device_alerts::Column::Since.gte(from)),
            )
            .order_by_desc(device_alerts::Column::Since)
            .all(&txn)
            .await?;
        let names: Vec<(Uuid, String)> = devices::Entity::find()
            .filter(devices::Column::TenantId.eq(self.tenant_uuid()))
            .all(&txn)
            .await?
            .into_iter()
            .map(|d| (d.id, d.name))
            .collect();
        let clinics = self.clinics_in(&txn).await?;
        txn.commit().await?;
        let device_name = |id: Uuid| names.iter().find(|(i, _)| *i == id).map(|(_, n)| n.clone()).unwrap_or_default();
        let mut alerts: Vec<DeviceAlert> =
            rows.iter().map(|r| alert_from(r, &clinics, &device_name(r.device_id))).collect::<Result<_, _>>()?;
        alerts.sort_by_key(|a| a.resolved_at.is_some());
        Ok(alerts)
    }
}

/// An alert as callers see it: its row, with the names of its clinic and agent.
fn alert_from(row: &device_alerts::Model, clinics: &[Clinic], device_name: &str) -> Result<DeviceAlert, StoreError> {
    let kind = AlertKind::parse(&row.kind).ok_or_else(|| StoreError::Corrupt(format!("alert kind {}", row.kind)))?;
    let clinic = clinics.iter().find(|c| c.id.as_uuid() == row.clinic_id);
    Ok(DeviceAlert {
        id: row.id,
        clinic: ClinicId::from_uuid(row.clinic_id),
        clinic_name: clinic.map(|c| c.name.clone()).unwrap_or_default(),
        prefecture: clinic.map(|c| c.code.prefecture()).unwrap_or(0),
        device: DeviceId::from_uuid(row.device_id),
        device_name: device_name.to_owned(),
        kind,
        since: row.since,
        raised_at: row.raised_at,
        resolved_at: row.resolved_at,
    })
}

async fn set(
    txn: &DatabaseTransaction,
    id: Uuid,
    column: device_alerts::Column,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    device_alerts::Entity::update_many()
        .col_expr(column, Expr::value(Some(at)))
        .filter(device_alerts::Column::Id.eq(id))
        .exec(txn)
        .await?;
    Ok(())
}

impl Store {
    /// The tenants with an agent in trouble now or a fault still open. On PostgreSQL through a SECURITY
    /// DEFINER function that returns tenant ids only.
    pub async fn device_alert_tenants(&self) -> Result<Vec<TenantScope>, StoreError> {
        self.tenant_list(
            "SELECT onshi_alert_tenants AS tenant_id FROM onshi_alert_tenants($1)",
            "SELECT tenant_id FROM devices WHERE status = 'active' AND last_seen_at IS NOT NULL \
               AND (last_seen_at < ? OR json_extract(last_heartbeat, '$.reader_ok') = 0 \
                 OR json_extract(last_heartbeat, '$.network_ok') = 0 \
                 OR json_extract(last_heartbeat, '$.last_quarantine') IS NOT NULL) \
             UNION SELECT tenant_id FROM device_alerts WHERE resolved_at IS NULL",
            crate::webhooks::TenantsDue::Cutoff { after_secs: onshi_domain::OFFLINE_AFTER_SECS, times: 1 },
        )
        .await
    }
}

//! Removing visit records past their legal floor (see onshi_domain::retention), tenant by tenant.
//!
//! One transaction per tenant removes, for whole months before the tenant's `keep_from`: visits, the raw
//! events they came from, the per-month patient sets the dashboards use, and billing reviews of those
//! months, and the agents' availability intervals and resolved alerts that ended before the same day (no
//! patient in them, but they are kept as long as the visits they explain, and no longer); and appends one
//! `retention.purge` entry with the counts to the tenant's audit chain, so what was
//! removed, when and why is itself kept. Rollup counters (no patient in them) stay for the long-term
//! dashboards. Archived raw batches in the object store expire by the bucket's lifecycle rule
//! (docs/operations.md), which is set to the longest floor.

use crate::month_key;
use onshi_domain::{AuditAction, RetentionBasis, TenantId, jst};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter,
};
use serde::Serialize;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use crate::audit::{AuditEntry, append};
use crate::entities::{
    billing_reviews, device_alerts, device_uptime, mail_outbox, monthly_patients, raw_events, tenants, visits,
};
use crate::{Store, StoreError, TenantStore};

/// What a purge removed (or, in a dry run, would remove) for one tenant.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Purge {
    pub tenant: TenantId,
    pub basis: &'static str,
    /// Records dated before this day were removed.
    pub keep_from: Date,
    pub visits: u64,
    pub raw_events: u64,
    pub monthly_patients: u64,
    pub billing_reviews: u64,
    /// Availability intervals that ended before `keep_from`.
    pub device_uptime: u64,
    /// Alerts resolved before `keep_from` (open ones stay, however old).
    pub device_alerts: u64,
    /// E-mail that could not be sent, queued more than `FAILED_MAIL_KEEP_DAYS` ago (not a record the law
    /// keeps, so not in the audited count).
    pub failed_mail: u64,
    pub dry_run: bool,
}

impl Store {
    /// Every tenant's id. Needs a connection that row-level security does not restrict to one tenant
    /// (the schema owner's, `database_migration_url`): as the application role the list is empty.
    pub async fn tenant_ids(&self) -> Result<Vec<TenantId>, StoreError> {
        let rows = tenants::Entity::find().all(&self.db).await?;
        Ok(rows.into_iter().map(|t| TenantId::from_uuid(t.id)).collect())
    }

    /// Runs the retention purge for every tenant, as of `today` (JST).
    pub async fn purge_expired(&self, today: Date, dry_run: bool) -> Result<Vec<Purge>, StoreError> {
        let mut out = Vec::new();
        for tenant in self.tenant_ids().await? {
            let store = self.tenant(crate::TenantScope::new(tenant));
            out.push(store.purge_expired(today, dry_run).await?);
        }
        Ok(out)
    }
}

impl TenantStore<'_> {
    /// The group's name, as given at signup (for e-mails that must say which group).
    pub async fn group_name(&self) -> Result<String, StoreError> {
        let txn = self.read().await?;
        let row = tenants::Entity::find_by_id(self.tenant_uuid()).one(&txn).await?;
        txn.commit().await?;
        Ok(row.ok_or(StoreError::NotFound { what: "tenant" })?.name)
    }

    pub async fn retention_basis(&self) -> Result<RetentionBasis, StoreError> {
        let txn = self.read().await?;
        let row = tenants::Entity::find_by_id(self.tenant_uuid()).one(&txn).await?;
        txn.commit().await?;
        let row = row.ok_or(StoreError::NotFound { what: "tenant" })?;
        RetentionBasis::parse(&row.retention_basis)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown retention basis {}", row.retention_basis)))
    }

    /// Records the tenant's answer, audited with the actor.
    pub async fn set_retention_basis(&self, basis: RetentionBasis, actor: &AuditEntry) -> Result<(), StoreError> {
        let txn = self.write().await?;
        let row = tenants::Entity::find_by_id(self.tenant_uuid())
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound { what: "tenant" })?;
        let before = row.retention_basis.clone();
        let mut active = row.into_active_model();
        active.retention_basis = Set(basis.as_str().to_owned());
        active.update(&txn).await?;
        let mut entry = actor.clone();
        entry.details = serde_json::json!({ "from": before, "to": basis.as_str() });
        append(&txn, &self.tenant_uuid().to_string(), Some(self.tenant_uuid()), &entry).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Removes this tenant's records dated before its floor (see the module comment).
    pub async fn purge_expired(&self, today: Date, dry_run: bool) -> Result<Purge, StoreError> {
        let basis = self.retention_basis().await?;
        let keep_from = basis.keep_from(today);
        let cutoff = PrimitiveDateTime::new(keep_from, Time::MIDNIGHT).assume_offset(jst::JST);
        let month = month_key(keep_from);
        let tenant = self.tenant_uuid();

        let txn = self.write().await?;
        let visits_due =
            Condition::all().add(visits::Column::TenantId.eq(tenant)).add(visits::Column::VisitDate.lt(keep_from));
        let cutoff_utc = cutoff.to_offset(time::UtcOffset::UTC);
        let raw_due = Condition::all()
            .add(raw_events::Column::TenantId.eq(tenant))
            .add(raw_events::Column::OccurredAt.lt(cutoff_utc));
        let patients_due = Condition::all()
            .add(monthly_patients::Column::TenantId.eq(tenant))
            .add(monthly_patients::Column::Month.lt(month.clone()));
        let reviews_due = Condition::all()
            .add(billing_reviews::Column::TenantId.eq(tenant))
            .add(billing_reviews::Column::Month.lt(month.clone()));
        let uptime_due = Condition::all()
            .add(device_uptime::Column::TenantId.eq(tenant))
            .add(device_uptime::Column::EndedAt.lt(cutoff_utc));
        let alerts_due = Condition::all()
            .add(device_alerts::Column::TenantId.eq(tenant))
            .add(device_alerts::Column::ResolvedAt.is_not_null())
            .add(device_alerts::Column::ResolvedAt.lt(cutoff_utc));

        let mail_cutoff = (PrimitiveDateTime::new(today, Time::MIDNIGHT).assume_offset(jst::JST)
            - time::Duration::days(onshi_domain::retention::FAILED_MAIL_KEEP_DAYS))
        .to_offset(time::UtcOffset::UTC);
        let mail_due = Condition::all()
            .add(mail_outbox::Column::TenantId.eq(tenant))
            .add(mail_outbox::Column::Status.eq("failed"))
            .add(mail_outbox::Column::CreatedAt.lt(mail_cutoff));

        // A dry run counts exactly the rows the purge would delete: the same conditions serve both.
        let (visits, raw_events, monthly_patients, billing_reviews, device_uptime, device_alerts, failed_mail) =
            if dry_run {
                (
                    visits::Entity::find().filter(visits_due).count(&txn).await?,
                    raw_events::Entity::find().filter(raw_due).count(&txn).await?,
                    monthly_patients::Entity::find().filter(patients_due).count(&txn).await?,
                    billing_reviews::Entity::find().filter(reviews_due).count(&txn).await?,
                    device_uptime::Entity::find().filter(uptime_due).count(&txn).await?,
                    device_alerts::Entity::find().filter(alerts_due).count(&txn).await?,
                    mail_outbox::Entity::find().filter(mail_due).count(&txn).await?,
                )
            } else {
                (
                    visits::Entity::delete_many().filter(visits_due).exec(&txn).await?.rows_affected,
                    raw_events::Entity::delete_many().filter(raw_due).exec(&txn).await?.rows_affected,
                    monthly_patients::Entity::delete_many().filter(patients_due).exec(&txn).await?.rows_affected,
                    billing_reviews::Entity::delete_many().filter(reviews_due).exec(&txn).await?.rows_affected,
                    device_uptime::Entity::delete_many().filter(uptime_due).exec(&txn).await?.rows_affected,
                    device_alerts::Entity::delete_many().filter(alerts_due).exec(&txn).await?.rows_affected,
                    mail_outbox::Entity::delete_many().filter(mail_due).exec(&txn).await?.rows_affected,
                )
            };
        // The desk's follow-up statuses go with the visits they are about (not counted on their own).
        if !dry_run {
            crate::entities::followups::Entity::delete_many()
                .filter(crate::entities::followups::Column::TenantId.eq(tenant))
                .filter(crate::entities::followups::Column::VisitDate.lt(keep_from))
                .exec(&txn)
                .await?;
        }
        let purge = Purge {
            tenant: TenantId::from_uuid(tenant),
            basis: basis.as_str(),
            keep_from,
            visits,
            raw_events,
            monthly_patients,
            billing_reviews,
            device_uptime,
            device_alerts,
            failed_mail,
            dry_run,
        };
        let removed = purge.visits
            + purge.raw_events
            + purge.monthly_patients
            + purge.billing_reviews
            + purge.device_uptime
            + purge.device_alerts;
        if !dry_run && removed > 0 {
            let mut entry = AuditEntry::system(AuditAction::RetentionPurge, &month);
            entry.details = serde_json::json!({
                "basis": purge.basis,
                "keep_from": keep_from.to_string(),
                "ran_at": OffsetDateTime::now_utc().to_string(),
                "visits": purge.visits,
                "raw_events": purge.raw_events,
                "monthly_patients": purge.monthly_patients,
                "billing_reviews": purge.billing_reviews,
                "device_uptime": purge.device_uptime,
                "device_alerts": purge.device_alerts,
            });
            append(&txn, &tenant.to_string(), Some(tenant), &entry).await?;
        }
        txn.commit().await?;
        Ok(purge)
    }
}

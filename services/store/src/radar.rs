//! The expiry radar's reads and its memory (`onshi_domain::radar`): each clinic's warnings from what was
//! entered and what its agents report, which warnings were e-mailed (`radar_notices`, once per clinic,
//! item, date and stage) and which weeks' summaries went out (`weekly_summaries`, once per group and week).

use onshi_domain::radar::{self, AgentFacts, Warning};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DatabaseTransaction, EntityTrait};
use time::{Date, OffsetDateTime};

use crate::entities::{radar_notices, weekly_summaries};
use crate::webhooks::TenantsDue;
use crate::{AuditEntry, Clinic, Device, DeviceStatus, NewMail, Store, StoreError, TenantScope, TenantStore};

impl TenantStore<'_> {
    /// Every clinic of the tenant with its warnings as of `today` (JST), clinics without any included.
    pub async fn radar(&self, today: Date) -> Result<Vec<(Clinic, Vec<Warning>)>, StoreError> {
        Ok(radar_of(self.clinics().await?, &self.devices().await?, today))
    }

    /// Records that managers are being told `warning` about `clinic`; false when they were already (each
    /// goes out once). Audited and the e-mail `mails` writes queued in the claim's transaction.
    pub async fn claim_radar_notice(
        &self,
        clinic: &Clinic,
        warning: &Warning,
        audit: &AuditEntry,
        mails: impl FnOnce(&[crate::User]) -> Vec<NewMail> + Send,
    ) -> Result<bool, StoreError> {
        let txn = self.write().await?;
        let row = radar_notices::ActiveModel {
            tenant_id: Set(self.tenant_uuid()),
            clinic_id: Set(clinic.id.as_uuid()),
            key: Set(warning.key()),
            sent_at: Set(OffsetDateTime::now_utc()),
        };
        let conflict =
            OnConflict::columns([radar_notices::Column::ClinicId, radar_notices::Column::Key]).do_nothing().to_owned();
        let fresh = crate::error::inserted(
            radar_notices::Entity::insert(row).on_conflict(conflict).exec_without_returning(&txn).await,
        )?;
        self.finish_claim(txn, fresh, audit, mails).await
    }

    /// Whether the group's weekly summary for `week` went out (a cheap look before writing one).
    pub async fn weekly_summary_sent(&self, week: &str) -> Result<bool, StoreError> {
        use sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter};
        let txn = self.read().await?;
        let sent = weekly_summaries::Entity::find()
            .filter(weekly_summaries::Column::TenantId.eq(self.tenant_uuid()))
            .filter(weekly_summaries::Column::Week.eq(week))
            .count(&txn)
            .await?;
        txn.commit().await?;
        Ok(sent > 0)
    }

    /// Records that the group's weekly summary for `week` (`2026-W49`) is being sent; false when it was.
    /// Audited and the e-mail `mails` writes queued in the claim's transaction.
    pub async fn claim_weekly_summary(
        &self,
        week: &str,
        audit: &AuditEntry,
        mails: impl FnOnce(&[crate::User]) -> Vec<NewMail> + Send,
    ) -> Result<bool, StoreError> {
        let txn = self.write().await?;
        let row = weekly_summaries::ActiveModel {
            tenant_id: Set(self.tenant_uuid()),
            week: Set(week.to_owned()),
            sent_at: Set(OffsetDateTime::now_utc()),
        };
        let conflict = OnConflict::columns([weekly_summaries::Column::TenantId, weekly_summaries::Column::Week])
            .do_nothing()
            .to_owned();
        let fresh = crate::error::inserted(
            weekly_summaries::Entity::insert(row).on_conflict(conflict).exec_without_returning(&txn).await,
        )?;
        self.finish_claim(txn, fresh, audit, mails).await
    }

    async fn finish_claim(
        &self,
        txn: DatabaseTransaction,
        fresh: bool,
        audit: &AuditEntry,
        mails: impl FnOnce(&[crate::User]) -> Vec<NewMail> + Send,
    ) -> Result<bool, StoreError> {
        if fresh {
            self.append_in(&txn, audit).await?;
            self.queue_composed_in(&txn, mails).await?;
        }
        txn.commit().await?;
        Ok(fresh)
    }
}

/// Each clinic's warnings as of `today` (JST), from clinics and agents already read (a page that has them
/// need not read them again); revoked agents are left out, clinics without warnings included.
pub fn radar_of(clinics: Vec<Clinic>, devices: &[Device], today: Date) -> Vec<(Clinic, Vec<Warning>)> {
    clinics
        .into_iter()
        .map(|clinic| {
            let facts: Vec<AgentFacts<'_>> = devices
                .iter()
                .filter(|d| d.clinic == clinic.id && d.status == DeviceStatus::Active)
                .map(|d| AgentFacts {
                    name: &d.name,
                    version: d.last_heartbeat.as_ref().map(|h| h.agent_version.as_str()),
                    clock_skew_secs: d.last_heartbeat.as_ref().and_then(|h| h.clock_skew_secs),
                })
                .collect();
            let warnings = radar::warnings(
                clinic.terminal_cert_expires,
                clinic.terminal_os.as_deref(),
                &facts,
                radar::LATEST_AGENT,
                today,
            );
            (clinic, warnings)
        })
        .collect()
}

impl Store {
    /// Every group with a clinic. On PostgreSQL through a SECURITY DEFINER function that returns tenant
    /// ids only.
    pub async fn radar_tenants(&self) -> Result<Vec<TenantScope>, StoreError> {
        self.tenant_list(
            "SELECT onshi_radar_tenants AS tenant_id FROM onshi_radar_tenants()",
            "SELECT DISTINCT tenant_id FROM clinics",
            TenantsDue::Always,
        )
        .await
    }
}

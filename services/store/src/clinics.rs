//! Clinics of a tenant, and the [`ClinicScope`] that clinic-level reads and writes require.

use std::ops::Deref;

use onshi_domain::device_alert::DEFAULT_AFTER_MINUTES;
use onshi_domain::hours::OpeningHours;
use onshi_domain::{ClinicAccess, ClinicId, FacilityKind, MedicalInstitutionCode};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder,
};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::entities::clinics;
use crate::error::StoreError;
use crate::{TenantScope, TenantStore};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clinic {
    pub id: ClinicId,
    pub code: MedicalInstitutionCode,
    pub name: String,
    pub kind: FacilityKind,
    /// Planned start of オン資 operation, when the clinic is still introducing it.
    pub oqs_start: Option<Date>,
    /// Whether a result file carrying the code has arrived from one of the clinic's agents. Until then
    /// the code is only what the group typed (another group may have typed it too): 未確認.
    pub code_confirmed: bool,
    /// 診療時間 for alerts; `None` until the clinic sets its own (`OpeningHours::default()` applies).
    pub hours: Option<OpeningHours>,
    /// Minutes of opening time a fault lasts before the managers are told.
    pub alert_after_minutes: u16,
    /// The 資格確認端末's electronic certificate expiry, as entered.
    pub terminal_cert_expires: Option<Date>,
    /// The terminal's operating system (`onshi_domain::radar::OS_SUPPORT` code), as entered.
    pub terminal_os: Option<String>,
}

impl Clinic {
    /// The hours alerts go by: the clinic's own, or the usual ones until it sets them.
    pub fn opening_hours(&self) -> OpeningHours {
        self.hours.clone().unwrap_or_default()
    }
}

/// A clinic the caller may act on: one of this tenant's clinics, and one the caller's clinic access
/// includes. Only [`TenantStore::clinic_scope`] and [`TenantStore::clinic_scopes`] make one, and every
/// clinic-level read and write takes one, so a handler cannot reach a clinic it did not check. It reads as
/// the [`Clinic`] it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClinicScope {
    tenant: TenantScope,
    clinic: Clinic,
}

impl ClinicScope {
    pub fn tenant(&self) -> TenantScope {
        self.tenant
    }

    pub fn clinic(&self) -> &Clinic {
        &self.clinic
    }

    pub(crate) fn uuid(&self) -> Uuid {
        self.clinic.id.as_uuid()
    }
}

impl Deref for ClinicScope {
    type Target = Clinic;

    fn deref(&self) -> &Clinic {
        &self.clinic
    }
}

impl TenantStore<'_> {
    pub async fn create_clinic(&self, code: &MedicalInstitutionCode, name: &str) -> Result<ClinicScope, StoreError> {
        self.create_clinic_starting(code, name, None).await
    }

    /// Adds a clinic, with its planned start of オン資 operation when known (onboarding deadlines).
    pub async fn create_clinic_starting(
        &self,
        code: &MedicalInstitutionCode,
        name: &str,
        oqs_start: Option<Date>,
    ) -> Result<ClinicScope, StoreError> {
        let txn = self.write().await?;
        let exists = clinics::Entity::find()
            .filter(clinics::Column::TenantId.eq(self.tenant))
            .filter(clinics::Column::InstitutionCode.eq(code.as_str()))
            .count(&txn)
            .await?;
        if exists > 0 {
            return Err(StoreError::Conflict { what: "a clinic with this 医療機関コード" });
        }
        let id = ClinicId::new();
        let kind = code.facility_kind();
        clinics::ActiveModel {
            id: Set(id.as_uuid()),
            tenant_id: Set(self.tenant),
            institution_code: Set(code.as_str().to_owned()),
            name: Set(name.to_owned()),
            facility_kind: Set(kind.label().to_owned()),
            oqs_start_date: Set(oqs_start),
            created_at: Set(OffsetDateTime::now_utc()),
            code_confirmed_at: Set(None),
            opening_hours: Set(None),
            alert_after_minutes: Set(None),
            terminal_cert_expires: Set(None),
            terminal_os: Set(None),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        // Whoever may add a clinic may act on it.
        Ok(ClinicScope {
            tenant: self.scope(),
            clinic: Clinic {
                id,
                code: code.clone(),
                name: name.to_owned(),
                kind,
                oqs_start,
                code_confirmed: false,
                hours: None,
                alert_after_minutes: DEFAULT_AFTER_MINUTES,
                terminal_cert_expires: None,
                terminal_os: None,
            },
        })
    }

    pub async fn clinics(&self) -> Result<Vec<Clinic>, StoreError> {
        let txn = self.read().await?;
        let rows = clinics::Entity::find()
            .filter(clinics::Column::TenantId.eq(self.tenant))
            .order_by_asc(clinics::Column::InstitutionCode)
            .all(&txn)
            .await?;
        txn.commit().await?;
        rows.into_iter().map(clinic_from_row).collect()
    }

    /// A clinic of this tenant, whoever asks: for checks inside the store (a staff member's assigned
    /// clinics must exist).
    pub(crate) async fn clinic(&self, id: ClinicId) -> Result<Option<Clinic>, StoreError> {
        let txn = self.read().await?;
        let row = self.clinic_in(&txn, id).await?;
        txn.commit().await?;
        row.map(clinic_from_row).transpose()
    }

    /// The clinic as a scope, if it is this tenant's and `access` includes it; `None` otherwise (the
    /// caller answers 404 either way).
    pub async fn clinic_scope(&self, id: ClinicId, access: &ClinicAccess) -> Result<Option<ClinicScope>, StoreError> {
        if !access.includes(id) {
            return Ok(None);
        }
        let txn = self.read().await?;
        let row = self.clinic_in(&txn, id).await?;
        txn.commit().await?;
        let scope = self.scope();
        row.map(|r| clinic_from_row(r).map(|clinic| ClinicScope { tenant: scope, clinic })).transpose()
    }

    /// Every clinic of the tenant that `access` includes, as scopes, ordered by 医療機関コード.
    pub async fn clinic_scopes(&self, access: &ClinicAccess) -> Result<Vec<ClinicScope>, StoreError> {
        let scope = self.scope();
        Ok(self
            .clinics()
            .await?
            .into_iter()
            .filter(|c| access.includes(c.id))
            .map(|clinic| ClinicScope { tenant: scope, clinic })
            .collect())
    }

    pub(crate) async fn clinic_in(
        &self,
        txn: &DatabaseTransaction,
        id: ClinicId,
    ) -> Result<Option<clinics::Model>, StoreError> {
        Ok(clinics::Entity::find_by_id(id.as_uuid()).filter(clinics::Column::TenantId.eq(self.tenant)).one(txn).await?)
    }

    /// Sets or clears a clinic's planned start of オン資 operation.
    pub async fn set_clinic_start(&self, clinic: &ClinicScope, start: Option<Date>) -> Result<(), StoreError> {
        let id = clinic.id;
        let txn = self.write().await?;
        let updated = clinics::Entity::update_many()
            .col_expr(clinics::Column::OqsStartDate, Expr::value(start))
            .filter(clinics::Column::TenantId.eq(self.tenant))
            .filter(clinics::Column::Id.eq(id.as_uuid()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound { what: "clinic" });
        }
        Ok(())
    }
}

impl TenantStore<'_> {
    /// Sets a clinic's opening hours and alert wait, and records who did it, in one transaction.
    pub async fn set_clinic_hours(
        &self,
        clinic: &ClinicScope,
        hours: &OpeningHours,
        alert_after_minutes: u16,
        audit: &crate::AuditEntry,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_value(hours).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let update = clinics::Entity::update_many()
            .col_expr(clinics::Column::OpeningHours, Expr::value(json))
            .col_expr(clinics::Column::AlertAfterMinutes, Expr::value(i32::from(alert_after_minutes)));
        self.update_clinic(clinic, update, audit).await
    }

    /// Records the 資格確認端末's certificate expiry and operating system, and who did it, in one transaction.
    pub async fn set_clinic_terminal(
        &self,
        clinic: &ClinicScope,
        cert_expires: Option<Date>,
        os: Option<&str>,
        audit: &crate::AuditEntry,
    ) -> Result<(), StoreError> {
        let update = clinics::Entity::update_many()
            .col_expr(clinics::Column::TerminalCertExpires, Expr::value(cert_expires))
            .col_expr(clinics::Column::TerminalOs, Expr::value(os.map(str::to_owned)));
        self.update_clinic(clinic, update, audit).await
    }

    /// Applies `update` to the clinic's row and appends `audit`, in one transaction.
    async fn update_clinic(
        &self,
        clinic: &ClinicScope,
        update: sea_orm::UpdateMany<clinics::Entity>,
        audit: &crate::AuditEntry,
    ) -> Result<(), StoreError> {
        let txn = self.write().await?;
        let updated = update
            .filter(clinics::Column::TenantId.eq(self.tenant))
            .filter(clinics::Column::Id.eq(clinic.uuid()))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(StoreError::NotFound { what: "clinic" });
        }
        self.append_in(&txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Every clinic of the tenant, read in `txn` (for work that decides per clinic inside a transaction).
    pub(crate) async fn clinics_in(&self, txn: &DatabaseTransaction) -> Result<Vec<Clinic>, StoreError> {
        clinics::Entity::find()
            .filter(clinics::Column::TenantId.eq(self.tenant))
            .all(txn)
            .await?
            .into_iter()
            .map(clinic_from_row)
            .collect()
    }
}

pub(crate) fn clinic_from_row(row: clinics::Model) -> Result<Clinic, StoreError> {
    let code = MedicalInstitutionCode::parse(&row.institution_code).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Clinic {
        id: ClinicId::from_uuid(row.id),
        kind: code.facility_kind(),
        code,
        name: row.name,
        oqs_start: row.oqs_start_date,
        code_confirmed: row.code_confirmed_at.is_some(),
        hours: row
            .opening_hours
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("opening hours: {e}")))?,
        alert_after_minutes: row
            .alert_after_minutes
            .and_then(|m| u16::try_from(m).ok())
            .unwrap_or(DEFAULT_AFTER_MINUTES),
        terminal_cert_expires: row.terminal_cert_expires,
        terminal_os: row.terminal_os,
    })
}

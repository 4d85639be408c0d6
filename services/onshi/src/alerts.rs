//! The usage watch: after a batch changes a tenant's visits, at most once per tenant every ten minutes,
//! compare each clinic's month-to-date マイナ保険証利用率 (the estimate) with the level the rules require
//! for the months this one decides (N+3..N+5). A clinic projected below it gets one e-mail per month to
//! the group's owners and managers (the dashboard shows the same warning all along), queued in the
//! e-mail outbox (`crate::mail_sender`) in the transaction that claims the warning.

use std::time::Duration;

use onshi_cache::{Cache, CacheBackend};
use std::sync::Arc;

use onshi_domain::{AuditAction, ClinicAccess};
use onshi_rules::{MonthCount, RuleSet, YearMonth};
use onshi_store::{AuditEntry, NewMail, Store, TenantScope};
use onshi_worker::AfterApply;

/// Below this many patients in the month the estimate says too little to warn anyone.
const MIN_PATIENTS: u64 = 20;
const EVERY: Duration = Duration::from_secs(600);

pub struct UsageWatch {
    pub store: Store,
    pub cache: Cache,
    pub public_url: String,
    rules: Arc<RuleSet>,
}

impl UsageWatch {
    pub fn new(store: Store, cache: Cache, public_url: String, rules: Arc<RuleSet>) -> Self {
        Self { store, cache, public_url, rules }
    }

    async fn check(&self, scope: TenantScope) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let tenant = scope.tenant_id();
        if self.cache.incr_window(&format!("usage-watch:{tenant}"), EVERY).await? > 1 {
            return Ok(());
        }
        let month = YearMonth::current();
        let store = self.store.tenant(scope);
        // The watch acts for the whole group, like its managers.
        let clinics = store.clinic_scopes(&ClinicAccess::All).await?;
        for usage in store.monthly_usage(month).await?.into_iter().filter(|u| u.patients >= MIN_PATIENTS) {
            let Some(clinic) = clinics.iter().find(|c| c.id == usage.clinic) else { continue };
            let counts = MonthCount { patients: usage.patients, myna: usage.myna_patients };
            let outlook = self.rules.forecast(clinic.kind, month, counts.rate());
            let (Some(rate), Some(min), Some(from), Some(to)) =
                (outlook.rate, outlook.required, outlook.decides.first(), outlook.decides.last())
            else {
                continue;
            };
            if !outlook.below() {
                continue;
            }
            let entry = AuditEntry::system(AuditAction::UsageAlert, &format!("clinic:{}", clinic.id))
                .details(serde_json::json!({ "month": month.to_string(), "rate": rate, "required": min }));
            let announced = serde_json::json!({
                "clinic_id": clinic.id,
                "month": month.to_string(),
                "rate": rate,
                "required": min,
                "decides_from": from.to_string(),
                "decides_to": to.to_string(),
            });
            let body = format!(
                "{name}（医療機関コード {code}）の{month}のマイナ保険証利用率（推計）は {rate:.1}% です。\n\
                 この月は {from}〜{to} の算定に使われ、その基準は {min:.0}% です。\n\
                 ダッシュボード: {url}/dashboard/clinics/{id}\n\n\
                 The estimated マイナ保険証 usage of {name} for {month} is {rate:.1}%, below the {min:.0}% that the\n\
                 claims of {from} to {to} require.\n",
                name = clinic.name,
                code = clinic.code,
                rate = rate * 100.0,
                from = from,
                to = to,
                min = min * 100.0,
                url = self.public_url.trim_end_matches('/'),
                id = clinic.id,
            );
            let subject = format!("【Onshi Cloud】マイナ保険証利用率の注意: {}", clinic.name);
            let mails = |users: &[onshi_store::User]| {
                let told = users.iter().filter(|u| u.is_told_about(Some(clinic.id))).map(|u| u.email.as_str());
                NewMail::to_each("usage_alert", told, &subject, &body)
            };
            store.claim_usage_alert(clinic, month, &entry, &announced, mails).await?;
        }
        Ok(())
    }
}

impl AfterApply for UsageWatch {
    fn after_apply(&self, scope: TenantScope) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if let Err(e) = self.check(scope).await {
                tracing::warn!(error = %onshi_telemetry::Chain(e.as_ref()), tenant = %scope.tenant_id(), "usage watch failed");
            }
        })
    }
}

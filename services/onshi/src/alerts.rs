//! The usage watch: after a batch changes a tenant's visits, at most once per tenant every ten minutes,
//! compare each clinic's month-to-date マイナ保険証利用率 (the estimate) with the level the rules require
//! for the months this one decides (N+3..N+5). A clinic projected below it gets one e-mail per month to
//! the group's owners and managers (the dashboard shows the same warning all along).

use std::time::Duration;

use onshi_api::Mailer;
use onshi_cache::{Cache, CacheBackend};
use onshi_domain::{Role, TenantId, jst};
use onshi_rules::{RuleSet, YearMonth};
use onshi_store::{AuditEntry, AuditResult, Store, TenantScope, UserStatus};
use onshi_worker::AfterApply;
use time::OffsetDateTime;

/// Below this many patients in the month the estimate says too little to warn anyone.
const MIN_PATIENTS: u64 = 20;
const EVERY: Duration = Duration::from_secs(600);

pub struct UsageWatch {
    pub store: Store,
    pub cache: Cache,
    pub mailer: Mailer,
    pub public_url: String,
    rules: Option<RuleSet>,
}

impl UsageWatch {
    pub fn new(store: Store, cache: Cache, mailer: Mailer, public_url: String) -> Self {
        Self { store, cache, mailer, public_url, rules: RuleSet::builtin().ok() }
    }

    async fn check(&self, tenant: TenantId) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.cache.incr_window(&format!("usage-watch:{tenant}"), EVERY).await? > 1 {
            return Ok(());
        }
        let Some(rules) = &self.rules else { return Ok(()) };
        let month = YearMonth::of(jst::date_of(OffsetDateTime::now_utc()));
        let decides = month.plus(3);
        let first = decides.first_day();
        let store = self.store.tenant(TenantScope::verified(tenant));
        let clinics = store.clinics().await?;
        let mut recipients: Option<Vec<String>> = None;
        for usage in store.monthly_usage(&month.to_string()).await?.into_iter().filter(|u| u.patients >= MIN_PATIENTS) {
            let Some(clinic) = clinics.iter().find(|c| c.id == usage.clinic) else { continue };
            let Some(min) = rules.usage_tiers(clinic.kind, first).last().map(|t| t.min) else { continue };
            let rate = usage.myna_patients as f64 / usage.patients as f64;
            if rate + 1e-9 >= min {
                continue;
            }
            let entry =
                AuditEntry::new(None, "system", "usage.alert", &format!("clinic:{}", clinic.id), AuditResult::Success)
                    .details(serde_json::json!({ "month": month.to_string(), "rate": rate, "required": min }));
            if !store.claim_usage_alert(clinic.id, &month.to_string(), &entry).await? {
                continue;
            }
            if recipients.is_none() {
                recipients = Some(
                    store
                        .users()
                        .await?
                        .into_iter()
                        .filter(|u| u.status == UserStatus::Active && matches!(u.role, Role::Owner | Role::Manager))
                        .map(|u| u.email)
                        .collect(),
                );
            }
            let body = format!(
                "{name}（医療機関コード {code}）の{month}のマイナ保険証利用率（推計）は {rate:.1}% です。\n\
                 この月は {from}〜{to} の算定に使われ、その基準は {min:.0}% です。\n\
                 ダッシュボード: {url}/dashboard/clinics/{id}\n\n\
                 The estimated マイナ保険証 usage of {name} for {month} is {rate:.1}%, below the {min:.0}% that the\n\
                 claims of {from} to {to} require.\n",
                name = clinic.name,
                code = clinic.code,
                rate = rate * 100.0,
                from = month.plus(3),
                to = month.plus(5),
                min = min * 100.0,
                url = self.public_url.trim_end_matches('/'),
                id = clinic.id,
            );
            for to in recipients.iter().flatten() {
                let subject = format!("【Onshi Cloud】マイナ保険証利用率の注意: {}", clinic.name);
                if let Err(e) = self.mailer.send(to, &subject, body.clone()).await {
                    tracing::warn!(error = %e, clinic = %clinic.id, "usage alert not sent");
                }
            }
        }
        Ok(())
    }
}

impl AfterApply for UsageWatch {
    fn after_apply(&self, tenant: TenantId) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if let Err(e) = self.check(tenant).await {
                tracing::warn!(error = %e, %tenant, "usage watch failed");
            }
        })
    }
}

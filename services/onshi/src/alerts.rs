//! The usage watch: after a batch changes a tenant's visits, at most once per tenant every ten minutes,
//! compare each clinic's month-to-date マイナ保険証利用率 (the estimate, corrected by how the clinic's
//! official figures compared with it, as the dashboards do) with the level the rules require for the
//! months this one decides (N+3..N+5). A clinic projected below it gets one e-mail per month to
//! the group's owners and managers (the dashboard shows the same warning all along), queued in the
//! e-mail outbox (`crate::mail_sender`) in the transaction that claims the warning.

use std::time::Duration;

use onshi_cache::{Cache, CacheBackend};
use std::sync::Arc;

use std::collections::{BTreeMap, HashMap};

use onshi_domain::{AuditAction, ClinicAccess, ClinicId};
use onshi_rules::figures::calibrate_official;
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
        // The year the calibration is learned from: one read of the estimates, one of the official figures.
        let year: Vec<YearMonth> = month.plus(-11).through(month).collect();
        let mut estimates: HashMap<ClinicId, BTreeMap<YearMonth, MonthCount>> = HashMap::new();
        for (m, u) in store.usage_by_month(&year).await? {
            estimates
                .entry(u.clinic)
                .or_default()
                .insert(m, MonthCount { patients: u.patients, myna: u.myna_patients });
        }
        let official = store.official_rates(&year).await?;
        let none = BTreeMap::new();
        for (clinic, history) in &estimates {
            let Some(counts) = history.get(&month).filter(|c| c.patients >= MIN_PATIENTS) else { continue };
            let Some(clinic) = clinics.iter().find(|c| c.id == *clinic) else { continue };
            let Some(estimate) = counts.rate() else { continue };
            let calibration = calibrate_official(history, official.get(&clinic.id).unwrap_or(&none), month);
            let likely = calibration.as_ref().map_or(estimate, |c| c.apply(estimate));
            let outlook = self.rules.forecast(clinic.kind, month, Some(likely));
            let (Some(rate), Some(min), Some(from), Some(to)) =
                (outlook.rate, outlook.required, outlook.decides.first(), outlook.decides.last())
            else {
                continue;
            };
            if !outlook.below() {
                continue;
            }
            let entry = AuditEntry::system(AuditAction::UsageAlert, &format!("clinic:{}", clinic.id)).details(
                serde_json::json!({ "month": month.to_string(), "rate": rate, "estimate": estimate, "required": min }),
            );
            let announced = serde_json::json!({
                "clinic_id": clinic.id,
                "month": month.to_string(),
                "rate": rate,
                "estimate": estimate,
                "required": min,
                "decides_from": from.to_string(),
                "decides_to": to.to_string(),
            });
            // What the figure is, in one sentence each: the corrected outlook with the estimate it came
            // from, or the estimate as it is and how to have it corrected.
            let (ja_figure, en_figure) = if calibration.is_some() {
                (
                    format!(
                        "{:.1}% の見込みです（当日推計 {:.1}% を、これまでの公式値との比で補正）",
                        rate * 100.0,
                        estimate * 100.0
                    ),
                    format!(
                        "likely {:.1}% (the same-day estimate of {:.1}%, corrected by how earlier official figures compared with it)",
                        rate * 100.0,
                        estimate * 100.0
                    ),
                )
            } else {
                (
                    format!("{:.1}%（当日推計。公式値を入力すると、その比で補正します）です", rate * 100.0),
                    format!("{:.1}% (the same-day estimate; entering official figures corrects it)", rate * 100.0),
                )
            };
            let body = format!(
                "{name}（医療機関コード {code}）の{month}のマイナ保険証利用率は {ja_figure}。\n\
                 この月は {from}〜{to} の算定に使われ、その基準は {min:.0}% です。\n\
                 ダッシュボード: {url}/dashboard/clinics/{id}\n\n\
                 The マイナ保険証 usage of {name} for {month} is {en_figure},\n\
                 below the {min:.0}% that the claims of {from} to {to} require.\n",
                name = clinic.name,
                code = clinic.code,
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

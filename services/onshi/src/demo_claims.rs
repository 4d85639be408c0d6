//! The demo's レセ電: once a year of receptions is in, each clinic "submits" its claims for the last three
//! complete months (built from the stored visits, as a レセコン would have billed them, with a few addons
//! forgotten or claimed by mistake so the review has something to find, and a quarter more receipts for
//! patients seen without a 資格確認) and the official 利用率 notified for the two older months. The billing
//! review then shows 初診/再診 from the claims, カルテ番号 and differences, and the clinic page its three
//! figures.

use std::collections::BTreeMap;

use onshi_domain::AuditAction;
use onshi_domain::{
    ClaimReceipt, ClaimVisit, ClaimedCode, ClaimedVisitKind, ClaimsFile, Day, EventBatch, EventPayload, PatientRef,
    Payer, TenantId, YearMonth,
};
use onshi_store::{ClinicScope, OfficialFigure, Store, TenantScope};
use rand::Rng;
use time::OffsetDateTime;

/// The share of known patients whose first visit of a month is for a new complaint, and so a 初診.
const NEW_EPISODE: f64 = 0.12;

/// The 初診 and 再診 codes of 電子的診療情報連携体制整備加算1 (unverified codes), which the demo's レセコン
/// confuses now and then.
const FIRST_ADDON: &str = "111704070";
const REVISIT_ADDON: &str = "112709570";

/// Builds one month's claims from the stored visits of `clinic`.
async fn month_claims(
    store: &Store,
    tenant: TenantId,
    clinic: &ClinicScope,
    service: YearMonth,
    rng: &mut impl Rng,
) -> Result<Option<ClaimsFile>, Box<dyn std::error::Error + Send + Sync>> {
    let scoped = store.tenant(TenantScope::operator(tenant));
    let key = scoped.chart_key().await?.unwrap_or_default();
    let visits = scoped.billing_visits(clinic, service.first_day(), service.last_day()).await?;
    let mut by_patient: BTreeMap<String, Vec<&onshi_store::BillingVisit>> = BTreeMap::new();
    for v in &visits {
        by_patient.entry(v.patient.clone()).or_default().push(v);
    }
    if by_patient.is_empty() {
        return Ok(None);
    }
    // What the clinic's レセコン would claim: the addons the rules allow it, as the review decides them (a
    // clinic below the 利用率 level claims none, one without 電子処方箋 the lower tier). Every limit of the
    // 2026-06 rules is within the month, so the month's visits are enough.
    // 初診 or 再診, as the clinic decided it: a patient's first visit in our data, and now and then a known
    // patient's first visit of the month for a new complaint (a new episode is a 初診 again), so a month
    // of familiar patients still has its 初診.
    let mut seen_this_month = std::collections::HashSet::new();
    let first: std::collections::HashSet<String> = visits
        .iter()
        .filter(|v| {
            let opens_month = seen_this_month.insert(v.patient.clone());
            v.first_seen || (opens_month && rng.random_bool(NEW_EPISODE))
        })
        .map(|v| v.id.to_string())
        .collect();
    let rules = onshi_rules::RuleSet::builtin()?;
    let settings = scoped.billing_settings(clinic).await?;
    let input = onshi_rules::EvalInput {
        clinics: vec![onshi_rules::Clinic::new(clinic.id.to_string(), clinic.kind, settings)],
        visits: visits
            .iter()
            .map(|v| onshi_rules::Visit {
                id: v.id.to_string(),
                clinic: 0,
                patient: v.patient.clone(),
                date: v.date,
                kind: if first.contains(&v.id.to_string()) {
                    onshi_rules::VisitKind::First
                } else {
                    onshi_rules::VisitKind::Revisit
                },
                myna: v.myna,
                info_obtained: v.info_obtained,
            })
            .collect(),
    };
    let allowed: std::collections::HashMap<String, Vec<String>> = onshi_rules::evaluate(&rules, &input)
        .into_iter()
        .map(|d| (d.visit, d.addons.into_iter().filter_map(|a| a.code).collect()))
        .collect();
    let mut receipts = Vec::new();
    let mut chart = 10_000u32;
    let mut push = |patient: Option<PatientRef>, days: Vec<ClaimVisit>, addons: Vec<ClaimedCode>, chart: u32| {
        let points = 75 * days.len() as u64 + addons.iter().map(|a| a.dates.len() as u64).sum::<u64>() + 30;
        receipts.push(ClaimReceipt {
            receipt_no: receipts.len() as u32 + 1,
            service_month: service,
            receipt_type: "1112".into(),
            outpatient: true,
            patient,
            online_confirmed: true,
            chart: onshi_domain::sealed::seal_chart_number(&key, &format!("{chart:06}")),
            points,
            visits: days,
            addons,
        });
    };
    for (pseudonym, seen) in &by_patient {
        chart += 1;
        let mut days: BTreeMap<time::Date, (bool, Vec<String>)> = BTreeMap::new();
        for v in seen {
            let codes = allowed.get(&v.id.to_string()).cloned().unwrap_or_default();
            days.entry(v.date).or_insert((first.contains(&v.id.to_string()), codes));
        }
        let mut addons: BTreeMap<String, Vec<Day>> = BTreeMap::new();
        let days: Vec<ClaimVisit> = days
            .into_iter()
            .map(|(date, (first, codes))| {
                // The レセコン's slips: now and then an addon forgotten, rarely a 再診 one claimed as the 初診
                // one, so the review has differences to find.
                for code in codes {
                    let code = match code.as_str() {
                        _ if rng.random_bool(0.03) => continue,
                        REVISIT_ADDON if rng.random_bool(0.02) => FIRST_ADDON.to_owned(),
                        _ => code,
                    };
                    addons.entry(code).or_default().push(Day(date));
                }
                ClaimVisit {
                    date: Day(date),
                    kind: if first { ClaimedVisitKind::First } else { ClaimedVisitKind::Revisit },
                    codes: vec![if first { "111000110" } else { "112007410" }.into()],
                }
            })
            .collect();
        let addons = addons.into_iter().map(|(code, dates)| ClaimedCode { code, dates }).collect();
        push(PatientRef::parse(pseudonym).ok(), days, addons, chart);
    }
    // Patients seen without a 資格確認 this month (a card checked last month): receipts the terminal never saw.
    let unseen = by_patient.len() / 4;
    for i in 0..unseen {
        chart += 1;
        let day =
            service.first_day() + time::Duration::days(i64::from(rng.random_range(0..service.last_day().day() - 1)));
        let visit = ClaimVisit { date: Day(day), kind: ClaimedVisitKind::Revisit, codes: vec!["112007410".into()] };
        let pseudonym = PatientRef::pseudonymize(b"demo-unseen", "06139999", "", &format!("{i:08}"), "00");
        push(Some(pseudonym), vec![visit], Vec::new(), chart);
    }
    let total_points = receipts.iter().map(|r| r.points).sum();
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("demo:{}:{service}", clinic.code).as_bytes());
    Ok(Some(ClaimsFile {
        institution_code: clinic.code.clone(),
        claim_month: service.plus(1),
        payer: Payer::ShiharaiKikin,
        volume: 1,
        file_sha256: hex::encode(digest),
        total_points,
        receipts,
    }))
}

/// When 支払基金 notifies a month's official figure in the demo: about six weeks after the month.
fn notified_on(month: YearMonth) -> time::Date {
    month.plus(2).first_day() + time::Duration::days(13)
}

/// Posts the last three complete months' claims as the clinic's agent would, then enters the official
/// figures for the two older months that have been notified by today, close to the claims-based
/// figure as the real ones are.
pub async fn post(
    store: &Store,
    tenant: TenantId,
    clinic: &ClinicScope,
    base_url: &str,
    token: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = reqwest::Client::new();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    let today = onshi_domain::jst::date_of(OffsetDateTime::now_utc());
    let this = YearMonth::of(today);
    let mut official = Vec::new();
    // The history is applied by the worker in the background: wait until the months stop changing.
    let scoped = store.tenant(TenantScope::operator(tenant));
    let mut last = 0;
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let n = scoped.billing_visits(clinic, this.plus(-3).first_day(), this.plus(-1).last_day()).await?.len();
        if n > 0 && n == last {
            break;
        }
        last = n;
    }
    for back in (1..=3).rev() {
        let service = this.plus(-back);
        let Some(claims) = month_claims(store, tenant, clinic, service, &mut rng).await? else { continue };
        let event = onshi_domain::AgentEvent {
            id: onshi_domain::EventId::new(),
            occurred_at: claims.claim_month.first_day().midnight().assume_offset(onshi_domain::jst::JST),
            payload: EventPayload::Claims(claims),
        };
        let status = client
            .post(format!("{base_url}/api/v1/claims"))
            .bearer_auth(token)
            .json(&EventBatch { events: vec![event] })
            .send()
            .await?
            .status();
        if !status.is_success() {
            return Err(format!("demo claims refused: HTTP {status}").into());
        }
        // Only a figure already notified: early in a month, the month before last has none yet.
        if back >= 2 && notified_on(service) <= today {
            official.push(service);
        }
    }
    // Wait for the worker, then take the official figure from the claims as 支払基金 would count them.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let usage = scoped.claims_usage(clinic, &official).await?;
    let mut entries = Vec::new();
    for (month, u) in usage {
        if u.outpatient_receipts == 0 {
            continue;
        }
        let users = (u.myna_receipts as f64 * rng.random_range(0.96..1.04)).round() as i32;
        let receipts = u.outpatient_receipts as i32;
        let notified = notified_on(month);
        let figure = OfficialFigure {
            uses: Some(users + users / 5),
            users: Some(users),
            receipts: Some(receipts),
            rate: f64::from(users) / f64::from(receipts.max(1)),
            notified_on: Some(notified),
        };
        entries.push((clinic, month, figure));
    }
    let audit = onshi_store::AuditEntry::system(AuditAction::DemoOfficialUsage, "-");
    scoped.set_official_usage(&entries, None, &audit).await?;
    tracing::info!(clinic = %clinic.code, "demo claims and official figures posted");
    Ok(())
}

//! One clinic-month as the pages and exports see it: recomputed by the engine while open; once closed,
//! exactly what it was closed with (lines, totals, the rules' legend and the rule-data version), plus the
//! visits that arrived after closing, listed apart and never folded in.

use std::collections::{BTreeSet, HashMap};

use onshi_rules::billing::{Correction, Fact, Line, ReviewStatus, Totals, review};
use onshi_rules::{ClinicSettings, RuleSet, UsageVerdict, VisitKind, YearMonth};
use onshi_store::{ClinicScope, TenantStore};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ApiError;

/// Months before the reviewed one that frequency limits (3月に1回) look back on.
const LOOKBACK_MONTHS: i32 = 3;

pub(super) fn parse_month(s: &str) -> Result<YearMonth, ApiError> {
    YearMonth::parse(s).filter(|m| m.first_day() >= onshi_rules::EARLIEST).ok_or(ApiError::NotFound)
}

/// When each visit read was first confirmed, by visit id (for reception order and the times shown).
pub(super) type FirstAt = HashMap<String, OffsetDateTime>;

/// The key a clerk finds a patient by in the レセコン: the clinic's own 患者番号 once the レセ電 import
/// provides it; until then the first eight hex digits of the pseudonym, written `1A2B-3C4D`. Short enough
/// to read out, and only ever shown beside the visit's time, so a rare collision misleads nobody.
fn patient_key(pseudonym: &str) -> String {
    match pseudonym {
        p if p.len() >= 8 && p.is_ascii() => format!("{}-{}", &p[..4], &p[4..8]).to_uppercase(),
        _ => "—".to_owned(),
    }
}

/// The clinic's imported claims over the reviewed month and its look-back: patient-days and the
/// (patient, month) pairs that have a receipt.
struct Claims {
    days: HashMap<(String, time::Date), onshi_store::ClaimDay>,
    /// (patient, 診療年月) with a receipt in the claims.
    receipts: std::collections::HashSet<(String, YearMonth)>,
}

impl Claims {
    async fn load(
        store: &TenantStore<'_>,
        clinic: &ClinicScope,
        from: YearMonth,
        to: YearMonth,
    ) -> Result<Self, ApiError> {
        let receipts = store.claimed_patient_months(clinic, from, to).await?;
        if receipts.is_empty() {
            return Ok(Self { days: HashMap::new(), receipts });
        }
        let mut days = HashMap::new();
        for d in store.claim_days(clinic, from.first_day(), to.last_day()).await? {
            if let Some(p) = d.patient.clone() {
                days.insert((p, d.date), d);
            }
        }
        Ok(Self { days, receipts })
    }
}

/// Opens the sealed カルテ番号 among the lines' patient keys, for billing staff's page and exports.
async fn open_charts(store: &TenantStore<'_>, lines: &mut [Line]) -> Result<(), ApiError> {
    if !lines.iter().any(|l| onshi_domain::sealed::is_sealed_shape(&l.patient_key)) {
        return Ok(());
    }
    let key = store.chart_key().await?.unwrap_or_default();
    for l in lines.iter_mut().filter(|l| onshi_domain::sealed::is_sealed_shape(&l.patient_key)) {
        l.patient_key = onshi_domain::sealed::open_chart_number(&key, &l.patient_key)
            .unwrap_or_else(|| "（カルテ番号を開けません）".to_owned());
    }
    Ok(())
}

/// A rule as the month's legend shows it, once, instead of on every visit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LegendEntry {
    pub id: String,
    pub name: String,
    pub points: u32,
    pub frequency: String,
    /// The frequency in English; empty in legends of months closed before it was kept (`frequency_in`).
    #[serde(default)]
    pub frequency_en: String,
    pub code: Option<String>,
    pub verified: bool,
    pub note: String,
    /// The note in English; empty in legends of months closed before it was kept (`note_in`).
    #[serde(default)]
    pub note_en: String,
    pub source: String,
}

/// The rules the month's decisions cite, in the rules file's order.
fn legend(rules: &RuleSet, lines: &[Line]) -> Vec<LegendEntry> {
    let cited: BTreeSet<&str> = lines.iter().flat_map(|l| &l.cited).map(String::as_str).collect();
    rules
        .rules
        .iter()
        .filter(|r| cited.contains(r.id.as_str()))
        .map(|r| LegendEntry {
            id: r.id.clone(),
            name: r.name.clone(),
            points: r.points,
            frequency: r.frequency_label(),
            frequency_en: r.frequency_label_en(),
            code: r.code.clone(),
            verified: r.verified && r.code_verified,
            note: r.note.clone().unwrap_or_default(),
            note_en: r.note_en.clone().unwrap_or_default(),
            source: r.source.clone(),
        })
        .collect()
}

impl LegendEntry {
    pub fn frequency_in(&self, en: bool) -> &str {
        onshi_rules::Text::pick(&self.frequency, &self.frequency_en, en)
    }

    pub fn note_in(&self, en: bool) -> &str {
        onshi_rules::Text::pick(&self.note, &self.note_en, en)
    }
}

/// Whether `month` is over in Japan, so that it may be closed: a month still under way keeps receiving
/// visits, and closed now it would be closed without them.
pub(super) fn month_over(month: YearMonth) -> bool {
    month < YearMonth::of(onshi_domain::jst::date_of(OffsetDateTime::now_utc()))
}

/// The engine over the month and its look-back, with the clerks' corrections applied; with the visits'
/// first confirmation times and the clinic's billing settings it was judged with.
pub(super) async fn month_review(
    rules: &RuleSet,
    store: &TenantStore<'_>,
    clinic: &ClinicScope,
    month: YearMonth,
) -> Result<(Vec<Line>, Totals, FirstAt, ClinicSettings), ApiError> {
    let settings = store.billing_settings(clinic).await?;
    let engine_clinic = onshi_rules::Clinic::new(clinic.id.to_string(), clinic.kind, settings.clone());
    let start = month.plus(-LOOKBACK_MONTHS);
    let visits = store.billing_visits(clinic, start.first_day(), month.last_day()).await?;
    let claims = Claims::load(store, clinic, start, month).await?;
    let facts: Vec<Fact> = visits
        .iter()
        .map(|v| {
            let day = claims.days.get(&(v.patient.clone(), v.date));
            Fact {
                id: v.id.to_string(),
                patient: v.patient.clone(),
                // The clinic's own カルテ番号 once its レセ電 is imported (kept sealed, so a closed month's
                // snapshot holds no number in clear; `month_state` opens it for the page), else the short
                // pseudonym.
                patient_key: day.and_then(|d| d.chart_sealed.clone()).unwrap_or_else(|| patient_key(&v.patient)),
                date: v.date,
                first_seen: v.first_seen,
                // From the clinic's レセ電 where it covers the day; otherwise only a clerk settles it.
                known_kind: day.and_then(|d| d.kind).map(VisitKind::from),
                myna: v.myna,
                info_obtained: v.info_obtained,
                // Compared only when the patient's receipt for the month is in the claims: the other payer's
                // file not imported yet or a pseudonym that did not match is "not in the claims", not a
                // 算定漏れ.
                claimed: claims
                    .receipts
                    .contains(&(v.patient.clone(), YearMonth::of(v.date)))
                    .then(|| day.map(|d| d.addons.clone()).unwrap_or_default()),
            }
        })
        .collect();
    let months: Vec<YearMonth> = start.through(month).collect();
    let corrections: HashMap<String, Correction> = store
        .billing_reviews(clinic, &months)
        .await?
        .into_iter()
        .map(|r| {
            let correction = Correction {
                status: match r.status.as_str() {
                    "adjusted" => ReviewStatus::Adjusted,
                    "settled" => ReviewStatus::Settled,
                    _ => ReviewStatus::Approved,
                },
                kind: r.kind.as_deref().and_then(VisitKind::from_label),
                info_obtained: r.info_obtained,
                exclude: r.exclude,
                reason: r.reason,
            };
            (r.visit.to_string(), correction)
        })
        .collect();
    // Times are shown for the reviewed month's visits only, not the look-back's.
    let first_at = visits.iter().filter(|v| month.contains(v.date)).map(|v| (v.id.to_string(), v.first_at)).collect();
    let (lines, totals) = review(rules, &engine_clinic, &facts, &corrections, month).map_err(|e| {
        ApiError::InvalidRequest(onshi_domain::FieldError::new(
            e.field.clone(),
            format!("{}: {}", e.subject, e.message),
        ))
    })?;
    Ok((lines, totals, first_at, settings))
}

/// A closed month as it was closed.
#[derive(Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub lines: Vec<Line>,
    pub totals: Totals,
    #[serde(default)]
    pub legend: Vec<LegendEntry>,
    /// The rule data's SHA-256 when it was closed.
    #[serde(default)]
    pub rules_version: String,
}

impl Snapshot {
    pub fn of(rules: &RuleSet, lines: Vec<Line>, totals: Totals) -> Self {
        Self { legend: legend(rules, &lines), rules_version: rules.version.clone(), lines, totals }
    }
}

pub(super) struct MonthState {
    /// In reception order: date, then the time of the visit's first confirmation.
    pub lines: Vec<Line>,
    pub totals: Totals,
    pub legend: Vec<LegendEntry>,
    pub closed: Option<onshi_store::ClosedMonth>,
    /// Visit ids of the month not in the closed snapshot.
    pub late: Vec<String>,
    pub first_at: FirstAt,
    /// How the claims stand against the 利用率 their addons need (`onshi_rules::usage_verdicts`): an open
    /// month only, for a closed one shows what it froze, not a check against today's settings.
    pub usage: Vec<UsageVerdict>,
    /// The billing settings an open month was judged with (a closed month's page reads today's).
    pub settings: Option<ClinicSettings>,
}

pub(super) async fn month_state(
    rules: &RuleSet,
    store: &TenantStore<'_>,
    clinic: &ClinicScope,
    month: YearMonth,
) -> Result<MonthState, ApiError> {
    let closed = store.billing_month_closed(clinic, month).await?;
    let (snapshot, first_at, late, settings) = match closed.as_ref().and_then(|c| c.snapshot.as_deref()) {
        Some(snapshot) => {
            let snapshot: Snapshot = serde_json::from_str(snapshot).map_err(ApiError::internal)?;
            let kept: std::collections::HashSet<&str> = snapshot.lines.iter().map(|l| l.id.as_str()).collect();
            let (mut first_at, mut late) = (FirstAt::new(), Vec::new());
            for v in store.visit_times(clinic, month.first_day(), month.last_day()).await? {
                let id = v.id.to_string();
                // A visit with a patient the snapshot lacks arrived after closing. A check that identified
                // nobody is no visit, unless the month was closed while such checks were still lines.
                if !kept.contains(id.as_str()) {
                    if !v.identified {
                        continue;
                    }
                    late.push(id.clone());
                }
                first_at.insert(id, v.first_at);
            }
            late.sort_by_key(|id| first_at.get(id).copied());
            (snapshot, first_at, late, None)
        }
        None => {
            let (lines, totals, first_at, settings) = month_review(rules, store, clinic, month).await?;
            (Snapshot::of(rules, lines, totals), first_at, Vec::new(), Some(settings))
        }
    };
    // A month closed before snapshots were kept is recomputed, but it is closed: no check against today's
    // settings.
    let usage = match (&settings, &closed) {
        (Some(s), None) => {
            let engine_clinic = onshi_rules::Clinic::new(clinic.id.to_string(), clinic.kind, s.clone());
            onshi_rules::usage_verdicts(rules, &engine_clinic, month)
        }
        _ => Vec::new(),
    };
    let Snapshot { mut lines, totals, legend, .. } = snapshot;
    open_charts(store, &mut lines).await?;
    lines.sort_by(|a, b| (a.date, first_at.get(&a.id), &a.id).cmp(&(b.date, first_at.get(&b.id), &b.id)));
    Ok(MonthState { lines, totals, legend, closed, late, first_at, usage, settings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_keys_are_short_and_never_the_whole_pseudonym() {
        let p = "3fa291c0aa55bb66cc77dd88ee99ff0011223344556677889900aabbccddeeff";
        assert_eq!(patient_key(p), "3FA2-91C0");
        assert_eq!(patient_key("short"), "—");
    }
}

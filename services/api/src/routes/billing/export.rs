//! The month as CSV a レセコン user can match row by row: 受付日時 (JST), the patient key, 初診/再診 and
//! whether it is settled, the addon with its レセ電 code and points, the decision, the review and the
//! clerk's note, in reception order. UTF-8 with BOM by default, Shift_JIS on request. Each file is stored
//! in the object store with its SHA-256; a closed month exports its snapshot, so the same bytes every time.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use onshi_domain::AuditAction;
use onshi_objects::ObjectBackend;
use onshi_rules::billing::{Line, ReviewStatus};
use onshi_store::AuditResult;
use serde::Deserialize;

use super::month::{MonthState, month_state, parse_month};
use crate::web::csv::{CsvTable, attachment};
use crate::web::guard::Caller;
use crate::web::page::see_other;
use crate::{ApiError, AppState};

pub(crate) const HEADER: [&str; 16] = [
    "受付日時（JST）",
    "患者キー",
    "区分",
    "区分の確度",
    "マイナ保険証",
    "診療情報取得",
    "加算",
    "レセ電コード",
    "点数",
    "判定",
    "確認状態",
    "担当者メモ",
    "根拠",
    "レセ電の請求",
    "照合",
    "差（点）",
];

/// The claims comparison of a line as the export and the differences list write it: what was claimed,
/// the verdict, and the points the claims should change by (+ for 算定漏れ, - for 過剰算定).
pub(crate) fn claim_columns(l: &Line) -> [String; 3] {
    match &l.claim {
        None => ["（レセ電未取込）".to_owned(), String::new(), String::new()],
        Some(c) => {
            let claimed = if c.claimed.is_empty() { "加算なし".to_owned() } else { c.claimed.join(" / ") };
            let mut verdict = Vec::new();
            if !c.missing.is_empty() {
                verdict.push(format!("算定漏れ: {}", c.missing.join(" / ")));
            }
            if !c.excess.is_empty() {
                verdict.push(format!("過剰算定: {}", c.excess.join(" / ")));
            }
            let verdict = if verdict.is_empty() { "一致".to_owned() } else { verdict.join("、") };
            let diff = i64::from(c.missing_points) - i64::from(c.excess_points);
            [claimed, verdict, if diff == 0 { String::new() } else { format!("{diff:+}") }]
        }
    }
}

/// The visits whose claims disagree with the engine, for the clerk to correct the レセコン before
/// submitting: one row per visit, with the カルテ番号 where the claims gave it.
pub(crate) fn differences_csv(lines: &[Line], times: &HashMap<String, String>) -> CsvTable {
    let mut out =
        CsvTable::new(&["受付日時（JST）", "患者キー", "区分", "レセ電の請求", "照合", "差（点）", "差（円）", "根拠"]);
    for l in lines.iter().filter(|l| l.claim.as_ref().is_some_and(|c| !c.agrees())) {
        let [claimed, verdict, diff] = claim_columns(l);
        let yen =
            l.claim.as_ref().map(|c| (i64::from(c.missing_points) - i64::from(c.excess_points)) * 10).unwrap_or(0);
        out.push([
            times.get(&l.id).cloned().unwrap_or_else(|| l.date.to_string()),
            l.patient_key.clone(),
            l.kind.label().to_owned(),
            claimed,
            verdict,
            diff,
            format!("{yen:+}"),
            l.reason.clone(),
        ]);
    }
    out
}

/// The rows of the export, in the order given; `times` maps a visit to its JST `YYYY-MM-DD HH:MM`.
pub(crate) fn month_csv(lines: &[Line], times: &HashMap<String, String>) -> CsvTable {
    let mut out = CsvTable::new(&HEADER);
    for l in lines {
        let review = match (l.status, l.excluded) {
            (_, true) => "算定しない",
            (Some(ReviewStatus::Adjusted), _) => "修正済み",
            (Some(ReviewStatus::Approved), _) => "確認済み",
            (Some(ReviewStatus::Settled), _) => "未確認（区分のみ確定）",
            (None, _) => "未確認",
        };
        let decision = if l.provisional() {
            "未確定（区分の確定待ち）"
        } else if l.addons.is_empty() {
            "算定なし"
        } else {
            "算定"
        };
        let [claimed, verdict, diff] = claim_columns(l);
        out.push([
            times.get(&l.id).cloned().unwrap_or_else(|| l.date.to_string()),
            l.patient_key.clone(),
            l.kind.label().to_owned(),
            if l.kind_settled { "確定" } else { "未確定" }.to_owned(),
            if l.myna { "○" } else { "" }.to_owned(),
            if l.info_obtained { "○" } else { "" }.to_owned(),
            l.addons.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(" / "),
            l.addons.iter().map(|a| a.code.as_deref().unwrap_or("（コード未収録）")).collect::<Vec<_>>().join(" / "),
            l.points.to_string(),
            decision.to_owned(),
            review.to_owned(),
            l.note.clone(),
            l.reason.clone(),
            claimed,
            verdict,
            diff,
        ]);
    }
    out
}

/// The clinic-month of a path as the CSV files need it: its lines (a closed month's as closed) and each
/// visit's JST time.
struct MonthRows {
    clinic: onshi_store::ClinicScope,
    month: onshi_rules::YearMonth,
    lines: Vec<Line>,
    times: HashMap<String, String>,
}

async fn month_rows(
    state: &AppState,
    caller: &Caller,
    store: &onshi_store::TenantStore<'_>,
    (raw_clinic, raw_month): (String, String),
) -> Result<MonthRows, ApiError> {
    let clinic = caller.clinic(store, &raw_clinic).await?;
    let month = parse_month(&raw_month)?;
    let MonthState { lines, first_at, .. } = month_state(&state.rules, store, &clinic, month).await?;
    let times = first_at.iter().map(|(id, at)| (id.clone(), crate::web::time::jst_minute(at))).collect();
    Ok(MonthRows { clinic, month, lines, times })
}

/// `GET /billing/{clinic}/{month}/differences.csv`: the month's claims that disagree with the engine.
pub(crate) async fn differences(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let MonthRows { clinic, month, lines, times } = month_rows(&state, &caller, &store, path.into_inner()).await?;
    let table = differences_csv(&lines, &times);
    store
        .audit(
            &caller
                .entry(AuditAction::BillingDifferences, &format!("billing:{}:{month}", clinic.id), AuditResult::Success)
                .details(serde_json::json!({ "rows": table.len() })),
        )
        .await?;
    Ok(table.download(&format!("differences-{}-{month}", clinic.code)))
}

#[derive(Deserialize)]
pub(crate) struct ExportForm {
    #[serde(default)]
    encoding: String,
}

pub(crate) async fn export(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    form: web::Form<ExportForm>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    // A closed month exports what it was closed with, so the same month gives the same file.
    let MonthRows { clinic, month, lines, times } = month_rows(&state, &caller, &store, path.into_inner()).await?;
    let table = month_csv(&lines, &times);
    let (encoding, bytes) = match form.encoding.as_str() {
        "sjis" => {
            let bytes = table.shift_jis().map_err(|e| {
                ApiError::InvalidRequest(onshi_domain::FieldError::new(
                    "encoding",
                    format!("{} 行目の「{}」は Shift_JIS で表せません。UTF-8 で出力してください", e.row, e.character),
                ))
            })?;
            ("sjis", bytes)
        }
        _ => ("utf8", table.utf8()),
    };
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    // The charset is served from the export record on download; the stored object is plain text/csv.
    let content_type = "text/csv";
    // Short keys: the clinic and month live in the export record; the tenant prefix serves retention.
    let key = format!("exports/{}/{}.csv", caller.scope.tenant_id().as_uuid().simple(), uuid::Uuid::now_v7().simple());
    state.objects.put(&key, bytes, content_type).await.map_err(ApiError::unavailable)?;
    let entry = caller
        .entry(AuditAction::BillingExport, &format!("billing:{}:{month}", clinic.id), AuditResult::Success)
        .details(serde_json::json!({ "encoding": encoding, "rows": lines.len(), "object": key, "sha256": sha256 }));
    store.record_billing_export(&clinic, month, &key, encoding, table.len(), &sha256, caller.user.id, &entry).await?;
    Ok(see_other(&format!("/billing/{}/{month}#exports", clinic.id)))
}

pub(crate) async fn download(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_clinic, raw_month, raw_export) = path.into_inner();
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &raw_clinic).await?;
    let month = parse_month(&raw_month)?;
    let id: uuid::Uuid = raw_export.parse().map_err(|_| ApiError::NotFound)?;
    let record =
        store.billing_exports(&clinic, month).await?.into_iter().find(|e| e.id == id).ok_or(ApiError::NotFound)?;
    let bytes =
        state.objects.get(&record.object_key).await.map_err(ApiError::unavailable)?.ok_or(ApiError::NotFound)?;
    store
        .audit(&caller.entry(AuditAction::BillingDownload, &format!("billing-export:{id}"), AuditResult::Success))
        .await?;
    let charset = if record.encoding == "sjis" { "Shift_JIS" } else { "utf-8" };
    Ok(attachment(bytes.to_vec(), charset, &format!("billing-{}-{month}", clinic.code)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use onshi_domain::{FacilityKind, YearMonth};
    use onshi_rules::billing::{Fact, review};
    use onshi_rules::{ClinicSettings, RateBasis, RuleSet, Standard};
    use time::macros::date;

    use super::*;

    /// Every string the product writes into a billing export (reasons for every rule and failure, addon
    /// names, codes, labels, the legend's notes and sources) has a Shift_JIS form: the export never
    /// refuses on text we generated, and the bytes decode back to the same text.
    #[test]
    fn every_generated_string_survives_a_shift_jis_round_trip() {
        let rules = RuleSet::builtin().unwrap();
        let mut table = CsvTable::new(&HEADER);
        for kind in [FacilityKind::Medical, FacilityKind::Dental, FacilityKind::Pharmacy] {
            // Three clinics per kind: everything met with high rates, low rates, nothing met: between them
            // every grant and every refusal text appears.
            for (standards, rate) in [(Standard::ALL.to_vec(), 0.9), (Standard::ALL.to_vec(), 0.01), (Vec::new(), 0.5)]
            {
                let mut settings = ClinicSettings::default();
                settings.set_standards(date!(2022 - 01 - 01), standards.into_iter().collect());
                let mut month = YearMonth::parse("2022-01").unwrap();
                while month <= YearMonth::parse("2027-12").unwrap() {
                    settings.set_usage_rate(RateBasis::Receipts, month, rate);
                    month = month.plus(1);
                }
                let clinic = onshi_rules::Clinic::new("c", kind, settings);
                let mut facts = Vec::new();
                let mut day = date!(2022 - 10 - 01);
                let mut i = 0;
                while day < date!(2027 - 06 - 01) {
                    facts.push(Fact {
                        id: format!("v{i}"),
                        patient: format!("p{}", i % 3),
                        patient_key: "1A2B-3C4D".into(),
                        date: day,
                        first_seen: i % 5 == 0,
                        known_kind: None,
                        myna: i % 2 == 0,
                        info_obtained: i % 3 != 0,
                        claimed: (i % 4 == 0).then(|| vec!["112709570".to_owned()]),
                    });
                    i += 1;
                    day += time::Duration::days(9);
                }
                let mut month = YearMonth::parse("2022-10").unwrap();
                while month <= YearMonth::parse("2027-05").unwrap() {
                    let (lines, _) = review(&rules, &clinic, &facts, &HashMap::new(), month).unwrap();
                    let csv = month_csv(&lines, &HashMap::new());
                    for row in csv.rows() {
                        table.push(row.iter().cloned());
                    }
                    month = month.plus(1);
                }
            }
        }
        for rule in &rules.rules {
            let note = rule.note.clone().unwrap_or_default();
            table.push([rule.id.clone(), rule.name.clone(), note, rule.source.clone(), rule.frequency_label()]);
        }
        table.push(Standard::ALL.iter().map(|s| s.label().to_owned()).collect::<Vec<_>>());
        table.push([RateBasis::Receipts.label(), RateBasis::Oqs.label()]);
        assert!(table.len() > 1000, "a broad sample: {}", table.len());
        let bytes = table.shift_jis().expect("generated text has a Shift_JIS form");
        let (decoded, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
        assert!(!bad);
        let original = String::from_utf8(table.utf8()).unwrap();
        assert_eq!(decoded, crate::web::csv::windows_text(original.trim_start_matches('\u{feff}')));
    }
}

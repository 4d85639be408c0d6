//! The official マイナ保険証利用率 as 支払基金 notifies it (「マイナ保険証利用率等のお知らせ」, the 医療機関等向け
//! 総合ポータルサイト): per clinic and month 利用件数, 利用者数, 外来レセプト数, 利用率 and the date notified.
//! Entered for one clinic on its billing page, or for the whole group at once from a CSV or text pasted
//! from the portal; a pasted list is taken whole or refused with the line and the reason.
//!
//! Line format, forgiving because the portal offers no download: any order of a 10-digit 医療機関コード,
//! a month (`2026-09`, `2026/09`, `2026年9月`, `令和8年9月`), a date notified (`2026-11-14`,
//! `2026/11/14`, `2026年11月14日`), a percentage (`31.2%`), and up to three whole numbers read as 利用件数,
//! 利用者数 and 外来レセプト数 (full-width digits are fine; `1,234件` in tab-separated text). Without a percentage the rate
//! is 利用者数 ÷ 外来レセプト数. Lines with no digits at all (headings) are skipped. Columns are split on
//! tabs when the line has any, else on commas and spaces.

use actix_web::{HttpResponse, web};
use onshi_domain::{AuditAction, MedicalInstitutionCode, YearMonth};
use onshi_store::{AuditResult, OfficialFigure};
use serde::Deserialize;
use time::{Date, Month};
use unicode_normalization::UnicodeNormalization;

use crate::web::guard::Caller;
use crate::web::page::see_other;
use crate::{ApiError, AppState};

/// One line of a pasted list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OfficialLine {
    pub code: MedicalInstitutionCode,
    pub month: YearMonth,
    pub figure: OfficialFigure,
}

fn year_of(era: &str, n: i32) -> i32 {
    if era == "令和" { 2018 + n } else { n }
}

/// A token that names a month or a day.
enum Calendar {
    Month(YearMonth),
    Day(Date),
}

/// `2026-09`, `2026/09`, `2026年9月`, `令和8年9月` for a month; with a day (`2026-11-14`, `2026年11月14日`)
/// for a date.
fn calendar(token: &str) -> Option<Calendar> {
    let t = token.trim_end_matches('日');
    let (era, rest) = match t.strip_prefix("令和") {
        Some(r) => ("令和", r),
        None => ("", t),
    };
    let parts: Vec<&str> = rest.split(['-', '/', '年', '月']).filter(|p| !p.is_empty()).collect();
    if parts.len() < 2 || parts.len() > 3 || !parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    if era.is_empty() && parts[0].len() != 4 {
        return None;
    }
    let month = YearMonth::new(year_of(era, parts[0].parse().ok()?), parts[1].parse().ok()?)?;
    match parts.get(2) {
        Some(d) => {
            let day = Date::from_calendar_date(month.year(), Month::try_from(month.month()).ok()?, d.parse().ok()?);
            day.ok().map(Calendar::Day)
        }
        None => Some(Calendar::Month(month)),
    }
}

/// Parses a pasted list; the error names the line (from 1) and what is wrong.
pub(crate) fn parse_lines(text: &str) -> Result<Vec<OfficialLine>, (usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line: String = raw.nfkc().collect();
        if !line.chars().any(|c| c.is_ascii_digit()) {
            continue;
        }
        if !line.contains('\t') && line.contains('"') {
            // "1,300" in comma-separated text would split into two numbers and be misread.
            return Err((
                n,
                "引用符で囲んだ値はタブ区切りで貼り付けてください（カンマ区切りでは数のカンマを外してください）".into(),
            ));
        }
        let tokens: Vec<String> = if line.contains('\t') {
            line.split('\t').map(|t| t.trim().replace(',', "")).collect()
        } else {
            line.split([',', ' ']).map(|t| t.trim().to_owned()).collect()
        };
        let (mut code, mut month, mut notified, mut rate) = (None, None, None, None);
        let mut numbers = Vec::new();
        for t in tokens.iter().map(|t| t.trim_matches('"')).filter(|t| !t.is_empty()) {
            let bare = t.trim_end_matches(['件', '人', '枚']);
            if bare.len() == 10 && bare.bytes().all(|b| b.is_ascii_digit()) {
                code = Some(MedicalInstitutionCode::parse(bare).map_err(|e| (n, format!("医療機関コード: {e}")))?);
            } else if let Some(p) = t.strip_suffix('%') {
                let p: f64 = p.parse().map_err(|_| (n, format!("利用率「{t}」は数ではありません")))?;
                if !(0.0..=100.0).contains(&p) {
                    return Err((n, "利用率は 0〜100% です".into()));
                }
                rate = Some(p / 100.0);
            } else if let Some(c) = calendar(t) {
                match c {
                    Calendar::Day(d) => notified = Some(d),
                    Calendar::Month(m) => month = Some(m),
                }
            } else if bare.bytes().all(|b| b.is_ascii_digit()) && !bare.is_empty() {
                numbers.push(bare.parse::<i32>().map_err(|_| (n, format!("「{t}」は大きすぎます")))?);
            } else {
                return Err((
                    n,
                    format!("「{t}」を読めません（医療機関コード・月・数・%・通知日のいずれでもありません）"),
                ));
            }
        }
        let code = code.ok_or((n, "医療機関コード（10桁）がありません".to_owned()))?;
        let month = month.ok_or((n, "対象月（例: 2026-09）がありません".to_owned()))?;
        if numbers.len() > 3 {
            return Err((n, "数が多すぎます（利用件数・利用者数・外来レセプト数の3つまで）".into()));
        }
        let (uses, users, receipts) = (numbers.first().copied(), numbers.get(1).copied(), numbers.get(2).copied());
        let rate = match (rate, users, receipts) {
            (Some(r), _, _) => r,
            (None, Some(u), Some(r)) if r > 0 && u <= r => f64::from(u) / f64::from(r),
            _ => return Err((n, "利用率（%）か、利用者数と外来レセプト数が必要です".into())),
        };
        out.push(OfficialLine {
            code,
            month,
            figure: OfficialFigure { uses, users, receipts, rate, notified_on: notified },
        });
    }
    if out.is_empty() {
        return Err((0, "読み取れる行がありません".into()));
    }
    Ok(out)
}

#[derive(Deserialize)]
pub(crate) struct PasteForm {
    #[serde(default)]
    text: String,
}

/// `POST /billing/official-usage`: the group's official figures from a pasted list, all or nothing.
pub(crate) async fn import_official(
    state: web::Data<AppState>,
    caller: Caller,
    form: web::Form<PasteForm>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let lines = parse_lines(&form.text).map_err(|(n, why)| {
        ApiError::InvalidRequest(onshi_domain::FieldError::new(
            "text",
            if n == 0 { why } else { format!("{n} 行目: {why}") },
        ))
    })?;
    let clinics = caller.visible_clinics(&store).await?;
    let mut entries = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let clinic = clinics.iter().find(|c| c.code == l.code).ok_or_else(|| {
            ApiError::InvalidRequest(onshi_domain::FieldError::new(
                "text",
                format!("{} 件目: 医療機関コード {} はこのグループの医療機関ではありません", i + 1, l.code),
            ))
        })?;
        entries.push((clinic, l.month, l.figure));
    }
    let audit = caller.entry(AuditAction::BillingOfficialUsage, "-", AuditResult::Success);
    store.set_official_usage(&entries, Some(caller.user.id), &audit).await?;
    Ok(see_other("/billing#official"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_pasted_portal_text_read_the_same() {
        let csv = "医療機関コード,対象月,利用件数,利用者数,外来レセプト数,利用率,通知日\n1311234560,2026-09,520,410,1300,31.5%,2026-11-14\n";
        let pasted = "ＯＮＳＨＩクリニック\t1311234560\n令和8年9月\t５２０件\t410人\t1,300件\t31.5%\t2026年11月14日";
        let a = parse_lines(csv).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].month, YearMonth::new(2026, 9).unwrap());
        assert_eq!(a[0].figure.receipts, Some(1300));
        assert!((a[0].figure.rate - 0.315).abs() < 1e-9);
        assert_eq!(a[0].figure.notified_on, Some(time::macros::date!(2026 - 11 - 14)));
        // The portal text puts the code on its own line: refused with the line, not guessed.
        let e = parse_lines(pasted).unwrap_err();
        assert_eq!(e.0, 1);
        let one_line = "1311234560\t令和8年9月\t５２０件\t410人\t1,300件\t31.5%\t2026年11月14日";
        assert_eq!(parse_lines(one_line).unwrap(), a);
    }

    #[test]
    fn the_rate_is_computed_when_missing_and_bad_lines_are_named() {
        let l = parse_lines("1311234560 2026/10 500 400 1000").unwrap();
        assert!((l[0].figure.rate - 0.4).abs() < 1e-9);
        assert_eq!(parse_lines("1311234560,2026-10,500").unwrap_err().0, 1);
        assert!(parse_lines("見出し\n1311234560,2026-13,31%").unwrap_err().1.contains("「2026-13」"));
        assert!(parse_lines("1311234560,2026-10,131%").unwrap_err().1.contains("0〜100"));
        assert_eq!(parse_lines("1311234560,2026-10,31%\n1311234561,2026-10,x").unwrap_err().0, 2);
        assert_eq!(parse_lines("ヘッダだけ").unwrap_err().0, 0);
        // A quoted number with a comma is not split silently.
        assert!(parse_lines("1311234560,2026-09,410,\"1,300\"").unwrap_err().1.contains("タブ区切り"));
    }
}

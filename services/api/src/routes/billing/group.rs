//! Every clinic's month at a glance: visits, certain points, what still needs a look, and whether closed.

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::AuditAction;
use onshi_rules::YearMonth;
use onshi_store::{AuditResult, Clinic};
use serde::Deserialize;
use time::OffsetDateTime;

use super::month::{MonthState, month_state, parse_month};
use crate::web::guard::{Caller, Page};
use crate::web::page::ok;
use crate::{ApiError, AppState};

pub(crate) struct ClinicMonth {
    pub clinic: Clinic,
    pub visits: usize,
    pub claimable: usize,
    pub points: u32,
    /// Visits whose addon waits on an unsettled 初診, and its points: not in `points` yet.
    pub provisional: (usize, u32),
    pub needs_review: usize,
    /// Visits whose 初診/再診 nobody has settled yet.
    pub unsettled: usize,
    pub missed: usize,
    pub closed: bool,
    /// The month's claims against the engine, once imported.
    pub claims: Option<onshi_rules::billing::ClaimSummary>,
    /// The addons an open month cannot claim for its 利用率, in the month page's words: why a clinic's
    /// points are 0 reads on this page, not only 200 rows down the clinic's.
    pub unmet: Vec<onshi_rules::UsageVerdict>,
}

#[derive(Template)]
#[template(path = "billing_group.html")]
struct GroupPage {
    page: Page,
    month: String,
    prev: String,
    next: String,
    rows: Vec<ClinicMonth>,
    /// The group's claims against the engine: points 算定漏れ and 過剰算定 over the clinics with claims.
    claims: onshi_rules::billing::ClaimSummary,
    total_points: u32,
    total_provisional: (usize, u32),
    /// The group is in its claiming days (the 1st to the 10th) and no month was asked for, so the page
    /// shows the month being claimed: the deadline, and a link to the month under way.
    claiming: Option<Claiming>,
    /// The group's visits, claimable visits, visits to review, unsettled and 算定漏れ candidates.
    totals: [usize; 5],
}

pub(crate) struct Claiming {
    /// The last day to send the month's claims (the 10th of this month).
    pub deadline: String,
    pub current: String,
}

/// Claims for a month go to the 審査支払機関 by the 10th of the next one: until then, the month a clerk
/// opens the billing pages for is the one before.
const CLAIM_DEADLINE_DAY: u8 = 10;

/// The month the overview opens on when none is asked for (`today` in Japan): from the 1st to the 10th
/// the month before, with its deadline; after, the month under way.
fn landing(today: time::Date) -> (YearMonth, Option<Claiming>) {
    let current = YearMonth::of(today);
    if today.day() <= CLAIM_DEADLINE_DAY {
        let deadline = today.replace_day(CLAIM_DEADLINE_DAY).unwrap_or(today).to_string();
        (current.plus(-1), Some(Claiming { deadline, current: current.to_string() }))
    } else {
        (current, None)
    }
}

#[derive(Deserialize)]
pub(crate) struct MonthQuery {
    #[serde(default)]
    month: Option<String>,
}

pub(crate) async fn group(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    q: web::Query<MonthQuery>,
) -> Result<HttpResponse, ApiError> {
    let (month, claiming) = match q.month.as_deref() {
        Some(m) => (parse_month(m)?, None),
        None => landing(onshi_domain::jst::date_of(OffsetDateTime::now_utc())),
    };
    let store = state.store.tenant(caller.scope);
    let mut rows = Vec::new();
    for clinic in caller.visible_clinics(&store).await? {
        let MonthState { lines, totals, closed, usage, .. } = month_state(&state.rules, &store, &clinic, month).await?;
        rows.push(ClinicMonth {
            visits: lines.len(),
            claimable: lines.iter().filter(|l| !l.not_claimable).count(),
            points: totals.values().map(|t| t.1).sum(),
            provisional: onshi_rules::billing::provisional(&lines),
            needs_review: lines.iter().filter(|l| l.needs_review).count(),
            unsettled: lines.iter().filter(|l| !l.kind_settled).count(),
            missed: lines.iter().filter(|l| l.missed).count(),
            closed: closed.is_some(),
            claims: Some(onshi_rules::billing::ClaimSummary::of(&lines)).filter(|c| c.checked > 0),
            unmet: usage.into_iter().filter(|u| !u.reached).collect(),
            clinic: clinic.clinic().clone(),
        });
    }
    store.audit(&caller.entry(AuditAction::BillingView, &format!("billing:{month}"), AuditResult::Success)).await?;
    let mut claims = onshi_rules::billing::ClaimSummary::default();
    for c in rows.iter().filter_map(|r| r.claims) {
        claims += c;
    }
    let sum = |f: fn(&ClinicMonth) -> usize| rows.iter().map(f).sum();
    let totals =
        [sum(|r| r.visits), sum(|r| r.claimable), sum(|r| r.needs_review), sum(|r| r.unsettled), sum(|r| r.missed)];
    ok(GroupPage {
        totals,
        total_points: rows.iter().map(|r| r.points).sum(),
        total_provisional: rows.iter().fold((0, 0), |(n, p), r| (n + r.provisional.0, p + r.provisional.1)),
        claiming,
        claims,
        page,
        month: month.to_string(),
        prev: month.plus(-1).to_string(),
        next: month.plus(1).to_string(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn the_overview_opens_on_the_month_being_claimed_until_the_tenth_in_japan() {
        for day in [date!(2026 - 12 - 01), date!(2026 - 12 - 10)] {
            let (month, claiming) = landing(day);
            assert_eq!(month.to_string(), "2026-11");
            let claiming = claiming.unwrap();
            assert_eq!((claiming.deadline.as_str(), claiming.current.as_str()), ("2026-12-10", "2026-12"));
        }
        let (month, claiming) = landing(date!(2026 - 12 - 11));
        assert_eq!((month.to_string().as_str(), claiming.is_none()), ("2026-12", true));
        // 15:00 UTC on the 10th is already the 11th in Japan; January's claiming days look back to December.
        assert!(landing(onshi_domain::jst::date_of(datetime!(2026-12-10 15:00 UTC))).1.is_none());
        assert!(landing(onshi_domain::jst::date_of(datetime!(2026-12-10 14:59 UTC))).1.is_some());
        assert_eq!(landing(date!(2027 - 01 - 05)).0.to_string(), "2026-12");
    }
}

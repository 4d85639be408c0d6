//! One clinic-month: totals (certain, and provisional while 初診/再診 is unsettled), filters, the rows in
//! reception order grouped by day, each rule explained once in a legend, the bulk form the row checkboxes
//! belong to, exports, closing, and the clinic's 届出 and 利用率.
//!
//! Most of a month's visits share a handful of reasons, each three lines long. A reason that
//! [`SHARED`] or more visits give is written once, numbered, above the rows, which cite its number; the
//! clerk reads it once, can show just its visits (`reason_id`), and approve those nothing flags in one
//! step. A reason fewer visits give (an earlier claim on a given date, say) stays on its row.
//!
//! A month of a busy clinic is a thousand visits: a strip of its days (visits, and whether any is still
//! unreviewed) shows one day at a time (`day`), for the clerk who checks yesterday's receptions.

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::AuditAction;
use onshi_rules::billing::{ClaimSummary, Line};
use onshi_rules::{ClinicSettings, Standard};
use onshi_store::{AuditResult, Clinic, ExportRecord};
use serde::Deserialize;
use time::Date;

use super::month::{LegendEntry, MonthState, month_over, month_state, parse_month};
use crate::web::guard::{Caller, Page};
use crate::web::i18n::Lang;
use crate::web::page::ok;
use crate::{ApiError, AppState};

/// A review filter: its query value, labels, and which lines it keeps.
pub(super) struct Filter {
    pub key: &'static str,
    pub ja: &'static str,
    pub en: &'static str,
    keep: fn(&Line) -> bool,
}

pub(super) const FILTERS: [Filter; 8] = [
    Filter { key: "", ja: "すべて", en: "All", keep: |_| true },
    Filter { key: "needs_review", ja: "未確認", en: "To review", keep: |l| l.needs_review },
    Filter { key: "unsettled", ja: "区分未確定", en: "初診/再診 unsettled", keep: |l| !l.kind_settled },
    Filter { key: "overridden", ja: "修正済み", en: "Adjusted", keep: |l| l.overridden },
    Filter { key: "not_claimable", ja: "算定なし", en: "Not claimable", keep: |l| l.not_claimable },
    Filter { key: "missed", ja: "算定漏れ候補", en: "Possibly missed", keep: |l| l.missed },
    Filter { key: "over", ja: "過剰算定候補", en: "Possibly over-claimed", keep: |l| l.over },
    Filter {
        key: "claims_differ",
        ja: "レセ電と不一致",
        en: "Differs from claims",
        keep: |l| l.claim.as_ref().is_some_and(|c| !c.agrees()),
    },
];

/// The filter named by a query value; unknown values show everything.
pub(super) fn filter(key: &str) -> &'static Filter {
    FILTERS.iter().find(|f| f.key == key).unwrap_or(&FILTERS[0])
}

impl Filter {
    pub fn keeps(&self, line: &Line) -> bool {
        (self.keep)(line)
    }
}

/// A reason several visits of the month give.
pub(crate) struct SharedReason {
    /// 1 for the most common reason of the month, and so on.
    pub number: usize,
    /// Names the reason in links and forms (`reason_id`): a short hash of its text, so it stays the same
    /// while the clerk works through the month.
    pub key: String,
    /// The Japanese text, which the visits' lines are matched on.
    pub text: String,
    /// The text in the page's language.
    pub shown: String,
    /// Visits of the month that give it.
    pub visits: usize,
    /// Of those, the visits within the filter and day shown (whatever reason is chosen).
    pub in_view: usize,
    /// Visits its step would approve: [`approvable`], within the filter and day shown.
    pub approvable: usize,
    /// Listed on the page: a reason without visits in a narrowed view is left out, unless it is the one
    /// chosen.
    pub listed: bool,
}

/// How many visits must give a reason before it is listed once and cited by number.
pub(super) const SHARED: usize = 3;

pub(super) fn reason_key(reason: &str) -> String {
    onshi_identity::token::sha256_hex(reason)[..12].to_owned()
}

/// The reasons at least [`SHARED`] visits of the month give, most common first (then in reception order),
/// each with its visits and what its step would approve within the filter and day of `shown` (whatever its
/// reason). The numbers are the month's, so a row cites the same number on every view of the month.
fn shared_reasons(lines: &[Line], shown: &View<'_>, lang: Lang) -> Vec<SharedReason> {
    struct Seen<'l> {
        line: &'l Line,
        visits: usize,
        in_view: usize,
        approvable: usize,
    }
    let within = View { reason: None, ..*shown };
    // In order of first appearance.
    let mut seen: Vec<Seen<'_>> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for l in lines {
        let i = *index.entry(&l.reason).or_insert_with(|| {
            seen.push(Seen { line: l, visits: 0, in_view: 0, approvable: 0 });
            seen.len() - 1
        });
        let kept = within.keeps(l);
        seen[i].visits += 1;
        seen[i].in_view += usize::from(kept);
        seen[i].approvable += usize::from(kept && approvable(l));
    }
    seen.retain(|s| s.visits >= SHARED);
    // A stable sort keeps reception order among equals.
    seen.sort_by_key(|s| std::cmp::Reverse(s.visits));
    seen.into_iter()
        .enumerate()
        .map(|(i, s)| SharedReason {
            number: i + 1,
            key: reason_key(&s.line.reason),
            text: s.line.reason.clone(),
            shown: reason_in(s.line, lang).to_owned(),
            visits: s.visits,
            in_view: s.in_view,
            approvable: s.approvable,
            // A narrowed view leaves out a reason none of its visits give, unless it is the one chosen.
            listed: !within.narrowed() || s.in_view > 0 || shown.reason == Some(s.line.reason.as_str()),
        })
        .collect()
}

/// A line's reason in the page's language (Japanese where no English was kept: a month closed before).
fn reason_in(line: &Line, lang: Lang) -> &str {
    onshi_rules::Text::pick(&line.reason, &line.reason_en, lang.is_en())
}

pub(crate) struct LineView {
    pub line: Line,
    /// The number of its reason among the month's shared ones; `None` when the row says it in full.
    pub reason_no: Option<usize>,
    /// Its reason in the page's language.
    pub reason_text: String,
    /// JST time of the first confirmation, `HH:MM`.
    pub time: String,
    /// The day's heading (`3月3日（月） 12件`) on the first row of each day.
    pub day: Option<String>,
    pub addon_text: String,
}

impl LineView {
    /// The claims disagree with the engine on this visit.
    pub fn differs(&self) -> bool {
        self.line.claim.as_ref().is_some_and(|c| !c.agrees())
    }
}

#[derive(Template)]
#[template(path = "billing_month.html")]
struct MonthPage {
    page: Page,
    clinic: Clinic,
    /// How the month's claims stand against the usage levels their addons require (open months only: a
    /// closed month shows what it froze).
    usage: Vec<onshi_rules::UsageVerdict>,
    month: String,
    /// The month's first and last day, for the clinic page's range.
    month_from: String,
    month_to: String,
    filter: String,
    filters: Vec<(&'static str, &'static str, &'static str, usize)>,
    lines: Vec<LineView>,
    reasons: Vec<SharedReason>,
    /// The shared reason whose visits alone are shown, if one was chosen.
    reason_shown: Option<usize>,
    /// `reason_id` of the chosen reason ("" for none), which the forms carry back.
    reason_id: String,
    /// A filter or day narrows the view: each shared reason shows its visits there beside the month's, and
    /// those without any there are left out (their numbers stay the month's).
    reasons_narrowed: bool,
    reasons_hidden: usize,
    days: Vec<DayLink>,
    /// The day shown alone (`YYYY-MM-DD`, "" for the whole month), which the forms carry back.
    day: String,
    legend: Vec<LegendEntry>,
    /// The unverified rules the month's decisions cite, and how many visits cite one: said at the top,
    /// not only in the legend at the bottom, so nobody closes a month without knowing.
    unverified: Vec<String>,
    unverified_visits: usize,
    totals: Vec<(String, u32, u32)>,
    total_points: u32,
    /// Visits whose addon rests on an unsettled 初診, and their points (not in the total).
    provisional: (usize, u32),
    unsettled: usize,
    /// Unsettled visits among those shown, which the settle step takes.
    unsettled_shown: usize,
    /// The page shows less than the whole month (a filter, reason or day): the bulk steps say so.
    narrowed: bool,
    /// Checks of the month that identified nobody, which are not billing lines.
    unidentified: usize,
    closed: Option<String>,
    /// Visits that arrived after the month was closed (time), not part of its totals.
    late: Vec<String>,
    /// Unreviewed visits, which closing asks to confirm.
    unreviewed: usize,
    /// The month's visits (the lines shown may be fewer), for the progress at the top.
    month_visits: usize,
    /// Unreviewed visits nothing flags among those shown, which one button approves.
    plain: usize,
    /// Whether this user may reopen a closed month.
    may_reopen: bool,
    /// The month is over (JST), so it may be closed.
    ended: bool,
    /// The first day of the next month, when it may be closed.
    next_month: String,
    exports: Vec<ExportRecord>,
    standards: Vec<(String, String)>,
    usage_rates: Vec<(String, String)>,
    /// Each 施設基準: key, label, and whether the latest 届出 has it (the form starts from it, so recording a
    /// change from a date does not drop the rest).
    standard_names: Vec<(&'static str, &'static str, bool)>,
    /// The month's claims against the engine, once its レセ電 is imported.
    claims: Option<ClaimSummary>,
}

#[derive(Deserialize)]
pub(crate) struct FilterQuery {
    #[serde(default)]
    filter: String,
    /// A shared reason's key: only its visits.
    #[serde(default)]
    reason_id: String,
    /// `YYYY-MM-DD` of the month: only that day's visits.
    #[serde(default)]
    day: String,
}

/// One day of the month in the strip above the rows.
pub(crate) struct DayLink {
    /// `YYYY-MM-DD`, the link's `day`.
    pub date: String,
    /// "2（月）" / "2 Mon".
    pub label: String,
    pub visits: usize,
    pub unreviewed: usize,
}

fn day_links(lines: &[Line], lang: Lang) -> Vec<DayLink> {
    let mut days = std::collections::BTreeMap::<time::Date, (usize, usize)>::new();
    for l in lines {
        let d = days.entry(l.date).or_default();
        d.0 += 1;
        d.1 += usize::from(l.needs_review);
    }
    days.into_iter()
        .map(|(d, (visits, unreviewed))| {
            let weekday = d.weekday().number_days_from_monday() as usize;
            DayLink {
                date: d.to_string(),
                label: match lang {
                    Lang::Ja => format!("{}（{}）", d.day(), WEEKDAYS[weekday]),
                    Lang::En => format!("{} {}", d.day(), &d.weekday().to_string()[..3]),
                },
                visits,
                unreviewed,
            }
        })
        .collect()
}

/// (label, value) rows for the page.
type Pairs = Vec<(String, String)>;

fn settings_summary(settings: &ClinicSettings, lang: Lang) -> (Pairs, Pairs) {
    let standards = settings
        .standards
        .iter()
        .map(|(from, met)| {
            let met = met.iter().map(|s| s.label_in(lang.is_en())).collect::<Vec<_>>().join(lang.t("、", ", "));
            (from.to_string(), if met.is_empty() { lang.t("（なし）", "(none)").to_owned() } else { met })
        })
        .collect();
    let receipts = settings.usage_rates.iter().map(|(m, r)| (m.to_string(), format!("{:.1}%", r * 100.0)));
    let oqs_basis = onshi_rules::RateBasis::Oqs;
    let oqs_label =
        if lang.is_en() { format!(" ({})", oqs_basis.label_en()) } else { format!("（{}）", oqs_basis.label()) };
    let oqs = settings.oqs_usage_rates.iter().map(|(m, r)| (m.to_string(), format!("{:.1}%{oqs_label}", r * 100.0)));
    let mut rates: Pairs = receipts.chain(oqs).collect();
    rates.sort();
    (standards, rates)
}

const WEEKDAYS: [&str; 7] = ["月", "火", "水", "木", "金", "土", "日"];

/// Approvable in the bulk step: unreviewed, 初診/再診 settled, and nothing flagged (not a 算定漏れ or
/// 過剰算定 candidate, and the claims, where imported, agree).
pub(super) fn approvable(l: &Line) -> bool {
    l.needs_review && l.kind_settled && !l.missed && !l.over && l.claim.as_ref().is_none_or(|c| c.agrees())
}

/// The part of a month the page shows: a filter, a shared reason, a day. The bulk steps take only the
/// visits it shows, so a clerk looking at one day approves that day, not the month.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub filter: &'static Filter,
    /// The shared reason's text.
    pub reason: Option<&'a str>,
    pub day: Option<Date>,
}

impl View<'_> {
    pub fn keeps(&self, l: &Line) -> bool {
        self.filter.keeps(l) && self.reason.is_none_or(|r| r == l.reason) && self.day.is_none_or(|d| l.date == d)
    }

    /// Less than the whole month.
    pub fn narrowed(&self) -> bool {
        !self.filter.key.is_empty() || self.reason.is_some() || self.day.is_some()
    }
}

/// The view named by a page's query or a form's fields, against the month's lines: a reason no longer
/// shared by [`SHARED`] visits, or a day without visits, is no narrowing (the whole month, not nothing).
pub(super) fn view<'a>(lines: &'a [Line], filter_key: &str, reason_id: &str, day: &str) -> View<'a> {
    let given: Vec<&Line> = if reason_id.is_empty() {
        Vec::new()
    } else {
        lines.iter().filter(|l| reason_key(&l.reason) == reason_id).collect()
    };
    let day = onshi_domain::jst::parse_date(day).filter(|d| lines.iter().any(|l| l.date == *d));
    View { filter: filter(filter_key), reason: (given.len() >= SHARED).then(|| given[0].reason.as_str()), day }
}

pub(crate) async fn month_page(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    path: web::Path<(String, String)>,
    q: web::Query<FilterQuery>,
) -> Result<HttpResponse, ApiError> {
    let (raw_clinic, raw_month) = path.into_inner();
    let store = state.store.tenant(caller.scope);
    let clinic = caller.clinic(&store, &raw_clinic).await?;
    let month = parse_month(&raw_month)?;
    let MonthState { lines, totals, legend, closed, late, first_at: times, usage, settings } =
        month_state(&state.rules, &store, &clinic, month).await?;
    let count = |f: fn(&Line) -> bool| lines.iter().filter(|l| f(l)).count();
    let claims = Some(ClaimSummary::of(&lines)).filter(|c| c.checked > 0);
    let unreviewed = count(|l| l.needs_review);
    let line_count = lines.len();
    let unsettled = count(|l| !l.kind_settled);
    let chosen = view(&lines, &q.filter, &q.reason_id, &q.day);
    let shown_count = |f: fn(&Line) -> bool| lines.iter().filter(|l| chosen.keeps(l) && f(l)).count();
    let (plain, unsettled_shown) = (shown_count(approvable), shown_count(|l| !l.kind_settled));
    let narrowed = chosen.narrowed();
    let provisional = onshi_rules::billing::provisional(&lines);
    // Each filter's count within the reason and day shown, so the numbers match the rows a click shows.
    let within = View { filter: &FILTERS[0], ..chosen };
    let filters = FILTERS
        .iter()
        .map(|f| (f.key, f.ja, f.en, lines.iter().filter(|l| within.keeps(l) && f.keeps(l)).count()))
        .collect();
    let line_ids: std::collections::HashSet<String> = lines.iter().map(|l| l.id.clone()).collect();
    let reasons = shared_reasons(&lines, &chosen, page.lang);
    let reason_shown = chosen.reason.and_then(|text| reasons.iter().find(|r| r.text == text)).map(|r| r.number);
    let reason_id = if chosen.reason.is_some() { q.reason_id.clone() } else { String::new() };
    let reasons_narrowed = View { reason: None, ..chosen }.narrowed();
    let reasons_hidden = reasons.iter().filter(|r| !r.listed).count();
    let days = day_links(&lines, page.lang);
    let (filter_key, day) = (chosen.filter.key, chosen.day);
    let shown: Vec<Line> = lines.iter().filter(|l| chosen.keeps(l)).cloned().collect();
    let mut per_day = std::collections::BTreeMap::<time::Date, usize>::new();
    for l in &shown {
        *per_day.entry(l.date).or_default() += 1;
    }
    let mut previous = None;
    let view: Vec<LineView> = shown
        .into_iter()
        .map(|line| {
            let day = (previous != Some(line.date)).then(|| {
                let d = line.date;
                let n = per_day.get(&d).copied().unwrap_or(0);
                match page.lang {
                    Lang::Ja => format!(
                        "{}月{}日（{}） {n}件",
                        d.month() as u8,
                        d.day(),
                        WEEKDAYS[d.weekday().number_days_from_monday() as usize]
                    ),
                    Lang::En => {
                        format!("{d} ({}) · {n} visit{}", d.weekday(), if n == 1 { "" } else { "s" })
                    }
                }
            });
            previous = Some(line.date);
            LineView {
                reason_no: reasons.iter().find(|r| r.text == line.reason).map(|r| r.number),
                reason_text: reason_in(&line, page.lang).to_owned(),
                time: times.get(&line.id).map(crate::web::time::jst_clock).unwrap_or_default(),
                day,
                addon_text: line
                    .addons
                    .iter()
                    .map(|a| match page.lang {
                        Lang::Ja => format!("{}（{}点）", a.name, a.points),
                        Lang::En => format!("{} ({} pt)", a.name, a.points),
                    })
                    .collect::<Vec<_>>()
                    .join(page.lang.t("、", ", ")),
                line,
            }
        })
        .collect();
    let settings = match settings {
        Some(s) => s,
        None => store.billing_settings(&clinic).await?,
    };
    let (standards, usage_rates) = settings_summary(&settings, page.lang);
    let latest = settings.standards.last().map(|(_, met)| met.clone()).unwrap_or_default();
    let closed = closed.map(|c| crate::web::time::jst_minute(&c.at));
    let late: Vec<String> = late
        .iter()
        .map(|id| times.get(id).map(crate::web::time::jst_minute).unwrap_or_else(|| "—".to_owned()))
        .collect();
    let exports = store.billing_exports(&clinic, month).await?;
    // Those a month closed before they were left out still lists are not counted again.
    let unidentified = store
        .visit_times(&clinic, month.first_day(), month.last_day())
        .await?
        .iter()
        .filter(|v| !v.identified && !line_ids.contains(v.id.to_string().as_str()))
        .count();
    store
        .audit(
            &caller
                .entry(AuditAction::BillingView, &format!("billing:{}:{month}", clinic.id), AuditResult::Success)
                .details(serde_json::json!({ "rows": view.len() })),
        )
        .await?;
    // A closed month shows what it froze: the notice is for a month still to close.
    let unverified: Vec<String> = if closed.is_some() {
        Vec::new()
    } else {
        legend.iter().filter(|r| !r.verified).map(|r| r.id.clone()).collect()
    };
    let unverified_visits = lines.iter().filter(|l| l.cited.iter().any(|id| unverified.contains(id))).count();
    let lang = page.lang;
    ok(MonthPage {
        unverified,
        unverified_visits,
        page,
        month: month.to_string(),
        month_from: month.first_day().to_string(),
        month_to: month.last_day().to_string(),
        filter: filter_key.to_owned(),
        filters,
        total_points: totals.values().map(|t| t.1).sum(),
        totals: totals.into_iter().map(|(name, (n, p))| (name, n, p)).collect(),
        provisional,
        unsettled,
        unsettled_shown,
        narrowed,
        unidentified,
        lines: view,
        reason_id,
        reasons_narrowed,
        reasons_hidden,
        days,
        day: day.map(|d| d.to_string()).unwrap_or_default(),
        reason_shown,
        reasons,
        legend,
        closed,
        late,
        unreviewed,
        month_visits: line_count,
        plain,
        may_reopen: caller.user.role.allows(onshi_domain::Permission::ReopenBilling),
        ended: month_over(month),
        next_month: month.plus(1).first_day().to_string(),
        exports,
        standards,
        usage_rates,
        standard_names: Standard::ALL.iter().map(|s| (s.key(), s.label_in(lang.is_en()), latest.contains(s))).collect(),
        claims,
        usage,
        clinic: clinic.clinic().clone(),
    })
}

//! The billing review of one clinic-month: the engine's decision per visit from the facts the cloud
//! derived, the clerk's corrections applied, and what to look at first.
//!
//! The clerk corrects **facts** (初診/再診, whether 診療情報 was obtained, or "do not claim"), never points:
//! the engine recomputes the addon from the corrected facts, so a correction cannot produce an addon the
//! rules do not allow, and a visit excluded from claiming frees its frequency limit for later visits.
//!
//! Flags:
//! - `needs_review`: nobody has approved or adjusted it yet;
//! - `kind_settled` false (区分未確定): the patient's first visit in our data, with no 初診/再診 from the
//!   clinic's own data or a clerk. Our data starts when the clinic joined, so "first seen" is a guess, not
//!   a 初診: such a visit is evaluated as the likely 初診 but its addon is provisional, outside the totals,
//!   until someone settles the kind. A visit after an earlier one in our data is taken as 再診, which never
//!   grants a 初診-only addon (at worst a 算定漏れ the clerk can correct);
//! - `overridden`: a clerk changed its facts;
//! - `not_claimable`: no addon in the end;
//! - `missed` (算定漏れ候補): confirmed with マイナ保険証 yet nothing is claimable, usually a missing 届出
//!   or 利用率 in the clinic's settings;
//! - `over` (過剰算定候補): the clerk's corrections raised the points above what the derived facts give.
//!
//! Once the clinic's レセ電 is imported, each visit also carries what was really claimed that day
//! (`Fact::claimed`) and the line compares it with the engine (`Line::claim`): an addon the engine grants
//! but the claims lack is a 算定漏れ, a claimed addon code the engine does not grant a 過剰算定.

use std::collections::{BTreeMap, HashMap};

use time::Date;

use crate::{
    Clinic, Decision, EARLIEST, EvalInput, Granted, InputError, RuleSet, Text, Visit, VisitKind, YearMonth, evaluate,
};

/// What the cloud knows about a visit.
#[derive(Debug, Clone)]
pub struct Fact {
    pub id: String,
    /// The patient pseudonym (never shown). A check that identified nobody is no reception to bill: the
    /// store leaves it out (`billing_visits`).
    pub patient: String,
    pub date: Date,
    /// The key a clerk can find the patient by (the clinic's 患者番号 where known, else a short form of the
    /// pseudonym); shown and exported, never used to group.
    pub patient_key: String,
    /// The patient's first visit at this clinic in our data: likely 初診, but unsettled (see the module).
    pub first_seen: bool,
    /// 初診/再診 from the clinic's own data (レセ電), when known.
    pub known_kind: Option<VisitKind>,
    pub myna: bool,
    pub info_obtained: bool,
    /// The reception-addon codes the clinic's claims carry for this patient and day; `None` when no
    /// claims are imported for the visit's month.
    pub claimed: Option<Vec<String>>,
}

/// What the claims say against what the engine grants, for one visit.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClaimCheck {
    /// The addon codes claimed that day.
    pub claimed: Vec<String>,
    /// Addons the engine grants that the claims lack (算定漏れ), by name, and their points.
    pub missing: Vec<String>,
    pub missing_points: u32,
    /// Claimed addon codes the engine does not grant (過剰算定), and their points.
    pub excess: Vec<String>,
    pub excess_points: u32,
}

impl ClaimCheck {
    pub fn agrees(&self) -> bool {
        self.missing.is_empty() && self.excess.is_empty()
    }

    /// Compares the engine's addons with the claimed codes. An addon whose code is not in the rules data
    /// cannot be compared (the agent reports only known codes, so it never appears in the claims): it is
    /// neither missing nor does it explain a claimed code.
    pub fn of(rules: &RuleSet, date: Date, granted: &[Granted], claimed: &[String]) -> Self {
        let unexplained: Vec<&String> =
            claimed.iter().filter(|c| !granted.iter().any(|g| g.code.as_deref() == Some(c.as_str()))).collect();
        let mut check = ClaimCheck { claimed: claimed.to_vec(), ..Default::default() };
        for g in granted {
            if g.code.as_ref().is_some_and(|code| !claimed.contains(code)) {
                check.missing.push(g.name.clone());
                check.missing_points += g.points;
            }
        }
        for code in unexplained {
            check.excess.push(code.clone());
            check.excess_points += rules.points_of_code(code, date).unwrap_or(0);
        }
        check
    }
}

/// A clinic-month's claims against the engine, in points (1 点 = 10 円).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClaimSummary {
    /// Visits whose month has claims imported.
    pub checked: u32,
    pub agrees: u32,
    pub missing: u32,
    pub missing_points: u32,
    pub excess: u32,
    pub excess_points: u32,
    /// Points of the reception addons the claims carry, and those the engine grants, on checked visits.
    pub claimed_points: u32,
    pub engine_points: u32,
}

impl std::ops::AddAssign for ClaimSummary {
    /// Adds another clinic-month's figures (the group's total).
    fn add_assign(&mut self, o: Self) {
        self.checked += o.checked;
        self.agrees += o.agrees;
        self.missing += o.missing;
        self.missing_points += o.missing_points;
        self.excess += o.excess;
        self.excess_points += o.excess_points;
        self.claimed_points += o.claimed_points;
        self.engine_points += o.engine_points;
    }
}

impl ClaimSummary {
    pub fn of(lines: &[Line]) -> Self {
        let mut s = Self::default();
        // Provisional lines (初診/再診 unsettled) are outside the totals, and so outside this comparison.
        for l in lines.iter().filter(|l| !l.provisional()) {
            let Some(c) = &l.claim else { continue };
            s.checked += 1;
            s.engine_points += l.points;
            s.claimed_points += l.points.saturating_sub(c.missing_points) + c.excess_points;
            if c.agrees() {
                s.agrees += 1;
            }
            if !c.missing.is_empty() {
                s.missing += 1;
                s.missing_points += c.missing_points;
            }
            if !c.excess.is_empty() {
                s.excess += 1;
                s.excess_points += c.excess_points;
            }
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReviewStatus {
    /// The clerk settled 初診/再診 (a fact we lacked) but has not reviewed the decision yet.
    Settled,
    Approved,
    Adjusted,
}

/// A clerk's review of one visit.
#[derive(Debug, Clone)]
pub struct Correction {
    pub status: ReviewStatus,
    pub kind: Option<VisitKind>,
    pub info_obtained: Option<bool>,
    pub exclude: bool,
    pub reason: String,
}

/// One visit of the month as reviewed. Serialisable: a closed month keeps its lines as they were.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Line {
    pub id: String,
    pub date: Date,
    #[serde(default)]
    pub patient_key: String,
    pub kind: VisitKind,
    /// False while 初診/再診 is our guess (区分未確定): the addon is then provisional, outside the totals.
    #[serde(default = "settled")]
    pub kind_settled: bool,
    pub myna: bool,
    pub info_obtained: bool,
    pub addons: Vec<Granted>,
    pub points: u32,
    /// Points from the derived facts, before corrections.
    pub derived_points: u32,
    pub reason: String,
    /// The reason in English; empty in snapshots of months closed before it was kept.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason_en: String,
    /// The rules the reason cites, for the month's legend.
    #[serde(default)]
    pub cited: Vec<String>,
    /// The clerk's note on the review, if any.
    #[serde(default)]
    pub note: String,
    pub status: Option<ReviewStatus>,
    pub excluded: bool,
    pub needs_review: bool,
    pub overridden: bool,
    pub not_claimable: bool,
    pub missed: bool,
    pub over: bool,
    /// Claimed against granted, once the month's レセ電 is imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimCheck>,
}

fn settled() -> bool {
    true
}

impl Line {
    /// An addon that depends on a guessed 初診 and so is not counted as certain.
    pub fn provisional(&self) -> bool {
        !self.kind_settled && !self.addons.is_empty()
    }
}

/// The lines whose addon waits on an unsettled 初診, and their points: what a month's total leaves out
/// until the clerk settles them.
pub fn provisional(lines: &[Line]) -> (usize, u32) {
    lines.iter().filter(|l| l.provisional()).fold((0, 0), |(n, p), l| (n + 1, p + l.points))
}

/// Counts and points per addon name, of the lines counted as certain.
pub type Totals = BTreeMap<String, (u32, u32)>;

fn visit(f: &Fact, kind: VisitKind, info: bool) -> Result<Visit, InputError> {
    if f.date < EARLIEST {
        return Err(InputError::new(
            format!("visit {}", f.id),
            "date",
            "before 2022-10-01, when the first reception addon began",
        ));
    }
    Ok(Visit {
        id: f.id.clone(),
        clinic: 0,
        patient: f.patient.clone(),
        date: f.date,
        kind,
        myna: f.myna,
        info_obtained: info,
    })
}

/// Reviews `month` of one clinic. `facts` should include the months before `month` that frequency
/// limits look back on.
pub fn review(
    rules: &RuleSet,
    clinic: &Clinic,
    facts: &[Fact],
    corrections: &HashMap<String, Correction>,
    month: YearMonth,
) -> Result<(Vec<Line>, Totals), InputError> {
    let derived_kind =
        |f: &Fact| f.known_kind.unwrap_or(if f.first_seen { VisitKind::First } else { VisitKind::Revisit });
    let run = |visits: Vec<Visit>| evaluate(rules, &EvalInput { clinics: vec![clinic.clone()], visits });
    let derived = run(facts.iter().map(|f| visit(f, derived_kind(f), f.info_obtained)).collect::<Result<_, _>>()?);
    let derived: HashMap<&str, &Decision> = derived.iter().map(|d| (d.visit.as_str(), d)).collect();

    let mut finals = Vec::new();
    let mut effective = HashMap::new();
    for f in facts {
        let c = corrections.get(&f.id);
        let kind = c.and_then(|c| c.kind).unwrap_or_else(|| derived_kind(f));
        let info = c.and_then(|c| c.info_obtained).unwrap_or(f.info_obtained);
        effective.insert(f.id.as_str(), (kind, info));
        if !c.is_some_and(|c| c.exclude) {
            finals.push(visit(f, kind, info)?);
        }
    }
    let finals = run(finals);
    let finals: HashMap<&str, &Decision> = finals.iter().map(|d| (d.visit.as_str(), d)).collect();

    let mut lines = Vec::new();
    let mut totals = Totals::new();
    for f in facts.iter().filter(|f| YearMonth::of(f.date) == month) {
        let c = corrections.get(&f.id);
        let (kind, info) = effective[f.id.as_str()];
        let derived_points = derived.get(f.id.as_str()).map(|d| d.addons.iter().map(|a| a.points).sum()).unwrap_or(0);
        let (addons, reason, cited) = match (c, finals.get(f.id.as_str())) {
            (Some(c), _) if c.exclude => (
                Vec::new(),
                Text::new(
                    format!("請求担当者の判断で算定しません（{}）", c.reason),
                    format!("Not claimed, as the billing clerk decided ({})", c.reason),
                ),
                Vec::new(),
            ),
            (_, Some(d)) => (d.addons.clone(), Text::new(&d.reason, &d.reason_en), d.cited.clone()),
            (_, None) => (Vec::new(), Text::default(), Vec::new()),
        };
        let settings_unmet = finals.get(f.id.as_str()).is_some_and(|d| d.settings_unmet);
        let points: u32 = addons.iter().map(|a| a.points).sum();
        let kind_settled = c.is_some_and(|c| c.kind.is_some()) || f.known_kind.is_some() || !f.first_seen;
        if kind_settled {
            for a in &addons {
                let t = totals.entry(a.name.clone()).or_default();
                t.0 += 1;
                t.1 += a.points;
            }
        }
        let overridden = c.is_some_and(|c| c.status == ReviewStatus::Adjusted);
        let claim = f.claimed.as_ref().map(|claimed| ClaimCheck::of(rules, f.date, &addons, claimed));
        lines.push(Line {
            id: f.id.clone(),
            date: f.date,
            patient_key: f.patient_key.clone(),
            kind,
            kind_settled,
            myna: f.myna,
            info_obtained: info,
            not_claimable: addons.is_empty(),
            // A マイナ保険証 visit that earns nothing because of what the clinic's record lacks (an unentered
            // 届出 or rate). Not one held back by a limit already used or a rate known to fall short: under
            // the 2026-06 rules a clinic below 30% would otherwise have every マイナ visit flagged.
            missed: addons.is_empty() && f.myna && !c.is_some_and(|c| c.exclude) && settings_unmet,
            over: overridden && points > derived_points,
            addons,
            points,
            derived_points,
            reason: reason.ja,
            reason_en: reason.en,
            cited,
            note: c.map(|c| c.reason.clone()).unwrap_or_default(),
            status: c.map(|c| c.status),
            excluded: c.is_some_and(|c| c.exclude),
            needs_review: c.is_none_or(|c| c.status == ReviewStatus::Settled),
            overridden,
            claim,
        });
    }
    lines.sort_by(|a, b| (a.date, &a.id).cmp(&(b.date, &b.id)));
    Ok((lines, totals))
}

#[cfg(test)]
mod tests {
    use onshi_domain::FacilityKind;
    use time::macros::date;

    use super::*;
    use crate::{ClinicSettings, RateBasis, Standard};

    fn clinic() -> Clinic {
        let mut settings = ClinicSettings::default();
        settings.set_standards(
            date!(2024 - 01 - 01),
            [Standard::OnlineClaims, Standard::Oqs, Standard::Notices].into_iter().collect(),
        );
        Clinic::new("c", FacilityKind::Medical, settings)
    }

    fn fact(id: &str, patient: &str, date: Date, first: bool, myna: bool) -> Fact {
        Fact {
            id: id.into(),
            patient: patient.into(),
            patient_key: patient.into(),
            date,
            first_seen: first,
            known_kind: None,
            myna,
            info_obtained: myna,
            claimed: None,
        }
    }

    #[test]
    fn claims_are_compared_by_code_and_addons_without_a_code_are_left_out() {
        let rules = RuleSet::builtin().unwrap();
        let day = date!(2026 - 07 - 01);
        let granted = |code: Option<&str>| Granted {
            name: "加算".into(),
            points: 2,
            code: code.map(str::to_owned),
            rule: "r".into(),
            source: String::new(),
            verified: false,
        };
        let agree = ClaimCheck::of(&rules, day, &[granted(Some("112709570"))], &["112709570".into()]);
        assert!(agree.agrees());
        let missing = ClaimCheck::of(&rules, day, &[granted(Some("112709570"))], &[]);
        assert_eq!((missing.missing.len(), missing.missing_points), (1, 2));
        let excess = ClaimCheck::of(&rules, day, &[], &["111704070".into()]);
        assert_eq!(excess.excess, vec!["111704070"]);
        assert!(excess.excess_points > 0, "points from the rules data");
        // No code in the rules data: not comparable, neither missing nor explaining a claimed code.
        let unknown = ClaimCheck::of(&rules, day, &[granted(None)], &["111704070".into()]);
        assert!(unknown.missing.is_empty());
        assert_eq!(unknown.excess, vec!["111704070"]);
    }

    #[test]
    fn corrections_change_facts_and_the_engine_recomputes() {
        let rules = RuleSet::builtin().unwrap();
        let month = YearMonth::parse("2025-03").unwrap();
        let facts = vec![
            fact("a", "p1", date!(2025 - 03 - 03), true, true),
            fact("b", "p1", date!(2025 - 03 - 10), false, true),
        ];
        let (lines, totals) = review(&rules, &clinic(), &facts, &HashMap::new(), month).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.needs_review));
        let first = &lines[0];
        assert!(!first.addons.is_empty(), "{}", first.reason);
        assert!(totals.values().map(|t| t.1).sum::<u32>() >= first.points);

        // The clerk says visit a was a 再診 and excludes nothing: the engine decides again.
        let mut corrections = HashMap::new();
        corrections.insert(
            "a".to_owned(),
            Correction {
                status: ReviewStatus::Adjusted,
                kind: Some(VisitKind::Revisit),
                info_obtained: None,
                exclude: false,
                reason: "紹介状なしの再診".into(),
            },
        );
        let (lines, _) = review(&rules, &clinic(), &facts, &corrections, month).unwrap();
        assert!(lines[0].overridden && !lines[0].needs_review);
        assert_eq!(lines[0].kind, VisitKind::Revisit);

        // Excluding a frees nothing it did not hold, and shows the clerk's reason.
        corrections.insert(
            "a".to_owned(),
            Correction {
                status: ReviewStatus::Adjusted,
                kind: None,
                info_obtained: None,
                exclude: true,
                reason: "算定要件を満たさない".into(),
            },
        );
        let (lines, _) = review(&rules, &clinic(), &facts, &corrections, month).unwrap();
        assert!(lines[0].excluded && lines[0].not_claimable && !lines[0].missed);
        assert!(lines[0].reason.contains("算定要件を満たさない"));
    }

    #[test]
    fn a_first_visit_in_our_data_is_unsettled_until_the_clinic_or_a_clerk_says() {
        let rules = RuleSet::builtin().unwrap();
        let month = YearMonth::parse("2025-03").unwrap();
        let facts = vec![fact("a", "p1", date!(2025 - 03 - 03), true, true)];
        let (lines, totals) = review(&rules, &clinic(), &facts, &HashMap::new(), month).unwrap();
        assert!(!lines[0].kind_settled && lines[0].provisional(), "{:?}", lines[0]);
        assert!(totals.is_empty(), "a guessed 初診 is not counted as certain: {totals:?}");

        // The clinic's own data says 初診: counted.
        let known = vec![Fact { known_kind: Some(VisitKind::First), ..facts[0].clone() }];
        let (lines, totals) = review(&rules, &clinic(), &known, &HashMap::new(), month).unwrap();
        assert!(lines[0].kind_settled && !lines[0].provisional());
        assert_eq!(totals.values().map(|t| t.1).sum::<u32>(), lines[0].points);

        // A clerk settles it as 再診: no reason needed, the 再診 addon counts, the decision awaits review.
        let mut corrections = HashMap::new();
        corrections.insert(
            "a".to_owned(),
            Correction {
                status: ReviewStatus::Settled,
                kind: Some(VisitKind::Revisit),
                info_obtained: None,
                exclude: false,
                reason: String::new(),
            },
        );
        let (lines, totals) = review(&rules, &clinic(), &facts, &corrections, month).unwrap();
        assert!(lines[0].kind_settled && !lines[0].overridden && lines[0].kind == VisitKind::Revisit);
        assert!(lines[0].needs_review);
        assert_eq!(totals.values().map(|t| t.1).sum::<u32>(), lines[0].points);
    }

    /// A clinic with every 届出 in 2026-11, judged on its usage rate: a rate on record below 30% holds back
    /// every マイナ保険証 visit without making it a missed claim; a rate not entered does make it one, for
    /// entering it could change the answer.
    #[test]
    fn a_rate_known_to_fall_short_is_no_missed_claim_but_a_rate_not_entered_is() {
        let rules = RuleSet::builtin().unwrap();
        let month = YearMonth::parse("2026-11").unwrap();
        let facts = vec![fact("a", "p1", date!(2026 - 11 - 04), false, true)];
        let clinic_with = |rate: Option<f64>| {
            let mut settings = ClinicSettings::default();
            settings.set_standards(date!(2024 - 01 - 01), Standard::ALL.into_iter().collect());
            if let Some(rate) = rate {
                for m in ["2026-05", "2026-06", "2026-07", "2026-08", "2026-09"] {
                    settings.set_usage_rate(RateBasis::Receipts, YearMonth::parse(m).unwrap(), rate);
                }
            }
            Clinic::new("c", FacilityKind::Medical, settings)
        };

        let (below, _) = review(&rules, &clinic_with(Some(0.29)), &facts, &HashMap::new(), month).unwrap();
        assert!(below[0].not_claimable && !below[0].missed, "{}", below[0].reason);
        assert!(below[0].reason.contains("未満"), "{}", below[0].reason);

        let (unknown, _) = review(&rules, &clinic_with(None), &facts, &HashMap::new(), month).unwrap();
        assert!(unknown[0].not_claimable && unknown[0].missed, "{}", unknown[0].reason);

        let (reached, _) = review(&rules, &clinic_with(Some(0.45)), &facts, &HashMap::new(), month).unwrap();
        assert!(!reached[0].not_claimable && !reached[0].missed, "{}", reached[0].reason);

        // The month's summary says the same once, in the visits' words.
        let verdict = |rate| {
            let v = crate::usage_verdicts(&rules, &clinic_with(rate), month);
            assert!(!v.is_empty() && v.iter().all(|x| x.reached == v[0].reached), "{v:?}");
            v.into_iter().next().unwrap()
        };
        assert_eq!(crate::usage_verdicts(&rules, &clinic_with(Some(0.29)), month).len(), 1, "said once");
        let v = verdict(Some(0.29));
        assert!(!v.reached && !v.rate_missing && below[0].reason.contains(&v.text.ja), "{v:?}");
        assert_eq!(v.addon, "電子的診療情報連携体制整備加算");
        let v = verdict(None);
        assert!(!v.reached && v.rate_missing && unknown[0].reason.contains(&v.text.ja), "{v:?}");
        let v = verdict(Some(0.45));
        assert!(v.reached && reached[0].reason.contains(&v.text.ja), "{v:?}");
        assert!(
            crate::usage_verdicts(&rules, &clinic_with(Some(0.45)), YearMonth::parse("2023-01").unwrap()).is_empty()
        );
        // Without the 届出 the visits say so; the month's check does not claim the rate makes them claimable.
        let mut bare = ClinicSettings::default();
        bare.set_usage_rate(RateBasis::Receipts, YearMonth::parse("2026-07").unwrap(), 0.45);
        let bare = Clinic::new("c", FacilityKind::Medical, bare);
        let v = crate::usage_verdicts(&rules, &bare, month);
        assert!(v.is_empty(), "{v:?}");
    }

    /// For the claims of 2024-10..2025-01 the オン資件数ベース figure may decide instead: a clinic below the
    /// level on レセプト件数ベース that has not entered it may still reach the level, so its record is
    /// what falls short (the month's check links to where rates are entered), not the clinic.
    #[test]
    fn an_oqs_based_rate_not_entered_could_still_reach_the_level() {
        let rules = RuleSet::builtin().unwrap();
        let month = YearMonth::parse("2024-11").unwrap();
        let clinic_with = |oqs: &[(&str, f64)]| {
            let mut settings = ClinicSettings::default();
            settings.set_standards(date!(2022 - 01 - 01), Standard::ALL.into_iter().collect());
            for m in ["2024-06", "2024-07", "2024-08"] {
                settings.set_usage_rate(RateBasis::Receipts, YearMonth::parse(m).unwrap(), 0.04);
            }
            for (m, rate) in oqs {
                settings.set_usage_rate(RateBasis::Oqs, YearMonth::parse(m).unwrap(), *rate);
            }
            Clinic::new("c", FacilityKind::Medical, settings)
        };
        let verdict = |oqs: &[(&str, f64)]| {
            let v = crate::usage_verdicts(&rules, &clinic_with(oqs), month);
            assert_eq!(v.len(), 1, "{v:?}");
            v.into_iter().next().unwrap()
        };
        let v = verdict(&[]);
        assert!(!v.reached && v.rate_missing, "{v:?}");
        assert!(v.text.ja.contains("オン資件数ベースの利用率（2024-07・2024-08・2024-09、未入力）"), "{}", v.text.ja);
        assert!(v.text.en.contains("per オン資 checks (2024-07, 2024-08, 2024-09, not entered)"), "{}", v.text.en);
        let v = verdict(&[("2024-07", 0.03), ("2024-08", 0.03), ("2024-09", 0.04)]);
        assert!(!v.reached && !v.rate_missing, "every figure on record falls short: {v:?}");
        let v = verdict(&[("2024-09", 0.16)]);
        assert!(v.reached && v.text.ja.contains("オン資件数ベース"), "{v:?}");

        // The visit says the same: DX is held back for want of a figure, not for a known shortfall.
        let facts = vec![fact("a", "p1", date!(2024 - 11 - 05), true, true)];
        let (lines, _) = review(&rules, &clinic_with(&[]), &facts, &HashMap::new(), month).unwrap();
        assert!(lines[0].reason.contains("未入力）が基準以上なら算定可"), "{}", lines[0].reason);
        // 医療情報取得加算 still applies, so the visit is not a 算定漏れ candidate: the month's check asks for
        // the figure instead of every マイナ保険証 visit.
        assert!(!lines[0].not_claimable && !lines[0].missed, "{:?}", lines[0]);
    }

    /// The second マイナ保険証 visit within a limit's three months earns nothing, and rightly: not a 算定漏れ.
    #[test]
    fn a_limit_already_used_is_no_missed_claim() {
        let rules = RuleSet::builtin().unwrap();
        let facts = vec![
            fact("a", "p1", date!(2025 - 03 - 03), false, true),
            fact("b", "p1", date!(2025 - 03 - 17), false, true),
        ];
        let (lines, _) =
            review(&rules, &clinic(), &facts, &HashMap::new(), YearMonth::parse("2025-03").unwrap()).unwrap();
        assert!(!lines[0].not_claimable, "{}", lines[0].reason);
        assert!(lines[1].not_claimable && !lines[1].missed, "{}", lines[1].reason);
        assert!(lines[1].reason.contains("算定済み"), "{}", lines[1].reason);
    }

    #[test]
    fn a_clinic_without_its_standards_shows_missed_claims() {
        let rules = RuleSet::builtin().unwrap();
        let bare = Clinic::new("c", FacilityKind::Medical, ClinicSettings::default());
        let facts = vec![fact("a", "p1", date!(2025 - 03 - 03), true, true)];
        let (lines, totals) =
            review(&rules, &bare, &facts, &HashMap::new(), YearMonth::parse("2025-03").unwrap()).unwrap();
        assert!(lines[0].not_claimable && lines[0].missed, "{}", lines[0].reason);
        assert!(totals.is_empty());
    }
}

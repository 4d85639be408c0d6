//! The rule set: parsed from TOML and checked before any visit is evaluated.

use std::collections::BTreeSet;

use onshi_domain::FacilityKind;
use serde::Deserialize;
use time::Date;

use onshi_domain::YearMonth;

use crate::input::{Standard, VisitKind};

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("rules file: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("rule {id}: {reason}")]
    Invalid { id: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Always,
    /// マイナ保険証 used and 診療情報 obtained through オン資.
    InfoViaMyna,
    NotInfoViaMyna,
    /// 診療情報 obtained through オン資 or provided by another clinic.
    InfoObtained,
    NotInfoObtained,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum VisitSel {
    #[serde(rename = "初診")]
    First,
    #[serde(rename = "再診")]
    Revisit,
    #[serde(rename = "any")]
    Any,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    name: String,
    facility: Vec<FacilityKind>,
    from: String,
    to: Option<String>,
    visit: VisitSel,
    family: String,
    limit_group: String,
    every_months: u8,
    points: u32,
    condition: Condition,
    #[serde(default)]
    requires: Vec<Standard>,
    #[serde(default)]
    requires_any: Vec<Standard>,
    usage_min: Option<f64>,
    usage_min_pediatric: Option<f64>,
    #[serde(default)]
    usage_window: Vec<i32>,
    usage_earliest: Option<String>,
    /// Months (offsets) whose オン資件数ベース rate may be used instead, where the sources allow it.
    #[serde(default)]
    usage_window_oqs: Vec<i32>,
    code: Option<String>,
    #[serde(default = "yes")]
    verified_code: bool,
    #[serde(default = "yes")]
    verified: bool,
    note: Option<String>,
    /// The note in English; required wherever there is a note, so an English page never shows one in
    /// Japanese only.
    note_en: Option<String>,
    source: String,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone)]
pub struct UsageRequirement {
    pub min: f64,
    pub min_pediatric: Option<f64>,
    pub window: Vec<i32>,
    pub earliest: Option<YearMonth>,
    /// The オン資件数ベース alternative's window; empty where there is none.
    pub oqs_window: Vec<i32>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub facility: Vec<FacilityKind>,
    pub from: Date,
    pub to: Option<Date>,
    visit: VisitSel,
    pub family: String,
    pub limit_group: String,
    pub every_months: u8,
    pub points: u32,
    pub condition: Condition,
    pub requires: BTreeSet<Standard>,
    pub requires_any: BTreeSet<Standard>,
    pub usage: Option<UsageRequirement>,
    pub code: Option<String>,
    pub code_verified: bool,
    pub verified: bool,
    pub note: Option<String>,
    pub note_en: Option<String>,
    pub source: String,
}

impl Rule {
    pub fn applies_to(&self, kind: FacilityKind, date: Date, visit: VisitKind) -> bool {
        self.facility.contains(&kind)
            && self.from <= date
            && self.to.is_none_or(|to| date <= to)
            && match self.visit {
                VisitSel::Any => true,
                VisitSel::First => visit == VisitKind::First,
                VisitSel::Revisit => visit == VisitKind::Revisit,
            }
    }

    pub fn frequency_label(&self) -> String {
        match self.every_months {
            1 => "月1回".to_owned(),
            n => format!("{n}月に1回"),
        }
    }

    pub fn frequency_label_en(&self) -> String {
        match self.every_months {
            1 => "once a month".to_owned(),
            n => format!("once in {n} months"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// SHA-256 of the rules file: the rule-data version a closed month records.
    pub version: String,
}

fn date(id: &str, field: &str, s: &str) -> Result<Date, RulesError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &format)
        .map_err(|_| RulesError::Invalid { id: id.to_owned(), reason: format!("{field} is not YYYY-MM-DD") })
}

impl RuleSet {
    /// The points of the addon with レセ電 code `code` in force on `date`, if the rules data knows it.
    pub fn points_of_code(&self, code: &str, date: Date) -> Option<u32> {
        self.rules
            .iter()
            .find(|r| r.code.as_deref() == Some(code) && r.from <= date && r.to.is_none_or(|to| date <= to))
            .or_else(|| self.rules.iter().find(|r| r.code.as_deref() == Some(code)))
            .map(|r| r.points)
    }

    pub fn builtin() -> Result<Self, RulesError> {
        Self::from_toml(crate::BUILTIN_RULES)
    }

    /// Parses and validates a rules file: ids unique, dates ordered, limits and rates in range, codes of
    /// nine digits, a usage window wherever a usage minimum is set, and one frequency per limit group.
    pub fn from_toml(text: &str) -> Result<Self, RulesError> {
        let raw: RawFile = toml::from_str(text)?;
        let mut rules = Vec::new();
        let mut ids = BTreeSet::new();
        for r in raw.rule {
            let invalid = |reason: &str| RulesError::Invalid { id: r.id.clone(), reason: reason.to_owned() };
            if !ids.insert(r.id.clone()) {
                return Err(invalid("id appears twice"));
            }
            let from = date(&r.id, "from", &r.from)?;
            let to = r.to.as_deref().map(|t| date(&r.id, "to", t)).transpose()?;
            if to.is_some_and(|to| to < from) {
                return Err(invalid("`to` is before `from`"));
            }
            if !matches!(r.every_months, 1 | 2 | 3 | 6 | 12) {
                return Err(invalid("every_months must be 1, 2, 3, 6 or 12"));
            }
            if r.facility.is_empty() || r.name.is_empty() || r.source.is_empty() || r.points == 0 {
                return Err(invalid("facility, name, source and points are required"));
            }
            if r.note.is_some() != r.note_en.is_some() {
                return Err(invalid("note and note_en go together (the note in Japanese and in English)"));
            }
            if let Some(code) = &r.code
                && (code.len() != 9 || !code.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(invalid("code must be nine digits"));
            }
            let usage = match r.usage_min {
                Some(min) => {
                    if !(0.0..=1.0).contains(&min) || r.usage_min_pediatric.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                        return Err(invalid("usage minimums are rates between 0 and 1"));
                    }
                    if r.usage_window.is_empty() || r.usage_window.iter().chain(&r.usage_window_oqs).any(|m| *m >= 0) {
                        return Err(invalid(
                            "a usage minimum needs a usage_window of earlier months (negative offsets)",
                        ));
                    }
                    let earliest = r
                        .usage_earliest
                        .as_deref()
                        .map(|s| YearMonth::parse(s).ok_or_else(|| invalid("usage_earliest is YYYY-MM")))
                        .transpose()?;
                    Some(UsageRequirement {
                        min,
                        min_pediatric: r.usage_min_pediatric,
                        window: r.usage_window.clone(),
                        earliest,
                        oqs_window: r.usage_window_oqs.clone(),
                    })
                }
                None if !r.usage_window.is_empty()
                    || !r.usage_window_oqs.is_empty()
                    || r.usage_min_pediatric.is_some() =>
                {
                    return Err(invalid("usage_window without usage_min"));
                }
                None => None,
            };
            rules.push(Rule {
                id: r.id,
                name: r.name,
                facility: r.facility,
                from,
                to,
                visit: r.visit,
                family: r.family,
                limit_group: r.limit_group,
                every_months: r.every_months,
                points: r.points,
                condition: r.condition,
                requires: r.requires.into_iter().collect(),
                requires_any: r.requires_any.into_iter().collect(),
                usage,
                code: r.code,
                code_verified: r.verified_code,
                verified: r.verified,
                note: r.note,
                note_en: r.note_en,
                source: r.source,
            });
        }
        for a in &rules {
            if let Some(b) = rules.iter().find(|b| {
                b.limit_group == a.limit_group
                    && b.every_months != a.every_months
                    && b.from <= a.to.unwrap_or(Date::MAX)
                    && a.from <= b.to.unwrap_or(Date::MAX)
            }) {
                return Err(RulesError::Invalid {
                    id: a.id.clone(),
                    reason: format!(
                        "limit group {} has another frequency in rule {} at the same time",
                        a.limit_group, b.id
                    ),
                });
            }
        }
        let version = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()));
        Ok(Self { rules, version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn the_shipped_rules_are_valid() {
        let set = RuleSet::builtin().unwrap();
        assert!(set.rules.len() >= 40);
    }

    /// docs/rules.md lists every rule with its points and status, so the next engineer (and a clerk's
    /// question) finds each one with its source; regenerate its table when the data changes.
    #[test]
    fn docs_list_every_rule_with_its_points_and_status() {
        let docs = include_str!("../../../docs/rules.md");
        for rule in RuleSet::builtin().unwrap().rules {
            let row = docs
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", rule.id)))
                .unwrap_or_else(|| panic!("docs/rules.md has no row for {}", rule.id));
            assert!(row.contains(&format!("| {} |", rule.points)), "{}: points differ in docs/rules.md", rule.id);
            let status = if rule.verified { "| verified |" } else { "| **unverified** |" };
            assert!(row.contains(status), "{}: status differs in docs/rules.md", rule.id);
        }
    }

    #[test]
    fn every_day_since_2022_10_has_a_medical_first_visit_rule() {
        // 医科 初診 has had a reception addon on every day since 2022-10-01; a gap in the data would be a bug.
        let set = RuleSet::builtin().unwrap();
        let mut day = date!(2022 - 10 - 01);
        while day <= date!(2027 - 12 - 31) {
            assert!(
                set.rules.iter().any(|r| r.applies_to(FacilityKind::Medical, day, VisitKind::First)),
                "no 医科 初診 rule on {day}"
            );
            day = day.next_day().unwrap();
        }
    }

    #[test]
    fn broken_rule_files_are_refused_with_the_rule_named() {
        let base = r#"[[rule]]
id = "x"
name = "加算"
facility = ["医科"]
from = "2024-06-01"
to = "2024-05-01"
visit = "初診"
family = "f"
limit_group = "g"
every_months = 1
points = 1
condition = "always"
source = "s"
"#;
        let err = RuleSet::from_toml(base).unwrap_err().to_string();
        assert!(err.contains("rule x") && err.contains("before"), "{err}");
        assert!(
            RuleSet::from_toml(
                &base.replace("2024-05-01", "2024-07-01").replace("every_months = 1", "every_months = 4")
            )
            .is_err()
        );
        assert!(
            RuleSet::from_toml(
                &base.replace("2024-05-01", "2024-07-01").replace("points = 1", "points = 1\nusage_min = 0.3")
            )
            .is_err()
        );
        // A note without its English, which the English pages would show in Japanese.
        let valid = base.replace("2024-05-01", "2024-07-01");
        let err = RuleSet::from_toml(&valid.replace("source = ", "note = \"注\"\nsource = ")).unwrap_err().to_string();
        assert!(err.contains("rule x") && err.contains("note_en"), "{err}");
        let both = valid.replace("source = ", "note = \"注\"\nnote_en = \"Note\"\nsource = ");
        assert_eq!(RuleSet::from_toml(&both).unwrap().rules[0].note_en.as_deref(), Some("Note"));
    }
}

/// A マイナ保険証利用率 level that some addon requires on a date (for dashboards: "which tier would this
/// rate reach").
#[derive(Debug, Clone, PartialEq)]
pub struct UsageTier {
    pub min: f64,
    /// The addons that need at least `min`, e.g. "医療DX推進体制整備加算1".
    pub addons: Vec<String>,
}

impl RuleSet {
    /// The usage levels required on `date` for `kind` (初診 rules), highest first.
    pub fn usage_tiers(&self, kind: FacilityKind, date: Date) -> Vec<UsageTier> {
        let mut tiers: Vec<UsageTier> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.applies_to(kind, date, VisitKind::First)) {
            let Some(usage) = &rule.usage else { continue };
            match tiers.iter_mut().find(|t| (t.min - usage.min).abs() < 1e-9) {
                Some(t) if !t.addons.contains(&rule.name) => t.addons.push(rule.name.clone()),
                Some(_) => {}
                None => tiers.push(UsageTier { min: usage.min, addons: vec![rule.name.clone()] }),
            }
        }
        tiers.sort_by(|a, b| b.min.total_cmp(&a.min));
        tiers
    }
}

//! Evaluation. Visits are processed per clinic and patient in date order (初診 before 再診 on the same
//! day, then by id), whatever the input order, so the result depends only on the set of visits.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use time::Date;

use onshi_domain::YearMonth;

use crate::input::{Clinic, EvalInput, RateBasis, Standard, Visit, VisitKind};
use crate::rules::{Condition, Rule, RuleSet};
use crate::text::Text;

/// An addon claimable for a visit.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Granted {
    pub name: String,
    pub points: u32,
    pub code: Option<String>,
    pub rule: String,
    pub source: String,
    /// False when the rule (or its code) could not be confirmed against official sources.
    pub verified: bool,
}

/// The decision for one visit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub visit: String,
    pub addons: Vec<Granted>,
    pub reason: String,
    /// The same reason in English, for English pages (not part of the `onshi rules eval` output).
    #[serde(skip_serializing)]
    pub reason_en: String,
    /// The rules the reason cites (its 【id】s), in order: what a legend explains. Not part of the
    /// `onshi rules eval` output, whose reason already names them.
    #[serde(skip_serializing)]
    pub cited: Vec<String>,
    /// Nothing granted, and what stood in the way is the clinic's own record here: a 施設基準 not entered,
    /// or a usage rate not entered that could reach the threshold. If that record is incomplete, the visit
    /// is a missed claim; a limit already used, a rate known to fall short, or a condition of the visit
    /// itself is not.
    #[serde(skip_serializing)]
    pub settings_unmet: bool,
}

enum Outcome {
    Pass(Text),
    Fail(Text, Unmet),
}

/// A usage level reached (the sentence a reason quotes), or why not.
type UsageOutcome = Result<Text, (Text, Unmet)>;

/// What a failed rule lacked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unmet {
    /// Something the clinic enters: its 施設基準, its usage rates.
    Settings,
    /// A fact of the visit or a figure on record that falls short.
    Fact,
}

fn pct(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

fn condition_text(c: Condition, v: &Visit) -> Result<Text, Text> {
    let via_myna = v.myna && v.info_obtained;
    let t = Text::new;
    match c {
        Condition::Always => Ok(Text::default()),
        Condition::InfoViaMyna if via_myna => Ok(t(
            "マイナ保険証によりオンライン資格確認で診療情報を取得",
            "medical information obtained through オン資 with a マイナ保険証",
        )),
        Condition::InfoViaMyna => {
            Err(t("マイナ保険証による診療情報の取得がない", "no medical information obtained with a マイナ保険証"))
        }
        Condition::NotInfoViaMyna if !via_myna => {
            Ok(t("マイナ保険証による診療情報の取得なし", "no medical information obtained with a マイナ保険証"))
        }
        Condition::NotInfoViaMyna => Err(t(
            "マイナ保険証で診療情報を取得している（低い区分が該当）",
            "medical information obtained with a マイナ保険証 (the lower tier applies)",
        )),
        Condition::InfoObtained if v.info_obtained => {
            Ok(t("オンライン資格確認等で診療情報を取得", "medical information obtained through オン資 or otherwise"))
        }
        Condition::InfoObtained => Err(t("診療情報の取得がない", "no medical information obtained")),
        Condition::NotInfoObtained if !v.info_obtained => {
            Ok(t("診療情報の取得なし", "no medical information obtained"))
        }
        Condition::NotInfoObtained => {
            Err(t("診療情報を取得している（低い区分が該当）", "medical information obtained (the lower tier applies)"))
        }
    }
}

/// The 施設基準 `rule` needs that are not in `met`, as a reason words it; None when all are there.
fn standards_gap(rule: &Rule, met: &BTreeSet<Standard>) -> Option<Text> {
    let labels = |list: &[&Standard], en: bool| -> String {
        let words: Vec<&str> = list.iter().map(|s| s.label_in(en)).collect();
        words.join(if en { ", " } else { "、" })
    };
    let missing: Vec<&Standard> = rule.requires.iter().filter(|s| !met.contains(s)).collect();
    if !missing.is_empty() {
        return Some(Text::new(
            format!("施設基準（{}）を満たしていない", labels(&missing, false)),
            format!("施設基準 not met ({})", labels(&missing, true)),
        ));
    }
    if !rule.requires_any.is_empty() && !rule.requires_any.iter().any(|s| met.contains(s)) {
        let any: Vec<&Standard> = rule.requires_any.iter().collect();
        return Some(Text::new(
            format!("（{}）のいずれも満たしていない", labels(&any, false)),
            format!("none of ({}) met", labels(&any, true)),
        ));
    }
    None
}

fn check(rule: &Rule, clinic: &Clinic, v: &Visit) -> Outcome {
    let met = clinic.standards_on(v.date);
    if let Some(gap) = standards_gap(rule, &met) {
        return Outcome::Fail(gap, Unmet::Settings);
    }
    let mut why = match condition_text(rule.condition, v) {
        Ok(text) => text,
        Err(text) => return Outcome::Fail(text, Unmet::Fact),
    };
    if let Some(usage) = &rule.usage {
        let usage_text =
            match usage_check(usage, clinic, YearMonth::of(v.date), met.contains(&Standard::PediatricSpecial)) {
                Ok(text) => text,
                Err((text, unmet)) => return Outcome::Fail(text, unmet),
            };
        why = if why.is_empty() { usage_text } else { Text::join(&[why, usage_text], "、", ", ") };
    }
    Outcome::Pass(if why.is_empty() {
        Text::new("施設基準を満たす", "施設基準 met")
    } else {
        Text::new(format!("施設基準を満たし、{}", why.ja), format!("施設基準 met, {}", why.en))
    })
}

/// Whether the clinic's マイナ保険証利用率 reaches `usage`'s level for the claims of `month`: the sentence
/// a reason quotes, or why not. One place for the visit decisions and the month's summary
/// (`usage_verdicts`).
fn usage_check(
    usage: &crate::rules::UsageRequirement,
    clinic: &Clinic,
    month: YearMonth,
    pediatric: bool,
) -> UsageOutcome {
    let min = usage.min_for(pediatric);
    let (best, missing) = crate::usage::best_of(&usage.deciding(month), &clinic.usage_rates);
    // Where the sources allow the オン資件数ベース figure instead (2024-10..2025-01), the better of the
    // two counts; a clinic that entered only one of them is judged on that one.
    let (oqs, oqs_missing) = if usage.oqs_window.is_empty() {
        (None, Vec::new())
    } else {
        crate::usage::best_of(&usage.deciding_oqs(month), &clinic.oqs_usage_rates)
    };
    let special = if pediatric && usage.min_pediatric.is_some() {
        Text::new("（小児科特例）", " (pediatric exception)")
    } else {
        Text::default()
    };
    let reached = [(best, RateBasis::Receipts), (oqs, RateBasis::Oqs)]
        .into_iter()
        .filter_map(|(b, basis)| b.map(|(m, r)| (m, r, basis)))
        .find(|(_, r, _)| crate::usage::reaches(*r, min));
    let missing: Vec<String> = missing.iter().map(|m| m.to_string()).collect();
    // The figure to quote when nothing reaches: the higher of the two (the receipt basis on a tie).
    let highest = [best, oqs].into_iter().flatten().reduce(|a, b| if b.1 > a.1 { b } else { a });
    match (reached, highest) {
        (Some((m, r, basis)), _) => {
            let (ja, en) = if basis == RateBasis::Oqs {
                (format!("、{}", basis.label()), format!(", {}", basis.label_en()))
            } else {
                (String::new(), String::new())
            };
            Ok(Text::new(
                format!("マイナ保険証利用率 {}（{m}{ja}）が基準{}{}以上", pct(r), special.ja, pct(min)),
                format!("マイナ保険証 usage rate {} ({m}{en}) reaches the level{} of {}", pct(r), special.en, pct(min)),
            ))
        }
        (None, None) => Err((
            Text::new(
                format!("マイナ保険証利用率（{}）が未入力のため判定できない", missing.join("・")),
                format!("マイナ保険証 usage rate ({}) not entered, so it cannot be decided", missing.join(", ")),
            ),
            Unmet::Settings,
        )),
        (None, Some((best_month, best_rate))) => {
            let mut text = Text::new(
                format!(
                    "マイナ保険証利用率 {}（{best_month}、対象月で最高）が基準{}{}未満",
                    pct(best_rate),
                    special.ja,
                    pct(min)
                ),
                format!(
                    "マイナ保険証 usage rate {} ({best_month}, the highest of the months that count) is below the level{} of {}",
                    pct(best_rate),
                    special.en,
                    pct(min)
                ),
            );
            // A figure not entered could still reach the level, on either basis: then the clinic's record
            // is what falls short (a 算定漏れ candidate), not the clinic.
            let oqs_missing: Vec<String> = oqs_missing.iter().map(|m| m.to_string()).collect();
            let unmet = if missing.is_empty() && oqs_missing.is_empty() { Unmet::Fact } else { Unmet::Settings };
            if !missing.is_empty() {
                // Where both bases count, say which one's months are missing.
                let (ja, en) = if usage.oqs_window.is_empty() {
                    (String::new(), String::new())
                } else {
                    (RateBasis::Receipts.label().to_owned() + "の", format!(" ({})", RateBasis::Receipts.label_en()))
                };
                text.push(&Text::new(
                    format!("。{ja}未入力の月（{}）の利用率が基準以上なら算定可", missing.join("・")),
                    format!(". Claimable if the rate{en} of a month not entered ({}) reaches it", missing.join(", ")),
                ));
            }
            if !oqs_missing.is_empty() {
                text.push(&Text::new(
                    format!(
                        "。{}の利用率（{}、未入力）が基準以上なら算定可",
                        RateBasis::Oqs.label(),
                        oqs_missing.join("・")
                    ),
                    format!(
                        ". Claimable if the rate {} ({}, not entered) reaches it",
                        RateBasis::Oqs.label_en(),
                        oqs_missing.join(", ")
                    ),
                ));
            }
            Err((text, unmet))
        }
    }
}

/// How one addon's usage requirement stands for a month's claims at one clinic.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageVerdict {
    /// The addon as the month's claims name it, e.g. "電子的診療情報連携体制整備加算".
    pub addon: String,
    pub rule: String,
    pub reached: bool,
    /// A rate is missing that could change the answer: entering it is the clerk's next step.
    pub rate_missing: bool,
    /// The sentence the visits' reasons quote.
    pub text: Text,
}

/// The usage verdict of every addon family that requires a マイナ保険証利用率 for the claims of `month` at
/// `clinic` (the rules and 届出 in force on the month's first day), as the visit decisions reach it: per
/// family, among the rules whose 施設基準 the clinic has, the highest-point one whose level is reached,
/// else the lowest-point one's shortfall; a sentence two families share is given once. It names the addon
/// without its tier (which a visit's own conditions may lower) and leaves out a family whose 届出 are
/// missing (each visit says which). Empty when no addon of the month asks for a rate.
pub fn usage_verdicts(rules: &RuleSet, clinic: &Clinic, month: YearMonth) -> Vec<UsageVerdict> {
    let day = month.first_day();
    let met = clinic.standards_on(day);
    let pediatric = met.contains(&Standard::PediatricSpecial);
    let mut families: BTreeMap<&str, Vec<&Rule>> = BTreeMap::new();
    for rule in &rules.rules {
        let applies = [VisitKind::First, VisitKind::Revisit].into_iter().any(|k| rule.applies_to(clinic.kind, day, k));
        if applies && rule.usage.is_some() && standards_gap(rule, &met).is_none() {
            families.entry(rule.family.as_str()).or_default().push(rule);
        }
    }
    let mut verdicts = Vec::new();
    for candidates in families.values() {
        let outcomes: Vec<(&Rule, UsageOutcome)> = candidates
            .iter()
            .filter_map(|r| r.usage.as_ref().map(|u| (*r, usage_check(u, clinic, month, pediatric))))
            .collect();
        let best = outcomes.iter().filter(|(_, o)| o.is_ok()).max_by_key(|(r, _)| r.points);
        let shown = best.or_else(|| outcomes.iter().min_by_key(|(r, _)| r.points));
        if let Some((rule, outcome)) = shown {
            let (text, reached, rate_missing) = match outcome {
                Ok(text) => (text.clone(), true, false),
                Err((text, unmet)) => (text.clone(), false, *unmet == Unmet::Settings),
            };
            let addon = rule.name.trim_end_matches(char::is_numeric).to_owned();
            // The 初診 and 再診 families of one addon usually fall short in the same words: say it once.
            if !verdicts.iter().any(|v: &UsageVerdict| v.addon == addon && v.text == text) {
                verdicts.push(UsageVerdict { addon, rule: rule.id.clone(), reached, rate_missing, text });
            }
        }
    }
    verdicts
}

/// (clinic index, patient, limit group): whose claims a frequency limit counts.
type ClaimKey<'a> = (usize, &'a str, &'a str);

/// Evaluates every visit; the result is in input order.
pub fn evaluate(rules: &RuleSet, input: &EvalInput) -> Vec<Decision> {
    let mut order: Vec<usize> = (0..input.visits.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&input.visits[a], &input.visits[b]);
        (x.clinic, &x.patient, x.date, x.kind, &x.id).cmp(&(y.clinic, &y.patient, y.date, y.kind, &y.id))
    });
    let mut claims: HashMap<ClaimKey<'_>, Vec<(Date, String)>> = HashMap::new();
    let mut decisions: Vec<Option<Decision>> = vec![None; input.visits.len()];
    for i in order {
        let v = &input.visits[i];
        let clinic = &input.clinics[v.clinic];
        let mut families: BTreeMap<usize, (&str, Vec<&Rule>)> = BTreeMap::new();
        for (position, rule) in rules.rules.iter().enumerate() {
            if rule.applies_to(clinic.kind, v.date, v.kind) {
                let first = rules.rules.iter().position(|r| r.family == rule.family).unwrap_or(position);
                families.entry(first).or_insert((rule.family.as_str(), Vec::new())).1.push(rule);
            }
        }
        let mut addons = Vec::new();
        let mut reasons: Vec<Text> = Vec::new();
        let mut cited = Vec::new();
        let mut settings_unmet = false;
        if families.is_empty() {
            reasons.push(Text::new(
                format!("{}・{}・{}に該当する加算はありません", v.date, clinic.kind.label(), v.kind.label()),
                format!("{} · {} · {}: no reception addon applies", v.date, clinic.kind.label(), v.kind.label()),
            ));
        }
        for (_, (_, candidates)) in families {
            let mut best: Option<(&Rule, Text)> = None;
            let mut fail: Option<(&Rule, Text, Unmet)> = None;
            for rule in &candidates {
                match check(rule, clinic, v) {
                    Outcome::Pass(why) => {
                        if best.as_ref().is_none_or(|(b, _)| rule.points > b.points) {
                            best = Some((rule, why));
                        }
                    }
                    // The lowest-point rule's failure explains best why nothing applies.
                    Outcome::Fail(why, unmet) => {
                        if fail.as_ref().is_none_or(|(f, _, _)| rule.points <= f.points) {
                            fail = Some((rule, why, unmet));
                        }
                    }
                }
            }
            match best {
                Some((rule, why)) => {
                    let key = (v.clinic, v.patient.as_str(), rule.limit_group.as_str());
                    let month = YearMonth::of(v.date);
                    let earlier = claims.get(&key).and_then(|c| {
                        c.iter().rev().find(|(d, _)| month.since(YearMonth::of(*d)) < i32::from(rule.every_months))
                    });
                    cited.push(rule.id.clone());
                    if let Some((date, name)) = earlier {
                        reasons.push(Text::new(
                            format!(
                                "{}: {date}に{name}を算定済みのため算定不可（{}）【{}】",
                                rule.name,
                                rule.frequency_label(),
                                rule.id
                            ),
                            format!(
                                "{}: not claimable, {name} already claimed on {date} ({})【{}】",
                                rule.name,
                                rule.frequency_label_en(),
                                rule.id
                            ),
                        ));
                        continue;
                    }
                    claims.entry(key).or_default().push((v.date, rule.name.clone()));
                    let mut line = Text::new(
                        format!(
                            "{}（{}点）を算定: {}（{}）【{}】",
                            rule.name,
                            rule.points,
                            why.ja,
                            rule.frequency_label(),
                            rule.id
                        ),
                        format!(
                            "{} ({} point{}) claimed: {} ({})【{}】",
                            rule.name,
                            rule.points,
                            if rule.points == 1 { "" } else { "s" },
                            why.en,
                            rule.frequency_label_en(),
                            rule.id
                        ),
                    );
                    // The rule's note is read once, in the month's legend of cited rules, not on every visit.
                    if !rule.verified {
                        line.push(&Text::new("※未確認ルール", " ※unverified rule"));
                    }
                    reasons.push(line);
                    addons.push(Granted {
                        name: rule.name.clone(),
                        points: rule.points,
                        code: rule.code.clone(),
                        rule: rule.id.clone(),
                        source: rule.source.clone(),
                        verified: rule.verified && rule.code_verified,
                    });
                }
                None => {
                    if let Some((rule, why, unmet)) = fail {
                        settings_unmet |= unmet == Unmet::Settings;
                        cited.push(rule.id.clone());
                        let name = rule.name.trim_end_matches(char::is_numeric);
                        reasons.push(Text::new(
                            format!("{name}: 算定不可 — {}【{}】", why.ja, rule.id),
                            format!("{name}: not claimable — {}【{}】", why.en, rule.id),
                        ));
                    }
                }
            }
        }
        settings_unmet &= addons.is_empty();
        let reason = Text::join(&reasons, "。", ". ");
        decisions[i] = Some(Decision {
            visit: v.id.clone(),
            addons,
            reason: reason.ja,
            reason_en: reason.en,
            cited,
            settings_unmet,
        });
    }
    decisions.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn decisions_do_not_depend_on_the_order_visits_arrive_in() {
        let rules = RuleSet::builtin().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut visits = Vec::new();
        for i in 0..300 {
            let day = time::Date::from_calendar_date(2024, time::Month::June, 1).unwrap()
                + time::Duration::days(rng.random_range(0..800));
            visits.push(serde_json::json!({
                "id": format!("v{i}"), "clinic": "c1", "patient": format!("p{}", rng.random_range(0..15)),
                "date": day.to_string(), "kind": if rng.random_bool(0.3) { "初診" } else { "再診" },
                "myna": rng.random_bool(0.5), "info_obtained": rng.random_bool(0.5)
            }));
        }
        let clinic = serde_json::json!({"id": "c1", "facility_kind": "医科",
            "standards": [{"from": "2022-01-01", "online_claims": true, "oqs": true, "notices": true, "e_prescription": true}],
            "usage_rates": {"2024-07": 0.2, "2024-10": 0.35, "2025-01": 0.5, "2025-07": 0.62, "2025-12": 0.72, "2026-01": 0.4}});
        let decide = |visits: &[serde_json::Value]| {
            let input = serde_json::json!({"clinics": [clinic.clone()], "visits": visits});
            let input = EvalInput::from_json(input.to_string().as_bytes()).unwrap();
            let mut d = evaluate(&rules, &input);
            d.sort_by(|a, b| a.visit.cmp(&b.visit));
            d
        };
        let expected = decide(&visits);
        assert!(expected.iter().any(|d| !d.addons.is_empty()));
        for _ in 0..20 {
            visits.shuffle(&mut rng);
            assert_eq!(decide(&visits), expected);
        }
    }
}

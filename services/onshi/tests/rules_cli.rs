//! The reception-addon rules, scenario by scenario, through the `onshi rules eval` contract: JSON in on
//! stdin, one decision per visit out. Each scenario is a clinic, some visits, and the addons each visit
//! must get; together they walk every period since 2022-10 across its boundaries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

const ALL: &[&str] = &[
    "online_claims",
    "free_statements",
    "oqs",
    "consult_room_view",
    "portal_consult",
    "notices",
    "renkei_notified",
    "e_prescription",
    "ehr_sharing",
    "ehr_standard",
];
const BASIC: &[&str] = &["online_claims", "oqs", "notices"];
/// The 令和8年度 base requirements (1)-(7) with the new addon's own 届出, without (8)-(10).
const R8: &[&str] =
    &["online_claims", "free_statements", "oqs", "consult_room_view", "portal_consult", "notices", "renkei_notified"];

fn clinic(kind: &str, standards: &[(&str, &[&str])], rates: &[(&str, f64)]) -> Value {
    let standards: Vec<Value> = standards
        .iter()
        .map(|(from, keys)| {
            let mut m = serde_json::Map::new();
            m.insert("from".into(), json!(from));
            for k in *keys {
                m.insert((*k).into(), json!(true));
            }
            Value::Object(m)
        })
        .collect();
    let rates: serde_json::Map<String, Value> = rates.iter().map(|(m, r)| ((*m).to_owned(), json!(r))).collect();
    json!({"id": "c1", "facility_kind": kind, "standards": standards, "usage_rates": rates})
}

/// (id, patient, date, kind, myna, info_obtained)
type V<'a> = (&'a str, &'a str, &'a str, &'a str, bool, bool);

fn visits(list: &[V<'_>]) -> Value {
    Value::Array(
        list.iter()
            .map(|(id, p, d, k, m, i)| json!({"id": id, "clinic": "c1", "patient": p, "date": d, "kind": k, "myna": m, "info_obtained": i}))
            .collect(),
    )
}

fn eval_raw(input: &Value) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_onshi"))
        .args(["rules", "eval"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn eval(clinic: Value, list: &[V<'_>]) -> Vec<Value> {
    let (code, stdout, stderr) = eval_raw(&json!({"clinics": [clinic], "visits": visits(list)}));
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str::<Vec<Value>>(&stdout).unwrap()
}

/// The addons of a visit as "name:points".
fn addons(decisions: &[Value], visit: &str) -> Vec<String> {
    let d = decisions.iter().find(|d| d["visit"] == visit).unwrap();
    d["addons"].as_array().unwrap().iter().map(|a| format!("{}:{}", a["name"].as_str().unwrap(), a["points"])).collect()
}

fn reason<'a>(decisions: &'a [Value], visit: &str) -> &'a str {
    decisions.iter().find(|d| d["visit"] == visit).unwrap()["reason"].as_str().unwrap()
}

#[test]
fn period_2022_10_first_visits_by_how_information_was_obtained() {
    let c = clinic("医科", &[("2022-01-01", BASIC)], &[]);
    let d = eval(
        c,
        &[
            ("a", "p1", "2022-10-01", "初診", false, false),
            ("b", "p2", "2022-10-03", "初診", true, true),
            ("c", "p3", "2023-03-31", "初診", true, false),
            ("d", "p4", "2022-10-15", "再診", false, false),
        ],
    );
    assert_eq!(addons(&d, "a"), ["医療情報・システム基盤整備体制充実加算1:4"]);
    assert_eq!(addons(&d, "b"), ["医療情報・システム基盤整備体制充実加算2:2"]);
    assert_eq!(addons(&d, "c"), ["医療情報・システム基盤整備体制充実加算1:4"]);
    assert!(addons(&d, "d").is_empty());
    assert!(reason(&d, "d").contains("該当する加算はありません"), "{}", reason(&d, "d"));
}

#[test]
fn monthly_limit_holds_within_a_month_and_resets_across_month_and_year_ends() {
    let c = clinic("医科", &[("2022-01-01", BASIC)], &[]);
    let d = eval(
        c,
        &[
            ("a", "p1", "2022-11-01", "初診", false, false),
            ("b", "p1", "2022-11-20", "初診", false, false),
            ("c", "p1", "2022-12-01", "初診", false, false),
            ("d", "p1", "2022-12-31", "初診", false, false),
            ("e", "p1", "2023-01-01", "初診", false, false),
            ("f", "p2", "2022-11-20", "初診", false, false),
        ],
    );
    assert_eq!(addons(&d, "a").len(), 1);
    assert!(addons(&d, "b").is_empty());
    assert!(reason(&d, "b").contains("2022-11-01") && reason(&d, "b").contains("月1回"), "{}", reason(&d, "b"));
    assert_eq!(addons(&d, "c").len(), 1);
    assert!(addons(&d, "d").is_empty());
    assert_eq!(addons(&d, "e").len(), 1);
    assert_eq!(addons(&d, "f").len(), 1, "another patient has their own limit");
}

#[test]
fn the_2023_special_measure_and_its_end() {
    let c = clinic("医科", &[("2022-01-01", BASIC)], &[]);
    let d = eval(
        c,
        &[
            ("a", "p1", "2023-04-01", "初診", false, false),
            ("b", "p2", "2023-04-03", "再診", false, false),
            ("c", "p3", "2023-04-05", "再診", true, true),
            ("d", "p4", "2023-12-31", "初診", false, false),
            ("e", "p4", "2024-01-01", "初診", false, false),
            ("f", "p5", "2024-03-10", "初診", true, true),
            ("g", "p6", "2024-05-31", "初診", false, false),
            ("h", "p1", "2023-04-20", "再診", false, false),
            ("i", "p7", "2022-11-01", "初診", false, true),
            ("j", "p6", "2024-02-01", "再診", false, false),
        ],
    );
    assert_eq!(addons(&d, "a"), ["医療情報・システム基盤整備体制充実加算1:6"]);
    assert_eq!(addons(&d, "b"), ["医療情報・システム基盤整備体制充実加算3:2"]);
    assert!(addons(&d, "c").is_empty());
    assert_eq!(addons(&d, "d"), ["医療情報・システム基盤整備体制充実加算1:6"]);
    assert_eq!(addons(&d, "e"), ["医療情報・システム基盤整備体制充実加算1:4"]);
    assert_eq!(addons(&d, "f"), ["医療情報・システム基盤整備体制充実加算2:2"]);
    assert_eq!(addons(&d, "g"), ["医療情報・システム基盤整備体制充実加算1:4"]);
    // 加算3 is not claimable in a month with 加算1/2 (2023-01-31 通知, wic-net 7494/5).
    assert!(addons(&d, "h").is_empty(), "{}", reason(&d, "h"));
    // 加算2 covers information provided by another clinic too, from 2022-10 (A000 注15, pt-ot-st 2126).
    assert_eq!(addons(&d, "i"), ["医療情報・システム基盤整備体制充実加算2:2"]);
    // No 再診 加算 after the 特例 ended (告示第16号 第3章: 令和5年12月31日までの間に限り).
    assert!(addons(&d, "j").is_empty(), "{}", reason(&d, "j"));
}

#[test]
fn period_2024_06_tiers_and_the_dx_addon_without_rate_requirement() {
    let full = clinic("医科", &[("2022-01-01", ALL)], &[]);
    let d = eval(
        full,
        &[
            ("a", "p1", "2024-06-01", "初診", true, true),
            ("b", "p2", "2024-06-01", "初診", false, false),
            ("c", "p3", "2024-07-05", "再診", true, true),
            ("d", "p4", "2024-07-05", "再診", false, false),
        ],
    );
    assert_eq!(addons(&d, "a"), ["医療情報取得加算2:1", "医療DX推進体制整備加算:8"]);
    assert_eq!(addons(&d, "b"), ["医療情報取得加算1:3", "医療DX推進体制整備加算:8"]);
    assert_eq!(addons(&d, "c"), ["医療情報取得加算4:1"]);
    assert_eq!(addons(&d, "d"), ["医療情報取得加算3:2"]);
    // Without 電子処方箋 the DX addon still applies until 2025-03-31: the 2024 告示's 経過措置 deems it met
    // (wic-net 21933/146); 電子カルテ情報共有サービス is deemed met until 2026-05-31.
    let basic = clinic("医科", &[("2022-01-01", BASIC)], &[]);
    let d = eval(basic, &[("a", "p1", "2024-06-01", "初診", false, false)]);
    assert_eq!(addons(&d, "a"), ["医療情報取得加算1:3", "医療DX推進体制整備加算:8"]);
    let d = eval(
        clinic("医科", &[("2022-01-01", BASIC)], &[("2024-10", 0.31)]),
        &[("a", "p1", "2025-03-31", "初診", false, false), ("b", "p2", "2025-04-01", "初診", false, false)],
    );
    assert!(addons(&d, "a").contains(&"医療DX推進体制整備加算1:11".to_owned()), "{:?}", addons(&d, "a"));
    assert!(!addons(&d, "b").iter().any(|a| a.starts_with("医療DX推進体制整備加算1")), "from 2025-04 加算1-3 need it");
}

#[test]
fn three_monthly_limit_counts_calendar_months_across_the_2024_12_change() {
    let c = clinic("医科", &[("2022-01-01", BASIC)], &[]);
    let d = eval(
        c,
        &[
            ("a", "p1", "2024-06-10", "再診", false, false),
            ("b", "p1", "2024-07-10", "再診", false, false),
            ("c", "p1", "2024-08-31", "再診", false, false),
            ("d", "p1", "2024-09-01", "再診", true, true),
            ("e", "p1", "2024-11-15", "再診", false, false),
            ("f", "p1", "2024-12-01", "再診", false, false),
            ("g", "p1", "2025-02-10", "再診", false, false),
            ("h", "p1", "2025-03-01", "再診", false, false),
            ("i", "p1", "2024-06-20", "初診", false, false),
            ("x", "p2", "2024-11-20", "再診", false, false),
            ("y", "p2", "2025-01-10", "再診", false, false),
            ("z", "p2", "2025-02-01", "再診", false, false),
        ],
    );
    assert_eq!(addons(&d, "a"), ["医療情報取得加算3:2"]);
    assert!(addons(&d, "b").is_empty() && addons(&d, "c").is_empty());
    assert!(reason(&d, "c").contains("3月に1回"), "{}", reason(&d, "c"));
    assert_eq!(addons(&d, "d"), ["医療情報取得加算4:1"], "September is the third month after June");
    assert!(addons(&d, "e").is_empty(), "the September claim still blocks in November");
    assert_eq!(addons(&d, "f"), ["医療情報取得加算:1"], "December: three months after September, new rules");
    assert!(addons(&d, "g").is_empty(), "December → February across the year end");
    assert_eq!(addons(&d, "h"), ["医療情報取得加算:1"]);
    assert_eq!(
        addons(&d, "i"),
        ["医療情報取得加算1:3", "医療DX推進体制整備加算:8"],
        "初診 and 再診 have separate limits"
    );
    // A claim under the 2024-06 rules blocks the 2024-12 再診 addon: one limit group across the revision.
    assert_eq!(addons(&d, "x"), ["医療情報取得加算3:2"]);
    assert!(addons(&d, "y").is_empty(), "{}", reason(&d, "y"));
    assert!(reason(&d, "y").contains("2024-11-20に医療情報取得加算3を算定済み"), "{}", reason(&d, "y"));
    assert_eq!(addons(&d, "z"), ["医療情報取得加算:1"]);
}

#[test]
fn the_2024_12_single_point_addon_and_its_code() {
    let c = clinic("医科", &[("2022-01-01", BASIC)], &[]);
    let d = eval(
        c,
        &[
            ("a", "p1", "2024-11-30", "初診", true, true),
            ("b", "p1", "2024-12-01", "初診", false, false),
            ("c", "p2", "2026-05-31", "初診", true, false),
        ],
    );
    assert_eq!(addons(&d, "a"), ["医療情報取得加算2:1"]);
    assert_eq!(addons(&d, "b"), ["医療情報取得加算:1"]);
    let b = d.iter().find(|x| x["visit"] == "b").unwrap();
    assert_eq!(b["addons"][0]["code"], "111703270");
    assert_eq!(addons(&d, "c"), ["医療情報取得加算:1"]);
}

#[test]
fn dx_tiers_follow_the_best_rate_of_the_window() {
    let with = |rates: &[(&str, f64)]| clinic("医科", &[("2022-01-01", ALL)], rates);
    let dx = |d: &[Value], v: &str| addons(d, v).into_iter().filter(|a| a.contains("DX")).collect::<Vec<_>>();
    let d = eval(with(&[("2024-07", 0.16)]), &[("a", "p1", "2024-10-15", "初診", false, false)]);
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算1:11"]);
    let d = eval(with(&[("2024-07", 0.12)]), &[("a", "p1", "2024-10-15", "初診", false, false)]);
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算2:10"]);
    let d = eval(with(&[("2024-07", 0.06)]), &[("a", "p1", "2024-10-15", "初診", false, false)]);
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算3:8"]);
    let d = eval(with(&[("2024-07", 0.04)]), &[("a", "p1", "2024-10-15", "初診", false, false)]);
    assert!(dx(&d, "a").is_empty());
    assert!(reason(&d, "a").contains("基準5.0%未満"), "{}", reason(&d, "a"));
    // October 2024 claims may use May or June instead of July (疑義解釈 2024-09-03 問5, wic-net 16584/8).
    let d = eval(with(&[("2024-05", 0.16)]), &[("a", "p1", "2024-10-15", "初診", false, false)]);
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算1:11"]);
    let d = eval(with(&[("2024-04", 0.90)]), &[("a", "p1", "2024-10-15", "初診", false, false)]);
    assert!(dx(&d, "a").is_empty(), "April is outside N-5..N-3");
    assert!(reason(&d, "a").contains("未入力"), "{}", reason(&d, "a"));
    // April 2025 claims: the best of 2024-11..2025-01 (kyotoihou 26432).
    let d = eval(
        with(&[("2024-10", 0.9), ("2024-11", 0.46), ("2025-01", 0.31)]),
        &[("a", "p1", "2025-04-10", "初診", false, false)],
    );
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算1:12"]);
}

#[test]
fn oqs_based_rates_count_only_for_claims_from_2024_10_to_2025_01() {
    // 疑義解釈 2024-09-03 問5: for 2024-10..2025-01 the オン資件数ベース rate of N-4..N-2 may be used.
    let with = |receipts: &[(&str, f64)], oqs: &[(&str, f64)]| {
        let mut c = clinic("医科", &[("2022-01-01", ALL)], receipts);
        let oqs: serde_json::Map<String, Value> = oqs.iter().map(|(m, r)| ((*m).to_owned(), json!(r))).collect();
        c["oqs_usage_rates"] = Value::Object(oqs);
        c
    };
    let dx = |d: &[Value], v: &str| addons(d, v).into_iter().filter(|a| a.contains("DX")).collect::<Vec<_>>();
    let d = eval(with(&[("2024-07", 0.04)], &[("2024-08", 0.16)]), &[("a", "p1", "2024-10-15", "初診", false, false)]);
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算1:11"]);
    assert!(reason(&d, "a").contains("オン資件数ベース"), "{}", reason(&d, "a"));
    let d = eval(with(&[], &[("2024-11", 0.31)]), &[("a", "p1", "2025-01-15", "初診", false, false)]);
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算1:11"]);
    let d = eval(with(&[], &[("2024-12", 0.31)]), &[("a", "p1", "2025-02-15", "初診", false, false)]);
    assert!(dx(&d, "a").is_empty(), "not from 2025-02: {}", reason(&d, "a"));
}

#[test]
fn dx_2025_tiers_with_and_without_e_prescription_and_the_pediatric_exception() {
    let rates = &[("2025-01", 0.46)];
    let dx = |d: &[Value], v: &str| addons(d, v).into_iter().filter(|a| a.contains("DX")).collect::<Vec<_>>();
    let d = eval(clinic("医科", &[("2022-01-01", ALL)], rates), &[("a", "p1", "2025-05-10", "初診", false, false)]);
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算1:12"]);
    let d = eval(clinic("医科", &[("2022-01-01", BASIC)], rates), &[("a", "p1", "2025-05-10", "初診", false, false)]);
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算4:10"]);
    let ped: Vec<&str> = ALL.iter().copied().chain(["pediatric_special"]).collect();
    let d = eval(
        clinic("医科", &[("2022-01-01", &ped)], &[("2025-02", 0.13)]),
        &[("a", "p1", "2025-05-10", "初診", false, false)],
    );
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算3:10"]);
    assert!(reason(&d, "a").contains("小児科特例"), "{}", reason(&d, "a"));
    let d = eval(
        clinic("医科", &[("2022-01-01", ALL)], &[("2025-02", 0.13)]),
        &[("a", "p1", "2025-05-10", "初診", false, false)],
    );
    assert!(dx(&d, "a").is_empty());
    let d = eval(
        clinic("医科", &[("2022-01-01", ALL)], &[("2025-07", 0.39)]),
        &[("a", "p1", "2025-11-10", "初診", false, false)],
    );
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算3:10"]);
    let d = eval(
        clinic("医科", &[("2022-01-01", BASIC)], &[("2025-12", 0.55)]),
        &[("a", "p1", "2026-04-10", "初診", false, false)],
    );
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算5:9"]);
    // 加算6 is 8 points in every period from 2025-04 (the 2025-10 change moved only the rates).
    let d = eval(
        clinic("医科", &[("2022-01-01", BASIC)], &[("2025-12", 0.31)]),
        &[("a", "p1", "2026-04-10", "初診", false, false)],
    );
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算6:8"]);
    let d = eval(
        clinic("医科", &[("2022-01-01", ALL)], &[("2026-02", 0.71)]),
        &[("a", "p1", "2026-05-31", "初診", false, false)],
    );
    assert_eq!(dx(&d, "a"), ["医療DX推進体制整備加算1:12"]);
}

#[test]
fn the_2026_revision_replaces_both_addons_and_needs_thirty_percent() {
    let rates = &[("2026-01", 0.35)];
    let d = eval(
        clinic("医科", &[("2022-01-01", ALL)], rates),
        &[("a", "p1", "2026-06-01", "初診", true, true), ("b", "p1", "2026-05-31", "初診", true, true)],
    );
    assert_eq!(addons(&d, "a"), ["電子的診療情報連携体制整備加算1:15"]);
    assert!(addons(&d, "b").iter().any(|a| a.starts_with("医療情報取得加算")), "the day before, the old rules");
    let one: Vec<&str> = R8.iter().copied().chain(["e_prescription"]).collect();
    let d = eval(clinic("医科", &[("2022-01-01", &one)], rates), &[("a", "p1", "2026-06-01", "初診", false, false)]);
    assert_eq!(addons(&d, "a"), ["電子的診療情報連携体制整備加算2:9"]);
    let d = eval(clinic("医科", &[("2022-01-01", R8)], rates), &[("a", "p1", "2026-06-01", "初診", false, false)]);
    assert_eq!(addons(&d, "a"), ["電子的診療情報連携体制整備加算3:4"]);
    let a = d.iter().find(|x| x["visit"] == "a").unwrap();
    assert_eq!(a["addons"][0]["code"], "111704270");
    // The old DX 届出 does not carry over (疑義解釈その1 問3 as cited in docs/rules.md), and 明細書の無償交付,
    // 診察室での閲覧・活用 and マイナポータル相談 are requirements of their own.
    let no_filing: Vec<&str> = ALL.iter().copied().filter(|s| *s != "renkei_notified").collect();
    let d =
        eval(clinic("医科", &[("2022-01-01", &no_filing)], rates), &[("a", "p1", "2026-06-01", "初診", false, false)]);
    assert!(addons(&d, "a").is_empty());
    assert!(reason(&d, "a").contains("届出"), "{}", reason(&d, "a"));
    let d = eval(clinic("医科", &[("2022-01-01", BASIC)], rates), &[("a", "p1", "2026-06-01", "初診", false, false)]);
    assert!(addons(&d, "a").is_empty());
    assert!(reason(&d, "a").contains("明細書の無償交付"), "{}", reason(&d, "a"));
    let d = eval(
        clinic("医科", &[("2022-01-01", ALL)], &[("2026-01", 0.28), ("2026-02", 0.29)]),
        &[("a", "p1", "2026-06-01", "初診", false, false)],
    );
    assert!(addons(&d, "a").is_empty());
    assert!(reason(&d, "a").contains("30.0%未満"), "{}", reason(&d, "a"));
    assert!(reason(&d, "a").contains("未入力"), "the missing month is named: {}", reason(&d, "a"));
    let d = eval(clinic("医科", &[("2022-01-01", ALL)], &[]), &[("a", "p1", "2026-07-01", "初診", false, false)]);
    assert!(reason(&d, "a").contains("未入力"), "{}", reason(&d, "a"));
}

#[test]
fn the_2026_revisit_addon_is_monthly() {
    let d = eval(
        clinic("医科", &[("2022-01-01", R8)], &[("2026-02", 0.40), ("2026-03", 0.40), ("2026-04", 0.4)]),
        &[
            ("a", "p1", "2026-06-02", "再診", false, false),
            ("b", "p1", "2026-06-20", "再診", false, false),
            ("c", "p1", "2026-07-01", "再診", false, false),
        ],
    );
    assert_eq!(addons(&d, "a"), ["電子的診療情報連携体制整備加算:2"]);
    assert!(addons(&d, "b").is_empty());
    assert_eq!(addons(&d, "c"), ["電子的診療情報連携体制整備加算:2"]);
}

#[test]
fn standards_take_effect_from_their_date() {
    let c = clinic("医科", &[("2024-06-01", BASIC), ("2024-10-01", ALL)], &[("2024-07", 0.20)]);
    let d = eval(
        c,
        &[
            ("a", "p1", "2024-05-31", "初診", false, false),
            ("b", "p2", "2024-09-30", "初診", false, false),
            ("c", "p3", "2024-10-02", "初診", false, false),
        ],
    );
    assert!(addons(&d, "a").is_empty(), "no standards before 2024-06-01");
    assert!(reason(&d, "a").contains("施設基準"), "{}", reason(&d, "a"));
    assert_eq!(addons(&d, "b"), ["医療情報取得加算1:3", "医療DX推進体制整備加算:8"]);
    assert_eq!(addons(&d, "c"), ["医療情報取得加算1:3", "医療DX推進体制整備加算1:11"]);
}

#[test]
fn late_visits_give_the_same_result_as_in_order_arrival() {
    let c = clinic("医科", &[("2022-01-01", BASIC)], &[]);
    let in_order = [
        ("a", "p1", "2024-06-10", "再診", false, false),
        ("b", "p1", "2024-07-10", "再診", false, false),
        ("c", "p1", "2024-09-10", "再診", false, false),
    ];
    let mut late = in_order;
    late.reverse();
    let first = eval(c.clone(), &in_order);
    let second = eval(c, &late);
    for v in ["a", "b", "c"] {
        assert_eq!(addons(&first, v), addons(&second, v), "{v}");
    }
    assert_eq!(addons(&second, "a"), ["医療情報取得加算3:2"], "the earlier visit claims even when it arrives last");
    assert_eq!(second[0]["visit"], "c", "output keeps input order");
}

#[test]
fn dental_and_pharmacy_have_their_own_rule_sets() {
    let d = eval(
        clinic("歯科", &[("2022-01-01", ALL)], &[("2024-07", 0.5)]),
        &[("a", "p1", "2024-07-01", "初診", false, false), ("b", "p2", "2026-07-01", "初診", false, false)],
    );
    assert_eq!(addons(&d, "a"), ["医療情報取得加算1:3", "医療DX推進体制整備加算:6"], "歯科's own DX points");
    assert!(addons(&d, "b").is_empty());
    assert!(reason(&d, "b").contains("歯科"), "{}", reason(&d, "b"));
    let pharmacy: Vec<&str> = BASIC.iter().copied().chain(["e_prescription", "renkei_notified"]).collect();
    let d = eval(
        clinic("調剤", &[("2022-01-01", BASIC), ("2026-06-01", &pharmacy)], &[("2026-03", 0.35)]),
        &[
            ("a", "p1", "2024-07-01", "初診", false, false),
            ("b", "p1", "2024-10-01", "再診", false, false),
            ("c", "p1", "2025-01-15", "再診", false, false),
            ("d", "p2", "2026-07-01", "再診", false, false),
        ],
    );
    assert_eq!(addons(&d, "a"), ["医療DX推進体制整備加算:4", "医療情報取得加算1:3"]);
    assert!(!addons(&d, "b").iter().any(|a| a.starts_with("医療情報取得加算")), "6月に1回");
    assert!(reason(&d, "b").contains("6月に1回"), "{}", reason(&d, "b"));
    assert!(addons(&d, "c").is_empty(), "the 12-month limit of 2024-12 counts the July claim");
    assert_eq!(addons(&d, "d"), ["電子的調剤情報連携体制整備加算:8"]);
}

#[test]
fn bad_input_exits_non_zero_naming_the_visit_and_field() {
    let c = clinic("医科", &[], &[]);
    for (visit, field) in [
        (
            json!({"id": "v1", "clinic": "nope", "patient": "p", "date": "2024-07-01", "kind": "初診", "myna": true, "info_obtained": false}),
            "visit v1: clinic",
        ),
        (
            json!({"id": "v2", "clinic": "c1", "patient": "p", "date": "2022-09-30", "kind": "初診", "myna": true, "info_obtained": false}),
            "visit v2: date",
        ),
        (
            json!({"id": "v3", "clinic": "c1", "patient": "p", "date": "2024-13-01", "kind": "初診", "myna": true, "info_obtained": false}),
            "visit v3: date",
        ),
        (
            json!({"id": "v4", "clinic": "c1", "patient": "p", "date": "2024-07-01", "kind": "往診", "myna": true, "info_obtained": false}),
            "visit v4: kind",
        ),
    ] {
        let (code, stdout, stderr) = eval_raw(&json!({"clinics": [c.clone()], "visits": [visit]}));
        assert_ne!(code, 0);
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains(field), "{stderr}");
    }
    let (code, _, stderr) = eval_raw(&json!({"clinics": []}));
    assert_ne!(code, 0);
    assert!(stderr.contains("visits"), "{stderr}");
}

//! The 診療行為コード the agent reads out of a claims file. Everything else a receipt lists (diagnoses,
//! drugs, other procedures) stays at the clinic.
//!
//! Codes from the 診療行為マスター (支払基金 基本マスター); the addon codes are the rules data's
//! (services/rules/data, docs/rules.md), partly unverified like them.

/// Codes that make a day a 初診: 初診料 and its variants (two or more public sources each; docs/uke.md).
pub const FIRST_VISIT: &[&str] = &[
    "111000110", // 初診料
    "111011810", // 初診料（同一日複数科受診時の２科目）
    "111014210", // 初診料（情報通信機器を用いた場合）
];

/// Codes that make a day a 再診: 再診料, 外来診療料 and their variants.
pub const REVISIT: &[&str] = &[
    "112007410", // 再診料
    "112008350", // 同日再診料
    "112007950", // 電話等再診料
    "112008850", // 同日電話等再診料
    "112015810", // 再診料（同一日複数科受診時の２科目）
    "112024210", // 再診料（情報通信機器を用いた場合）
    "112024950", // 外来診療料（情報通信機器を用いた場合）
    "112011310", // 外来診療料 (one source only)
];

/// 診療識別 of the SI rows under 初診 (11) and 再診 (12): a row there marks the day even when its code is
/// not listed above (a 初診料 variant this list lacks).
pub const SECTION_FIRST: &str = "11";
pub const SECTION_REVISIT: &str = "12";

/// Reception-addon codes: every code the rules data gives an addon (services/rules/data, docs/rules.md),
/// so the agent reports exactly what the engine can compare, and a revision is one data change for both.
fn addons() -> &'static std::collections::BTreeSet<String> {
    static CODES: std::sync::OnceLock<std::collections::BTreeSet<String>> = std::sync::OnceLock::new();
    CODES.get_or_init(|| {
        // The built-in rules are checked by their own tests; an error here would only mean no addon codes.
        onshi_rules::RuleSet::builtin()
            .map(|rules| rules.rules.iter().filter_map(|r| r.code.clone()).collect())
            .unwrap_or_default()
    })
}

/// 初診 or 再診 by the code, else by the 診療識別 of its section.
pub fn kind_of(code: &str, section: &str) -> Option<onshi_domain::ClaimedVisitKind> {
    use onshi_domain::ClaimedVisitKind::{First, Revisit};
    if FIRST_VISIT.contains(&code) {
        Some(First)
    } else if REVISIT.contains(&code) {
        Some(Revisit)
    } else if is_addon(code) {
        None
    } else if section == SECTION_FIRST {
        Some(First)
    } else if section == SECTION_REVISIT {
        Some(Revisit)
    } else {
        None
    }
}

pub fn is_addon(code: &str) -> bool {
    addons().contains(code)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_addon_codes_are_the_rules_data_codes() {
        assert!(super::is_addon("111704070"), "電子的診療情報連携体制整備加算 (初診)");
        assert!(super::is_addon("111703470"));
        assert!(!super::is_addon("111000110"), "初診料 is not an addon");
        assert!(super::addons().len() >= 6);
    }
}

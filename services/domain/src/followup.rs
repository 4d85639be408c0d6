//! 資格無効 follow-up: a reception whose latest result is not valid (無効, 新資格あり, 該当資格なし, 複数該当,
//! エラー) is a claim at risk of 返戻 until the desk has the right qualification. Each such reception gets a
//! script for the desk and a status the staff set.
//!
//! The scripts are this product's reading of MHLW's guidance to clinics on マイナ保険証 results (資格確認書,
//! 資格情報のお知らせ, re-checking by number); they are not an official text and docs/dashboards.md says so.

use crate::event::QualificationResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FollowUpStatus {
    /// Nothing done yet.
    #[default]
    Open,
    /// The right qualification is known (a 資格確認書 or 資格情報のお知らせ of the new insurer, a re-check that came back valid).
    Resolved,
    /// The claim will likely come back (返戻): the billing staff should know before they send it.
    HenreiRisk,
    /// The patient could not be reached.
    Unreachable,
}

impl FollowUpStatus {
    pub const ALL: [Self; 4] = [Self::Open, Self::Resolved, Self::HenreiRisk, Self::Unreachable];

    pub fn code(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Resolved => "resolved",
            Self::HenreiRisk => "henrei_risk",
            Self::Unreachable => "unreachable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.code() == s)
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Open => "未対応",
            Self::Resolved => "解決",
            Self::HenreiRisk => "返戻の恐れ",
            Self::Unreachable => "連絡つかず",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Self::Open => "Open",
            Self::Resolved => "Resolved",
            Self::HenreiRisk => "返戻 risk",
            Self::Unreachable => "Unreachable",
        }
    }
}

/// Whether a reception with this latest result needs following up.
pub fn needs_follow_up(result: QualificationResult) -> bool {
    result != QualificationResult::Valid
}

/// What the desk does next, by result.
pub fn script_ja(result: QualificationResult) -> &'static str {
    match result {
        QualificationResult::Valid => "",
        QualificationResult::Invalid => {
            "資格が無効です。新しい資格の資格確認書か「資格情報のお知らせ」（マイナポータルの資格情報画面でも可）をお持ちか尋ね、なければ加入先（勤務先・市区町村）を確認して後日の提示をお願いする。"
        }
        QualificationResult::InvalidNewQualification => {
            "新しい資格があります。マイナ保険証でもう一度読み取る（新しい資格が表示されます）か、新しい保険者の資格確認書で確認する。"
        }
        QualificationResult::NotFound => {
            "該当資格なし。番号照会なら保険者番号・記号・番号・枝番の入力誤りを確かめて再照会。カードなら保険証利用登録がまだの可能性があるため資格確認書で確認する。"
        }
        QualificationResult::Multiple => {
            "複数の資格が該当しました。自動では結び付けません。本人に加入先を確かめ、端末で正しい資格を選んで照会し直す。"
        }
        QualificationResult::Error => {
            "端末がエラーを返しました。少し待って再照会し、続くときは端末一覧で回線・広域障害を確かめる。受付は資格確認書や「資格情報のお知らせ」で続け、後で再照会する。"
        }
    }
}

pub fn script_en(result: QualificationResult) -> &'static str {
    match result {
        QualificationResult::Valid => "",
        QualificationResult::Invalid => {
            "The qualification is no longer valid. Ask for the new insurer's 資格確認書 or 資格情報のお知らせ (or the マイナポータル screen); if none, ask which insurer they joined (employer, municipality) and to bring it next time."
        }
        QualificationResult::InvalidNewQualification => {
            "A newer qualification exists. Read the マイナ保険証 again (it shows the new one) or check the new insurer's 資格確認書."
        }
        QualificationResult::NotFound => {
            "No qualification found. For a number query, check the insurer number, symbol, number and branch and query again; for a card, the health-insurance use may not be registered: check the 資格確認書."
        }
        QualificationResult::Multiple => {
            "Several qualifications matched; none is linked automatically. Ask which insurer applies and query that one on the terminal."
        }
        QualificationResult::Error => {
            "The terminal returned an error. Query again shortly; if it persists, check the line and wide outages on the fleet page. Keep receiving with the 資格確認書 or 資格情報のお知らせ and re-check later."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_that_needs_it_has_a_script_and_statuses_round_trip() {
        for r in [
            QualificationResult::Invalid,
            QualificationResult::InvalidNewQualification,
            QualificationResult::NotFound,
            QualificationResult::Multiple,
            QualificationResult::Error,
        ] {
            assert!(needs_follow_up(r));
            assert!(!script_ja(r).is_empty() && !script_en(r).is_empty());
        }
        assert!(!needs_follow_up(QualificationResult::Valid));
        for s in FollowUpStatus::ALL {
            assert_eq!(FollowUpStatus::parse(s.code()), Some(s));
        }
        assert_eq!(FollowUpStatus::parse("done"), None);
    }
}

//! Visits (受付): what the front desk did for one patient on one day.
//!
//! A patient can be confirmed more than once on a day (a failed card read and a retry, a second
//! department). Those confirmations are one reception, keyed by (clinic, patient, JST date). When the
//! check identified nobody there is no patient to group by, so the event stands alone.
//!
//! `merge` is commutative and associative, so the reception that results from a set of events does not
//! depend on the order in which they arrive. That is what lets an agent that was offline for hours
//! deliver late, and a queue redeliver, without the stored reception drifting from the truth.

use time::{Date, OffsetDateTime};

use crate::event::{ConfirmationMethod, Consents, QualificationCheck, QualificationResult};
use crate::ids::EventId;
use crate::jst;

#[derive(Debug, Clone, PartialEq)]
pub struct Visit {
    /// `p:<patient>:<date>` or `e:<event id>`; unique per clinic.
    pub key: String,
    pub date: Date,
    pub patient: Option<String>,
    pub first_at: OffsetDateTime,
    pub last_at: OffsetDateTime,
    /// The method of the strongest confirmation (マイナ保険証 beats numbers).
    pub method: ConfirmationMethod,
    /// How the マイナ保険証 holder was identified (顔認証 / 暗証番号 / 目視), when the terminal said.
    pub identity: Option<crate::IdentityCheck>,
    pub myna: bool,
    /// The result of the latest confirmation.
    pub result: QualificationResult,
    /// The 保険者番号 the latest confirmation gave, when its result is not valid (for follow-up).
    pub insurer: Option<crate::InsurerNumber>,
    pub consents: Consents,
    pub confirmations: u32,
}

impl Visit {
    /// The reception a single confirmation makes, or `None` for part of a bulk check, which is not a
    /// patient at the desk and must not move 利用率.
    pub fn from_event(id: EventId, at: OffsetDateTime, check: &QualificationCheck) -> Option<Self> {
        if check.batch {
            return None;
        }
        let date = jst::date_of(at);
        let key = match &check.patient {
            Some(p) => format!("p:{}:{date}", p.as_str()),
            None => format!("e:{id}"),
        };
        Some(Self {
            key,
            date,
            patient: check.patient.as_ref().map(|p| p.as_str().to_owned()),
            first_at: at,
            last_at: at,
            method: check.method,
            identity: check.identity_check,
            myna: check.method.is_myna(),
            result: check.result,
            insurer: check.insurer.clone().filter(|_| check.result != QualificationResult::Valid),
            consents: check.consents,
            confirmations: 1,
        })
    }

    /// Folds another confirmation of the same reception into this one.
    pub fn merge(&mut self, other: &Visit) {
        debug_assert_eq!(self.key, other.key);
        // The latest confirmation decides the result; equal times fall back to an order on the
        // result itself, so the outcome never depends on arrival order.
        let other_is_later = (other.last_at, other.result.as_str()) > (self.last_at, self.result.as_str());
        if other_is_later {
            self.result = other.result;
            self.insurer = other.insurer.clone();
        }
        self.first_at = self.first_at.min(other.first_at);
        self.last_at = self.last_at.max(other.last_at);
        if method_rank(other.method) > method_rank(self.method) {
            self.method = other.method;
        }
        self.identity = crate::IdentityCheck::stronger(self.identity, other.identity);
        self.myna |= other.myna;
        self.consents = self.consents.union(other.consents);
        self.confirmations += other.confirmations;
    }
}

fn method_rank(m: ConfirmationMethod) -> u8 {
    match m {
        ConfirmationMethod::MynaCard => 5,
        ConfirmationMethod::MynaSmartphone => 4,
        ConfirmationMethod::EligibilityCertificate => 3,
        ConfirmationMethod::InsuranceCard => 2,
        ConfirmationMethod::NumberQuery => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::MedicalInstitutionCode;
    use crate::event::PatientRef;
    use time::macros::datetime;

    fn check(method: ConfirmationMethod, result: QualificationResult, patient: Option<&str>) -> QualificationCheck {
        QualificationCheck {
            institution_code: MedicalInstitutionCode::parse("1311234567").unwrap(),
            method,
            identity_check: None,
            batch: false,
            result,
            error_code: None,
            patient: patient.map(|p| PatientRef::pseudonymize(b"k", p, "", "1", "00")),
            insurer: crate::InsurerNumber::parse("06139999"),
            consents: Consents::default(),
            limit_certificate: false,
            time_source: Default::default(),
        }
    }

    #[test]
    fn the_insurer_is_kept_only_while_the_latest_result_is_not_valid() {
        let at = datetime!(2026-11-25 09:00 +09:00);
        let invalid = check(ConfirmationMethod::NumberQuery, QualificationResult::Invalid, Some("a"));
        let mut v = Visit::from_event(EventId::new(), at, &invalid).unwrap();
        assert_eq!(v.insurer.as_ref().map(|i| i.as_str()), Some("06139999"));
        let valid = check(ConfirmationMethod::MynaCard, QualificationResult::Valid, Some("a"));
        let retry = Visit::from_event(EventId::new(), at + time::Duration::minutes(2), &valid).unwrap();
        assert_eq!(retry.insurer, None, "a valid result carries no insurer");
        v.merge(&retry);
        assert_eq!((v.result, v.insurer.as_ref()), (QualificationResult::Valid, None));
    }

    #[test]
    fn a_bulk_check_is_not_a_reception() {
        let mut c = check(ConfirmationMethod::NumberQuery, QualificationResult::Valid, Some("a"));
        c.batch = true;
        assert!(Visit::from_event(EventId::new(), datetime!(2026-11-25 09:00 +09:00), &c).is_none());
    }

    #[test]
    fn the_reception_date_is_the_japanese_calendar_day() {
        let c = check(ConfirmationMethod::MynaCard, QualificationResult::Valid, Some("a"));
        // 23:30 UTC on the 24th is 08:30 on the 25th in Japan.
        let r = Visit::from_event(EventId::new(), datetime!(2026-11-24 23:30 UTC), &c).unwrap();
        assert_eq!(r.date, time::macros::date!(2026 - 11 - 25));
    }

    #[test]
    fn merging_is_independent_of_arrival_order() {
        let times = [
            datetime!(2026-11-25 09:00 +09:00),
            datetime!(2026-11-25 09:05 +09:00),
            datetime!(2026-11-25 11:00 +09:00),
        ];
        let checks = [
            check(ConfirmationMethod::MynaCard, QualificationResult::Error, Some("a")),
            check(ConfirmationMethod::InsuranceCard, QualificationResult::Valid, Some("a")),
            check(ConfirmationMethod::EligibilityCertificate, QualificationResult::Invalid, Some("a")),
        ];
        let parts: Vec<Visit> =
            times.iter().zip(&checks).map(|(t, c)| Visit::from_event(EventId::new(), *t, c).unwrap()).collect();
        let orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        let fold = |order: &[usize; 3]| {
            let mut acc = parts[order[0]].clone();
            for &i in &order[1..] {
                acc.merge(&parts[i]);
            }
            acc
        };
        let expected = fold(&orders[0]);
        for order in &orders {
            assert_eq!(fold(order), expected, "{order:?}");
        }
        assert!(expected.myna);
        assert_eq!(expected.method, ConfirmationMethod::MynaCard);
        assert_eq!(expected.result, QualificationResult::Invalid);
        assert_eq!(expected.confirmations, 3);
        assert_eq!(expected.first_at, times[0]);
    }

    #[test]
    fn a_check_that_found_nobody_stands_alone() {
        let c = check(ConfirmationMethod::NumberQuery, QualificationResult::NotFound, None);
        let a = Visit::from_event(EventId::new(), datetime!(2026-11-25 09:00 +09:00), &c).unwrap();
        let b = Visit::from_event(EventId::new(), datetime!(2026-11-25 09:00 +09:00), &c).unwrap();
        assert_ne!(a.key, b.key);
    }
}

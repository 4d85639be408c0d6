//! Synthetic レセ電 files for tests, benchmarks and the demo: invented people (the simulator's `Person`s,
//! so the same person can appear in 資格確認 results and in claims), shaped like a レセコン's output:
//! Shift_JIS, CRLF, IR … RE/HO/KO/SN/SY/SI/IY … GO, 和暦 or 西暦 dates, names with 髙 and 﨑.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::Date;

use onshi_domain::YearMonth;

use crate::oqs::FileEncoding;
use crate::simulate::{Person, encode};

/// One day of care on a receipt.
#[derive(Debug, Clone)]
pub struct SynthVisit {
    pub date: Date,
    /// 初診 (else 再診).
    pub first: bool,
    /// A reception-addon code claimed that day.
    pub addon: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SynthReceipt {
    pub person: Person,
    pub chart: String,
    pub service_month: YearMonth,
    /// 入院外 (else 入院).
    pub outpatient: bool,
    /// 公費単独 (KO only, no HO).
    pub public_only: bool,
    /// An SN record with the 枝番 (files from before 2021-09 have none).
    pub with_sn: bool,
    pub visits: Vec<SynthVisit>,
}

#[derive(Debug, Clone)]
pub struct SynthFile {
    /// 10 digits: 都道府県 (2), 点数表 (1), 医療機関コード (7).
    pub clinic_code: String,
    pub claim_month: YearMonth,
    /// 1 支払基金, 2 国保連.
    pub payer: u8,
    /// Dates as 西暦 (YYYYMM, YYYYMMDD) rather than 和暦 (GYYMM).
    pub western: bool,
    pub receipts: Vec<SynthReceipt>,
}

fn ym(m: YearMonth, western: bool) -> String {
    if western {
        format!("{:04}{:02}", m.year(), m.month())
    } else {
        format!("5{:02}{:02}", m.year() - 2018, m.month())
    }
}

fn ymd(d: Date, western: bool) -> String {
    format!("{}{:02}", ym(YearMonth::of(d), western), d.day())
}

/// A record from its fields: `fields[0]` is field 2, and the line has `len` fields in all.
fn record(id: &str, len: usize, set: &[(usize, String)]) -> String {
    let mut fields = vec![String::new(); len];
    fields[0] = id.to_owned();
    for (n, v) in set {
        fields[n - 1] = v.clone();
    }
    fields.join(",")
}

/// An SI line for `code` done on `days` (1-based days of the month).
fn si(section: &str, code: &str, points: u64, days: &[u8]) -> String {
    let mut set = vec![
        (2, section.to_owned()),
        (3, "1".to_owned()),
        (4, code.to_owned()),
        (6, points.to_string()),
        (7, days.len().to_string()),
    ];
    set.extend(days.iter().map(|d| (13 + usize::from(*d), "1".to_owned())));
    record("SI", 44, &set)
}

impl SynthFile {
    /// A month of `receipts` receipts for `people`, mostly 外来, some 公費単独 and 入院, 初診 on the first
    /// visit of one in four, addon `addon_code` on one visit in three.
    pub fn random(
        clinic_code: &str,
        claim_month: YearMonth,
        people: &[Person],
        receipts: usize,
        addon_code: &str,
        seed: u64,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let receipts = (0..receipts)
            .map(|i| {
                let person = people[i % people.len().max(1)].clone();
                // Mostly last month; now and then a 月遅れ receipt for the month before.
                let service = if rng.random_bool(0.02) { claim_month.plus(-2) } else { claim_month.plus(-1) };
                let last = service.last_day().day();
                let n = rng.random_range(1..=4usize);
                let mut days: Vec<u8> = (0..n).map(|_| rng.random_range(1..=last)).collect();
                days.sort_unstable();
                days.dedup();
                let first_visit = rng.random_bool(0.25);
                let visits = days
                    .iter()
                    .enumerate()
                    .map(|(k, d)| SynthVisit {
                        date: service.first_day().replace_day(*d).unwrap_or(service.first_day()),
                        first: first_visit && k == 0,
                        addon: rng.random_bool(0.33).then(|| addon_code.to_owned()),
                    })
                    .collect();
                SynthReceipt {
                    person,
                    chart: format!("{:06}", 1000 + i),
                    service_month: service,
                    outpatient: !rng.random_bool(0.03),
                    public_only: rng.random_bool(0.02),
                    with_sn: true,
                    visits,
                }
            })
            .collect();
        Self { clinic_code: clinic_code.to_owned(), claim_month, payer: 1, western: true, receipts }
    }

    /// The receipt's points as its HO (or KO) states them: the sum of its SI and IY lines.
    fn points(r: &SynthReceipt) -> u64 {
        r.visits.iter().map(|v| if v.first { 291 } else { 75 } + if v.addon.is_some() { 1 } else { 0 }).sum::<u64>()
            + 12 * r.visits.len() as u64
    }

    /// The file as a レセコン writes it: Shift_JIS, CRLF.
    pub fn render(&self) -> Vec<u8> {
        let mut lines = Vec::new();
        let c = &self.clinic_code;
        lines.push(record(
            "IR",
            10,
            &[
                (2, self.payer.to_string()),
                (3, c[..2].to_owned()),
                (4, c[2..3].to_owned()),
                (5, c[3..].to_owned()),
                (7, "医療法人オンシ会　髙﨑クリニック".to_owned()),
                (8, ym(self.claim_month, self.western)),
                (9, "00".to_owned()),
                (10, "03-0000-0000".to_owned()),
            ],
        ));
        let mut total = 0u64;
        for (i, r) in self.receipts.iter().enumerate() {
            let kind = if r.public_only { "1212" } else { "1112" };
            let kind = if r.outpatient { kind.to_owned() } else { format!("{}1", &kind[..3]) };
            lines.push(record(
                "RE",
                38,
                &[
                    (2, (i + 1).to_string()),
                    (3, kind),
                    (4, ym(r.service_month, self.western)),
                    (5, r.person.name.clone()),
                    (6, "1".to_owned()),
                    (7, r.person.birthdate.clone()),
                    (14, r.chart.clone()),
                    (37, r.person.kana.clone()),
                ],
            ));
            let points = Self::points(r);
            total += points;
            let days = r.visits.len().to_string();
            if r.public_only {
                lines.push(record(
                    "KO",
                    12,
                    &[
                        (2, r.person.insurer.trim().to_owned()),
                        (3, r.person.number.clone()),
                        (5, days),
                        (6, points.to_string()),
                    ],
                ));
            } else {
                lines.push(record(
                    "HO",
                    15,
                    &[
                        (2, r.person.insurer.clone()),
                        (3, r.person.symbol.clone()),
                        (4, r.person.number.clone()),
                        (5, days),
                        (6, points.to_string()),
                    ],
                ));
            }
            if r.with_sn {
                lines.push(record(
                    "SN",
                    9,
                    &[
                        (2, "1".to_owned()),
                        (3, "01".to_owned()),
                        (4, r.person.insurer.clone()),
                        (5, r.person.symbol.clone()),
                        (6, r.person.number.clone()),
                        (7, r.person.branch.clone()),
                    ],
                ));
            }
            let first_day = r.visits.first().map(|v| ymd(v.date, self.western)).unwrap_or_default();
            lines.push(record("SY", 8, &[(2, "8833421".to_owned()), (3, first_day), (4, "1".to_owned())]));
            let firsts: Vec<u8> = r.visits.iter().filter(|v| v.first).map(|v| v.date.day()).collect();
            let revisits: Vec<u8> = r.visits.iter().filter(|v| !v.first).map(|v| v.date.day()).collect();
            if !firsts.is_empty() {
                lines.push(si("11", "111000110", 291, &firsts));
            }
            let mut addons: Vec<(&str, Vec<u8>)> = Vec::new();
            for v in &r.visits {
                if let Some(code) = &v.addon {
                    match addons.iter_mut().find(|(c, _)| c == code) {
                        Some((_, days)) => days.push(v.date.day()),
                        None => addons.push((code, vec![v.date.day()])),
                    }
                }
            }
            if !revisits.is_empty() {
                lines.push(si("12", "112007410", 75, &revisits));
            }
            for (code, days) in &addons {
                // Left without its 診療識別, as on the rows after a section's first.
                lines.push(si("", code, 1, days));
            }
            let all: Vec<u8> = r.visits.iter().map(|v| v.date.day()).collect();
            let mut iy =
                vec![(2, "21".to_owned()), (3, "1".to_owned()), (4, "620000422".to_owned()), (5, "3".to_owned())];
            iy.push((6, "12".to_owned()));
            iy.push((7, all.len().to_string()));
            iy.extend(all.iter().map(|d| (13 + usize::from(*d), "1".to_owned())));
            lines.push(record("IY", 44, &iy));
        }
        lines.push(record(
            "GO",
            4,
            &[(2, self.receipts.len().to_string()), (3, total.to_string()), (4, "99".to_owned())],
        ));
        let mut text = lines.join("\r\n");
        text.push_str("\r\n");
        encode(&text, FileEncoding::ShiftJis)
    }
}

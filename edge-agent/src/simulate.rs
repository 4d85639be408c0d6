//! Result files as the 資格確認端末 writes them, for the simulator (`onshi-agent simulate`), the demo and the
//! tests. The content is synthetic (invented names and numbers) but shaped like real files: header and body
//! elements, full-width 記号, names with 髙 and 﨑, consent blocks, and the method mix of late 2026.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::oqs::FileEncoding;

/// A synthetic insured person.
#[derive(Debug, Clone)]
pub struct Person {
    pub insurer: String,
    pub symbol: String,
    pub number: String,
    pub branch: String,
    pub name: String,
    pub kana: String,
    pub birthdate: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Valid,
    Invalid,
    NewQualification,
    NotFound,
    Multiple,
    /// SegmentOfResult 9 with this error code.
    Error(&'static str),
}

/// One confirmation to render.
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub at: OffsetDateTime,
    pub clinic_code: String,
    pub card: bool,
    pub person: Person,
    pub outcome: Outcome,
    /// 薬剤, 診療, 特定健診, 手術
    pub consents: [Option<bool>; 4],
    pub limit_certificate: bool,
}

#[derive(Debug, Clone)]
pub struct ResultFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

fn stamp(at: OffsetDateTime) -> String {
    let t = at.to_offset(onshi_domain::jst::JST);
    format!("{:04}{:02}{:02}{:02}{:02}{:02}", t.year(), t.month() as u8, t.day(), t.hour(), t.minute(), t.second())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn result_block(c: &Confirmation) -> String {
    let p = &c.person;
    let mut x = String::new();
    x.push_str("      <ResultOfQualificationConfirmation>\n");
    x.push_str("        <InsuredCardClassification>01</InsuredCardClassification>\n");
    x.push_str(&format!("        <InsurerNumber>{}</InsurerNumber>\n", escape(&p.insurer)));
    if !p.symbol.is_empty() {
        x.push_str(&format!("        <InsuredCardSymbol>{}</InsuredCardSymbol>\n", escape(&p.symbol)));
    }
    x.push_str(&format!("        <InsuredIdentificationNumber>{}</InsuredIdentificationNumber>\n", escape(&p.number)));
    x.push_str(&format!("        <InsuredBranchNumber>{}</InsuredBranchNumber>\n", escape(&p.branch)));
    x.push_str("        <PersonalFamilyClassification>1</PersonalFamilyClassification>\n");
    x.push_str(&format!(
        "        <Name>{}</Name>\n        <NameKana>{}</NameKana>\n",
        escape(&p.name),
        escape(&p.kana)
    ));
    x.push_str(&format!("        <Sex1>1</Sex1>\n        <Birthdate>{}</Birthdate>\n", p.birthdate));
    x.push_str("        <InsurerName>オンシ健康保険組合</InsurerName>\n");
    x.push_str("        <InsuredPartialContributionRatio>030</InsuredPartialContributionRatio>\n");
    let validity = match c.outcome {
        Outcome::Invalid => "2",
        Outcome::NewQualification => "3",
        Outcome::NotFound => "4",
        _ => "1",
    };
    x.push_str(&format!("        <QualificationValidity>{validity}</QualificationValidity>\n"));
    if c.limit_certificate {
        x.push_str(
            "        <LimitApplicationCertificateRelatedConsFlg>1</LimitApplicationCertificateRelatedConsFlg>\n",
        );
        x.push_str("        <LimitApplicationCertificateRelatedInfo><LimitApplicationCertificateClassification>01</LimitApplicationCertificateClassification></LimitApplicationCertificateRelatedInfo>\n");
    }
    for (flag, block) in
        c.consents.iter().zip(["PharmacistsInfo", "DiagnosisInfo", "SpecificHealthCheckupsInfo", "OperationInfo"])
    {
        if let Some(v) = flag {
            x.push_str(&format!(
                "        <{block}><{block}ConsFlg>{}</{block}ConsFlg><{block}ConsTime>{}</{block}ConsTime></{block}>\n",
                u8::from(*v),
                stamp(c.at)
            ));
        }
    }
    x.push_str("      </ResultOfQualificationConfirmation>\n");
    x
}

fn document(
    header_class: &str,
    at: OffsetDateTime,
    code: &str,
    encoding: FileEncoding,
    body: &str,
    error: Option<&str>,
) -> String {
    let (label, ident) = match encoding {
        FileEncoding::Utf8 => ("UTF-8", "0"),
        FileEncoding::ShiftJis => ("Shift_JIS", "1"),
    };
    let segment = if error.is_some() { "9" } else { "1" };
    let error_el = error
        .map(|e| {
            format!(
                "    <ErrorCode>{e}</ErrorCode>\n    <ErrorMessage>資格確認処理でエラーが発生しました</ErrorMessage>\n"
            )
        })
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"{label}\" standalone=\"no\"?>\n<XmlMsg>\n  <MessageHeader>\n    <ProcessExecutionTime>{}</ProcessExecutionTime>\n    <QualificationConfirmationDate>{}</QualificationConfirmationDate>\n    <MedicalInstitutionCode>{code}</MedicalInstitutionCode>\n    <ArbitraryFileIdentifier/>\n    <ReferenceClassification>{header_class}</ReferenceClassification>\n    <SegmentOfResult>{segment}</SegmentOfResult>\n{error_el}    <CharacterCodeIdentifier>{ident}</CharacterCodeIdentifier>\n  </MessageHeader>\n  <MessageBody>\n{body}  </MessageBody>\n</XmlMsg>",
        stamp(at),
        &stamp(at)[..8],
    )
}

pub(crate) fn encode(text: &str, encoding: FileEncoding) -> Vec<u8> {
    match encoding {
        FileEncoding::Utf8 => text.as_bytes().to_vec(),
        FileEncoding::ShiftJis => encoding_rs::SHIFT_JIS.encode(text).0.into_owned(),
    }
}

/// A single confirmation: a `face/` file for a card read, a `res/` file for a numbers query.
pub fn confirmation_file(c: &Confirmation, encoding: FileEncoding, serial: u64) -> ResultFile {
    let (status, results) = match c.outcome {
        Outcome::Error(_) => ("2", String::new()),
        Outcome::Multiple => ("1", format!("{}{}", result_block(c), result_block(c))),
        Outcome::NotFound => ("1", String::new()),
        _ => ("1", result_block(c)),
    };
    let validity = match c.outcome {
        Outcome::Valid => "1",
        Outcome::Invalid => "2",
        Outcome::NewQualification => "3",
        Outcome::NotFound => "4",
        Outcome::Multiple => "5",
        Outcome::Error(_) => "",
    };
    let mut body = format!("    <ProcessingResultStatus>{status}</ProcessingResultStatus>\n");
    // A numbers query echoes what was asked (res/ files); a card read asks for no numbers.
    if !c.card {
        body.push_str(&format!(
            "    <QualificationConfirmSearchInfo>\n      <InsurerNumber>{}</InsurerNumber>\n      \
             <InsuredIdentificationNumber>{}</InsuredIdentificationNumber>\n    </QualificationConfirmSearchInfo>\n",
            escape(&c.person.insurer),
            escape(&c.person.number)
        ));
    }
    if !validity.is_empty() {
        body.push_str(&format!("    <QualificationValidity>{validity}</QualificationValidity>\n"));
    }
    if !results.is_empty() {
        body.push_str(&format!("    <ResultList>\n{results}    </ResultList>\n"));
    }
    let error = match c.outcome {
        Outcome::Error(code) => Some(code),
        _ => None,
    };
    let text = document(if c.card { "1" } else { "2" }, c.at, &c.clinic_code, encoding, &body, error);
    let name = if c.card {
        format!("OQSsiquc01res_face_{serial:06}_{}.xml", stamp(c.at))
    } else {
        format!("OQSsiquc01res_{}{serial:06}.xml", stamp(c.at))
    };
    ResultFile { name, bytes: encode(&text, encoding) }
}

/// A bulk confirmation (一括照会) of several patients.
pub fn bulk_file(confirmations: &[Confirmation], encoding: FileEncoding, serial: u64) -> ResultFile {
    let first = &confirmations[0];
    let results: String = confirmations.iter().map(result_block).collect();
    let body = format!(
        "    <ProcessingResultStatus>1</ProcessingResultStatus>\n    <ResultList>\n{results}    </ResultList>\n"
    );
    let text = document("2", first.at, &first.clinic_code, encoding, &body, None);
    ResultFile { name: format!("OQSmuquc02res_{}{serial:06}.xml", stamp(first.at)), bytes: encode(&text, encoding) }
}

const FAMILY: [(&str, &str); 8] = [
    ("髙橋", "ﾀｶﾊｼ"),
    ("山﨑", "ﾔﾏｻﾞｷ"),
    ("佐藤", "ｻﾄｳ"),
    ("鈴木", "ｽｽﾞｷ"),
    ("田中", "ﾀﾅｶ"),
    ("渡邊", "ﾜﾀﾅﾍﾞ"),
    ("伊藤", "ｲﾄｳ"),
    ("齋藤", "ｻｲﾄｳ"),
];
const GIVEN: [(&str, &str); 6] =
    [("太郎", "ﾀﾛｳ"), ("花子", "ﾊﾅｺ"), ("翔", "ｼｮｳ"), ("美咲", "ﾐｻｷ"), ("健一", "ｹﾝｲﾁ"), ("さくら", "ｻｸﾗ")];

/// Generates a clinic's reception stream.
pub struct Generator {
    rng: StdRng,
    clinic_code: String,
    people: Vec<Person>,
    serial: u64,
}

impl Generator {
    pub fn new(clinic_code: &str, people: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let insurers = ["06139999", "01130012", "31130015", "39131003", "  138016"];
        let people = (0..people.max(1))
            .map(|i| {
                let (f, fk) = FAMILY[rng.random_range(0..FAMILY.len())];
                let (g, gk) = GIVEN[rng.random_range(0..GIVEN.len())];
                Person {
                    insurer: insurers[rng.random_range(0..insurers.len())].to_owned(),
                    symbol: if rng.random_bool(0.5) { format!("１２{}", i % 10) } else { String::new() },
                    number: format!("{:07}", i + 1),
                    branch: "00".to_owned(),
                    name: format!("{f}　{g}"),
                    kana: format!("{fk} {gk}"),
                    birthdate: format!(
                        "19{:02}{:02}{:02}",
                        rng.random_range(30..99),
                        rng.random_range(1..13),
                        rng.random_range(1..29)
                    ),
                }
            })
            .collect();
        Self { rng, clinic_code: clinic_code.to_owned(), people, serial: 0 }
    }

    /// The people this generator draws from (the same ones a synthetic レセ電 file can claim for).
    pub fn people(&self) -> &[Person] {
        &self.people
    }

    /// The next reception at `at`: マイナ保険証 a little over half the time (a face file), otherwise a
    /// numbers query (a res file); one file in ten in Shift_JIS.
    pub fn next(&mut self, at: OffsetDateTime) -> (ResultFile, bool) {
        self.serial += 1;
        let card = self.rng.random_bool(0.58);
        let r: f64 = self.rng.random();
        let outcome = match r {
            x if x < 0.95 => Outcome::Valid,
            x if x < 0.97 => Outcome::Invalid,
            x if x < 0.982 => Outcome::NewQualification,
            x if x < 0.992 => Outcome::NotFound,
            x if x < 0.995 => Outcome::Multiple,
            _ => Outcome::Error("EQCS3001"),
        };
        let person = self.people[self.rng.random_range(0..self.people.len())].clone();
        let consents = if card {
            [
                Some(self.rng.random_bool(0.85)),
                Some(self.rng.random_bool(0.8)),
                Some(self.rng.random_bool(0.7)),
                Some(self.rng.random_bool(0.75)),
            ]
        } else {
            [None; 4]
        };
        let c = Confirmation {
            at,
            clinic_code: self.clinic_code.clone(),
            card,
            person,
            outcome,
            consents,
            limit_certificate: self.rng.random_bool(0.05),
        };
        let encoding = if self.rng.random_bool(0.1) { FileEncoding::ShiftJis } else { FileEncoding::Utf8 };
        (confirmation_file(&c, encoding, self.serial), card)
    }

    /// A bulk check of `n` patients.
    pub fn bulk(&mut self, at: OffsetDateTime, n: usize) -> ResultFile {
        self.serial += 1;
        let list: Vec<Confirmation> = (0..n.max(1))
            .map(|_| Confirmation {
                at,
                clinic_code: self.clinic_code.clone(),
                card: false,
                person: self.people[self.rng.random_range(0..self.people.len())].clone(),
                outcome: Outcome::Valid,
                consents: [None; 4],
                limit_certificate: false,
            })
            .collect();
        bulk_file(&list, FileEncoding::Utf8, self.serial)
    }
}

/// Writes one file the way the terminal does: straight into place, so readers can see it half-written.
pub fn write_into(folder: &Path, file: &ResultFile) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(folder)?;
    let path = folder.join(&file.name);
    std::fs::write(&path, &file.bytes)?;
    Ok(path)
}

/// `onshi-agent simulate`: writes receptions into `out/face` and `out/res` at about `per_minute` files
/// a minute, busier in the morning and early evening (a clinic's two peaks), until `stop`.
pub async fn run(out: PathBuf, clinic_code: String, per_minute: f64, stop: CancellationToken) -> std::io::Result<u64> {
    let mut generator = Generator::new(&clinic_code, 500, StdRng::from_os_rng().random());
    let mut written = 0u64;
    loop {
        let now = OffsetDateTime::now_utc();
        let hour = now.to_offset(onshi_domain::jst::JST).hour();
        let peak = match hour {
            9..=11 => 1.6,
            16..=18 => 1.3,
            12..=13 => 0.5,
            _ => 1.0,
        };
        let mean_gap = 60.0 / (per_minute * peak).max(0.01);
        let gap = -mean_gap * (1.0 - generator.rng.random::<f64>()).ln();
        tokio::select! {
            () = stop.cancelled() => return Ok(written),
            () = tokio::time::sleep(Duration::from_secs_f64(gap.min(600.0))) => {}
        }
        let now = OffsetDateTime::now_utc();
        let (file, card) =
            if generator.rng.random_bool(0.005) { (generator.bulk(now, 5), false) } else { generator.next(now) };
        let folder = out.join(if card { "face" } else { "res" });
        write_into(&folder, &file)?;
        written += 1;
    }
}

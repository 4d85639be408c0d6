//! Reading the clinic's レセ電 claims file (RECEIPTC.UKE, 医科): the month's receipts reduced to what the
//! cloud needs (`onshi_domain::ClaimsFile`). `onshi-agent uke parse FILE` prints exactly this.
//!
//! A file is taken whole or refused whole: it must start with IR, end with GO, and GO's 総件数 and
//! 総合計点数 must equal the receipts read, so a file cut short (no GO, or a GO that no longer adds up),
//! a line that is not a record, or a receipt without its insurance record is refused with the line and
//! the reason. Refusal messages name record types, line numbers and counts, never a value from a
//! receipt. 歯科 and 調剤 files (点数表 3 and 4) use other record sets and are refused by name.
//!
//! Names, birth dates, sex, diagnoses and drugs are read past and never kept. The insured person becomes
//! the same keyed pseudonym the 資格確認 results give (保険者番号, 記号, 番号 and 枝番, NFKC-normalised), the
//! カルテ番号 is sealed (`onshi_domain::sealed`), and of the procedures only the 初診/再診 codes and the
//! reception-addon codes leave, with their days.
//!
//! Field positions follow the 記録条件仕様 (医科); see docs/uke.md for the sources and what is unverified.

mod codes;
mod records;
pub mod synth;

use std::collections::BTreeMap;
use std::fmt;

use onshi_domain::{
    ClaimReceipt, ClaimVisit, ClaimedCode, ClaimedVisitKind, ClaimsFile, Day, MedicalInstitutionCode, PatientRef, Payer,
};
use sha2::{Digest, Sha256};

pub use codes::{FIRST_VISIT, REVISIT, is_addon, kind_of};
use records::{Record, day_of, number, year_month};

use crate::oqs::ParseContext;

/// Files larger than this are refused before being decoded (a large hospital's month is tens of MB).
pub const MAX_UKE_BYTES: u64 = 256 * 1024 * 1024;

/// The 記録条件仕様's field numbers for what is read (1-based; field 1 is the record id).
mod layout {
    pub const IR_PAYER: usize = 2;
    pub const IR_PREFECTURE: usize = 3;
    pub const IR_TABLE: usize = 4;
    pub const IR_CODE: usize = 5;
    pub const IR_CLAIM_MONTH: usize = 8;
    pub const IR_VOLUME: usize = 9;
    pub const RE_NO: usize = 2;
    pub const RE_TYPE: usize = 3;
    pub const RE_SERVICE_MONTH: usize = 4;
    pub const RE_CHART: usize = 14;
    pub const HO_INSURER: usize = 2;
    pub const HO_SYMBOL: usize = 3;
    pub const HO_NUMBER: usize = 4;
    pub const HO_POINTS: usize = 6;
    pub const KO_PAYER: usize = 2;
    pub const KO_RECIPIENT: usize = 3;
    pub const KO_POINTS: usize = 6;
    pub const SN_CONFIRMATION: usize = 3;
    pub const SN_BRANCH: usize = 7;
    pub const SI_SECTION: usize = 2;
    pub const SI_CODE: usize = 4;
    /// 算定日情報: day 1 of the month is this field, day 31 thirty fields later.
    pub const SI_DAY1: usize = 14;
    pub const GO_COUNT: usize = 2;
    pub const GO_POINTS: usize = 3;
    pub const GO_VOLUME: usize = 4;
}

/// SN 確認区分 written by the clinic itself: its own qualification check at the 窓口 (02 onwards are set
/// later by the 審査支払機関 or the insurer). One public source only: see docs/uke.md.
const SN_CLINIC_CHECK: &str = "01";

/// Why a file was refused. The text names the line and what is wrong, never a value from a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UkeError {
    TooLarge(u64),
    /// Not Shift_JIS text.
    Encoding,
    Empty,
    /// The first record is not IR.
    NoHeader,
    /// 歯科 or 調剤 record sets.
    UnsupportedTable(String),
    /// A line that is not `XX,…` with a known shape.
    BadRecord {
        line: usize,
        why: String,
    },
    /// A receipt without HO or KO.
    NoInsurer {
        line: usize,
    },
    /// No GO record: the file was cut short.
    NoTrailer,
    /// The last line has no line end: the file was cut short.
    Unterminated,
    /// Something after GO.
    AfterTrailer {
        line: usize,
    },
    /// GO's counts disagree with the receipts read.
    Counts {
        what: &'static str,
        stated: u64,
        read: u64,
    },
    WrongClinic {
        found: String,
    },
    /// Read, but breaks a rule of the claims contract (a 診療年月 after the 請求年月, too many codes).
    Invalid {
        field: String,
        why: String,
    },
}

impl fmt::Display for UkeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge(n) => write!(f, "file is {n} bytes, over the {MAX_UKE_BYTES}-byte limit"),
            Self::Encoding => f.write_str(
                "not Shift_JIS text (a レセ電 file is Shift_JIS with CRLF line ends; this one is UTF-8 or damaged)",
            ),
            Self::Empty => f.write_str("the file is empty"),
            Self::NoHeader => f.write_str("the first record is not IR (医療機関情報): not a レセ電 file"),
            Self::UnsupportedTable(t) => write!(
                f,
                "点数表 {t} ({}) is not supported yet: only 医科 files (点数表 1) are read",
                match t.as_str() {
                    "3" => "歯科",
                    "4" => "調剤",
                    _ => "unknown",
                }
            ),
            Self::BadRecord { line, why } => write!(f, "line {line}: {why}"),
            Self::NoInsurer { line } => {
                write!(f, "line {line}: the receipt has neither HO (保険者) nor KO (公費) record")
            }
            Self::NoTrailer => f.write_str("no GO record at the end: the file is incomplete (cut short?)"),
            Self::Unterminated => {
                f.write_str("the last line is not ended by CRLF: the file is incomplete (cut short?)")
            }
            Self::AfterTrailer { line } => write!(f, "line {line}: records after GO"),
            Self::Counts { what, stated, read } => {
                write!(f, "GO says {what} {stated} but the file holds {read}: the file is inconsistent")
            }
            Self::WrongClinic { found } => {
                write!(f, "医療機関コード {found} is not the clinic this agent is enrolled for")
            }
            Self::Invalid { field, why } => write!(f, "{field}: {why}"),
        }
    }
}

impl std::error::Error for UkeError {}

/// One receipt while it is being read.
struct Open {
    line: usize,
    receipt: ClaimReceipt,
    insurer: Option<[String; 3]>,
    public: Option<[String; 2]>,
    branch: Option<String>,
    chart: String,
    /// The 診療識別 of the current section of SI rows.
    section: String,
    visits: BTreeMap<Day, (ClaimedVisitKind, Vec<String>)>,
    addons: BTreeMap<String, Vec<Day>>,
}

fn bad(line: usize, why: impl Into<String>) -> UkeError {
    UkeError::BadRecord { line, why: why.into() }
}

impl Open {
    fn finish(self, ctx: &ParseContext) -> Result<ClaimReceipt, UkeError> {
        let mut r = self.receipt;
        let branch = self.branch.as_deref().unwrap_or("");
        r.patient = match (&self.insurer, &self.public) {
            (Some([insurer, symbol, number]), _) => {
                Some(PatientRef::pseudonymize(&ctx.pseudonym_key, insurer, symbol, number, branch))
            }
            // 公費単独: the 公費 numbers, in the places the 資格確認 results give them (see docs/uke.md).
            (None, Some([payer, recipient])) => {
                Some(PatientRef::pseudonymize(&ctx.pseudonym_key, payer, "", recipient, branch))
            }
            (None, None) => return Err(UkeError::NoInsurer { line: self.line }),
        };
        r.chart = onshi_domain::sealed::seal_chart_number(&ctx.pseudonym_key, &self.chart);
        r.visits = self.visits.into_iter().map(|(date, (kind, codes))| ClaimVisit { date, kind, codes }).collect();
        r.addons = self.addons.into_iter().map(|(code, dates)| ClaimedCode { code, dates }).collect();
        Ok(r)
    }
}

/// Reads a whole 医科 レセ電 file.
pub fn parse(bytes: &[u8], ctx: &ParseContext) -> Result<ClaimsFile, UkeError> {
    if bytes.len() as u64 > MAX_UKE_BYTES {
        return Err(UkeError::TooLarge(bytes.len() as u64));
    }
    let file_sha256 = hex::encode(Sha256::digest(bytes));
    // Some レセコン end the file with an EOF mark (0x1A).
    let body = bytes.strip_suffix(&[0x1A]).unwrap_or(bytes);
    // UTF-8 text with non-ASCII characters practically never is valid Shift_JIS that means the same.
    if !body.is_ascii() && std::str::from_utf8(body).is_ok() {
        return Err(UkeError::Encoding);
    }
    let text =
        encoding_rs::SHIFT_JIS.decode_without_bom_handling_and_without_replacement(body).ok_or(UkeError::Encoding)?;
    // Every record ends with CRLF (LF alone is accepted): a file whose last line is not ended was cut.
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(UkeError::Unterminated);
    }
    let mut lines = text.split('\n').enumerate().map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)));

    let (line, header) = lines.by_ref().find(|(_, l)| !l.trim().is_empty()).ok_or(UkeError::Empty)?;
    let ir = Record::new(line, header);
    if ir.id() != "IR" {
        return Err(UkeError::NoHeader);
    }
    let table = ir.field(layout::IR_TABLE);
    if table != "1" {
        return Err(UkeError::UnsupportedTable(table.to_owned()));
    }
    let payer = Payer::from_ir_code(ir.field(layout::IR_PAYER))
        .ok_or_else(|| bad(line, "IR: 審査支払機関 is neither 1 (支払基金) nor 2 (国保連)"))?;
    let code = format!("{}{}{}", ir.field(layout::IR_PREFECTURE), table, ir.field(layout::IR_CODE));
    let institution_code = MedicalInstitutionCode::parse(&code)
        .map_err(|_| bad(line, "IR: 都道府県 and 医療機関コード do not form a 10-digit 医療機関コード"))?;
    if ctx.clinic.as_ref().is_some_and(|enrolled| enrolled != &institution_code) {
        return Err(UkeError::WrongClinic { found: institution_code.to_string() });
    }
    let claim_month =
        year_month(ir.field(layout::IR_CLAIM_MONTH)).ok_or_else(|| bad(line, "IR: 請求年月 is not GYYMM or YYYYMM"))?;
    // 00 for the first (or only) volume.
    let volume: u8 = match ir.field(layout::IR_VOLUME) {
        "" => 1,
        v => v
            .parse::<u8>()
            .ok()
            .and_then(|n| n.checked_add(1))
            .ok_or_else(|| bad(line, "IR: マルチボリューム識別情報 is not a number"))?,
    };

    let mut receipts: Vec<ClaimReceipt> = Vec::new();
    let mut open: Option<Open> = None;
    // GO's 総件数, 総合計点数, and whether it is the last volume (99).
    let mut trailer: Option<(u64, u64, bool)> = None;
    for (line, text) in lines {
        if text.trim().is_empty() {
            continue;
        }
        if trailer.is_some() {
            return Err(UkeError::AfterTrailer { line });
        }
        let record = Record::new(line, text);
        let id = record.id();
        if id.len() != 2 || !id.bytes().all(|b| b.is_ascii_uppercase()) || record.len() < 2 {
            return Err(bad(line, "not a record (expected two capital letters, then fields separated by commas)"));
        }
        match id {
            "RE" => {
                if let Some(done) = open.take() {
                    receipts.push(done.finish(ctx)?);
                }
                if receipts.len() >= onshi_domain::claims::MAX_RECEIPTS {
                    return Err(bad(
                        line,
                        format!("more than {} receipts in one file", onshi_domain::claims::MAX_RECEIPTS),
                    ));
                }
                open = Some(read_receipt(&record)?);
            }
            "GO" => {
                if let Some(done) = open.take() {
                    receipts.push(done.finish(ctx)?);
                }
                let count =
                    number(record.field(layout::GO_COUNT)).ok_or_else(|| bad(line, "GO: 総件数 is not a number"))?;
                let points = number(record.field(layout::GO_POINTS))
                    .ok_or_else(|| bad(line, "GO: 総合計点数 is not a number"))?;
                // The last volume says 99; a file cut inside GO lacks it.
                let volume = record.field(layout::GO_VOLUME);
                if volume.len() != 2 || !volume.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad(line, "GO: マルチボリューム識別情報 is missing (the file is cut short?)"));
                }
                trailer = Some((count, points, volume == "99"));
            }
            "IR" => return Err(bad(line, "a second IR record")),
            _ => {
                let Some(current) = open.as_mut() else {
                    return Err(bad(line, format!("{id} before the first RE (receipt)")));
                };
                read_detail(current, &record)?;
            }
        }
    }
    let Some((count, points, last_volume)) = trailer else {
        return Err(UkeError::NoTrailer);
    };
    // A volume before the last of a multi-volume submission leaves GO's counts empty.
    let intermediate = count == 0 && points == 0 && !last_volume;
    if intermediate {
        let total: u64 = receipts.iter().map(|r| r.points).sum();
        return Ok(ClaimsFile {
            institution_code,
            claim_month,
            payer,
            volume,
            file_sha256,
            total_points: total,
            receipts,
        });
    }
    if count != receipts.len() as u64 {
        return Err(UkeError::Counts { what: "総件数", stated: count, read: receipts.len() as u64 });
    }
    let total = total_points(&receipts)?;
    if points != total {
        return Err(UkeError::Counts { what: "総合計点数", stated: points, read: total });
    }
    checked(ClaimsFile { institution_code, claim_month, payer, volume, file_sha256, total_points: total, receipts })
}

fn total_points(receipts: &[ClaimReceipt]) -> Result<u64, UkeError> {
    receipts.iter().try_fold(0u64, |sum, r| sum.checked_add(r.points)).ok_or(UkeError::Invalid {
        field: "points".into(),
        why: "the receipts' points add up beyond any real month".into(),
    })
}

/// What the cloud would refuse is refused here, with the reason, so a clinic never queues a file that
/// can only be set aside.
fn checked(claims: ClaimsFile) -> Result<ClaimsFile, UkeError> {
    claims
        .validate(&claims.institution_code, "claims")
        .map_err(|e| UkeError::Invalid { field: e.field, why: e.message })?;
    Ok(claims)
}

fn read_receipt(re: &Record<'_>) -> Result<Open, UkeError> {
    let line = re.line;
    let receipt_no = number(re.field(layout::RE_NO))
        .filter(|n| *n > 0 && *n <= u64::from(u32::MAX))
        .ok_or_else(|| bad(line, "RE: レセプト番号 is not a number"))? as u32;
    let receipt_type = re.field(layout::RE_TYPE);
    if receipt_type.len() != 4 || !receipt_type.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(line, "RE: レセプト種別 is not 4 digits"));
    }
    let service_month = year_month(re.field(layout::RE_SERVICE_MONTH))
        .ok_or_else(|| bad(line, "RE: 診療年月 is not GYYMM or YYYYMM"))?;
    // The last digit of the 種別 is 入院 (odd) or 入院外 (even, 0 included).
    let outpatient = receipt_type.bytes().last().is_some_and(|d| (d - b'0').is_multiple_of(2));
    Ok(Open {
        line,
        receipt: ClaimReceipt {
            receipt_no,
            service_month,
            receipt_type: receipt_type.to_owned(),
            outpatient,
            patient: None,
            online_confirmed: false,
            chart: None,
            points: 0,
            visits: Vec::new(),
            addons: Vec::new(),
        },
        insurer: None,
        public: None,
        branch: None,
        chart: re.field(layout::RE_CHART).to_owned(),
        section: String::new(),
        visits: BTreeMap::new(),
        addons: BTreeMap::new(),
    })
}

fn read_detail(open: &mut Open, record: &Record<'_>) -> Result<(), UkeError> {
    let line = record.line;
    match record.id() {
        "HO" => {
            let points =
                number(record.field(layout::HO_POINTS)).ok_or_else(|| bad(line, "HO: 合計点数 is not a number"))?;
            if open.insurer.is_none() {
                open.insurer = Some([
                    record.field(layout::HO_INSURER).to_owned(),
                    record.field(layout::HO_SYMBOL).to_owned(),
                    record.field(layout::HO_NUMBER).to_owned(),
                ]);
                open.receipt.points = points;
            }
        }
        "KO" => {
            let points =
                number(record.field(layout::KO_POINTS)).ok_or_else(|| bad(line, "KO: 合計点数 is not a number"))?;
            if open.public.is_none() {
                open.public =
                    Some([record.field(layout::KO_PAYER).to_owned(), record.field(layout::KO_RECIPIENT).to_owned()]);
                // 公費単独: the first 公費's points are the receipt's.
                if open.insurer.is_none() {
                    open.receipt.points = points;
                }
            }
        }
        "SN" => {
            open.receipt.online_confirmed |= record.field(layout::SN_CONFIRMATION) == SN_CLINIC_CHECK;
            let branch = record.field(layout::SN_BRANCH);
            if !branch.is_empty() && open.branch.is_none() {
                open.branch = Some(branch.to_owned());
            }
        }
        "SI" => {
            // 診療識別 may be left out on the rows after the first of its section.
            let section = record.field(layout::SI_SECTION);
            if !section.is_empty() {
                open.section = section.to_owned();
            }
            let code = record.field(layout::SI_CODE);
            if code.len() != 9 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(line, "SI: 診療行為コード is not 9 digits"));
            }
            let kind = kind_of(code, &open.section);
            let addon = is_addon(code);
            if kind.is_none() && !addon {
                return Ok(());
            }
            let month = open.receipt.service_month;
            for day in 1..=31u8 {
                let count = number(record.field(layout::SI_DAY1 + usize::from(day) - 1))
                    .ok_or_else(|| bad(line, format!("SI: 算定日情報 of day {day} is not a number")))?;
                if count == 0 {
                    continue;
                }
                let date = day_of(month, day)
                    .map(Day)
                    .ok_or_else(|| bad(line, format!("SI: 算定日情報 on day {day}, which {month} does not have")))?;
                if let Some(kind) = kind {
                    let entry = open.visits.entry(date).or_insert((kind, Vec::new()));
                    // A 初診 code on a day makes it a 初診 whatever else was claimed.
                    if kind == ClaimedVisitKind::First {
                        entry.0 = kind;
                    }
                    if !entry.1.iter().any(|c| c == code) {
                        entry.1.push(code.to_owned());
                    }
                }
                if addon {
                    let dates = open.addons.entry(code.to_owned()).or_default();
                    if !dates.contains(&date) {
                        dates.push(date);
                    }
                }
            }
        }
        // Drugs, materials and comments belong to a 診療識別 section too: an SI row after them with the
        // field left out continues their section, not the last SI's.
        "IY" | "TO" | "CO" => {
            let section = record.field(layout::SI_SECTION);
            if !section.is_empty() {
                open.section = section.to_owned();
            }
        }
        // Diagnoses and the records this reader does not need.
        _ => {}
    }
    Ok(())
}

/// The claim month a file is for, for `uke import`'s event time: the first of the month, 00:00 JST, so a
/// re-import of the same file makes the same event.
pub fn event_time(claims: &ClaimsFile) -> time::OffsetDateTime {
    claims.claim_month.first_day().midnight().assume_offset(onshi_domain::jst::JST)
}

/// The event a file becomes: its id derived from the file's SHA-256, so importing it twice is one event.
pub fn event_of(claims: ClaimsFile) -> onshi_domain::AgentEvent {
    let digest = Sha256::digest(format!("uke:{}", claims.file_sha256));
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    let uuid = uuid::Builder::from_custom_bytes(id).into_uuid();
    onshi_domain::AgentEvent {
        id: onshi_domain::EventId::from_uuid(uuid),
        occurred_at: event_time(&claims),
        payload: onshi_domain::EventPayload::Claims(claims),
    }
}

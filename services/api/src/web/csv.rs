//! The one CSV writer behind every export (dashboards, fleet, audit log, billing).
//!
//! What a clinic's Excel or レセコン needs, in one place:
//! - UTF-8 with a byte-order mark (Excel opens it as UTF-8 without an import dialog), or Shift_JIS on
//!   request (older レセコン and Excel installations);
//! - CRLF line ends and every field quoted;
//! - formula-safe: a field that starts with `=`, `+`, `-`, `@`, a tab or a CR gets a leading `'`, so a
//!   spreadsheet never runs text from a record as a formula (CSV injection);
//! - Shift_JIS never garbles: characters that Windows writes under another code point are mapped to it
//!   (〜 U+301C → U+FF5E, − U+2212 → U+FF0D, …), and a character with no Shift_JIS form at all refuses the
//!   whole file with the row and the character named.

use actix_web::HttpResponse;

/// A table to export.
#[derive(Debug, Clone, Default)]
pub struct CsvTable {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// A character with no Shift_JIS form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {row}: 「{character}」 (U+{code:04X}) cannot be written in Shift_JIS", code = u32::from(*character))]
pub struct SjisError {
    /// 0 for the header, then 1.. for the data rows.
    pub row: usize,
    pub character: char,
}

/// Quotes one field, neutralising spreadsheet formulas.
pub fn field(value: &str) -> String {
    let mut v = value.replace('"', "\"\"");
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        v.insert(0, '\'');
    }
    format!("\"{v}\"")
}

/// The code point Windows' Shift_JIS (CP932, as the WHATWG encoder writes it) uses for characters that
/// Unicode text often carries in another form.
fn windows_form(c: char) -> char {
    match c {
        '\u{301C}' => '\u{FF5E}', // 〜 WAVE DASH → ～
        '\u{2016}' => '\u{2225}', // ‖ → ∥
        '\u{2212}' => '\u{FF0D}', // − MINUS SIGN → －
        '\u{2014}' => '\u{2015}', // — EM DASH → ―
        '\u{00A2}' => '\u{FFE0}', // ¢
        '\u{00A3}' => '\u{FFE1}', // £
        '\u{00AC}' => '\u{FFE2}', // ¬
        '\u{00A0}' => ' ',
        other => other,
    }
}

/// `text` with every character replaced by the form Windows' Shift_JIS writes (what a Shift_JIS export
/// decodes back to).
pub fn windows_text(text: &str) -> String {
    text.chars().map(windows_form).collect()
}

impl CsvTable {
    pub fn new<S: AsRef<str>>(header: &[S]) -> Self {
        Self { header: header.iter().map(|h| h.as_ref().to_owned()).collect(), rows: Vec::new() }
    }

    pub fn push<I, S>(&mut self, fields: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(fields.into_iter().map(Into::into).collect());
    }

    /// The data rows (without the header).
    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn lines(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(&self.header).chain(&self.rows).map(|r| {
            let mut line = r.iter().map(|f| field(f)).collect::<Vec<_>>().join(",");
            line.push_str("\r\n");
            line
        })
    }

    /// UTF-8 with a byte-order mark.
    pub fn utf8(&self) -> Vec<u8> {
        let mut out = String::from("\u{feff}");
        for line in self.lines() {
            out.push_str(&line);
        }
        out.into_bytes()
    }

    /// Shift_JIS, or the first row and character that has no Shift_JIS form.
    pub fn shift_jis(&self) -> Result<Vec<u8>, SjisError> {
        let mut out = Vec::new();
        for (row, line) in self.lines().enumerate() {
            let line = windows_text(&line);
            let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&line);
            if unmappable {
                let character = line
                    .chars()
                    .find(|c| encoding_rs::SHIFT_JIS.encode(&c.to_string()).2)
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(SjisError { row, character });
            }
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    /// The table as a UTF-8 download named `name` (ASCII; `.csv` is added).
    pub fn download(&self, name: &str) -> HttpResponse {
        attachment(self.utf8(), "utf-8", name)
    }
}

/// A CSV body as a download.
pub fn attachment(bytes: Vec<u8>, charset: &str, name: &str) -> HttpResponse {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    HttpResponse::Ok()
        .content_type(format!("text/csv; charset={charset}"))
        .insert_header(("Content-Disposition", format!("attachment; filename=\"{safe}.csv\"")))
        .body(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(field("a\"b"), "\"a\"\"b\"");
        assert_eq!(field("=SUM(A1)"), "\"'=SUM(A1)\"");
        assert_eq!(field("-1"), "\"'-1\"");
        let mut t = CsvTable::new(&["名前", "点数"]);
        t.push(["医療情報取得加算", "1"]);
        let text = String::from_utf8(t.utf8()).unwrap();
        assert!(text.starts_with('\u{feff}'));
        assert_eq!(text.matches("\r\n").count(), 2);
    }

    #[test]
    fn shift_jis_maps_the_windows_forms_and_names_what_it_cannot_write() {
        let mut t = CsvTable::new(&["期間"]);
        t.push(["2026-06-01〜2027-05-31 − 医療DX—加算"]);
        let bytes = t.shift_jis().unwrap();
        let (back, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
        assert!(!bad);
        assert!(back.contains("2026-06-01～2027-05-31"), "{back}");
        t.push(["ok"]);
        t.push(["絵文字😀"]);
        assert_eq!(t.shift_jis(), Err(SjisError { row: 3, character: '😀' }));
    }
}

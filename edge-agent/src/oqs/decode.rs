//! Bytes → text, strictly. The terminal writes UTF-8 or Shift_JIS (Windows-31J), names the encoding in the
//! XML declaration (with Windows labels such as `MS932` or `CP932`), and says which in
//! `CharacterCodeIdentifier`. We decode with encoding_rs without replacement characters: a file that does
//! not decode cleanly in its declared encoding is refused, never stored as mojibake or U+FFFD.

use encoding_rs::{Encoding, SHIFT_JIS, UTF_8};

use super::ParseError;

/// The encodings a result file may legitimately use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileEncoding {
    Utf8,
    ShiftJis,
}

impl FileEncoding {
    pub fn label(self) -> &'static str {
        match self {
            Self::Utf8 => "UTF-8",
            Self::ShiftJis => "Shift_JIS",
        }
    }

    fn encoding(self) -> &'static Encoding {
        match self {
            Self::Utf8 => UTF_8,
            // encoding_rs's Shift_JIS is the WHATWG one, i.e. Windows-31J (NEC/IBM extensions: ① ㈱ 髙 﨑).
            Self::ShiftJis => SHIFT_JIS,
        }
    }
}

/// Maps a declaration label to an encoding. encoding_rs does not know `CP932`, and Windows software
/// writes several spellings, so the mapping is ours.
fn from_label(label: &str) -> Option<FileEncoding> {
    let l = label.trim().to_ascii_lowercase().replace('_', "-");
    match l.as_str() {
        "utf-8" | "utf8" => Some(FileEncoding::Utf8),
        "shift-jis" | "shiftjis" | "sjis" | "x-sjis" | "ms932" | "cp932" | "windows-31j" | "ms-kanji"
        | "csshiftjis" => Some(FileEncoding::ShiftJis),
        _ => None,
    }
}

/// Reads `encoding="…"` from an XML declaration at the start of `bytes` (ASCII-compatible encodings).
fn declared_label(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(200)];
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..].trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    Some(value[..value.find(quote)?].to_owned())
}

/// Decodes a whole file. Returns the text (without BOM) and the encoding it was decoded with.
pub fn decode(bytes: &[u8]) -> Result<(String, FileEncoding), ParseError> {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(ParseError::Encoding("UTF-16 (the terminal writes UTF-8 or Shift_JIS)".into()));
    }
    let (body, bom) = match bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        Some(rest) => (rest, true),
        None => (bytes, false),
    };
    let encoding = match declared_label(body) {
        Some(label) => from_label(&label).ok_or_else(|| {
            ParseError::Encoding(format!("unsupported encoding label `{}`", label.chars().take(40).collect::<String>()))
        })?,
        // XML without a declaration is UTF-8.
        None => FileEncoding::Utf8,
    };
    if bom && encoding != FileEncoding::Utf8 {
        return Err(ParseError::Encoding(format!("UTF-8 byte order mark but declared {}", encoding.label())));
    }
    // UTF-8 text with non-ASCII characters practically never decodes as valid Shift_JIS *and* means the
    // same; a file that is valid UTF-8 but labelled Shift_JIS is mislabelled.
    if encoding == FileEncoding::ShiftJis && !body.is_ascii() && std::str::from_utf8(body).is_ok() {
        return Err(ParseError::Encoding("bytes are UTF-8 but the file is labelled Shift_JIS".into()));
    }
    let text = encoding
        .encoding()
        .decode_without_bom_handling_and_without_replacement(body)
        .ok_or_else(|| ParseError::Encoding(format!("not valid {}", encoding.label())))?;
    Ok((text.into_owned(), encoding))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sjis(s: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = SHIFT_JIS.encode(s);
        assert!(!unmappable);
        bytes.into_owned()
    }

    #[test]
    fn windows_labels_all_mean_shift_jis() {
        for label in ["Shift_JIS", "shift-jis", "MS932", "CP932", "Windows-31J", "SJIS"] {
            let doc = format!("<?xml version=\"1.0\" encoding=\"{label}\"?><a>髙﨑①㈱</a>");
            let (text, enc) = decode(&sjis(&doc)).unwrap();
            assert_eq!(enc, FileEncoding::ShiftJis, "{label}");
            assert!(text.contains("髙﨑①㈱"), "{label}");
        }
    }

    #[test]
    fn utf8_with_and_without_bom_decodes() {
        let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>髙﨑</a>";
        assert_eq!(decode(doc.as_bytes()).unwrap().0, doc);
        let mut with_bom = vec![0xEF, 0xBB, 0xBF];
        with_bom.extend_from_slice(doc.as_bytes());
        assert_eq!(decode(&with_bom).unwrap().0, doc);
    }

    #[test]
    fn mislabelled_files_are_refused_both_ways() {
        let utf8 = "<?xml version=\"1.0\" encoding=\"Shift_JIS\"?><a>山田</a>";
        assert!(matches!(decode(utf8.as_bytes()), Err(ParseError::Encoding(_))));
        let sj = sjis("<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>山田</a>");
        assert!(matches!(decode(&sj), Err(ParseError::Encoding(_))));
    }

    #[test]
    fn utf16_and_unknown_labels_are_refused() {
        assert!(decode(&[0xFF, 0xFE, b'<', 0]).is_err());
        assert!(decode(b"<?xml version=\"1.0\" encoding=\"EUC-JP\"?><a/>").is_err());
    }
}

//! A sentence in both languages the pages speak. The engine words each reason once per language from the
//! same parts, so the two say the same thing; the Japanese one is the record (exports, the API, closed
//! months' snapshots before English was kept), the English one is for English pages.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    pub ja: String,
    pub en: String,
}

impl Text {
    pub fn new(ja: impl Into<String>, en: impl Into<String>) -> Self {
        Self { ja: ja.into(), en: en.into() }
    }

    pub fn is_empty(&self) -> bool {
        self.ja.is_empty()
    }

    /// Joins sentences or clauses with each language's separator.
    pub fn join(parts: &[Text], ja: &str, en: &str) -> Self {
        Self {
            ja: parts.iter().map(|p| p.ja.as_str()).collect::<Vec<_>>().join(ja),
            en: parts.iter().map(|p| p.en.as_str()).collect::<Vec<_>>().join(en),
        }
    }

    /// Appends `other`, each language to its own.
    pub fn push(&mut self, other: &Text) {
        self.ja.push_str(&other.ja);
        self.en.push_str(&other.en);
    }

    /// The text for a page in English (`en`) or Japanese; an English text never kept (a month closed before
    /// it was) falls back to the Japanese.
    pub fn in_lang(&self, en: bool) -> &str {
        Self::pick(&self.ja, &self.en, en)
    }

    /// `in_lang` for a text kept as two fields (a billing line's reason, a legend's frequency).
    pub fn pick<'a>(ja: &'a str, en_text: &'a str, en: bool) -> &'a str {
        if en && !en_text.is_empty() { en_text } else { ja }
    }
}

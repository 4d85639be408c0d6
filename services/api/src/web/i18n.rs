//! Japanese by default, English on request. The choice is a cookie set by `?lang=en|ja` on any page.
//! Templates carry both texts side by side (`lang.t("サインイン", "Sign in")`), so a translation can
//! never go missing for one language only.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Ja,
    En,
}

impl Lang {
    pub fn t(&self, ja: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }

    pub fn is_en(&self) -> bool {
        *self == Lang::En
    }

    pub fn code(&self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    /// One language of a text stored in both as "日本語 / English" (a webhook's delivery errors and URL
    /// problems, written by the worker for every reader): the part in this language. A text not of
    /// that form (an HTTP status, a reason stored before) is returned as it is.
    pub fn pick<'a>(&self, text: &'a str) -> &'a str {
        match text.split_once(" / ") {
            Some((ja, en)) if !ja.is_ascii() => match self {
                Lang::Ja => ja,
                Lang::En => en,
            },
            _ => text,
        }
    }

    /// The language to switch to (for the toggle link).
    pub fn other(&self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }

    pub fn other_label(&self) -> &'static str {
        match self {
            Lang::Ja => "English",
            Lang::En => "日本語",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Lang;

    #[test]
    fn a_text_in_both_languages_gives_the_readers_part_and_any_other_text_stays_whole() {
        let both = "10 秒以内に応答がありませんでした / no answer within 10 seconds";
        assert_eq!(Lang::Ja.pick(both), "10 秒以内に応答がありませんでした");
        assert_eq!(Lang::En.pick(both), "no answer within 10 seconds");
        // The English part may itself hold a slash; only the first separator splits.
        assert_eq!(Lang::En.pick("送信に失敗しました / request failed: a / b"), "request failed: a / b");
        for whole in ["HTTP 503", "request failed: a / b", ""] {
            assert_eq!(Lang::Ja.pick(whole), whole);
        }
    }
}

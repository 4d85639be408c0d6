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

    pub fn code(&self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
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

//! The expiry radar: what will stop a clinic's reception on a known day, seen early. Per clinic: the
//! 資格確認端末's electronic certificate (its expiry, as the clinic enters it), the terminal's operating
//! system against its end of support (data below, with sources), each agent's version against this
//! release, and each agent's clock. Warnings at 90, 30 and 7 days before a date, and once it has passed.

use time::{Date, Month};

/// This release's version, which agents are compared with (the workspace versions agent and cloud together).
pub const LATEST_AGENT: &str = env!("CARGO_PKG_VERSION");

/// Days before a date at which the radar warns, widest first.
pub const WARN_DAYS: [i64; 3] = [90, 30, 7];
/// A terminal clock ahead of the agent's by more than this files receptions under the wrong minute (the
/// agent's `check` uses the same limit against the server). A clock behind cannot be told from a file read
/// late, so only one ahead is reported.
pub const CLOCK_AHEAD_SECS: i64 = 60;

/// How close a date is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// The date has passed (or, for a version or a clock, it needs doing now).
    Now,
    Within7,
    Within30,
    Within90,
}

impl Stage {
    /// The stage of `due` as of `today`, or `None` when it is more than 90 days away.
    pub fn of(due: Date, today: Date) -> Option<Self> {
        let days = (due - today).whole_days();
        match days {
            d if d < 0 => Some(Self::Now),
            d if d <= WARN_DAYS[2] => Some(Self::Within7),
            d if d <= WARN_DAYS[1] => Some(Self::Within30),
            d if d <= WARN_DAYS[0] => Some(Self::Within90),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Now => "now",
            Self::Within7 => "7d",
            Self::Within30 => "30d",
            Self::Within90 => "90d",
        }
    }

    pub fn css_class(self) -> &'static str {
        match self {
            Self::Now | Self::Within7 => "bad",
            Self::Within30 | Self::Within90 => "warn",
        }
    }
}

/// An operating system a 資格確認端末 may run, and when its support ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsSupport {
    /// Stored on the clinic; stable.
    pub code: &'static str,
    pub label: &'static str,
    pub ends: Date,
    /// Whether the date was read in Microsoft's own lifecycle text (else from secondary sources).
    pub confirmed: bool,
}

const fn day(y: i32, m: Month, d: u8) -> Date {
    match Date::from_calendar_date(y, m, d) {
        Ok(date) => date,
        Err(_) => panic!("a valid date"),
    }
}

/// End of support per edition. Sources: Microsoft's lifecycle data (learn.microsoft.com/lifecycle,
/// MicrosoftDocs/lifecycle-data) for the Windows 10 editions; the Windows 11 dates follow Microsoft's
/// published servicing lengths (24 months Home/Pro, 36 months Enterprise; LTSC 5 years, IoT LTSC 10) and
/// were checked against secondary copies only. The portal's terminal setup manual names Windows 10
/// (IoT) Enterprise 2019 LTSC as the tested system. Extended Security Updates are not counted: a clinic
/// that buys them enters nothing different, and the page says ESU exists.
pub const OS_SUPPORT: &[OsSupport] = &[
    OsSupport { code: "win10", label: "Windows 10 Home / Pro", ends: day(2025, Month::October, 14), confirmed: true },
    OsSupport {
        code: "win10-enterprise",
        label: "Windows 10 Enterprise / Education",
        ends: day(2025, Month::October, 14),
        confirmed: true,
    },
    OsSupport {
        code: "win10-ltsc2019",
        label: "Windows 10 (IoT) Enterprise LTSC 2019",
        ends: day(2029, Month::January, 9),
        confirmed: true,
    },
    OsSupport {
        code: "win10-ltsc2021",
        label: "Windows 10 Enterprise LTSC 2021",
        ends: day(2027, Month::January, 12),
        confirmed: true,
    },
    OsSupport {
        code: "win10-iot-ltsc2021",
        label: "Windows 10 IoT Enterprise LTSC 2021",
        ends: day(2032, Month::January, 13),
        confirmed: true,
    },
    OsSupport {
        code: "win11-23h2",
        label: "Windows 11 23H2 Home / Pro",
        ends: day(2025, Month::November, 11),
        confirmed: false,
    },
    OsSupport {
        code: "win11-24h2",
        label: "Windows 11 24H2 Home / Pro",
        ends: day(2026, Month::October, 13),
        confirmed: false,
    },
    OsSupport {
        code: "win11-25h2",
        label: "Windows 11 25H2 Home / Pro",
        ends: day(2027, Month::October, 12),
        confirmed: false,
    },
    OsSupport {
        code: "win11-ltsc2024",
        label: "Windows 11 Enterprise LTSC 2024",
        ends: day(2029, Month::October, 9),
        confirmed: false,
    },
    OsSupport {
        code: "win11-iot-ltsc2024",
        label: "Windows 11 IoT Enterprise LTSC 2024",
        ends: day(2034, Month::October, 10),
        confirmed: false,
    },
];

pub fn os(code: &str) -> Option<&'static OsSupport> {
    OS_SUPPORT.iter().find(|o| o.code == code)
}

/// Whether `version` is older than `latest` (both `1.2.3`, with any prefix before the digits such as
/// the simulator's `sim-`); `None` when either does not read as a version.
pub fn is_outdated(version: &str, latest: &str) -> Option<bool> {
    let parse = |v: &str| semver::Version::parse(v.trim_start_matches(|c: char| !c.is_ascii_digit())).ok();
    Some(parse(version)? < parse(latest)?)
}

/// What a warning is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The 資格確認端末's electronic certificate expires on the date.
    Certificate,
    /// The terminal's operating system loses support on the date.
    Os(&'static OsSupport),
    /// An agent runs an older version than this release.
    AgentVersion { version: String, latest: String },
    /// The terminal's clock runs ahead of the agent's.
    ClockAhead { secs: i64 },
}

/// One thing on the radar of a clinic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub item: Item,
    /// The agent it is about, for versions and clocks.
    pub agent: Option<String>,
    pub due: Option<Date>,
    pub stage: Stage,
}

impl Warning {
    /// Dated items are e-mailed once per stage; versions and clocks are on the page and in the weekly
    /// summary only.
    pub fn mailed(&self) -> bool {
        matches!(self.item, Item::Certificate | Item::Os(_))
    }

    /// Identifies the notice: the same item, date and stage is told once.
    pub fn key(&self) -> String {
        let due = self.due.map(|d| d.to_string()).unwrap_or_default();
        match &self.item {
            Item::Certificate => format!("cert:{due}:{}", self.stage.code()),
            Item::Os(os) => format!("os:{}:{due}:{}", os.code, self.stage.code()),
            Item::AgentVersion { version, .. } => format!("agent:{}:{version}", self.agent.as_deref().unwrap_or("")),
            Item::ClockAhead { .. } => format!("clock:{}", self.agent.as_deref().unwrap_or("")),
        }
    }

    pub fn label_ja(&self) -> String {
        match &self.item {
            Item::Certificate => "資格確認端末の電子証明書の有効期限".to_owned(),
            Item::Os(os) => format!("資格確認端末の OS（{}）のサポート終了", os.label),
            Item::AgentVersion { version, latest } => format!("エージェントの更新があります（{version} → {latest}）"),
            Item::ClockAhead { secs } => format!("資格確認端末の時計が {secs} 秒進んでいます"),
        }
    }

    pub fn label_en(&self) -> String {
        match &self.item {
            Item::Certificate => "The 資格確認端末's electronic certificate expires".to_owned(),
            Item::Os(os) => format!("Support for the terminal's OS ({}) ends", os.label),
            Item::AgentVersion { version, latest } => format!("An agent update is available ({version} → {latest})"),
            Item::ClockAhead { secs } => format!("The 資格確認端末's clock is {secs} s ahead"),
        }
    }

    /// What the clinic does about it.
    pub fn advice_ja(&self) -> &'static str {
        match &self.item {
            Item::Certificate => {
                "期限の90日前から医療機関等向けポータルサイトで更新できます（手数料あり）。期限を過ぎるとオン資が使えません。"
            }
            Item::Os(_) => {
                "端末の販売・保守業者に更新か入れ替えを相談してください（延長セキュリティ更新 ESU を購入した場合も、その期限を確かめてください）。"
            }
            Item::AgentVersion { .. } => {
                "エージェントを入れたPCで新しい版を入れてください（設定と送信待ちはそのまま残ります）。"
            }
            Item::ClockAhead { .. } => {
                "端末の時刻合わせ（インターネット時刻）を確かめてください。受付時刻がずれて記録されます。"
            }
        }
    }

    pub fn advice_en(&self) -> &'static str {
        match &self.item {
            Item::Certificate => {
                "It can be renewed on the portal for medical institutions from 90 days before (a fee applies); once expired, オン資 stops."
            }
            Item::Os(_) => {
                "Ask the terminal's vendor about an update or a replacement (if you bought Extended Security Updates, check their end)."
            }
            Item::AgentVersion { .. } => "Install the new version on the agent's PC (its settings and outbox stay).",
            Item::ClockAhead { .. } => {
                "Check the terminal's time synchronisation; receptions are filed at the wrong time."
            }
        }
    }
}

/// What an agent reports that the radar reads.
#[derive(Debug, Clone, Copy)]
pub struct AgentFacts<'a> {
    pub name: &'a str,
    pub version: Option<&'a str>,
    pub clock_skew_secs: Option<i64>,
}

/// A clinic's warnings as of `today`, most urgent first. `latest` is this release's agent version.
pub fn warnings(
    cert_expires: Option<Date>,
    os_code: Option<&str>,
    agents: &[AgentFacts<'_>],
    latest: &str,
    today: Date,
) -> Vec<Warning> {
    let mut out = Vec::new();
    if let Some(due) = cert_expires
        && let Some(stage) = Stage::of(due, today)
    {
        out.push(Warning { item: Item::Certificate, agent: None, due: Some(due), stage });
    }
    if let Some(os) = os_code.and_then(os)
        && let Some(stage) = Stage::of(os.ends, today)
    {
        out.push(Warning { item: Item::Os(os), agent: None, due: Some(os.ends), stage });
    }
    for a in agents {
        if let Some(version) = a.version.filter(|v| is_outdated(v, latest) == Some(true)) {
            let item = Item::AgentVersion { version: version.to_owned(), latest: latest.to_owned() };
            out.push(Warning { item, agent: Some(a.name.to_owned()), due: None, stage: Stage::Now });
        }
        if let Some(secs) = a.clock_skew_secs.filter(|s| *s > CLOCK_AHEAD_SECS) {
            let item = Item::ClockAhead { secs };
            out.push(Warning { item, agent: Some(a.name.to_owned()), due: None, stage: Stage::Now });
        }
    }
    // Dated items before undated ones of the same stage: a date that has passed stops reception.
    out.sort_by_key(|w| (w.stage, w.due.is_none(), w.due));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn warnings_at_ninety_thirty_and_seven_days() {
        let today = date!(2026 - 12 - 02);
        assert_eq!(Stage::of(date!(2027 - 03 - 03), today), None, "91 days");
        assert_eq!(Stage::of(date!(2027 - 03 - 02), today), Some(Stage::Within90));
        assert_eq!(Stage::of(date!(2027 - 01 - 01), today), Some(Stage::Within30));
        assert_eq!(Stage::of(date!(2026 - 12 - 09), today), Some(Stage::Within7));
        assert_eq!(Stage::of(today, today), Some(Stage::Within7), "the last day");
        assert_eq!(Stage::of(date!(2026 - 12 - 01), today), Some(Stage::Now));
    }

    #[test]
    fn windows_10_ended_in_october_2025() {
        let w10 = os("win10").unwrap();
        assert_eq!(w10.ends, date!(2025 - 10 - 14));
        assert_eq!(Stage::of(w10.ends, date!(2026 - 12 - 02)), Some(Stage::Now));
        let codes: std::collections::HashSet<_> = OS_SUPPORT.iter().map(|o| o.code).collect();
        assert_eq!(codes.len(), OS_SUPPORT.len(), "codes are unique");
    }

    #[test]
    fn a_clinic_sees_what_comes_due_most_urgent_first() {
        let today = date!(2026 - 12 - 02);
        let agents = [
            AgentFacts { name: "受付", version: Some("0.0.9"), clock_skew_secs: Some(95) },
            AgentFacts { name: "診察室", version: Some("0.1.0"), clock_skew_secs: Some(-400) },
        ];
        let w = warnings(Some(date!(2026 - 12 - 20)), Some("win10"), &agents, "0.1.0", today);
        let kinds: Vec<_> = w.iter().map(|w| (w.stage, w.key())).collect();
        assert_eq!(
            kinds,
            vec![
                (Stage::Now, "os:win10:2025-10-14:now".to_owned()),
                (Stage::Now, "agent:受付:0.0.9".to_owned()),
                (Stage::Now, "clock:受付".to_owned()),
                (Stage::Within30, "cert:2026-12-20:30d".to_owned()),
            ]
        );
        assert!(w[0].mailed() && !w[1].mailed() && w[3].mailed());
        assert!(w[3].label_ja().contains("電子証明書"));
        assert!(warnings(Some(date!(2027 - 06 - 01)), Some("win10-ltsc2019"), &[], "0.1.0", today).is_empty());
    }

    #[test]
    fn versions_compare_as_versions() {
        assert_eq!(is_outdated("0.9.0", "0.10.0"), Some(true));
        assert_eq!(is_outdated("sim-0.1.0", "0.1.0"), Some(false));
        assert_eq!(is_outdated("0.2.0", "0.1.0"), Some(false));
        assert_eq!(is_outdated("dev", "0.1.0"), None);
    }
}

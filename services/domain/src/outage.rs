//! "Is it us or everyone?": when the オン資 gateway / VPN probes of agents fail together across many
//! groups in a prefecture (or the whole country), a clinic's own failure is probably part of a wider
//! outage. Only counts cross tenant lines here, and only once enough groups contribute that no group can
//! be recognised in them.

/// Fewest groups with failing agents for a signal (fewer could point at one group).
pub const MIN_GROUPS: u64 = 5;
/// Share of the reporting agents of a region whose probe fails.
pub const MIN_SHARE: f64 = 0.2;
/// How far back heartbeats count.
pub const WINDOW_SECS: i64 = 15 * 60;
/// Where clinics read official notices about オン資 (the 医療機関等向けポータルサイト, as public guides name it;
/// whether outages are announced there first is unverified, see docs/dashboards.md).
pub const OFFICIAL_NOTICES_URL: &str = "https://www.iryohokenjyoho-portalsite.jp/";

/// Agents heard from within the window in one prefecture, across all groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionCount {
    /// 01–47, the first two digits of the clinics' 医療機関コード.
    pub prefecture: u8,
    pub groups_failing: u64,
    pub agents_failing: u64,
    pub agents_reporting: u64,
    /// The earliest start of an open line fault among the failing agents (tracked by the alert watch).
    pub failing_since: Option<time::OffsetDateTime>,
}

/// Where failures rise together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Region {
    Prefecture(u8),
    Nation,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WideOutage {
    pub region: Region,
    /// Failing share of the region's reporting agents, 0 to 1.
    pub share: f64,
    pub groups: u64,
    /// When the failures began, when known.
    pub since: Option<time::OffsetDateTime>,
}

impl WideOutage {
    /// "東京都の端末の 38% が 09:12 から同じ失敗…" / "38% of agents in Tokyo fail the same way since 09:12 JST…";
    /// the date too when the failures became wide before today (JST).
    pub fn describe(&self, ja: bool, now: time::OffsetDateTime) -> String {
        let pct = (self.share * 100.0).round();
        let (name_ja, name_en) = match self.region {
            Region::Prefecture(p) => prefecture_name(p).unwrap_or(("不明な地域", "an unknown region")),
            Region::Nation => ("全国", "Japan"),
        };
        let clock = self.since.map(|t| {
            let t = t.to_offset(crate::jst::JST);
            let time = format!("{:02}:{:02}", t.hour(), t.minute());
            if t.date() == crate::jst::date_of(now) {
                time
            } else {
                format!("{}/{} {time}", u8::from(t.month()), t.day())
            }
        });
        match (ja, clock) {
            (true, Some(c)) => format!(
                "{name_ja}の端末の {pct}% が {c} から同じ失敗（オン資回線・VPN、直近15分、{} グループ）",
                self.groups
            ),
            (true, None) => {
                format!("{name_ja}の端末の {pct}% が同じ失敗（オン資回線・VPN、直近15分、{} グループ）", self.groups)
            }
            (false, Some(c)) => format!(
                "{pct}% of agents in {name_en} fail the same way since {c} JST (オン資 line / VPN, last 15 minutes, {} groups)",
                self.groups
            ),
            (false, None) => format!(
                "{pct}% of agents in {name_en} fail the same way (オン資 line / VPN, last 15 minutes, {} groups)",
                self.groups
            ),
        }
    }

    pub fn covers(&self, prefecture: u8) -> bool {
        match self.region {
            Region::Prefecture(p) => p == prefecture,
            Region::Nation => true,
        }
    }
}

fn wide(
    region: Region,
    groups: u64,
    failing: u64,
    reporting: u64,
    since: Option<time::OffsetDateTime>,
) -> Option<WideOutage> {
    let share = if reporting == 0 { 0.0 } else { failing as f64 / reporting as f64 };
    (groups >= MIN_GROUPS && share >= MIN_SHARE).then_some(WideOutage { region, share, groups, since })
}

/// The regions where failures rise together: each prefecture on its own, and the country as a whole.
/// The country's group count is the sum over prefectures, an upper bound (a group with failing agents in
/// two prefectures counts twice), which only matters near the threshold.
pub fn widespread(counts: &[RegionCount]) -> Vec<WideOutage> {
    let mut out: Vec<WideOutage> = counts
        .iter()
        .filter_map(|c| {
            let region = Region::Prefecture(c.prefecture);
            wide(region, c.groups_failing, c.agents_failing, c.agents_reporting, c.failing_since)
        })
        .collect();
    let sum = |f: fn(&RegionCount) -> u64| counts.iter().map(f).sum::<u64>();
    let since = counts.iter().filter_map(|c| c.failing_since).min();
    if let Some(nation) =
        wide(Region::Nation, sum(|c| c.groups_failing), sum(|c| c.agents_failing), sum(|c| c.agents_reporting), since)
    {
        out.push(nation);
    }
    out
}

/// The prefecture's name in Japanese and English, by its JIS code.
pub fn prefecture_name(code: u8) -> Option<(&'static str, &'static str)> {
    const NAMES: [(&str, &str); 47] = [
        ("北海道", "Hokkaido"),
        ("青森県", "Aomori"),
        ("岩手県", "Iwate"),
        ("宮城県", "Miyagi"),
        ("秋田県", "Akita"),
        ("山形県", "Yamagata"),
        ("福島県", "Fukushima"),
        ("茨城県", "Ibaraki"),
        ("栃木県", "Tochigi"),
        ("群馬県", "Gunma"),
        ("埼玉県", "Saitama"),
        ("千葉県", "Chiba"),
        ("東京都", "Tokyo"),
        ("神奈川県", "Kanagawa"),
        ("新潟県", "Niigata"),
        ("富山県", "Toyama"),
        ("石川県", "Ishikawa"),
        ("福井県", "Fukui"),
        ("山梨県", "Yamanashi"),
        ("長野県", "Nagano"),
        ("岐阜県", "Gifu"),
        ("静岡県", "Shizuoka"),
        ("愛知県", "Aichi"),
        ("三重県", "Mie"),
        ("滋賀県", "Shiga"),
        ("京都府", "Kyoto"),
        ("大阪府", "Osaka"),
        ("兵庫県", "Hyogo"),
        ("奈良県", "Nara"),
        ("和歌山県", "Wakayama"),
        ("鳥取県", "Tottori"),
        ("島根県", "Shimane"),
        ("岡山県", "Okayama"),
        ("広島県", "Hiroshima"),
        ("山口県", "Yamaguchi"),
        ("徳島県", "Tokushima"),
        ("香川県", "Kagawa"),
        ("愛媛県", "Ehime"),
        ("高知県", "Kochi"),
        ("福岡県", "Fukuoka"),
        ("佐賀県", "Saga"),
        ("長崎県", "Nagasaki"),
        ("熊本県", "Kumamoto"),
        ("大分県", "Oita"),
        ("宮崎県", "Miyazaki"),
        ("鹿児島県", "Kagoshima"),
        ("沖縄県", "Okinawa"),
    ];
    NAMES.get(usize::from(code).checked_sub(1)?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(prefecture: u8, groups: u64, failing: u64, reporting: u64) -> RegionCount {
        RegionCount {
            prefecture,
            groups_failing: groups,
            agents_failing: failing,
            agents_reporting: reporting,
            failing_since: None,
        }
    }

    #[test]
    fn a_signal_needs_five_groups_and_a_fifth_of_the_agents() {
        assert!(widespread(&[region(13, 4, 40, 50)]).is_empty(), "four groups could be one group's neighbours");
        assert!(widespread(&[region(13, 5, 9, 50)]).is_empty(), "18% is noise");
        let w = widespread(&[region(13, 5, 19, 50)]);
        assert_eq!(w.len(), 2, "Tokyo, and the country, which is only Tokyo here");
        assert!(w[0].covers(13) && !w[0].covers(27));
        let now = time::macros::datetime!(2026-12-02 03:00 UTC);
        assert!(w[0].describe(true, now).starts_with("東京都の端末の 38% が同じ失敗"));
        let mut since = region(13, 5, 19, 50);
        since.failing_since = Some(time::macros::datetime!(2026-12-02 00:12 UTC));
        let w = widespread(&[since]);
        let ja = w[0].describe(true, now);
        assert!(ja.starts_with("東京都の端末の 38% が 09:12 から同じ失敗"), "{ja}");
        assert!(w[0].describe(false, now).contains("since 09:12 JST"));
        assert!(w[0].describe(true, now + time::Duration::days(1)).contains("が 12/2 09:12 から"), "another day");
        // Spread thin over many prefectures: the country alone.
        let spread: Vec<_> = (1..=10).map(|p| region(p, 1, 3, 10)).collect();
        let w = widespread(&spread);
        assert_eq!(w.len(), 1);
        assert!(w[0].region == Region::Nation && w[0].covers(47));
    }

    #[test]
    fn every_prefecture_has_its_name() {
        assert_eq!(prefecture_name(1), Some(("北海道", "Hokkaido")));
        assert_eq!(prefecture_name(13), Some(("東京都", "Tokyo")));
        assert_eq!(prefecture_name(47), Some(("沖縄県", "Okinawa")));
        assert_eq!(prefecture_name(0), None);
        assert_eq!(prefecture_name(48), None);
    }
}

//! When trouble with a clinic's agent becomes an alert to the group's managers: the agent offline, its
//! card reader or its VPN / オン資 line failing, or result files being quarantined, for N minutes of the
//! clinic's opening hours (default 10). One alert when it starts to count, one when it is over; nothing
//! while the clinic is closed. The worker keeps one tracked row per agent and kind and applies `steps`.

use time::{Duration, OffsetDateTime};

use crate::event::Heartbeat;
use crate::health::{OFFLINE_AFTER_SECS, QUARANTINE_ATTENTION_SECS};
use crate::hours::OpeningHours;

/// Minutes a fault must last in opening hours before anyone is told, unless the clinic sets its own.
pub const DEFAULT_AFTER_MINUTES: u16 = 10;
/// The longest wait a clinic may set (a longer one would tell nobody on a short morning).
pub const MAX_AFTER_MINUTES: u16 = 240;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    Offline,
    Reader,
    Network,
    Quarantine,
}

impl AlertKind {
    pub const ALL: [Self; 4] = [Self::Offline, Self::Reader, Self::Network, Self::Quarantine];

    /// The kind's name in storage, webhooks and the API.
    pub fn code(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Reader => "reader",
            Self::Network => "network",
            Self::Quarantine => "quarantine",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == s)
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Offline => "エージェントから連絡がありません",
            Self::Reader => "カードリーダーが応答しません",
            Self::Network => "VPN・オン資回線に接続できません",
            Self::Quarantine => "結果ファイルを読めず隔離し続けています",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Self::Offline => "The agent is not reporting",
            Self::Reader => "The card reader is not answering",
            Self::Network => "The VPN / オン資 line cannot be reached",
            Self::Quarantine => "Result files keep being quarantined",
        }
    }

    /// What the clinic checks first, in order.
    pub fn checklist_ja(self) -> &'static [&'static str] {
        match self {
            Self::Offline => &[
                "エージェントを入れたPCの電源が入り、ログインできる状態か",
                "PCがインターネットにつながっているか（ブラウザで任意のサイトを開く）",
                "サービス「onshi-agent」が動いているか（止まっていれば再起動）",
            ],
            Self::Reader => &[
                "顔認証付きカードリーダーの電源とUSBケーブルを抜き差しする",
                "資格確認端末でリーダーのアプリが起動しているか",
                "直らなければリーダーのメーカー窓口へ（受付はマイナンバーカードと「資格情報のお知らせ」またはマイナポータルの資格情報画面、あるいは資格確認書で続けられます）",
            ],
            Self::Network => &[
                "VPNルーターのランプと電源を確かめ、必要なら再起動する",
                "資格確認端末が起動していて、画面にエラーが出ていないか",
                "資格確認端末の電子証明書が期限切れでないか（端末一覧「期限と更新」）",
                "医療機関等向けポータルサイトで障害情報が出ていないか（多くの医療機関で同時なら端末一覧に「広域障害の可能性」と出ます）",
            ],
            Self::Quarantine => &[
                "資格確認端末の医療機関コードの設定がこのクリニックのものか",
                "エージェントの監視フォルダが端末の結果フォルダと合っているか",
                "画面の端末一覧で隔離の理由を確かめる",
            ],
        }
    }

    pub fn checklist_en(self) -> &'static [&'static str] {
        match self {
            Self::Offline => &[
                "Is the PC running the agent switched on and signed in?",
                "Is the PC on the internet (open any website in a browser)?",
                "Is the onshi-agent service running (restart it if it stopped)?",
            ],
            Self::Reader => &[
                "Unplug and replug the face-recognition reader's power and USB cable",
                "Is the reader's application running on the 資格確認端末?",
                "If not fixed, call the reader's maker (reception can go on with the マイナンバーカード plus its 資格情報のお知らせ or the マイナポータル screen, or a 資格確認書)",
            ],
            Self::Network => &[
                "Check the VPN router's lights and power; restart it if needed",
                "Is the 資格確認端末 running, without an error on its screen?",
                "Has the 資格確認端末's electronic certificate expired (fleet page, Expiry and updates)?",
                "Does the official portal for medical institutions announce an outage (when many clinics fail at once, the fleet page says 'Possibly a wide outage')?",
            ],
            Self::Quarantine => &[
                "Is the 資格確認端末 set to this clinic's 医療機関コード?",
                "Do the agent's watched folders match the terminal's result folders?",
                "See why files were set aside in the agent list on the fleet page",
            ],
        }
    }
}

/// A fault the agent's last state shows, from `since`; `latest` is the newest evidence (now, except for
/// quarantines, whose evidence is the last file set aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub since: OffsetDateTime,
    pub latest: OffsetDateTime,
}

/// What the agent's state says about each kind now: `Some` while the fault holds, `None` when it does not.
/// Kinds the state cannot tell are left out (an offline agent's reader is unknown; an agent never heard
/// from has no state at all).
pub fn observe(
    last_seen: Option<OffsetDateTime>,
    heartbeat: Option<&Heartbeat>,
    now: OffsetDateTime,
) -> Vec<(AlertKind, Option<Fault>)> {
    let Some(seen) = last_seen else { return vec![] };
    if (now - seen).whole_seconds() > OFFLINE_AFTER_SECS {
        return vec![(AlertKind::Offline, Some(Fault { since: seen, latest: now }))];
    }
    let mut kinds = vec![(AlertKind::Offline, None)];
    let Some(h) = heartbeat else { return kinds };
    let failing = |ok: Option<bool>| (ok == Some(false)).then_some(Fault { since: now, latest: now });
    kinds.push((AlertKind::Reader, failing(h.reader_ok)));
    kinds.push((AlertKind::Network, failing(h.network_ok)));
    let quarantine = h
        .last_quarantine
        .filter(|q| (now - q.at).whole_seconds() <= QUARANTINE_ATTENTION_SECS)
        .map(|q| Fault { since: q.at, latest: q.at });
    kinds.push((AlertKind::Quarantine, quarantine));
    kinds
}

/// A fault being tracked for an agent: since when, and whether the managers were told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    pub kind: AlertKind,
    pub since: OffsetDateTime,
    pub raised: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start tracking a fault; `raise` when it has already lasted long enough in opening hours.
    Start { kind: AlertKind, since: OffsetDateTime, raise: bool },
    /// Tell the managers.
    Raise(AlertKind),
    /// The fault the managers were told of is over: tell them.
    Resolve(AlertKind),
    /// A fault nobody was told of is over: drop it quietly.
    Forget(AlertKind),
}

/// What to do for one agent now. A fault is raised once it has lasted `after` of opening time up to its
/// latest evidence and the clinic is open now; a quarantine must keep recurring for that long.
pub fn steps(
    observed: &[(AlertKind, Option<Fault>)],
    tracked: &[Tracked],
    hours: &OpeningHours,
    after: Duration,
    now: OffsetDateTime,
) -> Vec<Step> {
    let due = |since: OffsetDateTime, latest: OffsetDateTime| {
        hours.is_open(now) && hours.open_time_between(since, latest) >= after
    };
    let mut out = Vec::new();
    for &(kind, fault) in observed {
        let held = tracked.iter().find(|t| t.kind == kind);
        match (fault, held) {
            (Some(f), None) => out.push(Step::Start { kind, since: f.since, raise: due(f.since, f.latest) }),
            (Some(f), Some(t)) if !t.raised && due(t.since, f.latest) => out.push(Step::Raise(kind)),
            (Some(_), Some(_)) => {}
            (None, Some(t)) if t.raised => out.push(Step::Resolve(kind)),
            (None, Some(_)) => out.push(Step::Forget(kind)),
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{QuarantineKind, QuarantineNote};
    use time::macros::datetime;

    fn heartbeat() -> Heartbeat {
        serde_json::from_value(serde_json::json!({ "agent_version": "1.0.0", "reader_ok": true, "network_ok": true }))
            .unwrap()
    }

    fn weekdays() -> OpeningHours {
        let d = "09:00-18:00";
        OpeningHours::parse([d, d, d, d, d, "", ""], false).unwrap()
    }

    const TEN: Duration = Duration::minutes(10);

    #[test]
    fn an_offline_agent_in_opening_hours_is_raised_after_ten_minutes_and_resolved_once_back() {
        let seen = datetime!(2026-12-02 10:00 +09:00);
        let soon = seen + Duration::minutes(5);
        let obs = observe(Some(seen), None, soon);
        assert_eq!(obs, vec![(AlertKind::Offline, Some(Fault { since: seen, latest: soon }))]);
        assert_eq!(
            steps(&obs, &[], &weekdays(), TEN, soon),
            vec![Step::Start { kind: AlertKind::Offline, since: seen, raise: false }]
        );
        let tracked = [Tracked { kind: AlertKind::Offline, since: seen, raised: false }];
        let later = seen + Duration::minutes(11);
        assert_eq!(
            steps(&observe(Some(seen), None, later), &tracked, &weekdays(), TEN, later),
            vec![Step::Raise(AlertKind::Offline)]
        );
        let raised = [Tracked { raised: true, ..tracked[0] }];
        assert_eq!(steps(&observe(Some(seen), None, later), &raised, &weekdays(), TEN, later), vec![]);
        let back = later + Duration::minutes(1);
        assert_eq!(
            steps(&observe(Some(back), Some(&heartbeat()), back), &raised, &weekdays(), TEN, back),
            vec![Step::Resolve(AlertKind::Offline)]
        );
        assert_eq!(
            steps(&observe(Some(back), Some(&heartbeat()), back), &tracked, &weekdays(), TEN, back),
            vec![Step::Forget(AlertKind::Offline)]
        );
    }

    #[test]
    fn nothing_at_night_or_on_a_holiday_and_the_count_starts_at_opening() {
        let seen = datetime!(2026-12-02 02:00 +09:00);
        let tracked = [Tracked { kind: AlertKind::Offline, since: seen, raised: false }];
        for now in [datetime!(2026-12-02 08:59 +09:00), datetime!(2026-12-02 09:05 +09:00)] {
            assert_eq!(steps(&observe(Some(seen), None, now), &tracked, &weekdays(), TEN, now), vec![], "{now}");
        }
        let now = datetime!(2026-12-02 09:10 +09:00);
        assert_eq!(
            steps(&observe(Some(seen), None, now), &tracked, &weekdays(), TEN, now),
            vec![Step::Raise(AlertKind::Offline)]
        );
        // 勤労感謝の日 (a Monday): closed all day.
        let seen = datetime!(2026-11-23 08:00 +09:00);
        let now = datetime!(2026-11-23 15:00 +09:00);
        assert_eq!(
            steps(&observe(Some(seen), None, now), &[], &weekdays(), TEN, now),
            vec![Step::Start { kind: AlertKind::Offline, since: seen, raise: false }]
        );
    }

    #[test]
    fn a_reader_fault_counts_from_when_it_was_first_seen_and_an_offline_agent_says_nothing_of_it() {
        let now = datetime!(2026-12-02 10:00 +09:00);
        let mut h = heartbeat();
        h.reader_ok = Some(false);
        let obs = observe(Some(now), Some(&h), now);
        assert_eq!(
            steps(&obs, &[], &weekdays(), TEN, now),
            vec![Step::Start { kind: AlertKind::Reader, since: now, raise: false }]
        );
        let tracked = [Tracked { kind: AlertKind::Reader, since: now, raised: true }];
        let gone = now + Duration::minutes(30);
        assert_eq!(
            steps(&observe(Some(now), Some(&h), gone), &tracked, &weekdays(), TEN, gone),
            vec![Step::Start { kind: AlertKind::Offline, since: now, raise: true }]
        );
    }

    #[test]
    fn one_stray_quarantined_file_tells_nobody_a_recurring_one_does() {
        let first = datetime!(2026-12-02 10:00 +09:00);
        let mut h = heartbeat();
        h.last_quarantine = Some(QuarantineNote { kind: QuarantineKind::WrongClinic, at: first });
        let tracked = [Tracked { kind: AlertKind::Quarantine, since: first, raised: false }];
        let later = first + Duration::minutes(30);
        assert_eq!(steps(&observe(Some(later), Some(&h), later), &tracked, &weekdays(), TEN, later), vec![]);
        h.last_quarantine =
            Some(QuarantineNote { kind: QuarantineKind::WrongClinic, at: first + Duration::minutes(12) });
        assert_eq!(
            steps(&observe(Some(later), Some(&h), later), &tracked, &weekdays(), TEN, later),
            vec![Step::Raise(AlertKind::Quarantine)]
        );
        let quiet = first + Duration::minutes(75);
        h.last_quarantine = Some(QuarantineNote { kind: QuarantineKind::WrongClinic, at: first });
        assert_eq!(
            steps(&observe(Some(quiet), Some(&h), quiet), &tracked, &weekdays(), TEN, quiet),
            vec![Step::Forget(AlertKind::Quarantine)]
        );
    }

    #[test]
    fn kinds_round_trip_and_every_kind_has_a_checklist() {
        for k in AlertKind::ALL {
            assert_eq!(AlertKind::parse(k.code()), Some(k));
            assert_eq!(k.checklist_ja().len(), k.checklist_en().len());
        }
    }
}

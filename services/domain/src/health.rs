//! Whether a clinic's agent, reader and VPN link are working, from the agent's last heartbeat.

use time::OffsetDateTime;

use crate::event::Heartbeat;

/// Agents send a heartbeat this often.
pub const HEARTBEAT_INTERVAL_SECS: u64 = 20;
/// An agent not heard from for this long is offline: two heartbeats missed, plus slack.
pub const OFFLINE_AFTER_SECS: i64 = 60;
/// A file quarantined this recently keeps the agent at 要確認 (a wrong clinic code quarantines every file,
/// so a persisting fault stays visible; one stray file stops mattering after an hour).
pub const QUARANTINE_ATTENTION_SECS: i64 = 3600;

/// Why an agent needs attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    Reader,
    Network,
    Backpressure,
    Undelivered,
    CorruptOutbox,
    Quarantine(crate::event::QuarantineKind),
}

impl Attention {
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Reader => "カードリーダー応答なし",
            Self::Network => "VPN/オン資回線に接続できません",
            Self::Backpressure => "送信待ちが上限に達しています",
            Self::Undelivered => "10分以上送信できていません",
            Self::CorruptOutbox => "送信待ちの一部が読めず、別に保管されています",
            Self::Quarantine(kind) => kind.label_ja(),
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Self::Reader => "card reader not answering",
            Self::Network => "cannot reach the VPN / オン資 line",
            Self::Backpressure => "the outbox is full",
            Self::Undelivered => "nothing delivered for over 10 minutes",
            Self::CorruptOutbox => "some outbox rows could not be read and were set aside",
            Self::Quarantine(kind) => kind.label_en(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceHealth {
    Online,
    /// Reachable, but something at the clinic needs attention.
    Degraded(Vec<Attention>),
    Offline,
    /// Enrolled but never heard from.
    NeverSeen,
}

impl DeviceHealth {
    pub fn of(last_seen: Option<OffsetDateTime>, heartbeat: Option<&Heartbeat>, now: OffsetDateTime) -> Self {
        let Some(seen) = last_seen else { return Self::NeverSeen };
        if (now - seen).whole_seconds() > OFFLINE_AFTER_SECS {
            return Self::Offline;
        }
        let mut reasons = Vec::new();
        if let Some(h) = heartbeat {
            if h.reader_ok == Some(false) {
                reasons.push(Attention::Reader);
            }
            if h.network_ok == Some(false) {
                reasons.push(Attention::Network);
            }
            if h.backpressure {
                reasons.push(Attention::Backpressure);
            }
            if h.oldest_undelivered_secs.is_some_and(|s| s > 600) {
                reasons.push(Attention::Undelivered);
            }
            if h.corrupt_outbox_rows > 0 {
                reasons.push(Attention::CorruptOutbox);
            }
            if let Some(q) = h.last_quarantine.filter(|q| (now - q.at).whole_seconds() <= QUARANTINE_ATTENTION_SECS) {
                reasons.push(Attention::Quarantine(q.kind));
            }
        }
        if reasons.is_empty() { Self::Online } else { Self::Degraded(reasons) }
    }

    pub fn label_ja(&self) -> &'static str {
        match self {
            Self::Online => "稼働中",
            Self::Degraded(_) => "要確認",
            Self::Offline => "オフライン",
            Self::NeverSeen => "未接続",
        }
    }

    pub fn label_en(&self) -> &'static str {
        match self {
            Self::Online => "Online",
            Self::Degraded(_) => "Needs attention",
            Self::Offline => "Offline",
            Self::NeverSeen => "Not connected yet",
        }
    }

    /// The state's name in the integration API (`online`, `degraded`, `offline`, `never_seen`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Degraded(_) => "degraded",
            Self::Offline => "offline",
            Self::NeverSeen => "never_seen",
        }
    }

    pub fn css_class(&self) -> &'static str {
        match self {
            Self::Online => "ok",
            Self::Degraded(_) => "warn",
            Self::Offline | Self::NeverSeen => "bad",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn heartbeat() -> Heartbeat {
        Heartbeat {
            agent_version: "1".into(),
            outbox_depth: 0,
            oldest_undelivered_secs: None,
            reader_ok: Some(true),
            network_ok: Some(true),
            last_result_at: None,
            clock_skew_secs: None,
            backpressure: false,
            quarantined: 0,
            corrupt_outbox_rows: 0,
            timed_by_file_name: 0,
            last_quarantine: None,
        }
    }

    #[test]
    fn silence_longer_than_a_minute_is_offline() {
        let now = datetime!(2026-11-25 10:00:00 UTC);
        let h = heartbeat();
        assert_eq!(DeviceHealth::of(Some(now - time::Duration::seconds(30)), Some(&h), now), DeviceHealth::Online);
        assert_eq!(DeviceHealth::of(Some(now - time::Duration::seconds(61)), Some(&h), now), DeviceHealth::Offline);
        assert_eq!(DeviceHealth::of(None, None, now), DeviceHealth::NeverSeen);
    }

    #[test]
    fn a_failed_probe_degrades_at_once() {
        let now = datetime!(2026-11-25 10:00:00 UTC);
        let mut h = heartbeat();
        h.network_ok = Some(false);
        assert!(matches!(DeviceHealth::of(Some(now), Some(&h), now), DeviceHealth::Degraded(r) if r.len() == 1));
        h.network_ok = None;
        h.reader_ok = Some(false);
        h.backpressure = true;
        assert!(matches!(DeviceHealth::of(Some(now), Some(&h), now), DeviceHealth::Degraded(r) if r.len() == 2));
        h.corrupt_outbox_rows = 1;
        assert!(matches!(DeviceHealth::of(Some(now), Some(&h), now), DeviceHealth::Degraded(r) if r.len() == 3));
    }

    #[test]
    fn a_recent_quarantine_needs_attention_and_an_old_one_does_not() {
        let now = datetime!(2026-11-25 10:00:00 UTC);
        let mut h = heartbeat();
        h.quarantined = 2;
        h.last_quarantine = Some(crate::event::QuarantineNote {
            kind: crate::event::QuarantineKind::WrongClinic,
            at: now - time::Duration::minutes(5),
        });
        let health = DeviceHealth::of(Some(now), Some(&h), now);
        assert!(
            matches!(&health, DeviceHealth::Degraded(r) if r[0].label_ja().contains("医療機関コード")),
            "{health:?}"
        );
        h.last_quarantine =
            h.last_quarantine.map(|q| crate::event::QuarantineNote { at: now - time::Duration::hours(2), ..q });
        assert_eq!(DeviceHealth::of(Some(now), Some(&h), now), DeviceHealth::Online);
    }
}

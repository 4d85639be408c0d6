//! Whether a clinic's agent, reader and VPN link are working, from the agent's last heartbeat.

use time::OffsetDateTime;

use crate::event::Heartbeat;

/// Agents send a heartbeat this often.
pub const HEARTBEAT_INTERVAL_SECS: u64 = 20;
/// An agent not heard from for this long is offline: two heartbeats missed, plus slack.
pub const OFFLINE_AFTER_SECS: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceHealth {
    Online,
    /// Reachable, but something at the clinic needs attention (reasons in Japanese, for the page).
    Degraded(Vec<&'static str>),
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
                reasons.push("カードリーダー応答なし");
            }
            if h.network_ok == Some(false) {
                reasons.push("VPN/オン資回線に接続できません");
            }
            if h.backpressure {
                reasons.push("送信待ちが上限に達しています");
            }
            if h.oldest_undelivered_secs.is_some_and(|s| s > 600) {
                reasons.push("10分以上送信できていません");
            }
            if h.corrupt_outbox_rows > 0 {
                reasons.push("送信待ちの一部が読めず、別に保管されています");
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
}

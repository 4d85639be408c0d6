//! What outbound webhooks announce. Each type is a fact a group's own systems act on; the payload of each
//! is documented in docs/api.md.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookEvent {
    /// A clinic's month-to-date マイナ保険証利用率 is projected below the level the claims it decides need.
    #[serde(rename = "usage.below_threshold")]
    UsageBelowThreshold,
    /// An agent has not been heard from for `OFFLINE_AFTER_SECS`.
    #[serde(rename = "device.offline")]
    DeviceOffline,
    /// An agent announced offline is heard from again.
    #[serde(rename = "device.recovered")]
    DeviceRecovered,
    /// An agent's fault (offline, reader, VPN line, quarantines) lasted the clinic's alert wait in its
    /// opening hours; the group's managers were e-mailed.
    #[serde(rename = "alert.raised")]
    AlertRaised,
    /// A raised alert is over.
    #[serde(rename = "alert.resolved")]
    AlertResolved,
    /// A billing month of a clinic was closed.
    #[serde(rename = "billing.month_closed")]
    BillingMonthClosed,
    /// A clinic's レセ電 claims file was imported (new, or replacing an earlier version).
    #[serde(rename = "uke.imported")]
    UkeImported,
    /// Sent on request from the webhooks page, to check an endpoint.
    #[serde(rename = "webhook.test")]
    Test,
}

impl WebhookEvent {
    /// The types an endpoint can subscribe to (the test event goes to the endpoint it is sent to).
    pub const SUBSCRIBABLE: [WebhookEvent; 7] = [
        Self::UsageBelowThreshold,
        Self::DeviceOffline,
        Self::DeviceRecovered,
        Self::AlertRaised,
        Self::AlertResolved,
        Self::BillingMonthClosed,
        Self::UkeImported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsageBelowThreshold => "usage.below_threshold",
            Self::DeviceOffline => "device.offline",
            Self::DeviceRecovered => "device.recovered",
            Self::AlertRaised => "alert.raised",
            Self::AlertResolved => "alert.resolved",
            Self::BillingMonthClosed => "billing.month_closed",
            Self::UkeImported => "uke.imported",
            Self::Test => "webhook.test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::SUBSCRIBABLE.into_iter().chain([Self::Test]).find(|e| e.as_str() == s)
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Self::UsageBelowThreshold => "マイナ保険証利用率が基準を下回る見込み",
            Self::DeviceOffline => "端末（エージェント）がオフライン",
            Self::DeviceRecovered => "端末（エージェント）が復旧",
            Self::AlertRaised => "診療時間中の端末アラート",
            Self::AlertResolved => "端末アラートの復旧",
            Self::BillingMonthClosed => "請求月の締め",
            Self::UkeImported => "レセ電ファイルの取り込み",
            Self::Test => "テスト送信",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Self::UsageBelowThreshold => "マイナ保険証 usage projected below the required level",
            Self::DeviceOffline => "Agent offline",
            Self::DeviceRecovered => "Agent back online",
            Self::AlertRaised => "Agent alert in opening hours",
            Self::AlertResolved => "Agent alert over",
            Self::BillingMonthClosed => "Billing month closed",
            Self::UkeImported => "レセ電 claims file imported",
            Self::Test => "Test event",
        }
    }
}

/// Whether a webhook may be sent to `ip`: not loopback, private (RFC 1918, unique local), link-local
/// (cloud metadata lives at 169.254.169.254), shared (100.64/10), unspecified, multicast, broadcast or
/// documentation space, and the same for an IPv4 address written as IPv6.
pub fn is_public_address(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || (a == 192 && b == 0 && c == 0)
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_address(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8))
            };
            // Forms that carry an IPv4 address a gateway may route to: NAT64 (64:ff9b::/96,
            // 64:ff9b:1::/48), 6to4 (2002::/16) and the old IPv4-compatible ::a.b.c.d.
            if (s[0] == 0x64 && s[1] == 0xff9b) || s[0] == 0x2002 || s[..6] == [0; 6] {
                let (hi, lo) = if s[0] == 0x2002 { (s[1], s[2]) } else { (s[6], s[7]) };
                if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
                    return false;
                }
                return !v6.is_loopback() && !v6.is_unspecified() && is_public_address(embedded(hi, lo));
            }
            let first = s[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || first == 0x2001 && s[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_targets() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:a00:1::1",
            "::10.0.0.1",
            "fec0::1",
            "192.0.0.8",
        ] {
            assert!(!is_public_address(private.parse().unwrap()), "{private}");
        }
        for public in
            ["203.0.114.1", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]
        {
            assert!(is_public_address(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for e in WebhookEvent::SUBSCRIBABLE.into_iter().chain([WebhookEvent::Test]) {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), serde_json::json!(e.as_str()));
        }
        assert_eq!(WebhookEvent::parse("device.exploded"), None);
    }
}

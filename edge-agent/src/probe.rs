//! Reachability probes for the card reader and the VPN link: `tcp://host:port` (a TCP connect) or an
//! `http(s)://` URL (any answer below 500). Both time out after three seconds.

use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

pub async fn probe(client: &reqwest::Client, target: &str) -> bool {
    if let Some(addr) = target.strip_prefix("tcp://") {
        matches!(tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
    } else {
        matches!(
            tokio::time::timeout(TIMEOUT, client.get(target).send()).await,
            Ok(Ok(r)) if r.status().as_u16() < 500
        )
    }
}

/// All probes pass; `None` when none is configured.
pub async fn all(client: &reqwest::Client, targets: &[String]) -> Option<bool> {
    if targets.is_empty() {
        return None;
    }
    for t in targets {
        if !probe(client, t).await {
            return Some(false);
        }
    }
    Some(true)
}

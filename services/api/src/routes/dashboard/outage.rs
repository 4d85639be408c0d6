//! "Is it us or everyone?" on the fleet and clinic pages: when some of the caller's agents fail the
//! オン資 line / VPN probe, the wide outages (`onshi_domain::outage`) that cover their prefectures, as the
//! page's sentences. Counts across groups are read only then, never on a healthy page.

use onshi_domain::{DeviceHealth, outage};
use onshi_store::Device;
use time::OffsetDateTime;

use crate::web::i18n::Lang;
use crate::{ApiError, AppState};

/// The sentences for the wide outages covering the prefectures where one of `devices` (with its clinic's
/// prefecture) fails the line probe now; empty when none fails or nothing is wide.
pub(crate) async fn wide_outages(
    state: &AppState,
    lang: Lang,
    devices: &[(&Device, u8)],
    now: OffsetDateTime,
) -> Result<Vec<String>, ApiError> {
    let failing: std::collections::BTreeSet<u8> = devices
        .iter()
        .filter(|(d, _)| d.health(now) != DeviceHealth::Offline)
        .filter(|(d, _)| d.last_heartbeat.as_ref().and_then(|h| h.network_ok) == Some(false))
        .map(|(_, prefecture)| *prefecture)
        .collect();
    if failing.is_empty() {
        return Ok(Vec::new());
    }
    let counts = state.store.network_failures(outage::WINDOW_SECS).await?;
    Ok(outage::widespread(&counts)
        .iter()
        .filter(|w| failing.iter().any(|p| w.covers(*p)))
        .map(|w| w.describe(lang == Lang::Ja, now))
        .collect())
}

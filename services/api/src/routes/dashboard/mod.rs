//! Dashboards for group managers: マイナ保険証利用率 per clinic and month with the threshold watch, a clinic's
//! reception patterns, the agent fleet, and a live feed (server-sent events). Everything reads the rollups
//! the worker maintains, never a scan of raw events. Charts are server-rendered SVG with text
//! alternatives, so the pages work with JavaScript off; every table has a CSV form.

mod chart;
pub(crate) mod clinic;
pub(crate) mod feed;
mod figures;
pub(crate) mod fleet;
mod outage;
pub(crate) mod overview;

/// A rate as a percentage with one decimal, or a dash when there is no figure.
fn pct(rate: Option<f64>) -> String {
    rate.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "—".to_owned())
}

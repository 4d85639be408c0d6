//! Server-rendered SVG charts for the dashboards: sparklines, bars, the weekday × hour heat map and the
//! agents' availability strip. Each carries its numbers as text (title, aria-label) and every page shows
//! the same figures in a table, so the pages work with JavaScript off and with a screen reader.

use onshi_domain::hours::{WEEKDAYS_EN, WEEKDAYS_JA};
use time::OffsetDateTime;

use super::pct;
use crate::web::i18n::Lang;
use crate::web::time::jst_minute;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A sparkline of monthly rates (0–100%) with the threshold as a dashed line. Numbers only inside.
pub(super) fn sparkline(rates: &[Option<f64>], threshold: Option<f64>, label: &str) -> String {
    let (w, h) = (120.0, 32.0);
    let step = if rates.len() > 1 { w / (rates.len() - 1) as f64 } else { w };
    let y = |r: f64| h - (r.clamp(0.0, 1.0) * h);
    let points: Vec<String> = rates
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| format!("{:.1},{:.1}", i as f64 * step, y(r))))
        .collect();
    let text: Vec<String> = rates.iter().map(|r| pct(*r)).collect();
    let mut svg = format!(
        "<svg class=\"spark\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        escape(label),
        escape(&format!("{label}: {}", text.join(" → ")))
    );
    if let Some(t) = threshold {
        svg.push_str(&format!("<line x1=\"0\" x2=\"{w}\" y1=\"{0:.1}\" y2=\"{0:.1}\" class=\"threshold\"/>", y(t)));
    }
    svg.push_str(&format!("<polyline points=\"{}\" class=\"line\"/>", points.join(" ")));
    for p in &points {
        if let Some((x, y)) = p.split_once(',') {
            svg.push_str(&format!("<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" class=\"dot\"/>"));
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars with their numbers as text.
pub(super) fn bars(items: &[(String, i64)]) -> String {
    let max = items.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1) as f64;
    let row_h = 22.0;
    let h = row_h * items.len() as f64;
    let mut svg = format!(
        "<svg class=\"bars\" viewBox=\"0 0 420 {h}\" width=\"420\" height=\"{h}\" role=\"img\" aria-label=\"内訳\">"
    );
    for (i, (label, n)) in items.iter().enumerate() {
        let y = i as f64 * row_h;
        let width = 220.0 * (*n as f64) / max;
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{:.1}\" class=\"label\">{}</text><rect x=\"150\" y=\"{:.1}\" width=\"{width:.1}\" height=\"14\"/><text x=\"{:.1}\" y=\"{:.1}\">{n}</text>",
            y + 14.0,
            escape(label),
            y + 3.0,
            155.0 + width,
            y + 14.0
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// Availability per agent over [from, to): green while heartbeats said all was well, amber while the
/// reader or VPN failed, grey where nothing was heard. Returns the bars (HTML: each agent's name, then
/// its bar as an SVG) and the outages (gaps and degraded stretches) newest first: (agent, from, to, kind).
pub(super) fn availability(
    agents: &[(onshi_domain::DeviceId, String)],
    uptime: &[onshi_store::Uptime],
    from: OffsetDateTime,
    to: OffsetDateTime,
    lang: Lang,
) -> (String, Vec<(String, String, String, String)>) {
    let span = (to - from).whole_seconds().max(1) as f64;
    // Each agent's name is page text above its own bar: drawn inside one SVG, beside the bars, a name such
    // as 受付 資格確認端末（テスト） was cut off on a desktop and shrank with the drawing to a few pixels
    // on a phone. The bar stretches to the card's width (`preserveAspectRatio="none"`, height in CSS).
    let w = 720.0;
    let x = |t: OffsetDateTime| w * ((t - from).whole_seconds() as f64 / span).clamp(0.0, 1.0);
    let mut svg = String::from("<div class=\"uptime\">");
    let mut outages = Vec::new();
    for (id, name) in agents {
        svg.push_str(&format!(
            "<p class=\"uptime-name\">{name}</p><svg class=\"uptime\" viewBox=\"0 0 {w} 14\" preserveAspectRatio=\"none\" \
             role=\"img\" aria-label=\"{name}: {label}\"><rect x=\"0\" y=\"0\" width=\"{w}\" height=\"14\" class=\"none\"/>",
            name = escape(name),
            label = lang.t("端末の稼働状況（停止は下の表）", "availability (outages in the table below)"),
        ));
        let mine: Vec<_> = uptime.iter().filter(|u| u.device == *id).collect();
        for (k, u) in mine.iter().enumerate() {
            let class = if u.healthy { "up" } else { "degraded" };
            svg.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"0\" width=\"{:.1}\" height=\"14\" class=\"{class}\"><title>{} – {}</title></rect>",
                x(u.from),
                (x(u.to) - x(u.from)).max(1.0),
                jst_minute(&u.from),
                jst_minute(&u.to)
            ));
            if !u.healthy {
                let kind = lang.t("リーダー/VPN異常", "reader or VPN failing");
                outages.push((name.clone(), jst_minute(&u.from), jst_minute(&u.to), kind.to_owned()));
            }
            if let Some(next) = mine.get(k + 1)
                && (next.from - u.to).whole_seconds() > onshi_domain::OFFLINE_AFTER_SECS
            {
                let kind = lang.t("応答なし", "nothing heard");
                outages.push((name.clone(), jst_minute(&u.to), jst_minute(&next.from), kind.to_owned()));
            }
        }
        svg.push_str("</svg>");
    }
    svg.push_str("</div>");
    outages.reverse();
    outages.truncate(50);
    (svg, outages)
}

/// Weekday names, Monday first, in the page's language.
pub(super) fn weekdays(lang: Lang) -> [&'static str; 7] {
    if lang == Lang::Ja { WEEKDAYS_JA } else { WEEKDAYS_EN }
}

/// Receptions by weekday (Monday first) and JST hour as an SVG grid, labelled in the page's language.
pub(super) fn heatmap(matrix: &[[i64; 24]; 7], lang: Lang) -> String {
    let max = matrix.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let (cw, ch) = (18.0, 18.0);
    let mut svg = format!(
        "<svg class=\"heat\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">",
        30.0 + 24.0 * cw,
        20.0 + 7.0 * ch,
        lang.t("曜日×時間帯の受付数（表は下）", "Receptions by weekday and hour (table below)")
    );
    for h in (0..24).step_by(3) {
        svg.push_str(&format!("<text x=\"{:.0}\" y=\"12\" class=\"small\">{h}</text>", 30.0 + h as f64 * cw));
    }
    for (d, label) in weekdays(lang).into_iter().enumerate() {
        let y = 20.0 + d as f64 * ch;
        svg.push_str(&format!("<text x=\"0\" y=\"{:.0}\" class=\"small\">{label}</text>", y + 13.0));
        for (h, &n) in matrix[d].iter().enumerate() {
            let opacity = if n == 0 { 0.04 } else { 0.15 + 0.85 * n as f64 / max };
            svg.push_str(&format!(
                "<rect x=\"{:.0}\" y=\"{y:.0}\" width=\"{}\" height=\"{}\" fill-opacity=\"{opacity:.2}\"><title>{label} {h}{}: {n}</title></rect>",
                30.0 + h as f64 * cw,
                cw - 2.0,
                ch - 2.0,
                lang.t("時", ":00")
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heatmap_speaks_the_pages_language() {
        let mut matrix = [[0i64; 24]; 7];
        matrix[3][9] = 4;
        let ja = heatmap(&matrix, Lang::Ja);
        assert!(ja.contains(">月<") && ja.contains("<title>木 9時: 4</title>"), "{ja}");
        let en = heatmap(&matrix, Lang::En);
        assert!(en.contains(">Mon<") && en.contains("<title>Thu 9:00: 4</title>"), "{en}");
        assert!(!en.contains('月') && !en.contains('時'), "no Japanese left on the English chart");
    }
}

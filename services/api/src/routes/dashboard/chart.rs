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
/// reader or VPN failed, grey where nothing was heard, pale before the agent was enrolled (nothing could be
/// heard then, and it is not an outage). Returns the bars (HTML: each agent's name, then its bar as an SVG)
/// and the outages newest first: (agent, from, to, kind). An outage is a degraded stretch or more than
/// `OFFLINE_AFTER_SECS` without a heartbeat: between two stretches, from the enrollment (or the period's
/// start) to the first, and from the last to the period's end, which reads "ongoing" when that is now.
pub(super) fn availability(
    agents: &[onshi_store::Device],
    uptime: &[onshi_store::Uptime],
    (from, to): (OffsetDateTime, OffsetDateTime),
    now: OffsetDateTime,
    lang: Lang,
) -> (String, Vec<(String, String, String, String)>) {
    let span = (to - from).whole_seconds().max(1) as f64;
    // Each agent's name is page text above its own bar: drawn inside one SVG, beside the bars, a name such
    // as 受付 資格確認端末（テスト） was cut off on a desktop and shrank with the drawing to a few pixels
    // on a phone. The bar stretches to the card's width (`preserveAspectRatio="none"`, height in CSS).
    let w = 720.0;
    let x = |t: OffsetDateTime| w * ((t - from).whole_seconds() as f64 / span).clamp(0.0, 1.0);
    let silent = |a: OffsetDateTime, b: OffsetDateTime| (b - a).whole_seconds() > onshi_domain::OFFLINE_AFTER_SECS;
    let nothing_heard = lang.t("応答なし", "nothing heard");
    let mut svg = String::from("<div class=\"uptime\">");
    let mut outages = Vec::new();
    for agent in agents {
        svg.push_str(&format!(
            "<p class=\"uptime-name\">{name}</p><svg class=\"uptime\" viewBox=\"0 0 {w} 14\" preserveAspectRatio=\"none\" \
             role=\"img\" aria-label=\"{name}: {label}\"><rect x=\"0\" y=\"0\" width=\"{w}\" height=\"14\" class=\"none\"/>",
            name = escape(&agent.name),
            label = lang.t("端末の稼働状況（停止は下の表）", "availability (outages in the table below)"),
        ));
        let mine: Vec<_> = uptime.iter().filter(|u| u.device == agent.id).collect();
        // Its life starts at enrollment, or at the first heartbeat if that reads earlier (an agent's clock
        // a little behind the server's).
        let since = mine.first().map_or(agent.enrolled_at, |u| u.from.min(agent.enrolled_at));
        if since > from {
            svg.push_str(&format!(
                "<rect x=\"0\" y=\"0\" width=\"{:.1}\" height=\"14\" class=\"before\"><title>{} {}</title></rect>",
                x(since),
                lang.t("登録前 〜", "not enrolled until"),
                jst_minute(&since)
            ));
        }
        let mut outage = |a: OffsetDateTime, b: String, kind: &str| {
            outages.push((agent.name.clone(), jst_minute(&a), b, kind.to_owned()));
        };
        // Heard until when: a stretch that started before a later one ended adds nothing.
        let mut heard_until = since.max(from);
        for u in mine {
            let class = if u.healthy { "up" } else { "degraded" };
            svg.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"0\" width=\"{:.1}\" height=\"14\" class=\"{class}\"><title>{} – {}</title></rect>",
                x(u.from),
                (x(u.to) - x(u.from)).max(1.0),
                jst_minute(&u.from),
                jst_minute(&u.to)
            ));
            if silent(heard_until, u.from) {
                outage(heard_until, jst_minute(&u.from), nothing_heard);
            }
            if !u.healthy {
                outage(u.from, jst_minute(&u.to), lang.t("リーダー/VPN異常", "reader or VPN failing"));
            }
            heard_until = heard_until.max(u.to);
        }
        if silent(heard_until, to) {
            let end = if silent(to, now) { jst_minute(&to) } else { lang.t("継続中", "ongoing").to_owned() };
            outage(heard_until, end, nothing_heard);
        }
        svg.push_str("</svg>");
    }
    svg.push_str("</div>");
    // Newest first by start (the strings are "YYYY-MM-DD HH:MM" JST, so they sort as times do).
    outages.sort_by(|a, b| b.1.cmp(&a.1));
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

    fn stretch(device: onshi_domain::DeviceId, from: OffsetDateTime, to: OffsetDateTime) -> onshi_store::Uptime {
        onshi_store::Uptime { device, from, to, healthy: true }
    }

    #[test]
    fn availability_starts_at_enrollment_and_names_every_silence() {
        use time::macros::datetime;
        let (from, now) = (datetime!(2026-12-01 00:00 +9), datetime!(2026-12-07 15:00 +9));
        let agent = crate::fixtures::agent(onshi_domain::ClinicId::new(), datetime!(2026-12-03 9:00 +9));
        // Heard from a few seconds after enrollment until now: the days before it are no outage.
        let fine = [stretch(agent.id, datetime!(2026-12-03 9:00:20 +9), datetime!(2026-12-07 14:59:50 +9))];
        let (svg, outages) = availability(std::slice::from_ref(&agent), &fine, (from, now), now, Lang::Ja);
        assert!(outages.is_empty(), "{outages:?}");
        assert!(svg.contains("class=\"before\"><title>登録前 〜 2026-12-03 09:00</title>"), "{svg}");

        // Silent for an hour after enrollment, between two stretches, and since 14:00.
        let gaps = [
            stretch(agent.id, datetime!(2026-12-03 10:00 +9), datetime!(2026-12-04 12:00 +9)),
            stretch(agent.id, datetime!(2026-12-04 12:30 +9), datetime!(2026-12-07 14:00 +9)),
        ];
        let (_, outages) = availability(std::slice::from_ref(&agent), &gaps, (from, now), now, Lang::En);
        let spans: Vec<_> = outages.iter().map(|(_, a, b, what)| (a.as_str(), b.as_str(), what.as_str())).collect();
        assert_eq!(
            spans,
            [
                ("2026-12-07 14:00", "ongoing", "nothing heard"),
                ("2026-12-04 12:00", "2026-12-04 12:30", "nothing heard"),
                ("2026-12-03 09:00", "2026-12-03 10:00", "nothing heard"),
            ]
        );

        // A past period that ended in silence ends at the period's end, not "ongoing".
        let to = datetime!(2026-12-05 00:00 +9);
        let (_, outages) = availability(std::slice::from_ref(&agent), &gaps[..1], (from, to), now, Lang::En);
        assert_eq!(outages[0].1, "2026-12-04 12:00");
        assert_eq!(outages[0].2, "2026-12-05 00:00");
    }

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

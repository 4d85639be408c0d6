//! The agent fleet: every agent of the clinics the caller may see, with its health and last contact.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use askama::Template;
use onshi_domain::{ClinicId, DeviceHealth};
use onshi_store::DeviceStatus;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::web::csv::CsvTable;
use crate::web::guard::{Caller, Page};
use crate::web::page::ok;
use crate::{ApiError, AppState};

pub(crate) struct FleetRow {
    pub clinic: String,
    pub clinic_id: String,
    pub device: String,
    pub health: &'static str,
    pub class: &'static str,
    pub reasons: String,
    /// Things to know that are not faults: quarantined files, results timed by their file name.
    pub notes: String,
    pub last_seen: String,
    pub version: String,
    pub outbox: String,
    pub reader: String,
    pub vpn: String,
}

/// An alert the managers were told of (in opening hours), for the list above the agents.
pub(crate) struct AlertRow {
    pub open: bool,
    pub clinic: String,
    pub clinic_id: String,
    pub device: String,
    pub what: &'static str,
    pub since: String,
    pub raised: String,
    pub resolved: String,
}

/// A line of the expiry radar.
pub(crate) struct RadarRow {
    pub stage: &'static str,
    pub class: &'static str,
    pub clinic: String,
    pub clinic_id: String,
    pub what: String,
    pub due: String,
    pub advice: &'static str,
}

/// Alerts shown: those that started in the last this many days.
const ALERT_DAYS: i64 = 30;

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetPage {
    page: Page,
    rows: Vec<FleetRow>,
    alerts: Vec<AlertRow>,
    radar: Vec<RadarRow>,
    /// Clinics whose certificate expiry is not entered: (id, name).
    no_expiry: Vec<(String, String)>,
    /// "Is it us or everyone?": the wide outages this group's failing agents are part of.
    wide: Vec<String>,
    notices_url: &'static str,
}

#[derive(Deserialize)]
pub(crate) struct FormatQuery {
    #[serde(default)]
    format: Option<String>,
}

pub(crate) async fn fleet(
    state: web::Data<AppState>,
    page: Page,
    caller: Caller,
    q: web::Query<FormatQuery>,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.tenant(caller.scope);
    let all_clinics = store.clinics().await?;
    let prefectures: HashMap<ClinicId, u8> = all_clinics.iter().map(|c| (c.id, c.code.prefecture())).collect();
    let clinics: HashMap<ClinicId, String> = all_clinics.iter().map(|c| (c.id, c.name.clone())).collect();
    let now = OffsetDateTime::now_utc();
    let today = onshi_domain::jst::date_of(now);
    let devices: Vec<_> = store.devices().await?.into_iter().filter(|d| d.status == DeviceStatus::Active).collect();
    let located: Vec<_> = devices.iter().filter_map(|d| prefectures.get(&d.clinic).map(|p| (d, *p))).collect();
    let wide = super::outage::wide_outages(&state, page.lang, &located, now).await?;
    // The radar from the clinics and agents this page has read already.
    let seen: Vec<_> = onshi_store::radar_of(all_clinics, &devices, today)
        .into_iter()
        .filter(|(c, _)| caller.clinics.includes(c.id))
        .collect();
    let mut rows: Vec<(u8, FleetRow)> = devices
        .into_iter()
        .map(|d| {
            let health = d.health(now);
            let rank = match health {
                DeviceHealth::Offline => 0,
                DeviceHealth::Degraded(_) => 1,
                DeviceHealth::NeverSeen => 2,
                DeviceHealth::Online => 3,
            };
            let hb = d.last_heartbeat.as_ref();
            let yes_no = |b: Option<bool>| match b {
                Some(true) => "OK".to_owned(),
                Some(false) => "NG".to_owned(),
                None => "—".to_owned(),
            };
            let mut notes = Vec::new();
            if let Some(h) = hb.filter(|h| h.quarantined > 0) {
                let last = h.last_quarantine.map(|q| {
                    format!(
                        "{}{} {}: {}{}",
                        page.lang.t("（", " ("),
                        page.lang.t("最後", "last"),
                        crate::web::time::jst_minute(&q.at),
                        page.lang.t(q.kind.label_ja(), q.kind.label_en()),
                        page.lang.t("）", ")")
                    )
                });
                notes.push(format!(
                    "{} {}{}",
                    page.lang.t("隔離したファイル", "Quarantined files"),
                    h.quarantined,
                    last.unwrap_or_default()
                ));
            }
            if let Some(h) = hb.filter(|h| h.timed_by_file_name > 0) {
                notes.push(format!(
                    "{} {}",
                    page.lang.t("ファイル名の時刻で記録", "Timed by file name"),
                    h.timed_by_file_name
                ));
            }
            let row = FleetRow {
                clinic: clinics.get(&d.clinic).cloned().unwrap_or_default(),
                clinic_id: d.clinic.to_string(),
                device: d.name.clone(),
                health: page.lang.t(health.label_ja(), health.label_en()),
                class: health.css_class(),
                reasons: match &health {
                    DeviceHealth::Degraded(r) => page.attention(r),
                    _ => String::new(),
                },
                notes: notes.join(page.lang.t("、", ", ")),
                last_seen: d.last_seen_at.map(|t| crate::web::time::jst_minute(&t)).unwrap_or_else(|| "—".to_owned()),
                version: d.agent_version.clone().unwrap_or_else(|| "—".to_owned()),
                outbox: hb.map(|h| h.outbox_depth.to_string()).unwrap_or_else(|| "—".to_owned()),
                reader: yes_no(hb.and_then(|h| h.reader_ok)),
                vpn: yes_no(hb.and_then(|h| h.network_ok)),
            };
            (rank, row)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.clinic.cmp(&b.1.clinic)));
    let rows: Vec<FleetRow> = rows.into_iter().map(|(_, r)| r).collect();
    if q.format.as_deref() == Some("csv") {
        let mut table = CsvTable::new(&[
            "医療機関",
            "端末",
            "状態",
            "要確認",
            "備考",
            "最終受信(JST)",
            "バージョン",
            "未送信件数",
            "カードリーダー",
            "VPN",
        ]);
        for r in &rows {
            table.push(
                [
                    &r.clinic,
                    &r.device,
                    r.health,
                    &r.reasons,
                    &r.notes,
                    &r.last_seen,
                    &r.version,
                    &r.outbox,
                    &r.reader,
                    &r.vpn,
                ]
                .map(|f| f.to_owned()),
            );
        }
        return Ok(table.download(&format!("fleet-{today}")));
    }
    let minute = |t: Option<OffsetDateTime>| t.map(|t| crate::web::time::jst_minute(&t)).unwrap_or_default();
    let alerts = store
        .device_alerts(now - time::Duration::days(ALERT_DAYS))
        .await?
        .into_iter()
        .filter(|a| caller.clinics.includes(a.clinic))
        .map(|a| AlertRow {
            open: a.resolved_at.is_none(),
            clinic_id: a.clinic.to_string(),
            clinic: a.clinic_name,
            device: a.device_name,
            what: page.lang.t(a.kind.label_ja(), a.kind.label_en()),
            since: crate::web::time::jst_minute(&a.since),
            raised: minute(a.raised_at),
            resolved: minute(a.resolved_at),
        })
        .collect();
    let no_expiry = seen
        .iter()
        .filter(|(c, _)| c.terminal_cert_expires.is_none())
        .map(|(c, _)| (c.id.to_string(), c.name.clone()))
        .collect();
    let mut radar: Vec<(onshi_domain::radar::Stage, RadarRow)> = seen
        .iter()
        .flat_map(|(clinic, warnings)| warnings.iter().map(move |w| (clinic, w)))
        .map(|(clinic, w)| {
            let ja = page.lang == crate::web::i18n::Lang::Ja;
            let due = match w.due.map(|d| (d, (d - today).whole_days())) {
                Some((d, n)) if n < 0 => {
                    if ja {
                        format!("{d}（期限切れ）")
                    } else {
                        format!("{d} (passed)")
                    }
                }
                Some((d, n)) => {
                    if ja {
                        format!("{d}（あと{n}日）")
                    } else {
                        format!("{d} ({n} days left)")
                    }
                }
                None => page.lang.t("今すぐ", "now").to_owned(),
            };
            let label = if ja { w.label_ja() } else { w.label_en() };
            let what = match &w.agent {
                Some(agent) => format!("{agent}: {label}"),
                None => label,
            };
            let row = RadarRow {
                stage: match w.stage {
                    onshi_domain::radar::Stage::Now => page.lang.t("対応が必要", "Act now"),
                    onshi_domain::radar::Stage::Within7 => page.lang.t("7日以内", "Within 7 days"),
                    onshi_domain::radar::Stage::Within30 => page.lang.t("30日以内", "Within 30 days"),
                    onshi_domain::radar::Stage::Within90 => page.lang.t("90日以内", "Within 90 days"),
                },
                class: w.stage.css_class(),
                clinic: clinic.name.clone(),
                clinic_id: clinic.id.to_string(),
                what,
                due,
                advice: page.lang.t(w.advice_ja(), w.advice_en()),
            };
            (w.stage, row)
        })
        .collect();
    radar.sort_by_key(|(stage, _)| *stage);
    let radar = radar.into_iter().map(|(_, r)| r).collect();
    ok(FleetPage {
        page,
        rows,
        alerts,
        radar,
        no_expiry,
        wide,
        notices_url: onshi_domain::outage::OFFICIAL_NOTICES_URL,
    })
}

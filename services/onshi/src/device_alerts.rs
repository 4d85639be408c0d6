//! The alert watch of a worker process: every `alert_poll_ms` it looks at the tenants with an agent in
//! trouble (or a fault still open), lets the store apply the opening-hours rules
//! (`onshi_domain::device_alert`) and e-mails each alert raised or resolved to the group's owners and
//! the managers who see that clinic. Several workers may run it: the store locks a tenant's agents while
//! it decides, so an alert is raised once.
//!
//! The e-mail is queued in the e-mail outbox (`crate::mail_sender`, which retries a mail server that
//! refuses) in the transaction that records the alert, with its audit entry and webhook announcement: an
//! alert is never recorded without its e-mail.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use onshi_api::web::time::jst_minute;
use onshi_domain::device_alert::AlertKind;
use onshi_domain::outage::{self, WideOutage};
use onshi_store::{DeviceAlert, NewMail, Store};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub struct AlertWatch {
    pub store: Store,
    /// False when mail is not configured usably (alerts are then on the page and in webhooks only).
    pub mail: bool,
    pub public_url: String,
    pub poll: Duration,
    /// The wide outages last read, and when (`wide_outages`).
    pub wide: Mutex<Option<(Instant, Vec<WideOutage>)>>,
}

/// How many looks the wide outages read for one serve. Reading them scans every agent heard from in the
/// window, nationally; somewhere an agent is always in trouble, so without this it would be read on every
/// look (every 10 s, per worker). A hint six looks old (a minute by default), over a 15-minute window, is
/// as good.
const WIDE_LOOKS: u32 = 6;

impl AlertWatch {
    pub async fn run(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.poll) => {}
            }
            self.look(OffsetDateTime::now_utc()).await;
        }
    }

    /// One look at every tenant with an agent in trouble.
    pub async fn look(&self, now: OffsetDateTime) {
        let tenants = match self.store.device_alert_tenants().await {
            Ok(t) => t,
            Err(e) => return tracing::warn!(error = %onshi_telemetry::Chain(&e), "agents in trouble not looked for"),
        };
        if tenants.is_empty() {
            return;
        }
        // "Is it us or everyone?" for a line fault, read once per look for every group's e-mail.
        let wide = if self.mail { self.wide_outages().await } else { Vec::new() };
        for scope in tenants {
            let tell = |alert: &DeviceAlert, users: &[onshi_store::User]| self.mails(alert, users, &wide);
            match self.store.tenant(scope).evaluate_device_alerts(now, tell).await {
                Ok(told) if told.is_empty() => {}
                Ok(told) => {
                    tracing::info!(tenant = %scope.tenant_id(), alerts = told.len(), "agent alerts raised or resolved");
                }
                Err(e) => {
                    tracing::warn!(error = %onshi_telemetry::Chain(&e), tenant = %scope.tenant_id(), "agent alerts not evaluated")
                }
            }
        }
    }

    /// The e-mail about an alert raised or resolved, to the owners and to the managers who see its clinic.
    fn mails(&self, alert: &DeviceAlert, users: &[onshi_store::User], wide: &[WideOutage]) -> Vec<NewMail> {
        if !self.mail {
            return Vec::new();
        }
        let now = OffsetDateTime::now_utc();
        let wide: Vec<(String, String)> = if alert.kind == AlertKind::Network && alert.resolved_at.is_none() {
            wide.iter()
                .filter(|w| w.covers(alert.prefecture))
                .map(|w| (w.describe(true, now), w.describe(false, now)))
                .collect()
        } else {
            Vec::new()
        };
        let (subject, body) = message(alert, &wide, &self.public_url);
        let told = users.iter().filter(|u| u.is_told_about(Some(alert.clinic))).map(|u| u.email.as_str());
        NewMail::to_each("device_alert", told, &subject, &body)
    }

    /// The wide outages now, at most [`WIDE_LOOKS`] looks old (none when they cannot be read: the e-mail then
    /// goes without the hint).
    async fn wide_outages(&self) -> Vec<WideOutage> {
        let kept = || self.wide.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, wide)) = kept().as_ref()
            && at.elapsed() < self.poll * WIDE_LOOKS
        {
            return wide.clone();
        }
        match self.store.network_failures(outage::WINDOW_SECS).await {
            Ok(counts) => {
                let wide = outage::widespread(&counts);
                *kept() = Some((Instant::now(), wide.clone()));
                wide
            }
            Err(e) => {
                tracing::warn!(error = %onshi_telemetry::Chain(&e), "wide outage counts not read for alerts");
                Vec::new()
            }
        }
    }
}

/// The e-mail for an alert raised or resolved: Japanese first, then English; what happened, since when,
/// what to check, where to look.
fn message(alert: &DeviceAlert, wide: &[(String, String)], public_url: &str) -> (String, String) {
    let site = public_url.trim_end_matches('/');
    // A line fault that many groups share is probably not this clinic's: say so first.
    let (wide_ja, wide_en) = if wide.is_empty() {
        (String::new(), String::new())
    } else {
        let ja: String = wide.iter().map(|(ja, _)| format!("広域障害の可能性: {ja}\n")).collect();
        let en: String = wide.iter().map(|(_, en)| format!("Possibly a wide outage: {en}\n")).collect();
        (
            format!(
                "{ja}公式の障害情報: {}\n受付は資格確認書や「資格情報のお知らせ」で続け、復旧後に再照会してください。\n\n",
                outage::OFFICIAL_NOTICES_URL
            ),
            format!("{en}Official notices: {}\n\n", outage::OFFICIAL_NOTICES_URL),
        )
    };
    let kind: AlertKind = alert.kind;
    let numbered =
        |items: &[&str]| items.iter().enumerate().map(|(i, s)| format!("  {}. {s}\n", i + 1)).collect::<String>();
    match alert.resolved_at {
        None => (
            format!("【Onshi Cloud】{}: {}", alert.clinic_name, kind.label_ja()),
            format!(
                "{clinic} のエージェント「{device}」: {label_ja}。診療時間中も続いています（最初の検知: {since}）。\n\n\
                 {wide_ja}確かめること:\n{check_ja}\n\
                 端末の状態: {site}/fleet\n\
                 直ると「復旧」のメールが届きます。\n\n\
                 {clinic}, agent \"{device}\": {label_en}; it goes on in opening hours (first seen {since} JST).\n\n\
                 {wide_en}What to check:\n{check_en}\n\
                 Agent status: {site}/fleet\n\
                 You will get another e-mail when it is over.\n",
                clinic = alert.clinic_name,
                device = alert.device_name,
                label_ja = kind.label_ja(),
                label_en = kind.label_en(),
                since = jst_minute(&alert.since),
                check_ja = numbered(kind.checklist_ja()),
                check_en = numbered(kind.checklist_en()),
            ),
        ),
        Some(over) => (
            format!("【Onshi Cloud】復旧: {}: {}", alert.clinic_name, kind.label_ja()),
            format!(
                "{clinic} のエージェント「{device}」は復旧しました（{label_ja}: {since} 〜 {over}）。\n\
                 端末の状態: {site}/fleet\n\n\
                 {clinic}, agent \"{device}\" is back to normal ({label_en}: {since} to {over} JST).\n",
                clinic = alert.clinic_name,
                device = alert.device_name,
                label_ja = kind.label_ja(),
                label_en = kind.label_en(),
                since = jst_minute(&alert.since),
                over = jst_minute(&over),
            ),
        ),
    }
}

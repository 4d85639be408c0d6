//! The expiry radar's watch in a worker process: every `radar_poll_ms` (an hour) it reads each group's
//! radar (`onshi_domain::radar`), e-mails the owners and managers once for each dated warning as it
//! reaches 90, 30 and 7 days and once it has passed, and sends the group's weekly summary (the week's
//! agent alerts and everything on the radar) on the first look after Monday 08:00 JST (between 08:00 and
//! midnight, whatever day the worker starts). Each e-mail is
//! queued in the e-mail outbox (`crate::mail_sender`) in the transaction that claims its news, so several
//! workers send it once and a claim is never left without its e-mail.

use std::time::Duration;

use onshi_domain::radar::Warning;
use onshi_domain::{AuditAction, ClinicAccess};
use onshi_store::{AuditEntry, Clinic, NewMail, Store, TenantScope};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub struct RadarWatch {
    pub store: Store,
    /// False when mail is not configured usably: the radar is then on the fleet page only.
    pub mail: bool,
    pub public_url: String,
    pub poll: Duration,
}

impl RadarWatch {
    pub async fn run(self, stop: CancellationToken) {
        // The first look comes soon after a start (at most five minutes), so a worker restarted more often
        // than `poll` still looks; then every `poll`.
        let mut wait = self.poll.min(Duration::from_secs(300));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = self.poll;
            self.look(OffsetDateTime::now_utc()).await;
        }
    }

    pub async fn look(&self, now: OffsetDateTime) {
        if !self.mail {
            return;
        }
        let tenants = match self.store.radar_tenants().await {
            Ok(t) => t,
            Err(e) => {
                return tracing::warn!(error = %onshi_telemetry::Chain(&e), "groups for the expiry radar not listed");
            }
        };
        for scope in tenants {
            if let Err(e) = self.look_at(scope, now).await {
                tracing::warn!(error = %onshi_telemetry::Chain(&e), tenant = %scope.tenant_id(), "expiry radar not looked at");
            }
        }
    }

    async fn look_at(&self, scope: TenantScope, now: OffsetDateTime) -> Result<(), onshi_store::StoreError> {
        let store = self.store.tenant(scope);
        let today = onshi_domain::jst::date_of(now);
        let radar = store.radar(today).await?;
        let site = self.public_url.trim_end_matches('/');
        for (clinic, warnings) in &radar {
            for warning in warnings.iter().filter(|w| w.mailed()) {
                let entry = AuditEntry::system(AuditAction::RadarNotice, &format!("clinic:{}", clinic.id))
                    .details(serde_json::json!({ "item": warning.key() }));
                let subject = format!("【Onshi Cloud】{}: {}", clinic.name, warning.label_ja());
                let body = format!(
                    "{clinic}: {label_ja}{due_ja}\n{advice_ja}\n端末と期限: {site}/fleet\n\n{clinic}: {label_en}{due_en}\n{advice_en}\n",
                    clinic = clinic.name,
                    label_ja = warning.label_ja(),
                    label_en = warning.label_en(),
                    due_ja = warning.due.map(|d| format!("（{d}、{}）", days_ja(d, today))).unwrap_or_default(),
                    due_en = warning.due.map(|d| format!(" ({d}, {})", days_en(d, today))).unwrap_or_default(),
                    advice_ja = warning.advice_ja(),
                    advice_en = warning.advice_en(),
                );
                store.claim_radar_notice(clinic, warning, &entry, mailed("radar_notice", &subject, &body)).await?;
            }
        }
        let local = now.to_offset(onshi_domain::jst::JST);
        // Once a week from Monday 08:00, and never at night (a worker started at 03:00 on a Wednesday waits).
        if local.hour() < 8 {
            return Ok(());
        }
        let (year, week, _) = local.date().to_iso_week_date();
        let week = format!("{year}-W{week:02}");
        if store.weekly_summary_sent(&week).await? {
            return Ok(());
        }
        let alerts = store.device_alerts(now - time::Duration::days(7)).await?;
        // 資格無効 follow-up of the seven days before today, per clinic.
        let mut followups = Vec::new();
        for clinic in store.clinic_scopes(&ClinicAccess::All).await? {
            let cases =
                store.followups(&clinic, today - time::Duration::days(7), today - time::Duration::days(1)).await?;
            if !cases.is_empty() {
                followups.push((clinic.clinic().clone(), cases));
            }
        }
        let body = summary(&week, &radar, &alerts, &followups, today, site);
        let subject = format!("【Onshi Cloud】週間まとめ {week}");
        let entry = AuditEntry::system(AuditAction::SummaryWeekly, &week);
        store.claim_weekly_summary(&week, &entry, mailed("weekly_summary", &subject, &body)).await?;
        Ok(())
    }
}

/// The group-wide e-mail of a claim: to every owner, and every manager who sees all clinics.
fn mailed<'a>(
    topic: &'static str,
    subject: &'a str,
    body: &'a str,
) -> impl FnOnce(&[onshi_store::User]) -> Vec<NewMail> + Send + 'a {
    move |users| {
        let told = users.iter().filter(|u| u.is_told_about(None)).map(|u| u.email.as_str());
        NewMail::to_each(topic, told, subject, body)
    }
}

fn days_ja(due: time::Date, today: time::Date) -> String {
    match (due - today).whole_days() {
        d if d < 0 => format!("{} 日前に終了", -d),
        0 => "今日まで".to_owned(),
        d => format!("あと {d} 日"),
    }
}

fn days_en(due: time::Date, today: time::Date) -> String {
    match (due - today).whole_days() {
        d if d < 0 => format!("ended {} days ago", -d),
        0 => "today is the last day".to_owned(),
        d => format!("{d} days left"),
    }
}

/// The weekly summary: the week's agent alerts per clinic, the radar, and the clinics whose certificate
/// expiry is not entered. Japanese, with an English block after it.
fn summary(
    week: &str,
    radar: &[(Clinic, Vec<Warning>)],
    alerts: &[onshi_store::DeviceAlert],
    followups: &[(Clinic, Vec<onshi_store::FollowUpCase>)],
    today: time::Date,
    site: &str,
) -> String {
    let mut ja = format!("Onshi Cloud 週間まとめ（{week}）\n\n■ 診療時間中の端末アラート（直近7日）\n");
    let mut en = format!("Onshi Cloud weekly summary ({week})\n\nAgent alerts in opening hours (last 7 days)\n");
    if alerts.is_empty() {
        ja.push_str("  なし\n");
        en.push_str("  none\n");
    }
    for a in alerts {
        let state_ja = if a.resolved_at.is_some() { "復旧" } else { "発生中" };
        let at = onshi_api::web::time::jst_minute(&a.since);
        ja.push_str(&format!("  {} {} {}: {}（{state_ja}）\n", at, a.clinic_name, a.device_name, a.kind.label_ja()));
        en.push_str(&format!("  {at} {} {}: {}\n", a.clinic_name, a.device_name, a.kind.label_en()));
    }
    ja.push_str("\n■ 資格無効のフォローアップ（直近7日）\n");
    en.push_str("\nFollow-up of invalid results (last 7 days)\n");
    if followups.is_empty() {
        ja.push_str("  なし\n");
        en.push_str("  none\n");
    }
    for (clinic, cases) in followups {
        let open = cases.iter().filter(|c| c.status == onshi_domain::followup::FollowUpStatus::Open).count();
        let mut by_result: Vec<(&'static str, usize)> = Vec::new();
        for c in cases {
            match by_result.iter_mut().find(|(l, _)| *l == c.result.label_ja()) {
                Some((_, n)) => *n += 1,
                None => by_result.push((c.result.label_ja(), 1)),
            }
        }
        let detail: Vec<String> = by_result.iter().map(|(l, n)| format!("{l} {n}")).collect();
        ja.push_str(&format!(
            "  {}: {} 件（未対応 {open}）: {}  {site}/clinics/{}/followups\n",
            clinic.name,
            cases.len(),
            detail.join("、"),
            clinic.id
        ));
        en.push_str(&format!("  {}: {} cases ({open} open)\n", clinic.name, cases.len()));
    }
    ja.push_str("\n■ 期限と更新\n");
    en.push_str("\nExpiry and updates\n");
    let mut any = false;
    for (clinic, warnings) in radar {
        for w in warnings {
            any = true;
            let due_ja = w.due.map(|d| format!("（{d}、{}）", days_ja(d, today))).unwrap_or_default();
            let due_en = w.due.map(|d| format!(" ({d}, {})", days_en(d, today))).unwrap_or_default();
            let agent = w.agent.as_deref().map(|a| format!(" {a}")).unwrap_or_default();
            ja.push_str(&format!("  {}{agent}: {}{due_ja}\n", clinic.name, w.label_ja()));
            en.push_str(&format!("  {}{agent}: {}{due_en}\n", clinic.name, w.label_en()));
        }
    }
    if !any {
        ja.push_str("  90日以内の期限はありません\n");
        en.push_str("  nothing due within 90 days\n");
    }
    let missing: Vec<&str> =
        radar.iter().filter(|(c, _)| c.terminal_cert_expires.is_none()).map(|(c, _)| c.name.as_str()).collect();
    if !missing.is_empty() {
        ja.push_str(&format!(
            "\n電子証明書の有効期限が未入力: {}（各医療機関の画面で入力できます）\n",
            missing.join("、")
        ));
        en.push_str(&format!("\nCertificate expiry not entered: {}\n", missing.join(", ")));
    }
    format!("{ja}\n端末と期限: {site}/fleet\n\n{en}\nAgents and expiry: {site}/fleet\n")
}

//! `onshi demo`: the embedded product with a seeded clinic group and, for each clinic, a simulated
//! 資格確認端末 writing result files and a real `onshi-agent` (in this process) that enrolled itself with a
//! one-time code, reads those files and delivers them through the public API. Nothing in the path from
//! file to page is demo-only.

use onshi_domain::{
    AgentEvent, ConfirmationMethod, Consents, DeviceId, EventBatch, EventId, EventPayload, Heartbeat,
    MedicalInstitutionCode, PatientRef, QualificationCheck, QualificationResult, TenantId,
};
use onshi_domain::{AuditAction, ClinicAccess};
use onshi_store::{ClinicScope, Store, StoreError, TenantScope};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::startup::{Adapters, Application, Options};

pub const DEMO_GROUP: &str = "医療法人社団 オンシ会（デモ）";

/// The demo clinics: (医療機関コード, name).
pub const DEMO_CLINICS: [(&str, &str); 3] = [
    ("1311234560", "オンシ内科クリニック 新宿"),
    ("1411234561", "オンシこどもクリニック 横浜"),
    ("2711234562", "オンシ整形外科 梅田"),
];

/// A seeded clinic with its agent.
#[derive(Debug, Clone)]
pub struct DemoClinic {
    pub clinic: ClinicScope,
    pub device: DeviceId,
}

/// A seeded clinic, with the device created for it when asked for (tests and the bench post with its
/// token directly; the demo enrolls real agents instead).
#[derive(Debug, Clone)]
pub struct SeededClinic {
    pub clinic: ClinicScope,
    pub device: Option<DeviceId>,
}

/// Creates the demo group and its clinics, and one device per clinic when `with_devices`.
pub async fn seed_group(store: &Store, with_devices: bool) -> Result<(TenantId, Vec<SeededClinic>), StoreError> {
    let tenant = store.system().create_tenant(DEMO_GROUP).await?;
    let scoped = store.tenant(TenantScope::operator(tenant));
    let mut clinics = Vec::new();
    for (code, name) in DEMO_CLINICS {
        let code = MedicalInstitutionCode::parse(code).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let clinic = scoped.create_clinic(&code, name).await?;
        let device = if with_devices {
            Some(scoped.create_device(&clinic, "受付 資格確認端末").await?.id)
        } else {
            None
        };
        clinics.push(SeededClinic { clinic, device });
    }
    Ok((tenant, clinics))
}

/// Creates the demo group, its clinics and one device per clinic.
pub async fn seed(store: &Store) -> Result<(TenantId, Vec<DemoClinic>), StoreError> {
    let (tenant, seeded) = seed_group(store, true).await?;
    let clinics =
        seeded.into_iter().filter_map(|s| s.device.map(|device| DemoClinic { clinic: s.clinic, device })).collect();
    Ok((tenant, clinics))
}

/// Gives each demo clinic the 届出 and notified 利用率 a real clinic's billing staff would have entered, so
/// the billing review shows decisions rather than a page of "施設基準を満たしていない": every 施設基準 from
/// 2022-10 (the third clinic without 電子処方箋, so it falls to the lower tiers), and monthly rates that rise
/// from 2024 as the national figure did, one clinic staying just under 30%.
pub async fn seed_billing_settings(
    store: &Store,
    tenant: TenantId,
    clinics: &[onshi_store::ClinicScope],
) -> Result<(), StoreError> {
    use onshi_rules::{ClinicSettings, Standard, YearMonth};
    use onshi_store::OfficialFigure;
    let scoped = store.tenant(TenantScope::operator(tenant));
    let now = YearMonth::of(onshi_domain::jst::date_of(OffsetDateTime::now_utc()));
    for (i, clinic) in clinics.iter().enumerate() {
        let mut settings = ClinicSettings::default();
        let met = Standard::ALL
            .into_iter()
            .filter(|s| *s != Standard::PediatricSpecial && !(i == 2 && *s == Standard::EPrescription))
            .collect();
        settings.set_standards(time::macros::date!(2022 - 10 - 01), met);
        // Rates are notified about two months after the month they measure.
        let (start, last) = (YearMonth::parse("2024-01").unwrap_or(now), now.plus(-2));
        let ceiling = HISTORY_CEILINGS[clinic_index(&clinic.code)];
        let history_start = YearMonth::of(onshi_domain::jst::date_of(OffsetDateTime::now_utc()) - HISTORY);
        let entry = onshi_store::AuditEntry::system(AuditAction::DemoSeedBilling, &format!("clinic:{}", clinic.id));
        scoped.set_billing_settings(clinic, &settings, &entry).await?;
        // Typed in without their notices, as a clerk might from the 支払基金's letters; the claims the demo
        // posts later replace the months whose notice has come with the full figures. Each is the share
        // the history's receptions have that month, lowered as the official denominator (every outpatient
        // receipt, also those of patients not checked that month) lowers it, so the clinic page's figures
        // differ the way a real clinic's do.
        let rates: Vec<_> = start
            .through(last)
            .map(|month| {
                let rate = history_share(month.since(history_start), ceiling) * OFFICIAL_TO_SAME_DAY;
                let figure = OfficialFigure {
                    uses: None,
                    users: None,
                    receipts: None,
                    rate: (rate * 1000.0).round() / 1000.0,
                    notified_on: None,
                };
                (clinic, month, figure)
            })
            .collect();
        let entry = onshi_store::AuditEntry::system(AuditAction::DemoOfficialUsage, &format!("clinic:{}", clinic.id));
        scoped.set_official_usage(&rates, None, &entry).await?;
        // 診療時間 as a typical clinic keeps them (木曜午後・日曜休診); the other clinics keep the usual ones,
        // so the page shows both states.
        if i == 0 {
            let am_pm = "09:00-12:30, 15:00-18:00";
            let hours = onshi_domain::hours::OpeningHours::parse(
                [am_pm, am_pm, am_pm, "09:00-12:30", am_pm, "09:00-12:30", ""],
                false,
            )
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let entry = onshi_store::AuditEntry::system(AuditAction::ClinicHours, &format!("clinic:{}", clinic.id));
            scoped.set_clinic_hours(clinic, &hours, onshi_domain::device_alert::DEFAULT_AFTER_MINUTES, &entry).await?;
        }
    }
    Ok(())
}

/// The demo owner's sign-in. The password is fixed so the README can show it; the second factor is
/// random per demo database and printed at start (and `onshi totp-code <key>` prints a current code).
pub const DEMO_OWNER_EMAIL: &str = "owner@demo.onshi.invalid";
pub const DEMO_OWNER_PASSWORD: &str = "onshi-demo-2026";

/// Makes sure the demo tenant has its owner with a verified address and TOTP, and returns the TOTP
/// setup key.
pub async fn ensure_demo_owner(store: &Store, tenant: TenantId) -> Result<String, Box<dyn std::error::Error>> {
    use onshi_store::NewUser;
    let scoped = store.tenant(TenantScope::operator(tenant));
    let existing = scoped.users().await?.into_iter().find(|u| u.email == DEMO_OWNER_EMAIL);
    let user_id = match existing {
        Some(user) => user.id,
        None => {
            let phc = onshi_identity::hash_password(DEMO_OWNER_PASSWORD, DEMO_OWNER_EMAIL)?;
            let entry = onshi_store::AuditEntry::system(AuditAction::DemoSeedOwner, "-");
            let owner = NewUser {
                email: DEMO_OWNER_EMAIL,
                display_name: "デモ オーナー",
                role: onshi_domain::Role::Owner,
                clinics: &[],
                password_hash: Some(&phc),
            };
            let id = scoped.add_user(&owner, &entry).await?;
            scoped.mark_email_verified(id, &entry).await?;
            let secret = onshi_identity::TotpSecret::generate();
            scoped.set_pending_totp(id, secret.base32()).await?;
            scoped.enable_totp(id, 0, &entry).await?;
            id
        }
    };
    let user = scoped.user(user_id).await?.ok_or("demo owner vanished")?;
    Ok(user.totp_secret.unwrap_or_default())
}

/// Loads the clinics and their first active agent for an existing demo tenant.
pub async fn load(store: &Store, tenant: TenantId) -> Result<Vec<DemoClinic>, StoreError> {
    let scoped = store.tenant(TenantScope::operator(tenant));
    let devices = scoped.devices().await?;
    let mut out = Vec::new();
    for clinic in scoped.clinic_scopes(&ClinicAccess::All).await? {
        if let Some(device) = devices.iter().find(|d| d.clinic == clinic.id) {
            out.push(DemoClinic { clinic, device: device.id });
        }
    }
    Ok(out)
}

/// Generates realistic 資格確認 events for one clinic: a fixed pool of pseudonymous patients and a method
/// mix close to late-2026 national figures (マイナ保険証 a little over half of receptions, 資格確認書 most of
/// the rest, since every old 健康保険証 expired by 2025-12-01).
pub struct EventFactory {
    code: MedicalInstitutionCode,
    patients: Vec<PatientRef>,
    rng: StdRng,
    /// The share of receptions with a マイナ保険証, when not the late-2026 default.
    myna_share: Option<f64>,
}

impl EventFactory {
    pub fn new(code: MedicalInstitutionCode, tenant_key: &[u8], patients: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let insurers = ["06139999", "01130012", "31130015", "39131003", "  138016"];
        let patients = (0..patients.max(1))
            .map(|i| {
                let insurer = insurers[rng.random_range(0..insurers.len())];
                PatientRef::pseudonymize(tenant_key, insurer, "", &format!("{:08}", i + 1), "00")
            })
            .collect();
        Self { code, patients, rng, myna_share: None }
    }

    /// Receptions from now on use a マイナ保険証 this often (0..1): for history that rose over the years.
    pub fn set_myna_share(&mut self, share: f64) {
        self.myna_share = Some(share.clamp(0.0, 1.0));
    }

    /// One confirmation at the reception desk.
    pub fn reception(&mut self, at: OffsetDateTime) -> AgentEvent {
        let r: f64 = self.rng.random();
        // With a share set, using a マイナ保険証 is a habit of the patient (the first `share` of the pool),
        // as it is at a real desk: the patient-based 利用率 then comes out near the share.
        let len = self.patients.len();
        let sticky = self.myna_share.map(|share| {
            let i = self.rng.random_range(0..len);
            (i, (i as f64 + 0.5) / (len as f64) < share)
        });
        let method = match (sticky, r) {
            (None, x) if x < 0.52 => ConfirmationMethod::MynaCard,
            (None, x) if x < 0.58 => ConfirmationMethod::MynaSmartphone,
            (None, x) if x < 0.88 => ConfirmationMethod::EligibilityCertificate,
            (None, x) if x < 0.96 => ConfirmationMethod::NumberQuery,
            (None, _) => ConfirmationMethod::InsuranceCard,
            (Some((_, true)), x) if x < 0.9 => ConfirmationMethod::MynaCard,
            (Some((_, true)), _) => ConfirmationMethod::MynaSmartphone,
            (Some((_, false)), x) if x < 0.75 => ConfirmationMethod::EligibilityCertificate,
            (Some((_, false)), _) => ConfirmationMethod::NumberQuery,
        };
        let r: f64 = self.rng.random();
        let mut result = match r {
            x if x < 0.95 => QualificationResult::Valid,
            x if x < 0.97 => QualificationResult::Invalid,
            x if x < 0.985 => QualificationResult::InvalidNewQualification,
            x if x < 0.995 => QualificationResult::NotFound,
            _ => QualificationResult::Error,
        };
        // Old 健康保険証 all expired in 2025: presented today, they are almost always refused.
        if method == ConfirmationMethod::InsuranceCard && self.rng.random_bool(0.8) {
            result = QualificationResult::Invalid;
        }
        let patient = match result {
            QualificationResult::NotFound | QualificationResult::Error => None,
            _ => Some(self.patients[sticky.map(|(i, _)| i).unwrap_or_else(|| self.rng.random_range(0..len))].clone()),
        };
        // Numbers of real-looking insurers (check digits valid): 協会けんぽ, 健保組合, 後期高齢者, 共済, 国保.
        const INSURERS: [&str; 6] = ["01130012", "06270011", "39130018", "31130016", "138107", "271205"];
        let insurer = (result != QualificationResult::Valid && result != QualificationResult::Error)
            .then(|| onshi_domain::InsurerNumber::parse(INSURERS[self.rng.random_range(0..INSURERS.len())]))
            .flatten();
        let consents = if method.is_myna() {
            Consents {
                medication: Some(self.rng.random_bool(0.85)),
                diagnosis: Some(self.rng.random_bool(0.8)),
                checkup: Some(self.rng.random_bool(0.7)),
                surgery: Some(self.rng.random_bool(0.75)),
            }
        } else {
            Consents::default()
        };
        AgentEvent {
            id: EventId::new(),
            occurred_at: at,
            payload: EventPayload::Qualification(QualificationCheck {
                institution_code: self.code.clone(),
                method,
                identity_check: None,
                batch: false,
                error_code: (result == QualificationResult::Error).then(|| "EQCS0001".to_owned()),
                result,
                patient,
                insurer,
                consents,
                limit_certificate: self.rng.random_bool(0.05),
                time_source: Default::default(),
            }),
        }
    }

    /// One patient of a bulk check (一括照会): not a reception.
    pub fn bulk_check(&mut self, at: OffsetDateTime) -> AgentEvent {
        let mut event = self.reception(at);
        if let EventPayload::Qualification(q) = &mut event.payload {
            q.batch = true;
            q.method = ConfirmationMethod::NumberQuery;
            q.consents = Consents::default();
        }
        event
    }

    pub fn heartbeat(&mut self, at: OffsetDateTime) -> AgentEvent {
        AgentEvent {
            id: EventId::new(),
            occurred_at: at,
            payload: EventPayload::Heartbeat(Heartbeat {
                agent_version: concat!("sim-", env!("CARGO_PKG_VERSION")).to_owned(),
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
                last_quarantine: None,
            }),
        }
    }
}

/// Posts a batch the way an agent does. Returns the HTTP status.
pub async fn post_batch(
    client: &reqwest::Client,
    base_url: &str,
    token: &str,
    events: Vec<AgentEvent>,
) -> Result<reqwest::StatusCode, reqwest::Error> {
    let response =
        client.post(format!("{base_url}/api/v1/events")).bearer_auth(token).json(&EventBatch { events }).send().await?;
    Ok(response.status())
}

/// What every demo clinic shares.
struct DemoSite<'a> {
    store: &'a Store,
    tenant: TenantId,
    base_url: String,
    data_dir: &'a std::path::Path,
    per_minute: f64,
    backfill: usize,
    /// Mints device tokens for posting a year of history on a fresh start (none on a restart).
    history: Option<&'a onshi_api::DeviceKeys>,
    stop: CancellationToken,
}

/// Access to the integration API for whoever runs the demo: an API token of the demo owner with every
/// scope (a day long) and a device token of the first clinic's agent, written to `<data_dir>/api.env`
/// (readable by the owner only) for scripts such as `scripts/api-contract`. Returns the API token.
async fn demo_api_access(
    store: &Store,
    tenant: TenantId,
    keys: &onshi_api::DeviceKeys,
    data_dir: &std::path::Path,
    clinic: &ClinicScope,
    url: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    use onshi_store::{AuditEntry, AuditResult};
    let scoped = store.tenant(TenantScope::operator(tenant));
    let owner = scoped.users().await?.into_iter().find(|u| u.email == DEMO_OWNER_EMAIL).ok_or("no demo owner")?;
    let token =
        onshi_identity::OneTimeToken::generate(onshi_api::API_TOKEN_PREFIX, &tenant.as_uuid().simple().to_string());
    let entry = AuditEntry::new(Some(owner.id), "system", AuditAction::ApiTokenCreate, "-", AuditResult::Success)
        .details(serde_json::json!({ "scopes": "all", "days": 1, "via": "demo" }));
    scoped
        .create_api_token(
            owner.id,
            "onshi demo",
            &onshi_domain::ApiScope::ALL,
            &token.hash,
            Some(OffsetDateTime::now_utc() + time::Duration::days(1)),
            &entry,
        )
        .await?;
    let agent_dir = data_dir.join("clinics").join(clinic.code.as_str()).join("agent");
    let device = onshi_agent::Credentials::load(&agent_dir)?.device;
    let device_token = keys.mint(tenant, clinic.id, device)?;
    let path = data_dir.join("api.env");
    let body = format!("ONSHI_API_URL={url}\nONSHI_API_TOKEN={}\nONSHI_DEVICE_TOKEN={device_token}\n", token.secret);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path)?, body.as_bytes())?;
    Ok(token.secret)
}

/// One demo clinic's terminal folder and agent.
async fn start_clinic(
    site: &DemoSite<'_>,
    clinic: &ClinicScope,
) -> Result<Vec<tokio::task::JoinHandle<()>>, Box<dyn std::error::Error>> {
    let DemoSite { store, tenant, base_url, data_dir, per_minute, backfill, history, stop } = site;
    let (tenant, per_minute, backfill) = (*tenant, *per_minute, *backfill);
    let base_url = base_url.as_str();
    let dir = data_dir.join("clinics").join(clinic.code.as_str());
    let terminal = dir.join("terminal");
    let agent_dir = dir.join("agent");
    if !onshi_agent::Credentials::path(&agent_dir).exists() {
        let code = store
            .tenant(TenantScope::operator(tenant))
            .create_enrollment_code(clinic, time::Duration::hours(1))
            .await?;
        let credentials = onshi_agent::uplink::enroll(base_url, &code, "受付 資格確認端末（デモ）").await?;
        credentials.save(&agent_dir)?;
    }
    let mut tasks = Vec::new();
    if let Some(keys) = history {
        let credentials = onshi_agent::Credentials::load(&agent_dir)?;
        let token = keys.mint(tenant, clinic.id, credentials.device)?;
        let (base, code, stop) = (base_url.to_owned(), clinic.code.clone(), stop.clone());
        let ceiling = HISTORY_CEILINGS[clinic_index(&clinic.code)];
        let (store, scope) = ((*store).clone(), clinic.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = post_history(&base, &token, code, ceiling, &stop).await {
                tracing::warn!(error = %onshi_telemetry::Chain(e.as_ref()), "demo history not posted");
                return;
            }
            if let Err(e) = crate::demo_claims::post(&store, tenant, &scope, &base, &token).await {
                tracing::warn!(error = %onshi_telemetry::Chain(e.as_ref()), "demo claims not posted");
            }
        }));
    }
    if backfill > 0 {
        // The morning so far, so the pages are not empty on first start.
        let mut generator = onshi_agent::simulate::Generator::new(clinic.code.as_str(), 400, rand::random());
        let now = OffsetDateTime::now_utc();
        for _ in 0..backfill {
            let at = now - time::Duration::seconds(rand::random_range(60..10_800));
            let (file, card) = generator.next(at);
            onshi_agent::simulate::write_into(&terminal.join(if card { "face" } else { "res" }), &file)?;
        }
    }
    let mut config = onshi_agent::AgentConfig::with(&agent_dir, vec![terminal.join("face"), terminal.join("res")])?;
    // The demo server's port may differ from the one the agent enrolled with.
    config.server = Some(base_url.to_owned());
    config.rescan_secs = 5;
    config.settle_secs = 5;
    let agent = onshi_agent::Agent::open(config)?;
    tasks.push(tokio::spawn(agent.run(stop.clone())));
    let sim = tokio::spawn({
        let stop = stop.clone();
        let code = clinic.code.to_string();
        async move {
            if let Err(e) = onshi_agent::simulate::run(terminal, code, per_minute, stop).await {
                tracing::error!(error = %onshi_telemetry::Chain(&e), "simulated terminal stopped");
            }
        }
    });
    tasks.push(sim);
    Ok(tasks)
}

/// One line on the terminal, rewritten every 30 s: the JST time and today's receptions per clinic, so the
/// demo shows it is alive without a stream of log lines.
async fn status_line(store: Store, tenant: TenantId, clinics: Vec<ClinicScope>, stop: CancellationToken) {
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stdout().is_terminal();
    let scoped = store.tenant(TenantScope::operator(tenant));
    loop {
        let now = OffsetDateTime::now_utc();
        let today = onshi_domain::jst::date_of(now);
        let mut counts = Vec::new();
        for clinic in &clinics {
            let n = scoped.visits_on(clinic, today).await.map(|v| v.len()).unwrap_or(0);
            counts.push(format!("{} {n}", clinic.name));
        }
        let line = format!("  {} JST · 本日の受付: {}", onshi_api::web::time::jst_clock(&now), counts.join(" · "));
        if terminal {
            print!("\r{line}\x1b[K");
            let _ = std::io::stdout().flush();
        } else {
            println!("{line}");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
        }
    }
    if terminal {
        println!();
    }
}

/// Each demo clinic's マイナ保険証 share at its highest, by clinic: one well above 30%, one near 50%, one
/// staying just under 30% (so the at-risk view and the forecast have something to show). The billing
/// settings' notified rates follow the same shapes.
const HISTORY_CEILINGS: [f64; 3] = [0.62, 0.48, 0.29];

/// How far back the demo's history of receptions goes.
const HISTORY: time::Duration = time::Duration::days(365);

/// About what a clinic's official rate is of its same-day estimate (see `onshi_rules::figures`).
const OFFICIAL_TO_SAME_DAY: f64 = 0.82;

/// The history's マイナ保険証 share `k` months after its first month: rising by 4.5 points a month up to
/// `ceiling`, and, for the months before the history (which only the typed official rates reach), slowly
/// from a few percent, as the national figure rose in 2024.
fn history_share(k: i32, ceiling: f64) -> f64 {
    let k = f64::from(k);
    let share = if k >= 0.0 { 0.08 + k * 0.045 } else { (0.08 + k * 0.004).max(0.03) };
    share.min(ceiling)
}

fn clinic_index(code: &MedicalInstitutionCode) -> usize {
    DEMO_CLINICS.iter().position(|(c, _)| *c == code.as_str()).unwrap_or(0) % HISTORY_CEILINGS.len()
}

/// A year of receptions before today, posted the way an agent posts them: weekdays and Saturday mornings
/// that are not holidays, during JST clinic hours (9:00-12:30, 15:00-18:00), about 45 a day, with the
/// マイナ保険証 share rising month by month up to `ceiling`, so charts, tiers and the forecast show real
/// shapes on the first start.
async fn post_history(
    base_url: &str,
    token: &str,
    code: MedicalInstitutionCode,
    ceiling: f64,
    stop: &CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = reqwest::Client::new();
    let mut factory = EventFactory::new(code, b"demo-history", 900, rand::random());
    let today = onshi_domain::jst::date_of(OffsetDateTime::now_utc());
    let mut day = today - HISTORY;
    let first = onshi_rules::YearMonth::of(day);
    let mut batch = Vec::new();
    while day < today && !stop.is_cancelled() {
        factory.set_myna_share(history_share(onshi_rules::YearMonth::of(day).since(first), ceiling));
        let saturday = day.weekday() == time::Weekday::Saturday;
        if onshi_domain::onboarding::is_business_day(day) || saturday {
            let n = if saturday { 20 } else { 40 + rand::random_range(0..12) };
            for _ in 0..n {
                let minutes: i64 = if saturday || rand::random_bool(0.55) {
                    9 * 60 + rand::random_range(0..210)
                } else {
                    15 * 60 + rand::random_range(0..180)
                };
                let at = day.midnight().assume_offset(onshi_domain::jst::JST) + time::Duration::minutes(minutes);
                batch.push(factory.reception(at));
            }
        }
        if batch.len() >= 400 {
            let status = post_batch(&client, base_url, token, std::mem::take(&mut batch)).await?;
            if !status.is_success() {
                return Err(format!("history batch refused: HTTP {status}").into());
            }
        }
        day = day.next_day().unwrap_or(today);
    }
    if !batch.is_empty() {
        post_batch(&client, base_url, token, batch).await?;
    }
    tracing::info!("demo history posted");
    Ok(())
}

/// Runs the whole demo until Ctrl-C.
pub async fn run(config: onshi_config::Config, per_minute: f64) -> Result<(), Box<dyn std::error::Error>> {
    let adapters = Adapters::connect(&config).await?;
    let (tenant, clinics, fresh) = match adapters.store.system().first_tenant().await? {
        Some(tenant) => {
            let clinics =
                adapters.store.tenant(TenantScope::operator(tenant)).clinic_scopes(&ClinicAccess::All).await?;
            (tenant, clinics, false)
        }
        None => {
            let (tenant, seeded) = seed_group(&adapters.store, false).await?;
            (tenant, seeded.into_iter().map(|s| s.clinic).collect(), true)
        }
    };
    let store = adapters.store.clone();
    let totp_key = ensure_demo_owner(&store, tenant).await?;
    if fresh {
        seed_billing_settings(&store, tenant, &clinics).await?;
    }
    let app = Application::build(&config, adapters, Options { with_worker: true }).await?.spawn();
    let stop = CancellationToken::new();
    let site = DemoSite {
        store: &store,
        tenant,
        base_url: app.base_url(),
        data_dir: &config.data_dir,
        per_minute,
        backfill: if fresh { 40 } else { 0 },
        history: fresh.then_some(&app.device_keys),
        stop: stop.clone(),
    };
    let mut tasks = Vec::new();
    for clinic in &clinics {
        let started = start_clinic(&site, clinic).await;
        match started {
            Ok(t) => tasks.extend(t),
            Err(e) => {
                stop.cancel();
                app.stop().await;
                return Err(e);
            }
        }
    }
    let url = format!("http://{}", display_addr(&config.listen, app.port));
    let api_token = match clinics.first() {
        Some(first) => demo_api_access(&store, tenant, &app.device_keys, &config.data_dir, first, &url).await?,
        None => String::new(),
    };
    println!();
    println!("  Onshi Cloud demo is running (embedded mode, data in {}).", config.data_dir.display());
    println!("  Open {url} to watch three demo clinics receive patients.");
    println!("  Each clinic has a simulated 資格確認端末 writing result files and an onshi-agent delivering them.");
    println!();
    println!("  Sign in as the demo group's owner:");
    println!("    e-mail     {DEMO_OWNER_EMAIL}");
    println!("    password   {DEMO_OWNER_PASSWORD}");
    println!("    2FA key    {totp_key}   (add it to an authenticator app, or run:");
    println!("               cargo run -q --bin onshi -- totp-code {totp_key})");
    println!("  E-mails (invitations, resets) are written to {}.", config.data_dir.join("mail").display());
    println!("  Integration API (reference at {url}/developers/api), with a token of every scope for a day:");
    println!("    curl -H 'Authorization: Bearer {api_token}' {url}/api/v1/clinics");
    println!(
        "  The full log is in {}; this terminal shows warnings only.",
        config.data_dir.join("onshi.log").display()
    );
    if fresh {
        println!("  A year of past receptions is being posted in the background (about a minute).");
    }
    println!("  Press Ctrl-C to stop.");
    println!();
    tasks.push(tokio::spawn(status_line(store.clone(), tenant, clinics.clone(), stop.clone())));
    crate::startup::wait_for_signal().await;
    println!("Stopping…");
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    app.stop().await;
    Ok(())
}

fn display_addr(listen: &str, port: u16) -> String {
    match listen.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => format!("127.0.0.1:{port}"),
    }
}

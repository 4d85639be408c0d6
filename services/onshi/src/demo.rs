//! `onshi demo`: the embedded product with a seeded clinic group and a simulated reception stream.
//!
//! The stream goes through the real ingest API over HTTP with real device tokens, so the demo exercises
//! the same path as production agents. (When the edge agent's own simulator lands, the demo will run the
//! agent against simulated result files instead.)

use std::time::Duration;

use onshi_domain::{
    AgentEvent, ConfirmationMethod, Consents, DeviceId, EventBatch, EventId, EventPayload, Heartbeat,
    MedicalInstitutionCode, PatientRef, QualificationCheck, QualificationResult, TenantId,
};
use onshi_store::{Clinic, Store, StoreError, TenantScope};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::startup::{Adapters, Application, Options, StartupError};

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
    pub clinic: Clinic,
    pub device: DeviceId,
}

/// Creates the demo group, its clinics and one agent per clinic.
pub async fn seed(store: &Store) -> Result<(TenantId, Vec<DemoClinic>), StoreError> {
    let tenant = store.system().create_tenant(DEMO_GROUP).await?;
    let scoped = store.tenant(TenantScope::verified(tenant));
    let mut clinics = Vec::new();
    for (code, name) in DEMO_CLINICS {
        let code = MedicalInstitutionCode::parse(code).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let clinic = scoped.create_clinic(&code, name).await?;
        let device = scoped.create_device(clinic.id, "受付 資格確認端末").await?;
        clinics.push(DemoClinic { clinic, device: device.id });
    }
    Ok((tenant, clinics))
}

/// Loads the clinics and their first active agent for an existing demo tenant.
pub async fn load(store: &Store, tenant: TenantId) -> Result<Vec<DemoClinic>, StoreError> {
    let scoped = store.tenant(TenantScope::verified(tenant));
    let devices = scoped.devices().await?;
    let mut out = Vec::new();
    for clinic in scoped.clinics().await? {
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
        Self { code, patients, rng }
    }

    pub fn with_os_seed(code: MedicalInstitutionCode, tenant_key: &[u8], patients: usize) -> Self {
        let seed = StdRng::from_os_rng().random();
        Self::new(code, tenant_key, patients, seed)
    }

    /// One confirmation at the reception desk.
    pub fn reception(&mut self, at: OffsetDateTime) -> AgentEvent {
        let r: f64 = self.rng.random();
        let method = match r {
            x if x < 0.52 => ConfirmationMethod::MynaCard,
            x if x < 0.58 => ConfirmationMethod::MynaSmartphone,
            x if x < 0.88 => ConfirmationMethod::EligibilityCertificate,
            x if x < 0.96 => ConfirmationMethod::NumberQuery,
            _ => ConfirmationMethod::InsuranceCard,
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
            _ => Some(self.patients[self.rng.random_range(0..self.patients.len())].clone()),
        };
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
                consents,
                limit_certificate: self.rng.random_bool(0.05),
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
            }),
        }
    }

    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
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

/// The demo's per-tenant pseudonymisation key. Real tenants get theirs at enrollment.
fn demo_tenant_key(tenant: TenantId) -> Vec<u8> {
    format!("demo-key-{tenant}").into_bytes()
}

struct SimClinic {
    demo: DemoClinic,
    factory: EventFactory,
}

/// Simulates the reception desks until `stop`: about `per_minute` receptions per clinic and minute, a
/// heartbeat per agent every 30 s, and a small bulk check now and then.
pub async fn simulate(
    base_url: String,
    keys: onshi_api::DeviceKeys,
    tenant: TenantId,
    clinics: Vec<DemoClinic>,
    per_minute: f64,
    backfill: usize,
    stop: CancellationToken,
) {
    let client = reqwest::Client::new();
    let key = demo_tenant_key(tenant);
    let mut sims: Vec<SimClinic> = clinics
        .into_iter()
        .map(|demo| SimClinic { factory: EventFactory::with_os_seed(demo.clinic.code.clone(), &key, 400), demo })
        .collect();
    let tick = Duration::from_secs(5);
    let mut last_heartbeat = OffsetDateTime::UNIX_EPOCH;

    // A morning's worth of history first, so the pages are not empty on first start.
    if backfill > 0 {
        let now = OffsetDateTime::now_utc();
        for sim in &mut sims {
            let mut events: Vec<AgentEvent> = (0..backfill)
                .map(|_| {
                    let minutes_ago = sim.factory.rng().random_range(1..180i64);
                    sim.factory.reception(now - time::Duration::minutes(minutes_ago))
                })
                .collect();
            events.sort_by_key(|e| e.occurred_at);
            send(&client, &base_url, &keys, tenant, &sim.demo, events).await;
        }
    }

    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
        let now = OffsetDateTime::now_utc();
        let heartbeat_due = now - last_heartbeat >= time::Duration::seconds(30);
        for sim in &mut sims {
            let mut events = Vec::new();
            let expected = per_minute * tick.as_secs_f64() / 60.0;
            let mut budget = expected;
            while budget > 0.0 {
                if sim.factory.rng().random_bool(budget.min(1.0)) {
                    events.push(sim.factory.reception(now));
                }
                budget -= 1.0;
            }
            if sim.factory.rng().random_bool(0.01) {
                for _ in 0..5 {
                    events.push(sim.factory.bulk_check(now));
                }
            }
            if heartbeat_due {
                events.push(sim.factory.heartbeat(now));
            }
            if !events.is_empty() {
                send(&client, &base_url, &keys, tenant, &sim.demo, events).await;
            }
        }
        if heartbeat_due {
            last_heartbeat = now;
        }
    }
}

async fn send(
    client: &reqwest::Client,
    base_url: &str,
    keys: &onshi_api::DeviceKeys,
    tenant: TenantId,
    clinic: &DemoClinic,
    events: Vec<AgentEvent>,
) {
    let token = match keys.mint(tenant, clinic.clinic.id, clinic.device) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "could not mint a demo device token");
            return;
        }
    };
    match post_batch(client, base_url, &token, events).await {
        Ok(status) if status.is_success() => {}
        Ok(status) => tracing::warn!(%status, "demo batch refused"),
        Err(e) => tracing::warn!(error = %e, "demo batch not delivered"),
    }
}

/// Runs the whole demo until Ctrl-C.
pub async fn run(config: onshi_config::Config, per_minute: f64) -> Result<(), StartupError> {
    let adapters = Adapters::connect(&config).await?;
    let (tenant, clinics, fresh) = match adapters.store.system().first_tenant().await? {
        Some(tenant) => (tenant, load(&adapters.store, tenant).await?, false),
        None => {
            let (tenant, clinics) = seed(&adapters.store).await?;
            (tenant, clinics, true)
        }
    };
    let app =
        Application::build(&config, adapters, Options { with_worker: true, demo_tenant: Some(tenant) }).await?.spawn();
    let url = format!("http://{}", display_addr(&config.listen, app.port));
    println!();
    println!("  Onshi Cloud demo is running (embedded mode, data in {}).", config.data_dir.display());
    println!("  Open {url} to watch three demo clinics receive patients.");
    println!("  Sign-in is not required in the demo yet; it arrives with user accounts.");
    println!("  Press Ctrl-C to stop.");
    println!();
    let stop = CancellationToken::new();
    let sim = tokio::spawn(simulate(
        app.base_url(),
        app.device_keys.clone(),
        tenant,
        clinics,
        per_minute,
        if fresh { 40 } else { 0 },
        stop.clone(),
    ));
    crate::startup::wait_for_signal().await;
    println!("Stopping…");
    stop.cancel();
    let _ = sim.await;
    app.stop().await;
    Ok(())
}

fn display_addr(listen: &str, port: u16) -> String {
    match listen.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => format!("127.0.0.1:{port}"),
    }
}

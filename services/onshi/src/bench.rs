//! `onshi bench ingest`: end-to-end ingest throughput with the configured adapters (set the ONSHI_*
//! variables for full mode). It seeds its own tenant, posts events through the HTTP API from several
//! concurrent clients, and waits until the worker has applied every event. Figures, not assertions:
//! record them in docs/benchmarks.md.

use std::time::{Duration, Instant};

use onshi_config::Config;
use onshi_domain::AuditAction;
use onshi_store::TenantScope;
use time::OffsetDateTime;

use crate::demo::{EventFactory, post_batch, seed, seed_group};
use crate::startup::{Adapters, Application, Options};

pub struct IngestBench {
    pub events: usize,
    pub batch: usize,
    pub concurrency: usize,
    /// Queue consumers applying batches (one is the app's own; the others are extra workers, each with
    /// its own broker connection and database pool, as separate processes would have).
    pub workers: usize,
    /// Post heartbeats (what an idle agent sends every 20 s) instead of receptions.
    pub heartbeats: bool,
    /// Agents sending, each with its own token (see `onshi bench ingest --help`).
    pub devices: Option<usize>,
}

/// CPU time (user + system) per tier, read from /proc: this process's server threads, the load
/// generator's threads (named `bench-client`), and the services by process name.
#[derive(Debug, Default, Clone)]
struct TierCpu(std::collections::BTreeMap<&'static str, f64>);

impl TierCpu {
    #[cfg(target_os = "linux")]
    fn now() -> Self {
        let ticks = 100.0; // USER_HZ on Linux
        let stat_secs = |path: &std::path::Path| -> Option<(String, f64)> {
            let text = std::fs::read_to_string(path).ok()?;
            let (head, rest) = text.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_owned();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let (u, s) = (fields.get(11)?.parse::<f64>().ok()?, fields.get(12)?.parse::<f64>().ok()?);
            Some((comm, (u + s) / ticks))
        };
        let mut tiers = std::collections::BTreeMap::new();
        let me = std::process::id();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
                if pid == me {
                    continue;
                }
                let Some((comm, secs)) = stat_secs(&entry.path().join("stat")) else { continue };
                let tier = match comm.as_str() {
                    "postgres" => "database (postgres)",
                    "beam.smp" | "erl_child_setup" | "epmd" => "broker (rabbitmq)",
                    "redis-server" => "cache (redis)",
                    "s3s-fs" => "objects (s3s-fs)",
                    _ => continue,
                };
                *tiers.entry(tier).or_insert(0.0) += secs;
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for entry in dir.flatten() {
                let Some((comm, secs)) = stat_secs(&entry.path().join("stat")) else { continue };
                let tier = if comm.starts_with("bench-client") { "load generator" } else { "onshi (api + worker)" };
                *tiers.entry(tier).or_insert(0.0) += secs;
            }
        }
        Self(tiers)
    }

    #[cfg(not(target_os = "linux"))]
    fn now() -> Self {
        Self::default()
    }

    /// Prints each tier's CPU per request between `self` and `later`, and the sum without the load
    /// generator.
    fn report(&self, later: &TierCpu, requests: u64, what: &str) {
        let mut served = 0.0;
        let mut parts = Vec::new();
        for (tier, secs) in &later.0 {
            let used = secs - self.0.get(tier).copied().unwrap_or(0.0);
            let per = used * 1000.0 / requests.max(1) as f64;
            if *tier != "load generator" {
                served += per;
            }
            parts.push(format!("{tier} {per:.3}"));
        }
        println!("cpu:      {served:.3} ms per {what} across the serving tiers ({}; ms per {what})", parts.join(", "));
    }
}

/// Puts PostgreSQL in the state of a production database in the middle of a day, not of one created a
/// second ago: `rows` raw events of the bench's clinics already in this month's partition, and statistics
/// on the tables the run fills. Without them the planner (which a production server's autovacuum feeds
/// within a minute of a partition's first rows; this build machine runs with autovacuum off) reads a
/// clinic's whole partition to find one event id, and the run measures that instead. Returns how many raw
/// events of `tenant` exist afterwards (the run waits for that many more). Nothing to do on SQLite.
async fn steady_state(
    store: &onshi_store::Store,
    tenant: onshi_domain::TenantId,
    agents: &[(onshi_store::ClinicScope, onshi_domain::DeviceId)],
    rows: usize,
) -> Result<u64, Box<dyn std::error::Error>> {
    use sea_orm::ConnectionTrait;
    let db = store.connection();
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        for i in 0..rows.div_ceil(1000) {
            let Some((clinic, device)) = agents.get(i % agents.len().max(1)) else { break };
            // Old resends' look-alikes: random ids over the last hours, visit-free (no payload is read).
            db.execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "INSERT INTO raw_events (tenant_id, device_id, event_id, clinic_id, batch_id, kind, occurred_at, \
                 received_at, content_hash, payload) \
                 SELECT $1, $2, gen_random_uuid(), $3, gen_random_uuid(), 'qualification', \
                   now() - random() * interval '6 hours', now(), md5(g::text || $4), '{}'::json \
                 FROM generate_series(1, $5) AS g",
                [
                    tenant.as_uuid().into(),
                    device.as_uuid().into(),
                    clinic.id.as_uuid().into(),
                    i.to_string().into(),
                    i32::try_from((rows - i * 1000).min(1000)).unwrap_or(1000).into(),
                ],
            ))
            .await?;
        }
        db.execute_raw(pg_statement("ANALYZE raw_events, visits, monthly_patients, reception_daily, devices")).await?;
        println!("steady:   {rows} raw events seeded and the tables analyzed before the run (see docs/benchmarks.md)");
    }
    Ok(store.tenant(TenantScope::operator(tenant)).raw_event_count().await?)
}

/// When the PostgreSQL server runs without autovacuum (as the CI machines here do), analyzes the tables a
/// load writes every 10 s, as autovacuum's analyze would on a production server (docs/operations.md:
/// autovacuum on). Without it a visits partition that was empty when analyzed keeps no statistics while
/// the load fills it, and plans made for an empty table (reading a tenant's whole day) measure the
/// machine's configuration rather than the product. Says so when it does.
async fn stand_in_for_autovacuum(
    store: &onshi_store::Store,
) -> Result<Option<tokio::task::JoinHandle<()>>, Box<dyn std::error::Error>> {
    use sea_orm::ConnectionTrait;
    let db = store.connection().clone();
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(None);
    }
    let on: String = db
        .query_one_raw(pg_statement("SELECT current_setting('autovacuum')"))
        .await?
        .ok_or("autovacuum setting not read")?
        .try_get_by_index(0)?;
    if on == "on" {
        return Ok(None);
    }
    println!("analyze:  this server runs without autovacuum; the bench analyzes the written tables every 10 s");
    Ok(Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let analyzed = db
                .execute_raw(pg_statement(
                    "ANALYZE raw_events, visits, monthly_patients, reception_daily, monthly_usage",
                ))
                .await;
            if let Err(e) = analyzed {
                eprintln!("analyze: {e}");
            }
        }
    })))
}

fn pg_statement(sql: &str) -> sea_orm::Statement {
    sea_orm::Statement::from_string(sea_orm::DatabaseBackend::Postgres, sql.to_owned())
}

pub async fn ingest(mut config: Config, bench: IngestBench) -> Result<(), Box<dyn std::error::Error>> {
    config.listen = "127.0.0.1:0".to_owned();
    // The bench measures ingest, not the rate limiter.
    config.ingest_batches_per_device_per_sec = u32::MAX;
    let adapters = Adapters::connect(&config).await?;
    let (tenant, clinics) = seed(&adapters.store).await?;
    let requests_planned = bench.events.div_ceil(bench.batch.max(1));
    // Heartbeats without `--devices` are shaped as in production (`warm_up`): one agent per heartbeat.
    let fleet_shaped = bench.heartbeats && bench.devices.is_none();
    let devices = bench.devices.unwrap_or(if bench.heartbeats { requests_planned } else { bench.concurrency }).max(1);
    // The seeded clinics' own agents, then as many more as asked for, spread over the clinics.
    let mut agents: Vec<(onshi_store::ClinicScope, onshi_domain::DeviceId)> =
        clinics.iter().map(|c| (c.clinic.clone(), c.device)).collect();
    let operator = adapters.store.tenant(TenantScope::operator(tenant));
    let enrolling = Instant::now();
    while agents.len() < devices {
        let clinic = clinics[agents.len() % clinics.len()].clinic.clone();
        let device = operator.create_device(&clinic, &format!("bench-{}", agents.len())).await?;
        agents.push((clinic, device.id));
    }
    agents.truncate(devices);
    println!("agents:   {} enrolled in {:.1}s", agents.len(), enrolling.elapsed().as_secs_f64());
    let before = steady_state(&adapters.store, tenant, &agents, 20_000).await?;
    let app = Application::build(&config, adapters, Options { with_worker: true }).await?.spawn();
    let store = app.adapters.store.clone();
    let modes = config.modes();
    let stop_extra = tokio_util::sync::CancellationToken::new();
    let mut extra = Vec::new();
    for _ in 1..bench.workers.max(1) {
        let adapters = Adapters::connect(&config).await?;
        extra.push(tokio::spawn(adapters.worker(&config, Default::default()).run(stop_extra.clone())));
    }
    println!(
        "bench ingest: {} {}, batches of {}, {} concurrent clients, {} agents, {} worker(s); database={} queue={} cache={} objects={}",
        bench.events,
        if bench.heartbeats { "heartbeats" } else { "events" },
        bench.batch,
        bench.concurrency,
        agents.len(),
        bench.workers.max(1),
        if modes.postgres { "postgres" } else { "sqlite" },
        app.adapters.queue.kind(),
        app.adapters.cache.kind(),
        app.adapters.objects.kind(),
    );
    let tokens: Vec<(String, onshi_domain::MedicalInstitutionCode)> = agents
        .iter()
        .map(|(clinic, device)| Ok((app.device_keys.mint(tenant, clinic.id, *device)?, clinic.code.clone())))
        .collect::<Result<_, onshi_api::auth::SignError>>()?;
    let tokens = std::sync::Arc::new(tokens);

    // The load generator runs on its own threads, so that its CPU is told apart from the server's.
    let clients_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let per_client = bench.events.div_ceil(bench.concurrency);
    let m = onshi_telemetry::metrics();
    if fleet_shaped {
        warm_up(&clients_runtime, &app.base_url(), &tokens, bench.concurrency).await?;
    }
    let flushes_before = m.heartbeat_flushes.get();
    let states_before = m.heartbeat_states.get();
    let applied_before = m.worker_events.with_label_values(&["new"]).get();
    let messages_before = m.ingest_messages.get();
    let cpu_before = TierCpu::now();
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..bench.concurrency {
        let base = app.base_url();
        let batch = bench.batch;
        let heartbeats = bench.heartbeats;
        let tokens = tokens.clone();
        let concurrency = bench.concurrency;
        clients.push(clients_runtime.spawn(async move {
            let client = reqwest::Client::new();
            let mut factories = ClinicFactories::default();
            let mut sent = 0;
            let mut refused = 0;
            let mut requests = 0u64;
            while sent < per_client {
                // Agents take turns: client c sends for agents c, c + clients, c + 2 × clients, ...
                let agent = (c + requests as usize * concurrency) % tokens.len();
                let (token, code) = &tokens[agent];
                let factory = factories.of(code, c as u64);
                let n = batch.min(per_client - sent);
                let now = OffsetDateTime::now_utc();
                let events =
                    (0..n).map(|_| if heartbeats { factory.heartbeat(now) } else { factory.reception(now) }).collect();
                match post_batch(&client, &base, token, events).await {
                    Ok(s) if s.as_u16() == 202 => {
                        sent += n;
                        requests += 1;
                    }
                    _ => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (sent, refused, requests)
        }));
    }
    let mut total = 0;
    let mut refused = 0;
    let mut requests = 0;
    for client in clients {
        if let Ok((s, r, q)) = client.await {
            total += s;
            refused += r;
            requests += q;
        }
    }
    let accepted_in = started.elapsed();
    let scoped = store.tenant(TenantScope::operator(tenant));
    if bench.heartbeats {
        // Written once a round of the heartbeat writer that began after the last request has finished.
        let flushes_at_end = m.heartbeat_flushes.get();
        while m.heartbeat_flushes.get() < flushes_at_end + 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(config.heartbeat_flush_ms + 100)).await;
    } else {
        // The workers' own count of new events (counted after each commit), so that waiting does not load
        // the database; the stored rows are counted once at the end.
        let applied = || m.worker_events.with_label_values(&["new"]).get();
        while applied().saturating_sub(applied_before) < total as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let applied_in = started.elapsed();
    let cpu_after = TierCpu::now();
    clients_runtime.shutdown_background();
    if !bench.heartbeats {
        let stored = scoped.raw_event_count().await?.saturating_sub(before);
        if stored != total as u64 {
            return Err(format!("{total} events accepted but {stored} stored").into());
        }
    }
    let unit = if bench.heartbeats { "heartbeats" } else { "events" };
    println!(
        "accepted: {total} {unit} in {} requests, {:.2}s = {:.0} {unit}/s, {:.0} requests/s (HTTP 202; {refused} retried requests)",
        requests,
        accepted_in.as_secs_f64(),
        total as f64 / accepted_in.as_secs_f64(),
        requests as f64 / accepted_in.as_secs_f64()
    );
    if bench.heartbeats {
        println!(
            "written:  {} agent states in {} rounds of the heartbeat writer (every {} ms), all by {:.2}s",
            m.heartbeat_states.get() - states_before,
            m.heartbeat_flushes.get() - flushes_before,
            config.heartbeat_flush_ms,
            applied_in.as_secs_f64()
        );
    } else {
        println!(
            "applied:  {total} events in {:.2}s = {:.0} events/s end to end (stored and folded into visits)",
            applied_in.as_secs_f64(),
            total as f64 / applied_in.as_secs_f64()
        );
        let messages = m.ingest_messages.get() - messages_before;
        println!(
            "queued:   {requests} requests' batches in {messages} queue messages ({:.1} per message)",
            requests as f64 / messages.max(1) as f64
        );
    }
    cpu_before.report(&cpu_after, requests, "request");
    if modes.postgres {
        use sea_orm::ConnectionTrait;
        // Storage per row, for the capacity plan: each partitioned table summed over its partitions,
        // indexes and TOAST included.
        for table in ["raw_events", "visits"] {
            let row = store
                .connection()
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    format!(
                        "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint AS bytes, \
                         (SELECT count(*) FROM {table})::bigint AS n \
                         FROM pg_inherits WHERE inhparent = '{table}'::regclass"
                    ),
                ))
                .await?;
            if let Some(row) = row {
                let (bytes, n): (i64, i64) = (row.try_get("", "bytes")?, row.try_get("", "n")?);
                println!(
                    "storage:  {table}: {n} rows, {:.1} MiB, {:.0} bytes per row with indexes",
                    bytes as f64 / 1048576.0,
                    bytes as f64 / n.max(1) as f64
                );
            }
        }
        if !bench.heartbeats {
            let reference = batched_insert_reference(&store, total).await?;
            let applied = total as f64 / applied_in.as_secs_f64();
            println!(
                "ratio:    end to end applies {applied:.0} events/s = 1/{:.1} of a batched INSERT ({reference:.0} rows/s)",
                reference / applied
            );
        }
    }
    stop_extra.cancel();
    for worker in extra {
        let _ = worker.await;
    }
    app.stop().await;
    Ok(())
}

/// The ingest bench's event factories: one per clinic (making one draws its patient pool), shared by the
/// clinic's agents.
#[derive(Default)]
struct ClinicFactories(std::collections::HashMap<String, EventFactory>);

impl ClinicFactories {
    fn of(&mut self, code: &onshi_domain::MedicalInstitutionCode, seed: u64) -> &mut EventFactory {
        self.0.entry(code.to_string()).or_insert_with(|| EventFactory::new(code.clone(), b"bench", 5000, seed))
    }
}

/// Readies a fleet-shaped heartbeat run. In production an agent sends every 20 s, so the heartbeat writer
/// (every 5 s) writes each heartbeat as a row of its own, and an API process that keeps a device for the
/// authentication cache's TTL reads it from the database once in TTL / 20 s requests. The timed run sends
/// one heartbeat per agent, for the first; this untimed round sends one from all agents but every
/// (TTL / 20 s)-th, for the second, and waits until the writer has written them.
async fn warm_up(
    clients: &tokio::runtime::Runtime,
    base: &str,
    tokens: &std::sync::Arc<Vec<(String, onshi_domain::MedicalInstitutionCode)>>,
    concurrency: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let cold_every = (onshi_api::device_cache::TTL.as_secs() / 20).max(1) as usize;
    let m = onshi_telemetry::metrics();
    let written_before = m.heartbeat_states.get();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (base, tokens) = (base.to_owned(), tokens.clone());
        tasks.push(clients.spawn(async move {
            let client = reqwest::Client::new();
            let mut factories = ClinicFactories::default();
            let mut sent = 0usize;
            for agent in (c..tokens.len()).step_by(concurrency).filter(|a| a % cold_every != 0) {
                let (token, code) = &tokens[agent];
                let beat =
                    factories.of(code, c as u64).heartbeat(OffsetDateTime::now_utc() - time::Duration::seconds(20));
                if matches!(post_batch(&client, &base, token, vec![beat]).await, Ok(s) if s.as_u16() == 202) {
                    sent += 1;
                }
            }
            sent
        }));
    }
    let mut sent = 0;
    for task in tasks {
        sent += task.await?;
    }
    while m.heartbeat_states.get() < written_before + sent as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "warm-up:  {sent} of {} agents sent a heartbeat first (untimed, {:.1}s): one in {cold_every} is read from the database in the run",
        tokens.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The reference the end-to-end rate is compared with: visit-shaped rows inserted into a scratch table on
/// the same database, 200 per statement, one transaction per statement.
async fn batched_insert_reference(store: &onshi_store::Store, rows: usize) -> Result<f64, Box<dyn std::error::Error>> {
    use sea_orm::ConnectionTrait;
    let db = store.connection();
    db.execute_raw(pg_statement(
        "CREATE TABLE IF NOT EXISTS bench_reference (id uuid PRIMARY KEY, tenant_id uuid, \
         clinic_id uuid, visit_key text, visit_date date, patient text, first_at timestamptz, last_at timestamptz, \
         method text, myna boolean, result text, confirmations int)",
    ))
    .await?;
    let started = Instant::now();
    let mut done = 0;
    while done < rows {
        let n = 200.min(rows - done);
        db.execute_raw(pg_statement(&format!(
            "INSERT INTO bench_reference SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), \
             md5(g::text), current_date, md5((g * 7)::text), now(), now(), 'myna', true, 'valid', 1 \
             FROM generate_series({done}, {}) AS g",
            done + n - 1
        )))
        .await?;
        done += n;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    db.execute_raw(pg_statement("DROP TABLE bench_reference")).await?;
    Ok(rate)
}

/// Starts the cloud with the configured adapters and enrolls an agent data folder for the first clinic.
async fn cloud_with_agent(
    mut config: Config,
) -> Result<
    (crate::startup::RunningApp, onshi_domain::TenantId, tempfile::TempDir, onshi_agent::Credentials),
    Box<dyn std::error::Error>,
> {
    config.listen = "127.0.0.1:0".to_owned();
    config.ingest_batches_per_device_per_sec = u32::MAX;
    let adapters = Adapters::connect(&config).await?;
    let (tenant, clinics) = seed_group(&adapters.store, false).await?;
    let code = adapters
        .store
        .tenant(TenantScope::operator(tenant))
        .create_enrollment_code(&clinics[0].clinic, time::Duration::hours(1))
        .await?;
    let app = Application::build(&config, adapters, Options { with_worker: true }).await?.spawn();
    let dir = tempfile::Builder::new().prefix("onshi-bench-agent").tempdir()?;
    let credentials = onshi_agent::uplink::enroll(&app.base_url(), &code, "bench").await?;
    credentials.save(&dir.path().join("agent"))?;
    Ok((app, tenant, dir, credentials))
}

/// `onshi bench drain`: fills an agent's outbox as an outage would, then lets it deliver.
pub async fn drain(config: Config, events: usize) -> Result<(), Box<dyn std::error::Error>> {
    let (app, tenant, dir, credentials) = cloud_with_agent(config).await?;
    let agent_config = onshi_agent::AgentConfig::with(dir.path().join("agent"), vec![dir.path().join("terminal")])?;
    {
        let outbox = onshi_agent::outbox::Outbox::open(&agent_config.outbox_path(), u64::MAX)?;
        let mut factory =
            EventFactory::new(credentials.institution_code.clone(), &credentials.pseudonym_key_bytes(), 5000, 7);
        let now = OffsetDateTime::now_utc();
        let mut filled = 0;
        let mut file = 0;
        while filled < events {
            let n = 1000.min(events - filled);
            let batch: Vec<_> = (0..n)
                .map(|i| factory.reception(now - time::Duration::seconds(((filled + i) % 36_000) as i64)))
                .collect();
            outbox.commit_file(&format!("bench-{file}"), "bench", 0, &batch)?;
            filled += n;
            file += 1;
        }
        println!(
            "drain: outbox holds {} events ({} KiB of JSON); batch size {}",
            outbox.depth()?,
            outbox.buffered_bytes() / 1024,
            agent_config.batch_size
        );
    }
    let agent = onshi_agent::Agent::open(agent_config)?;
    let outbox = agent.outbox();
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(agent.run(stop.clone()));
    let scoped = app.adapters.store.tenant(TenantScope::operator(tenant));
    let mut delivered_at = None;
    loop {
        if delivered_at.is_none() && outbox.depth()? == 0 {
            delivered_at = Some(started.elapsed());
        }
        if scoped.raw_event_count().await? as usize >= events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let applied = started.elapsed();
    stop.cancel();
    let _ = task.await;
    let delivered = delivered_at.unwrap_or(applied);
    println!(
        "drain: {events} events accepted by the cloud (outbox empty) in {:.1} s = {:.0} events/s; applied in {:.1} s = {:.0} events/s",
        delivered.as_secs_f64(),
        events as f64 / delivered.as_secs_f64(),
        applied.as_secs_f64(),
        events as f64 / applied.as_secs_f64()
    );
    app.stop().await;
    Ok(())
}

#[cfg(target_os = "linux")]
fn proc_status(pid: u32) -> Option<(u64, u64)> {
    // (VmRSS KiB, utime+stime clock ticks)
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks))
}

/// `onshi bench agent-footprint`: runs the real `onshi-agent` binary (next to this one) against an
/// in-process cloud and reads its memory and CPU from /proc.
#[cfg(target_os = "linux")]
pub async fn agent_footprint(config: Config, files: usize) -> Result<(), Box<dyn std::error::Error>> {
    let bin = std::env::current_exe()?.with_file_name("onshi-agent");
    if !bin.exists() {
        return Err(format!("{} not found: build the workspace first", bin.display()).into());
    }
    let (app, tenant, dir, credentials) = cloud_with_agent(config).await?;
    let terminal = dir.path().join("terminal");
    for sub in ["face", "res"] {
        std::fs::create_dir_all(terminal.join(sub))?;
    }
    let toml = format!(
        "data_dir = {:?}\nwatch = [{:?}, {:?}]\nlog_level = \"warn\"\n",
        dir.path().join("agent").display().to_string(),
        terminal.join("face").display().to_string(),
        terminal.join("res").display().to_string()
    );
    std::fs::write(dir.path().join("agent.toml"), toml)?;
    let mut child = tokio::process::Command::new(&bin)
        .args(["run", "--config"])
        .arg(dir.path().join("agent.toml"))
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or("agent did not start")?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, t0) = proc_status(pid).ok_or("cannot read /proc")?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (rss_idle, t1) = proc_status(pid).ok_or("cannot read /proc")?;
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let idle_cpu = (t1 - t0) as f64 / ticks_per_sec / 30.0 * 100.0;
    println!("agent idle: RSS {:.1} MiB, CPU {:.2}% of one core over 30 s", rss_idle as f64 / 1024.0, idle_cpu);

    let mut generator = onshi_agent::simulate::Generator::new(credentials.institution_code.as_str(), 500, 9);
    let started = Instant::now();
    let mut peak = rss_idle;
    for i in 0..files {
        let (file, card) = generator.next(OffsetDateTime::now_utc() - time::Duration::seconds((files - i) as i64));
        onshi_agent::simulate::write_into(&terminal.join(if card { "face" } else { "res" }), &file)?;
        if i % 50 == 0
            && let Some((rss, _)) = proc_status(pid)
        {
            peak = peak.max(rss);
        }
    }
    let scoped = app.adapters.store.tenant(TenantScope::operator(tenant));
    while (scoped.raw_event_count().await? as usize) < files {
        if let Some((rss, _)) = proc_status(pid) {
            peak = peak.max(rss);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "agent under load: {files} files read and delivered in {:.1} s; peak RSS {:.1} MiB",
        started.elapsed().as_secs_f64(),
        peak as f64 / 1024.0
    );
    child.start_kill()?;
    let _ = child.wait().await;
    app.stop().await;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub async fn agent_footprint(_config: Config, _files: usize) -> Result<(), Box<dyn std::error::Error>> {
    Err("agent-footprint reads /proc and runs on Linux only".into())
}

/// `onshi bench rules`: builds a month of visits for a clinic group (plus the two months before, which the
/// 3月に1回 limit looks back on), evaluates it, then adds 1% late visits scattered over the month and
/// evaluates again, as the service does when an agent delivers after an outage.
pub fn rules(clinics: usize, visits_per_clinic: usize) -> Result<(), Box<dyn std::error::Error>> {
    use rand::{Rng, SeedableRng};
    let rules = onshi_rules::RuleSet::builtin()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let month_start = time::macros::date!(2025 - 11 - 01);
    let mut clinic_json = Vec::new();
    let mut visits = Vec::new();
    for c in 0..clinics {
        clinic_json.push(serde_json::json!({
            "id": format!("c{c}"), "facility_kind": "医科",
            "standards": [{"from": "2024-01-01", "online_claims": true, "oqs": true, "notices": true, "e_prescription": rng.random_bool(0.6)}],
            "usage_rates": {"2025-06": rng.random_range(0.2..0.8), "2025-07": rng.random_range(0.2..0.8), "2025-08": rng.random_range(0.2..0.8)}
        }));
        // About 1,000 patients per clinic; the month's visits plus two months of history.
        for _ in 0..visits_per_clinic * 3 / 2 {
            let day = month_start - time::Duration::days(60) + time::Duration::days(rng.random_range(0..90));
            visits.push(serde_json::json!({
                "id": format!("v{}", visits.len()), "clinic": format!("c{c}"),
                "patient": format!("p{}", rng.random_range(0..1000)), "date": day.to_string(),
                "kind": if rng.random_bool(0.2) { "初診" } else { "再診" },
                "myna": rng.random_bool(0.55), "info_obtained": rng.random_bool(0.4)
            }));
        }
    }
    let input = serde_json::json!({"clinics": clinic_json, "visits": visits}).to_string();
    let started = Instant::now();
    let parsed = onshi_rules::EvalInput::from_json(input.as_bytes())?;
    let parse_time = started.elapsed();
    let started = Instant::now();
    let decisions = onshi_rules::evaluate(&rules, &parsed);
    let first = started.elapsed();
    let granted: usize = decisions.iter().map(|d| d.addons.len()).sum();
    // 1% late visits, then the whole set again: evaluation is a pure function of the set.
    let mut late = parsed.clone();
    for i in 0..late.visits.len() / 100 {
        let mut v = late.visits[i * 97 % late.visits.len()].clone();
        v.id = format!("late{i}");
        v.date = month_start + time::Duration::days(rng.random_range(0..30));
        late.visits.push(v);
    }
    let started = Instant::now();
    let again = onshi_rules::evaluate(&rules, &late);
    let second = started.elapsed();
    println!(
        "rules: {} clinics, {} visits (month + 2 months of history), {granted} addons granted",
        clinics,
        parsed.visits.len()
    );
    println!(
        "rules: parse {:.2} s; evaluate {:.2} s = {:.0} visits/s",
        parse_time.as_secs_f64(),
        first.as_secs_f64(),
        parsed.visits.len() as f64 / first.as_secs_f64()
    );
    println!(
        "rules: after {} late visits, re-evaluate {} visits in {:.2} s = {:.0} visits/s",
        late.visits.len() - parsed.visits.len(),
        again.len(),
        second.as_secs_f64(),
        again.len() as f64 / second.as_secs_f64()
    );
    Ok(())
}

/// `onshi bench dashboard`: a group of `clinics` clinics with `years` of history, seeded straight into
/// PostgreSQL with generate_series (visits and the rollups the worker would have built), then the usage
/// overview and the clinic page are requested over HTTP by a signed-in manager. Prints p50/p95/max of the
/// response time as seen on loopback (server time plus a few tens of microseconds).
/// What `onshi bench dashboard` seeds and measures.
pub struct DashboardBench {
    pub clinics: usize,
    pub years: u32,
    pub requests: usize,
    /// Measure the group an earlier run seeded in the same database.
    pub reuse: bool,
}

pub async fn dashboard(mut config: Config, bench: DashboardBench) -> Result<(), Box<dyn std::error::Error>> {
    use onshi_migrations::sea_orm::ConnectionTrait;
    use secrecy::ExposeSecret;
    let DashboardBench { clinics, years, requests, reuse } = bench;
    if !config.modes().postgres {
        return Err("bench dashboard needs PostgreSQL: set database_url (and database_migration_url)".into());
    }
    config.listen = "127.0.0.1:0".to_owned();
    let owner = onshi_store::Store::connect(config.effective_migration_url().expose_secret(), 4).await?;
    owner.migrate().await?;
    let adapters = Adapters::connect(&config).await?;
    let store = adapters.store.clone();
    let today = onshi_domain::jst::date_of(OffsetDateTime::now_utc());
    let seeded = if reuse {
        owner
            .connection()
            .query_one_raw(pg_statement(
                "SELECT id FROM tenants WHERE name = 'bench group' ORDER BY created_at DESC LIMIT 1",
            ))
            .await?
            .map(|row| row.try_get::<uuid::Uuid>("", "id"))
            .transpose()?
            .map(onshi_domain::TenantId::from_uuid)
    } else {
        None
    };
    let tenant = match seeded {
        Some(tenant) => {
            println!("bench dashboard: measuring the group seeded earlier ({tenant})");
            tenant
        }
        None => seed_dashboard(&owner, &store, clinics, years, today).await?,
    };
    let scoped = store.tenant(TenantScope::operator(tenant));
    let (email, password, secret) = bench_manager(&scoped).await?;
    let app = Application::build(&config, adapters, Options { with_worker: true }).await?.spawn();
    let base = app.base_url();
    let cookie = sign_in(&base, &email, &password, &secret).await?;
    let clinic_ids: Vec<String> = scoped.clinics().await?.iter().map(|c| c.id.to_string()).collect();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    for (label, paths) in [
        ("group overview (6 months)", vec!["/dashboard".to_owned()]),
        ("group overview (24 months)", vec!["/dashboard?months=24".to_owned()]),
        ("clinic detail (28 days)", clinic_ids.iter().map(|c| format!("/dashboard/clinics/{c}")).collect()),
        (
            "clinic detail (1 year)",
            clinic_ids
                .iter()
                .map(|c| format!("/dashboard/clinics/{c}?from={}&to={today}", today - time::Duration::days(365)))
                .collect(),
        ),
    ] {
        let mut times = Vec::with_capacity(requests);
        for i in 0..requests + 5 {
            let path = &paths[i % paths.len()];
            let started = Instant::now();
            let response = client.get(format!("{base}{path}")).header("Cookie", &cookie).send().await?;
            let status = response.status();
            response.bytes().await?;
            if status != 200 {
                return Err(format!("{path}: HTTP {status}").into());
            }
            if i >= 5 {
                times.push(started.elapsed());
            }
        }
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0;
        println!("  {label:<28} n={requests}  p50 {:.1} ms  p95 {:.1} ms  max {:.1} ms", at(0.5), at(0.95), at(1.0));
    }
    app.stop().await;
    Ok(())
}

/// Seeds the dashboard bench's group straight into PostgreSQL (see `dashboard`); returns its tenant.
async fn seed_dashboard(
    owner: &onshi_store::Store,
    store: &onshi_store::Store,
    clinics: usize,
    years: u32,
    today: time::Date,
) -> Result<onshi_domain::TenantId, Box<dyn std::error::Error>> {
    use onshi_migrations::sea_orm::ConnectionTrait;
    let tenant = store.system().create_tenant("bench group").await?;
    let scoped = store.tenant(TenantScope::operator(tenant));
    for i in 0..clinics {
        let code = onshi_domain::MedicalInstitutionCode::parse(&format!("131{:06}0", i + 1))?;
        scoped.create_clinic(&code, &format!("ベンチ医院 {:03}", i + 1)).await?;
    }
    let start = today - time::Duration::days(365 * i64::from(years));
    let t = tenant.as_uuid();
    let seed_started = Instant::now();
    let db = owner.connection();
    let hour_columns = (0..24).map(|h| format!("hour_{h:02}")).collect::<Vec<_>>().join(", ");
    let hour_sums = (0..24)
        .map(|h| {
            format!("sum(CASE WHEN extract(hour FROM first_at AT TIME ZONE 'Asia/Tokyo') = {h} THEN 1 ELSE 0 END)")
        })
        .collect::<Vec<_>>()
        .join(", ");
    // 100 receptions a working day per clinic (times in 09:00-17:59 JST): 100 clinics x 3 years ≈ 9.4M visits.
    let statements = [
        format!(
            "INSERT INTO visits (id, tenant_id, clinic_id, visit_key, visit_date, patient_ref, first_at, last_at, method, \
             myna, result, consent_medication, consent_diagnosis, consent_checkup, consent_surgery, confirmations, updated_at) \
             SELECT gen_random_uuid(), '{t}', c.id, 'b:' || d::date || ':' || n, d::date, md5(c.id::text || (n % 2500)::text), \
             d + make_interval(hours => n % 9, mins => n % 60), d + make_interval(hours => n % 9, mins => n % 60), \
             CASE WHEN n % 10 < 4 THEN 'myna_card' WHEN n % 10 < 9 THEN 'eligibility_certificate' ELSE 'insurance_card' END, \
             n % 10 < 4, CASE WHEN n % 50 = 0 THEN 'invalid' ELSE 'valid' END, n % 10 < 4, n % 10 < 3, NULL, NULL, 1, now() \
             FROM clinics c, generate_series('{start}'::timestamptz, '{today}'::timestamptz, '1 day') d, generate_series(1, 100) n \
             WHERE c.tenant_id = '{t}' AND extract(isodow FROM d) < 7"
        ),
        // The daily rollup the worker keeps (what the clinic page reads), with receptions per JST hour.
        format!(
            "INSERT INTO reception_daily (tenant_id, clinic_id, day, method, receptions, myna, consent_medication, \
             consent_diagnosis, consent_checkup, invalid, {hour_columns}) \
             SELECT tenant_id, clinic_id, visit_date, method, count(*), sum(CASE WHEN myna THEN 1 ELSE 0 END), \
             sum(CASE WHEN consent_medication THEN 1 ELSE 0 END), sum(CASE WHEN consent_diagnosis THEN 1 ELSE 0 END), \
             0, sum(CASE WHEN result <> 'valid' THEN 1 ELSE 0 END), {hour_sums} \
             FROM visits WHERE tenant_id = '{t}' GROUP BY 1, 2, 3, 4"
        ),
        format!(
            "INSERT INTO monthly_patients (tenant_id, clinic_id, month, patient, myna) \
             SELECT tenant_id, clinic_id, to_char(visit_date, 'YYYY-MM'), patient_ref, bool_or(myna) \
             FROM visits WHERE tenant_id = '{t}' GROUP BY 1, 2, 3, 4"
        ),
        format!(
            "INSERT INTO monthly_usage (tenant_id, month, clinic_id, patients, myna_patients) \
             SELECT tenant_id, month, clinic_id, count(*), sum(CASE WHEN myna THEN 1 ELSE 0 END) \
             FROM monthly_patients WHERE tenant_id = '{t}' GROUP BY 1, 2, 3"
        ),
        "ANALYZE".to_owned(),
    ];
    // Each statement is one step: visits, the daily rollup, monthly patients, monthly usage, statistics.
    let mut progress = crate::progress::Progress::new("bench dashboard: seeding", Some(statements.len() as u64));
    for sql in &statements {
        db.execute_unprepared(sql).await?;
        progress.advance(1);
    }
    progress.finish();
    let visits = scoped.visit_count().await?;
    println!(
        "bench dashboard: {clinics} clinics, {years} years, {visits} visits seeded in {:.0} s",
        seed_started.elapsed().as_secs_f64()
    );
    Ok(tenant)
}

/// Cookies of one bench browser.
#[derive(Default)]
struct Jar(std::collections::BTreeMap<String, String>);

impl Jar {
    fn header(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn absorb(&mut self, response: &reqwest::Response) {
        for v in response.headers().get_all("set-cookie") {
            if let Some((k, v)) = v.to_str().ok().and_then(|s| s.split(';').next()).and_then(|p| p.split_once('=')) {
                self.0.insert(k.to_owned(), v.to_owned());
            }
        }
    }
}

/// Posts a form the way the sign-in page would: fetch the page for the CSRF field, then post.
async fn post_form(
    client: &reqwest::Client,
    base: &str,
    jar: &mut Jar,
    path: &str,
    fields: &[(&str, &str)],
) -> Result<reqwest::Response, Box<dyn std::error::Error>> {
    let page = client.get(format!("{base}/signin")).header("Cookie", jar.header()).send().await?;
    jar.absorb(&page);
    let html = page.text().await?;
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("").to_owned();
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    let response = client
        .post(format!("{base}{path}"))
        .header("Cookie", jar.header())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&form)?)
        .send()
        .await?;
    jar.absorb(&response);
    Ok(response)
}

/// Signs in over HTTP (password, then TOTP) and returns the Cookie header to send.
async fn sign_in(
    base: &str,
    email: &str,
    password: &str,
    secret: &onshi_identity::TotpSecret,
) -> Result<String, Box<dyn std::error::Error>> {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let mut jar = Jar::default();
    post_form(&client, base, &mut jar, "/signin", &[("email", email), ("password", password)]).await?;
    let now = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    let code = secret.code_at(now)?;
    let r = post_form(&client, base, &mut jar, "/signin/totp", &[("code", code.as_str())]).await?;
    if r.status() != 303 {
        return Err(format!("sign-in failed: HTTP {}", r.status()).into());
    }
    Ok(jar.header())
}

/// `onshi bench feed`: time from an agent's POST of a reception to its event on a signed-in page's
/// server-sent-event stream, with the configured adapters (Redis pub/sub in full mode). With `load`,
/// that many receptions a second arrive meanwhile at other agents of the same group, which deliver them
/// as the edge agent does (see `offer_load`; on the load generator's own threads), and the samples
/// measure the latency under that load.
pub async fn feed(mut config: Config, samples: usize, load: u32) -> Result<(), Box<dyn std::error::Error>> {
    config.listen = "127.0.0.1:0".to_owned();
    // One reception after another from one agent: the measurement, not the rate limiter.
    config.ingest_batches_per_device_per_sec = u32::MAX;
    if config.modes().postgres {
        let owner =
            onshi_store::Store::connect(secrecy::ExposeSecret::expose_secret(&config.effective_migration_url()), 2)
                .await?;
        owner.migrate().await?;
    }
    let adapters = Adapters::connect(&config).await?;
    let (tenant, clinics) = seed(&adapters.store).await?;
    let scoped = adapters.store.tenant(TenantScope::operator(tenant));
    let (email, password, secret) = bench_manager(&scoped).await?;
    // The load's clinics, each with its agent: one per 1/s of load (at least 100, at most 2,000). A fleet's
    // agent sees a reception every minute or so; 1/s each keeps most requests single, and each clinic's
    // own patients keep concurrent batches from meeting on the same visits, as a fleet's do (an earlier
    // load of two clinics at 500 receptions/s each saw a patient again every few seconds, and its groups
    // waited on each other's visit locks).
    let mut load_agents = Vec::new();
    if load > 0 {
        for i in 0..(load as usize).clamp(100, 2_000) {
            let code = onshi_domain::MedicalInstitutionCode::parse(&format!("271{:06}0", i + 1))?;
            let clinic = scoped.create_clinic(&code, &format!("負荷医院 {:04}", i + 1)).await?;
            let device = scoped.create_device(&clinic, "受付").await?;
            load_agents.push((clinic, device.id));
        }
    }
    let mut agents = load_agents.clone();
    agents.push((clinics[0].clinic.clone(), clinics[0].device));
    steady_state(&adapters.store, tenant, &agents, 20_000).await?;
    let analyzer = stand_in_for_autovacuum(&adapters.store).await?;
    let app = Application::build(&config, adapters, Options { with_worker: true }).await?.spawn();
    let base = app.base_url();
    let cookie = sign_in(&base, &email, &password, &secret).await?;
    let client = reqwest::Client::new();
    let mut stream = client.get(format!("{base}/feed")).header("Cookie", &cookie).send().await?;
    if stream.status() != 200 {
        return Err(format!("/feed: HTTP {}", stream.status()).into());
    }
    stream.chunk().await?; // ": connected"

    let clients_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let stop_load = tokio_util::sync::CancellationToken::new();
    let load_counts = std::sync::Arc::new(LoadCounts::default());
    if load > 0 {
        let agents = load_agents
            .iter()
            .map(|(clinic, device)| Ok((app.device_keys.mint(tenant, clinic.id, *device)?, clinic.code.clone())))
            .collect::<Result<Vec<_>, onshi_api::auth::SignError>>()?;
        clients_runtime.spawn(offer_load(base.clone(), agents, load, load_counts.clone(), stop_load.clone()));
        // Let the load reach its rate before sampling.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    let clinic = &clinics[0];
    let marker = clinic.clinic.id.to_string();
    let token = app.device_keys.mint(tenant, clinic.clinic.id, clinic.device)?;
    let mut factory = EventFactory::new(clinic.clinic.code.clone(), b"bench-key", 500, 7);
    let mut times = Vec::with_capacity(samples);
    let before = load_counts.snapshot();
    let clock = WorkerClock::read();
    let sampling = Instant::now();
    // A sample slower than this means the server no longer keeps up with the load: the backlog, and each
    // later sample, would only grow, so the run stops and says so instead of running for ever.
    let behind_after = Duration::from_secs(10);
    let mut fell_behind = false;
    for _ in 0..samples {
        let event = factory.reception(OffsetDateTime::now_utc());
        let started = Instant::now();
        let status = post_batch(&client, &base, &token, vec![event]).await?;
        if status != 202 {
            return Err(format!("POST /api/v1/events: HTTP {status}").into());
        }
        // The load's events of other clinics pass by; the sample's is the one naming its clinic.
        let mut pending = String::new();
        loop {
            let chunk = tokio::time::timeout(Duration::from_secs(30), stream.chunk()).await??.ok_or("stream ended")?;
            pending.push_str(&String::from_utf8_lossy(&chunk));
            if pending.contains(&marker) {
                break;
            }
            if let Some(end) = pending.rfind("\n\n") {
                pending.drain(..end + 2);
            }
            if started.elapsed() > behind_after {
                fell_behind = true;
                break;
            }
        }
        times.push(started.elapsed());
        if fell_behind {
            break;
        }
        if load > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let after = load_counts.snapshot();
    let during = after.since(before);
    let worker = WorkerClock::read().since(&clock);
    let seconds = sampling.elapsed().as_secs_f64();
    stop_load.cancel();
    if let Some(analyzer) = analyzer {
        analyzer.abort();
    }
    clients_runtime.shutdown_background();
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0;
    let modes = config.modes();
    if fell_behind {
        println!(
            "bench feed: load {load} receptions/s from {} agents: NOT KEPT UP: after {} samples one took {:.1} s or more (> {} s), {:.0}/s accepted meanwhile, {} waiting at the end; stopped",
            load_agents.len(),
            times.len(),
            times.last().map_or(0.0, Duration::as_secs_f64),
            behind_after.as_secs(),
            during.accepted as f64 / seconds,
            after.generated - after.accepted,
        );
        app.stop().await;
        return Ok(());
    }
    println!(
        "bench feed: POST → SSE event, n={samples}, cache={}, queue={}, load {} receptions/s from {} agents: {:.0}/s accepted meanwhile in {:.0} requests/s ({:.2} per request, {} refused, {} waiting at the end): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        app.adapters.cache.kind(),
        if modes.rabbitmq { "rabbitmq" } else { "embedded" },
        load,
        load_agents.len(),
        during.accepted as f64 / seconds,
        during.requests as f64 / seconds,
        during.accepted as f64 / during.requests.max(1) as f64,
        during.refused,
        after.generated - after.accepted,
        at(0.5),
        at(0.95),
        at(0.99),
        at(1.0)
    );
    println!("{worker}");
    app.stop().await;
    Ok(())
}

/// The steps of handling a group that `onshi_worker_stage_seconds` times, in order.
const WORKER_STEPS: [&str; 4] = ["archive", "apply", "publish", "settle"];

/// What the in-process worker has counted so far: time per step of its groups (sum, groups) and how late
/// batches were applied after their 202 (sum, batches, batches within 0.5 s and within 1 s). The feed
/// bench prints the difference over its sampling, to tell a worker falling behind from a slow feed.
#[derive(Clone, Copy, Default)]
struct WorkerClock {
    steps: [(f64, u64); 4],
    lag: (f64, u64),
    within: (u64, u64),
}

impl WorkerClock {
    fn read() -> Self {
        let m = onshi_telemetry::metrics();
        let mut clock = WorkerClock::default();
        for (slot, step) in clock.steps.iter_mut().zip(WORKER_STEPS) {
            let h = m.worker_stage.with_label_values(&[step]);
            *slot = (h.get_sample_sum(), h.get_sample_count());
        }
        clock.lag = (m.worker_lag.get_sample_sum(), m.worker_lag.get_sample_count());
        clock.within = (
            onshi_telemetry::metrics::observed_within(&m.worker_lag, 0.5),
            onshi_telemetry::metrics::observed_within(&m.worker_lag, 1.0),
        );
        clock
    }

    fn since(mut self, before: &WorkerClock) -> Self {
        for (now, then) in self.steps.iter_mut().zip(before.steps) {
            *now = (now.0 - then.0, now.1 - then.1);
        }
        self.lag = (self.lag.0 - before.lag.0, self.lag.1 - before.lag.1);
        self.within = (self.within.0 - before.within.0, self.within.1 - before.within.1);
        self
    }
}

impl std::fmt::Display for WorkerClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups = self.steps[1].1.max(1);
        let batches = self.lag.1.max(1);
        write!(
            f,
            "worker:   {} groups of {:.1} batches; per group",
            self.steps[1].1,
            self.lag.1 as f64 / groups as f64
        )?;
        for (step, (sum, count)) in WORKER_STEPS.iter().zip(self.steps) {
            write!(f, " {step} {:.1} ms", 1000.0 * sum / count.max(1) as f64)?;
        }
        write!(
            f,
            "; batches applied {:.1} ms after their 202 on average, {:.1}% within 0.5 s, {:.1}% within 1 s",
            1000.0 * self.lag.0 / batches as f64,
            100.0 * self.within.0 as f64 / batches as f64,
            100.0 * self.within.1 as f64 / batches as f64
        )
    }
}

/// What the feed bench's load has done so far.
#[derive(Default)]
struct LoadCounts {
    generated: std::sync::atomic::AtomicU64,
    accepted: std::sync::atomic::AtomicU64,
    requests: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
}

#[derive(Clone, Copy)]
struct LoadSnapshot {
    generated: u64,
    accepted: u64,
    requests: u64,
    refused: u64,
}

impl LoadCounts {
    fn snapshot(&self) -> LoadSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        LoadSnapshot {
            generated: self.generated.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            requests: self.requests.load(Relaxed),
            refused: self.refused.load(Relaxed),
        }
    }
}

impl LoadSnapshot {
    fn since(self, before: LoadSnapshot) -> LoadSnapshot {
        LoadSnapshot {
            generated: self.generated - before.generated,
            accepted: self.accepted - before.accepted,
            requests: self.requests - before.requests,
            refused: self.refused - before.refused,
        }
    }
}

/// The feed bench's load: receptions arrive at `load` a second (every 10 ms, a hundredth of it), each
/// at the next agent in turn, and every agent delivers as the edge agent does: one request out at a
/// time, carrying everything that arrived while the last one was out (up to the agent's 200). So when
/// the server lags, requests grow instead of multiplying, and connections stay one per agent at most;
/// an earlier generator spawned a request per reception and opened thousands of connections once the
/// server fell behind, measuring itself as much as the server.
async fn offer_load(
    base: String,
    agents: Vec<(String, onshi_domain::MedicalInstitutionCode)>,
    load: u32,
    counts: std::sync::Arc<LoadCounts>,
    stop: tokio_util::sync::CancellationToken,
) {
    use std::sync::atomic::Ordering::Relaxed;
    const AGENT_BATCH: usize = 200;
    let client = reqwest::Client::new();
    // One pool of patients per clinic (a clinic's few hundred a day).
    let mut factories: std::collections::HashMap<String, EventFactory> = Default::default();
    let mut inboxes = Vec::with_capacity(agents.len());
    for (i, (token, code)) in agents.into_iter().enumerate() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<onshi_domain::AgentEvent>();
        factories
            .entry(code.to_string())
            .or_insert_with(|| EventFactory::new(code.clone(), b"bench-key", 300, i as u64));
        inboxes.push((tx, code.to_string()));
        let (client, base, counts, stop) = (client.clone(), base.clone(), counts.clone(), stop.clone());
        tokio::spawn(async move {
            while let Some(first) = tokio::select! { () = stop.cancelled() => None, e = rx.recv() => e } {
                let mut batch = vec![first];
                while batch.len() < AGENT_BATCH
                    && let Ok(more) = rx.try_recv()
                {
                    batch.push(more);
                }
                // Refused or failed: the agent keeps the events and tries again shortly, as its outbox does.
                loop {
                    counts.requests.fetch_add(1, Relaxed);
                    match post_batch(&client, &base, &token, batch.clone()).await {
                        Ok(status) if status == 202 => {
                            counts.accepted.fetch_add(batch.len() as u64, Relaxed);
                            break;
                        }
                        _ => {
                            counts.refused.fetch_add(1, Relaxed);
                            tokio::select! {
                                () = stop.cancelled() => return,
                                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                            }
                        }
                    }
                }
            }
        });
    }
    // A late tick is made up at once (tokio's default): the arrivals do not wait for the generator.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let (mut next, mut carry) = (0usize, 0.0);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        carry += f64::from(load) / 100.0;
        while carry >= 1.0 {
            carry -= 1.0;
            let (inbox, code) = &inboxes[next % inboxes.len()];
            next += 1;
            let Some(factory) = factories.get_mut(code) else { continue };
            if inbox.send(factory.reception(OffsetDateTime::now_utc())).is_ok() {
                counts.generated.fetch_add(1, Relaxed);
            }
        }
    }
}

/// A verified manager with TOTP for a bench to sign in as: (e-mail, password, TOTP secret).
async fn bench_manager(
    scoped: &onshi_store::TenantStore<'_>,
) -> Result<(String, String, onshi_identity::TotpSecret), Box<dyn std::error::Error>> {
    use onshi_store::{AuditEntry, AuditResult, NewUser};
    let email = format!("bench-{}@example.jp", uuid::Uuid::new_v4().simple());
    let password = "bench-password-long-enough".to_owned();
    let phc = onshi_identity::hash_password(&password, &email)?;
    let entry = AuditEntry::new(None, "bench", AuditAction::BenchSeed, "-", AuditResult::Success);
    let new = NewUser {
        email: &email,
        display_name: "bench",
        role: onshi_domain::Role::Manager,
        clinics: &[],
        password_hash: Some(&phc),
    };
    let user = scoped.add_user(&new, &entry).await?;
    scoped.mark_email_verified(user, &entry).await?;
    let secret = onshi_identity::TotpSecret::generate();
    scoped.set_pending_totp(user, secret.base32()).await?;
    scoped.enable_totp(user, 0, &entry).await?;
    Ok((email, password, secret))
}

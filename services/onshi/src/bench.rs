//! `onshi bench ingest`: end-to-end ingest throughput with the configured adapters (set the ONSHI_*
//! variables for full mode). It seeds its own tenant, posts events through the HTTP API from several
//! concurrent clients, and waits until the worker has applied every event. Figures, not assertions:
//! record them in docs/benchmarks.md.

use std::time::{Duration, Instant};

use onshi_config::Config;
use onshi_store::TenantScope;
use time::OffsetDateTime;

use crate::demo::{EventFactory, post_batch, seed, seed_group};
use crate::startup::{Adapters, Application, Options};

pub struct IngestBench {
    pub events: usize,
    pub batch: usize,
    pub concurrency: usize,
}

pub async fn ingest(mut config: Config, bench: IngestBench) -> Result<(), Box<dyn std::error::Error>> {
    config.listen = "127.0.0.1:0".to_owned();
    // The bench measures ingest, not the rate limiter.
    config.ingest_batches_per_device_per_sec = u32::MAX;
    let adapters = Adapters::connect(&config).await?;
    let (tenant, clinics) = seed(&adapters.store).await?;
    let app = Application::build(&config, adapters, Options { with_worker: true }).await?.spawn();
    let store = app.adapters.store.clone();
    let modes = config.modes();
    println!(
        "bench ingest: {} events, batches of {}, {} concurrent clients; database={} queue={} cache={} objects={}",
        bench.events,
        bench.batch,
        bench.concurrency,
        if modes.postgres { "postgres" } else { "sqlite" },
        app.adapters.queue.kind(),
        app.adapters.cache.kind(),
        app.adapters.objects.kind(),
    );

    let per_client = bench.events.div_ceil(bench.concurrency);
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..bench.concurrency {
        let demo = clinics[c % clinics.len()].clone();
        let token = app.device_keys.mint(tenant, demo.clinic.id, demo.device)?;
        let base = app.base_url();
        let batch = bench.batch;
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut factory = EventFactory::new(demo.clinic.code.clone(), b"bench", 5000, c as u64);
            let mut sent = 0;
            let mut refused = 0;
            while sent < per_client {
                let n = batch.min(per_client - sent);
                let now = OffsetDateTime::now_utc();
                let events = (0..n).map(|_| factory.reception(now)).collect();
                match post_batch(&client, &base, &token, events).await {
                    Ok(s) if s.as_u16() == 202 => sent += n,
                    _ => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (sent, refused)
        }));
    }
    let mut total = 0;
    let mut refused = 0;
    for client in clients {
        if let Ok((s, r)) = client.await {
            total += s;
            refused += r;
        }
    }
    let accepted_in = started.elapsed();
    let scoped = store.tenant(TenantScope::verified(tenant));
    loop {
        let applied = scoped.raw_event_count().await.unwrap_or(0);
        if applied as usize >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let applied_in = started.elapsed();
    println!(
        "accepted: {total} events in {:.2}s = {:.0} events/s (HTTP 202; {refused} retried requests)",
        accepted_in.as_secs_f64(),
        total as f64 / accepted_in.as_secs_f64()
    );
    println!(
        "applied:  {total} events in {:.2}s = {:.0} events/s end to end (stored and folded into visits)",
        applied_in.as_secs_f64(),
        total as f64 / applied_in.as_secs_f64()
    );
    app.stop().await;
    Ok(())
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
        .tenant(TenantScope::verified(tenant))
        .create_enrollment_code(clinics[0].clinic.id, time::Duration::hours(1))
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
    let scoped = app.adapters.store.tenant(TenantScope::verified(tenant));
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
    let scoped = app.adapters.store.tenant(TenantScope::verified(tenant));
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

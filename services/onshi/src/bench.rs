//! `onshi bench ingest`: end-to-end ingest throughput with the configured adapters (set the ONSHI_*
//! variables for full mode). It seeds its own tenant, posts events through the HTTP API from several
//! concurrent clients, and waits until the worker has applied every event. Figures, not assertions:
//! record them in docs/benchmarks.md.

use std::time::{Duration, Instant};

use onshi_config::Config;
use onshi_store::TenantScope;
use time::OffsetDateTime;

use crate::demo::{EventFactory, post_batch, seed};
use crate::startup::{Adapters, Application, Options, StartupError};

pub struct IngestBench {
    pub events: usize,
    pub batch: usize,
    pub concurrency: usize,
}

pub async fn ingest(mut config: Config, bench: IngestBench) -> Result<(), StartupError> {
    config.listen = "127.0.0.1:0".to_owned();
    // The bench measures ingest, not the rate limiter.
    config.ingest_batches_per_device_per_sec = u32::MAX;
    let adapters = Adapters::connect(&config).await?;
    let (tenant, clinics) = seed(&adapters.store).await?;
    let app = Application::build(&config, adapters, Options { with_worker: true, demo_tenant: None }).await?.spawn();
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
        let token = app
            .device_keys
            .mint(tenant, demo.clinic.id, demo.device)
            .map_err(|e| StartupError::Listen { addr: "token".into(), source: std::io::Error::other(e) })?;
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

//! What "accepted" means: a 202 survives restarts and crashes.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::*;

/// Restarting the whole application (server and worker) right after 202s loses nothing.
async fn restart_right_after_acceptance_loses_nothing(mode: Mode) {
    let mut app = spawn_app(mode).await;
    let events: Vec<_> = (0..6).map(|i| app.receptions(0, 10, 400 + i)).collect();
    for batch in &events {
        assert_eq!(app.post_events(0, batch).await.status(), 202);
    }
    app.restart().await;
    let expected: u64 = events.iter().map(|b| reception_count(b)).sum();
    eventually(WAIT, "every accepted event applied after restart", || async {
        app.store().raw_event_count().await.unwrap() == 60
    })
    .await;
    assert_eq!(app.store().confirmation_count().await.unwrap(), expected);
    app.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_right_after_acceptance_loses_nothing_embedded() {
    restart_right_after_acceptance_loses_nothing(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full mode: needs PostgreSQL, RabbitMQ, Redis and S3 (scripts/test runs it)"]
async fn restart_right_after_acceptance_loses_nothing_full() {
    restart_right_after_acceptance_loses_nothing(Mode::Full).await;
}

/// Full mode: a separate `onshi worker` process is killed with SIGKILL while it applies a stream of
/// batches, then restarted, again and again; in the end every event has taken effect exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full mode: needs PostgreSQL, RabbitMQ, Redis and S3 (scripts/test runs it)"]
async fn a_worker_killed_mid_stream_loses_nothing() {
    let tweak = |c: &mut onshi_config::Config| {
        // Every kill returns the in-flight messages; they must not reach the limit here.
        c.delivery_limit = 100;
        c.worker_prefetch = 8;
    };
    // No in-process worker: only the external process applies batches.
    let app = spawn_app_opts(Mode::Full, tweak, false).await;
    let bin = env!("CARGO_BIN_EXE_onshi");
    let c = &app.config;
    let spawn_worker = || {
        tokio::process::Command::new(bin)
            .arg("worker")
            .env_clear()
            .envs(process_env(c))
            .env("ONSHI_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start onshi worker")
    };

    // Fill the queue first: every batch is accepted (durable) before any worker runs.
    let batches: Vec<_> = (0..60).map(|i| app.receptions(i % 3, 20, 500 + i as u64)).collect();
    for (i, batch) in batches.iter().enumerate() {
        assert_eq!(app.post_events(i % 3, batch).await.status(), 202);
    }
    let total: u64 = 60 * 20;
    let expected: u64 = batches.iter().map(|b| reception_count(b)).sum();
    assert_eq!(app.store().raw_event_count().await.unwrap(), 0, "nothing applied without a worker");

    // Kill the worker each time it has applied another sixth of the stream.
    for k in 1..=5u64 {
        let mut worker = spawn_worker();
        let threshold = total * k / 6;
        eventually(Duration::from_secs(60), "worker makes progress", || async {
            app.store().raw_event_count().await.unwrap() >= threshold
        })
        .await;
        // SIGKILL: no chance to ack, settle or flush anything.
        worker.start_kill().expect("kill worker");
        worker.wait().await.ok();
        assert!(app.store().raw_event_count().await.unwrap() < total || k == 5, "killed before the end");
    }
    let mut worker = spawn_worker();
    assert_applied_exactly_once(&app, total, expected, Duration::from_secs(90)).await;
    worker.start_kill().ok();
    worker.wait().await.ok();
    app.teardown().await;
}

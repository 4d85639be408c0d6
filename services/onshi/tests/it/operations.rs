//! Running it in production: metrics and readiness, retention and monthly partitions, and the backup and
//! restore drill.

use std::collections::BTreeSet;

use onshi::backup::{self, BackupError};
use onshi_domain::{AuditAction, RetentionBasis, jst};
use onshi_objects::ObjectBackend;
use onshi_store::{AuditFilter, Store, TenantScope};
use sea_orm::{ConnectionTrait, Database};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::both_modes;
use crate::helpers::*;

/// The owner's connection (the one operators' commands use).
async fn owner(app: &TestApp) -> Store {
    Store::connect(app.config.effective_migration_url().expose_secret(), 2).await.unwrap()
}

async fn count(store: &Store, sql: &str) -> i64 {
    scalar(store.connection(), sql).await
}

/// Waits until the worker has stored `n` qualification events (each test app has a database of its own).
async fn events_applied(app: &TestApp, n: usize) {
    let store = owner(app).await;
    eventually(WAIT, "events applied", || async {
        usize::try_from(count(&store, "SELECT count(*) FROM raw_events").await).unwrap_or(0) >= n
    })
    .await;
    store.connection().clone().close().await.ok();
}

fn qualifications(events: &[onshi_domain::AgentEvent]) -> usize {
    events.iter().filter(|e| matches!(e.payload, onshi_domain::EventPayload::Qualification(_))).count()
}

both_modes!(metrics_and_readiness_describe_the_process_without_personal_data, |app| {
    let events = app.receptions(0, 30, 11);
    assert_eq!(app.post_events(0, &events).await.status(), 202);
    events_applied(app, qualifications(&events)).await;

    let text = app.client.get(format!("{}/metrics", app.base_url())).send().await.unwrap().text().await.unwrap();
    for family in [
        "onshi_http_request_duration_seconds_bucket",
        "onshi_ingest_events_total",
        "onshi_ingest_batches_total",
        "onshi_worker_batches_total",
        "onshi_worker_lag_seconds_bucket",
        "onshi_worker_stage_seconds_bucket{stage=\"apply\"",
        "onshi_agent_heartbeats_total",
        "onshi_queue_messages{queue=\"main\"}",
        "onshi_queue_messages{queue=\"dead_letter\"}",
        "onshi_agents{state=\"reporting\"}",
        "onshi_up{dependency=\"database\"} 1",
        "onshi_up{dependency=\"consumer\"} 1",
        "onshi_worker_consumer_up 1",
        "onshi_worker_seconds_since_delivery",
    ] {
        assert!(text.contains(family), "{family} missing from /metrics:\n{text}");
    }
    assert!(text.contains("route=\"/api/v1/events\""), "ingest latency is labelled by route pattern");

    // Every label value is one of a fixed vocabulary or a route pattern: no id, code or patient reference.
    let allowed: BTreeSet<&str> = [
        "GET",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "HEAD",
        "OPTIONS",
        "OTHER",
        "accepted",
        "delivered",
        "sent",
        "retry",
        "failed",
        "rejected",
        "duplicate",
        "new",
        "applied",
        "retried",
        "dead_lettered",
        "split",
        "main",
        "dead_letter",
        "reporting",
        "silent",
        "database",
        "queue",
        "cache",
        "objects",
        "consumer",
        "unmatched",
        "archive",
        "apply",
        "publish",
        "settle",
    ]
    .into();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(labels) = line.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map(|(l, _)| l) else {
            continue;
        };
        for pair in labels.split("\",") {
            let (name, value) = pair.split_once("=\"").unwrap();
            let value = value.trim_end_matches('"');
            let ok = match name {
                "route" => value.starts_with('/') || value == "unmatched",
                "status" => value.len() == 3 && value.chars().all(|c| c.is_ascii_digit()),
                "le" => true,
                _ => allowed.contains(value),
            };
            assert!(ok, "label {name}={value:?} is not from the fixed vocabulary: {line}");
        }
    }
    for id in [app.tenant.to_string(), app.clinics[0].clinic.id.to_string(), app.clinics[0].device.to_string()] {
        assert!(!text.contains(&id), "{id} appears in /metrics");
    }
    assert!(!text.contains(app.clinics[0].clinic.code.as_str()));

    // Readiness names each dependency it checked.
    let ready: serde_json::Value =
        app.client.get(format!("{}/readyz", app.base_url())).send().await.unwrap().json().await.unwrap();
    for dependency in ["database", "queue", "cache", "objects"] {
        assert_eq!(ready["checks"][dependency], true, "{ready}");
    }
    assert_eq!(ready["status"], "ready");
});

both_modes!(
    metrics_require_the_token_when_one_is_configured,
    |config| {
        config.metrics_token = Some(SecretString::from("scrape-me"));
    },
    |app| {
        let url = format!("{}/metrics", app.base_url());
        let anonymous = app.client.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let body: serde_json::Value = anonymous.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
        assert_eq!(app.client.get(&url).bearer_auth("wrong").send().await.unwrap().status(), 401);
        let scraped = app.client.get(&url).bearer_auth("scrape-me").send().await.unwrap();
        assert_eq!(scraped.status(), 200);
        assert!(scraped.text().await.unwrap().contains("onshi_up"));
        // Probes stay open: kubelets carry no token (ready once the in-process consumer is attached).
        eventually(WAIT, "ready without a token", || async {
            app.client.get(format!("{}/readyz", app.base_url())).send().await.unwrap().status() == 200
        })
        .await;
    }
);

both_modes!(retention_keeps_every_record_until_its_floor_and_audits_what_it_removes, |app| {
    let now = OffsetDateTime::now_utc();
    let today = jst::date_of(now);
    let months_ago = |months: i64| now - time::Duration::days(months * 365 / 12);
    // Receptions about 5 years 5 months, 3 years 4 months and 2 years ago, and today: past the 5-year floor,
    // past only the 3-year floor, and inside both. (The API refuses anything before 2021.)
    let mut sent = 0;
    for (seed, at) in [(1, months_ago(65)), (2, months_ago(40)), (3, months_ago(24)), (4, now)] {
        let mut factory = app.factory(0, seed);
        // One event that makes a visit (the factory also makes bulk checks, which do not).
        let event = std::iter::repeat_with(|| factory.reception(at))
            .find(|e| reception_count(std::slice::from_ref(e)) == 1)
            .unwrap();
        let events = vec![event];
        sent += qualifications(&events);
        assert_eq!(app.post_events(0, &events).await.status(), 202);
    }
    events_applied(app, sent).await;
    let store = owner(app).await;
    let visits_before = |date: time::Date| format!("SELECT count(*) FROM visits WHERE visit_date < '{date}'");
    let total = "SELECT count(*) FROM visits".to_owned();
    let all_before = count(&store, &total).await;

    // The agent's records of those days: an availability interval and a resolved alert at the oldest
    // reception's time, and an alert at the next one that is still open. Copied from the raw events so the
    // ids and times have each database's own format.
    let exec = |sql: &'static str| sea_orm::ConnectionTrait::execute_unprepared(store.connection(), sql);
    exec(
        "INSERT INTO device_uptime (tenant_id, device_id, started_at, ended_at, state) \
         SELECT tenant_id, device_id, occurred_at, occurred_at, 'up' FROM raw_events ORDER BY occurred_at LIMIT 1",
    )
    .await
    .unwrap();
    exec(
        "INSERT INTO device_alerts (id, tenant_id, clinic_id, device_id, kind, since, raised_at, resolved_at, created_at) \
         SELECT event_id, tenant_id, clinic_id, device_id, 'offline', occurred_at, occurred_at, occurred_at, occurred_at \
         FROM raw_events ORDER BY occurred_at LIMIT 1",
    )
    .await
    .unwrap();
    exec(
        "INSERT INTO device_alerts (id, tenant_id, clinic_id, device_id, kind, since, raised_at, resolved_at, created_at) \
         SELECT event_id, tenant_id, clinic_id, device_id, 'reader', occurred_at, occurred_at, NULL, occurred_at \
         FROM raw_events ORDER BY occurred_at LIMIT 1 OFFSET 1",
    )
    .await
    .unwrap();

    // Two e-mails that could not be sent: one queued with the 2-year-old reception (past the 90 days they
    // are kept), one today's.
    for which in ["ORDER BY occurred_at LIMIT 1 OFFSET 2", "ORDER BY occurred_at DESC LIMIT 1"] {
        let sql = format!(
            "INSERT INTO mail_outbox (id, tenant_id, topic, recipient, subject, body, status, attempts, \
               next_attempt_at, last_error, created_at) \
             SELECT event_id, tenant_id, 'device_alert', 'gone@example.test', 's', 'b', 'failed', 1, occurred_at, \
               '550 no such user', occurred_at FROM raw_events {which}"
        );
        sea_orm::ConnectionTrait::execute_unprepared(store.connection(), &sql).await.unwrap();
    }

    // Default basis: part of the 診療録, 5 years. Only the 6-year-old record goes, with the agent's records of
    // that time; the open alert stays.
    assert_eq!(app.store().retention_basis().await.unwrap(), RetentionBasis::MedicalRecord);
    let report = onshi::maintenance::run(&store, today, 3, false).await.unwrap();
    let mine = report.purges.iter().find(|p| p.tenant == app.tenant).unwrap();
    assert_eq!(mine.keep_from, RetentionBasis::MedicalRecord.keep_from(today));
    assert!(mine.visits >= 1 && mine.raw_events >= 1, "{mine:?}");
    assert_eq!((mine.device_uptime, mine.device_alerts), (1, 1), "{mine:?}");
    assert_eq!(mine.failed_mail, 1, "{mine:?}");
    assert_eq!(count(&store, "SELECT count(*) FROM mail_outbox").await, 1, "today's failed e-mail is kept");
    assert_eq!(count(&store, "SELECT count(*) FROM device_uptime").await, 0);
    assert_eq!(count(&store, "SELECT count(*) FROM device_alerts WHERE resolved_at IS NULL").await, 1);
    assert_eq!(count(&store, "SELECT count(*) FROM device_alerts").await, 1);
    assert_eq!(count(&store, &visits_before(RetentionBasis::MedicalRecord.keep_from(today))).await, 0);
    assert_eq!(count(&store, &total).await, all_before - i64::try_from(mine.visits).unwrap());
    assert!(count(&store, &visits_before(RetentionBasis::Billing.keep_from(today))).await >= 1, "4-year-old kept");

    // The tenant says visit logs are billing records only: 3 years. A dry run reports and changes nothing.
    let actor = test_audit(AuditAction::RetentionBasis, "tenant");
    app.store().set_retention_basis(RetentionBasis::Billing, &actor).await.unwrap();
    let dry = onshi::maintenance::run(&store, today, 3, true).await.unwrap();
    let dry = dry.purges.iter().find(|p| p.tenant == app.tenant).unwrap().clone();
    assert!(dry.dry_run && dry.visits >= 1, "{dry:?}");
    assert!(count(&store, &visits_before(RetentionBasis::Billing.keep_from(today))).await >= 1);
    let report = onshi::maintenance::run(&store, today, 3, false).await.unwrap();
    let mine = report.purges.iter().find(|p| p.tenant == app.tenant).unwrap();
    assert_eq!(mine.visits, dry.visits);
    assert_eq!(count(&store, &visits_before(RetentionBasis::Billing.keep_from(today))).await, 0);
    assert!(count(&store, &total).await >= 2, "the 2-year-old and today's visits stay");
    assert_eq!(count(&store, "SELECT count(*) FROM device_alerts").await, 1, "an open alert stays");

    // Each purge is in the tenant's audit chain with its counts, and the chain still verifies.
    let audit = app
        .store()
        .audit_entries(&AuditFilter { action_prefix: Some("retention.purge".into()), limit: 100, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(audit.len(), 2, "one entry per purge that removed something");
    assert!(audit.iter().all(|e| e.details.contains("\"visits\"")));
    assert!(store.verify_audit().await.unwrap().problems.is_empty());

    if app.mode == Mode::Full {
        use onshi_migrations::partitions;
        let list = partitions::list(store.connection()).await.unwrap();
        let names: BTreeSet<String> = list.iter().map(|(_, child)| child.clone()).collect();
        // Months ahead are ready, old empty months were dropped, a default partition remains.
        let ahead = partitions::add_months(partitions::months_from_now(0), 3);
        assert!(names.contains(&partitions::partition_name("visits", ahead)));
        assert!(names.contains(&partitions::partition_name("raw_events", ahead)));
        assert!(!names.contains(&partitions::partition_name("visits", partitions::FIRST_MONTH)));
        assert!(names.contains("visits_default"));

        // A row for a month without its partition lands in the default partition and moves when the month
        // is created.
        let old = months_ago(40);
        let month = partitions::month_of_date(jst::date_of(old));
        assert!(!names.contains(&partitions::partition_name("visits", month)), "emptied month was dropped");
        let mut factory = app.factory(0, 9);
        let event = std::iter::repeat_with(|| factory.reception(old))
            .find(|e| reception_count(std::slice::from_ref(e)) == 1)
            .unwrap();
        assert_eq!(app.post_events(0, &[event]).await.status(), 202);
        eventually(WAIT, "late visit stored", || async {
            count(&store, "SELECT count(*) FROM visits_default").await >= 1
        })
        .await;
        let n = count(&store, "SELECT count(*) FROM visits_default").await;
        let created = partitions::ensure(store.connection(), month, month).await.unwrap();
        assert_eq!(created.len(), 2, "{created:?}");
        assert_eq!(count(&store, "SELECT count(*) FROM visits_default").await, 0);
        assert_eq!(
            count(&store, &format!("SELECT count(*) FROM {}", partitions::partition_name("visits", month))).await,
            n
        );
    }
    store.connection().clone().close().await.ok();
});

/// The visits key as migration m20261207_000025 builds it on a database that already holds visits: partition
/// by partition, concurrently where a partition has rows, while receptions keep arriving. The finished key
/// covers every partition, refuses a duplicate visit, and building it again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full mode: needs PostgreSQL, RabbitMQ, Redis and S3 (scripts/test runs it)"]
async fn the_visits_key_is_built_partition_by_partition_while_receptions_arrive() {
    use onshi_migrations::{VISIT_DAY_KEY, VISIT_DAY_KEY_COLUMNS, partitions};
    let app = spawn_app_with(Mode::Full, |_| {}).await;
    let first = app.receptions(0, 20, 1);
    assert_eq!(app.post_events(0, &first).await.status(), 202);
    events_applied(&app, qualifications(&first)).await;

    // Back to before the key: the migration's index gone. This month's partition has its own index already,
    // valid but not attached, as a build interrupted after that step leaves it.
    let store = owner(&app).await;
    let db = store.connection();
    let month = partitions::partition_name("visits", partitions::months_from_now(0));
    db.execute_unprepared(&format!("DROP INDEX {VISIT_DAY_KEY}")).await.unwrap();
    db.execute_unprepared(&format!("CREATE UNIQUE INDEX {month}_clinic_day_key ON {month} ({VISIT_DAY_KEY_COLUMNS})"))
        .await
        .unwrap();

    let more = app.receptions(1, 20, 2);
    let (posted, built) = tokio::join!(
        app.post_events(1, &more),
        partitions::build_index(db, "visits", VISIT_DAY_KEY, VISIT_DAY_KEY_COLUMNS)
    );
    built.unwrap();
    assert_eq!(posted.status(), 202);
    events_applied(&app, qualifications(&first) + qualifications(&more)).await;

    let valid = format!("SELECT indisvalid::int4::int8 FROM pg_index WHERE indexrelid = '{VISIT_DAY_KEY}'::regclass");
    assert_eq!(count(&store, &valid).await, 1, "every partition is covered");
    let attached = format!("SELECT count(*) FROM pg_inherits WHERE inhparent = '{VISIT_DAY_KEY}'::regclass");
    let partitions_of_visits = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'visits'::regclass";
    assert_eq!(count(&store, &attached).await, count(&store, partitions_of_visits).await);
    let own = format!(
        "SELECT count(*) FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid \
         WHERE h.inhparent = '{VISIT_DAY_KEY}'::regclass AND c.relname = '{month}_clinic_day_key'"
    );
    assert_eq!(count(&store, &own).await, 1, "the index left by the interrupted build is the one attached");

    // A second visit with the same clinic, day and key is refused.
    let duplicate = db
        .execute_unprepared(
            "CREATE TEMP TABLE twin AS SELECT * FROM visits LIMIT 1; UPDATE twin SET id = gen_random_uuid(); \
             INSERT INTO visits SELECT * FROM twin",
        )
        .await;
    assert!(duplicate.is_err_and(|e| e.to_string().contains(VISIT_DAY_KEY.trim_start_matches("visits"))));

    partitions::build_index(db, "visits", VISIT_DAY_KEY, VISIT_DAY_KEY_COLUMNS).await.unwrap();
    assert_eq!(count(&store, &attached).await, count(&store, partitions_of_visits).await);
    store.connection().clone().close().await.ok();
    app.teardown().await;
}

/// A fresh, empty target for a restore: a new database (full) or data folder (embedded), and a new bucket.
struct Target {
    config: onshi_config::Config,
    database: Option<String>,
    _dir: tempfile::TempDir,
}

async fn fresh_target(app: &TestApp) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let mut config = app.config.clone();
    config.data_dir = dir.path().to_owned();
    let mut database = None;
    if app.mode == Mode::Full {
        let admin_url = std::env::var("ONSHI_TEST_DATABASE_URL").unwrap();
        let name = format!("onshi_restore_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&admin_url).await.unwrap();
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
        admin.close().await.ok();
        let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
        let owner_url = format!("{base}/{name}");
        config.database_url = Some(SecretString::from(app_role_url(&owner_url)));
        config.database_migration_url = Some(SecretString::from(owner_url));
        config.s3_bucket = format!("onshi-restore-{}", uuid::Uuid::new_v4().simple());
        database = Some(name);
    } else {
        config.database_url = None;
        config.database_migration_url = None;
    }
    Target { config, database, _dir: dir }
}

async fn drop_target(target: Target) {
    if let onshi_objects::ObjectStore::S3(s3) = onshi::startup::object_store(&target.config).await.unwrap() {
        s3.destroy_bucket().await.ok();
    }
    if let Some(name) = target.database {
        let admin = Database::connect(&std::env::var("ONSHI_TEST_DATABASE_URL").unwrap()).await.unwrap();
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok();
    }
}

both_modes!(a_backup_restores_into_a_fresh_database_and_store_with_equal_checksums, |app| {
    let events = app.receptions(1, 40, 21);
    assert_eq!(app.post_events(1, &events).await.status(), 202);
    events_applied(app, qualifications(&events)).await;
    let objects = app.adapters().objects.clone();
    eventually(WAIT, "raw batch archived", || async { !objects.list("raw/").await.unwrap().is_empty() }).await;
    let actor = test_audit(AuditAction::RetentionBasis, "tenant");
    app.store().set_retention_basis(RetentionBasis::Billing, &actor).await.unwrap();

    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("backup");
    let manifest = backup::backup(&app.config, &out).await.unwrap();
    assert!(manifest.tables["visits"].rows >= 1);
    assert_eq!(manifest.tables["raw_events"].rows, i64::try_from(qualifications(&events)).unwrap());
    assert!(manifest.tables["audit_log"].rows >= 1);
    assert!(!manifest.objects.is_empty());
    // A second backup into the same folder is refused rather than mixed.
    assert!(matches!(backup::backup(&app.config, &out).await, Err(BackupError::OutputNotEmpty { .. })));

    let target = fresh_target(app).await;
    let report = backup::restore(&target.config, &out).await.unwrap();
    assert!(report.verified(), "{:?}", report.mismatches);
    assert_eq!(report.tables, manifest.tables.len());
    assert_eq!(report.rows, manifest.tables.values().map(|t| t.rows).sum::<i64>());
    assert_eq!(report.objects, manifest.objects.len());

    // The restored copy is a working database: the audit chains verify and the tenant's data is there
    // for the application role.
    let restored = Store::connect(target.config.effective_migration_url().expose_secret(), 2).await.unwrap();
    assert!(restored.verify_audit().await.unwrap().problems.is_empty());
    restored.connection().clone().close().await.ok();
    let as_app = Store::connect(target.config.effective_database_url().expose_secret(), 2).await.unwrap();
    let tenant = as_app.tenant(TenantScope::operator(app.tenant));
    assert_eq!(tenant.retention_basis().await.unwrap(), RetentionBasis::Billing);
    assert!(!tenant.recent_visits(&app.clinics[1].clinic, 5).await.unwrap().is_empty());
    as_app.connection().clone().close().await.ok();

    // A second restore into the now full target is refused, and nothing in it changes.
    assert!(matches!(
        backup::restore(&target.config, &out).await,
        Err(BackupError::TargetNotEmpty { .. } | BackupError::ObjectsNotEmpty { .. })
    ));
    drop_target(target).await;

    // A damaged backup is caught before anything is written, whichever file is damaged, and the target
    // stays empty: the same target then takes a good backup.
    let target = fresh_target(app).await;
    let database_file = out.join(if app.mode == Mode::Full { "database.pgdump" } else { "database.sqlite3" });
    let good_database = std::fs::read(&database_file).unwrap();
    let mut damaged = good_database.clone();
    damaged[10] ^= 0xff;
    std::fs::write(&database_file, &damaged).unwrap();
    let err = backup::restore(&target.config, &out).await.expect_err("a damaged dump must fail the restore");
    assert!(matches!(err, BackupError::DatabaseCorrupt { .. }), "{err}");
    assert!(err.to_string().contains("database."), "names the file: {err}");
    std::fs::write(&database_file, &good_database).unwrap();

    let key = manifest.objects.keys().next().unwrap().clone();
    let object_file = out.join("objects").join(&key);
    let good_object = std::fs::read(&object_file).unwrap();
    std::fs::write(&object_file, b"bit rot").unwrap();
    let err = backup::restore(&target.config, &out).await.expect_err("corrupt object must fail the restore");
    assert!(matches!(&err, BackupError::ObjectCorrupt { key: k } if *k == key), "{err}");
    let target_objects = onshi::startup::object_store(&target.config).await.unwrap();
    assert!(target_objects.list("").await.unwrap().is_empty(), "no object written");
    std::fs::write(&object_file, &good_object).unwrap();

    let report = backup::restore(&target.config, &out).await.expect("the untouched target takes a good backup");
    assert!(report.verified());
    drop_target(target).await;
});

// A restore that fails while writing (here: the dump loads, but the manifest says other rows) removes what
// it wrote, so the target is as empty as before and a retry is possible.
both_modes!(a_restore_that_fails_while_writing_leaves_the_target_empty, |app| {
    let events = app.receptions(2, 10, 77);
    assert_eq!(app.post_events(2, &events).await.status(), 202);
    events_applied(app, qualifications(&events)).await;
    let objects = app.adapters().objects.clone();
    eventually(WAIT, "raw batch archived", || async { !objects.list("raw/").await.unwrap().is_empty() }).await;
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("backup");
    backup::backup(&app.config, &out).await.unwrap();
    // A manifest that disagrees with its (intact) files: every check before writing passes.
    let manifest_path = out.join(backup::MANIFEST);
    let good_manifest = std::fs::read(&manifest_path).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&good_manifest).unwrap();
    manifest["tables"]["visits"]["rows"] = serde_json::json!(999_999);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let target = fresh_target(app).await;
    let err = backup::restore(&target.config, &out).await.expect_err("a mismatch fails the restore");
    assert!(
        matches!(&err, BackupError::Mismatch { mismatches } if mismatches.iter().any(|m| m.starts_with("visits"))),
        "{err}"
    );
    let target_objects = onshi::startup::object_store(&target.config).await.unwrap();
    assert!(target_objects.list("").await.unwrap().is_empty(), "the objects written were removed");
    if app.mode == Mode::Full {
        let db = Database::connect(target.config.effective_migration_url().expose_secret()).await.unwrap();
        let tables = scalar(&db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").await;
        assert_eq!(tables, 0, "the tables created were dropped");
        db.close().await.ok();
    } else {
        assert!(!backup::sqlite_path(&target.config).exists(), "no database file left");
    }
    // And the same target takes the good backup.
    std::fs::write(&manifest_path, &good_manifest).unwrap();
    assert!(backup::restore(&target.config, &out).await.unwrap().verified());
    drop_target(target).await;
});

/// infra/rabbitmq/definitions.json, loaded into the real broker, declares the work queue exactly as the
/// application does: otherwise the application's own declare would fail at start-up with
/// PRECONDITION_FAILED. Imported under a vhost and user of the test's own, then removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full mode: needs PostgreSQL, RabbitMQ, Redis and S3 (scripts/test runs it)"]
async fn rabbitmq_definitions_match_what_the_application_declares() {
    use onshi_queue::{Headers, MessageConsumer, RabbitQueue};
    let amqp = std::env::var("ONSHI_TEST_AMQP_URL").expect("ONSHI_TEST_AMQP_URL (scripts/test sets it)");
    let rabbitmqctl = |args: &[&str]| std::process::Command::new("rabbitmqctl").args(args).output();
    assert!(rabbitmqctl(&["version"]).is_ok(), "rabbitmqctl is needed to import the definitions into the local broker");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/rabbitmq/definitions.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (vhost, user) = (format!("onshi-it-{suffix}"), format!("onshi-it-{suffix}"));
    let mut defs: serde_json::Value = serde_json::from_str(&text).unwrap();
    defs["users"][0]["name"] = user.clone().into();
    defs["vhosts"][0]["name"] = vhost.clone().into();
    defs["permissions"][0]["user"] = user.clone().into();
    defs["permissions"][0]["vhost"] = vhost.clone().into();
    for queue in defs["queues"].as_array_mut().unwrap() {
        queue["vhost"] = vhost.clone().into();
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), defs.to_string()).unwrap();
    // The broker node reads the file itself, as its own user.
    std::fs::set_permissions(file.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let imported = rabbitmqctl(&["import_definitions", file.path().to_str().unwrap()]).unwrap();
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));

    let host = amqp.split_once('@').map(|(_, h)| h).unwrap().split('/').next().unwrap();
    // The password of the example user in definitions.json (a placeholder, as in compose.yaml).
    let url = format!("amqp://{user}:change-me-mq@{host}/{vhost}");
    let result = async {
        // The shipped defaults (queue name, delivery limit), as a deployment without overrides uses them.
        let defaults = onshi_config::Config::embedded(".").unwrap();
        let queue = RabbitQueue::connect(&url, &defaults.queue_name, defaults.delivery_limit).await?;
        queue.publish(b"definitions", &Headers::default()).await?;
        let mut consumer = queue.consume(1).await?;
        let delivery = consumer.next().await.expect("a delivery")?;
        assert_eq!(delivery.payload, b"definitions");
        delivery.ack().await?;
        assert_eq!(queue.dead_letter_count().await?, 0);
        Ok::<_, onshi_queue::QueueError>(())
    }
    .await;
    rabbitmqctl(&["delete_vhost", &vhost]).ok();
    rabbitmqctl(&["delete_user", &user]).ok();
    result.expect("the application works against the imported topology as the definitions' user");
}

both_modes!(the_owner_says_how_long_visit_records_are_kept, |app| {
    let (mut owner, _) = app.signed_in(onshi_domain::Role::Owner).await;
    let page = owner.get("/onboarding").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("value=\"medical_record\" checked"), "5 years until the group answers");

    let saved = owner.post("/settings/retention", &[("basis", "billing")]).await;
    assert_eq!((saved.status, saved.location()), (303, "/onboarding"), "{}", saved.body);
    assert_eq!(app.store().retention_basis().await.unwrap(), RetentionBasis::Billing);
    assert!(owner.get("/onboarding").await.body.contains("value=\"billing\" checked"));
    let refused = owner.post("/settings/retention", &[("basis", "forever")]).await;
    assert!((400..500).contains(&refused.status), "{}", refused.status);
    assert_eq!(app.store().retention_basis().await.unwrap(), RetentionBasis::Billing);

    // A manager sees the setting but cannot change it.
    let (mut manager, _) = app.signed_in(onshi_domain::Role::Manager).await;
    let page = manager.get("/onboarding").await;
    assert!(page.body.contains("data-testid=\"retention-current\""), "read-only for managers");
    assert_eq!(manager.post("/settings/retention", &[("basis", "medical_record")]).await.status, 403);
    assert_eq!(app.store().retention_basis().await.unwrap(), RetentionBasis::Billing);

    let audit = app
        .store()
        .audit_entries(&AuditFilter { action_prefix: Some("retention.basis".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert!(audit[0].details.contains("\"to\":\"billing\""), "{}", audit[0].details);
});

/// `onshi probe` (the container healthcheck) exits 0 on a ready server and 1 on a 503 or no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_command_follows_readiness() {
    let app = spawn_app(Mode::Embedded).await;
    let probe = |url: String| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_onshi"))
            .args(["probe", &url])
            .env("ONSHI_LOG_LEVEL", "error")
            .env("ONSHI_DATA_DIR", app.config.data_dir.join("probe"))
            .output()
    };
    let ready = probe(format!("{}/readyz", app.base_url())).await.unwrap();
    assert!(ready.status.success(), "{}", String::from_utf8_lossy(&ready.stdout));
    assert!(String::from_utf8_lossy(&ready.stdout).contains("\"ready\""));
    let missing = probe(format!("{}/no-such-page", app.base_url())).await.unwrap();
    assert!(!missing.status.success());
    let closed = probe(format!("http://127.0.0.1:{}/readyz", free_port())).await.unwrap();
    assert!(!closed.status.success());
    app.teardown().await;
}

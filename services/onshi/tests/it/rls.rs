//! PostgreSQL row-level security as the backstop under the typed tenant scope: raw SQL as the
//! application role, with no application filter at all.

use onshi_domain::AuditAction;
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full mode: needs PostgreSQL, RabbitMQ, Redis and S3 (scripts/test runs it)"]
async fn the_application_role_sees_only_the_tenant_of_its_transaction() {
    let app = spawn_app(Mode::Full).await;
    let tenant_b = app.adapters().store.system().create_tenant("B").await.unwrap();
    let code = onshi_domain::MedicalInstitutionCode::parse("2711234562").unwrap();
    app.adapters().store.tenant(onshi_store::TenantScope::operator(tenant_b)).create_clinic(&code, "B").await.unwrap();
    let a = app.tenant.as_uuid();
    let b = tenant_b.as_uuid();
    let db = app.adapters().store.connection();

    // No tenant set: nothing.
    for table in onshi_migrations::TENANT_TABLES.iter().filter(|t| **t != "audit_log") {
        let n = scalar(db, &format!("SELECT count(*) FROM {table} WHERE tenant_id IS NOT NULL")).await;
        let open = ["user_logins", "enrollment_codes"].contains(table);
        assert!(n == 0 || open, "{table}: {n} rows visible without a tenant");
    }
    assert_eq!(scalar(db, "SELECT count(*) FROM tenants").await, 0);

    // Tenant A set for one transaction: only A's rows, and B's rows cannot be written.
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared(&format!("SELECT set_config('app.tenant_id', '{a}', true)")).await.unwrap();
    assert_eq!(scalar(&txn, "SELECT count(*) FROM clinics").await, 3);
    assert_eq!(scalar(&txn, &format!("SELECT count(*) FROM clinics WHERE tenant_id = '{b}'")).await, 0);
    assert_eq!(scalar(&txn, "SELECT count(*) FROM tenants").await, 1);
    let insert = txn
        .execute_unprepared(&format!(
            "INSERT INTO clinics (id, tenant_id, institution_code, name, facility_kind, created_at) \
             VALUES ('{}', '{b}', '1311234560', 'x', '医科', now())",
            uuid::Uuid::new_v4()
        ))
        .await;
    let err = insert.expect_err("writing another tenant's row must fail").to_string();
    assert!(err.contains("row-level security"), "{err}");
    txn.rollback().await.unwrap();

    // The setting ends with the transaction: the next user of the pooled connection starts empty.
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared(&format!("SELECT set_config('app.tenant_id', '{a}', true)")).await.unwrap();
    txn.commit().await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT coalesce(current_setting('app.tenant_id', true), '') AS t",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String>("", "t").unwrap(), "");

    // The catalog: every table with a tenant_id has RLS enabled and forced, and is in the list. Partitioned
    // tables count as one (their policy covers every query through them); their partitions are checked
    // below.
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT c.relname::text AS name, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND EXISTS \
             (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)",
        ))
        .await
        .unwrap();
    assert!(rows.len() >= onshi_migrations::TENANT_TABLES.len());
    for row in rows {
        let name: String = row.try_get("", "name").unwrap();
        assert!(
            row.try_get::<bool>("", "enabled").unwrap() && row.try_get::<bool>("", "forced").unwrap(),
            "{name}: RLS not enabled and forced"
        );
        assert!(onshi_migrations::TENANT_TABLES.contains(&name.as_str()), "{name} is missing from TENANT_TABLES");
    }
    // The monthly partitions exist, and the application cannot read one directly around the parent's
    // policy: it has no privilege on them.
    let partitions = scalar(
        db,
        "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname IN ('raw_events', 'visits')",
    )
    .await;
    assert!(partitions >= 2 * 12, "{partitions} partitions");
    let (y, m) = onshi_migrations::partitions::months_from_now(0);
    let direct = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT count(*) FROM {}", onshi_migrations::partitions::partition_name("visits", (y, m))),
        ))
        .await;
    let err = direct.expect_err("a partition must not be readable by the application role").to_string();
    assert!(err.contains("permission denied"), "{err}");

    // The application role: not superuser, not BYPASSRLS, owns nothing.
    let role = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT rolsuper, rolbypassrls, (SELECT count(*) FROM pg_tables WHERE tableowner = current_user) AS owned \
             FROM pg_roles WHERE rolname = current_user",
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(!role.try_get::<bool>("", "rolsuper").unwrap());
    assert!(!role.try_get::<bool>("", "rolbypassrls").unwrap());
    assert_eq!(role.try_get::<i64>("", "owned").unwrap(), 0);
    app.teardown().await;
}

crate::both_modes!(
    a_small_pool_under_alternating_tenants_never_mixes_them,
    |config| {
        config.database_max_connections = 2;
    },
    |app| {
        let store = &app.adapters().store;
        let tenant_b = store.system().create_tenant("B").await.unwrap();
        let code = onshi_domain::MedicalInstitutionCode::parse("2711234562").unwrap();
        store.tenant(onshi_store::TenantScope::operator(tenant_b)).create_clinic(&code, "B only clinic").await.unwrap();
        let mut tokens = Vec::new();
        for tenant in [app.tenant, tenant_b] {
            let user = app.user_in(tenant, onshi_domain::Role::Owner, &[]).await;
            let token = onshi_identity::OneTimeToken::generate(
                onshi_api::API_TOKEN_PREFIX,
                &tenant.as_uuid().simple().to_string(),
            );
            store
                .tenant(onshi_store::TenantScope::operator(tenant))
                .create_api_token(
                    user.id,
                    "t",
                    &[onshi_domain::ApiScope::ClinicsRead],
                    &token.hash,
                    None,
                    &test_audit(AuditAction::ApiTokenCreate, "-"),
                )
                .await
                .unwrap();
            tokens.push(token.secret);
        }
        let requests = (0..40).map(|i| {
            let token = tokens[i % 2].clone();
            let url = format!("{}/api/v1/clinics", app.base_url());
            let client = app.client.clone();
            async move {
                let body: serde_json::Value =
                    client.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
                let names: Vec<String> = body["clinics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["name"].as_str().unwrap().to_owned())
                    .collect();
                (i % 2, names)
            }
        });
        for (which, names) in futures_util::future::join_all(requests).await {
            if which == 0 {
                assert_eq!(names.len(), 3, "{names:?}");
                assert!(!names.iter().any(|n| n == "B only clinic"));
            } else {
                assert_eq!(names, vec!["B only clinic".to_owned()]);
            }
        }
    }
);

/// T03's static half: the tenant is only ever set per transaction.
#[test]
fn the_tenant_setting_is_never_session_level() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut stack = vec![root.join("services"), root.join("migrations")];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("rls.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let lower = text.to_lowercase();
                assert!(!lower.contains("set app."), "{}: session-level SET of app.*", path.display());
                for (i, _) in lower.match_indices("set_config('app.") {
                    let call = &lower[i..(i + 80).min(lower.len())];
                    assert!(call.contains("true)"), "{}: set_config without is_local=true: {call}", path.display());
                    seen += 1;
                }
            }
        }
    }
    assert!(seen >= 1, "the store sets the tenant somewhere");
}

/// Scopes come only from verified credentials: request handlers and the worker never use the operator
/// constructor (the store's credential look-ups and `QueuedBatch::scope` are their only sources), and the
/// old unchecked constructor is gone.
#[test]
fn handlers_and_workers_never_make_a_scope_from_an_id() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut stack = vec![root.join("services/api/src"), root.join("services/worker/src")];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let whole = std::fs::read_to_string(&path).unwrap();
                // A file's unit tests (its `#[cfg(test)]` module, at the end) are not a request path.
                let text = whole.split("#[cfg(test)]").next().unwrap_or_default();
                assert!(
                    !text.contains("TenantScope::operator"),
                    "{}: operator scope in a request path",
                    path.display()
                );
                assert!(!text.contains("TenantScope::verified"), "{}: unchecked scope", path.display());
                files += 1;
            }
        }
    }
    assert!(files > 10, "the api and worker sources were read");
}

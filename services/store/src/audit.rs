//! The audit log: who did what, to which record, when (UTC), with what result.
//!
//! Guarantees:
//! - **Append-only for the application.** PostgreSQL: the application role has no UPDATE, DELETE or
//!   TRUNCATE on `audit_log`. SQLite: triggers abort any UPDATE or DELETE.
//! - **Tamper-evident.** Each tenant has its own chain (`chain` = the tenant's UUID; events without a
//!   tenant, such as a failed sign-in for an unknown address, go to the `system` chain). Row n stores
//!   `hash = SHA-256(prev_hash ‖ canonical fields of row n)`, and `audit_heads` keeps each chain's last
//!   (seq, hash). `Store::verify_audit` recomputes every chain: an edited row breaks its hash, a deleted
//!   row breaks the sequence or the link, a truncated tail no longer matches the head.
//! - **Atomic with the change** for accounts, roles, second factors, API tokens and agent revocation:
//!   the entry is appended in the change's own transaction, so neither can be committed without the
//!   other. Reads and denials are recorded in a transaction of their own.
//!
//! - **Anchored.** A head kept in the same database can be rolled back together with the newest entries
//!   by whoever can write there. So the heads are also copied, signed, to the object store from time to
//!   time (`onshi::anchor`), where the database role cannot reach, and `verify` takes those anchors: a
//!   chain that no longer holds an anchored (seq, hash) has lost or rewritten entries.
//!
//! Appends to one chain serialise on its head row (SELECT … FOR UPDATE; SQLite's write lock). The
//! first append of a chain inserts the head; two racing first appends conflict on its key and the loser
//! retries as a transient error.

use onshi_domain::{AuditAction, UserId};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::entities::{audit_heads, audit_log};
use crate::{StoreError, TenantStore};

pub const SYSTEM_CHAIN: &str = "system";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditResult {
    Success,
    Failure,
    Denied,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Failure => "failure",
            AuditResult::Denied => "denied",
        }
    }
}

/// One thing to record. `target` names the record (`clinic:cln_…`, `user:usr_…`, `receptions:cln_…:2026-11`)
/// and never carries patient identifiers in clear. `details` is a small JSON object.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor_id: Option<UserId>,
    /// The actor as a person reads it: an e-mail address, `device:dev_…`, `api-token:tok_…`, `system`.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub result: AuditResult,
    pub ip: Option<String>,
    pub details: serde_json::Value,
}

impl AuditEntry {
    pub fn new(actor_id: Option<UserId>, actor: &str, action: AuditAction, target: &str, result: AuditResult) -> Self {
        Self {
            actor_id,
            actor: actor.to_owned(),
            action: action.code().to_owned(),
            target: target.to_owned(),
            result,
            ip: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    /// What the service does on its own (alerts, notices, purges, the demo's seeding): actor `system`,
    /// always a success.
    pub fn system(action: AuditAction, target: &str) -> Self {
        Self::new(None, "system", action, target, AuditResult::Success)
    }

    pub fn ip(mut self, ip: Option<String>) -> Self {
        self.ip = ip;
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// A stored entry as the viewer shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub result: String,
    pub ip: Option<String>,
    pub details: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action_prefix: Option<String>,
    pub actor_contains: Option<String>,
    pub result: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub limit: u64,
}

/// What `verify_audit` found.
#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    pub chains: usize,
    pub rows: u64,
    /// One line per problem: chain, sequence number and what is wrong. Empty when intact.
    pub problems: Vec<String>,
}

/// Timestamps are kept to the microsecond, the precision PostgreSQL stores, so the hash of a row read
/// back equals the hash computed at append.
fn truncate_micros(at: OffsetDateTime) -> OffsetDateTime {
    let micros = at.microsecond();
    at.replace_microsecond(micros).unwrap_or(at)
}

fn canonical(row: &audit_log::Model) -> String {
    let at = row.at.to_offset(time::UtcOffset::UTC);
    let micros = at.unix_timestamp_nanos() / 1_000;
    // Length-prefixed fields: no separator inside a value can make two rows hash alike.
    let fields = [
        row.chain.clone(),
        row.seq.to_string(),
        row.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
        micros.to_string(),
        row.actor_id.map(|t| t.to_string()).unwrap_or_default(),
        row.actor.clone(),
        row.action.clone(),
        row.target.clone(),
        row.result.clone(),
        row.ip.clone().unwrap_or_default(),
        row.details.clone(),
    ];
    fields.iter().map(|f| format!("{}:{}", f.len(), f)).collect::<Vec<_>>().join("|")
}

fn chain_hash(prev: &str, row: &audit_log::Model) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(canonical(row).as_bytes());
    hex::encode(h.finalize())
}

/// Appends `entry` to `chain` inside `txn` (whose tenant, if any, is already set).
pub(crate) async fn append(
    txn: &DatabaseTransaction,
    chain: &str,
    tenant: Option<Uuid>,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
    // The head row is what concurrent appends queue on. A chain's first two writers would both find none
    // to lock and both write seq 1, so the head is created first (at seq 0, the genesis hash) if missing,
    // and then locked like any other.
    audit_heads::Entity::insert(audit_heads::ActiveModel {
        chain: Set(chain.to_owned()),
        seq: Set(0),
        hash: Set(GENESIS.to_owned()),
    })
    .on_conflict(OnConflict::column(audit_heads::Column::Chain).do_nothing().to_owned())
    .exec_without_returning(txn)
    .await?;
    let head = audit_heads::Entity::find_by_id(chain.to_owned())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("audit chain {chain} has no head")))?;
    let (seq, prev) = (head.seq + 1, head.hash.clone());
    let mut row = audit_log::Model {
        id: Uuid::now_v7(),
        chain: chain.to_owned(),
        seq,
        tenant_id: tenant,
        at: truncate_micros(OffsetDateTime::now_utc()),
        actor_id: entry.actor_id.map(|u| u.as_uuid()),
        actor: entry.actor.chars().take(200).collect(),
        action: entry.action.clone(),
        target: entry.target.chars().take(200).collect(),
        result: entry.result.as_str().to_owned(),
        ip: entry.ip.clone(),
        details: entry.details.to_string(),
        prev_hash: prev.clone(),
        hash: String::new(),
    };
    row.hash = chain_hash(&prev, &row);
    let hash = row.hash.clone();
    audit_log::ActiveModel::from(row).insert(txn).await?;
    let mut active = head.into_active_model();
    active.seq = Set(seq);
    active.hash = Set(hash);
    active.update(txn).await?;
    Ok(())
}

impl TenantStore<'_> {
    /// Records one entry in this tenant's chain, in a transaction of its own (reads, denials).
    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let txn = self.write().await?;
        append(&txn, &self.tenant_uuid().to_string(), Some(self.tenant_uuid()), entry).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Entries of this tenant, newest first.
    pub async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let txn = self.read().await?;
        let mut q = audit_log::Entity::find().filter(audit_log::Column::TenantId.eq(self.tenant_uuid()));
        if let Some(p) = &filter.action_prefix {
            q = q.filter(audit_log::Column::Action.starts_with(p.as_str()));
        }
        if let Some(a) = &filter.actor_contains {
            q = q.filter(audit_log::Column::Actor.contains(a.as_str()));
        }
        if let Some(r) = &filter.result {
            q = q.filter(audit_log::Column::Result.eq(r.as_str()));
        }
        if let Some(from) = filter.from {
            q = q.filter(audit_log::Column::At.gte(from));
        }
        if let Some(to) = filter.to {
            q = q.filter(audit_log::Column::At.lt(to));
        }
        let rows = q.order_by_desc(audit_log::Column::Seq).limit(filter.limit.clamp(1, 10_000)).all(&txn).await?;
        txn.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditRecord {
                seq: r.seq,
                at: r.at,
                actor: r.actor,
                action: r.action,
                target: r.target,
                result: r.result,
                ip: r.ip,
                details: r.details,
            })
            .collect())
    }
}

/// Appends to the system chain (no tenant).
pub(crate) async fn append_system(db: &DatabaseConnection, entry: &AuditEntry) -> Result<(), StoreError> {
    let txn = crate::begin_write(db).await?;
    append(&txn, SYSTEM_CHAIN, None, entry).await?;
    txn.commit().await?;
    Ok(())
}

/// One chain's last entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

/// Every chain's head, by chain (`system` or a tenant id).
pub(crate) async fn heads(
    db: &DatabaseConnection,
) -> Result<std::collections::BTreeMap<String, ChainHead>, StoreError> {
    Ok(audit_heads::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|h| (h.chain, ChainHead { seq: h.seq, hash: h.hash }))
        .collect())
}

/// Recomputes every chain, and checks that each chain still holds the entry `anchors` recorded for it
/// (the newest anchored head per chain; see the module header). Runs as the application role too: each
/// chain is read under its own tenant.
pub(crate) async fn verify(
    db: &DatabaseConnection,
    anchors: &std::collections::BTreeMap<String, ChainHead>,
) -> Result<AuditReport, StoreError> {
    use sea_orm::TransactionTrait;
    let heads = audit_heads::Entity::find().order_by_asc(audit_heads::Column::Chain).all(db).await?;
    let heads_seen: std::collections::HashSet<String> = heads.iter().map(|h| h.chain.clone()).collect();
    let mut report = AuditReport { chains: heads.len(), ..Default::default() };
    for head in heads {
        let tenant = if head.chain == SYSTEM_CHAIN {
            None
        } else {
            match head.chain.parse::<Uuid>() {
                Ok(t) => Some(t),
                Err(_) => {
                    report.problems.push(format!("chain {}: not a tenant id", head.chain));
                    continue;
                }
            }
        };
        let mut expected_seq = 1i64;
        let mut prev = GENESIS.to_owned();
        let anchored = anchors.get(&head.chain);
        let mut anchored_found = false;
        loop {
            let txn = match tenant {
                Some(t) => crate::begin_tenant(db, t, false).await?,
                None => db.begin().await?,
            };
            let page = audit_log::Entity::find()
                .filter(audit_log::Column::Chain.eq(head.chain.as_str()))
                .filter(audit_log::Column::Seq.gte(expected_seq))
                .order_by_asc(audit_log::Column::Seq)
                .limit(1000)
                .all(&txn)
                .await?;
            txn.commit().await?;
            if page.is_empty() {
                break;
            }
            for row in page {
                report.rows += 1;
                if row.seq != expected_seq {
                    report.problems.push(format!(
                        "chain {}: entries {}..{} are missing",
                        head.chain,
                        expected_seq,
                        row.seq - 1
                    ));
                }
                if row.prev_hash != prev {
                    report
                        .problems
                        .push(format!("chain {} seq {}: does not link to the entry before", head.chain, row.seq));
                }
                if chain_hash(&row.prev_hash, &row) != row.hash {
                    report.problems.push(format!("chain {} seq {}: content was altered", head.chain, row.seq));
                }
                if tenant != row.tenant_id {
                    report
                        .problems
                        .push(format!("chain {} seq {}: tenant does not match the chain", head.chain, row.seq));
                }
                if let Some(a) = anchored.filter(|a| a.seq == row.seq) {
                    anchored_found = true;
                    if a.hash != row.hash {
                        report.problems.push(format!(
                            "chain {} seq {}: differs from its anchored copy (the chain was rewritten)",
                            head.chain, row.seq
                        ));
                    }
                }
                prev = row.hash.clone();
                expected_seq = row.seq + 1;
            }
        }
        if expected_seq - 1 != head.seq || prev != head.hash {
            report.problems.push(format!(
                "chain {}: ends at entry {} but its head says {} (entries removed or head altered)",
                head.chain,
                expected_seq - 1,
                head.seq
            ));
        }
        if let Some(a) = anchored.filter(|_| !anchored_found) {
            report.problems.push(format!(
                "chain {}: entry {} was anchored but is gone (entries removed, head rolled back to {})",
                head.chain, a.seq, head.seq
            ));
        }
    }
    for (chain, a) in anchors.iter().filter(|(chain, _)| !heads_seen.contains(chain.as_str())) {
        report.problems.push(format!("chain {chain}: anchored up to entry {} but no longer exists", a.seq));
    }
    Ok(report)
}

//! The outbox of system e-mail. The watches that tell people something (usage warnings, agent alerts,
//! radar notices, weekly summaries, a disabled webhook endpoint) write one row per recipient in the same
//! transaction that claims the news (`queue_composed_in`), instead of talking to the mail server themselves:
//! a claim that commits has its e-mail queued, one that does not leaves the news to be claimed again. A
//! worker claims due rows with a lease (`claim_due_mail`), sends them and records the
//! outcome (`finish_mail`): sent rows are deleted, failed ones wait for the next delay of the schedule, and
//! a row whose schedule is spent stays `failed` with its last error. So a mail server that is down for an
//! hour delays an alert instead of losing it, and several workers send each message once (at least once
//! if a worker dies between sending and recording: the lease runs out and the row is sent again).
//!
//! Messages carry no patient data (clinic names, agent names, rates, links); recipients are staff
//! addresses of the same tenant, and the rows are under the tenant's row-level security like the rest.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::entities::mail_outbox;
use crate::webhooks::TenantsDue;
use crate::{Store, StoreError, TenantScope, TenantStore};

const PENDING: &str = "pending";
const FAILED: &str = "failed";

/// A message a watch wants sent to one address. `topic` names the kind of news (`device_alert`,
/// `usage_alert`, ...) for logs and metrics, which never carry the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    pub topic: &'static str,
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl NewMail {
    /// The same message to each of `to`.
    pub fn to_each<'a>(
        topic: &'static str,
        to: impl IntoIterator<Item = &'a str>,
        subject: &str,
        body: &str,
    ) -> Vec<NewMail> {
        to.into_iter()
            .map(|address| NewMail {
                topic,
                to: address.to_owned(),
                subject: subject.to_owned(),
                body: body.to_owned(),
            })
            .collect()
    }
}

/// A message claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueMail {
    pub id: Uuid,
    /// This attempt's number, from 1.
    pub attempt: u32,
    pub topic: String,
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Why an attempt failed, and whether trying again cannot help.
#[derive(Debug, Clone, Copy)]
pub struct MailFailure<'a> {
    pub error: &'a str,
    pub permanent: bool,
}

/// What became of a message after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailFate {
    Sent,
    /// Failed; tried again at this time.
    Retry(OffsetDateTime),
    /// Failed for good (the schedule is spent, or the failure was permanent): kept as `failed`.
    Failed,
}

impl TenantStore<'_> {
    /// Queues the e-mail `compose` writes, in `txn`: the transaction that claims what it tells. `compose`
    /// is given the tenant's users as that transaction sees them, so nobody removed meanwhile is written to.
    pub(crate) async fn queue_composed_in(
        &self,
        txn: &DatabaseTransaction,
        compose: impl FnOnce(&[crate::User]) -> Vec<NewMail>,
    ) -> Result<(), StoreError> {
        let users = self.users_in(txn).await?;
        self.queue_mail_in(txn, &compose(&users)).await
    }

    /// Queues `mails` in `txn`, the transaction that claims what they tell.
    pub(crate) async fn queue_mail_in(&self, txn: &DatabaseTransaction, mails: &[NewMail]) -> Result<(), StoreError> {
        if mails.is_empty() {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        let rows = mails.iter().map(|m| mail_outbox::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(self.tenant_uuid()),
            topic: Set(m.topic.to_owned()),
            recipient: Set(m.to.clone()),
            subject: Set(m.subject.chars().take(300).collect()),
            body: Set(m.body.clone()),
            status: Set(PENDING.to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            last_error: Set(None),
            created_at: Set(now),
        });
        mail_outbox::Entity::insert_many(rows).exec_without_returning(txn).await?;
        Ok(())
    }

    /// Claims up to `limit` messages that are due, oldest first: each is ours for `lease` (another worker
    /// skips it meanwhile) and its attempt is counted. Messages to an address that is no longer an active
    /// owner's or manager's are deleted instead.
    pub async fn claim_due_mail(&self, lease: Duration, limit: u64) -> Result<Vec<DueMail>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let txn = self.write().await?;
        let rows = mail_outbox::Entity::find()
            .filter(mail_outbox::Column::TenantId.eq(self.tenant_uuid()))
            .filter(mail_outbox::Column::Status.eq(PENDING))
            .filter(mail_outbox::Column::NextAttemptAt.lte(now))
            .order_by_asc(mail_outbox::Column::NextAttemptAt)
            .limit(limit)
            .all(&txn)
            .await?;
        // Someone removed, disabled or no longer a manager since the message was queued is not written to.
        let users = if rows.is_empty() { Vec::new() } else { self.users_in(&txn).await? };
        let still_told = |address: &str| users.iter().any(|u| u.email == address && u.gets_alerts());
        let (rows, unwanted): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| still_told(&r.recipient));
        if !unwanted.is_empty() {
            mail_outbox::Entity::delete_many()
                .filter(mail_outbox::Column::TenantId.eq(self.tenant_uuid()))
                .filter(mail_outbox::Column::Id.is_in(unwanted.iter().map(|r| r.id)))
                .exec(&txn)
                .await?;
        }
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            // Claimed only if no other worker took it since it was read (same attempt count).
            let taken = mail_outbox::Entity::update_many()
                .col_expr(mail_outbox::Column::Attempts, sea_orm::sea_query::Expr::value(row.attempts + 1))
                .col_expr(mail_outbox::Column::NextAttemptAt, sea_orm::sea_query::Expr::value(now + lease))
                .filter(mail_outbox::Column::Id.eq(row.id))
                .filter(mail_outbox::Column::Attempts.eq(row.attempts))
                .filter(mail_outbox::Column::Status.eq(PENDING))
                .exec(&txn)
                .await?
                .rows_affected;
            if taken == 1 {
                claimed.push(DueMail {
                    id: row.id,
                    attempt: u32::try_from(row.attempts + 1).unwrap_or(u32::MAX),
                    topic: row.topic,
                    to: row.recipient,
                    subject: row.subject,
                    body: row.body,
                });
            }
        }
        txn.commit().await?;
        Ok(claimed)
    }

    /// Records an attempt's outcome (`Err` with why it failed): sent messages are deleted; a failed one is
    /// due again after `backoff[attempt - 1]` seconds, or kept as `failed` once the schedule is spent or
    /// at once when the failure is `permanent` (a 5xx answer, an address that cannot be used).
    /// `None` when the claim is no longer ours (the lease ran out and another worker has the message).
    pub async fn finish_mail(
        &self,
        mail: &DueMail,
        outcome: Result<(), MailFailure<'_>>,
        backoff: &[u64],
    ) -> Result<Option<MailFate>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let txn = self.write().await?;
        // Locked while we decide, so a worker that claims the row meanwhile (our lease ran out) waits and
        // finds it changed, and we never delete or fail a row that another worker is sending.
        let Some(row) = mail_outbox::Entity::find_by_id(mail.id)
            .filter(mail_outbox::Column::TenantId.eq(self.tenant_uuid()))
            .lock_exclusive()
            .one(&txn)
            .await?
        else {
            return Ok(None);
        };
        if row.status != PENDING || row.attempts != i32::try_from(mail.attempt).unwrap_or(-1) {
            return Ok(None);
        }
        let fate = match outcome {
            Ok(()) => {
                mail_outbox::Entity::delete_by_id(row.id).exec(&txn).await?;
                MailFate::Sent
            }
            Err(failure) => {
                let delay = backoff.get(mail.attempt.saturating_sub(1) as usize).filter(|_| !failure.permanent);
                let mut active: mail_outbox::ActiveModel = row.into();
                active.last_error = Set(Some(failure.error.chars().take(300).collect()));
                let fate = match delay {
                    Some(secs) => {
                        let at =
                            now.checked_add(Duration::seconds(i64::try_from(*secs).unwrap_or(86_400))).unwrap_or(now);
                        active.next_attempt_at = Set(at);
                        MailFate::Retry(at)
                    }
                    None => {
                        active.status = Set(FAILED.to_owned());
                        MailFate::Failed
                    }
                };
                active.update(&txn).await?;
                fate
            }
        };
        txn.commit().await?;
        Ok(Some(fate))
    }
}

impl Store {
    /// The tenants with a message due for sending.
    pub async fn mail_tenants_due(&self) -> Result<Vec<TenantScope>, StoreError> {
        self.tenant_list(
            "SELECT onshi_mail_tenants_due AS tenant_id FROM onshi_mail_tenants_due()",
            "SELECT DISTINCT tenant_id FROM mail_outbox WHERE status = 'pending' AND next_attempt_at <= ?",
            TenantsDue::Now,
        )
        .await
    }
}

//! The worker side of the system e-mail outbox (`onshi_store::mail_outbox`): every `mail_poll_ms` it claims
//! the messages that are due (in any tenant), hands each to the mail server and records the outcome, so a
//! mail server that refuses or does not answer delays an alert by the next delay of `mail_backoff_secs`
//! instead of losing it. Several workers may run this at once: a message is claimed with a lease.

use std::time::Duration;

use futures_util::StreamExt;
use onshi_api::Mailer;
use onshi_store::{DueMail, MailFailure, MailFate, Store, TenantScope};
use tokio_util::sync::CancellationToken;

/// How long a claimed message is ours before another worker may take it: well over what a claim's sends
/// can take (16 messages, 4 at a time, each at most `SEND_TIMEOUT`: 2 minutes).
const LEASE: time::Duration = time::Duration::seconds(300);
/// One message's whole SMTP conversation at most. lettre bounds only the connect; a server that accepts
/// and then goes quiet would otherwise hold the sender (and every tenant's mail behind it) for ever.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages claimed per tenant and poll, and sent at once.
const CLAIM: u64 = 16;
const IN_FLIGHT: usize = 4;

#[derive(Clone)]
pub struct MailSender {
    pub store: Store,
    pub mailer: Mailer,
    pub backoff: Vec<u64>,
    pub poll: Duration,
}

impl MailSender {
    pub async fn run(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.poll) => {}
            }
            self.send_due().await;
        }
    }

    /// One poll: every due message of every tenant, a tenant at a time.
    pub async fn send_due(&self) {
        let tenants = match self.store.mail_tenants_due().await {
            Ok(t) => t,
            Err(e) => return tracing::warn!(error = %onshi_telemetry::Chain(&e), "due e-mail not looked for"),
        };
        for scope in tenants {
            let due = match self.store.tenant(scope).claim_due_mail(LEASE, CLAIM).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %onshi_telemetry::Chain(&e), tenant = %scope.tenant_id(), "due e-mail not claimed");
                    continue;
                }
            };
            futures_util::stream::iter(due)
                .for_each_concurrent(IN_FLIGHT, |mail| async move {
                    let sent = tokio::time::timeout(
                        SEND_TIMEOUT,
                        self.mailer.send(&mail.to, &mail.subject, mail.body.clone()),
                    )
                    .await;
                    let failure = match &sent {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some((error_chain(e), e.is_permanent())),
                        Err(_) => {
                            Some((format!("no answer from the mail server within {} s", SEND_TIMEOUT.as_secs()), false))
                        }
                    };
                    self.record(scope, &mail, failure.as_ref().map(|(e, p)| MailFailure { error: e, permanent: *p }))
                        .await;
                })
                .await;
        }
    }

    async fn record(&self, scope: TenantScope, mail: &DueMail, failure: Option<MailFailure<'_>>) {
        let error = failure.map(|f| f.error);
        let fate = self.store.tenant(scope).finish_mail(mail, failure.map_or(Ok(()), Err), &self.backoff).await;
        let label = match &fate {
            Ok(Some(MailFate::Sent)) => "sent",
            Ok(Some(MailFate::Retry(at))) => {
                tracing::warn!(
                    topic = %mail.topic, attempt = mail.attempt, error = error.unwrap_or_default(), retry_at = %at,
                    "e-mail not taken by the mail server; will retry"
                );
                "retry"
            }
            Ok(Some(MailFate::Failed)) => {
                tracing::error!(
                    topic = %mail.topic, attempt = mail.attempt, error = error.unwrap_or_default(),
                    "e-mail not taken by the mail server (refused for good, or after every retry); kept as failed in mail_outbox"
                );
                "failed"
            }
            // Another worker has it now (our lease ran out): its outcome counts, not ours.
            Ok(None) => return,
            // The lease runs out and the message is sent again: at least once, never lost.
            Err(e) => {
                return tracing::warn!(error = %onshi_telemetry::Chain(&e), topic = %mail.topic, "e-mail outcome not recorded");
            }
        };
        onshi_telemetry::metrics().mail_attempts.with_label_values(&[label]).inc();
    }
}

/// The error with its sources (lettre's top-level error alone says little), with any e-mail address a
/// server echoed replaced: the text goes to logs and the outbox row.
fn error_chain(e: &dyn std::error::Error) -> String {
    let text = onshi_telemetry::Chain(e).to_string();
    text.split(' ').map(|word| if word.contains('@') { "<address>" } else { word }).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("SMTP delivery failed")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("451 4.3.0 <manager@example.jp>: try again later")]
    struct Inner;

    #[test]
    fn an_error_reads_with_its_cause_and_without_the_address() {
        assert_eq!(super::error_chain(&Outer(Inner)), "SMTP delivery failed: 451 4.3.0 <address> try again later");
    }
}

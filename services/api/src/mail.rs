//! Outgoing e-mail (verification, invitations, password reset) with lettre: SMTP in production, a
//! folder of `.eml` files when no SMTP server is configured (the demo). Messages never contain patient
//! data; they contain one-time links, which is why they go only to the account's own address.

use std::path::PathBuf;

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("e-mail address is not valid")]
    Address(#[from] lettre::address::AddressError),
    #[error("could not build the message")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP delivery failed")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("could not write the message file")]
    File(#[from] lettre::transport::file::Error),
    #[error("could not create the mail folder")]
    Folder(#[source] std::io::Error),
}

impl MailError {
    /// Whether trying again cannot help: an address or message that cannot be built, or a permanent
    /// (5xx) answer such as "user unknown". A refused or unanswered attempt (4xx, a connection that fails)
    /// and a folder that cannot be written may pass later.
    pub fn is_permanent(&self) -> bool {
        match self {
            MailError::Address(_) | MailError::Build(_) => true,
            MailError::Smtp(e) => e.is_permanent(),
            MailError::File(_) | MailError::Folder(_) => false,
        }
    }
}

#[derive(Clone)]
pub enum Mailer {
    Smtp { transport: AsyncSmtpTransport<Tokio1Executor>, from: Mailbox },
    Folder { dir: PathBuf, from: Mailbox },
}

impl Mailer {
    pub fn smtp(url: &str, from: &str) -> Result<Self, MailError> {
        Ok(Mailer::Smtp {
            transport: AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build(),
            from: from.parse()?,
        })
    }

    pub fn folder(dir: PathBuf, from: &str) -> Result<Self, MailError> {
        Ok(Mailer::Folder { dir, from: from.parse()? })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Mailer::Smtp { .. } => "smtp",
            Mailer::Folder { .. } => "folder",
        }
    }

    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        let from = match self {
            Mailer::Smtp { from, .. } | Mailer::Folder { from, .. } => from.clone(),
        };
        let message = Message::builder()
            .from(from)
            .to(to.parse()?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)?;
        match self {
            Mailer::Smtp { transport, .. } => {
                transport.send(message).await?;
            }
            Mailer::Folder { dir, .. } => {
                tokio::fs::create_dir_all(dir).await.map_err(MailError::Folder)?;
                AsyncFileTransport::<Tokio1Executor>::new(dir).send(message).await?;
            }
        }
        Ok(())
    }
}

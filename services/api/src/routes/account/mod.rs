//! Accounts from the outside in: sign-in (password, then TOTP), signup with e-mail verification, the
//! e-mailed links that set a password (reset and invitation, one flow), and the account page.
//!
//! Rules kept here:
//! - One message for every failed sign-in ("メールアドレスまたはパスワードが違います"), the same status,
//!   and an Argon2 verification even for unknown addresses: no account enumeration.
//! - Failures (password or code) count per account and per client address (`throttle`); over the limit
//!   every attempt gets 429 until the window passes, whether or not the password is right.
//! - No path yields a full session without the second factor: the password step gives a partial session
//!   that can only reach the TOTP pages, and password reset ends in the sign-in page, not a session.

pub(crate) mod email_link;
pub(crate) mod letters;
pub(crate) mod password_link;
pub(crate) mod profile;
pub(crate) mod recovery;
pub(crate) mod signin;
pub(crate) mod signup;
mod throttle;

use onshi_domain::AuditAction;
use onshi_identity::password;
use onshi_store::{AuditEntry, AuditResult, User};

use crate::web::guard::Page;

/// How long a signup's verification link stays usable.
pub(crate) const VERIFY_TTL: time::Duration = time::Duration::hours(24);
/// How long a password-reset link stays usable.
pub(crate) const RESET_TTL: time::Duration = time::Duration::minutes(30);
/// How long an invitation stays usable.
pub(crate) const INVITE_TTL: time::Duration = time::Duration::days(7);

/// A new password from a form with its confirmation: the PHC string, or the message to show.
fn new_password(page: &Page, password: &str, again: &str, email: &str) -> Result<String, String> {
    if password != again {
        return Err(page.lang.t("確認用パスワードが一致しません。", "The passwords do not match.").to_owned());
    }
    password::hash_password(password, email).map_err(|e| e.to_string())
}

/// The audit entry for something `user` did to their own account, before a full session exists.
fn own_entry(user: &User, action: AuditAction, result: AuditResult, ip: Option<String>) -> AuditEntry {
    AuditEntry::new(Some(user.id), &user.email, action, &format!("user:{}", user.id), result).ip(ip)
}

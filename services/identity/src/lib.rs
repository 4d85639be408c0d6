//! Credentials of the people who use Onshi Cloud. Pure functions, no I/O: the store keeps what these
//! produce, the API decides when to call them.
//!
//! - Passwords: Argon2id with the OWASP parameters (19 MiB, t=2, p=1), a length policy that accepts
//!   passphrases, and a check against commonly breached passwords.
//! - TOTP (RFC 6238, SHA-1, 6 digits, 30 s, ±1 step): the second factor every role needs. A code is
//!   accepted once: callers store the last accepted step and pass it back.
//! - Recovery codes: ten one-time codes for when the authenticator is lost, stored as SHA-256.
//! - One-time tokens for e-mail links and API tokens: 256 random bits, stored as SHA-256. The tenant id
//!   travels in front of the secret, so the tenant is known before any tenant row is read.

pub mod mac;
pub mod password;
pub mod recovery;
pub mod token;
pub mod totp;
pub mod webhook;

pub use password::{PasswordError, hash_password, verify_against_nothing, verify_password};
pub use token::{OneTimeToken, TokenError};
pub use totp::{TotpError, TotpSecret};

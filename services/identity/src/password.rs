//! Password hashing (Argon2id) and the password policy.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest password accepted. With a second factor required everywhere, NIST 800-63B and OWASP ask for
/// at least 8; we ask 10 because clinics share desks.
pub const MIN_LEN: usize = 10;
/// Longest accepted: long passphrases are welcome, unbounded input to a slow hash is not.
pub const MAX_LEN: usize = 256;

const COMMON: &str = include_str!("../data/common-passwords.txt");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("パスワードは{MIN_LEN}文字以上にしてください (at least {MIN_LEN} characters)")]
    TooShort,
    #[error("パスワードは{MAX_LEN}文字以内にしてください (at most {MAX_LEN} characters)")]
    TooLong,
    #[error("よく使われる・漏えいしたパスワードは使えません (this password is commonly used or breached)")]
    Common,
    #[error("パスワードにメールアドレスを含めないでください (do not use your e-mail address)")]
    ContainsEmail,
    #[error("password hashing failed")]
    Hash,
}

fn argon2() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: m=19456 KiB, t=2, p=1.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or(Params::DEFAULT);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks the policy: length in characters (not bytes), not a common password, not the e-mail address.
pub fn check_policy(password: &str, email: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if chars > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    let lower = password.to_lowercase();
    if COMMON.lines().map(str::trim).any(|c| !c.is_empty() && !c.starts_with('#') && c == lower) {
        return Err(PasswordError::Common);
    }
    let local = email.split('@').next().unwrap_or("").to_lowercase();
    if local.len() >= 4 && lower.contains(&local) {
        return Err(PasswordError::ContainsEmail);
    }
    Ok(())
}

/// Checks the policy and returns the PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash_password(password: &str, email: &str) -> Result<String, PasswordError> {
    check_policy(password, email)?;
    argon2().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|_| PasswordError::Hash)
}

/// Verifies with the parameters stored in the hash (so raising the cost later keeps old hashes valid).
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    argon2().verify_password(password.as_bytes(), &parsed).is_ok()
}

/// Spends the time of one verification, for sign-in attempts on unknown addresses: the response time
/// must not tell which addresses exist.
pub fn verify_against_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DUMMY.get_or_init(|| {
        argon2().hash_password(b"onshi-dummy-password-for-timing").map(|h| h.to_string()).unwrap_or_default()
    });
    let _ = verify_password(password, phc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters() {
        let phc = hash_password("correct horse battery staple", "a@example.jp").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery staple", &phc));
        assert!(!verify_password("correct horse battery stapl", &phc));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn policy_accepts_long_passphrases_and_refuses_weak_ones() {
        let long: String = "長いパスフレーズ".repeat(8);
        assert!(long.chars().count() >= 64);
        assert!(hash_password(&long, "a@example.jp").is_ok());
        assert_eq!(check_policy("short", "a@example.jp"), Err(PasswordError::TooShort));
        assert_eq!(check_policy(&"x".repeat(257), "a@example.jp"), Err(PasswordError::TooLong));
        assert_eq!(check_policy("Password123!", "a@example.jp"), Err(PasswordError::Common));
        assert_eq!(check_policy("tanaka-clinic-2026", "tanaka@example.jp"), Err(PasswordError::ContainsEmail));
    }
}

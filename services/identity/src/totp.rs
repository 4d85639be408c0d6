//! TOTP second factor (RFC 6238) via totp-rs.

use totp_rs::{Algorithm, Builder, Secret, Totp};

const ISSUER: &str = "Onshi Cloud";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    #[error("the stored TOTP secret is not valid")]
    BadSecret,
}

/// A TOTP secret in base32, as an authenticator app shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(String);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    /// 160 random bits (RFC 4226's recommended length).
    pub fn generate() -> Self {
        Self(Secret::generate().to_base32())
    }

    pub fn from_base32(s: &str) -> Result<Self, TotpError> {
        let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_uppercase();
        Secret::try_from_base32(&clean).map_err(|_| TotpError::BadSecret)?;
        Ok(Self(clean))
    }

    pub fn base32(&self) -> &str {
        &self.0
    }

    fn totp(&self, account: &str) -> Result<Totp, TotpError> {
        let secret = Secret::try_from_base32(&self.0).map_err(|_| TotpError::BadSecret)?;
        // ':' is not allowed in an otpauth account name.
        let account: String = account.replace(':', "_");
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(30)
            .with_secret(secret)
            .with_issuer(Some(ISSUER))
            .with_account_name(account)
            .build()
            .map_err(|_| TotpError::BadSecret)
    }

    /// The `otpauth://` URI for authenticator apps.
    pub fn uri(&self, account: &str) -> Result<String, TotpError> {
        self.totp(account)?.to_url().map_err(|_| TotpError::BadSecret)
    }

    /// The code for `unix_time`.
    pub fn code_at(&self, unix_time: u64) -> Result<String, TotpError> {
        Ok(self.totp("x")?.generate(unix_time).to_string())
    }

    /// Checks `code` at `unix_time` (±1 step). Returns the matched step if it is later than
    /// `last_step`, the last one accepted for this user: a code is never accepted twice.
    pub fn verify(&self, code: &str, unix_time: u64, last_step: u64) -> Result<Option<u64>, TotpError> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(None);
        }
        Ok(self.totp("x")?.check(&code, unix_time).filter(|step| *step > last_step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_verify_once_within_the_window() {
        let secret = TotpSecret::generate();
        let now = 1_764_000_000;
        let code = secret.code_at(now).unwrap();
        let step = secret.verify(&code, now, 0).unwrap().expect("valid code");
        assert_eq!(secret.verify(&code, now, step).unwrap(), None, "replayed code");
        assert!(secret.verify(&code, now + 30, 0).unwrap().is_some(), "one step of skew");
        assert_eq!(secret.verify(&code, now + 120, 0).unwrap(), None, "too late");
        assert_eq!(secret.verify("12345", now, 0).unwrap(), None);
        assert_eq!(secret.verify("abcdef", now, 0).unwrap(), None);
    }

    #[test]
    fn uri_names_issuer_and_account() {
        let secret = TotpSecret::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap();
        let uri = secret.uri("owner@example.jp").unwrap();
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(uri.contains("secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"));
        assert!(uri.contains("issuer=Onshi"));
        assert!(TotpSecret::from_base32("not base32 !").is_err());
    }
}

//! One-time tokens: e-mail links (verify, reset, invite), session ids and API tokens.
//!
//! Shape: `<prefix><tenant uuid, 32 hex>.<43 base64url chars>`. The secret part has 256 bits, so a fast
//! hash (SHA-256) is the right way to keep it; only the hash is stored.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
}

#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeToken {
    /// What the person gets (in a link or shown once).
    pub secret: String,
    /// What is stored.
    pub hash: String,
}

impl std::fmt::Debug for OneTimeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneTimeToken").field("hash", &self.hash).finish_non_exhaustive()
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn random_b64url(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    let mut out = String::with_capacity(bytes * 4 / 3 + 2);
    for chunk in raw.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

impl OneTimeToken {
    /// A new token for `tenant` (its UUID as 32 hex digits), with an optional kind prefix such as
    /// `onshi_pat_`.
    pub fn generate(prefix: &str, tenant_hex: &str) -> Self {
        let secret = format!("{prefix}{tenant_hex}.{}", random_b64url(32));
        Self { hash: sha256_hex(&secret), secret }
    }

    /// A random value with no tenant in it (a session before sign-in, a CSRF binding).
    pub fn anonymous() -> Self {
        let secret = random_b64url(32);
        Self { hash: sha256_hex(&secret), secret }
    }

    /// The tenant part and the hash to look up, after checking the shape.
    pub fn parse<'a>(prefix: &str, presented: &'a str) -> Result<(&'a str, String), TokenError> {
        let rest = presented.strip_prefix(prefix).ok_or(TokenError::Malformed)?;
        let (tenant, secret) = rest.split_once('.').ok_or(TokenError::Malformed)?;
        let tenant_ok = tenant.len() == 32 && tenant.bytes().all(|b| b.is_ascii_hexdigit());
        let secret_ok = secret.len() == 43 && secret.bytes().all(|b| B64.contains(&b));
        if !tenant_ok || !secret_ok {
            return Err(TokenError::Malformed);
        }
        Ok((tenant, sha256_hex(presented)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_differ() {
        let tenant = "0123456789abcdef0123456789abcdef";
        let a = OneTimeToken::generate("onshi_pat_", tenant);
        let b = OneTimeToken::generate("onshi_pat_", tenant);
        assert_ne!(a.secret, b.secret);
        let (t, hash) = OneTimeToken::parse("onshi_pat_", &a.secret).unwrap();
        assert_eq!((t, hash), (tenant, a.hash.clone()));
        assert!(!format!("{a:?}").contains(&a.secret));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let tenant = "0123456789abcdef0123456789abcdef";
        let good = OneTimeToken::generate("", tenant).secret;
        for bad in ["", "x.y", &good[1..], &format!("{good}A"), &good.replace('.', "-")] {
            assert!(OneTimeToken::parse("", bad).is_err(), "{bad}");
        }
        assert!(OneTimeToken::parse("onshi_pat_", &good).is_err());
    }
}

//! The clinic's own patient number (カルテ番号) sealed at the clinic so that only the group's billing
//! pages can read it.
//!
//! A レセ電 file carries each receipt's カルテ番号: the number a clerk finds the patient by in the レセコン.
//! The agent seals it with a key derived from the group's pseudonymisation key (which the agent received
//! at enrollment and the cloud holds per tenant), so it travels and is stored only as ciphertext; the
//! billing review and its exports open it for billing staff, nothing else does.
//!
//! The construction is XChaCha20-Poly1305 with a synthetic nonce (HMAC-SHA256 of the plaintext under a
//! second derived key, as in SIV modes): sealing the same number twice gives the same text, so a
//! re-parsed file yields the same content and stays idempotent. What that reveals (two receipts carry the
//! same number) the pseudonym reveals anyway.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Longest chart number accepted (the 記録条件仕様 allows 20 bytes; some レセコン pad).
pub const MAX_CHART_NUMBER_CHARS: usize = 40;
const PREFIX: &str = "v1.";

fn derive(key: &[u8], purpose: &[u8]) -> Option<[u8; 32]> {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(b"onshi chart number"), key);
    let mut out = [0u8; 32];
    hk.expand(purpose, &mut out).ok()?;
    Some(out)
}

/// Seals a chart number (trimmed, NFKC-normalised); `None` for an empty one.
pub fn seal_chart_number(pseudonym_key: &[u8], chart_number: &str) -> Option<String> {
    use unicode_normalization::UnicodeNormalization;
    let plain: String = chart_number.nfkc().collect::<String>().trim().to_owned();
    if plain.is_empty() || plain.chars().count() > MAX_CHART_NUMBER_CHARS {
        return None;
    }
    let enc_key = derive(pseudonym_key, b"encrypt v1")?;
    let nonce_key = derive(pseudonym_key, b"nonce v1")?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&nonce_key).ok()?;
    mac.update(plain.as_bytes());
    let tag = mac.finalize().into_bytes();
    let nonce = XNonce::from_slice(&tag[..24]);
    let cipher = XChaCha20Poly1305::new_from_slice(&enc_key).ok()?;
    let sealed = cipher.encrypt(nonce, plain.as_bytes()).ok()?;
    Some(format!("{PREFIX}{}{}", hex::encode(&tag[..24]), hex::encode(sealed)))
}

/// Opens a sealed chart number; `None` when it was sealed under another key or is damaged.
pub fn open_chart_number(pseudonym_key: &[u8], sealed: &str) -> Option<String> {
    let body = hex::decode(sealed.strip_prefix(PREFIX)?).ok()?;
    if body.len() < 24 + 16 {
        return None;
    }
    let (nonce, ciphertext) = body.split_at(24);
    let enc_key = derive(pseudonym_key, b"encrypt v1")?;
    let cipher = XChaCha20Poly1305::new_from_slice(&enc_key).ok()?;
    let plain = cipher.decrypt(XNonce::from_slice(nonce), ciphertext).ok()?;
    String::from_utf8(plain).ok()
}

/// Whether `text` has the shape of a sealed chart number (checked on ingest; opening needs the key).
pub fn is_sealed_shape(text: &str) -> bool {
    text.strip_prefix(PREFIX).is_some_and(|h| {
        h.len() >= 2 * (24 + 16 + 1)
            && h.len() <= 2 * (24 + 16 + 4 * MAX_CHART_NUMBER_CHARS)
            && h.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_number_opens_with_its_key_only_and_seals_the_same_way_twice() {
        let sealed = seal_chart_number(b"group key", "００１２３").unwrap();
        assert!(is_sealed_shape(&sealed));
        assert!(!sealed.contains("00123"));
        assert_eq!(open_chart_number(b"group key", &sealed).as_deref(), Some("00123"));
        assert_eq!(open_chart_number(b"other key", &sealed), None);
        assert_eq!(seal_chart_number(b"group key", " 00123 ").as_deref(), Some(sealed.as_str()));
        assert_ne!(seal_chart_number(b"group key", "00124"), Some(sealed.clone()));
        let mut damaged = sealed.clone();
        damaged.pop();
        damaged.push('0');
        assert_eq!(open_chart_number(b"group key", &damaged), None);
        assert_eq!(seal_chart_number(b"group key", "  "), None);
    }
}

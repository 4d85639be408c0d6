//! `Idempotency-Key` for POSTs that create something (today: agent enrollment, whose one-time code cannot
//! be redeemed twice, so a client that lost the answer could not otherwise retry).
//!
//! The first successful answer is kept in the shared cache for a day, **encrypted with a key derived from
//! the client's Idempotency-Key and the request body**: the cache alone (a Redis dump) cannot read it,
//! which matters because the answer carries the device secret. A retry with the same key and body gets
//! the same answer (`Idempotent-Replayed: true`); the same key with another body cannot decrypt it and is
//! refused (422 `idempotency_key_reused`). Entries are found by a hash of the key, never the key itself.

use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use onshi_cache::CacheBackend;
use onshi_domain::FieldError;
use sha2::{Digest, Sha256};

use crate::{ApiError, AppState};

/// How long an answer can be replayed.
const KEEP: Duration = Duration::from_secs(24 * 3600);
pub const HEADER: &str = "Idempotency-Key";

/// A request's idempotency key, checked, with what it derives.
pub struct IdempotencyKey {
    /// Where the answer is kept: a hash of the route and the key.
    slot: String,
    /// Encrypts the answer: a hash of the key and the body.
    cipher_key: [u8; 32],
}

impl IdempotencyKey {
    /// The header's key for `route`, if the request has one; 400 naming the header if it is malformed.
    pub fn from_request(req: &actix_web::HttpRequest, route: &str, body: &[u8]) -> Result<Option<Self>, ApiError> {
        let Some(value) = req.headers().get(HEADER) else { return Ok(None) };
        let key = value
            .to_str()
            .ok()
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::InvalidRequest(FieldError::new(HEADER, "1 to 255 visible ASCII characters (a UUID)"))
            })?;
        let slot = format!("idem:{route}:{}", hex::encode(Sha256::digest(format!("{route}\n{key}"))));
        let mut hasher = Sha256::new();
        hasher.update(b"onshi-idempotency\n");
        hasher.update(key.as_bytes());
        hasher.update(b"\n");
        hasher.update(Sha256::digest(body));
        Ok(Some(Self { slot, cipher_key: hasher.finalize().into() }))
    }

    /// The answer kept for this key: `Ok(Some(body))` to replay, `Ok(None)` when there is none, 422 when the
    /// key was used with another body. A cache that cannot answer is treated as "none" (the request then
    /// runs; for enrollment a lost code is refused, never redeemed twice).
    pub async fn replay(&self, state: &AppState) -> Result<Option<Vec<u8>>, ApiError> {
        let Ok(Some(stored)) = state.cache.get(&self.slot).await else { return Ok(None) };
        if stored.len() < 24 {
            return Ok(None);
        }
        let (nonce, sealed) = stored.split_at(24);
        XChaCha20Poly1305::new((&self.cipher_key).into())
            .decrypt(XNonce::from_slice(nonce), sealed)
            .map(Some)
            .map_err(|_| ApiError::IdempotencyKeyReused)
    }

    /// Keeps a successful answer for replays; a failure to keep it is logged, not the request's failure.
    pub async fn keep(&self, state: &AppState, body: &[u8]) {
        let nonce: [u8; 24] = rand::random();
        let Ok(sealed) = XChaCha20Poly1305::new((&self.cipher_key).into()).encrypt(XNonce::from_slice(&nonce), body)
        else {
            return;
        };
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        if let Err(e) = state.cache.set(&self.slot, &stored, KEEP).await {
            tracing::warn!(error = %onshi_telemetry::Chain(&e), "idempotent answer not kept");
        }
    }
}

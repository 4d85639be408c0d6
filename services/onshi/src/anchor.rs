//! Audit anchors: every audit chain's head, copied from time to time to the object store, signed.
//!
//! The audit log and its heads live in the database, so someone able to write there could delete the
//! newest entries and roll the head back with them, and the chain would still verify. An anchor is a
//! JSON object `audit-anchors/<UTC time>-<id>.json` holding each chain's (seq, hash) at that moment and an
//! HMAC-SHA256 over it with a key derived from `jwt_secret` (so rewriting an anchor needs the secret as
//! well as the bucket). The database role cannot touch the object store; in production the bucket should
//! also have S3 Object Lock (compliance mode) or versioning, so the application's own S3 credentials
//! cannot overwrite anchors either (docs/security.md).
//!
//! Anchors are written by every process that runs a worker, every `audit_anchor_secs` and only when a
//! head moved, and by `onshi maintain` and `onshi audit anchor`. `onshi audit verify` reads them all,
//! rejects any with a bad signature (named as a problem), and checks each chain against the newest head
//! anchored for it: because the chain is hash-linked, that one entry vouches for everything before it.

use std::collections::BTreeMap;
use std::time::Duration;

use onshi_identity::mac;
use onshi_objects::{ObjectBackend, ObjectStore};
use onshi_store::{ChainHead, Store};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

const PREFIX: &str = "audit-anchors/";

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("database")]
    Store(#[from] onshi_store::StoreError),
    #[error("object store")]
    Objects(#[from] onshi_objects::ObjectError),
    #[error("anchor could not be encoded")]
    Encode(#[from] serde_json::Error),
}

/// The signing key, derived from the deployment's secret; `None` without one (anchors are then
/// unsigned, and verify says so).
#[derive(Clone)]
pub struct AnchorKey(Option<Vec<u8>>);

impl AnchorKey {
    pub fn from_secret(secret: Option<&[u8]>) -> Self {
        AnchorKey(secret.map(|s| mac::derive_key(s, b"onshi audit anchor key v1")))
    }

    fn sign(&self, body: &[u8]) -> Option<String> {
        Some(hex::encode(mac::hmac_sha256(self.0.as_ref()?, &[body])))
    }

    fn verify(&self, body: &[u8], signature: Option<&str>) -> Signature {
        match (&self.0, signature) {
            (None, _) => Signature::NoKey,
            (Some(_), None) => Signature::Missing,
            (Some(key), Some(sig)) => match hex::decode(sig) {
                Ok(tag) if mac::hmac_matches(key, &[body], &tag) => Signature::Good,
                _ => Signature::Bad,
            },
        }
    }
}

enum Signature {
    Good,
    Bad,
    Missing,
    NoKey,
}

/// What is signed: the heads at a moment.
#[derive(Debug, Serialize, Deserialize)]
struct Body {
    at: String,
    heads: BTreeMap<String, ChainHead>,
}

/// An anchor object: the body (as the exact JSON text that was signed) and its signature.
#[derive(Debug, Serialize, Deserialize)]
struct Anchor {
    format: u32,
    body: String,
    signature: Option<String>,
}

/// Writes an anchor of the current heads unless they equal `last`; returns the heads written (or `last`).
pub async fn write(
    store: &Store,
    objects: &ObjectStore,
    key: &AnchorKey,
    last: Option<&BTreeMap<String, ChainHead>>,
) -> Result<Option<BTreeMap<String, ChainHead>>, AnchorError> {
    let heads = store.audit_heads().await?;
    if heads.is_empty() || last == Some(&heads) {
        return Ok(None);
    }
    let now = OffsetDateTime::now_utc();
    let body = serde_json::to_string(&Body { at: now.to_string(), heads: heads.clone() })?;
    let anchor = Anchor { format: 1, signature: key.sign(body.as_bytes()), body };
    let name = format!(
        "{PREFIX}{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}.json",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        uuid::Uuid::new_v4().simple()
    );
    objects.put(&name, serde_json::to_vec(&anchor)?, "application/json").await?;
    Ok(Some(heads))
}

/// The newest anchored head of every chain, with problems found in the anchors themselves.
pub struct Anchored {
    pub heads: BTreeMap<String, ChainHead>,
    pub anchors: usize,
    pub problems: Vec<String>,
    pub unsigned: bool,
}

pub async fn read(objects: &ObjectStore, key: &AnchorKey) -> Result<Anchored, AnchorError> {
    let mut out = Anchored { heads: BTreeMap::new(), anchors: 0, problems: Vec::new(), unsigned: false };
    for name in objects.list(PREFIX).await? {
        let Some(bytes) = objects.get(&name).await? else { continue };
        let Ok(anchor) = serde_json::from_slice::<Anchor>(&bytes) else {
            out.problems.push(format!("anchor {name}: not readable"));
            continue;
        };
        match key.verify(anchor.body.as_bytes(), anchor.signature.as_deref()) {
            Signature::Good => {}
            Signature::NoKey => out.unsigned = true,
            Signature::Bad | Signature::Missing => {
                out.problems.push(format!("anchor {name}: signature does not match (anchor altered or forged)"));
                continue;
            }
        }
        let Ok(body) = serde_json::from_str::<Body>(&anchor.body) else {
            out.problems.push(format!("anchor {name}: not readable"));
            continue;
        };
        out.anchors += 1;
        for (chain, head) in body.heads {
            if out.heads.get(&chain).is_none_or(|h| h.seq < head.seq) {
                out.heads.insert(chain, head);
            }
        }
    }
    Ok(out)
}

/// Writes anchors every `every` until `stop`, each only when a head moved. Failures are logged and
/// retried at the next tick: anchoring must never hold up anything else.
pub async fn keep_anchoring(
    store: Store,
    objects: ObjectStore,
    key: AnchorKey,
    every: Duration,
    stop: CancellationToken,
) {
    let mut last = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match write(&store, &objects, &key, last.as_ref()).await {
            Ok(Some(heads)) => last = Some(heads),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %onshi_telemetry::Chain(&e), "audit anchor not written; will try again"),
        }
    }
}

//! The object store: exports, archived raw batches, backups. S3 (any S3-compatible endpoint, path-style
//! by default) in full mode; a local folder in embedded mode.
//!
//! Keys are `/`-separated and limited to `[A-Za-z0-9._-]` segments: no `..`, no leading `/`, so a key can
//! never escape the local folder, and no personal data can hide in one.

mod local;
mod s3;

use std::future::Future;

pub use local::LocalStore;
pub use s3::{S3Settings, S3Store};

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("invalid object key: {0}")]
    InvalidKey(String),
    #[error("local object store I/O failed")]
    Io(#[from] std::io::Error),
    #[error("S3 request failed: {0}")]
    S3(String),
}

/// Checks a key against the documented shape.
pub fn validate_key(key: &str) -> Result<(), ObjectError> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok { Ok(()) } else { Err(ObjectError::InvalidKey(key.chars().take(80).collect())) }
}

pub trait ObjectBackend {
    /// Writes the whole object; readers see the old object or the new one, never a part.
    fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), ObjectError>> + Send;
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, ObjectError>> + Send;
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), ObjectError>> + Send;
    /// Keys under `prefix` (which ends in `/` or is empty), sorted.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, ObjectError>> + Send;
}

#[derive(Clone)]
pub enum ObjectStore {
    S3(S3Store),
    Local(LocalStore),
}

impl ObjectStore {
    pub fn kind(&self) -> &'static str {
        match self {
            ObjectStore::S3(_) => "s3",
            ObjectStore::Local(_) => "local",
        }
    }
}

impl ObjectBackend for ObjectStore {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), ObjectError> {
        validate_key(key)?;
        match self {
            ObjectStore::S3(s) => s.put(key, bytes, content_type).await,
            ObjectStore::Local(l) => l.put(key, bytes, content_type).await,
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectError> {
        validate_key(key)?;
        match self {
            ObjectStore::S3(s) => s.get(key).await,
            ObjectStore::Local(l) => l.get(key).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        validate_key(key)?;
        match self {
            ObjectStore::S3(s) => s.delete(key).await,
            ObjectStore::Local(l) => l.delete(key).await,
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        if !prefix.is_empty() {
            validate_key(prefix.trim_end_matches('/'))?;
        }
        match self {
            ObjectStore::S3(s) => s.list(prefix).await,
            ObjectStore::Local(l) => l.list(prefix).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_or_carry_odd_characters() {
        assert!(validate_key("raw/tnt_1/2026-11-25/batch.json").is_ok());
        for bad in ["", "/abs", "a/../b", "a//b", "a/./b", "名前.csv", "a b", "a/b/"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }
}

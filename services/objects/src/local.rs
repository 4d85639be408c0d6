//! A folder as an object store. Writes go to a temporary file in the same folder, are fsynced, then
//! renamed over the target, so a crash leaves the old object or the new one.

use std::path::{Path, PathBuf};

use crate::{ObjectBackend, ObjectError};

#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, ObjectError> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> PathBuf {
        // validate_key has ruled out `..` and absolute keys before we get here.
        self.root.join(Path::new(key))
    }
}

impl ObjectBackend for LocalStore {
    async fn put(&self, key: &str, bytes: Vec<u8>, _content_type: &str) -> Result<(), ObjectError> {
        let path = self.path(key);
        tokio::task::spawn_blocking(move || -> Result<(), ObjectError> {
            let dir = path.parent().ok_or_else(|| ObjectError::InvalidKey("no parent".into()))?;
            std::fs::create_dir_all(dir)?;
            // A name of its own per write, not per process: two writes of the same key at once (a worker
            // retrying a group whose first upload is still under way) must not share a temporary file, or
            // one could rename the other's half-written bytes into place.
            static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let tmp = dir.join(format!(
                ".{}.tmp-{}-{}",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("object"),
                std::process::id(),
                WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            {
                use std::io::Write;
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            Ok(())
        })
        .await
        .map_err(|e| ObjectError::Io(std::io::Error::other(e)))?
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectError> {
        match tokio::fs::read(self.path(key)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || -> Result<Vec<String>, ObjectError> {
            let mut keys = Vec::new();
            let mut stack = vec![root.join(&prefix)];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                for entry in entries {
                    let entry = entry?;
                    let path = entry.path();
                    if entry.file_type()?.is_dir() {
                        stack.push(path);
                    } else if let Ok(rel) = path.strip_prefix(&root) {
                        let key = rel.to_string_lossy().replace('\\', "/");
                        // Skip our own in-progress temporaries.
                        if !key.rsplit('/').next().unwrap_or("").starts_with('.') {
                            keys.push(key);
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
        .map_err(|e| ObjectError::Io(std::io::Error::other(e)))?
    }
}

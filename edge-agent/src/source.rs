//! The terminal's folders, strictly read-only: the agent lists and reads files and never writes, renames,
//! moves, deletes or locks anything there (the 電子カルテ/レセコン consume the same files). Files are opened
//! for reading only; on Windows the standard library opens them with full sharing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::oqs::FileKind;

#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub modified: i64,
}

/// What a watched folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderKind {
    /// The 資格確認端末's result files.
    Results,
    /// The レセコン's claims files (`*.UKE`).
    Claims,
}

impl FolderKind {
    fn wants(self, name: &str) -> bool {
        match self {
            FolderKind::Results => FileKind::of(name).is_some(),
            FolderKind::Claims => name.to_ascii_lowercase().ends_with(".uke"),
        }
    }
}

/// Result files in `folder`, oldest first. A missing folder (an unreachable share) is an empty list.
pub fn list(folder: &Path) -> std::io::Result<Vec<Candidate>> {
    list_kind(folder, FolderKind::Results)
}

/// The files of `kind` in `folder`, oldest first.
pub fn list_kind(folder: &Path, kind: FolderKind) -> std::io::Result<Vec<Candidate>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !kind.wants(&name) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = Stamp::of(&meta).modified_secs();
        out.push(Candidate { path: entry.path(), name, size: meta.len(), modified });
    }
    out.sort_by(|a, b| (a.modified, &a.name).cmp(&(b.modified, &b.name)));
    Ok(out)
}

/// What must stay the same for a file to count as written: its size and modification time (to the
/// nanosecond where the file system keeps it). The terminal writes a file straight into place, so a reader
/// can see it half-written; a writer that is still busy moves one or the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    /// Modification time in nanoseconds since the epoch (0 when the file system has none).
    pub modified_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Self { size: meta.len(), modified_ns }
    }

    /// The modification time in whole seconds, as the processed-file bookkeeping keeps it.
    pub fn modified_secs(&self) -> i64 {
        (self.modified_ns / 1_000_000_000) as i64
    }
}

/// The file's current size and modification time.
pub async fn stamp(path: &Path) -> std::io::Result<Stamp> {
    Ok(Stamp::of(&tokio::fs::metadata(path).await?))
}

/// Reads at most `limit + 1` bytes: a file larger than the parser's limit comes back just over it, so the
/// parser refuses it by size without the agent holding it in memory.
pub async fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).await?;
    Ok(bytes)
}

/// Reads the file only if it still has the size and modification time of `before`, taken at least one
/// stability interval earlier, and kept them while it was read: `None` means the writer is not done (or
/// the file changed under the read), so look again on a later scan.
pub async fn read_stable(path: &Path, before: Stamp, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    if stamp(path).await? != before {
        return Ok(None);
    }
    let bytes = read_limited(path, limit).await?;
    let after = stamp(path).await?;
    let read = bytes.len() as u64;
    // A file over the limit is read only to just past it; its length is then all that can be compared.
    let whole = read == before.size || (read > limit && before.size > limit);
    Ok((after == before && whole).then_some(bytes))
}

/// Stamps the file, waits `interval`, and reads it if it did not change meanwhile (`read_stable`).
pub async fn read_when_stable(path: &Path, interval: Duration, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let before = stamp(path).await?;
    tokio::time::sleep(interval).await;
    read_stable(path, before, limit).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const DOC: &[u8] = b"<XmlMsg><MessageHeader/></XmlMsg>";

    #[tokio::test]
    async fn a_file_still_growing_is_not_read_until_it_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("OQSsiquc01res_1.xml");
        std::fs::write(&path, DOC).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
                while !done.load(Ordering::SeqCst) {
                    f.write_all(b" ").unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        for _ in 0..3 {
            assert_eq!(read_when_stable(&path, Duration::from_millis(150), 1 << 20).await.unwrap(), None);
        }
        done.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        let bytes = read_when_stable(&path, Duration::from_millis(150), 1 << 20).await.unwrap().unwrap();
        assert_eq!(bytes, std::fs::read(&path).unwrap());
        assert!(bytes.starts_with(DOC) && bytes.len() > DOC.len());
    }

    #[tokio::test]
    async fn a_file_touched_during_the_interval_is_not_read_even_with_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("OQSsiquc01res_1.xml");
        std::fs::write(&path, DOC).unwrap();
        let before = stamp(&path).await.unwrap();
        // Same size and bytes, a new modification time: the writer rewrote it in place.
        let later = std::time::SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later).unwrap();
        assert_eq!(read_stable(&path, before, 1 << 20).await.unwrap(), None);
        // Once it keeps its new stamp, it is read.
        let settled = stamp(&path).await.unwrap();
        assert_eq!(read_stable(&path, settled, 1 << 20).await.unwrap().as_deref(), Some(DOC));
    }

    #[tokio::test]
    async fn a_file_over_the_limit_is_read_only_just_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("OQSsiquc01res_1.xml");
        std::fs::write(&path, vec![b' '; 100]).unwrap();
        let before = stamp(&path).await.unwrap();
        assert_eq!(read_stable(&path, before, 10).await.unwrap().map(|b| b.len()), Some(11));
    }
}

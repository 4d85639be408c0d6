//! The terminal's folders, strictly read-only: the agent lists and reads files and never writes, renames,
//! moves, deletes or locks anything there (the 電子カルテ/レセコン consume the same files). Files are opened
//! for reading only; on Windows the standard library opens them with full sharing.

use std::path::{Path, PathBuf};

use crate::oqs::FileKind;

#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub modified: i64,
}

/// Result files in `folder`, oldest first. A missing folder (an unreachable share) is an empty list.
pub fn list(folder: &Path) -> std::io::Result<Vec<Candidate>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if FileKind::of(&name).is_none() {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        out.push(Candidate { path: entry.path(), name, size: meta.len(), modified });
    }
    out.sort_by(|a, b| (a.modified, &a.name).cmp(&(b.modified, &b.name)));
    Ok(out)
}

/// Reads at most `limit + 1` bytes: a file larger than the parser's limit comes back just over it, so the
/// parser refuses it by size without the agent holding it in memory. Callers read twice, a pause apart,
/// and use the bytes only when both reads agree (the writer is done).
pub async fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).await?;
    Ok(bytes)
}

//! `onshi-agent check`: everything `run` needs, checked in the order a person would fix it, each finding
//! with plain advice. It reads and connects; it changes nothing (not the terminal's folders, not the
//! outbox).

use std::path::Path;
use std::time::Duration;

use crate::{AgentConfig, Credentials};

/// One finding: what was checked, whether it is fine, and what to do when it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub what: String,
    pub ok: bool,
    pub advice: Option<String>,
}

impl Finding {
    fn ok(what: impl Into<String>) -> Self {
        Self { what: what.into(), ok: true, advice: None }
    }

    fn fail(what: impl Into<String>, advice: impl Into<String>) -> Self {
        Self { what: what.into(), ok: false, advice: Some(advice.into()) }
    }
}

/// The clock difference beyond which receptions would be filed under the wrong minute or day.
const MAX_SKEW_SECS: i64 = 60;

/// Runs every check. Network checks time out after a few seconds each.
pub async fn run(config: &AgentConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let config_name = config
        .file
        .as_deref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| AgentConfig::file_to_read(None).display().to_string());
    match &config.file {
        Some(file) => out.push(Finding::ok(format!("configuration: {}", file.display()))),
        None => out.push(Finding::fail(
            "configuration: none found",
            format!(
                "run `onshi-agent enroll --server URL --code CODE --watch FOLDER` (it writes {config_name}), or pass --config FILE"
            ),
        )),
    }

    // Enrollment.
    let credentials = match Credentials::load(&config.data_dir) {
        Ok(c) => {
            out.push(Finding::ok(format!(
                "enrolled: clinic {} (device {}), server {}",
                c.institution_code, c.device, c.server
            )));
            Some(c)
        }
        Err(e) => {
            out.push(Finding::fail(
                format!("enrollment: {e}"),
                "make an enrollment code for this clinic in Onshi Cloud (端末 → 登録コード) and run the command it shows",
            ));
            None
        }
    };

    // The data folder must be writable: the outbox lives there.
    out.push(writable(&config.data_dir));

    // Folders.
    if config.watch.is_empty() {
        out.push(Finding::fail(
            "folders to watch: none configured",
            format!(
                "add the terminal's result folders to `watch` in {config_name}, e.g. watch = [\"D:/OQS/face\", \"D:/OQS/res\"]"
            ),
        ));
    }
    for folder in &config.watch {
        out.push(folder_finding(folder, &config_name));
    }

    // Server and clock.
    let server = config.server.clone().or_else(|| credentials.as_ref().map(|c| c.server.clone()));
    match server {
        Some(server) => out.extend(server_findings(&server).await),
        None => out.push(Finding::fail("server: not known", "enroll this agent, or set `server` in the configuration")),
    }
    out
}

fn writable(dir: &Path) -> Finding {
    let what = format!("data folder: {}", dir.display());
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Finding::fail(what, format!("cannot create it ({e}); set `data_dir` to a folder this user may write"));
    }
    let probe = dir.join(".onshi-agent-check");
    match std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe)) {
        Ok(()) => Finding::ok(what),
        Err(e) => Finding::fail(what, format!("not writable ({e}); set `data_dir` to a folder this user may write")),
    }
}

fn folder_finding(folder: &Path, config_name: &str) -> Finding {
    let what = format!("folder: {}", folder.display());
    match crate::config::result_files(folder) {
        Ok(results) => Finding::ok(format!("{what} (readable, {results} result files now)")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Finding::fail(
            format!("{what}: not found"),
            format!(
                "check the path on the 資格確認端末 (its 連携フォルダ, often …\\OQS\\face and …\\OQS\\res) and the share is mounted; then correct `watch` in {config_name}"
            ),
        ),
        Err(e) => Finding::fail(
            format!("{what}: {e}"),
            "give this user read access to the folder (read only: the agent never writes there)",
        ),
    }
}

async fn server_findings(server: &str) -> Vec<Finding> {
    // The client `run` delivers with, so the check tests what will be used.
    let url = format!("{}/healthz", server.trim_end_matches('/'));
    let before = time::OffsetDateTime::now_utc();
    let response = match crate::uplink::client().get(&url).timeout(Duration::from_secs(5)).send().await {
        Ok(r) => r,
        Err(e) => {
            return vec![Finding::fail(
                format!("server: {server} does not answer ({e})"),
                "check the internet connection and proxy of this PC, and the server address",
            )];
        }
    };
    let mut out = vec![if response.status().is_success() {
        Finding::ok(format!("server: {server} answers"))
    } else {
        Finding::fail(
            format!("server: {server} answered {}", response.status()),
            "Onshi Cloud may be under maintenance; try again in a few minutes",
        )
    }];
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok());
    if let Some(server_time) = date {
        let skew = (before - server_time).whole_seconds();
        out.push(if skew.abs() <= MAX_SKEW_SECS {
            Finding::ok(format!("clock: within {}s of the server", skew.abs().max(1)))
        } else {
            Finding::fail(
                format!("clock: {skew:+}s from the server"),
                "turn on automatic time (NTP) on this PC and the 資格確認端末; receptions are filed by their time",
            )
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_folders_and_enrollment_come_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("face");
        std::fs::create_dir(&present).unwrap();
        std::fs::write(present.join("a.xml"), b"<x/>").unwrap();
        let config = AgentConfig::with(dir.path().join("data"), vec![present.clone(), dir.path().join("res")]).unwrap();
        let findings = run(&config).await;
        let folder = |p: &Path| findings.iter().find(|f| f.what.contains(&p.display().to_string())).unwrap().clone();
        assert!(folder(&present).ok && folder(&present).what.contains("1 result files"));
        let missing = folder(&dir.path().join("res"));
        assert!(!missing.ok && missing.advice.unwrap().contains("`watch`"));
        let enrollment = findings.iter().find(|f| f.what.starts_with("enrollment")).unwrap();
        assert!(!enrollment.ok && enrollment.advice.as_deref().unwrap().contains("enrollment code"));
        assert!(findings.iter().any(|f| f.what.starts_with("data folder") && f.ok));
    }
}

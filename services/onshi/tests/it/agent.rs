//! The edge agent against the real cloud: files in a simulated terminal folder, events out the other end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use onshi_agent::oqs::{ParseContext, parse_file};
use onshi_agent::simulate::{Generator, ResultFile, write_into};
use onshi_agent::{Agent, AgentConfig, Credentials};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::both_modes;
use crate::faults::FaultProxy;
use crate::helpers::*;

/// A simulated terminal folder and an enrolled agent for one clinic of the test app.
pub struct TestAgent {
    pub root: tempfile::TempDir,
    pub config: AgentConfig,
    pub credentials: Credentials,
}

impl TestAgent {
    /// Enrolls through the real endpoint (optionally through `server`, e.g. a fault proxy).
    pub async fn enroll(app: &TestApp, clinic: usize, server: Option<String>) -> Self {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("agent");
        let code =
            app.store().create_enrollment_code(&app.clinics[clinic].clinic, time::Duration::hours(1)).await.unwrap();
        let credentials = onshi_agent::uplink::enroll(&app.base_url(), &code, "test agent").await.unwrap();
        credentials.save(&data).unwrap();
        let watch = vec![root.path().join("face"), root.path().join("res"), root.path().join("trash")];
        for w in &watch {
            std::fs::create_dir_all(w).unwrap();
        }
        let mut config = AgentConfig::with(&data, watch).unwrap();
        config.server = server;
        config.rescan_secs = 1;
        config.stable_ms = 50;
        config.settle_secs = 2;
        config.heartbeat_secs = 1;
        Self { root, config, credentials }
    }

    pub fn folder(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    pub fn open(&self) -> Agent {
        Agent::open(self.config.clone()).unwrap()
    }

    /// Writes `n` receptions (one in ten Shift_JIS) and returns the distinct events they must become.
    pub fn write_receptions(&self, n: usize, seed: u64) -> Vec<onshi_domain::AgentEvent> {
        let mut generator = Generator::new(self.credentials.institution_code.as_str(), 40, seed);
        let now = OffsetDateTime::now_utc();
        let mut events = Vec::new();
        for i in 0..n {
            let (file, card) = generator.next(now - time::Duration::seconds((n - i) as i64));
            events.extend(self.expected(&file));
            write_into(&self.folder(if card { "face" } else { "res" }), &file).unwrap();
        }
        distinct(events)
    }

    pub fn expected(&self, file: &ResultFile) -> Vec<onshi_domain::AgentEvent> {
        let ctx = ParseContext {
            clinic: Some(self.credentials.institution_code.clone()),
            pseudonym_key: self.credentials.pseudonym_key_bytes(),
        };
        parse_file(&file.name, &file.bytes, &ctx).unwrap().events
    }
}

/// Two byte-identical result files (same patient, same second, same answers) are one result with the
/// same event ids: the agent sends it once. Expectations therefore count distinct events.
fn distinct(events: Vec<onshi_domain::AgentEvent>) -> Vec<onshi_domain::AgentEvent> {
    let mut seen = std::collections::HashSet::new();
    events.into_iter().filter(|e| seen.insert(e.id)).collect()
}

/// Name → (sha256, modified) of every file in the terminal's folders under `dir`.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    for folder in ["face", "res", "trash"] {
        let sub = dir.join(folder);
        if sub.is_dir() {
            for f in std::fs::read_dir(&sub).unwrap().flatten() {
                let bytes = std::fs::read(f.path()).unwrap();
                out.insert(f.path(), (hex::encode(Sha256::digest(&bytes)), f.metadata().unwrap().modified().unwrap()));
            }
        }
    }
    assert!(!out.is_empty());
    out
}

fn receptions(events: &[onshi_domain::AgentEvent]) -> u64 {
    reception_count(events)
}

both_modes!(an_agent_delivers_each_result_exactly_once_and_leaves_the_folders_untouched, |app| {
    let agent = TestAgent::enroll(app, 0, None).await;
    let mut expected = agent.write_receptions(30, 1);
    let mut generator = Generator::new(agent.credentials.institution_code.as_str(), 40, 2);
    let bulk = generator.bulk(OffsetDateTime::now_utc(), 4);
    expected.extend(agent.expected(&bulk));
    let expected = distinct(expected);
    write_into(&agent.folder("res"), &bulk).unwrap();
    let terminal = agent.root.path().to_path_buf();
    let before = snapshot(&terminal);

    let stop = CancellationToken::new();
    let running = agent.open();
    let outbox = running.outbox();
    let task = tokio::spawn(running.run(stop.clone()));
    let total =
        expected.iter().filter(|e| matches!(e.payload, onshi_domain::EventPayload::Qualification(_))).count() as u64;
    eventually(WAIT, "every result delivered", || async { app.store().raw_event_count().await.unwrap() == total })
        .await;
    eventually(WAIT, "outbox drained", || async { outbox.depth().unwrap() == 0 }).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(app.store().confirmation_count().await.unwrap(), receptions(&expected));

    // A restart rescans everything: nothing new. The same file in the 電子カルテ's trash folder: nothing new.
    let moved = before.keys().find(|p| p.to_string_lossy().contains("face")).unwrap().clone();
    std::fs::copy(&moved, agent.folder("trash").join(moved.file_name().unwrap())).unwrap();
    let again = agent.open();
    again.scan_once(&CancellationToken::new()).await;
    assert_eq!(again.outbox().depth().unwrap(), 0, "a rescan after restart produced events");
    assert_eq!(app.store().raw_event_count().await.unwrap(), total);

    // The terminal's files are byte for byte what they were (the trash copy is ours).
    let mut after = snapshot(&terminal);
    after.retain(|p, _| !p.to_string_lossy().contains("trash"));
    assert_eq!(before, after);
});

both_modes!(a_slow_writer_is_not_read_early_and_bad_files_are_quarantined, |app| {
    let agent = TestAgent::enroll(app, 1, None).await;
    let mut generator = Generator::new(agent.credentials.institution_code.as_str(), 10, 3);
    let (file, _) = generator.next(OffsetDateTime::now_utc());
    let path = agent.folder("res").join(&file.name);
    // Half the file, then a pause longer than the stability check.
    std::fs::write(&path, &file.bytes[..file.bytes.len() / 2]).unwrap();
    let running = agent.open();
    let stop = CancellationToken::new();
    running.scan_once(&stop).await;
    running.scan_once(&stop).await;
    assert_eq!(running.outbox().depth().unwrap(), 0);
    assert_eq!(running.state.quarantined.load(Ordering::Relaxed), 0, "a file still being written was quarantined");
    std::fs::write(&path, &file.bytes).unwrap();
    running.scan_once(&stop).await;
    assert_eq!(running.outbox().depth().unwrap(), 1);

    // A mislabelled file and another clinic's file, both old enough to be finished: quarantined.
    let (good, _) = generator.next(OffsetDateTime::now_utc());
    let text = String::from_utf8(good.bytes.clone()).unwrap();
    let mislabelled = text.replacen("encoding=\"UTF-8\"", "encoding=\"Shift_JIS\"", 1);
    let foreign = text.replace(agent.credentials.institution_code.as_str(), "1311234599");
    for (name, bytes) in [("OQSsiquc01res_bad1.xml", mislabelled), ("OQSsiquc01res_bad2.xml", foreign)] {
        let p = agent.folder("res").join(name);
        std::fs::write(&p, bytes).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(old).unwrap();
    }
    running.scan_once(&stop).await;
    assert_eq!(running.state.quarantined.load(Ordering::Relaxed), 2);
    // The heartbeat tells the cloud the latest category, never the file's content or name.
    let last = (*running.state.last_quarantine.lock().unwrap()).expect("a quarantine is remembered");
    assert!(
        matches!(last.kind, onshi_domain::QuarantineKind::WrongClinic | onshi_domain::QuarantineKind::Unreadable),
        "{last:?}"
    );
    let quarantine: Vec<String> = std::fs::read_dir(agent.config.quarantine_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(quarantine.iter().filter(|n| n.ends_with(".reason.txt")).count(), 2, "{quarantine:?}");
    let reasons: String = quarantine
        .iter()
        .filter(|n| n.ends_with(".reason.txt"))
        .map(|n| std::fs::read_to_string(agent.config.quarantine_dir().join(n)).unwrap())
        .collect();
    assert!(reasons.contains("encoding"), "{reasons}");
    assert!(reasons.contains("not the clinic this agent is enrolled for"), "{reasons}");
    // A 100 MB file (sparse, so the test stays cheap) is refused by size after reading just over the
    // 16 MiB limit, never held whole in memory.
    let huge = agent.folder("res").join("OQSsiquc01res_huge.xml");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(100 * 1024 * 1024).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)).unwrap();
    drop(f);
    running.scan_once(&stop).await;
    assert_eq!(running.state.quarantined.load(Ordering::Relaxed), 3);
    let reason = std::fs::read_dir(agent.config.quarantine_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("huge") && p.to_string_lossy().ends_with(".reason.txt"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap();
    assert!(reason.contains("over the"), "{reason}");
    std::fs::remove_file(&huge).unwrap();
    // Quarantined once, not again on the next scan; the originals are still in place.
    running.scan_once(&stop).await;
    assert_eq!(running.state.quarantined.load(Ordering::Relaxed), 3);
    assert!(agent.folder("res").join("OQSsiquc01res_bad1.xml").exists());
    assert_eq!(running.outbox().depth().unwrap(), 1);
});

both_modes!(a_cut_link_loses_nothing_and_duplicates_nothing, |app| {
    let proxy = FaultProxy::start(app.running().port).await;
    let agent = TestAgent::enroll(app, 2, Some(proxy.url())).await;
    let stop = CancellationToken::new();
    let running = agent.open();
    let outbox = running.outbox();
    let task = tokio::spawn(running.run(stop.clone()));

    let first = agent.write_receptions(10, 4);
    let n1 = first.len() as u64;
    eventually(WAIT, "first files delivered", || async { app.store().raw_event_count().await.unwrap() == n1 }).await;
    proxy.cut();
    let second = agent.write_receptions(15, 5);
    let n2 = second.len() as u64;
    eventually(WAIT, "files buffered while the link is down", || async { outbox.depth().unwrap() == n2 }).await;
    assert_eq!(app.store().raw_event_count().await.unwrap(), n1);
    proxy.restore();
    eventually(Duration::from_secs(90), "buffered events delivered after the link returns", || async {
        outbox.depth().unwrap() == 0 && app.store().raw_event_count().await.unwrap() == n1 + n2
    })
    .await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(app.store().confirmation_count().await.unwrap(), receptions(&first) + receptions(&second));
});

both_modes!(a_full_outbox_stops_reading_instead_of_dropping, |app| {
    let proxy = FaultProxy::start(app.running().port).await;
    let mut agent = TestAgent::enroll(app, 0, Some(proxy.url())).await;
    agent.config.max_outbox_bytes = 64 * 1024;
    proxy.cut();
    let expected = agent.write_receptions(150, 6);
    let n = expected.len() as u64;
    let running = agent.open();
    let outbox = running.outbox();
    let state = running.state.clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(running.run(stop.clone()));
    eventually(WAIT, "backpressure engaged", || async { state.backpressure.load(Ordering::Relaxed) }).await;
    let processed = outbox.processed_count().unwrap();
    assert!(processed < 150, "all {processed} files read despite a full outbox");
    proxy.restore();
    eventually(Duration::from_secs(120), "everything delivered once there is room", || async {
        app.store().raw_event_count().await.unwrap() == n && outbox.depth().unwrap() == 0
    })
    .await;
    assert!(!state.backpressure.load(Ordering::Relaxed));
    assert_eq!(outbox.processed_count().unwrap(), n);
    assert_eq!(app.store().confirmation_count().await.unwrap(), receptions(&expected));
    stop.cancel();
    task.await.unwrap();
});

both_modes!(a_revoked_agent_keeps_its_events_and_a_failing_probe_degrades_the_clinic, |app| {
    let mut agent = TestAgent::enroll(app, 1, None).await;
    // Port 1 on loopback: nothing listens there, so the VPN probe fails.
    agent.config.network_probes = vec!["tcp://127.0.0.1:1".to_owned()];
    agent.config.revoked_recheck_secs = 1;
    let stop = CancellationToken::new();
    let running = agent.open();
    let outbox = running.outbox();
    let running_state = running.state.clone();
    let task = tokio::spawn(running.run(stop.clone()));
    eventually(WAIT, "clinic shows degraded", || async {
        let device = app.store().device(agent.credentials.device).await.unwrap().unwrap();
        matches!(device.health(OffsetDateTime::now_utc()), onshi_domain::DeviceHealth::Degraded(_))
    })
    .await;
    app.revoke_device(agent.credentials.device).await;
    let n = agent.write_receptions(5, 7).len() as u64;
    eventually(WAIT, "files read into the outbox", || async { outbox.depth().unwrap() == n }).await;
    // Refused, so nothing is delivered, and nothing is dropped or set aside either, over several delivery
    // attempts that all started after the events were queued.
    let attempts = running_state.refused_attempts.load(Ordering::Relaxed);
    eventually(WAIT, "three more refused delivery attempts", || async {
        running_state.refused_attempts.load(Ordering::Relaxed) >= attempts + 3
    })
    .await;
    assert_eq!(outbox.depth().unwrap(), n);
    assert_eq!(outbox.rejected_count().unwrap(), 0);
    assert_eq!(app.store().raw_event_count().await.unwrap(), 0);
    stop.cancel();
    task.await.unwrap();
});

/// The agent process is killed with SIGKILL at random moments, 50 times, while the terminal keeps writing
/// files; after a final run the cloud holds every event exactly once and the outbox is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_at_random_points_delivers_everything_exactly_once() {
    let app = spawn_app(Mode::Embedded).await;
    let agent = TestAgent::enroll(&app, 0, None).await;
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_onshi")).with_file_name("onshi-agent");
    assert!(bin.exists(), "build the workspace first: {}", bin.display());
    let config_file = agent.root.path().join("agent.toml");
    let watch: Vec<String> = agent.config.watch.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
    std::fs::write(
        &config_file,
        format!(
            "data_dir = {:?}\nwatch = [{}]\nrescan_secs = 1\nstable_ms = 20\nsettle_secs = 2\nheartbeat_secs = 5\nlog_level = \"info\"\n",
            agent.config.data_dir.display().to_string(),
            watch.join(", ")
        ),
    )
    .unwrap();
    let log_path = agent.root.path().join("agent.log");
    let spawn = || {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        tokio::process::Command::new(&bin)
            .args(["run", "--config"])
            .arg(&config_file)
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut expected = Vec::new();
    let mut contents = std::collections::HashSet::new();
    let mut generator = Generator::new(agent.credentials.institution_code.as_str(), 60, 8);
    for round in 0..50u64 {
        for _ in 0..2 {
            let (file, card) = generator.next(OffsetDateTime::now_utc());
            expected.extend(agent.expected(&file));
            contents.insert(hex::encode(Sha256::digest(&file.bytes)));
            write_into(&agent.folder(if card { "face" } else { "res" }), &file).unwrap();
        }
        let mut child = spawn();
        tokio::time::sleep(Duration::from_millis(40 + (round * 37) % 400)).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
    let expected = distinct(expected);
    let mut child = spawn();
    let total = expected.len() as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while app.store().raw_event_count().await.unwrap() < total {
        if tokio::time::Instant::now() > deadline {
            // Say where the events are before failing: agent outbox, cloud, dead letters, agent log.
            use onshi_queue::MessageQueue;
            let outbox = onshi_agent::outbox::Outbox::open(&agent.config.outbox_path(), u64::MAX).unwrap();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "timed out: cloud has {} of {total} events; outbox depth {}, rejected {}, processed files {}; \
                 dead letters {}; child exited: {:?}\nagent log (newest first):\n{}",
                app.store().raw_event_count().await.unwrap(),
                outbox.depth().unwrap(),
                outbox.rejected_count().unwrap(),
                outbox.processed_count().unwrap(),
                app.adapters().queue.dead_letter_count().await.unwrap(),
                child.try_wait(),
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The cloud can hold an event a moment before the agent has marked it delivered (the 202 is on its
    // way): let the agent finish before stopping it, or the check below races the last acknowledgement.
    eventually(WAIT, "the agent's outbox drained", || async {
        onshi_agent::outbox::Outbox::open(&agent.config.outbox_path(), u64::MAX)
            .and_then(|o| o.depth())
            .is_ok_and(|d| d == 0)
    })
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let outbox = onshi_agent::outbox::Outbox::open(&agent.config.outbox_path(), u64::MAX).unwrap();
    assert_eq!(outbox.depth().unwrap(), 0);
    assert_eq!(outbox.rejected_count().unwrap(), 0);
    assert_eq!(outbox.processed_count().unwrap(), contents.len() as u64);
    assert_eq!(app.store().confirmation_count().await.unwrap(), receptions(&expected));
    app.teardown().await;
}

/// Setting an agent up without the docs, through the real binary: `enroll` writes the configuration in
/// the machine's own place (not the current folder), `check` says what is fine and what to fix, `simulate`
/// writes the enrolled clinic's code, and `run` refuses a folder it cannot read with the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_is_set_up_from_the_enrollment_page_commands_alone() {
    let app = spawn_app(Mode::Embedded).await;
    let pc = ClinicPc::new();
    let (home, cwd, res) = (pc.home.path(), pc.cwd.path(), pc.folder("res"));
    let agent = |args: &[&str]| pc.run(args);
    let code = app.store().create_enrollment_code(&app.clinics[0].clinic, time::Duration::hours(1)).await.unwrap();
    let (status, out) = pc.enroll(&app.base_url(), &code);
    assert_eq!(status, 0, "{out}");
    let config = home.join(".config/onshi-agent/agent.toml");
    assert!(config.exists(), "{out}");
    assert!(out.contains(&config.display().to_string()), "{out}");
    assert!(std::fs::read_dir(cwd).unwrap().next().is_none(), "nothing written in the current folder");
    assert!(home.join(".local/share/onshi-agent/credentials.json").exists());

    let (status, out) = agent(&["check"]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("OK   enrolled: clinic") && out.contains("server:") && !out.contains("NG"), "{out}");

    // simulate writes the enrolled clinic's code without being told it.
    let sim = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::from(pc.command(&["simulate", "--rate", "600", "--out"]))
        .arg(sim.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let written = || {
        ["face", "res"]
            .iter()
            .filter_map(|d| std::fs::read_dir(sim.path().join(d)).ok())
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "xml"))
    };
    // One in ten simulated files is Shift_JIS, and a file may be caught half written: read bytes, and wait
    // for one whose header is complete (the code is ASCII in either encoding).
    let header = || {
        written()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned())
            .filter(|t| t.contains("</MedicalInstitutionCode>"))
    };
    eventually(WAIT, "a simulated file", || async { header().is_some() }).await;
    child.kill().await.ok();
    let text = header().unwrap();
    assert!(text.contains(app.clinics[0].clinic.code.as_str()), "the enrolled clinic's code");

    // A folder gone missing: check says so with the fix, run refuses to start instead of watching nothing.
    std::fs::remove_dir(&res).unwrap();
    let (status, out) = agent(&["check"]);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("NG") && out.contains("not found") && out.contains("`watch`"), "{out}");
    let (status, out) = agent(&["run"]);
    assert_ne!(status, 0, "{out}");
    assert!(out.contains(&res.display().to_string()) && out.contains("onshi-agent check"), "{out}");
    app.teardown().await;
}

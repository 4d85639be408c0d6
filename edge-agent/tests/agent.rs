//! The agent on its own, without the real cloud: reading a terminal folder into the outbox, and delivering
//! to a small fake cloud (a TCP listener on 127.0.0.1 answering canned HTTP) that can be taken down, brought
//! back, and made to forget the tokens it issued.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onshi_agent::oqs::{FileEncoding, ParseContext, parse_file};
use onshi_agent::simulate::{Confirmation, Outcome, Person, ResultFile, confirmation_file, write_into};
use onshi_agent::uplink::{Delivery, Uplink};
use onshi_agent::{Agent, AgentConfig, Credentials};
use onshi_domain::{AgentEvent, ClinicId, DeviceId, EventId, MedicalInstitutionCode, TenantId};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const CODE: &str = "1311234560";
const KEY: &str = "00112233445566778899aabbccddeeff";

// ---- A fake cloud: just enough of /api/v1/agent/token and /api/v1/events.

/// One request the fake cloud answered.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    /// Event ids of an events request, in order.
    events: Vec<EventId>,
    heartbeat: bool,
    status: u16,
}

#[derive(Default)]
struct CloudState {
    /// Token endpoint answers (503 when false).
    tokens_up: bool,
    /// Events endpoint answers (503 when false).
    events_up: bool,
    /// Whether the events endpoint takes any token at all (false: every delivery is 401).
    refuse_tokens: bool,
    issued: u32,
    /// The access tokens the events endpoint takes (those issued since it last forgot them).
    valid_tokens: Vec<String>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
struct FakeCloud {
    url: String,
    state: Arc<Mutex<CloudState>>,
}

impl FakeCloud {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(CloudState { tokens_up: true, events_up: true, ..CloudState::default() }));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(answer(socket, shared.clone()));
            }
        });
        Self { url, state }
    }

    fn set(&self, f: impl FnOnce(&mut CloudState)) {
        f(&mut self.state.lock().unwrap());
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Event ids of the non-heartbeat batches the cloud accepted, in order.
    fn accepted(&self) -> Vec<EventId> {
        self.seen().into_iter().filter(|s| !s.heartbeat && s.status == 202).flat_map(|s| s.events).collect()
    }
}

/// Reads one HTTP/1.1 request, answers it and closes the connection.
async fn answer(mut socket: tokio::net::TcpStream, state: Arc<Mutex<CloudState>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = &buf[head_end..head_end + length];
    let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let bearer = header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned));
    let (status, reply, seen) = {
        let mut s = state.lock().unwrap();
        match path.as_str() {
            "/api/v1/agent/token" if s.tokens_up => {
                s.issued += 1;
                let token = format!("t{}", s.issued);
                s.valid_tokens.push(token.clone());
                (200, format!(r#"{{"access_token":"{token}","expires_in":3600}}"#), None)
            }
            "/api/v1/events" => {
                let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                let list = json["events"].as_array().cloned().unwrap_or_default();
                let heartbeat = list.iter().any(|e| e["payload"].get("heartbeat").is_some());
                let events = list.iter().filter_map(|e| serde_json::from_value(e["id"].clone()).ok()).collect();
                let status = if !s.events_up {
                    503
                } else if s.refuse_tokens || !bearer.is_some_and(|b| s.valid_tokens.contains(&b)) {
                    401
                } else {
                    202
                };
                (status, "{}".to_owned(), Some(Seen { path: path.clone(), events, heartbeat, status }))
            }
            _ => (503, r#"{"error":{"message":"down"}}"#.to_owned(), None),
        }
    };
    let seen = seen.unwrap_or(Seen { path, events: Vec::new(), heartbeat: false, status });
    state.lock().unwrap().seen.push(seen);
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

// ---- An enrolled agent with its own folders.

struct TestAgent {
    root: tempfile::TempDir,
    config: AgentConfig,
    credentials: Credentials,
}

impl TestAgent {
    fn new(server: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("agent");
        let credentials = Credentials {
            server: server.to_owned(),
            tenant: TenantId::new(),
            clinic: ClinicId::new(),
            institution_code: MedicalInstitutionCode::parse(CODE).unwrap(),
            device: DeviceId::new(),
            device_secret: SecretString::from("device-secret".to_owned()),
            pseudonym_key: SecretString::from(KEY.to_owned()),
        };
        credentials.save(&data).unwrap();
        let watch = vec![root.path().join("res"), root.path().join("trash")];
        for w in &watch {
            std::fs::create_dir_all(w).unwrap();
        }
        let mut config = AgentConfig::with(&data, watch).unwrap();
        config.stable_ms = 100;
        config.heartbeat_secs = 1;
        Self { root, config, credentials }
    }

    fn folder(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn open(&self) -> Agent {
        Agent::open(self.config.clone()).unwrap()
    }

    fn parse(&self, file: &ResultFile) -> Vec<AgentEvent> {
        let ctx = ParseContext {
            clinic: Some(self.credentials.institution_code.clone()),
            pseudonym_key: self.credentials.pseudonym_key_bytes(),
        };
        parse_file(&file.name, &file.bytes, &ctx).unwrap().events
    }
}

fn reception(serial: u64, encoding: FileEncoding) -> ResultFile {
    let c = Confirmation {
        at: time::macros::datetime!(2026-11-25 09:30:00 +09:00) + time::Duration::seconds(serial as i64),
        clinic_code: CODE.into(),
        card: false,
        person: Person {
            insurer: "06139999".into(),
            symbol: "１２３".into(),
            number: format!("{serial:07}"),
            branch: "00".into(),
            name: "髙橋　﨑子".into(),
            kana: "ﾀｶﾊｼ ｻｷｺ".into(),
            birthdate: "19800101".into(),
        },
        outcome: Outcome::Valid,
        consents: [None; 4],
        limit_certificate: false,
    };
    confirmation_file(&c, encoding, serial)
}

async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn append(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

// ---- Reading: one result, one event; nothing read while it is still being written.

#[tokio::test]
async fn a_result_that_later_gets_a_crlf_or_is_re_encoded_is_read_once() {
    let agent = TestAgent::new("http://127.0.0.1:9");
    let running = agent.open();
    let stop = CancellationToken::new();
    let file = reception(1, FileEncoding::Utf8);
    let expected = agent.parse(&file);
    let path = write_into(&agent.folder("res"), &file).unwrap();
    running.scan_once(&stop).await;
    assert_eq!(running.outbox().depth().unwrap(), 1);
    assert_eq!(running.state.files_read.load(Ordering::Relaxed), 1);

    // The terminal (or a copy tool) appends a CRLF to the complete file: the same result.
    append(&path, b"\r\n");
    running.scan_once(&stop).await;
    // The same result in Shift_JIS, in the 電子カルテ's trash folder: the same result again.
    write_into(&agent.folder("trash"), &reception(1, FileEncoding::ShiftJis)).unwrap();
    running.scan_once(&stop).await;

    assert_eq!(running.outbox().depth().unwrap(), 1, "the same result was stored twice");
    assert_eq!(running.state.files_read.load(Ordering::Relaxed), 1);
    assert_eq!(running.outbox().processed_count().unwrap(), 1);
    let queued = running.outbox().peek(10).unwrap();
    assert_eq!(queued[0].event.id, expected[0].id);
    // A restart with the files in place reads nothing new either.
    drop(running);
    let again = agent.open();
    again.scan_once(&stop).await;
    assert_eq!(again.outbox().depth().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_still_being_written_is_not_read_until_it_stops_changing() {
    let mut agent = TestAgent::new("http://127.0.0.1:9");
    agent.config.stable_ms = 300;
    let running = agent.open();
    let stop = CancellationToken::new();
    // A complete document that keeps growing (the writer pads it): parseable at every moment, so only the
    // stability check keeps it from being read early.
    let file = reception(2, FileEncoding::Utf8);
    let path = write_into(&agent.folder("res"), &file).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, done) = (path.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                append(&path, b" ");
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    for _ in 0..2 {
        running.scan_once(&stop).await;
        assert_eq!(running.outbox().depth().unwrap(), 0, "read while still being written");
        assert_eq!(running.state.files_read.load(Ordering::Relaxed), 0);
    }
    done.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    running.scan_once(&stop).await;
    assert_eq!(running.outbox().depth().unwrap(), 1);
    assert_eq!(running.outbox().peek(1).unwrap()[0].event.id, agent.parse(&file)[0].id);
}

#[tokio::test]
async fn a_result_without_a_header_time_is_timed_by_its_file_name() {
    let agent = TestAgent::new("http://127.0.0.1:9");
    let running = agent.open();
    let mut file = reception(3, FileEncoding::Utf8);
    let text = String::from_utf8(file.bytes).unwrap();
    let start = text.find("<ProcessExecutionTime>").unwrap();
    let end = text.find("</ProcessExecutionTime>").unwrap() + "</ProcessExecutionTime>".len();
    file.bytes = format!("{}{}", &text[..start], &text[end..]).into_bytes();
    file.name = "OQSsiquc01res_20261126052802000001.xml".into();
    write_into(&agent.folder("res"), &file).unwrap();
    running.scan_once(&CancellationToken::new()).await;
    assert_eq!(running.state.quarantined.load(Ordering::Relaxed), 0);
    assert_eq!(running.state.timed_by_file_name.load(Ordering::Relaxed), 1);
    let queued = running.outbox().peek(10).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].event.occurred_at, time::macros::datetime!(2026-11-26 05:28:02 +09:00));
}

// ---- Delivering: resuming at once when the cloud is back.

#[tokio::test]
async fn a_refused_token_is_renewed_and_the_batch_resent_at_once() {
    let cloud = FakeCloud::start().await;
    let agent = TestAgent::new(&cloud.url);
    let uplink = Uplink::new(agent.credentials.clone(), None);
    let events = agent.parse(&reception(4, FileEncoding::Utf8));
    assert!(matches!(uplink.deliver(&events).await, Delivery::Accepted));
    // The cloud restarts and no longer takes the tokens it issued.
    cloud.set(|s| s.valid_tokens.clear());
    let started = Instant::now();
    let outcome = uplink.deliver(&events).await;
    assert!(matches!(outcome, Delivery::Accepted), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let calls = |seen: Vec<Seen>| seen.into_iter().map(|s| (s.path, s.status)).collect::<Vec<_>>();
    let expected: Vec<(String, u16)> = [
        ("/api/v1/agent/token", 200),
        ("/api/v1/events", 202),
        // The cached token is refused, renewed, and the same batch sent again right away.
        ("/api/v1/events", 401),
        ("/api/v1/agent/token", 200),
        ("/api/v1/events", 202),
    ]
    .into_iter()
    .map(|(p, s)| (p.to_owned(), s))
    .collect();
    assert_eq!(calls(cloud.seen()), expected);

    // A fresh token refused as well: the device is refused, after one renewal, not in a loop.
    cloud.set(|s| s.refuse_tokens = true);
    assert!(matches!(uplink.deliver(&events).await, Delivery::Unauthorized));
    let tail: Vec<_> = calls(cloud.seen()).split_off(expected.len());
    assert_eq!(
        tail,
        [("/api/v1/events", 401), ("/api/v1/agent/token", 200), ("/api/v1/events", 401)]
            .map(|(p, s)| (p.to_owned(), s))
            .to_vec()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_as_soon_as_a_heartbeat_gets_through() {
    let cloud = FakeCloud::start().await;
    let mut agent = TestAgent::new(&cloud.url);
    // A backoff far longer than the test may take: every failed delivery waits 30 to 60 s, so only the
    // wake-up on the cloud's return can deliver within the deadline below.
    agent.config.retry_min_ms = 60_000;
    agent.config.retry_max_ms = 60_000;
    let running = agent.open();
    let outbox = running.outbox();
    let mut expected = Vec::new();
    for serial in 10..13 {
        let file = reception(serial, FileEncoding::Utf8);
        let events = agent.parse(&file);
        outbox.commit_file(&format!("h{serial}"), &file.name, 1, &events).unwrap();
        expected.extend(events.iter().map(|e| e.id));
    }
    // The cloud's ingest is down: deliveries and heartbeats get 503.
    cloud.set(|s| s.events_up = false);
    let stop = CancellationToken::new();
    let task = tokio::spawn(running.run(stop.clone()));
    eventually(Duration::from_secs(30), "a delivery attempt refused with 503", || {
        cloud.seen().iter().any(|s| !s.heartbeat && s.status == 503)
    })
    .await;
    // The delivery loop now waits at least 30 s. The cloud comes back; the next heartbeat gets through.
    cloud.set(|s| s.events_up = true);
    eventually(Duration::from_secs(15), "buffered events delivered after the cloud's return", || {
        cloud.accepted() == expected
    })
    .await;
    eventually(Duration::from_secs(5), "outbox drained", || outbox.depth().unwrap() == 0).await;
    assert!(cloud.seen().iter().any(|s| s.heartbeat && s.status == 202));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_outbox_row_is_set_aside_and_the_rest_delivered_in_order() {
    let cloud = FakeCloud::start().await;
    let agent = TestAgent::new(&cloud.url);
    let running = agent.open();
    let outbox = running.outbox();
    let mut ids = Vec::new();
    for serial in 20..24 {
        let file = reception(serial, FileEncoding::Utf8);
        let events = agent.parse(&file);
        outbox.commit_file(&format!("h{serial}"), &file.name, 1, &events).unwrap();
        ids.extend(events.iter().map(|e| e.id));
    }
    // Damage the second row behind the agent's back.
    let raw = rusqlite::Connection::open(agent.config.outbox_path()).unwrap();
    raw.busy_timeout(Duration::from_secs(10)).unwrap();
    let damaged = raw
        .execute("UPDATE events SET body = '{\"id\": ' WHERE id = ?1", rusqlite::params![ids[1].to_string()])
        .unwrap();
    assert_eq!(damaged, 1);
    let stop = CancellationToken::new();
    let task = tokio::spawn(running.run(stop.clone()));
    let expected: Vec<_> = ids.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, id)| *id).collect();
    eventually(Duration::from_secs(20), "the intact events delivered in order", || cloud.accepted() == expected).await;
    eventually(Duration::from_secs(5), "outbox drained", || outbox.depth().unwrap() == 0).await;
    assert_eq!(outbox.corrupt_count().unwrap(), 1);
    let reason: String = raw
        .query_row("SELECT reason FROM corrupt WHERE id = ?1", rusqlite::params![ids[1].to_string()], |r| r.get(0))
        .unwrap();
    assert!(reason.contains("not a valid event"), "{reason}");
    stop.cancel();
    task.await.unwrap();
}

//! A local SMTP sink for the tests: a real SMTP conversation over TCP with lettre's client, keeping each
//! message. One sink serves the whole test binary; tests find their messages by recipient.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;

pub struct Sink {
    pub port: u16,
    messages: Arc<Mutex<Vec<String>>>,
}

/// Addresses the sink refuses at RCPT TO, with the code: 451 for now (a server in trouble), 550 for good
/// (an unknown user).
fn refused() -> &'static Mutex<HashMap<String, u16>> {
    static REFUSED: OnceLock<Mutex<HashMap<String, u16>>> = OnceLock::new();
    REFUSED.get_or_init(Mutex::default)
}

pub fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind smtp sink");
        let port = listener.local_addr().unwrap().port();
        let messages: Arc<Mutex<Vec<String>>> = Arc::default();
        let store = messages.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let store = store.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &store);
                });
            }
        });
        Sink { port, messages }
    })
}

fn serve(stream: std::net::TcpStream, store: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    out.write_all(b"220 onshi-test-sink ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
            out.write_all(b"250-onshi-test-sink\r\n250 8BITMIME\r\n")?;
        } else if cmd.starts_with("DATA") {
            out.write_all(b"354 end with .\r\n")?;
            let mut data = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line));
            }
            store.lock().unwrap().push(data);
            out.write_all(b"250 queued\r\n")?;
        } else if let Some(rest) = cmd.strip_prefix("RCPT TO:") {
            let address = rest.trim().trim_start_matches('<').trim_end_matches('>').to_owned();
            let code = refused().lock().unwrap().get(&address).copied();
            // Real servers echo the address; the application must not keep it.
            if code == Some(451) {
                out.write_all(format!("451 4.3.0 <{address}> mailbox busy, try again later\r\n").as_bytes())?;
            } else if code == Some(550) {
                out.write_all(format!("550 5.1.1 <{address}> user unknown\r\n").as_bytes())?;
            } else {
                out.write_all(b"250 ok\r\n")?;
            }
        } else if cmd.starts_with("QUIT") {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"250 ok\r\n")?;
        }
    }
}

/// Points the application's mail at the sink (SMTP on its local port).
pub fn route_mail_here(config: &mut onshi_config::Config) {
    config.smtp_url = Some(secrecy::SecretString::from(format!("smtp://127.0.0.1:{}", sink().port)));
}

/// The decoded text body of an RFC 5322 message (base64 or quoted-printable or plain).
pub fn body_text(message: &str) -> String {
    let (head, body) = message.split_once("\r\n\r\n").or_else(|| message.split_once("\n\n")).unwrap_or((message, ""));
    let head = head.to_ascii_lowercase();
    if head.contains("content-transfer-encoding: base64") {
        let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(clean).unwrap()).unwrap()
    } else if head.contains("content-transfer-encoding: quoted-printable") {
        let joined = body.replace("=\r\n", "").replace("=\n", "");
        let mut bytes = Vec::new();
        let raw = joined.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'=' && i + 2 < raw.len() {
                let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(b) = hex {
                    bytes.push(b);
                    i += 3;
                    continue;
                }
            }
            bytes.push(raw[i]);
            i += 1;
        }
        String::from_utf8(bytes).unwrap()
    } else {
        body.to_owned()
    }
}

impl Sink {
    /// Refuses mail to `to` (451, "try again later") until [`Sink::accept`].
    pub fn refuse(&self, to: &str) {
        refused().lock().unwrap().insert(to.to_ascii_uppercase(), 451);
    }

    /// Refuses mail to `to` for good (550, "user unknown").
    pub fn reject(&self, to: &str) {
        refused().lock().unwrap().insert(to.to_ascii_uppercase(), 550);
    }

    pub fn accept(&self, to: &str) {
        refused().lock().unwrap().remove(&to.to_ascii_uppercase());
    }

    /// How many messages went to `to` so far.
    pub fn count_to(&self, to: &str) -> usize {
        let needle = format!("to: {}", to.to_ascii_lowercase());
        self.messages.lock().unwrap().iter().filter(|m| m.to_ascii_lowercase().contains(&needle)).count()
    }

    /// The decoded bodies of every message to `to` so far, oldest first.
    pub fn all_to(&self, to: &str) -> Vec<String> {
        let needle = format!("to: {}", to.to_ascii_lowercase());
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.to_ascii_lowercase().contains(&needle))
            .map(|m| body_text(m))
            .collect()
    }

    /// Waits for a message to `to` whose body contains `needle`, and returns its decoded body.
    pub async fn wait_for(&self, to: &str, needle: &str) -> String {
        self.wait_for_all(to, &[needle]).await
    }

    /// Waits for a message to `to` whose body contains every one of `needles` (to tell a message from an
    /// earlier one of the same kind), and returns its decoded body.
    pub async fn wait_for_all(&self, to: &str, needles: &[&str]) -> String {
        for _ in 0..200 {
            let found = self
                .messages
                .lock()
                .unwrap()
                .iter()
                .filter(|m| m.to_ascii_lowercase().contains(&format!("to: {}", to.to_ascii_lowercase())))
                .map(|m| body_text(m))
                .find(|b| needles.iter().all(|n| b.contains(n)));
            if let Some(body) = found {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no e-mail to {to} containing {needles:?}");
    }
}

/// The path of the first link in `body` that starts with `prefix` (e.g. "/verify-email/").
pub fn link_path(body: &str, prefix: &str) -> String {
    let start = body.find(prefix).unwrap_or_else(|| panic!("no {prefix} link in: {body}"));
    body[start..].split_whitespace().next().unwrap().to_owned()
}

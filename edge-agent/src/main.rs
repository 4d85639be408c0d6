//! `onshi-agent`: see the library's documentation and docs/agent.md.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use onshi_agent::oqs::{ParseContext, parse_file};
use onshi_agent::{Agent, AgentConfig, Credentials};
use onshi_domain::MedicalInstitutionCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "onshi-agent",
    version,
    about = "Onshi edge agent: reads オンライン資格確認 results at the clinic and delivers them to Onshi Cloud"
)]
struct Cli {
    /// Configuration file (TOML); default $ONSHI_AGENT_CONFIG, then ./agent.toml when present, then the
    /// machine's own place (~/.config/onshi-agent/agent.toml, %APPDATA%\Onshi\onshi-agent\config\agent.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch the configured folders and deliver results until stopped (Ctrl-C / service stop).
    Run,
    /// Exchange a one-time enrollment code (made in Onshi Cloud for this clinic) for device credentials,
    /// and write the configuration (server, folders, data folder) when there is none yet.
    Enroll {
        #[arg(long)]
        server: String,
        #[arg(long)]
        code: String,
        /// A name for this machine, shown in the cloud.
        #[arg(long, default_value = "onshi-agent")]
        name: String,
        /// A result folder of the 資格確認端末 to watch (repeat for face and res).
        #[arg(long)]
        watch: Vec<PathBuf>,
    },
    /// Check the configuration, enrollment, folders, server and clock, with advice for each problem.
    /// Changes nothing.
    Check,
    /// Print the events one result file becomes, exactly as they would be sent (JSON), or why it cannot
    /// be read.
    Parse {
        file: PathBuf,
        /// The clinic's 医療機関コード, when this machine is not enrolled.
        #[arg(long)]
        clinic: Option<String>,
    },
    /// The clinic's レセ電 claims file (RECEIPTC.UKE): print what leaves the clinic, or import it.
    Uke {
        #[command(subcommand)]
        which: UkeCommand,
    },
    /// Write realistic result files into FOLDER/face and FOLDER/res (for demos and tests).
    Simulate {
        #[arg(long)]
        out: PathBuf,
        /// The 医療機関コード written into the files; default: the enrolled clinic's.
        #[arg(long)]
        clinic: Option<String>,
        /// Receptions per minute (on average; busier at the morning and evening peaks).
        #[arg(long, default_value_t = 6.0)]
        rate: f64,
    },
    /// Show the outbox and enrollment state.
    Status,
    /// Print every configuration key with its default and meaning (agent.default.toml).
    ConfigDefaults,
    /// Print benchmark figures (not a test).
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Subcommand)]
enum UkeCommand {
    /// Print, as JSON, exactly what the cloud would receive from one レセ電 file (no names, birth dates or
    /// insurance numbers; the patient as a pseudonym, the カルテ番号 sealed), or why the file is refused.
    Parse {
        file: PathBuf,
        /// The clinic's 医療機関コード, when this machine is not enrolled.
        #[arg(long)]
        clinic: Option<String>,
    },
    /// Queue one レセ電 file for the cloud and deliver it now when the cloud answers (else `run` does).
    /// Importing the same file again changes nothing; a corrected file for the same month replaces it.
    Import { file: PathBuf },
    /// Write a synthetic レセ電 file (invented people) for demos and tests.
    Synth {
        out: PathBuf,
        #[arg(long)]
        clinic: String,
        /// 請求年月 YYYY-MM (the receipts are for the month before).
        #[arg(long)]
        month: String,
        #[arg(long, default_value_t = 200)]
        receipts: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// レセ電 parse and pseudonymise: a synthetic file of RECEIPTS receipts, time and peak memory.
    Uke {
        #[arg(long, default_value_t = 5000)]
        receipts: usize,
    },
    /// Parse rate: generated result files (one in ten Shift_JIS) parsed in memory.
    Parse {
        #[arg(long, default_value_t = 5000)]
        files: usize,
    },
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).compact().try_init();
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("onshi-agent: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a first configuration file, every other key at its default (see agent.default.toml).
fn write_config(
    file: &std::path::Path,
    server: &str,
    watch: &[PathBuf],
    data_dir: &std::path::Path,
) -> Result<(), String> {
    #[derive(serde::Serialize)]
    struct First<'a> {
        server: &'a str,
        watch: &'a [PathBuf],
        data_dir: &'a std::path::Path,
    }
    let body = toml::to_string(&First { server, watch, data_dir }).map_err(|e| e.to_string())?;
    let text = format!(
        "# onshi-agent configuration, written by `onshi-agent enroll`. Every other key, with its default and\n# meaning: `onshi-agent config-defaults` prints them (docs/agent.md explains them too).\n{body}"
    );
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(file, text).map_err(|e| format!("{}: {e}", file.display()))
}

/// Peak resident memory of this process (Linux: VmHWM), for the benchmarks.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024)
}

/// The parse context for `parse` and `uke parse`: this machine's enrollment, with `--clinic` overriding the
/// code; without enrollment, the code is not checked and pseudonyms use an empty key (said on stderr).
fn parse_context(config: &AgentConfig, clinic: Option<String>) -> Result<ParseContext, String> {
    let enrolled = Credentials::load(&config.data_dir).ok();
    Ok(match (enrolled, clinic) {
        (enrolled, Some(code)) => ParseContext {
            clinic: Some(MedicalInstitutionCode::parse(&code).map_err(|e| format!("--clinic: {e}"))?),
            pseudonym_key: enrolled.map(|c| c.pseudonym_key_bytes()).unwrap_or_default(),
        },
        (Some(c), None) => {
            ParseContext { clinic: Some(c.institution_code.clone()), pseudonym_key: c.pseudonym_key_bytes() }
        }
        (None, None) => {
            eprintln!("onshi-agent: not enrolled: the clinic code is not checked and pseudonyms use an empty key");
            ParseContext { clinic: None, pseudonym_key: Vec::new() }
        }
    })
}

async fn uke_command(which: UkeCommand, config: impl Fn() -> Result<AgentConfig, String>) -> Result<ExitCode, String> {
    match which {
        UkeCommand::Parse { file, clinic } => {
            let ctx = parse_context(&config()?, clinic)?;
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            match onshi_agent::uke::parse(&bytes, &ctx) {
                Ok(claims) => {
                    println!("{}", serde_json::to_string_pretty(&claims).map_err(|e| e.to_string())?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("onshi-agent: {}: refused: {e}", file.display());
                    Ok(ExitCode::from(2))
                }
            }
        }
        UkeCommand::Import { file } => {
            let config = config()?;
            init_logging(&config.log_level);
            let credentials = Credentials::load(&config.data_dir).map_err(|e| e.to_string())?;
            let ctx = credentials.parse_context();
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let claims =
                onshi_agent::uke::parse(&bytes, &ctx).map_err(|e| format!("{}: refused: {e}", file.display()))?;
            let summary = format!(
                "{} receipts, claim month {} ({})",
                claims.receipts.len(),
                claims.claim_month,
                claims.payer.label_ja()
            );
            let hash = claims.file_sha256.clone();
            let event = onshi_agent::uke::event_of(claims);
            let outbox = onshi_agent::outbox::Outbox::open(&config.outbox_path(), config.max_outbox_bytes)
                .map_err(|e| e.to_string())?;
            let committed = outbox
                .commit_file(&hash, &file.display().to_string(), bytes.len() as u64, std::slice::from_ref(&event))
                .map_err(|e| e.to_string())?;
            if committed == onshi_agent::outbox::Committed::AlreadyProcessed {
                println!("{}: already imported (same content); nothing to do", file.display());
                return Ok(ExitCode::SUCCESS);
            }
            let uplink = onshi_agent::uplink::Uplink::new(credentials, config.server.as_deref());
            match uplink.deliver(std::slice::from_ref(&event)).await {
                onshi_agent::uplink::Delivery::Accepted => {
                    // The running agent may have delivered it first; then it is gone already.
                    if let Some(seq) = outbox.seq_of(&event.id).map_err(|e| e.to_string())? {
                        outbox.ack(&[seq]).map_err(|e| e.to_string())?;
                    }
                    println!("{}: imported and delivered: {summary}", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                onshi_agent::uplink::Delivery::Rejected { status, reason } => {
                    if let Some(seq) = outbox.seq_of(&event.id).map_err(|e| e.to_string())? {
                        outbox.reject(&[seq], status, &reason).map_err(|e| e.to_string())?;
                    }
                    Err(format!("{}: the cloud refused it (HTTP {status}): {reason}", file.display()))
                }
                _ => {
                    println!(
                        "{}: queued ({summary}); the cloud did not answer now, `onshi-agent run` delivers it",
                        file.display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        UkeCommand::Synth { out, clinic, month, receipts, seed } => {
            MedicalInstitutionCode::parse(&clinic).map_err(|e| format!("--clinic: {e}"))?;
            let month = onshi_domain::YearMonth::parse(&month).ok_or("--month: YYYY-MM")?;
            let people = onshi_agent::simulate::Generator::new(&clinic, receipts.max(1), seed).people().to_vec();
            let bytes =
                onshi_agent::uke::synth::SynthFile::random(&clinic, month, &people, receipts, "112709570", seed)
                    .render();
            std::fs::write(&out, bytes).map_err(|e| format!("{}: {e}", out.display()))?;
            println!("wrote {} ({receipts} receipts, claim month {month})", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let config = || AgentConfig::load(cli.config.as_deref()).map_err(|e| e.to_string());
    match cli.command {
        Command::Run => {
            let config = config()?;
            init_logging(&config.log_level);
            let file =
                config.file.as_deref().map(|f| f.display().to_string()).unwrap_or_else(|| "the configuration".into());
            if config.watch.is_empty() {
                return Err(format!(
                    "no folders to watch: add the terminal's result folders to `watch` in {file} (onshi-agent check explains)"
                ));
            }
            // A missing folder is refused at start, with the fix, rather than watched in silence.
            let missing = config.missing_folders();
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(|(p, why)| format!("  {}: {why}", p.display())).collect();
                return Err(format!(
                    "these folders to watch cannot be read:\n{}\ncheck that the 資格確認端末's share is reachable from this PC, or correct `watch` in {file}; `onshi-agent check` checks everything",
                    list.join("\n")
                ));
            }
            let agent = Agent::open(config).map_err(|e| e.to_string())?;
            let stop = CancellationToken::new();
            let trigger = stop.clone();
            tokio::spawn(async move {
                stop_signal().await;
                trigger.cancel();
            });
            agent.run(stop).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Enroll { server, code, name, watch } => {
            let config = config()?;
            init_logging(&config.log_level);
            let credentials = onshi_agent::uplink::enroll(&server, &code, &name).await.map_err(|e| e.to_string())?;
            credentials.save(&config.data_dir).map_err(|e| e.to_string())?;
            println!(
                "enrolled: device {} of clinic {} ({}); credentials in {}",
                credentials.device,
                credentials.clinic,
                credentials.institution_code,
                Credentials::path(&config.data_dir).display()
            );
            let file = AgentConfig::file_to_read(cli.config.as_deref());
            if file.exists() {
                println!("configuration kept as it is: {}", file.display());
            } else {
                write_config(&file, &credentials.server, &watch, &config.data_dir)?;
                println!("configuration written: {}", file.display());
            }
            println!("next: `onshi-agent check`, then `onshi-agent run` (or install it as a service: docs/agent.md)");
            Ok(ExitCode::SUCCESS)
        }
        Command::ConfigDefaults => {
            print!("{}", onshi_agent::config::DEFAULTS_TOML);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => {
            let config = config()?;
            let findings = onshi_agent::check::run(&config).await;
            for f in &findings {
                println!("{} {}", if f.ok { "OK  " } else { "NG  " }, f.what);
                if let Some(advice) = &f.advice {
                    println!("      → {advice}");
                }
            }
            let problems = findings.iter().filter(|f| !f.ok).count();
            if problems == 0 {
                println!("everything `onshi-agent run` needs is in place");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{problems} problem(s) to fix before `onshi-agent run`");
                Ok(ExitCode::from(1))
            }
        }
        Command::Parse { file, clinic } => {
            let config = config()?;
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let ctx = parse_context(&config, clinic)?;
            match parse_file(&name, &bytes, &ctx) {
                Ok(parsed) => {
                    if parsed.time_source == onshi_agent::oqs::TimeSource::FileName {
                        eprintln!(
                            "onshi-agent: {}: no ProcessExecutionTime in the header; occurred_at is the time in the file name",
                            file.display()
                        );
                    }
                    let json = serde_json::to_string_pretty(&parsed.events).map_err(|e| e.to_string())?;
                    println!("{json}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("onshi-agent: {}: {e}", file.display());
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Uke { which } => uke_command(which, config).await,
        Command::Simulate { out, clinic, rate } => {
            init_logging("info");
            // Files carry the enrolled clinic's code unless told otherwise: a simulator writing another
            // clinic's code would only fill the quarantine.
            let clinic = match clinic {
                Some(code) => code,
                None => config()
                    .ok()
                    .and_then(|c| Credentials::load(&c.data_dir).ok())
                    .map(|c| c.institution_code.to_string())
                    .ok_or("not enrolled: give the clinic's code with --clinic 1234567890")?,
            };
            MedicalInstitutionCode::parse(&clinic).map_err(|e| format!("--clinic: {e}"))?;
            let stop = CancellationToken::new();
            let trigger = stop.clone();
            tokio::spawn(async move {
                stop_signal().await;
                trigger.cancel();
            });
            let written = onshi_agent::simulate::run(out, clinic, rate, stop).await.map_err(|e| e.to_string())?;
            println!("wrote {written} files");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { which: BenchCommand::Uke { receipts } } => {
            let people = onshi_agent::simulate::Generator::new("1311234560", receipts.max(1), 42).people().to_vec();
            let month = onshi_domain::YearMonth::new(2026, 11).ok_or("month")?;
            let file =
                onshi_agent::uke::synth::SynthFile::random("1311234560", month, &people, receipts, "112709570", 7)
                    .render();
            let ctx = ParseContext {
                clinic: MedicalInstitutionCode::parse("1311234560").ok(),
                pseudonym_key: b"bench".to_vec(),
            };
            let mut times = Vec::new();
            let mut json_bytes = 0;
            for _ in 0..5 {
                let started = std::time::Instant::now();
                let claims = onshi_agent::uke::parse(&file, &ctx).map_err(|e| e.to_string())?;
                json_bytes = serde_json::to_vec(&claims).map_err(|e| e.to_string())?.len();
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "uke: {receipts} receipts ({} KiB Shift_JIS → {} KiB JSON), median of 5 parses: {:.1} ms (min {:.1}, max {:.1}); peak RSS {} MiB",
                file.len() / 1024,
                json_bytes / 1024,
                times[2],
                times[0],
                times[4],
                peak_rss_mib().map(|m| m.to_string()).unwrap_or_else(|| "unknown".into())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { which: BenchCommand::Parse { files } } => {
            let mut generator = onshi_agent::simulate::Generator::new("1311234560", 500, 42);
            let now = time::OffsetDateTime::now_utc();
            let inputs: Vec<_> =
                (0..files.max(1)).map(|i| generator.next(now - time::Duration::seconds(i as i64)).0).collect();
            let bytes: usize = inputs.iter().map(|f| f.bytes.len()).sum();
            let ctx = ParseContext {
                clinic: MedicalInstitutionCode::parse("1311234560").ok(),
                pseudonym_key: b"bench".to_vec(),
            };
            let mut rates = Vec::new();
            for _ in 0..5 {
                let started = std::time::Instant::now();
                let mut events = 0;
                for f in &inputs {
                    events += parse_file(&f.name, &f.bytes, &ctx).map(|p| p.events.len()).unwrap_or(0);
                }
                rates.push(inputs.len() as f64 / started.elapsed().as_secs_f64());
                std::hint::black_box(events);
            }
            rates.sort_by(f64::total_cmp);
            println!(
                "parse: {} files ({} KiB, avg {} bytes), median of 5 runs: {:.0} files/s (min {:.0}, max {:.0})",
                inputs.len(),
                bytes / 1024,
                bytes / inputs.len(),
                rates[2],
                rates[0],
                rates[4]
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let config = config()?;
            match Credentials::load(&config.data_dir) {
                Ok(c) => println!(
                    "enrolled: device {} of clinic {} ({}), server {}",
                    c.device, c.clinic, c.institution_code, c.server
                ),
                Err(e) => println!("{e}"),
            }
            let outbox = onshi_agent::outbox::Outbox::open(&config.outbox_path(), config.max_outbox_bytes)
                .map_err(|e| e.to_string())?;
            let corrupt = outbox.corrupt_count().map_err(|e| e.to_string())?;
            println!(
                "outbox: {} waiting (oldest {} s), {} set aside as refused, {} set aside as corrupt, {} files processed, {} bytes of {}",
                outbox.depth().map_err(|e| e.to_string())?,
                outbox.oldest_age_secs().ok().flatten().unwrap_or(0),
                outbox.rejected_count().map_err(|e| e.to_string())?,
                corrupt,
                outbox.processed_count().map_err(|e| e.to_string())?,
                outbox.used_bytes().map_err(|e| e.to_string())?,
                config.max_outbox_bytes
            );
            if corrupt > 0 {
                println!(
                    "warning: {corrupt} outbox rows no longer decode and were never delivered; they are kept in the `corrupt` table of {}",
                    config.outbox_path().display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

//! `onshi`: the Onshi Cloud services binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use onshi::bench::{self, IngestBench};
use onshi::startup::{Adapters, Application, Options, run_worker};
use onshi_config::Config;
use onshi_domain::AuditAction;
use secrecy::ExposeSecret;

#[derive(Parser)]
#[command(name = "onshi", version, about = "Onshi Cloud: オンライン資格確認 monitoring for clinic groups")]
struct Cli {
    /// Configuration file (TOML). Defaults to $ONSHI_CONFIG, then ./onshi.toml when present.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process with a seeded demo clinic group (embedded mode by default).
    Demo {
        /// Receptions per clinic per minute in the simulated stream.
        #[arg(long, default_value_t = 4.0)]
        rate: f64,
        /// Folder for the demo's data (default: <data_dir>/demo).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Serve the API and pages. With the embedded queue the worker runs in this process too.
    Serve,
    /// Consume the queue and apply batches (full mode; scale out by running several).
    Worker,
    /// Apply pending database migrations.
    Migrate,
    /// Print benchmark figures (not a test).
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// The reception-addon rules engine (see docs/rules.md).
    Rules {
        #[command(subcommand)]
        which: RulesCommand,
    },
    /// Device administration.
    Device {
        #[command(subcommand)]
        which: DeviceCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        which: AuditCommand,
    },
    /// Dashboard rollups.
    Rollups {
        #[command(subcommand)]
        which: RollupsCommand,
    },
    /// Periodic database chores (CronJob): partitions ahead, retention purge, empty old partitions.
    Maintain {
        /// Months of partitions to keep ready beyond the current one.
        #[arg(long, default_value_t = 3)]
        months_ahead: u32,
        /// Report what the retention purge would remove, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Retention settings.
    Retention {
        #[command(subcommand)]
        which: RetentionCommand,
    },
    /// Write a consistent backup (database and object store) into a new folder.
    Backup {
        /// The folder to create (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into an empty database and object store, then verify every table and object.
    Restore {
        /// The backup folder (with manifest.json).
        #[arg(long)]
        from: PathBuf,
    },
    /// GET a health endpoint and exit 0 on a 2xx answer (container healthchecks; the image has no curl).
    Probe {
        #[arg(default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
    },
    /// Print the current TOTP code for a setup key (for the demo, or without an authenticator app).
    TotpCode {
        /// The base32 setup key shown at enrolment (the demo prints its owner's).
        secret: String,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Record how long a tenant's visit records must be kept: medical-record (5 years, part of the
    /// 診療録) or billing (3 years, records of 療養の給付).
    Set {
        #[arg(long)]
        tenant: onshi_domain::TenantId,
        #[arg(long)]
        basis: String,
    },
}

#[derive(Subcommand)]
enum RollupsCommand {
    /// Recompute a tenant's dashboard rollups from its visits.
    Rebuild {
        #[arg(long)]
        tenant: onshi_domain::TenantId,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute every tenant's hash chain and check it against the signed anchors in the object store;
    /// exits 1 and names each altered, missing or reordered entry, and every bad anchor.
    Verify,
    /// Write an anchor of every chain's head to the object store now.
    Anchor,
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Evaluate visits (JSON from FILE, or stdin) and print one decision per visit as JSON.
    Eval {
        file: Option<PathBuf>,
        /// A rules file to use instead of the built-in one (a new revision is a data change).
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Validate a rules file and print a summary.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Rules engine: a month of a 100-clinic group (about 200,000 visits with their history), evaluated
    /// in full, then again after late visits arrive.
    Rules {
        #[arg(long, default_value_t = 100)]
        clinics: usize,
        #[arg(long, default_value_t = 2000)]
        visits_per_clinic: usize,
    },
    /// An agent's outbox holding N events after an outage: time until the cloud has applied them all.
    Drain {
        #[arg(long, default_value_t = 100_000)]
        events: usize,
    },
    /// The agent binary's memory and CPU at idle and while reading files (Linux).
    AgentFootprint {
        /// Result files written while measuring "under load".
        #[arg(long, default_value_t = 2000)]
        files: usize,
    },
    /// Dashboards at scale (PostgreSQL): seeds clinics x years of visits and rollups, then times the pages.
    Dashboard {
        #[arg(long, default_value_t = 100)]
        clinics: usize,
        #[arg(long, default_value_t = 3)]
        years: u32,
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Measure the group a previous run seeded in this database instead of seeding another (seeding
        /// 100 clinics × 3 years takes about ten minutes).
        #[arg(long)]
        reuse: bool,
    },
    /// Live feed latency: an agent's POST until the event arrives on a page's SSE stream.
    Feed {
        #[arg(long, default_value_t = 100)]
        samples: usize,
        /// Single receptions a second posted by other agents meanwhile (latency under load).
        #[arg(long, default_value_t = 0)]
        load: u32,
    },
    /// End-to-end ingest: HTTP 202 rate and applied rate.
    Ingest {
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        #[arg(long, default_value_t = 200)]
        batch: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Queue consumers applying batches (scale-out of workers).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Post heartbeats instead of receptions (the request an idle agent sends every 20 s).
        #[arg(long)]
        heartbeats: bool,
        /// Agents sending (each with its own token), taking turns; default: one per client. Heartbeats
        /// without it are fleet-shaped: one heartbeat per agent, after an untimed round that leaves the
        /// authentication cache as a fleet sending every 20 s keeps it (one request in 15 reads the
        /// agent from the database).
        #[arg(long)]
        devices: Option<usize>,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Create a one-time code that enrolls one agent for a clinic (`onshi-agent enroll --code …`).
    EnrollCode {
        #[arg(long)]
        tenant: onshi_domain::TenantId,
        #[arg(long)]
        clinic: onshi_domain::ClinicId,
        /// Hours until the code expires.
        #[arg(long, default_value_t = 24)]
        ttl_hours: i64,
    },
    /// Mint a short-lived access token for an existing device (until enrollment lands).
    Token {
        #[arg(long)]
        tenant: onshi_domain::TenantId,
        #[arg(long)]
        device: onshi_domain::DeviceId,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // Several dependencies bring rustls; pick one process-wide crypto provider before any of them runs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("onshi: {e}");
            return ExitCode::from(2);
        }
    };
    // The demo's terminal shows its banner and warnings, not a stream of request lines: the full log goes
    // to a file in its data folder.
    let mut log_file = None;
    if let Command::Demo { data_dir, .. } = &cli.command {
        config.data_dir = data_dir.clone().unwrap_or_else(|| config.data_dir.join("demo"));
        log_file = Some(config.data_dir.join("onshi.log"));
    }
    if matches!(cli.command, Command::Demo { .. } | Command::Serve) {
        // Links in e-mails must reach this server: left at its default, the public URL follows `listen`.
        if config.public_url == DEFAULT_PUBLIC_URL
            && let Some(url) = public_url_for(&config.listen)
        {
            config.public_url = url;
        }
    }
    let service = match &cli.command {
        Command::Worker => "onshi-worker",
        _ => "onshi-api",
    };
    // Held to the end of main: dropping it flushes spans still waiting for export.
    let _telemetry = onshi_telemetry::init(&config, service, log_file.as_deref());
    match run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain: "database: could not connect: connection refused".
            eprintln!("onshi: {}", onshi_telemetry::Chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `public_url` as shipped in onshi.default.toml.
const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";

/// The URL people on this machine use for a listen address (`0.0.0.0` and `::` mean this host).
fn public_url_for(listen: &str) -> Option<String> {
    let addr: std::net::SocketAddr = listen.parse().ok()?;
    Some(if addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    })
}

fn load_rules(file: Option<&std::path::Path>) -> Result<onshi_rules::RuleSet, String> {
    onshi::startup::load_rules(file).map_err(|e| e.to_string())
}

/// `onshi rules …`: runs without configuration or services, for integrations and billing staff.
fn rules_command(which: RulesCommand) -> ExitCode {
    let result = match which {
        RulesCommand::Eval { file, rules } => (|| {
            let rules = load_rules(rules.as_deref())?;
            let input = match &file {
                Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
                None => {
                    let mut buf = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|e| format!("stdin: {e}"))?;
                    buf
                }
            };
            let input = onshi_rules::EvalInput::from_json(&input).map_err(|e| e.to_string())?;
            let decisions = onshi_rules::evaluate(&rules, &input);
            let json = serde_json::to_string_pretty(&decisions).map_err(|e| e.to_string())?;
            println!("{json}");
            Ok(())
        })(),
        RulesCommand::Check { file } => load_rules(Some(&file)).map(|set| {
            let unverified = set.rules.iter().filter(|r| !r.verified).count();
            println!("{}: {} rules, {unverified} marked unverified", file.display(), set.rules.len());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("onshi rules: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command, config: Config) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Rules { which } => {
            let code = rules_command(which);
            if code != ExitCode::SUCCESS {
                std::process::exit(2);
            }
        }
        Command::Demo { rate, .. } => onshi::demo::run(config, rate).await?,
        Command::Serve => {
            let adapters = Adapters::connect(&config).await?;
            let app = Application::build(&config, adapters, Options { with_worker: false }).await?;
            tracing::info!(port = app.port, "listening");
            app.spawn().run_until_signal().await;
        }
        Command::Worker => run_worker(&config).await?,
        Command::Migrate => {
            let store = onshi_store::Store::connect(config.effective_migration_url().expose_secret(), 2).await?;
            let pending = store.pending_migrations().await?;
            store.migrate().await?;
            println!("applied {pending} migration(s)");
            if store.backend() == sea_orm::DatabaseBackend::Postgres {
                use onshi_migrations::partitions;
                let now = partitions::months_from_now(0);
                let created = partitions::ensure(store.connection(), now, partitions::add_months(now, 3)).await?;
                println!("created {} monthly partition(s)", created.len());
            }
        }
        Command::Bench { which: BenchCommand::Rules { clinics, visits_per_clinic } } => {
            bench::rules(clinics, visits_per_clinic)?;
        }
        Command::Bench { which: BenchCommand::Drain { events } } => bench::drain(config, events).await?,
        Command::Bench { which: BenchCommand::Feed { samples, load } } => bench::feed(config, samples, load).await?,
        Command::Bench { which: BenchCommand::Dashboard { clinics, years, requests, reuse } } => {
            bench::dashboard(config, bench::DashboardBench { clinics, years, requests, reuse }).await?
        }
        Command::Bench { which: BenchCommand::AgentFootprint { files } } => {
            bench::agent_footprint(config, files).await?
        }
        Command::Bench { which: BenchCommand::Ingest { events, batch, concurrency, workers, heartbeats, devices } } => {
            bench::ingest(config, IngestBench { events, batch, concurrency, workers, heartbeats, devices }).await?;
        }
        Command::Device { which: DeviceCommand::EnrollCode { tenant, clinic, ttl_hours } } => {
            if !(1..=24 * 14).contains(&ttl_hours) {
                return Err("--ttl-hours must be between 1 and 336".into());
            }
            let store = onshi_store::Store::connect(config.effective_database_url().expose_secret(), 2).await?;
            let scoped = store.tenant(onshi_store::TenantScope::operator(tenant));
            let scope = scoped
                .clinic_scope(clinic, &onshi_domain::ClinicAccess::All)
                .await?
                .ok_or_else(|| format!("no clinic {clinic} in tenant {tenant}"))?;
            let code = scoped.create_enrollment_code(&scope, time::Duration::hours(ttl_hours)).await?;
            println!("{code}");
            eprintln!(
                "one-time code for clinic {clinic}, valid {ttl_hours} h: onshi-agent enroll --server URL --code {code}"
            );
        }
        Command::Audit { which: AuditCommand::Verify } => {
            let store = onshi_store::Store::connect(config.effective_migration_url().expose_secret(), 2).await?;
            let objects = onshi::startup::object_store(&config).await?;
            let anchored = onshi::anchor::read(&objects, &onshi::startup::anchor_key(&config)).await?;
            let report = store.verify_audit_anchored(&anchored.heads).await?;
            let problems: Vec<&String> = anchored.problems.iter().chain(&report.problems).collect();
            for problem in &problems {
                println!("TAMPERED {problem}");
            }
            if anchored.unsigned {
                println!("note: anchors are not signed (no jwt_secret configured); they still show removed entries");
            }
            println!(
                "{} chain(s), {} entries, {} anchor(s), {} problem(s)",
                report.chains,
                report.rows,
                anchored.anchors,
                problems.len()
            );
            if !problems.is_empty() {
                std::process::exit(1);
            }
        }
        Command::Audit { which: AuditCommand::Anchor } => {
            let store = onshi_store::Store::connect(config.effective_migration_url().expose_secret(), 2).await?;
            let objects = onshi::startup::object_store(&config).await?;
            match onshi::anchor::write(&store, &objects, &onshi::startup::anchor_key(&config), None).await? {
                Some(heads) => println!("anchored {} chain head(s)", heads.len()),
                None => println!("no audit entries yet; nothing to anchor"),
            }
        }
        Command::Rollups { which: RollupsCommand::Rebuild { tenant } } => {
            let store = onshi_store::Store::connect(config.effective_database_url().expose_secret(), 2).await?;
            let progress = onshi::progress::Progress::new("rollups rebuild", None);
            let n = store.tenant(onshi_store::TenantScope::operator(tenant)).rebuild_rollups().await?;
            progress.finish();
            println!("rebuilt the rollups of {tenant} from {n} visits");
        }
        Command::Maintain { months_ahead, dry_run } => {
            let progress = onshi::progress::Progress::new("maintain", None);
            let report = onshi::maintenance::maintain(&config, months_ahead, dry_run).await?;
            progress.finish();
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Retention { which: RetentionCommand::Set { tenant, basis } } => {
            let basis = onshi_domain::RetentionBasis::parse(&basis)
                .ok_or("--basis must be medical-record (5 years) or billing (3 years)")?;
            let store = onshi_store::Store::connect(config.effective_database_url().expose_secret(), 2).await?;
            let actor = onshi_store::AuditEntry::new(
                None,
                "operator (onshi retention set)",
                AuditAction::RetentionBasis,
                &tenant.to_string(),
                onshi_store::AuditResult::Success,
            );
            store.tenant(onshi_store::TenantScope::operator(tenant)).set_retention_basis(basis, &actor).await?;
            println!("{tenant}: visit records kept {} years ({})", basis.years(), basis.as_str());
        }
        Command::Backup { out } => {
            let manifest = onshi::backup::backup(&config, &out).await?;
            let rows: i64 = manifest.tables.values().map(|t| t.rows).sum();
            println!(
                "backup of {} ({} tables, {rows} rows, {} objects) written to {}",
                manifest.database,
                manifest.tables.len(),
                manifest.objects.len(),
                out.display()
            );
        }
        Command::Restore { from } => {
            let report = onshi::backup::restore(&config, &from).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.verified() {
                eprintln!("onshi restore: the restored data does not match the backup's manifest");
                std::process::exit(1);
            }
        }
        Command::Probe { url } => {
            let response =
                reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?.get(&url).send().await?;
            let status = response.status();
            println!("{status} {}", response.text().await.unwrap_or_default());
            if !status.is_success() {
                std::process::exit(1);
            }
        }
        Command::TotpCode { secret } => {
            let secret = onshi_identity::TotpSecret::from_base32(&secret).map_err(|e| e.to_string())?;
            let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
            println!("{}", secret.code_at(now)?);
        }
        Command::Device { which: DeviceCommand::Token { tenant, device } } => {
            let store = onshi_store::Store::connect(config.effective_database_url().expose_secret(), 2).await?;
            let found = store
                .tenant(onshi_store::TenantScope::operator(tenant))
                .device(device)
                .await?
                .ok_or("no such device in that tenant")?;
            if config.jwt_secret.is_none() {
                return Err("jwt_secret must be set, or the token will not verify in any server".into());
            }
            let keys = onshi::startup::device_keys(&config);
            println!("{}", keys.mint(tenant, found.clinic, device)?);
        }
    }
    Ok(())
}

//! `onshi-agent`: the edge agent that runs at each clinic.
//!
//! It will read the 資格確認端末's result files, watch the card reader and the VPN link, buffer every
//! event durably on local disk and deliver it to Onshi Cloud (see docs/agent.md). This binary currently
//! carries only its command-line shape; the agent's features land with the edge agent issue.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "onshi-agent",
    version,
    about = "Onshi edge agent: reads オンライン資格確認 results at the clinic and delivers them to Onshi Cloud",
    long_about = "Onshi edge agent: reads オンライン資格確認 results at the clinic and delivers them to Onshi Cloud.\n\nNo subcommands are available yet; they arrive with the edge agent (docs/agent.md)."
)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!("onshi-agent {}: no subcommands yet; see `onshi-agent --help`.", env!("CARGO_PKG_VERSION"));
}

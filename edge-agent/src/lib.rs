//! `onshi-agent`: the edge agent that runs at each clinic beside the 資格確認端末.
//!
//! It reads the terminal's result files (read-only), turns each into events of the shared schema
//! (`onshi-domain`), keeps them in a durable outbox on local disk, and delivers them to Onshi Cloud; it
//! also reports its own health, the card reader's and the VPN link's. See docs/agent.md.
//!
//! Modules follow the data: `source` (the terminal's folders) → `oqs` (files → events) → `outbox` (durable
//! queue) → `uplink` (the cloud); `agent` runs them, `simulate` writes realistic files for tests and demos.

pub mod agent;
pub mod check;
pub mod config;
pub mod credentials;
pub mod oqs;
pub mod outbox;
pub mod probe;
pub mod simulate;
pub mod source;
pub mod uke;
pub mod uplink;

pub use agent::{Agent, AgentError};
pub use config::AgentConfig;
pub use credentials::Credentials;

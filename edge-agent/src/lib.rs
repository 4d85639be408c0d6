//! `onshi-agent`: the edge agent that runs at each clinic beside the 資格確認端末.
//!
//! It reads the terminal's result files (read-only), turns each into events of the shared schema
//! (`onshi-domain`), keeps them in a durable outbox on local disk, and delivers them to Onshi Cloud; it
//! also reports its own health, the card reader's and the VPN link's. See docs/agent.md.

pub mod oqs;
pub mod simulate;

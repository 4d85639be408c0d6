//! The `onshi` binary's library: start-up wiring shared by `serve`, `worker`, `demo`, `bench` and the
//! integration tests. Each adapter is chosen here, once, from the configuration; nothing above this
//! layer knows which backend it talks to.

pub mod alerts;
pub mod anchor;
pub mod backup;
pub mod bench;
pub mod demo;
mod demo_claims;
pub mod device_alerts;
pub mod mail_sender;
pub mod maintenance;
pub mod progress;
pub mod radar;
pub mod startup;
pub mod webhooks;

pub use startup::{Adapters, Application, StartupError};

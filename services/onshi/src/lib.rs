//! The `onshi` binary's library: start-up wiring shared by `serve`, `worker`, `demo`, `bench` and the
//! integration tests. Each adapter is chosen here, once, from the configuration; nothing above this
//! layer knows which backend it talks to.

pub mod alerts;
pub mod bench;
pub mod demo;
pub mod startup;
pub mod telemetry;

pub use startup::{Adapters, Application, StartupError};

//! What operators see of a running process: Prometheus metrics, trace context carried from the API to the
//! worker, and the log/trace subscriber (JSON logs in production, OTLP export when configured).
//!
//! Nothing here may carry personal data: metric labels are route patterns, fixed outcomes and queue roles,
//! never ids, addresses or patient references; see docs/operations.md for the full list.

pub mod chain;
pub mod metrics;
pub mod subscriber;
pub mod trace;

pub use chain::Chain;
pub use metrics::{Metrics, metrics};
pub use subscriber::{Telemetry, init};

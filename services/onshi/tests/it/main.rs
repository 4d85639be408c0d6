//! Integration suite: the real application on a random port, driven over HTTP, against real services.
//!
//! Every scenario runs twice, as `<scenario>::embedded` (SQLite, in-process queue, memory cache, local
//! folder) and `<scenario>::full` (PostgreSQL, RabbitMQ, Redis, S3), from one body. Full mode needs the
//! `ONSHI_TEST_*` variables (scripts/test sets them); without them the full runs are skipped with a
//! note, unless `ONSHI_TEST_REQUIRE_FULL=1`, which CI sets, turns a missing service into a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults;
mod helpers;
mod mailbox;

mod accounts;
mod adapters;
mod agent;
mod alerts;
mod api;
mod billing;
mod browser;
mod claims;
mod dashboards;
mod durability;
mod followups;
mod ingest;
mod input;
mod onboarding;
mod operations;
mod outages;
mod pages;
mod radar;
mod rls;
mod scale;
mod throughput;
mod webhooks;

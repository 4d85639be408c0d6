//! Billing review pages: a month of a clinic with the reception addon the rules engine computes for each
//! visit, reviewed one by one or in bulk, closed (and reopened by an owner), exported to the object store;
//! and the clinic's 届出 and notified 利用率, which are the engine's clinic input.
//!
//! - `month`: the month as the engine decides it, or as it was closed (the snapshot), with its legend;
//! - `group`: every clinic's month at a glance;
//! - `page`: one clinic-month, its filters, rows and bulk form;
//! - `review`: a visit's review, the bulk step, closing and reopening;
//! - `export`: the CSV a レセコン user can match, stored with its hash;
//! - `settings`: 届出 and 利用率.

mod export;
mod group;
mod month;
mod official;
mod page;
mod review;
mod settings;

pub(crate) use export::{differences, download, export};
pub(crate) use group::group;
pub(crate) use month::Snapshot;
pub(crate) use official::import_official;
pub(crate) use page::month_page;
pub(crate) use review::{bulk, close_month, reopen_month, review_visit};
pub(crate) use settings::{set_standards, set_usage_rate};

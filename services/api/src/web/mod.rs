//! The browser side of the API: sessions, CSRF, the access guard and the page language.

pub mod csv;
pub mod error_page;
pub mod etag;
pub mod guard;
pub mod i18n;
pub mod idempotency;
pub mod input;
pub mod observe;
pub mod page;
pub mod session;
pub mod time;

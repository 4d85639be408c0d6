//! sea-orm entities, one module per table. They are private to the store crate: callers get domain
//! types back from the scoped repositories, never a row they could re-query without a tenant.

pub(crate) mod clinics;
pub(crate) mod devices;
pub(crate) mod enrollment_codes;
pub(crate) mod raw_events;
pub(crate) mod tenants;
pub(crate) mod visits;

//! Typed identifiers. Each wraps a UUID and prints with a readable prefix (`tnt_…`, `cln_…`), so an id in a
//! log line or URL says what it names, and a clinic id can never be passed where a tenant id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("expected an id starting with `{expected}_`")]
    WrongPrefix { expected: &'static str },
    #[error("not a valid id: {0}")]
    Malformed(#[from] uuid::Error),
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id (UUIDv7), so ids sort roughly by creation.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0.simple())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                let rest = s
                    .strip_prefix($prefix)
                    .and_then(|r| r.strip_prefix('_'))
                    .ok_or(IdError::WrongPrefix { expected: $prefix })?;
                Ok(Self(Uuid::parse_str(rest)?))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// A clinic group (医療法人 or any customer): the tenant boundary.
    TenantId,
    "tnt"
);
prefixed_id!(
    /// One clinic (医療機関) of a tenant.
    ClinicId,
    "cln"
);
prefixed_id!(
    /// One enrolled edge agent at a clinic.
    DeviceId,
    "dev"
);

prefixed_id!(
    /// A person's account in a tenant.
    UserId,
    "usr"
);

prefixed_id!(
    /// An integration API token (the id, not the secret).
    ApiTokenId,
    "tok"
);

/// The id an agent gives an event when it first sees it. Agents generate plain UUIDs, so this id has no
/// prefix; it is unique per (tenant, device), which is what makes a resend harmless.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_text_form() {
        let id = TenantId::new();
        let text = id.to_string();
        assert!(text.starts_with("tnt_"));
        assert_eq!(text.parse::<TenantId>(), Ok(id));
    }

    #[test]
    fn an_id_of_another_kind_is_refused() {
        let clinic = ClinicId::new().to_string();
        assert_eq!(clinic.parse::<TenantId>(), Err(IdError::WrongPrefix { expected: "tnt" }));
    }

    #[test]
    fn ids_serialize_as_prefixed_strings() {
        let id = DeviceId::new();
        let json = serde_json::to_string(&id).unwrap_or_default();
        assert_eq!(json, format!("\"{id}\""));
        let back: DeviceId = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, id);
    }
}

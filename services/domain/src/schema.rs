//! OpenAPI schemas for the domain's own string types (ids, codes, months, pseudonyms). Their serde forms
//! are hand-written strings, so `#[derive(ToSchema)]` would describe the Rust shape instead; each schema
//! here says what the parser accepts, with a pattern and an example, so a generated client and a
//! property-based tester produce values that parse.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::claims::Day;
use crate::codes::{InsurerNumber, MedicalInstitutionCode};
use crate::event::PatientRef;
use crate::ids::{ApiTokenId, ClinicId, DeviceId, EventId, TenantId, UserId};
use crate::month::YearMonth;

fn string(description: &str, pattern: Option<&str>, format: Option<&str>, example: &str) -> RefOr<Schema> {
    let mut builder = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .examples([serde_json::Value::from(example)]);
    if let Some(pattern) = pattern {
        builder = builder.pattern(Some(pattern));
    }
    if let Some(format) = format {
        builder = builder.format(Some(utoipa::openapi::SchemaFormat::Custom(format.to_owned())));
    }
    builder.into()
}

macro_rules! string_schema {
    ($ty:ty, $name:literal, $description:expr, $pattern:expr, $format:expr, $example:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string($description, $pattern, $format, $example)
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

macro_rules! prefixed_id_schema {
    ($ty:ty, $name:literal, $prefix:literal, $what:literal) => {
        string_schema!(
            $ty,
            $name,
            $what,
            Some(concat!("^", $prefix, "_[0-9a-f]{32}$")),
            None,
            concat!($prefix, "_0192f0c1a2b37c4d8e9f0a1b2c3d4e5f")
        );
    };
}

prefixed_id_schema!(TenantId, "TenantId", "tnt", "A clinic group (tenant).");
prefixed_id_schema!(ClinicId, "ClinicId", "cln", "A clinic or pharmacy of the group.");
prefixed_id_schema!(DeviceId, "DeviceId", "dev", "An enrolled edge agent.");
prefixed_id_schema!(UserId, "UserId", "usr", "A staff account.");
prefixed_id_schema!(ApiTokenId, "ApiTokenId", "tok", "An integration API token (its id, never its secret).");

string_schema!(
    EventId,
    "EventId",
    "The UUID an agent gives an event once and keeps across resends.",
    None,
    Some("uuid"),
    "0192f0c1-a2b3-7c4d-8e9f-0a1b2c3d4e5f"
);
string_schema!(
    MedicalInstitutionCode,
    "MedicalInstitutionCode",
    "The 10-digit 医療機関コード (都道府県番号 2, 点数表番号 1, 医療機関コード 7 with its check digit).",
    Some("^[0-9]{10}$"),
    None,
    "2711234562"
);
string_schema!(
    InsurerNumber,
    "InsurerNumber",
    "A 保険者番号 (the insurer's number: 8 digits, 6 for 国保). An institution's number, not a person's.",
    Some("^([0-9]{6}|[0-9]{8})$"),
    None,
    "06139999"
);
string_schema!(
    PatientRef,
    "PatientRef",
    "A keyed pseudonym of an insured person (HMAC-SHA256 with the group's key, computed at the clinic), 64 \
     lowercase hex characters. Never a name, birth date, insurance number or 個人番号.",
    Some("^[0-9a-f]{64}$"),
    None,
    "3f1c6e0b9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b"
);
string_schema!(
    YearMonth,
    "YearMonth",
    "A calendar month, YYYY-MM (2000-01 to 2199-12).",
    Some("^(20[0-9]{2}|21[0-9]{2})-(0[1-9]|1[0-2])$"),
    None,
    "2026-06"
);
string_schema!(
    Day,
    "Day",
    "A calendar day, YYYY-MM-DD (2000-01-01 to 2199-12-31).",
    Some("^(20[0-9]{2}|21[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"),
    Some("date"),
    "2026-06-01"
);

//! The API contract: an OpenAPI 3.1 document generated from the handlers' `#[utoipa::path]` annotations
//! and the domain's schemas, served as JSON at `/api/v1/openapi.json` and as a page at `/developers/api`.
//!
//! The page is rendered here from the same document (no JavaScript renderer, nothing fetched from
//! elsewhere), so it works under the site's CSP and on machines without internet access. A unit test
//! below fails when a route of `ROUTES` under `/api/` is missing from the document.

use std::sync::OnceLock;

use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde_json::Value;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::ApiError;
use crate::web::guard::Page;
use crate::web::page::ok;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Onshi Cloud API",
        version = "1.0.0",
        description = "Agents deliver オンライン資格確認 results and heartbeats; a clinic group's own systems read \
                       its clinics, visits, マイナ保険証利用率 and audit log with API tokens. Within v1 changes are \
                       additive only (docs/api.md). Errors share one body: `{\"error\": {\"code\", \"message\", \
                       \"field\"?}}`."
    ),
    paths(
        super::ingest::post_events,
        super::ingest::post_claims,
        super::agent::enroll,
        super::agent::token,
        super::api_v1::clinics,
        super::api_v1::receptions,
        super::api_v1::visits,
        super::api_v1::usage,
        super::api_v1::billing_month,
        super::api_v1::fleet,
        super::api_v1::alerts,
        super::api_v1::audit,
        document,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "agent", description = "The edge agent: enrollment, tokens and ingest (device tokens)."),
        (name = "read", description = "The group's data, read with an API token of the operation's scope."),
        (name = "contract", description = "This document."),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`onshi_pat_…`) created by an owner or admin under Settings → API tokens. \
                         The operation's scope must be among the token's scopes and its creator's role must \
                         allow it.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "device_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A device access token from `POST /api/v1/agent/token`."))
                    .build(),
            ),
        );
    }
}

/// The document, built once per process.
pub fn openapi_document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The document as JSON bytes with their ETag.
fn document_json() -> &'static (Vec<u8>, String) {
    static JSON: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    JSON.get_or_init(|| {
        // Serialising a document of our own types cannot fail; an empty object would show it did.
        let bytes = serde_json::to_vec(openapi_document()).unwrap_or_else(|_| b"{}".to_vec());
        let etag = crate::web::etag::etag_of(&bytes);
        (bytes, etag)
    })
}

/// This OpenAPI document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "contract",
    operation_id = "openapi_document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
    ),
    security(())
)]
pub(crate) async fn document(req: HttpRequest) -> HttpResponse {
    let (bytes, etag) = document_json();
    crate::web::etag::conditional_json(&req, bytes.clone(), etag, "public, no-cache")
}

/// A piece of a description: `code` for what the document writes between backticks.
struct Segment {
    code: bool,
    text: String,
}

/// A description split at its backticks, so `Authorization: Bearer` shows as code and not as text.
fn segments(text: &str) -> Vec<Segment> {
    text.split('`')
        .enumerate()
        .filter(|(_, t)| !t.is_empty())
        .map(|(i, t)| Segment { code: i % 2 == 1, text: t.to_owned() })
        .collect()
}

/// One operation as the reference page lists it.
struct OperationView {
    anchor: String,
    method: String,
    path: String,
    summary: Vec<Segment>,
    description: Vec<Segment>,
    auth: String,
    params: Vec<ParamView>,
    body: Option<String>,
    responses: Vec<ResponseView>,
}

struct ResponseView {
    status: String,
    description: Vec<Segment>,
    schema: String,
}

struct ParamView {
    name: String,
    location: String,
    required: bool,
    kind: String,
    description: Vec<Segment>,
}

struct SchemaView {
    name: String,
    description: Vec<Segment>,
    kind: String,
    fields: Vec<ParamView>,
}

#[derive(Template)]
#[template(path = "api_reference.html")]
struct ReferencePage {
    page: Page,
    title: String,
    version: String,
    description: Vec<Segment>,
    operations: Vec<OperationView>,
    schemas: Vec<SchemaView>,
}

/// The reference page: every operation and schema of the document, in document order.
pub(crate) async fn reference(page: Page) -> Result<HttpResponse, ApiError> {
    let doc = serde_json::to_value(openapi_document()).map_err(ApiError::internal)?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut operations = Vec::new();
    // In the document's own order (agent, read, contract), which a JSON value's sorted map loses.
    for path in openapi_document().paths.paths.keys() {
        let item = &doc["paths"][path];
        for (method, op) in item.as_object().into_iter().flatten() {
            let auth = match op.get("security").and_then(Value::as_array) {
                Some(reqs) => reqs
                    .iter()
                    .filter_map(Value::as_object)
                    .flat_map(|r| r.iter())
                    .map(|(scheme, scopes)| {
                        let scopes: Vec<_> = scopes.as_array().into_iter().flatten().map(text).collect();
                        if scopes.is_empty() { scheme.clone() } else { format!("{scheme} ({})", scopes.join(", ")) }
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                None => String::new(),
            };
            let params = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| ParamView {
                    name: text(&p["name"]),
                    location: text(&p["in"]),
                    required: p["required"].as_bool().unwrap_or(false),
                    kind: kind(&p["schema"]),
                    description: segments(&text(&p["description"])),
                })
                .collect();
            let body = op["requestBody"]["content"]
                .as_object()
                .and_then(|c| c.values().next())
                .map(|media| kind(&media["schema"]));
            let responses = op["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(status, r)| {
                    let schema = r["content"]
                        .as_object()
                        .and_then(|c| c.values().next())
                        .map(|media| kind(&media["schema"]))
                        .unwrap_or_default();
                    ResponseView { status: status.clone(), description: segments(&text(&r["description"])), schema }
                })
                .collect();
            operations.push(OperationView {
                anchor: text(&op["operationId"]),
                method: method.to_uppercase(),
                path: path.clone(),
                summary: segments(&text(&op["summary"])),
                description: segments(&text(&op["description"])),
                auth,
                params,
                body,
                responses,
            });
        }
    }
    let schemas = doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, schema)| {
            let required: Vec<&str> =
                schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let fields = schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(field, s)| ParamView {
                    name: field.clone(),
                    location: String::new(),
                    required: required.contains(&field.as_str()),
                    kind: kind(s),
                    description: segments(&text(&s["description"])),
                })
                .collect();
            SchemaView {
                name: name.clone(),
                description: segments(&text(&schema["description"])),
                kind: kind(schema),
                fields,
            }
        })
        .collect();
    ok(ReferencePage {
        page,
        title: text(&doc["info"]["title"]),
        version: text(&doc["info"]["version"]),
        description: segments(&text(&doc["info"]["description"])),
        operations,
        schemas,
    })
}

/// A schema in a few words: `ClinicId`, `array of VisitItem`, `string (date)`, `one of: a, b`.
fn kind(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema[combinator].as_array() {
            let parts: Vec<String> = parts.iter().map(kind).collect();
            return parts.join(" | ");
        }
    }
    // An externally tagged variant: `{qualification: QualificationCheck}`.
    if let Some(props) = schema["properties"].as_object()
        && props.len() == 1
        && let Some((name, inner)) = props.iter().next()
    {
        return format!("{{{name}: {}}}", kind(inner));
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> =
            values.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect();
        return format!("one of: {}", values.join(", "));
    }
    let types: Vec<String> = match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let mut out = types
        .iter()
        .map(|t| match t.as_str() {
            "array" => format!("array of {}", kind(&schema["items"])),
            other => other.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" | ");
    if let Some(format) = schema["format"].as_str() {
        out.push_str(&format!(" ({format})"));
    }
    if out.is_empty() { "any".to_owned() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_route_is_in_the_document() {
        let doc = serde_json::to_value(openapi_document()).expect("document serialises");
        let missing: Vec<String> = crate::routes::ROUTES
            .iter()
            .filter(|r| r.path.starts_with("/api/"))
            .filter(|r| doc["paths"][r.path][r.method].is_null())
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(missing.is_empty(), "routes missing from the OpenAPI document: {missing:?}");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
    }

    #[test]
    fn the_document_lists_no_route_that_is_not_served() {
        let doc = serde_json::to_value(openapi_document()).expect("document serialises");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                assert!(
                    crate::routes::ROUTES.iter().any(|r| r.path == path && r.method == method),
                    "{method} {path} is documented but not routed"
                );
            }
        }
    }

    #[test]
    fn every_operation_states_its_security_and_every_schema_reference_resolves() {
        let doc = serde_json::to_value(openapi_document()).expect("document serialises");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                assert!(op["security"].is_array(), "{method} {path} does not say how it is authenticated");
            }
        }
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(!doc["components"]["schemas"][name].is_null(), "schema {name} is referenced but not defined");
        }
    }

    #[test]
    fn backticks_become_code() {
        let s = segments("A token for `Authorization: Bearer` on `x`");
        let parts: Vec<(bool, &str)> = s.iter().map(|s| (s.code, s.text.as_str())).collect();
        assert_eq!(parts, [(false, "A token for "), (true, "Authorization: Bearer"), (false, " on "), (true, "x")]);
    }

    #[test]
    fn kinds_read_as_words() {
        assert_eq!(kind(&serde_json::json!({"$ref": "#/components/schemas/ClinicId"})), "ClinicId");
        assert_eq!(kind(&serde_json::json!({"type": "array", "items": {"type": "string"}})), "array of string");
        assert_eq!(kind(&serde_json::json!({"type": ["string", "null"], "format": "date"})), "string | null (date)");
        assert_eq!(kind(&serde_json::json!({"enum": ["a", "b"]})), "one of: a, b");
        let variant = serde_json::json!({"type": "object", "properties": {"heartbeat": {"$ref": "#/components/schemas/Heartbeat"}}});
        assert_eq!(kind(&variant), "{heartbeat: Heartbeat}");
    }
}

//! Conditional GETs: a strong `ETag` over an answer's bytes, and 304 without a body when the client sends
//! it back in `If-None-Match` (or `*`).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

/// The ETag of `bytes`: the first 128 bits of their SHA-256, quoted.
pub(crate) fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..32])
}

/// A JSON answer of `bytes` under `etag`, or 304 when the request already has it.
pub(crate) fn conditional_json(
    req: &HttpRequest,
    bytes: Vec<u8>,
    etag: &str,
    cache_control: &'static str,
) -> HttpResponse {
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag));
    let mut response = if unchanged { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response.insert_header((header::ETAG, etag)).insert_header((header::CACHE_CONTROL, cache_control));
    if unchanged { response.finish() } else { response.content_type("application/json").body(bytes) }
}

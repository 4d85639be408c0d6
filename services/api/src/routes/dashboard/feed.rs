//! The live feed of receptions (server-sent events).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use onshi_cache::CacheBackend;
use onshi_domain::ClinicId;

use crate::web::guard::Caller;
use crate::{ApiError, AppState};

/// Server-sent events of the caller's tenant: one `reception` event per applied batch that touched
/// visits of a clinic the caller may see (clinic id and count only, no patient data). Comments every
/// 15 s keep proxies from closing the stream.
pub(crate) async fn feed(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let channel = format!("feed:{}", caller.scope.tenant_id());
    let updates = state.cache.subscribe(&channel).await.map_err(ApiError::unavailable)?;
    let access = caller.clinics.clone();
    let events = updates.filter_map(move |payload| {
        let access = access.clone();
        async move {
            let note: serde_json::Value = serde_json::from_slice(&payload).ok()?;
            let clinic: ClinicId = note["clinic"].as_str()?.parse().ok()?;
            access
                .includes(clinic)
                .then(|| Ok::<_, actix_web::Error>(web::Bytes::from(format!("event: reception\ndata: {note}\n\n"))))
        }
    });
    let keepalive = tokio_stream_interval(Duration::from_secs(15))
        .map(|_| Ok::<_, actix_web::Error>(web::Bytes::from_static(b": keep-alive\n\n")));
    let hello =
        futures_util::stream::once(async { Ok::<_, actix_web::Error>(web::Bytes::from_static(b": connected\n\n")) });
    let stream = hello.chain(futures_util::stream::select(events, keepalive));
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

fn tokio_stream_interval(period: Duration) -> impl futures_util::Stream<Item = ()> {
    futures_util::stream::unfold(
        tokio::time::interval_at(tokio::time::Instant::now() + period, period),
        |mut i| async move {
            i.tick().await;
            Some(((), i))
        },
    )
}

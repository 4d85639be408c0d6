//! The live feed of receptions (server-sent events).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use onshi_cache::CacheBackend;
use onshi_domain::{ClinicId, feed};

use crate::web::guard::Caller;
use crate::{ApiError, AppState};

/// Server-sent events of the caller's tenant: one `reception` event per clinic the caller may see and
/// group of batches a worker applied there (the clinic, how many visits changed, and the newest
/// receptions' time, method and result; no patient data: see `onshi_domain::feed`). Comments every 15 s
/// keep proxies from closing the stream.
pub(crate) async fn feed(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let channel = feed::channel(caller.scope.tenant_id());
    let updates = state.cache.subscribe(&channel).await.map_err(ApiError::unavailable)?;
    let access = caller.clinics.clone();
    let events = updates.filter_map(move |payload| {
        let access = access.clone();
        async move {
            let events = reception_events(&payload, |clinic| access.includes(clinic));
            (!events.is_empty()).then(|| Ok::<_, actix_web::Error>(web::Bytes::from(events)))
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

/// The SSE events of one published message (see [`onshi_domain::feed::decode`]), keeping the notes of
/// clinics the caller may see.
fn reception_events(payload: &[u8], visible: impl Fn(ClinicId) -> bool) -> String {
    let mut events = String::new();
    for note in feed::decode(payload).into_iter().filter(|note| visible(note.clinic)) {
        // A note decoded from JSON encodes again.
        if let Ok(data) = serde_json::to_string(&note) {
            events.push_str(&format!("event: reception\ndata: {data}\n\n"));
        }
    }
    events
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_message_becomes_one_event_per_visible_clinic() {
        let (mine, theirs) = (ClinicId::new(), ClinicId::new());
        let group = serde_json::json!([
            { "clinic": mine.to_string(), "visits": 2, "receptions": [] },
            { "clinic": theirs.to_string(), "visits": 1, "receptions": [] },
        ]);
        let events = reception_events(group.to_string().as_bytes(), |c| c == mine);
        assert_eq!(events.matches("event: reception\n").count(), 1, "{events}");
        assert!(events.contains(&mine.to_string()) && !events.contains(&theirs.to_string()), "{events}");
        // A single note, as a worker of the previous release publishes it, still reads.
        let single = serde_json::json!({ "clinic": mine.to_string(), "visits": 1, "receptions": [] });
        assert!(reception_events(single.to_string().as_bytes(), |_| true).starts_with("event: reception\ndata: {"));
        assert!(reception_events(b"not json", |_| true).is_empty());
    }
}

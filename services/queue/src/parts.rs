//! Several payloads in one message, so concurrent publishers share one persistent write, one confirm and
//! one ack (see [`crate::Coalescing`]).
//!
//! The format is JSON lines: parts joined by `\n`, each a payload without a raw newline (compact JSON
//! never has one; [`crate::Coalescing`] refuses any other). A message of one part is that payload
//! unchanged, so messages written before parts existed read as one part. Each part keeps its own trace context: the `traceparent` header of a
//! message of several parts lists one value per part, comma-separated, empty where a part had none (a
//! W3C `traceparent` never contains a comma).

use crate::Headers;

/// The bytes and headers of one message carrying `parts` in order. Parts must not contain `\n`
/// ([`joinable`]); a message of one part is that part unchanged.
pub fn join(parts: &[(&[u8], &Headers)]) -> (Vec<u8>, Headers) {
    debug_assert!(parts.iter().all(|(p, _)| joinable(p)), "a part contains a newline");
    if let [(payload, headers)] = parts {
        return (payload.to_vec(), (*headers).clone());
    }
    let mut payload = Vec::with_capacity(parts.iter().map(|(p, _)| p.len() + 1).sum());
    for (i, (part, _)) in parts.iter().enumerate() {
        if i > 0 {
            payload.push(b'\n');
        }
        payload.extend_from_slice(part);
    }
    let traceparent = parts
        .iter()
        .any(|(_, h)| h.traceparent.is_some())
        .then(|| parts.iter().map(|(_, h)| h.traceparent.as_deref().unwrap_or("")).collect::<Vec<_>>().join(","));
    (payload, Headers { traceparent })
}

/// Whether `payload` can share a message with others.
pub fn joinable(payload: &[u8]) -> bool {
    !payload.contains(&b'\n')
}

/// The parts of a message, each with its own headers, in the order they were joined.
pub fn split<'a>(payload: &'a [u8], headers: &Headers) -> Vec<(&'a [u8], Headers)> {
    let parts: Vec<&[u8]> = payload.split(|b| *b == b'\n').collect();
    let traces: Vec<Option<String>> = match &headers.traceparent {
        Some(list) if parts.len() > 1 => {
            let values: Vec<&str> = list.split(',').collect();
            // A list that does not match the parts (written by something else) is not guessed at.
            if values.len() == parts.len() {
                values.into_iter().map(|v| (!v.is_empty()).then(|| v.to_owned())).collect()
            } else {
                vec![None; parts.len()]
            }
        }
        other => vec![other.clone(); parts.len()],
    };
    parts.into_iter().zip(traces).map(|(part, traceparent)| (part, Headers { traceparent })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(n: u8) -> Headers {
        Headers { traceparent: Some(format!("00-{:032x}-{:016x}-01", n, 7)) }
    }

    #[test]
    fn one_part_is_the_payload_unchanged() {
        let (payload, headers) = join(&[(br#"{"a":1}"#, &trace(1))]);
        assert_eq!(payload, br#"{"a":1}"#);
        assert_eq!(headers, trace(1));
        assert_eq!(split(&payload, &headers), vec![(&br#"{"a":1}"#[..], trace(1))]);
    }

    #[test]
    fn parts_come_back_in_order_with_their_own_trace() {
        let none = Headers::default();
        let (payload, headers) = join(&[(b"{\"a\":1}", &trace(1)), (b"{\"b\":2}", &none), (b"{\"c\":3}", &trace(3))]);
        assert_eq!(payload, b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}");
        let parts = split(&payload, &headers);
        assert_eq!(
            parts,
            vec![(&b"{\"a\":1}"[..], trace(1)), (&b"{\"b\":2}"[..], none.clone()), (&b"{\"c\":3}"[..], trace(3))]
        );
        // Without any trace context, no header at all.
        let (_, headers) = join(&[(b"x", &none), (b"y", &none)]);
        assert_eq!(headers, none);
    }

    #[test]
    fn a_trace_list_that_does_not_match_the_parts_is_dropped() {
        let parts = split(b"x\ny", &trace(1));
        assert_eq!(parts, vec![(&b"x"[..], Headers::default()), (&b"y"[..], Headers::default())]);
        assert!(!joinable(b"a\nb"));
        assert!(joinable(br#"{"s":"a\nb"}"#), "an escaped newline in JSON is not a raw one");
    }
}

//! Publishing concurrent requests' payloads as one message.
//!
//! Every publish costs the broker a persistent write and a confirm, and the consumer an ack: under the
//! load of agents that each send one reception per request, that was a third of a reception's CPU.
//! [`Coalescing`] keeps `publish`'s contract (it returns only once the payload can no longer be lost)
//! but lets the payloads that arrive while earlier messages wait for their confirms share the next
//! message ([`crate::parts`]). No payload waits for company: at rest each is published at once, alone,
//! exactly as before; only under load do messages fill up, by as much as the load makes them.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{Headers, MessageQueue, Queue, QueueError, parts};

/// Messages waiting for their confirm at the same time. While it is out, new payloads gather for the
/// next one: a payload waits at most for one confirm before its own message leaves. Measured with two:
/// messages half as full for no lower latency (docs/benchmarks.md, 2026-12-03, shared messages).
const IN_FLIGHT: usize = 1;

/// A message stops growing at this many parts or bytes. Bounded so one message stays one worker
/// transaction of modest size (the worker groups messages by these bytes too).
const MAX_PARTS: usize = 128;
const MAX_BYTES: usize = 256 * 1024;

/// How long a message may wait for its confirm before its callers are told it failed.
const CONFIRM_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Waiting publishes beyond which callers wait to hand theirs over (back-pressure, not a drop).
const BACKLOG: usize = 4096;

struct Pending {
    payload: Vec<u8>,
    headers: Headers,
    done: oneshot::Sender<Result<(), Arc<QueueError>>>,
}

/// A publisher that shares messages between concurrent callers. Cheap to clone; the task that publishes
/// ends when the last clone is dropped, after the messages it holds are published.
#[derive(Clone)]
pub struct Coalescing {
    tx: mpsc::Sender<Pending>,
}

impl Coalescing {
    /// Starts the publishing task on the current runtime.
    pub fn start(queue: Queue) -> Self {
        let (tx, rx) = mpsc::channel(BACKLOG);
        tokio::spawn(run(queue, rx));
        Self { tx }
    }

    /// Stores `payload` durably, alone or in a message with others; returns only once it can no longer
    /// be lost. Consumers read every message as parts, so a payload with a raw newline is refused.
    pub async fn publish(&self, payload: Vec<u8>, headers: Headers) -> Result<(), QueueError> {
        if !parts::joinable(&payload) {
            return Err(QueueError::NotOnePart);
        }
        let (done, confirmed) = oneshot::channel();
        self.tx.send(Pending { payload, headers, done }).await.map_err(|_| QueueError::Closed)?;
        match confirmed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(QueueError::Shared(e)),
            // The task ended without answering (only if the runtime is shutting down): not durable.
            Err(_) => Err(QueueError::Closed),
        }
    }
}

async fn run(queue: Queue, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => break,
            },
        };
        // Wait for a slot before gathering: what arrives meanwhile joins this message.
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let mut bytes = first.payload.len();
        let mut batch = vec![first];
        while batch.len() < MAX_PARTS {
            let Ok(next) = rx.try_recv() else { break };
            if bytes + 1 + next.payload.len() > MAX_BYTES {
                carried = Some(next);
                break;
            }
            bytes += 1 + next.payload.len();
            batch.push(next);
        }
        let queue = queue.clone();
        tokio::spawn(async move {
            let joined: Vec<(&[u8], &Headers)> = batch.iter().map(|p| (p.payload.as_slice(), &p.headers)).collect();
            let (payload, headers) = parts::join(&joined);
            // With one message out at a time, a confirm that never comes would hold every request of the
            // process: past the deadline its callers get an error (a 503 the agent retries; should the
            // confirm come after all, the resend is a harmless duplicate).
            let result = match tokio::time::timeout(CONFIRM_DEADLINE, queue.publish(&payload, &headers)).await {
                Ok(result) => result.map_err(Arc::new),
                Err(_) => Err(Arc::new(QueueError::Unconfirmed)),
            };
            drop(slot);
            if result.is_ok() {
                onshi_telemetry::metrics().ingest_messages.inc();
            }
            for pending in batch {
                // A caller that went away (its request was cancelled) no longer needs the answer.
                let _ = pending.done.send(result.clone());
            }
        });
    }
    // The last sender is gone: let the messages still out finish before the task ends.
    let _ = slots.acquire_many(IN_FLIGHT as u32).await;
}

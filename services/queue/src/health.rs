//! How a process's queue consumer is doing, shared between the worker loop (which updates it) and the
//! operator endpoints (which report it). Times are Unix seconds in atomics, so reading never blocks the
//! worker.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

#[derive(Debug, Default)]
pub struct ConsumerHealth {
    up: AtomicBool,
    /// When the consumer was last seen up or went down (start of the current state), Unix seconds.
    since: AtomicI64,
    /// When the last message arrived, Unix seconds; 0 before the first.
    last_delivery: AtomicI64,
    reconnects: AtomicU64,
}

/// What the health endpoints make of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerState {
    Consuming,
    /// Messages are ready but none has arrived for longer than the idle limit.
    Stalled,
    /// No consumer: the broker (or the embedded queue's database) is not reachable.
    Down,
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl ConsumerHealth {
    /// A consumer that has not started yet (down since now).
    pub fn new() -> Self {
        let h = Self::default();
        h.since.store(now(), Ordering::Relaxed);
        h
    }

    pub fn consuming(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            self.since.store(now(), Ordering::Relaxed);
            // Waiting for the first message counts from here, not from before the outage.
            self.last_delivery.store(now(), Ordering::Relaxed);
        }
    }

    pub fn lost(&self) {
        if self.up.swap(false, Ordering::Relaxed) {
            self.since.store(now(), Ordering::Relaxed);
        }
    }

    pub fn reconnecting(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn delivered(&self) {
        self.last_delivery.store(now(), Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Seconds since the last message (or since consuming started), while up.
    pub fn idle_secs(&self) -> Option<u64> {
        self.is_up().then(|| u64::try_from(now() - self.last_delivery.load(Ordering::Relaxed)).unwrap_or(0))
    }

    /// How long the current state (up or down) has lasted.
    pub fn in_state_for(&self) -> Duration {
        Duration::from_secs(u64::try_from(now() - self.since.load(Ordering::Relaxed)).unwrap_or(0))
    }

    /// The state given how many messages are ready and how long idleness with work waiting may last.
    pub fn state(&self, ready_messages: Option<u64>, idle_limit: Duration) -> ConsumerState {
        if !self.is_up() {
            return ConsumerState::Down;
        }
        let waiting = ready_messages.is_some_and(|n| n > 0);
        match self.idle_secs() {
            Some(idle) if waiting && idle > idle_limit.as_secs() => ConsumerState::Stalled,
            _ => ConsumerState::Consuming,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_is_down_until_it_consumes_and_stalled_only_with_work_waiting() {
        let h = ConsumerHealth::new();
        assert_eq!(h.state(Some(0), Duration::from_secs(60)), ConsumerState::Down);
        h.consuming();
        assert_eq!(h.state(Some(5), Duration::from_secs(60)), ConsumerState::Consuming);
        h.last_delivery.store(now() - 120, Ordering::Relaxed);
        assert_eq!(h.state(Some(0), Duration::from_secs(60)), ConsumerState::Consuming);
        assert_eq!(h.state(Some(5), Duration::from_secs(60)), ConsumerState::Stalled);
        h.lost();
        h.reconnecting();
        assert_eq!(h.state(Some(5), Duration::from_secs(60)), ConsumerState::Down);
        assert_eq!(h.reconnects(), 1);
    }
}

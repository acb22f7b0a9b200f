//! Counters per event type, for logs and metrics exporters.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds (seconds) of the handler latency histogram buckets; a last,
/// implicit bucket is `+Inf`.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// What the receiver did for one event type since it started (counters only
/// grow, except `last_lag_seconds`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TypeStats {
    /// Deliveries stored as new inbox rows.
    pub received: u64,
    /// Deliveries whose event id was already stored (acked, not processed).
    pub duplicates: u64,
    /// Deliveries that could not be read (stored `dead` at once).
    pub unreadable: u64,
    /// Events stored only (`process_mode = 'none'`).
    pub stored_only: u64,
    /// Events a handler completed (`done`).
    pub processed: u64,
    /// Of `processed`, events whose handler ran in the transaction that
    /// stored them ([`ReceiverOptions::inline_handling`](crate::ReceiverOptions::inline_handling)).
    pub processed_inline: u64,
    /// Handler attempts that ended in `retrying`.
    pub retried: u64,
    /// Events dead-lettered by their handler (fail, out of attempts, panic or
    /// timeout on the last attempt).
    pub dead: u64,
    /// Handler attempts that panicked.
    pub panics: u64,
    /// Handler attempts that timed out.
    pub timeouts: u64,
    /// Batch runs that processed at least one event.
    pub batch_runs: u64,
    /// Handler calls measured (one per event, also in batches).
    pub handler_calls: u64,
    /// Total handler time, seconds.
    pub handler_seconds: f64,
    /// Handler calls per latency bucket ([`LATENCY_BUCKETS`], then `+Inf`);
    /// not cumulative.
    pub handler_buckets: Vec<u64>,
    /// Seconds from the event's creation to its storage, for the last delivery.
    pub last_lag_seconds: f64,
}

/// Live counters of a receiver; cheap to read at any time.
#[derive(Debug, Default)]
pub struct Stats {
    types: Mutex<BTreeMap<String, TypeStats>>,
}

impl Stats {
    /// A copy of every event type's counters.
    pub fn snapshot(&self) -> BTreeMap<String, TypeStats> {
        self.types
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One event type's counters.
    pub fn get(&self, event_type: &str) -> TypeStats {
        self.types
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(event_type)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn update(&self, event_type: &str, f: impl FnOnce(&mut TypeStats)) {
        let mut types = self.types.lock().unwrap_or_else(PoisonError::into_inner);
        match types.get_mut(event_type) {
            Some(s) => f(s),
            None => {
                let mut s = TypeStats {
                    handler_buckets: vec![0; LATENCY_BUCKETS.len() + 1],
                    ..TypeStats::default()
                };
                f(&mut s);
                types.insert(event_type.to_string(), s);
            }
        }
    }

    pub(crate) fn observe_handler(&self, event_type: &str, took: Duration, calls: u64) {
        let secs = took.as_secs_f64();
        let per_call = if calls > 0 { secs / calls as f64 } else { secs };
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| per_call <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.update(event_type, |s| {
            s.handler_calls += calls;
            s.handler_seconds += secs;
            if let Some(b) = s.handler_buckets.get_mut(bucket) {
                *b += calls;
            }
        });
    }
}

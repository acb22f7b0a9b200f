//! Tuning parameters of a [`Tracker`](crate::Tracker).

use serde::{Deserialize, Serialize};

/// How patient a tracker is before it asks for a resync, and how it asks.
///
/// The defaults are the ones the specification's tests are written against
/// (`window_count` 3, `window_ms` 100, `max_fetch` 5, `buffer` 8,
/// `fetch_tries` 3); they are deliberately small so that examples stay short.
/// A production deployment usually wants a larger `buffer` and `max_fetch`
/// (see `docs/sequencing.md`). Every combination is valid: zero values simply
/// make the tracker more eager (`window_count` 0 recovers on every gap,
/// `max_fetch` 0 or `fetch_tries` 0 always asks for a snapshot, `buffer` 0
/// drops every out-of-order message as `overflow`).
///
/// ```
/// use eventyard_seq::Params;
///
/// let params = Params::default().with_buffer(1024).with_max_fetch(500);
/// assert_eq!(params.window_count, 3);
/// assert_eq!(params.buffer, 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Size of the missing range at which the tracker stops waiting for
    /// reordered messages and recovers at once (default 3).
    pub window_count: u64,
    /// How long (logical ms) a gap may stay open before the next tick
    /// recovers (default 100).
    pub window_ms: u64,
    /// The largest missing range fetched message by message; larger ranges
    /// are resolved with a snapshot (default 5).
    pub max_fetch: u64,
    /// How many out-of-order messages are held back per key (default 8).
    pub buffer: usize,
    /// How many failed fetches in a row, without progress, before falling
    /// back to a snapshot (default 3).
    pub fetch_tries: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params::DEFAULT
    }
}

impl Params {
    /// The defaults, usable in `const` context.
    pub const DEFAULT: Params = Params {
        window_count: 3,
        window_ms: 100,
        max_fetch: 5,
        buffer: 8,
        fetch_tries: 3,
    };

    /// Sets [`window_count`](Params::window_count).
    #[must_use]
    pub const fn with_window_count(mut self, n: u64) -> Self {
        self.window_count = n;
        self
    }

    /// Sets [`window_ms`](Params::window_ms).
    #[must_use]
    pub const fn with_window_ms(mut self, ms: u64) -> Self {
        self.window_ms = ms;
        self
    }

    /// Sets [`max_fetch`](Params::max_fetch).
    #[must_use]
    pub const fn with_max_fetch(mut self, n: u64) -> Self {
        self.max_fetch = n;
        self
    }

    /// Sets [`buffer`](Params::buffer).
    #[must_use]
    pub const fn with_buffer(mut self, n: usize) -> Self {
        self.buffer = n;
        self
    }

    /// Sets [`fetch_tries`](Params::fetch_tries).
    #[must_use]
    pub const fn with_fetch_tries(mut self, n: u32) -> Self {
        self.fetch_tries = n;
        self
    }
}

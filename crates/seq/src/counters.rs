//! Per-key counters, exported as metrics by the I/O layer.

use serde::{Deserialize, Serialize};

/// What happened on one key, counted. Every field only ever grows.
///
/// The I/O layer exports each field as a metric per event type; `seq
/// simulate` prints them on the final `state` line. Adding two sets of
/// counters (for a per-event-type total) is [`Counters::add`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Messages dropped because already applied (`seq <= last`) or already
    /// buffered, including fetched messages the tracker already had.
    pub dup: u64,
    /// Gaps detected: transitions from synced to hold. Each one raises an
    /// [`Alert`](crate::Alert).
    pub gaps: u64,
    /// Messages (and heartbeats) of an older producer epoch, dropped.
    pub stale_epoch: u64,
    /// Out-of-order messages dropped because the buffer was full.
    pub overflow: u64,
    /// Buffered messages made useless by a snapshot at or past their seq.
    pub superseded: u64,
    /// Snapshots ignored because older than what the tracker already had.
    pub snap_stale: u64,
    /// Seqs of a fetched range that the database did not return.
    pub missing_in_db: u64,
    /// Fetch requests issued.
    pub fetches: u64,
    /// Snapshot requests issued.
    pub snapshots: u64,
}

impl Counters {
    /// Adds `other` into `self` field by field (saturating), e.g. to total
    /// the keys of one event type.
    pub fn add(&mut self, other: &Counters) {
        self.dup = self.dup.saturating_add(other.dup);
        self.gaps = self.gaps.saturating_add(other.gaps);
        self.stale_epoch = self.stale_epoch.saturating_add(other.stale_epoch);
        self.overflow = self.overflow.saturating_add(other.overflow);
        self.superseded = self.superseded.saturating_add(other.superseded);
        self.snap_stale = self.snap_stale.saturating_add(other.snap_stale);
        self.missing_in_db = self.missing_in_db.saturating_add(other.missing_in_db);
        self.fetches = self.fetches.saturating_add(other.fetches);
        self.snapshots = self.snapshots.saturating_add(other.snapshots);
    }

    /// The counters as `(name, value)` pairs in their documented order,
    /// convenient for exporting metrics.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("dup", self.dup),
            ("gaps", self.gaps),
            ("stale_epoch", self.stale_epoch),
            ("overflow", self.overflow),
            ("superseded", self.superseded),
            ("snap_stale", self.snap_stale),
            ("missing_in_db", self.missing_in_db),
            ("fetches", self.fetches),
            ("snapshots", self.snapshots),
        ]
        .into_iter()
    }
}

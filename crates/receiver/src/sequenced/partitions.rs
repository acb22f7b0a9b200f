//! The engine's side of partitioned sequenced rows (`partitions > 1`).
//!
//! A key (producer, stream) belongs to the partition its live messages
//! arrive on (the broker's consistent hash of the producer id is not
//! reproducible here, so the engine learns it from the deliveries). The
//! engine follows the partitions this instance holds
//! ([`Held`](crate::runtime::partitions::Held), published by the lease task):
//!
//! - a partition lost (released to another instance, or its lease taken
//!   over) drops the trackers of its keys at once: the new holder rebuilds
//!   them from `ey_stream_state` and the stored, unapplied rows;
//! - a partition gained re-runs the startup load (stored, unapplied rows of
//!   keys without a tracker here), so rows a dead instance had stored and
//!   was holding for a hole are picked up;
//! - trackers of keys this instance does not own (loaded from stored rows,
//!   created by the inspection pass or a resync request) are *adopted*:
//!   they work like any other, fenced on `ey_stream_state`, and are dropped
//!   as soon as they are synced with nothing pending.
//!
//! The inspection pass runs only on the holder of the type's inspection
//! lease; an operator resync request is served by the owner of the key, or
//! by the inspection-lease holder once it has waited a few seconds (the key
//! has no owner).

use std::collections::{BTreeSet, HashMap};

use eventyard_seq::Mode;
use tokio::sync::watch;

use super::engine::Engine;
use super::store::Key;
use crate::runtime::partitions::Held;

/// What the engine knows of partitions.
#[derive(Debug)]
pub(super) struct PartState {
    rx: watch::Receiver<Held>,
    pub(super) current: Held,
    /// The partition each key's live messages came from.
    of_key: HashMap<Key, u32>,
}

impl PartState {
    pub(super) fn new(rx: watch::Receiver<Held>) -> Self {
        let current = rx.borrow().clone();
        Self {
            rx,
            current,
            of_key: HashMap::new(),
        }
    }

    /// Resolves when the held partitions change (never, once the sender is gone).
    pub(super) async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether the row is partitioned.
    pub(super) fn partitioned(&self) -> bool {
        self.current.partitioned
    }

    /// Whether this instance owns `key` (its partition is held here). Always
    /// true without partitioning.
    pub(super) fn owns(&self, key: &Key) -> bool {
        !self.current.partitioned
            || self
                .of_key
                .get(key)
                .is_some_and(|p| self.current.held.contains(p))
    }
}

impl Engine {
    /// Records the partition a live message of `key` came from.
    pub(super) fn note_partition(&mut self, key: &Key, partition: Option<u32>) {
        if let Some(p) = partition {
            if self.part.of_key.get(key) != Some(&p) {
                self.part.of_key.insert(key.clone(), p);
            }
        }
    }

    /// Follows a change of the held partitions.
    pub(super) async fn on_partitions(&mut self) {
        let new = self.part.rx.borrow_and_update().clone();
        let lost: BTreeSet<u32> = self
            .part
            .current
            .held
            .difference(&new.held)
            .copied()
            .collect();
        let gained = new.held.difference(&self.part.current.held).count() > 0;
        let was = self.part.current.partitioned;
        self.part.current = new;
        if !lost.is_empty() {
            let keys: Vec<Key> = self
                .part
                .of_key
                .iter()
                .filter(|(_, p)| lost.contains(p))
                .map(|(k, _)| k.clone())
                .collect();
            for key in &keys {
                self.part.of_key.remove(key);
                self.keys.remove(key);
            }
            tracing::info!(event_type = %self.rt.event_type, partitions = ?lost, keys = keys.len(),
                "sequenced: partitions handed over; their trackers dropped here");
        }
        if gained || was != self.part.current.partitioned {
            // Pick up what a previous holder stored and did not apply.
            self.reload_stored();
        }
        self.export_partition_metrics();
    }

    /// Drops adopted trackers (keys not owned here) that are synced with
    /// nothing pending.
    pub(super) fn drop_adopted(&mut self) {
        if !self.part.partitioned() {
            return;
        }
        let idle: Vec<Key> = self
            .keys
            .iter()
            .filter(|(k, ks)| {
                !self.part.owns(k)
                    && ks.tracker.mode() == Mode::Synced
                    && !ks.tracker.has_hole()
                    && ks.idle()
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            self.keys.remove(&key);
        }
    }

    /// Whether this instance runs the inspection pass of the type.
    pub(super) fn inspects(&self) -> bool {
        !self.part.partitioned() || self.part.current.inspector
    }

    /// Whether this instance serves an operator resync request for `key`
    /// that has waited `waited_secs`.
    pub(super) fn serves_resync(&self, key: &Key, waited_secs: i64) -> bool {
        self.part.owns(key) || (self.part.current.inspector && waited_secs >= 5)
    }

    /// The gauge of partitions held here.
    pub(super) fn export_partition_metrics(&self) {
        let held = self.part.current.held.len();
        metrics::gauge!("eventyard_seq_partitions_held", "event_type" => self.rt.event_type.clone())
            .set(held as f64);
    }
}

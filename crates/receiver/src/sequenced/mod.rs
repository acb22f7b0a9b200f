//! Sequenced receive rows (`ey_receive_config.sequenced = true`): every
//! message is stored in the inbox and acked as usual, and then the
//! [`eventyard_seq`] tracker of its `(producer, stream)` decides when it is
//! applied.
//!
//! - **Apply** runs the row's handler and writes `ey_stream_state` (epoch,
//!   last seq) in the transaction that marks the inbox row `done`. Rows held
//!   for a hole stay `received`; after a restart the trackers resume from
//!   `ey_stream_state` and are refilled from the stored, unapplied rows.
//! - **Resync** goes through a [`ResyncSource`]: [`DbResyncSource`] reads
//!   missing events from `ey_outbox` (they are then stored in the inbox and
//!   applied like live ones) and snapshots from `ey_snapshot`. A snapshot is
//!   handed to the application's [`SnapshotHandler`], registered under the
//!   row's `handler_id` with [`SeqOptions::snapshot_handler`], in the
//!   transaction that writes `ey_stream_state` and marks the superseded rows
//!   `done`. For a producer whose database the consumer cannot read,
//!   [`AmqpResyncSource`] asks the producer's daemon instead (request/reply
//!   over the transport); it also gets fresh snapshots for the shared
//!   database ([`DbResyncSource::fresh_snapshots`]).
//! - **Inspection pass**: on the row's `inspect_cron`, the outbox rows of the
//!   type since the checkpoint (minus an overlap) go through the trackers,
//!   which finds tail gaps no later message reveals.
//! - A failing handler blocks its key: the event is retried with backoff
//!   (never skipped, never dead-lettered: skipping would corrupt the replica).
//!
//! The operator's guide is `docs/sequencing.md` ("In the daemon").

mod amqp_source;
mod engine;
mod inspect;
mod partitions;
mod source;
mod store;
mod trace;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use eventyard_seq::Params;

use crate::handler::{HandlerContext, HandlerOutcome};

pub use amqp_source::AmqpResyncSource;
pub(crate) use engine::{run, Feed, Live};
pub use source::{
    DbResyncSource, FetchedEvent, ResyncError, ResyncSource, SnapshotNeed, StoredSnapshot,
};
pub use trace::TraceSink;

/// A producer's full state handed to a [`SnapshotHandler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The event type whose receive row asked for it.
    pub event_type: String,
    /// The producer.
    pub producer_id: String,
    /// The stream.
    pub stream: String,
    /// The producer epoch the state belongs to.
    pub epoch: u64,
    /// The seq the state is valid as of (every event up to it included).
    pub seq: u64,
    /// The state bytes the producer wrote with `publish_with_snapshot`.
    pub state: Vec<u8>,
}

/// Replaces the application's replica of a `(producer, stream)` with a
/// snapshot, inside the transaction (`ctx`) that also records the new
/// `(epoch, last)` in `ey_stream_state`. Anything but `Done` rolls it back and
/// the snapshot is tried again with backoff.
#[async_trait]
pub trait SnapshotHandler: Send + Sync {
    /// Applies `snapshot`.
    async fn apply_snapshot(
        &self,
        snapshot: &Snapshot,
        ctx: &mut HandlerContext<'_>,
    ) -> HandlerOutcome;
}

/// Settings of sequenced receive rows (part of
/// [`ReceiverOptions`](crate::ReceiverOptions)).
#[derive(Clone)]
pub struct SeqOptions {
    pub(crate) params: Params,
    pub(crate) tick: Duration,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) inspect_overlap: Duration,
    pub(crate) safety_lag: Duration,
    pub(crate) source: Option<Arc<dyn ResyncSource>>,
    pub(crate) snapshot_handlers: HashMap<String, Arc<dyn SnapshotHandler>>,
    pub(crate) trace: Option<Arc<TraceSink>>,
    pub(crate) partition_lease: Duration,
}

impl std::fmt::Debug for SeqOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqOptions")
            .field("params", &self.params)
            .field("tick", &self.tick)
            .field(
                "snapshot_handlers",
                &self.snapshot_handlers.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for SeqOptions {
    /// Production-sized tracker parameters (reorder window 32 messages or
    /// 200 ms, fetches up to 1,000 messages, 10,000 buffered per key, 3
    /// fetch tries), a 20 ms tick, requests retried with jittered backoff
    /// from 100 ms to 30 s, the database resync source on the receiver's
    /// database, a 60 s inspection overlap and a 5 s safety lag.
    fn default() -> Self {
        SeqOptions {
            params: Params {
                window_count: 32,
                window_ms: 200,
                max_fetch: 1000,
                buffer: 10_000,
                fetch_tries: 3,
            },
            tick: Duration::from_millis(20),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            inspect_overlap: Duration::from_secs(60),
            safety_lag: Duration::from_secs(5),
            source: None,
            snapshot_handlers: HashMap::new(),
            trace: None,
            partition_lease: Duration::from_secs(10),
        }
    }
}

impl SeqOptions {
    /// The tracker parameters (`docs/sequencing.md`, "Parameters").
    pub fn params(mut self, params: Params) -> Self {
        self.params = params;
        self
    }

    /// How often trackers are ticked (reorder-window deadlines, due requests).
    pub fn tick(mut self, d: Duration) -> Self {
        self.tick = d.max(Duration::from_millis(1));
        self
    }

    /// The first and the largest delay between two resync requests of a key
    /// that keep failing (jittered, doubling).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// The inspection pass re-reads outbox rows from `checkpoint − overlap`;
    /// its new checkpoint is at most `now − safety_lag`.
    pub fn inspection(mut self, overlap: Duration, safety_lag: Duration) -> Self {
        self.inspect_overlap = overlap;
        self.safety_lag = safety_lag;
        self
    }

    /// Where missing events and snapshots come from (default: the
    /// [`DbResyncSource`] on the receiver's own database).
    pub fn source(mut self, source: Arc<dyn ResyncSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// How long a partition lease (partitioned rows, `partitions > 1`) lasts
    /// without renewal (default 10 s; renewed every third of it). A dead
    /// instance's partitions are taken over after at most this long.
    pub fn partition_lease(mut self, d: Duration) -> Self {
        self.partition_lease = d.max(Duration::from_millis(300));
        self
    }

    /// Whether a resync source was set with [`source`](Self::source).
    pub fn has_source(&self) -> bool {
        self.source.is_some()
    }

    /// Records the tracker inputs of the chosen keys as a `seq simulate`
    /// trace (see [`TraceSink::open`]).
    pub fn trace(mut self, sink: Arc<TraceSink>) -> Self {
        self.trace = Some(sink);
        self
    }

    /// Registers the snapshot handler of the receive rows whose `handler_id`
    /// is `handler_id`.
    pub fn snapshot_handler(
        mut self,
        handler_id: impl Into<String>,
        handler: Arc<dyn SnapshotHandler>,
    ) -> Self {
        self.snapshot_handlers.insert(handler_id.into(), handler);
        self
    }
}

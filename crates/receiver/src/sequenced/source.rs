//! Where missing events and snapshots come from.

use std::sync::Arc;

use async_trait::async_trait;
use eventyard_core::db::Db;
use eventyard_core::with_pool;

/// One event read back for a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedEvent {
    /// The event id.
    pub event_id: String,
    /// Its seq.
    pub seq: u64,
    /// The packed envelope, as published.
    pub payload: Vec<u8>,
}

/// A producer's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// Its epoch.
    pub epoch: u64,
    /// The seq it is valid as of.
    pub seq: u64,
    /// The state bytes.
    pub state: Vec<u8>,
}

/// A resync request failed.
#[derive(Debug, thiserror::Error)]
#[error("resync of producer `{producer_id}`, stream `{stream}`: {reason}")]
pub struct ResyncError {
    /// The producer.
    pub producer_id: String,
    /// The stream.
    pub stream: String,
    /// What went wrong.
    pub reason: String,
}

/// Answers a tracker's resync requests.
#[async_trait]
pub trait ResyncSource: Send + Sync {
    /// The events `from..=to` of `(producer_id, stream, epoch)` that exist,
    /// in any order (missing ones are simply absent).
    async fn fetch(
        &self,
        producer_id: &str,
        stream: &str,
        epoch: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<FetchedEvent>, ResyncError>;

    /// The producer's state of the stream, valid as of at least `need`
    /// (compared as an `(epoch, seq)` pair), if one exists or can be made.
    /// `Ok(None)`: none new enough yet; the key waits in `snapshot` mode and
    /// asks again with backoff. A source may also return an older snapshot:
    /// the engine then treats it as `None`.
    async fn snapshot(
        &self,
        producer_id: &str,
        stream: &str,
        need: SnapshotNeed,
    ) -> Result<Option<StoredSnapshot>, ResyncError>;
}

/// The oldest snapshot a consumer can use: `(epoch, seq)`, compared as a
/// pair. A tracker with `last` applied in `epoch` needs `(epoch, last + 1)`;
/// after an epoch change (`last` unknown) any state of the new epoch,
/// `(epoch, 0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SnapshotNeed {
    /// The lowest useful epoch.
    pub epoch: u64,
    /// The lowest useful seq within `epoch`.
    pub seq: u64,
}

impl SnapshotNeed {
    /// Whether a snapshot valid as of `(epoch, seq)` is new enough.
    pub fn satisfied_by(&self, epoch: u64, seq: u64) -> bool {
        (epoch, seq) >= (self.epoch, self.seq)
    }
}

impl std::fmt::Display for SnapshotNeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {})", self.epoch, self.seq)
    }
}

/// The producer's database is the consumer's (or reachable from it): events
/// from `ey_outbox`, snapshots from `ey_snapshot`.
///
/// A stored snapshot older than what the consumer needs (or none at all)
/// cannot be refreshed from the database alone: with
/// [`fresh_snapshots`](Self::fresh_snapshots) such a request goes to another
/// source, typically an [`AmqpResyncSource`](super::AmqpResyncSource) that
/// asks the producer's daemon to write a fresh one (into this same shared
/// database) and answer it.
#[derive(Clone)]
pub struct DbResyncSource {
    db: Db,
    fresh: Option<Arc<dyn ResyncSource>>,
}

impl std::fmt::Debug for DbResyncSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbResyncSource")
            .field("backend", &self.db.backend())
            .field("fresh_snapshots", &self.fresh.is_some())
            .finish()
    }
}

impl DbResyncSource {
    /// A source reading the producer's tables in `db`.
    pub fn new(db: Db) -> Self {
        DbResyncSource { db, fresh: None }
    }

    /// When `ey_snapshot` holds no snapshot of the key, or one older than
    /// needed, asks `source` instead (e.g. the producer's daemon over AMQP,
    /// which writes a fresh one).
    pub fn fresh_snapshots(mut self, source: Arc<dyn ResyncSource>) -> Self {
        self.fresh = Some(source);
        self
    }

    /// The stored snapshot of the key, whatever its age.
    pub async fn stored_snapshot(
        &self,
        producer_id: &str,
        stream: &str,
    ) -> Result<Option<StoredSnapshot>, ResyncError> {
        let sql = self.db.sql(
            "SELECT epoch, seq, state FROM ey_snapshot WHERE producer_id = $1 AND stream = $2",
        );
        let row: Option<(i64, i64, Vec<u8>)> = with_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(producer_id).bind(stream).fetch_optional(pool).await
                .map_err(|e| ResyncError {
                    producer_id: producer_id.to_string(),
                    stream: stream.to_string(),
                    reason: format!("reading ey_snapshot: {e}"),
                })?
        });
        Ok(row.and_then(|(epoch, seq, state)| {
            Some(StoredSnapshot {
                epoch: u64::try_from(epoch).ok()?,
                seq: u64::try_from(seq).ok()?,
                state,
            })
        }))
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl ResyncSource for DbResyncSource {
    async fn fetch(
        &self,
        producer_id: &str,
        stream: &str,
        epoch: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<FetchedEvent>, ResyncError> {
        let err = |reason: String| ResyncError {
            producer_id: producer_id.to_string(),
            stream: stream.to_string(),
            reason,
        };
        let sql = self.db.sql(
            "SELECT event_id, seq, payload FROM ey_outbox WHERE producer_id = $1 AND stream = $2 \
             AND epoch = $3 AND seq >= $4 AND seq <= $5 ORDER BY seq",
        );
        let rows: Vec<(String, i64, Vec<u8>)> = with_pool!(&self.db, pool => {
            sqlx::query_as(&sql)
                .bind(producer_id).bind(stream).bind(i64_of(epoch)).bind(i64_of(from)).bind(i64_of(to))
                .fetch_all(pool).await
                .map_err(|e| err(format!("reading ey_outbox seqs {from}..={to} of epoch {epoch}: {e}")))?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(event_id, seq, payload)| {
                u64::try_from(seq).ok().map(|seq| FetchedEvent {
                    event_id,
                    seq,
                    payload,
                })
            })
            .collect())
    }

    async fn snapshot(
        &self,
        producer_id: &str,
        stream: &str,
        need: SnapshotNeed,
    ) -> Result<Option<StoredSnapshot>, ResyncError> {
        let stored = self.stored_snapshot(producer_id, stream).await?;
        if let Some(snap) = &stored {
            if need.satisfied_by(snap.epoch, snap.seq) {
                return Ok(stored);
            }
        }
        match &self.fresh {
            Some(fresh) => fresh.snapshot(producer_id, stream, need).await,
            None => Ok(stored),
        }
    }
}

//! Where missing events and snapshots come from.

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

    /// The producer's latest stored state of the stream, if any.
    async fn snapshot(
        &self,
        producer_id: &str,
        stream: &str,
    ) -> Result<Option<StoredSnapshot>, ResyncError>;
}

/// The producer's database is the consumer's (or reachable from it): events
/// from `ey_outbox`, snapshots from `ey_snapshot`.
#[derive(Debug, Clone)]
pub struct DbResyncSource {
    db: Db,
}

impl DbResyncSource {
    /// A source reading the producer's tables in `db`.
    pub fn new(db: Db) -> Self {
        DbResyncSource { db }
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

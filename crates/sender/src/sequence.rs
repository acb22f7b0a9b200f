//! Sequenced event types: per `(producer, stream)` numbering.
//!
//! For an event type whose `ey_send_config.sequenced` is true, every event
//! gets the next seq of its key, strictly +1 from 1 within an epoch, inside
//! the transaction that writes its outbox row. The counter lives in
//! `ey_stream_counter` (schema 0004); numbering updates its row first, so the
//! row lock (SQLite: the write lock) orders concurrent publishers of one key:
//! a later seq can never commit before an earlier one. The epoch starts at
//! one more than the highest epoch the outbox already holds for the key (so a
//! lost counter table starts a new epoch by itself), and
//! [`Publisher::reset_epoch`] raises it on demand.
//!
//! [`Publisher::publish_with_snapshot`] also writes the producer's full state
//! into `ey_snapshot`, valid as of the event's `(epoch, seq)`, in the same
//! transaction. [`Publisher::write_snapshot`] (and the resync responder, when
//! a consumer needs a snapshot newer than the stored one) asks the
//! application's [`SnapshotProvider`] for the current state while the key's
//! counter row is locked, so the state and its `(epoch, seq)` agree.

use async_trait::async_trait;
use chrono::Utc;
use eventyard_core::config::{SendConfig, SendMode};
use eventyard_core::db::{Backend, Db};
use eventyard_core::envelope::{Body, Envelope};
use eventyard_core::with_pool;
use serde::Serialize;

use crate::error::{retry_deadlocks, Result, SendError};
use crate::outbox::{NewOutboxRow, OutboxConn};
use crate::publisher::{EventMeta, Outcome, Published, Publisher};

/// The epoch and seq an event was numbered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqStamp {
    /// The producer's epoch.
    pub epoch: u64,
    /// The seq within the epoch (from 1).
    pub seq: u64,
}

/// The producer's open transaction handed to a [`SnapshotProvider`], on
/// whichever database the outbox is. The key's `ey_stream_counter` row is
/// locked in it: no event of the key commits until it ends.
#[non_exhaustive]
pub enum SnapshotConn<'c> {
    /// A PostgreSQL transaction.
    #[cfg(feature = "postgres")]
    Postgres(&'c mut sqlx::PgConnection),
    /// A MySQL/MariaDB transaction.
    #[cfg(feature = "mysql")]
    MySql(&'c mut sqlx::MySqlConnection),
    /// A SQLite transaction.
    #[cfg(feature = "sqlite")]
    Sqlite(&'c mut sqlx::SqliteConnection),
}

impl SnapshotConn<'_> {
    /// The database the transaction is on.
    pub fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "postgres")]
            SnapshotConn::Postgres(_) => Backend::Postgres,
            #[cfg(feature = "mysql")]
            SnapshotConn::MySql(_) => Backend::MySql,
            #[cfg(feature = "sqlite")]
            SnapshotConn::Sqlite(_) => Backend::Sqlite,
        }
    }
}

impl std::fmt::Debug for SnapshotConn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SnapshotConn")
            .field(&self.backend())
            .finish()
    }
}

#[cfg(feature = "postgres")]
impl<'c> From<&'c mut sqlx::PgConnection> for SnapshotConn<'c> {
    fn from(c: &'c mut sqlx::PgConnection) -> Self {
        SnapshotConn::Postgres(c)
    }
}

#[cfg(feature = "mysql")]
impl<'c> From<&'c mut sqlx::MySqlConnection> for SnapshotConn<'c> {
    fn from(c: &'c mut sqlx::MySqlConnection) -> Self {
        SnapshotConn::MySql(c)
    }
}

#[cfg(feature = "sqlite")]
impl<'c> From<&'c mut sqlx::SqliteConnection> for SnapshotConn<'c> {
    fn from(c: &'c mut sqlx::SqliteConnection) -> Self {
        SnapshotConn::Sqlite(c)
    }
}

/// The application's current state of a sequenced key, on demand: what a
/// consumer loads when it lost more than it can fetch and the stored
/// snapshot (`publish_with_snapshot`) is missing or older than it needs.
///
/// eventyard calls it inside a transaction that holds the key's counter row
/// locked, and stores the returned bytes in `ey_snapshot` as of the key's
/// current `(epoch, seq)` in that same transaction. The bytes must be the
/// state after exactly the events numbered up to `at.seq` of `at.epoch`:
/// read it through `conn` when the state lives in the outbox's database
/// (the events that changed it committed with their numbers), or from
/// memory only if the application updates that memory under the same
/// ordering.
///
/// ```no_run
/// use eventyard_sender::{SeqStamp, SnapshotConn, SnapshotProvider};
///
/// struct Accounts;
/// #[async_trait::async_trait]
/// impl SnapshotProvider for Accounts {
///     async fn snapshot(&self, producer_id: &str, stream: &str, _at: SeqStamp,
///                       conn: SnapshotConn<'_>)
///         -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
///         let SnapshotConn::Postgres(conn) = conn else { return Err("postgres only".into()) };
///         let total: i64 = sqlx::query_scalar("SELECT total FROM accounts WHERE id = $1")
///             .bind(stream).fetch_one(&mut *conn).await?;
///         Ok(total.to_string().into_bytes())
///     }
/// }
/// ```
#[async_trait]
pub trait SnapshotProvider: Send + Sync {
    /// The state of `(producer_id, stream)` as of `at`.
    async fn snapshot(
        &self,
        producer_id: &str,
        stream: &str,
        at: SeqStamp,
        conn: SnapshotConn<'_>,
    ) -> std::result::Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>;
}

/// A snapshot written on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreshSnapshot {
    /// The `(epoch, seq)` it is valid as of (seq 0: nothing numbered yet in
    /// that epoch).
    pub at: SeqStamp,
    /// The state bytes, as stored in `ey_snapshot`.
    pub state: Vec<u8>,
}

/// Asks `provider` for the state of a key while its counter row is locked
/// and replaces the key's `ey_snapshot` row with it, in one transaction. A
/// key that was never numbered gets its counter row (first epoch, nothing
/// numbered), so the snapshot is `(epoch, 0)`.
pub(crate) async fn write_fresh_snapshot(
    db: &Db,
    producer: &str,
    stream: &str,
    provider: &dyn SnapshotProvider,
) -> Result<FreshSnapshot> {
    let backend = db.backend();
    let lock = if backend == Backend::Sqlite {
        ""
    } else {
        " FOR UPDATE"
    };
    let read = db
        .sql(&format!(
            "SELECT epoch, next_seq - 1 FROM ey_stream_counter \
             WHERE producer_id = $1 AND stream = $2{lock}"
        ))
        .into_owned();
    let negative = |what: &str, v: i64| SendError::Sequence {
        event_type: String::new(),
        producer_id: producer.to_string(),
        stream: stream.to_string(),
        reason: format!("ey_stream_counter holds a negative {what} ({v})"),
    };
    Ok(with_pool!(db, pool => {
        let mut tx = if backend == Backend::Sqlite {
            pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            pool.begin().await?
        };
        let mut pair: Option<(i64, i64)> = sqlx::query_as(&read).bind(producer).bind(stream)
            .fetch_optional(&mut *tx).await?;
        if pair.is_none() {
            let first = db.sql(FIRST_EPOCH_SQL).into_owned();
            let first: i64 = sqlx::query_scalar(&first).bind(producer).bind(stream)
                .fetch_one(&mut *tx).await?;
            let ensure = db.sql(ensure_counter_sql(backend)).into_owned();
            sqlx::query(&ensure).bind(producer).bind(stream).bind(first)
                .execute(&mut *tx).await?;
            pair = sqlx::query_as(&read).bind(producer).bind(stream)
                .fetch_optional(&mut *tx).await?;
        }
        let (epoch, seq) = pair.ok_or_else(|| SendError::Sequence {
            event_type: String::new(),
            producer_id: producer.to_string(),
            stream: stream.to_string(),
            reason: "the ey_stream_counter row vanished while writing a snapshot".into(),
        })?;
        let at = SeqStamp {
            epoch: u64::try_from(epoch).map_err(|_| negative("epoch", epoch))?,
            seq: u64::try_from(seq).map_err(|_| negative("seq", seq))?,
        };
        let state = provider
            .snapshot(producer, stream, at, SnapshotConn::from(&mut *tx))
            .await
            .map_err(|source| SendError::SnapshotProvider {
                producer_id: producer.to_string(),
                stream: stream.to_string(),
                source,
            })?;
        let upsert = db.sql(snapshot_upsert_sql(backend)).into_owned();
        sqlx::query(&upsert).bind(producer).bind(stream).bind(epoch).bind(seq)
            .bind(&state).bind(Utc::now())
            .execute(&mut *tx).await?;
        tx.commit().await?;
        FreshSnapshot { at, state }
    }))
}

pub(crate) fn ensure_counter_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::MySql => {
            "INSERT IGNORE INTO ey_stream_counter (producer_id, stream, epoch, next_seq) \
             VALUES (?, ?, ?, 1)"
        }
        _ => {
            "INSERT INTO ey_stream_counter (producer_id, stream, epoch, next_seq) \
             VALUES ($1, $2, $3, 1) ON CONFLICT (producer_id, stream) DO NOTHING"
        }
    }
}

/// The first epoch of a key without a counter row: one more than the
/// highest the outbox holds (a plain read: no locks on the outbox).
pub(crate) const FIRST_EPOCH_SQL: &str = "SELECT COALESCE(MAX(epoch), 0) + 1 FROM ey_outbox \
     WHERE producer_id = $1 AND stream = $2";

fn snapshot_upsert_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::MySql => {
            "INSERT INTO ey_snapshot (producer_id, stream, epoch, seq, state, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE epoch = VALUES(epoch), \
             seq = VALUES(seq), state = VALUES(state), created_at = VALUES(created_at)"
        }
        _ => {
            "INSERT INTO ey_snapshot (producer_id, stream, epoch, seq, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (producer_id, stream) DO UPDATE SET \
             epoch = excluded.epoch, seq = excluded.seq, state = excluded.state, \
             created_at = excluded.created_at"
        }
    }
}

/// Takes the next `(epoch, seq)` of `(producer, stream)` on a connection
/// inside an open transaction: the counter `UPDATE` first (row lock), the
/// row created on first use.
macro_rules! next_sequence {
    ($conn:expr, $backend:expr, $producer:expr, $stream:expr) => {{
        let backend: eventyard_core::db::Backend = $backend;
        let ph = |sql: &str| eventyard_core::db::placeholders(backend, sql).into_owned();
        let take = ph("UPDATE ey_stream_counter SET next_seq = next_seq + 1 \
                       WHERE producer_id = $1 AND stream = $2");
        let n = sqlx::query(&take)
            .bind($producer)
            .bind($stream)
            .execute(&mut *$conn)
            .await?
            .rows_affected();
        if n == 0 {
            let first: i64 = sqlx::query_scalar(&ph($crate::sequence::FIRST_EPOCH_SQL))
                .bind($producer)
                .bind($stream)
                .fetch_one(&mut *$conn)
                .await?;
            sqlx::query(&ph($crate::sequence::ensure_counter_sql(backend)))
                .bind($producer)
                .bind($stream)
                .bind(first)
                .execute(&mut *$conn)
                .await?;
            sqlx::query(&take)
                .bind($producer)
                .bind($stream)
                .execute(&mut *$conn)
                .await?;
        }
        let read = ph("SELECT epoch, next_seq - 1 FROM ey_stream_counter \
                       WHERE producer_id = $1 AND stream = $2");
        let pair: (i64, i64) = sqlx::query_as(&read)
            .bind($producer)
            .bind($stream)
            .fetch_one(&mut *$conn)
            .await?;
        Ok::<(i64, i64), $crate::error::SendError>(pair)
    }};
}
pub(crate) use next_sequence;

fn to_u64(v: i64, what: &str, cfg: &SendConfig, producer: &str, stream: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| SendError::Sequence {
        event_type: cfg.event_type.clone(),
        producer_id: producer.to_string(),
        stream: stream.to_string(),
        reason: format!("ey_stream_counter holds a negative {what} ({v})"),
    })
}

impl Publisher {
    /// Publishes an event of a `sequenced` type together with the
    /// producer's full state as of this event: the `ey_snapshot` row of the
    /// key (`meta.producer_id`, `meta.stream`) is replaced, in the same
    /// transaction as the event's outbox row, by `state` valid as of the
    /// event's `(epoch, seq)`. A consumer that lost messages can then load
    /// this state instead of fetching every missing event.
    ///
    /// Fails with [`SendError::NotSequenced`] for a type that is not
    /// sequenced (nothing is written).
    pub async fn publish_with_snapshot<T: Serialize + ?Sized>(
        &self,
        event_type: &str,
        value: &T,
        meta: EventMeta,
        state: Vec<u8>,
    ) -> Result<Published> {
        let cfg = self.send_config(event_type)?;
        if !cfg.sequenced {
            return Err(SendError::NotSequenced {
                event_type: event_type.to_string(),
            });
        }
        let body = self.render(&cfg, value)?;
        self.publish_sequenced(cfg, body, meta, Some(state))
            .await
            .map(|(p, _)| p)
    }

    /// Writes a fresh snapshot of `(producer_id, stream)` now: `provider`
    /// gives the current state while the key's counter row is locked, and
    /// it replaces the key's `ey_snapshot` row as of the key's current
    /// `(epoch, seq)`, in one transaction. Consumers that need a snapshot
    /// newer than the stored one can then load it. (The resync responder
    /// does this on a consumer's request.)
    pub async fn write_snapshot(
        &self,
        producer_id: &str,
        stream: &str,
        provider: &dyn SnapshotProvider,
    ) -> Result<FreshSnapshot> {
        write_fresh_snapshot(self.outbox().db(), producer_id, stream, provider).await
    }

    /// Starts a new epoch for `(producer_id, stream)`: the next event is
    /// numbered `(epoch + 1, 1)`, where `epoch` is the highest the counter or
    /// the outbox knows for the key. Call it when the producer lost its
    /// numbering (restored from a backup, state reset). Consumers see the
    /// epoch change and load a snapshot. Returns the new epoch.
    pub async fn reset_epoch(&self, producer_id: &str, stream: &str) -> Result<u64> {
        let db = self.outbox().db().clone();
        let backend = db.backend();
        let epoch: i64 = with_pool!(&db, pool => {
            let mut tx = if backend == Backend::Sqlite {
                pool.begin_with("BEGIN IMMEDIATE").await?
            } else {
                pool.begin().await?
            };
            let first = db.sql(FIRST_EPOCH_SQL).into_owned();
            let first: i64 = sqlx::query_scalar(&first).bind(producer_id).bind(stream)
                .fetch_one(&mut *tx).await?;
            let ensure = db.sql(ensure_counter_sql(backend)).into_owned();
            sqlx::query(&ensure).bind(producer_id).bind(stream).bind(first)
                .execute(&mut *tx).await?;
            let bump = db.sql(
                "UPDATE ey_stream_counter SET epoch = epoch + 1, next_seq = 1 \
                 WHERE producer_id = $1 AND stream = $2",
            ).into_owned();
            sqlx::query(&bump).bind(producer_id).bind(stream).execute(&mut *tx).await?;
            let read = db.sql(
                "SELECT epoch FROM ey_stream_counter WHERE producer_id = $1 AND stream = $2",
            ).into_owned();
            let epoch: i64 = sqlx::query_scalar(&read).bind(producer_id).bind(stream)
                .fetch_one(&mut *tx).await?;
            tx.commit().await?;
            epoch
        });
        tracing::info!(
            producer_id,
            stream,
            epoch,
            "sequenced stream: new producer epoch"
        );
        u64::try_from(epoch).map_err(|_| SendError::Sequence {
            event_type: String::new(),
            producer_id: producer_id.to_string(),
            stream: stream.to_string(),
            reason: format!("ey_stream_counter holds a negative epoch ({epoch})"),
        })
    }

    /// Numbers, stores and (as the mode says) publishes one event of a
    /// sequenced type. Used by `publish*` for sequenced types; the coalesced
    /// insert path is bypassed, since numbering needs its own transaction.
    pub(crate) async fn publish_sequenced(
        &self,
        cfg: SendConfig,
        body: Body,
        meta: EventMeta,
        snapshot: Option<Vec<u8>>,
    ) -> Result<(Published, SeqStamp)> {
        let system_id = self.system_id().to_string();
        let producer = meta
            .producer_id
            .clone()
            .unwrap_or_else(|| system_id.clone());
        let stream = meta
            .stream
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| cfg.event_type.clone());
        let claimed = cfg.send_mode != SendMode::Batch;
        let (event_id, payload, stamp) =
            retry_deadlocks("sequenced numbering", &cfg.event_type, || {
                self.number_and_store(
                    &cfg,
                    body.clone(),
                    meta.clone(),
                    &producer,
                    &stream,
                    snapshot.as_deref(),
                    claimed,
                )
            })
            .await?;
        let published = if cfg.send_mode == SendMode::Batch {
            Published {
                event_id,
                outcome: Outcome::Queued,
            }
        } else {
            let message = self.message(&cfg, &event_id, payload);
            self.send_persisted(&cfg, event_id, message).await?
        };
        Ok((published, stamp))
    }

    /// [`Publisher::stage`] of a sequenced type: numbered on the caller's
    /// connection (its transaction holds the key's counter row until it ends).
    pub(crate) async fn stage_sequenced<C>(
        &self,
        conn: &mut C,
        cfg: &SendConfig,
        body: Body,
        meta: EventMeta,
    ) -> Result<(String, SeqStamp)>
    where
        C: OutboxConn + ?Sized,
    {
        let producer = meta
            .producer_id
            .clone()
            .unwrap_or_else(|| self.system_id().to_string());
        let stream = meta
            .stream
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| cfg.event_type.clone());
        let (epoch, seq) = conn.next_sequence(&producer, &stream).await?;
        let stamp = SeqStamp {
            epoch: to_u64(epoch, "epoch", cfg, &producer, &stream)?,
            seq: to_u64(seq, "seq", cfg, &producer, &stream)?,
        };
        let (event_id, payload) =
            self.pack_sequenced(cfg, body, meta, &producer, &stream, stamp)?;
        let mut row = self.outbox_row(cfg, &event_id, payload, false);
        row.producer_id = Some(producer);
        row.stream = Some(stream);
        row.epoch = Some(epoch);
        row.seq = Some(seq);
        conn.insert_outbox_row(&row).await?;
        Ok((event_id, stamp))
    }

    /// One numbering transaction: counter, outbox row, snapshot.
    #[allow(clippy::too_many_arguments)]
    async fn number_and_store(
        &self,
        cfg: &SendConfig,
        body: Body,
        meta: EventMeta,
        producer: &str,
        stream: &str,
        snapshot: Option<&[u8]>,
        claimed: bool,
    ) -> Result<(String, Vec<u8>, SeqStamp)> {
        let db = self.outbox().db().clone();
        let backend = db.backend();
        Ok(with_pool!(&db, pool => {
            let mut tx = if backend == Backend::Sqlite {
                pool.begin_with("BEGIN IMMEDIATE").await?
            } else {
                pool.begin().await?
            };
            // The UPDATE takes the row lock first: publishers of one key queue here.
            let (epoch, seq) = next_sequence!(tx, backend, producer, stream)?;
            let stamp = SeqStamp {
                epoch: to_u64(epoch, "epoch", cfg, producer, stream)?,
                seq: to_u64(seq, "seq", cfg, producer, stream)?,
            };
            let (event_id, payload) =
                self.pack_sequenced(cfg, body, meta, producer, stream, stamp)?;
            let mut row = self.outbox_row(cfg, &event_id, payload.clone(), claimed);
            row.producer_id = Some(producer.to_string());
            row.stream = Some(stream.to_string());
            row.epoch = Some(epoch);
            row.seq = Some(seq);
            (*tx).insert_outbox_row(&row).await?;
            if let Some(state) = snapshot {
                let upsert = db.sql(snapshot_upsert_sql(backend)).into_owned();
                sqlx::query(&upsert).bind(producer).bind(stream).bind(epoch).bind(seq)
                    .bind(state).bind(Utc::now())
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
            (event_id, payload, stamp)
        }))
    }

    fn pack_sequenced(
        &self,
        cfg: &SendConfig,
        body: Body,
        meta: EventMeta,
        producer: &str,
        stream: &str,
        stamp: SeqStamp,
    ) -> Result<(String, Vec<u8>)> {
        let mut builder = Envelope::builder(cfg.event_type.as_str(), self.system_id().to_string())
            .compression(cfg.compression)
            .producer_id(producer.to_string())
            .sequence(stream, stamp.epoch, stamp.seq);
        if let Some(t) = meta.trace_id {
            builder = builder.trace_id(t);
        }
        if let Some(k) = meta.business_key {
            builder = builder.business_key(k);
        }
        for (k, v) in meta.entries {
            builder = builder.entry(k, v);
        }
        let env = builder.build(body);
        let payload = self
            .codec()
            .pack(&env)
            .map_err(|source| SendError::Envelope {
                event_type: cfg.event_type.clone(),
                source,
            })?;
        Ok((env.header.event_id.to_string(), payload))
    }

    fn outbox_row(
        &self,
        cfg: &SendConfig,
        event_id: &str,
        payload: Vec<u8>,
        claimed: bool,
    ) -> NewOutboxRow {
        self.row(cfg, event_id, payload, claimed)
    }
}

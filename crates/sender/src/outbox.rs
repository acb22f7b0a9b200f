//! The outbox table: every persisted sent event and its status.
//!
//! Rows are written `pending`, claimed with a lease (who, until when) by the
//! instance that sends them, and finished as `sent` (on the broker's confirm)
//! or `failed` (retries exhausted). Claims are short transactions — never a
//! transaction held across a broker round trip — so several daemon
//! instances share the work, and a crashed instance's leases expire.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventyard_core::db::{chunks_within, clip_text, param_list, Backend, Db, MAX_STATEMENT_BYTES};
use eventyard_core::with_pool;

use crate::error::{Result, SendError};

/// The status of an outbox row (`ey_outbox.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    /// Stored, not yet confirmed by the broker.
    Pending,
    /// Confirmed by the broker.
    Sent,
    /// Retries exhausted; `last_error` says why. Replayable.
    Failed,
}

impl OutboxStatus {
    /// The value stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutboxStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(OutboxStatus::Pending),
            "sent" => Ok(OutboxStatus::Sent),
            "failed" => Ok(OutboxStatus::Failed),
            other => Err(format!(
                "unknown outbox status `{other}` (expected pending, sent or failed)"
            )),
        }
    }
}

/// A row to insert into the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxRow {
    /// The event id (unique).
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// The producer of a sequenced stream.
    pub producer_id: Option<String>,
    /// The stream of a sequenced event.
    pub stream: Option<String>,
    /// The producer epoch of a sequenced event.
    pub epoch: Option<i64>,
    /// The sequence number of a sequenced event.
    pub seq: Option<i64>,
    /// The packed envelope.
    pub payload: Vec<u8>,
    /// If set, the row is inserted already claimed by this instance until
    /// the given time, so the scheduler and the relay leave it alone while
    /// the publisher sends it.
    pub claim: Option<(String, DateTime<Utc>)>,
}

/// A stored outbox row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct OutboxRow {
    /// Row id (insertion order).
    pub id: i64,
    /// The event id.
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// The producer of a sequenced stream.
    pub producer_id: Option<String>,
    /// The stream of a sequenced event.
    pub stream: Option<String>,
    /// The producer epoch.
    pub epoch: Option<i64>,
    /// The sequence number.
    pub seq: Option<i64>,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// Publish attempts so far.
    pub attempts: i32,
    /// The last publish error.
    pub last_error: Option<String>,
    /// The packed envelope.
    #[serde(skip)]
    pub payload: Vec<u8>,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
    /// When the broker confirmed it.
    pub sent_at: Option<DateTime<Utc>>,
    /// The instance holding the claim.
    pub claimed_by: Option<String>,
    /// When the claim expires.
    pub claimed_until: Option<DateTime<Utc>>,
}

/// Which rows [`Outbox::list`] returns.
#[derive(Debug, Clone, Default)]
pub struct OutboxFilter {
    /// Only this status.
    pub status: Option<OutboxStatus>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// At most this many rows (newest first); default 100.
    pub limit: Option<u32>,
}

/// What to claim.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// The claiming instance.
    pub owner: &'a str,
    /// How long the claim lasts.
    pub lease: Duration,
    /// Only rows of this event type (all types if `None`).
    pub event_type: Option<&'a str>,
    /// Only rows of these event types (ignored if empty).
    pub event_types: &'a [String],
    /// Only rows created at or before this time (the relay's grace period).
    pub created_before: Option<DateTime<Utc>>,
    /// At most this many rows.
    pub limit: u32,
    /// The current time.
    pub now: DateTime<Utc>,
}

/// A `sent` mark: `$1` the confirm time, `$2` the attempts it took; the
/// caller appends the `WHERE` (by event id or by row id).
const MARK_SENT: &str = "UPDATE ey_outbox SET status = 'sent', sent_at = $1, \
     attempts = attempts + $2, claimed_by = NULL, claimed_until = NULL, last_error = NULL";

const ROW_COLUMNS: &str =
    "id, event_id, event_type, producer_id, stream, epoch, seq, status, attempts, \
     last_error, payload, created_at, sent_at, claimed_by, claimed_until";

/// Access to `ey_outbox`.
#[derive(Debug, Clone)]
pub struct Outbox {
    db: Db,
}

fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
}

impl Outbox {
    /// The outbox in `db` (which must be migrated).
    pub fn new(db: Db) -> Self {
        Outbox { db }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Inserts rows as `pending`: one statement for up to 500 rows and
    /// [`MAX_STATEMENT_BYTES`] of payload (more take several).
    pub async fn insert(&self, rows: &[NewOutboxRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        // Keep each statement under every backend's bind-parameter and
        // packet limits.
        for chunk in chunks_within(rows, 500, MAX_STATEMENT_BYTES, |r| r.payload.len()) {
            let sql = self.db.sql(&insert_sql(chunk.len())).into_owned();
            with_pool!(&self.db, pool => {
                let mut q = sqlx::query(&sql);
                for r in chunk {
                    let (by, until) = match &r.claim {
                        Some((by, until)) => (Some(by.as_str()), Some(*until)),
                        None => (None, None),
                    };
                    q = q
                        .bind(&r.event_id)
                        .bind(&r.event_type)
                        .bind(&r.producer_id)
                        .bind(&r.stream)
                        .bind(r.epoch)
                        .bind(r.seq)
                        .bind(&r.payload)
                        .bind(by)
                        .bind(until);
                }
                q.execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Claims up to `limit` pending rows that nobody holds (or whose lease
    /// expired), oldest first. Returns them in id order.
    pub async fn claim(&self, req: &ClaimRequest<'_>) -> Result<Vec<OutboxRow>> {
        let until = lease_until(req.now, req.lease);
        let mut rows: Vec<OutboxRow> = match self.db.backend() {
            Backend::Postgres | Backend::Sqlite => {
                let sql = format!(
                    "UPDATE ey_outbox SET claimed_by = $1, claimed_until = $2 WHERE {} \
                     RETURNING {ROW_COLUMNS}",
                    eventyard_core::db::claimed_ids(
                        self.db.backend(),
                        "ey_outbox",
                        &claim_filter(req, 3)
                    )
                );
                with_pool!(&self.db, pool => {
                    let q = sqlx::query_as::<_, OutboxRow>(&sql).bind(req.owner).bind(until);
                    let q = q.bind(req.now);
                    let q = match req.event_type { Some(t) => q.bind(t), None => q };
                    let q = match req.created_before { Some(b) => q.bind(b), None => q };
                    let mut q = q;
                    for t in req.event_types { q = q.bind(t); }
                    q.bind(i64::from(req.limit)).fetch_all(pool).await?
                })
            }
            Backend::MySql => self.claim_mysql(req, until).await?,
        };
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    #[cfg(feature = "mysql")]
    async fn claim_mysql(
        &self,
        req: &ClaimRequest<'_>,
        until: DateTime<Utc>,
    ) -> Result<Vec<OutboxRow>> {
        let Db::MySql(pool) = &self.db else {
            return Ok(Vec::new());
        };
        // MySQL has no UPDATE … RETURNING: lock, mark and read back in one short transaction.
        let select = self
            .db
            .sql(&format!(
                "SELECT id FROM ey_outbox WHERE {} FOR UPDATE SKIP LOCKED",
                claim_filter(req, 1)
            ))
            .into_owned();
        let mut tx = pool.begin().await?;
        let mut q = sqlx::query_scalar::<_, i64>(&select).bind(req.now);
        if let Some(t) = req.event_type {
            q = q.bind(t);
        }
        if let Some(b) = req.created_before {
            q = q.bind(b);
        }
        for t in req.event_types {
            q = q.bind(t);
        }
        let ids: Vec<i64> = q.bind(i64::from(req.limit)).fetch_all(&mut *tx).await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let rows: Vec<OutboxRow> = eventyard_core::db::mysql_claim_locked(
            &mut tx,
            "ey_outbox",
            ROW_COLUMNS,
            &ids,
            req.owner,
            until,
        )
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    #[cfg(not(feature = "mysql"))]
    async fn claim_mysql(
        &self,
        _req: &ClaimRequest<'_>,
        _until: DateTime<Utc>,
    ) -> Result<Vec<OutboxRow>> {
        Ok(Vec::new())
    }

    /// Claims one pending row by event id (for flushing a staged event).
    /// Returns `None` if it is not pending or someone else holds it.
    pub async fn claim_one(
        &self,
        event_id: &str,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboxRow>> {
        let until = lease_until(now, lease);
        let update = self.db.sql(
            "UPDATE ey_outbox SET claimed_by = $1, claimed_until = $2 WHERE event_id = $3 \
             AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < $4)",
        );
        let n = with_pool!(&self.db, pool => sqlx::query(&update)
            .bind(owner).bind(until).bind(event_id).bind(now)
            .execute(pool).await?.rows_affected());
        if n == 0 {
            return Ok(None);
        }
        self.get(event_id).await
    }

    /// Marks rows `sent` after their confirm: status, `sent_at`, the
    /// attempts it took (added to the count), claim cleared.
    pub async fn mark_sent(&self, sent: &[(String, i32)], now: DateTime<Utc>) -> Result<()> {
        let mut by_attempts: std::collections::BTreeMap<i32, Vec<&str>> = Default::default();
        for (id, attempts) in sent {
            by_attempts.entry(*attempts).or_default().push(id);
        }
        for (attempts, ids) in by_attempts {
            for chunk in ids.chunks(500) {
                let sql = self
                    .db
                    .sql(&format!(
                        "{MARK_SENT} WHERE event_id IN ({})",
                        param_list(3, chunk.len())
                    ))
                    .into_owned();
                with_pool!(&self.db, pool => {
                    let mut q = sqlx::query(&sql).bind(now).bind(attempts);
                    for id in chunk { q = q.bind(*id); }
                    q.execute(pool).await?;
                });
            }
        }
        Ok(())
    }

    /// Marks rows `sent` by their row ids, each after one attempt (the
    /// batch drain's form of [`mark_sent`](Self::mark_sent): the rows are
    /// found by primary key, and on PostgreSQL all ids travel as one array).
    pub async fn mark_sent_by_id(&self, ids: &[i64], now: DateTime<Utc>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // Irrefutable when only the postgres feature is on.
        #[cfg(feature = "postgres")]
        #[allow(irrefutable_let_patterns)]
        if let Db::Postgres(pool) = &self.db {
            sqlx::query(&format!("{MARK_SENT} WHERE id = ANY($3)"))
                .bind(now)
                .bind(1_i32)
                .bind(ids)
                .execute(pool)
                .await?;
            return Ok(());
        }
        for chunk in ids.chunks(500) {
            let sql = self
                .db
                .sql(&format!(
                    "{MARK_SENT} WHERE id IN ({})",
                    param_list(3, chunk.len())
                ))
                .into_owned();
            with_pool!(&self.db, pool => {
                let mut q = sqlx::query(&sql).bind(now).bind(1_i32);
                for id in chunk { q = q.bind(*id); }
                q.execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Records a failed attempt: one more attempt, the error, and either
    /// `failed` (when `give_up`) or back to unclaimed `pending`.
    pub async fn mark_attempt_failed(
        &self,
        event_id: &str,
        error: &str,
        give_up: bool,
        extra_attempts: i32,
    ) -> Result<()> {
        let status = if give_up { "failed" } else { "pending" };
        let sql = self.db.sql(
            "UPDATE ey_outbox SET status = $1, attempts = attempts + $2, last_error = $3, \
             claimed_by = NULL, claimed_until = NULL WHERE event_id = $4",
        );
        with_pool!(&self.db, pool => {
            sqlx::query(&sql).bind(status).bind(extra_attempts).bind(clip_text(error)).bind(event_id).execute(pool).await?;
        });
        Ok(())
    }

    /// Releases claims without recording an attempt (e.g. on shutdown).
    pub async fn release(&self, event_ids: &[String]) -> Result<()> {
        for chunk in event_ids.chunks(500) {
            let sql = self
                .db
                .sql(&format!(
                    "UPDATE ey_outbox SET claimed_by = NULL, claimed_until = NULL \
                 WHERE status = 'pending' AND event_id IN ({})",
                    param_list(1, chunk.len())
                ))
                .into_owned();
            with_pool!(&self.db, pool => {
                let mut q = sqlx::query(&sql);
                for id in chunk { q = q.bind(id); }
                q.execute(pool).await?;
            });
        }
        Ok(())
    }

    /// One row by event id.
    pub async fn get(&self, event_id: &str) -> Result<Option<OutboxRow>> {
        let sql = self
            .db
            .sql(&format!(
                "SELECT {ROW_COLUMNS} FROM ey_outbox WHERE event_id = $1"
            ))
            .into_owned();
        Ok(
            with_pool!(&self.db, pool => sqlx::query_as::<_, OutboxRow>(&sql).bind(event_id).fetch_optional(pool).await?),
        )
    }

    /// Rows matching the filter, newest first.
    pub async fn list(&self, filter: &OutboxFilter) -> Result<Vec<OutboxRow>> {
        let mut sql = format!("SELECT {ROW_COLUMNS} FROM ey_outbox WHERE 1 = 1");
        let mut n = 1;
        if filter.status.is_some() {
            sql.push_str(&format!(" AND status = ${n}"));
            n += 1;
        }
        if filter.event_type.is_some() {
            sql.push_str(&format!(" AND event_type = ${n}"));
            n += 1;
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${n}"));
        let sql = self.db.sql(&sql);
        let limit = i64::from(filter.limit.unwrap_or(100));
        Ok(with_pool!(&self.db, pool => {
            let mut q = sqlx::query_as::<_, OutboxRow>(&sql);
            if let Some(s) = filter.status { q = q.bind(s.as_str()); }
            if let Some(t) = &filter.event_type { q = q.bind(t); }
            q.bind(limit).fetch_all(pool).await?
        }))
    }

    /// Counts rows by status for one event type (or all).
    pub async fn count(&self, status: OutboxStatus, event_type: Option<&str>) -> Result<i64> {
        let sql = match event_type {
            Some(_) => "SELECT COUNT(*) FROM ey_outbox WHERE status = $1 AND event_type = $2",
            None => "SELECT COUNT(*) FROM ey_outbox WHERE status = $1",
        };
        let sql = self.db.sql(sql);
        Ok(with_pool!(&self.db, pool => {
            let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(status.as_str());
            if let Some(t) = event_type { q = q.bind(t); }
            q.fetch_one(pool).await?
        }))
    }

    /// Puts `failed` rows back to `pending` with attempts reset, so the
    /// scheduler or relay sends them again. With `event_ids` empty, every
    /// failed row (of `event_type`, if given) is replayed. Returns the count.
    pub async fn replay_failed(
        &self,
        event_ids: &[String],
        event_type: Option<&str>,
    ) -> Result<u64> {
        let mut sql = String::from(
            "UPDATE ey_outbox SET status = 'pending', attempts = 0, claimed_by = NULL, \
             claimed_until = NULL WHERE status = 'failed'",
        );
        let mut n = 1;
        if event_type.is_some() {
            sql.push_str(&format!(" AND event_type = ${n}"));
            n += 1;
        }
        if !event_ids.is_empty() {
            sql.push_str(&format!(
                " AND event_id IN ({})",
                param_list(n, event_ids.len())
            ));
        }
        let sql = self.db.sql(&sql);
        Ok(with_pool!(&self.db, pool => {
            let mut q = sqlx::query(&sql);
            if let Some(t) = event_type { q = q.bind(t); }
            for id in event_ids { q = q.bind(id); }
            q.execute(pool).await?.rows_affected()
        }))
    }
}

/// `WHERE` body (through `LIMIT`) selecting claimable rows; parameters
/// numbered from `first`: now, [event_type], [created_before], [types…], limit.
fn claim_filter(req: &ClaimRequest<'_>, first: usize) -> String {
    let mut n = first;
    let mut filter =
        format!("status = 'pending' AND (claimed_until IS NULL OR claimed_until < ${n})");
    n += 1;
    if req.event_type.is_some() {
        filter.push_str(&format!(" AND event_type = ${n}"));
        n += 1;
    }
    if req.created_before.is_some() {
        filter.push_str(&format!(" AND created_at <= ${n}"));
        n += 1;
    }
    if !req.event_types.is_empty() {
        filter.push_str(&format!(
            " AND event_type IN ({})",
            param_list(n, req.event_types.len())
        ));
        n += req.event_types.len();
    }
    filter.push_str(&format!(" ORDER BY id LIMIT ${n}"));
    filter
}

fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO ey_outbox (event_id, event_type, producer_id, stream, epoch, seq, payload, \
         claimed_by, claimed_until) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        let b = r * 9;
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8,
            b + 9
        ));
    }
    sql
}

/// A database connection the outbox row of a staged event can be written
/// on — typically the caller's own open transaction (`&mut *tx`), so the
/// business write and the event commit or roll back together.
#[async_trait::async_trait]
pub trait OutboxConn: Send {
    /// Inserts one pending outbox row on this connection.
    async fn insert_outbox_row(&mut self, row: &NewOutboxRow) -> Result<()>;

    /// Takes the next `(epoch, seq)` of a sequenced key on this connection
    /// (locking the key's `ey_stream_counter` row until the transaction ends).
    async fn next_sequence(&mut self, producer_id: &str, stream: &str) -> Result<(i64, i64)>;
}

macro_rules! outbox_conn {
    ($feature:literal, $backend:expr, $conn:ty) => {
        #[cfg(feature = $feature)]
        #[async_trait::async_trait]
        impl OutboxConn for $conn {
            async fn insert_outbox_row(&mut self, row: &NewOutboxRow) -> Result<()> {
                let sql = insert_sql(1);
                let sql = eventyard_core::db::placeholders($backend, &sql);
                sqlx::query(&sql)
                    .bind(&row.event_id)
                    .bind(&row.event_type)
                    .bind(&row.producer_id)
                    .bind(&row.stream)
                    .bind(row.epoch)
                    .bind(row.seq)
                    .bind(&row.payload)
                    .bind(row.claim.as_ref().map(|c| c.0.as_str()))
                    .bind(row.claim.as_ref().map(|c| c.1))
                    .execute(&mut *self)
                    .await
                    .map_err(SendError::from)?;
                Ok(())
            }

            async fn next_sequence(
                &mut self,
                producer_id: &str,
                stream: &str,
            ) -> Result<(i64, i64)> {
                crate::sequence::next_sequence!(self, $backend, producer_id, stream)
            }
        }
    };
}

outbox_conn!("postgres", Backend::Postgres, sqlx::PgConnection);
outbox_conn!("mysql", Backend::MySql, sqlx::MySqlConnection);
outbox_conn!("sqlite", Backend::Sqlite, sqlx::SqliteConnection);

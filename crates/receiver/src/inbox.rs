//! The inbox table: every received event, its status and its result.
//!
//! Rows are inserted by the listeners (deduplicated by `(subscriber,
//! event_id)`), claimed with a lease (`claimed_by`, `claimed_until`) by the
//! instance that processes them, and finished as `done`, `retrying` or
//! `dead`. Claims are short committed statements, so several receiver
//! instances of one subscriber share retries and batch runs, and the rows of
//! an instance that died are taken over when its lease expires.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventyard_core::db::{chunks_within, clip_text, param_list, Backend, Db, MAX_STATEMENT_BYTES};
use eventyard_core::with_pool;

use crate::error::{ReceiveError, Result};

/// The status of an inbox row (`ey_inbox.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboxStatus {
    /// Stored, waiting for its handler (realtime: at once; batch: next run).
    Received,
    /// The handler completed it.
    Done,
    /// A handler attempt failed; the next one is due at `next_attempt_at`.
    Retrying,
    /// Unreadable, failed for good, or out of attempts. Replayable.
    Dead,
    /// Stored only (`process_mode = 'none'`).
    Stored,
}

impl InboxStatus {
    /// The value stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            InboxStatus::Received => "received",
            InboxStatus::Done => "done",
            InboxStatus::Retrying => "retrying",
            InboxStatus::Dead => "dead",
            InboxStatus::Stored => "stored",
        }
    }
}

impl fmt::Display for InboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InboxStatus {
    type Err = ReceiveError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "received" => Ok(InboxStatus::Received),
            "done" => Ok(InboxStatus::Done),
            "retrying" => Ok(InboxStatus::Retrying),
            "dead" => Ok(InboxStatus::Dead),
            "stored" => Ok(InboxStatus::Stored),
            other => Err(ReceiveError::UnknownStatus(other.to_string())),
        }
    }
}

/// A stored inbox row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct InboxRow {
    /// Row id (insertion order).
    pub id: i64,
    /// The event id (the AMQP message id or a SHA-256 for unreadable messages).
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// The subscriber system.
    pub subscriber: String,
    /// The producer of a sequenced stream.
    pub producer_id: Option<String>,
    /// The stream of a sequenced event.
    pub stream: Option<String>,
    /// The producer epoch.
    pub epoch: Option<i64>,
    /// The sequence number.
    pub seq: Option<i64>,
    /// `received`, `done`, `retrying`, `dead` or `stored`.
    pub status: String,
    /// Handler attempts so far.
    pub attempts: i32,
    /// The handler's result text, or the last error.
    pub result: Option<String>,
    /// When the next attempt is due (`retrying`).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The packed envelope as received.
    #[serde(skip)]
    pub payload: Vec<u8>,
    /// When the row was stored.
    pub received_at: DateTime<Utc>,
    /// When it reached `done` or `dead`.
    pub processed_at: Option<DateTime<Utc>>,
    /// The instance holding the claim.
    pub claimed_by: Option<String>,
    /// When the claim expires.
    pub claimed_until: Option<DateTime<Utc>>,
}

/// Which rows [`Inbox::list`] returns.
#[derive(Debug, Clone, Default)]
pub struct InboxFilter {
    /// Only this subscriber.
    pub subscriber: Option<String>,
    /// Only this status.
    pub status: Option<InboxStatus>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// At most this many rows (newest first); default 100.
    pub limit: Option<u32>,
}

/// Which rows [`Inbox::replay`] puts back to `received`.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// Only rows of this subscriber (all subscribers if `None`).
    pub subscriber: Option<String>,
    /// These event ids (any event type if `event_type` is `None`).
    pub event_ids: Vec<String>,
    /// Only this event type; with no ids, every row of the type in `status`.
    pub event_type: Option<String>,
    /// Only rows in this status (default `dead`).
    pub status: InboxStatus,
}

impl Default for ReplayRequest {
    fn default() -> Self {
        ReplayRequest {
            subscriber: None,
            event_ids: Vec::new(),
            event_type: None,
            status: InboxStatus::Dead,
        }
    }
}

/// A row for [`Inbox::insert`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewInboxRow {
    /// The row id, when it was taken beforehand ([`FreshIds`]); else the
    /// database assigns one.
    pub(crate) id: Option<i64>,
    pub(crate) event_id: String,
    pub(crate) event_type: String,
    pub(crate) producer_id: Option<String>,
    pub(crate) stream: Option<String>,
    pub(crate) epoch: Option<i64>,
    pub(crate) seq: Option<i64>,
    pub(crate) status: InboxStatus,
    /// Attempts already made (1 for a row processed before it was stored).
    pub(crate) attempts: i32,
    pub(crate) result: Option<String>,
    pub(crate) payload: Vec<u8>,
    pub(crate) processed_at: Option<DateTime<Utc>>,
    pub(crate) claim: Option<(String, DateTime<Utc>)>,
}

/// What to claim for processing.
#[derive(Debug, Clone)]
pub(crate) struct Claim<'a> {
    pub(crate) subscriber: &'a str,
    pub(crate) event_type: &'a str,
    pub(crate) owner: &'a str,
    pub(crate) lease: Duration,
    pub(crate) now: DateTime<Utc>,
    pub(crate) limit: u32,
    /// Only rows with a higher id (`0`: any). A batch run claims chunk
    /// after chunk past the last id it claimed, so that each claim starts
    /// where the previous one ended instead of passing over every row the
    /// run has finished already.
    pub(crate) after_id: i64,
}

pub(crate) const ROW_COLUMNS: &str =
    "id, event_id, event_type, subscriber, producer_id, stream, epoch, seq, status, attempts, \
     result, next_attempt_at, payload, received_at, processed_at, claimed_by, claimed_until";

#[cfg(any(feature = "sqlite", feature = "mysql"))]
const INSERT_COLUMNS: usize = 15;

pub(crate) fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
}

/// The state columns a new row is inserted with.
pub(crate) struct NewState<'a> {
    pub(crate) status: &'a str,
    pub(crate) result: Option<Cow<'a, str>>,
    pub(crate) processed_at: Option<DateTime<Utc>>,
    pub(crate) claimed_by: Option<&'a str>,
    pub(crate) claimed_until: Option<DateTime<Utc>>,
}

impl NewInboxRow {
    /// The row's state columns, borrowed for binding.
    pub(crate) fn state(&self) -> NewState<'_> {
        NewState {
            status: self.status.as_str(),
            result: self.result.as_deref().map(clip_text),
            processed_at: self.processed_at,
            claimed_by: self.claim.as_ref().map(|(by, _)| by.as_str()),
            claimed_until: self.claim.as_ref().map(|(_, until)| *until),
        }
    }
}

/// Binds the insert columns of one new row (see [`insert_sql`]).
#[cfg(any(feature = "sqlite", feature = "mysql"))]
macro_rules! bind_new {
    ($q:expr, $r:expr, $subscriber:expr) => {{
        let r = $r;
        let st = r.state();
        $q.bind(r.id)
            .bind(&r.event_id)
            .bind(&r.event_type)
            .bind($subscriber)
            .bind(&r.producer_id)
            .bind(&r.stream)
            .bind(r.epoch)
            .bind(r.seq)
            .bind(st.status)
            .bind(r.attempts)
            .bind(st.result)
            .bind(&r.payload)
            .bind(st.processed_at)
            .bind(st.claimed_by)
            .bind(st.claimed_until)
    }};
}

/// Rows per insert statement (15 parameters each) where rows are listed.
const INSERT_CHUNK: usize = 400;

/// Most rows one insert statement takes on `backend` (PostgreSQL binds
/// each column as one array; the others list 15 parameters per row).
fn rows_per_insert(backend: Backend) -> usize {
    match backend {
        Backend::Postgres => usize::MAX,
        _ => INSERT_CHUNK,
    }
}

/// `rows` split into the insert statements `backend` takes them in: by
/// [`rows_per_insert`] and by [`MAX_STATEMENT_BYTES`] of payload.
fn insert_statements(backend: Backend, rows: &[NewInboxRow]) -> Vec<&[NewInboxRow]> {
    chunks_within(
        rows,
        rows_per_insert(backend),
        MAX_STATEMENT_BYTES,
        payload_len,
    )
}

/// Inserting new inbox rows on one connection (in the caller's transaction,
/// if any), skipping event ids already stored. Returns `(id, event_id)` of
/// the rows inserted.
pub(crate) trait InsertNew {
    async fn insert_new(
        &mut self,
        subscriber: &str,
        rows: &[NewInboxRow],
    ) -> Result<Vec<(i64, String)>>;
}

/// PostgreSQL: one statement whatever the number of rows, each column bound
/// as one array and unnested, which PostgreSQL parses and plans far faster
/// than a `VALUES` list of thousands of parameters.
#[cfg(feature = "postgres")]
impl InsertNew for sqlx::PgConnection {
    async fn insert_new(
        &mut self,
        subscriber: &str,
        rows: &[NewInboxRow],
    ) -> Result<Vec<(i64, String)>> {
        let mut inserted = Vec::with_capacity(rows.len());
        for chunk in insert_statements(Backend::Postgres, rows) {
            inserted.extend(insert_unnested(self, subscriber, chunk).await?);
        }
        Ok(inserted)
    }
}

/// The byte size that bounds a multi-row insert.
fn payload_len(r: &NewInboxRow) -> usize {
    r.payload.len()
}

/// One unnested insert statement of `rows` (PostgreSQL).
#[cfg(feature = "postgres")]
async fn insert_unnested(
    conn: &mut sqlx::PgConnection,
    subscriber: &str,
    rows: &[NewInboxRow],
) -> Result<Vec<(i64, String)>> {
    let n = rows.len();
    let mut id = Vec::with_capacity(n);
    let mut event_id = Vec::with_capacity(n);
    let mut event_type = Vec::with_capacity(n);
    let mut producer_id = Vec::with_capacity(n);
    let mut stream = Vec::with_capacity(n);
    let mut epoch = Vec::with_capacity(n);
    let mut seq = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    let mut result = Vec::with_capacity(n);
    let mut payload = Vec::with_capacity(n);
    let mut processed_at = Vec::with_capacity(n);
    let mut claimed_by = Vec::with_capacity(n);
    let mut claimed_until = Vec::with_capacity(n);
    for r in rows {
        let st = r.state();
        id.push(r.id);
        event_id.push(r.event_id.as_str());
        event_type.push(r.event_type.as_str());
        producer_id.push(r.producer_id.as_deref());
        stream.push(r.stream.as_deref());
        epoch.push(r.epoch);
        seq.push(r.seq);
        status.push(st.status);
        attempts.push(r.attempts);
        result.push(st.result);
        payload.push(r.payload.as_slice());
        processed_at.push(st.processed_at);
        claimed_by.push(st.claimed_by);
        claimed_until.push(st.claimed_until);
    }
    // A row without an id taken beforehand gets the next one of the
    // sequence (COALESCE evaluates it only then).
    let sql = "INSERT INTO ey_inbox (id, event_id, event_type, subscriber, producer_id, stream, \
         epoch, seq, status, attempts, result, payload, processed_at, claimed_by, claimed_until) \
         SELECT COALESCE(i, nextval('ey_inbox_id_seq')), e, t, $3, p, s, ep, sq, st, a, r, pl, \
         pa, cb, cu FROM UNNEST($1::text[], $2::text[], $4::text[], $5::text[], $6::int8[], \
         $7::int8[], $8::text[], $9::int4[], $10::text[], $11::bytea[], $12::timestamptz[], \
         $13::text[], $14::timestamptz[], $15::int8[]) \
         AS u(e, t, p, s, ep, sq, st, a, r, pl, pa, cb, cu, i) \
         ON CONFLICT (subscriber, event_id) DO NOTHING RETURNING id, event_id";
    let q = sqlx::query_as::<_, (i64, String)>(sql)
        .bind(event_id)
        .bind(event_type)
        .bind(subscriber)
        .bind(producer_id)
        .bind(stream)
        .bind(epoch)
        .bind(seq)
        .bind(status)
        .bind(attempts)
        .bind(result)
        .bind(payload)
        .bind(processed_at)
        .bind(claimed_by)
        .bind(claimed_until)
        .bind(id);
    Ok(q.fetch_all(conn).await?)
}

#[cfg(feature = "sqlite")]
impl InsertNew for sqlx::SqliteConnection {
    async fn insert_new(
        &mut self,
        subscriber: &str,
        rows: &[NewInboxRow],
    ) -> Result<Vec<(i64, String)>> {
        let mut inserted = Vec::with_capacity(rows.len());
        for chunk in insert_statements(Backend::Sqlite, rows) {
            let sql = format!(
                "{} ON CONFLICT (subscriber, event_id) DO NOTHING RETURNING id, event_id",
                insert_sql(chunk.len())
            );
            let mut q = sqlx::query_as::<_, (i64, String)>(&sql);
            for r in chunk {
                q = bind_new!(q, r, subscriber);
            }
            inserted.extend(q.fetch_all(&mut *self).await?);
        }
        Ok(inserted)
    }
}

/// Payload bytes below which no MySQL server setting can be in the way
/// (`max_allowed_packet` is at least 1 MiB on any server worth running).
const MYSQL_CHECK_ABOVE: usize = 512 << 10;

/// Room for payload bytes in one MySQL statement: the server's current
/// `max_allowed_packet`, less a margin for the statement's other values.
#[cfg(feature = "mysql")]
async fn mysql_packet_room(conn: &mut sqlx::MySqlConnection) -> Result<usize> {
    let packet: u64 = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS UNSIGNED)")
        .fetch_one(conn)
        .await?;
    Ok(usize::try_from(packet)
        .unwrap_or(usize::MAX)
        .saturating_sub(64 << 10))
}

/// MySQL has no `INSERT … RETURNING`: read which event ids exist, insert the
/// rest, read their row ids back (run it in a transaction). A row a
/// concurrent instance inserts in between is still safe: processing checks
/// the claim in the row.
#[cfg(feature = "mysql")]
impl InsertNew for sqlx::MySqlConnection {
    async fn insert_new(
        &mut self,
        subscriber: &str,
        rows: &[NewInboxRow],
    ) -> Result<Vec<(i64, String)>> {
        let mut inserted = Vec::with_capacity(rows.len());
        // Statements must stay below the server's `max_allowed_packet`,
        // which may be set lower than the usual bound.
        let total: usize = rows.iter().map(payload_len).sum();
        let bound = if total > MYSQL_CHECK_ABOVE {
            mysql_packet_room(self).await?.min(MAX_STATEMENT_BYTES)
        } else {
            MAX_STATEMENT_BYTES
        };
        for chunk in chunks_within(rows, INSERT_CHUNK, bound, payload_len) {
            let list = vec!["?"; chunk.len()].join(", ");
            let existing_sql = format!(
                "SELECT event_id FROM ey_inbox WHERE subscriber = ? AND event_id IN ({list})"
            );
            let mut q = sqlx::query_scalar::<_, String>(&existing_sql).bind(subscriber);
            for r in chunk {
                q = q.bind(&r.event_id);
            }
            let existing: std::collections::HashSet<String> =
                q.fetch_all(&mut *self).await?.into_iter().collect();
            let fresh: Vec<&NewInboxRow> = chunk
                .iter()
                .filter(|r| !existing.contains(&r.event_id))
                .collect();
            if fresh.is_empty() {
                continue;
            }
            let sql = eventyard_core::db::placeholders(
                Backend::MySql,
                &format!(
                    "{} ON DUPLICATE KEY UPDATE id = id",
                    insert_sql(fresh.len())
                ),
            )
            .into_owned();
            let mut q = sqlx::query(&sql);
            for r in &fresh {
                q = bind_new!(q, *r, subscriber);
            }
            q.execute(&mut *self).await?;
            let list = vec!["?"; fresh.len()].join(", ");
            let read = format!(
                "SELECT id, event_id FROM ey_inbox WHERE subscriber = ? AND event_id IN ({list})"
            );
            let mut q = sqlx::query_as::<_, (i64, String)>(&read).bind(subscriber);
            for r in &fresh {
                q = q.bind(&r.event_id);
            }
            inserted.extend(q.fetch_all(&mut *self).await?);
        }
        Ok(inserted)
    }
}

/// Access to `ey_inbox` — what `eventyard events list --inbox` and
/// `eventyard events replay` use.
#[derive(Debug, Clone)]
pub struct Inbox {
    db: Db,
}

impl Inbox {
    /// The inbox in `db` (which must be migrated).
    pub fn new(db: Db) -> Self {
        Inbox { db }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Rows matching the filter, newest first.
    pub async fn list(&self, filter: &InboxFilter) -> Result<Vec<InboxRow>> {
        let mut sql = format!("SELECT {ROW_COLUMNS} FROM ey_inbox WHERE 1 = 1");
        let mut n = 1;
        for (on, col) in [
            (filter.subscriber.is_some(), "subscriber"),
            (filter.status.is_some(), "status"),
            (filter.event_type.is_some(), "event_type"),
        ] {
            if on {
                sql.push_str(&format!(" AND {col} = ${n}"));
                n += 1;
            }
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${n}"));
        let sql = self.db.sql(&sql);
        let limit = i64::from(filter.limit.unwrap_or(100));
        Ok(with_pool!(&self.db, pool => {
            let mut q = sqlx::query_as::<_, InboxRow>(&sql);
            if let Some(s) = &filter.subscriber { q = q.bind(s); }
            if let Some(s) = filter.status { q = q.bind(s.as_str()); }
            if let Some(t) = &filter.event_type { q = q.bind(t); }
            q.bind(limit).fetch_all(pool).await?
        }))
    }

    /// The row of `event_id` (of `subscriber`, or of any subscriber: the oldest).
    pub async fn get(&self, subscriber: Option<&str>, event_id: &str) -> Result<Option<InboxRow>> {
        let sql = match subscriber {
            Some(_) => format!(
                "SELECT {ROW_COLUMNS} FROM ey_inbox WHERE event_id = $1 AND subscriber = $2"
            ),
            None => format!("SELECT {ROW_COLUMNS} FROM ey_inbox WHERE event_id = $1 ORDER BY id"),
        };
        let sql = self.db.sql(&sql);
        Ok(with_pool!(&self.db, pool => {
            let mut q = sqlx::query_as::<_, InboxRow>(&sql).bind(event_id);
            if let Some(s) = subscriber { q = q.bind(s); }
            q.fetch_all(pool).await?.into_iter().next()
        }))
    }

    /// Counts rows in `status` (of one subscriber and/or event type).
    pub async fn count(
        &self,
        status: InboxStatus,
        subscriber: Option<&str>,
        event_type: Option<&str>,
    ) -> Result<i64> {
        let mut sql = String::from("SELECT COUNT(*) FROM ey_inbox WHERE status = $1");
        let mut n = 2;
        if subscriber.is_some() {
            sql.push_str(&format!(" AND subscriber = ${n}"));
            n += 1;
        }
        if event_type.is_some() {
            sql.push_str(&format!(" AND event_type = ${n}"));
        }
        let sql = self.db.sql(&sql);
        Ok(with_pool!(&self.db, pool => {
            let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(status.as_str());
            if let Some(s) = subscriber { q = q.bind(s); }
            if let Some(t) = event_type { q = q.bind(t); }
            q.fetch_one(pool).await?
        }))
    }

    /// Puts rows back to `received` with their attempts reset, so the
    /// receiver processes them again (realtime: within its retry poll
    /// interval; batch: at the next run). Returns how many rows moved.
    /// Refuses a request that names neither ids nor an event type.
    pub async fn replay(&self, req: &ReplayRequest) -> Result<u64> {
        if req.event_ids.is_empty() && req.event_type.is_none() {
            return Err(ReceiveError::ReplayNeedsSelection);
        }
        let mut sql = String::from(
            "UPDATE ey_inbox SET status = 'received', attempts = 0, next_attempt_at = NULL, \
             processed_at = NULL, claimed_by = NULL, claimed_until = NULL WHERE status = $1",
        );
        let mut n = 2;
        if req.subscriber.is_some() {
            sql.push_str(&format!(" AND subscriber = ${n}"));
            n += 1;
        }
        if req.event_type.is_some() {
            sql.push_str(&format!(" AND event_type = ${n}"));
            n += 1;
        }
        if !req.event_ids.is_empty() {
            sql.push_str(&format!(
                " AND event_id IN ({})",
                param_list(n, req.event_ids.len())
            ));
        }
        let sql = self.db.sql(&sql);
        Ok(with_pool!(&self.db, pool => {
            let mut q = sqlx::query(&sql).bind(req.status.as_str());
            if let Some(s) = &req.subscriber { q = q.bind(s); }
            if let Some(t) = &req.event_type { q = q.bind(t); }
            for id in &req.event_ids { q = q.bind(id); }
            q.execute(pool).await?.rows_affected()
        }))
    }

    /// The largest payload one row can be stored with, or `None` when any
    /// payload of at most `size` bytes can (asked of the database only for
    /// larger ones: MySQL's `max_allowed_packet` can be changed live).
    pub(crate) async fn storable(&self, size: usize) -> Result<Option<usize>> {
        if size <= MYSQL_CHECK_ABOVE {
            return Ok(None);
        }
        let limit = match &self.db {
            #[cfg(feature = "mysql")]
            Db::MySql(pool) => {
                let mut conn = pool.acquire().await?;
                mysql_packet_room(&mut conn).await?
            }
            // PostgreSQL: a value of at most 1 GiB; SQLite: SQLITE_MAX_LENGTH,
            // 10^9 bytes by default. Leave room for the other values.
            #[allow(unreachable_patterns)]
            _ => 1_000_000_000 - (1 << 20),
        };
        Ok((size > limit).then_some(limit))
    }

    /// Inserts rows of `subscriber`, skipping event ids already stored.
    /// Returns `(id, event_id)` of the rows this call inserted.
    pub(crate) async fn insert(
        &self,
        subscriber: &str,
        rows: &[NewInboxRow],
    ) -> Result<Vec<(i64, String)>> {
        // One transaction where the insert takes more than one statement
        // (always on MySQL: three), so that a retry after a failure finds all
        // of the rows or none; a lone statement commits by itself.
        let backend = self.db.backend();
        let one_statement =
            backend != Backend::MySql && insert_statements(backend, rows).len() <= 1;
        with_pool!(&self.db, pool => {
            if one_statement {
                let mut conn = pool.acquire().await?;
                conn.insert_new(subscriber, rows).await
            } else {
                let mut tx = pool.begin().await?;
                let got = tx.insert_new(subscriber, rows).await?;
                tx.commit().await?;
                Ok(got)
            }
        })
    }

    /// Claims up to `limit` rows of one type that are `received`, or
    /// `retrying` and due, and that nobody holds (or whose lease expired).
    /// Returns them in id order.
    pub(crate) async fn claim(&self, c: &Claim<'_>) -> Result<Vec<InboxRow>> {
        let until = lease_until(c.now, c.lease);
        let mut rows: Vec<InboxRow> = match self.db.backend() {
            Backend::Postgres | Backend::Sqlite => {
                let sql = claim_sql(self.db.backend());
                with_pool!(&self.db, pool => {
                    sqlx::query_as::<_, InboxRow>(&sql)
                        .bind(c.owner).bind(until).bind(c.subscriber).bind(c.event_type)
                        .bind(c.now).bind(c.after_id).bind(i64::from(c.limit))
                        .fetch_all(pool).await?
                })
            }
            Backend::MySql => self.claim_mysql(c, until).await?,
        };
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    #[cfg(feature = "mysql")]
    async fn claim_mysql(&self, c: &Claim<'_>, until: DateTime<Utc>) -> Result<Vec<InboxRow>> {
        // Irrefutable when only the mysql feature is on.
        #[allow(irrefutable_let_patterns)]
        let Db::MySql(pool) = &self.db
        else {
            return Ok(Vec::new());
        };
        let select = "SELECT id FROM ey_inbox WHERE subscriber = ? AND event_type = ? \
             AND status IN ('received', 'retrying') \
             AND (next_attempt_at IS NULL OR next_attempt_at <= ?) \
             AND (claimed_until IS NULL OR claimed_until < ?) AND id > ? ORDER BY id LIMIT ? \
             FOR UPDATE SKIP LOCKED";
        let mut tx = pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(select)
            .bind(c.subscriber)
            .bind(c.event_type)
            .bind(c.now)
            .bind(c.now)
            .bind(c.after_id)
            .bind(i64::from(c.limit))
            .fetch_all(&mut *tx)
            .await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let rows: Vec<InboxRow> = eventyard_core::db::mysql_claim_locked(
            &mut tx,
            "ey_inbox",
            ROW_COLUMNS,
            &ids,
            c.owner,
            until,
        )
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    #[cfg(not(feature = "mysql"))]
    async fn claim_mysql(&self, _: &Claim<'_>, _: DateTime<Utc>) -> Result<Vec<InboxRow>> {
        Ok(Vec::new())
    }

    /// Records a failed attempt of a row this instance holds: `retrying`
    /// with `next_attempt_at`, or `dead` when `next` is `None`.
    pub(crate) async fn record_failure(
        &self,
        id: i64,
        owner: &str,
        reason: &str,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (status, processed) = match next {
            Some(_) => ("retrying", None),
            None => ("dead", Some(now)),
        };
        let sql = self.db.sql(
            "UPDATE ey_inbox SET status = $1, attempts = attempts + 1, result = $2, \
             next_attempt_at = $3, processed_at = $4, claimed_by = NULL, claimed_until = NULL \
             WHERE id = $5 AND claimed_by = $6 AND status IN ('received', 'retrying')",
        );
        let n = with_pool!(&self.db, pool => sqlx::query(&sql)
            .bind(status).bind(clip_text(reason)).bind(next).bind(processed).bind(id).bind(owner)
            .execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Marks a row this instance holds `dead` without counting an attempt
    /// (the stored payload cannot be read).
    pub(crate) async fn record_unreadable(
        &self,
        id: i64,
        owner: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = self.db.sql(
            "UPDATE ey_inbox SET status = 'dead', result = $1, processed_at = $2, \
             claimed_by = NULL, claimed_until = NULL WHERE id = $3 AND claimed_by = $4",
        );
        with_pool!(&self.db, pool => {
            sqlx::query(&sql).bind(clip_text(reason)).bind(now).bind(id).bind(owner).execute(pool).await?;
        });
        Ok(())
    }

    /// Gives up this instance's claims on rows (they are picked up again at once).
    pub(crate) async fn release(&self, ids: &[i64], owner: &str) -> Result<()> {
        for chunk in ids.chunks(500) {
            let sql = self
                .db
                .sql(&format!(
                    "UPDATE ey_inbox SET claimed_by = NULL, claimed_until = NULL \
                     WHERE claimed_by = $1 AND id IN ({})",
                    param_list(2, chunk.len())
                ))
                .into_owned();
            with_pool!(&self.db, pool => {
                let mut q = sqlx::query(&sql).bind(owner);
                for id in chunk { q = q.bind(id); }
                q.execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Gives up every claim `owner` holds on unfinished rows of `subscriber`
    /// (a starting instance holds nothing in memory yet).
    pub(crate) async fn release_all(&self, subscriber: &str, owner: &str) -> Result<u64> {
        let sql = self.db.sql(
            "UPDATE ey_inbox SET claimed_by = NULL, claimed_until = NULL \
             WHERE subscriber = $1 AND claimed_by = $2 AND status IN ('received', 'retrying')",
        );
        Ok(with_pool!(&self.db, pool => sqlx::query(&sql)
            .bind(subscriber).bind(owner).execute(pool).await?.rows_affected()))
    }
}

#[cfg(any(feature = "sqlite", feature = "mysql"))]
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO ey_inbox (id, event_id, event_type, subscriber, producer_id, stream, epoch, \
         seq, status, attempts, result, payload, processed_at, claimed_by, claimed_until) VALUES ",
    );
    let per_row = INSERT_COLUMNS;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..per_row {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * per_row + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// The rows of one processing transaction: locking those still held, and
/// marking those whose handlers succeeded `done`. Implemented per
/// connection type, called on the transaction.
pub(crate) trait ClaimedRows {
    /// Locks the rows of `ids` that `owner` still holds unfinished and
    /// returns their ids. While the transaction holds the locks no other
    /// instance can claim them (claims skip locked rows; on SQLite the
    /// transaction, begun with `BEGIN IMMEDIATE`, holds the write lock), so
    /// the lease needs no extending, which would write a new version of
    /// every row.
    async fn lock_held(&mut self, owner: &str, ids: &[i64]) -> Result<HashSet<i64>>;

    /// Marks the rows of `results` (`(id, result text)`) that `owner`
    /// holds `done` at `now`, with one more attempt, and gives up the claim.
    /// Returns how many rows changed. Result texts are clipped to
    /// [`MAX_TEXT_BYTES`](eventyard_core::db::MAX_TEXT_BYTES).
    async fn mark_done(
        &mut self,
        owner: &str,
        results: &[(i64, String)],
        now: DateTime<Utc>,
    ) -> Result<u64>;
}

/// The claim's statement (PostgreSQL, SQLite): binds the owner, the lease
/// end, the subscriber, the event type, now, the id to start after and the
/// limit.
fn claim_sql(backend: Backend) -> String {
    let filter = "subscriber = $3 AND event_type = $4 AND status IN ('received', 'retrying') \
         AND (next_attempt_at IS NULL OR next_attempt_at <= $5) \
         AND (claimed_until IS NULL OR claimed_until < $5) AND id > $6 ORDER BY id LIMIT $7";
    format!(
        "UPDATE ey_inbox SET claimed_by = $1, claimed_until = $2 WHERE {} \
         RETURNING {ROW_COLUMNS}",
        eventyard_core::db::claimed_ids(backend, "ey_inbox", filter)
    )
}

/// The rows of a processing transaction still held by `$1`, without the
/// id condition.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
const HELD: &str = "SELECT id FROM ey_inbox WHERE claimed_by = $1 \
     AND status IN ('received', 'retrying')";

/// The columns a `done` mark sets besides `result`.
const DONE_SET: &str = "status = 'done', attempts = attempts + 1, processed_at = $1, \
     next_attempt_at = NULL, claimed_by = NULL, claimed_until = NULL";

/// The rows per statement where ids are listed (SQLite, MySQL).
#[cfg(any(feature = "sqlite", feature = "mysql"))]
const LISTED_IDS: usize = 500;

/// Whether every result text is the same (one bound value serves them all).
fn one_result(results: &[(i64, String)]) -> Option<&str> {
    let (_, first) = results.first()?;
    results
        .iter()
        .all(|(_, r)| r == first)
        .then_some(first.as_str())
}

/// The rows of a processing transaction still held by `$1` among the ids
/// of the array `$2`, locked (PostgreSQL).
///
/// Each id is one probe of the primary key: the lateral subquery with its
/// `LIMIT` cannot be flattened. As `… AND id = ANY($2) FOR UPDATE` it was
/// planned, while the table's statistics were stale (a new or fast-growing
/// inbox), as a scan of the claim index over every unfinished row of every
/// subscriber, filtered by id: 17 ms instead of 0.6 ms for 256 ids among
/// 100,000 unfinished rows.
#[cfg(feature = "postgres")]
const PG_LOCK_HELD: &str = "SELECT h.id FROM UNNEST($2::int8[]) AS u(id) \
     CROSS JOIN LATERAL (SELECT i.id FROM ey_inbox i WHERE i.id = u.id AND i.claimed_by = $1 \
     AND i.status IN ('received', 'retrying') LIMIT 1 FOR UPDATE) h";

/// PostgreSQL: the ids travel as one array, so each statement is prepared
/// once whatever the group's size (a list of ids would be a new statement
/// to parse and plan for every size).
#[cfg(feature = "postgres")]
impl ClaimedRows for sqlx::PgConnection {
    async fn lock_held(&mut self, owner: &str, ids: &[i64]) -> Result<HashSet<i64>> {
        let held = sqlx::query_scalar::<_, i64>(PG_LOCK_HELD)
            .bind(owner)
            .bind(ids)
            .fetch_all(self)
            .await?;
        Ok(held.into_iter().collect())
    }

    async fn mark_done(
        &mut self,
        owner: &str,
        results: &[(i64, String)],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let mut changed = 0;
        // Chunks keep the result lookup (linear in the chunk) cheap.
        for chunk in results.chunks(1_000) {
            let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
            let uniform = one_result(chunk);
            // Otherwise each row's result is found by its id's position: no
            // join, so the plan stays an index lookup by primary key.
            let result = match uniform {
                Some(_) => "$2",
                None => "($2::text[])[array_position($3::int8[], id)]",
            };
            let sql = format!(
                "UPDATE ey_inbox SET {DONE_SET}, result = {result} \
                 WHERE id = ANY($3) AND claimed_by = $4"
            );
            let q = sqlx::query(&sql).bind(now);
            let q = match uniform {
                Some(text) => q.bind(clip_text(text)),
                None => q.bind(chunk.iter().map(|(_, r)| clip_text(r)).collect::<Vec<_>>()),
            };
            let done = q.bind(ids).bind(owner).execute(&mut *self).await?;
            changed += done.rows_affected();
        }
        Ok(changed)
    }
}

/// SQLite and MySQL: ids listed, in chunks of [`LISTED_IDS`].
macro_rules! listed_claimed_rows {
    ($feature:literal, $conn:ty, $backend:expr, $lock:literal) => {
        #[cfg(feature = $feature)]
        impl ClaimedRows for $conn {
            async fn lock_held(&mut self, owner: &str, ids: &[i64]) -> Result<HashSet<i64>> {
                let mut held = HashSet::with_capacity(ids.len());
                for chunk in ids.chunks(LISTED_IDS) {
                    let sql = eventyard_core::db::placeholders(
                        $backend,
                        &format!("{HELD} AND id IN ({}){}", param_list(2, chunk.len()), $lock),
                    )
                    .into_owned();
                    let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(owner);
                    for id in chunk {
                        q = q.bind(id);
                    }
                    held.extend(q.fetch_all(&mut *self).await?);
                }
                Ok(held)
            }

            async fn mark_done(
                &mut self,
                owner: &str,
                results: &[(i64, String)],
                now: DateTime<Utc>,
            ) -> Result<u64> {
                let mut changed = 0;
                for chunk in results.chunks(LISTED_IDS) {
                    let uniform = one_result(chunk);
                    // Placeholders numbered in order of use (MySQL's `?` are positional).
                    let (result, first_id) = match uniform {
                        Some(_) => ("$2".to_owned(), 3),
                        None => {
                            let mut cases = String::from("CASE id");
                            for i in 0..chunk.len() {
                                cases.push_str(&format!(
                                    " WHEN ${} THEN ${}",
                                    2 + 2 * i,
                                    3 + 2 * i
                                ));
                            }
                            cases.push_str(" END");
                            (cases, 2 + 2 * chunk.len())
                        }
                    };
                    let sql = eventyard_core::db::placeholders(
                        $backend,
                        &format!(
                            "UPDATE ey_inbox SET {DONE_SET}, result = {result} \
                             WHERE id IN ({}) AND claimed_by = ${}",
                            param_list(first_id, chunk.len()),
                            first_id + chunk.len()
                        ),
                    )
                    .into_owned();
                    let mut q = sqlx::query(&sql).bind(now);
                    match uniform {
                        Some(text) => q = q.bind(clip_text(text)),
                        None => {
                            for (id, text) in chunk {
                                q = q.bind(*id).bind(clip_text(text));
                            }
                        }
                    }
                    for (id, _) in chunk {
                        q = q.bind(*id);
                    }
                    changed += q.bind(owner).execute(&mut *self).await?.rows_affected();
                }
                Ok(changed)
            }
        }
    };
}

listed_claimed_rows!("sqlite", sqlx::SqliteConnection, Backend::Sqlite, "");
listed_claimed_rows!(
    "mysql",
    sqlx::MySqlConnection,
    Backend::MySql,
    " FOR UPDATE"
);

/// Taking the row ids of new inbox rows before they are inserted, so that
/// their handlers can run (and see [`Message::inbox_id`](crate::Message::inbox_id))
/// before the rows are written in their final state. Implemented per
/// connection type, called in the storing transaction.
pub(crate) trait FreshIds {
    /// For each of `event_ids` that `subscriber` has not stored yet, a new
    /// row id. `None` where the backend cannot tell safely (MySQL).
    async fn fresh_ids(
        &mut self,
        subscriber: &str,
        event_ids: &[&str],
    ) -> Result<Option<HashMap<String, i64>>>;
}

/// The events of `$1` that subscriber `$2` has not stored, each with a new
/// id of the table's sequence.
///
/// The lateral subquery with its `LIMIT` cannot be flattened into a join, so
/// every event is one probe of the unique index on both columns, whatever
/// the planner believes about the table. The `NOT EXISTS` anti-join this
/// replaces was planned, while the table's statistics were stale (a new or
/// fast-growing inbox, before autovacuum analyzes it), as a scan of all the
/// subscriber's rows per statement: a hash join over the whole inbox, or a
/// generic plan cached with only `subscriber` as its index condition. Its
/// cost grew with the table (18 to 62 µs per event within one 50,000-event
/// bench run, against about 4 µs now).
#[cfg(feature = "postgres")]
const PG_FRESH_IDS: &str =
    "SELECT u.e, nextval('ey_inbox_id_seq') FROM UNNEST($1::text[]) AS u(e) \
     LEFT JOIN LATERAL (SELECT 1 AS x FROM ey_inbox i \
     WHERE i.subscriber = $2 AND i.event_id = u.e LIMIT 1) f ON true \
     WHERE f.x IS NULL";

/// PostgreSQL: the ids come from the table's own sequence, one statement
/// ([`PG_FRESH_IDS`]). A concurrent transaction may insert one of these
/// event ids after this check; the insert then skips it, which the caller
/// must notice.
#[cfg(feature = "postgres")]
impl FreshIds for sqlx::PgConnection {
    async fn fresh_ids(
        &mut self,
        subscriber: &str,
        event_ids: &[&str],
    ) -> Result<Option<HashMap<String, i64>>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(PG_FRESH_IDS)
            .bind(event_ids)
            .bind(subscriber)
            .fetch_all(self)
            .await?;
        Ok(Some(rows.into_iter().collect()))
    }
}

/// SQLite: the transaction (begun with `BEGIN IMMEDIATE`) holds the write
/// lock, so ids above the highest ever given (`AUTOINCREMENT` keeps it in
/// `sqlite_sequence`) stay free until it ends.
#[cfg(feature = "sqlite")]
impl FreshIds for sqlx::SqliteConnection {
    async fn fresh_ids(
        &mut self,
        subscriber: &str,
        event_ids: &[&str],
    ) -> Result<Option<HashMap<String, i64>>> {
        let mut stored: HashSet<String> = HashSet::new();
        for chunk in event_ids.chunks(LISTED_IDS) {
            let sql = eventyard_core::db::placeholders(
                Backend::Sqlite,
                &format!(
                    "SELECT event_id FROM ey_inbox WHERE subscriber = $1 AND event_id IN ({})",
                    param_list(2, chunk.len())
                ),
            )
            .into_owned();
            let mut q = sqlx::query_scalar::<_, String>(&sql).bind(subscriber);
            for e in chunk {
                q = q.bind(*e);
            }
            stored.extend(q.fetch_all(&mut *self).await?);
        }
        let highest: i64 = sqlx::query_scalar(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'ey_inbox'), 0), \
             COALESCE((SELECT MAX(id) FROM ey_inbox), 0))",
        )
        .fetch_one(&mut *self)
        .await?;
        let mut next = highest;
        let mut ids = HashMap::with_capacity(event_ids.len());
        for e in event_ids {
            if !stored.contains(*e) && !ids.contains_key(*e) {
                next += 1;
                ids.insert((*e).to_owned(), next);
            }
        }
        Ok(Some(ids))
    }
}

/// MySQL: no ids are taken beforehand (its insert cannot tell its own rows
/// from a concurrent instance's). The receiver does not ask on MySQL (see
/// `runtime::inline::eligible`); `None` makes any caller store the usual way.
#[cfg(feature = "mysql")]
impl FreshIds for sqlx::MySqlConnection {
    async fn fresh_ids(
        &mut self,
        _subscriber: &str,
        _event_ids: &[&str],
    ) -> Result<Option<HashMap<String, i64>>> {
        Ok(None)
    }
}

#[cfg(all(test, feature = "postgres"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use eventyard_testkit::TestDb;

    /// A fresh migrated PostgreSQL database whose inbox `insert` filled
    /// (statistics never gathered), and a pool on it.
    async fn inbox_with(insert: &str) -> (TestDb, sqlx::PgPool) {
        let t = TestDb::migrated(Backend::Postgres).await;
        let Db::Postgres(pool) = &t.db else {
            unreachable!("a PostgreSQL test database")
        };
        let pool = pool.clone();
        sqlx::query(insert).execute(&pool).await.unwrap();
        (t, pool)
    }

    type Explain<'q> =
        sqlx::query::QueryScalar<'q, sqlx::Postgres, String, sqlx::postgres::PgArguments>;

    /// `EXPLAIN` of `sql`, its parameters bound by `bind`, as PostgreSQL
    /// plans it for these values (a custom plan) and for any values (a
    /// generic plan, as cached after a few executions): `(mode, plan)`.
    async fn plans(
        conn: &mut sqlx::PgConnection,
        sql: &str,
        bind: impl for<'q> Fn(Explain<'q>) -> Explain<'q>,
    ) -> Vec<(&'static str, String)> {
        let explain = format!("EXPLAIN {sql}");
        let mut out = Vec::new();
        for mode in ["force_custom_plan", "force_generic_plan"] {
            sqlx::query(&format!("SET plan_cache_mode = {mode}"))
                .execute(&mut *conn)
                .await
                .unwrap();
            let lines: Vec<String> = bind(sqlx::query_scalar(&explain).persistent(false))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            out.push((mode, lines.join("\n")));
        }
        out
    }

    /// The id check probes the unique index once per event, on both of its
    /// columns, while the planner thinks the inbox is empty (statistics not
    /// yet gathered) and in a plan made once for any parameters (a cached
    /// generic plan).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fresh_ids_probe_the_unique_index_whatever_the_statistics() {
        // 20,000 stored events, never analyzed.
        let (_t, pool) = inbox_with(
            "INSERT INTO ey_inbox (event_id, event_type, subscriber, status, payload) \
             SELECT 'e' || g, 'T', 'S', 'done', '\\x00' FROM generate_series(1, 20000) g",
        )
        .await;
        let mut conn = pool.acquire().await.unwrap();
        let ids: Vec<String> = (19_990..20_010).map(|i| format!("e{i}")).collect();
        for (mode, plan) in plans(&mut conn, PG_FRESH_IDS, |q| q.bind(ids.clone()).bind("S")).await
        {
            assert!(
                plan.lines().any(|l| l.contains("Index Cond")
                    && l.contains("subscriber")
                    && l.contains("event_id")),
                "{mode}: each event is one probe of the unique index on both columns:\n{plan}"
            );
            assert!(
                !plan.contains("Hash"),
                "{mode}: no scan of the whole inbox:\n{plan}"
            );
        }

        // And it answers: the 9 events not stored, each with its own new id.
        let wanted: Vec<&str> = ids.iter().map(String::as_str).collect();
        let fresh = conn.fresh_ids("S", &wanted).await.unwrap().unwrap();
        let mut got: Vec<&str> = fresh.keys().map(String::as_str).collect();
        got.sort_unstable();
        let expected: Vec<String> = (20_001..20_010).map(|i| format!("e{i}")).collect();
        assert_eq!(got, expected.iter().map(String::as_str).collect::<Vec<_>>());
        let distinct: HashSet<i64> = fresh.values().copied().collect();
        assert_eq!(distinct.len(), fresh.len());
        assert!(fresh.values().all(|&id| id > 20_000), "{fresh:?}");
        // Another subscriber has stored none of them.
        let other = conn.fresh_ids("OTHER", &wanted).await.unwrap().unwrap();
        assert_eq!(other.len(), wanted.len());
    }

    /// The group's claim check probes the primary key once per id, while
    /// the planner thinks there are few unfinished rows (statistics not yet
    /// gathered) and in a cached generic plan; it locks and returns the
    /// rows still held, no others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_claim_check_probes_the_primary_key_whatever_the_statistics() {
        // 20,000 unfinished rows held by `me`, never analyzed; the last
        // one finished, the one before held by someone else.
        let (_t, pool) = inbox_with(
            "INSERT INTO ey_inbox (event_id, event_type, subscriber, status, payload, claimed_by) \
             SELECT 'e' || g, 'T', 'S', 'received', '\\x00', 'me' FROM generate_series(1, 20000) g",
        )
        .await;
        let mut conn = pool.acquire().await.unwrap();
        sqlx::query("UPDATE ey_inbox SET status = 'done', claimed_by = NULL WHERE id = 20000")
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("UPDATE ey_inbox SET claimed_by = 'other' WHERE id = 19999")
            .execute(&mut *conn)
            .await
            .unwrap();
        let ids: Vec<i64> = (19_990..=20_000).collect();
        for (mode, plan) in plans(&mut conn, PG_LOCK_HELD, |q| q.bind("me").bind(ids.clone())).await
        {
            assert!(
                plan.contains("Index Cond: (id = u.id)"),
                "{mode}: each id is one probe of the primary key:\n{plan}"
            );
            assert!(
                !plan.contains("ey_inbox_claim_idx"),
                "{mode}: no scan of the unfinished rows:\n{plan}"
            );
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        let held = tx.lock_held("me", &ids).await.unwrap();
        let expected: HashSet<i64> = (19_990..19_999).collect();
        assert_eq!(held, expected);
        // Locked: another transaction cannot take them now.
        let mut other = pool.acquire().await.unwrap();
        let free: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM ey_inbox WHERE id = ANY($1) ORDER BY id FOR UPDATE SKIP LOCKED",
        )
        .bind(&ids)
        .fetch_all(&mut *other)
        .await
        .unwrap();
        assert_eq!(free, vec![19_999, 20_000]);
        tx.rollback().await.unwrap();
    }

    /// A claim past `after_id` takes the next rows by id after it, and
    /// none at or below it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_past_an_id_starts_after_it() {
        let (t, pool) = inbox_with(
            "INSERT INTO ey_inbox (event_id, event_type, subscriber, status, payload) \
             SELECT 'e' || g, 'T', 'S', 'received', '\\x00' FROM generate_series(1, 10) g",
        )
        .await;
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM ey_inbox ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        let inbox = Inbox::new(t.db.clone());
        let claim = |after_id: i64, limit: u32| Claim {
            subscriber: "S",
            event_type: "T",
            owner: "me",
            lease: Duration::from_secs(60),
            now: Utc::now(),
            limit,
            after_id,
        };
        let claimed = |c: Claim<'static>| {
            let inbox = &inbox;
            async move {
                let rows = inbox.claim(&c).await.unwrap();
                rows.iter().map(|r| r.id).collect::<Vec<i64>>()
            }
        };
        assert_eq!(claimed(claim(ids[4], 3)).await, ids[5..8]);
        let got = claimed(claim(0, 20)).await;
        let expected: Vec<i64> = ids[..5].iter().chain(&ids[8..]).copied().collect();
        assert_eq!(got, expected, "the rest, the claimed ones left out");
    }

    /// A claim's update finds its rows by primary key, with the table's
    /// statistics up to date (as `id IN (SELECT …)` it was planned as a
    /// hash join over a scan of the whole table) and before any.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_updates_its_rows_by_primary_key() {
        let (_t, pool) = inbox_with(
            "INSERT INTO ey_inbox (event_id, event_type, subscriber, status, payload) \
             SELECT 'e' || g, 'T', 'S', CASE WHEN g <= 50000 THEN 'done' ELSE 'received' END, \
             '\\x00' FROM generate_series(1, 100000) g",
        )
        .await;
        let mut conn = pool.acquire().await.unwrap();
        let sql = claim_sql(Backend::Postgres);
        for analyzed in [false, true] {
            if analyzed {
                sqlx::query("ANALYZE ey_inbox")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
            }
            fn bind(q: Explain<'_>) -> Explain<'_> {
                q.bind("me")
                    .bind(Utc::now())
                    .bind("S")
                    .bind("T")
                    .bind(Utc::now())
                    .bind(80_000_i64)
                    .bind(500_i64)
            }
            for (mode, plan) in plans(&mut conn, &sql, bind).await {
                let update = plan.lines().last().unwrap_or_default();
                assert!(
                    update.contains("Index Cond: (id = ANY ($"),
                    "analyzed {analyzed}, {mode}: the update finds its rows by id:\n{plan}"
                );
                assert!(
                    !plan.contains("Seq Scan") && !plan.contains("Hash"),
                    "analyzed {analyzed}, {mode}: no scan of the whole table:\n{plan}"
                );
            }
        }
    }
}

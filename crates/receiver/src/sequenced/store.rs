//! The SQL of sequenced rows: stream state, unapplied rows, fetched rows.

use chrono::Utc;
use eventyard_core::db::{clip_text, Backend};
use eventyard_core::with_pool;

use super::source::FetchedEvent;
use crate::error::Result;
use crate::inbox::{lease_until, InboxRow, InboxStatus, NewInboxRow, ROW_COLUMNS};
use crate::runtime::Shared;

/// A `(producer, stream)`.
pub(crate) type Key = (String, String);

pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The stored `(epoch, last_seq)` of a key, if any.
pub(crate) async fn load_state(shared: &Shared, key: &Key) -> Result<Option<(u64, u64)>> {
    let sql = shared.db.sql(
        "SELECT epoch, last_seq FROM ey_stream_state WHERE subscriber = $1 AND producer_id = $2 \
         AND stream = $3",
    );
    let row: Option<(i64, i64)> = with_pool!(&shared.db, pool => {
        sqlx::query_as(&sql).bind(&shared.opts.subscriber).bind(&key.0).bind(&key.1)
            .fetch_optional(pool).await?
    });
    Ok(row.map(|(e, l)| (u64::try_from(e).unwrap_or(1), u64::try_from(l).unwrap_or(0))))
}

/// Reads a key's `(epoch, last_seq)` and locks the row until the
/// transaction ends (SQLite: the transaction holds the write lock already);
/// binds: subscriber, producer, stream.
pub(crate) fn locked_state_sql(shared: &Shared) -> String {
    let lock = if shared.db.backend() == Backend::Sqlite {
        ""
    } else {
        " FOR UPDATE"
    };
    shared
        .db
        .sql(&format!(
            "SELECT epoch, last_seq FROM ey_stream_state WHERE subscriber = $1 \
             AND producer_id = $2 AND stream = $3{lock}"
        ))
        .into_owned()
}

/// The stored, unapplied rows of a type (of one key, if given), in
/// (producer, stream, epoch, seq) order.
pub(crate) async fn unapplied(
    shared: &Shared,
    event_type: &str,
    key: Option<&Key>,
) -> Result<Vec<InboxRow>> {
    let mut sql = format!(
        "SELECT {ROW_COLUMNS} FROM ey_inbox WHERE subscriber = $1 AND event_type = $2 \
         AND status IN ('received', 'retrying') AND seq IS NOT NULL AND producer_id IS NOT NULL \
         AND stream IS NOT NULL"
    );
    if key.is_some() {
        sql.push_str(" AND producer_id = $3 AND stream = $4");
    }
    sql.push_str(" ORDER BY producer_id, stream, epoch, seq, id");
    let sql = shared.db.sql(&sql).into_owned();
    Ok(with_pool!(&shared.db, pool => {
        let mut q = sqlx::query_as::<_, InboxRow>(&sql).bind(&shared.opts.subscriber).bind(event_type);
        if let Some(k) = key { q = q.bind(&k.0).bind(&k.1); }
        q.fetch_all(pool).await?
    }))
}

/// Marks a row that will never be applied (a duplicate seq, an old epoch).
pub(crate) async fn mark_done(shared: &Shared, id: i64, result: &str) -> Result<()> {
    let sql = shared.db.sql(
        "UPDATE ey_inbox SET status = 'done', result = $1, processed_at = $2, claimed_by = NULL, \
         claimed_until = NULL WHERE id = $3 AND status IN ('received', 'retrying')",
    );
    with_pool!(&shared.db, pool => {
        sqlx::query(&sql).bind(clip_text(result)).bind(Utc::now()).bind(id).execute(pool).await?;
    });
    Ok(())
}

/// Records a failed apply: one more attempt, the reason; the row stays
/// unapplied (`retrying`) and its key is blocked until it applies.
pub(crate) async fn record_failure(shared: &Shared, id: i64, reason: &str) -> Result<()> {
    let sql = shared.db.sql(
        "UPDATE ey_inbox SET status = 'retrying', attempts = attempts + 1, result = $1 \
         WHERE id = $2 AND status IN ('received', 'retrying')",
    );
    with_pool!(&shared.db, pool => {
        sqlx::query(&sql).bind(clip_text(reason)).bind(id).execute(pool).await?;
    });
    Ok(())
}

/// Sets the `mode` shown by `seq status` (and, with `last` known, the
/// whole state) of a key.
///
/// With a known `last`, the row is written only if it still holds
/// `expected` (what this engine last read or wrote); returns the new value
/// then, `None` if another instance moved the key on or `last` is unknown.
pub(crate) async fn save_mode(
    shared: &Shared,
    key: &Key,
    expected: Option<(u64, u64)>,
    (epoch, last): (u64, Option<u64>),
    mode: &str,
) -> Result<Option<(u64, u64)>> {
    match last {
        Some(last) => {
            let sql = upsert_state_sql(shared.db.backend());
            let fence = locked_state_sql(shared);
            let expected = expected.map(|(e, l)| (i64_of(e), i64_of(l)));
            with_pool!(&shared.db, pool => {
                let mut tx = if shared.db.backend() == Backend::Sqlite {
                    pool.begin_with("BEGIN IMMEDIATE").await?
                } else {
                    pool.begin().await?
                };
                let stored: Option<(i64, i64)> = sqlx::query_as(&fence)
                    .bind(&shared.opts.subscriber).bind(&key.0).bind(&key.1)
                    .fetch_optional(&mut *tx).await?;
                if stored != expected {
                    return Ok(None);
                }
                sqlx::query(sql).bind(&shared.opts.subscriber).bind(&key.0).bind(&key.1)
                    .bind(i64_of(epoch)).bind(i64_of(last)).bind(mode).bind(Utc::now())
                    .execute(&mut *tx).await?;
                tx.commit().await?;
            });
            return Ok(Some((epoch, last)));
        }
        None => {
            let sql = shared.db.sql(
                "UPDATE ey_stream_state SET mode = $1, updated_at = $2 WHERE subscriber = $3 \
                 AND producer_id = $4 AND stream = $5",
            );
            with_pool!(&shared.db, pool => {
                sqlx::query(&sql).bind(mode).bind(Utc::now()).bind(&shared.opts.subscriber)
                    .bind(&key.0).bind(&key.1).execute(pool).await?;
            });
        }
    }
    Ok(None)
}

/// The upsert of one `ey_stream_state` row; binds: subscriber, producer,
/// stream, epoch, last_seq, mode, updated_at.
pub(crate) fn upsert_state_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::MySql => {
            "INSERT INTO ey_stream_state (subscriber, producer_id, stream, epoch, last_seq, mode, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
             epoch = VALUES(epoch), last_seq = VALUES(last_seq), mode = VALUES(mode), \
             updated_at = VALUES(updated_at)"
        }
        _ => {
            "INSERT INTO ey_stream_state (subscriber, producer_id, stream, epoch, last_seq, mode, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (subscriber, producer_id, \
             stream) DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq, \
             mode = excluded.mode, updated_at = excluded.updated_at"
        }
    }
}

/// Stores fetched events in the inbox (claimed by this instance) and
/// returns, per event, its inbox row id and whether it is still unapplied.
pub(crate) async fn store_fetched(
    shared: &Shared,
    event_type: &str,
    key: &Key,
    epoch: u64,
    events: &[FetchedEvent],
) -> Result<Vec<(i64, bool)>> {
    let now = Utc::now();
    let rows: Vec<NewInboxRow> = events
        .iter()
        .map(|e| NewInboxRow {
            id: None,
            event_id: e.event_id.clone(),
            event_type: event_type.to_string(),
            producer_id: Some(key.0.clone()),
            stream: Some(key.1.clone()),
            epoch: Some(i64_of(epoch)),
            seq: Some(i64_of(e.seq)),
            status: InboxStatus::Received,
            attempts: 0,
            result: None,
            payload: e.payload.clone(),
            processed_at: None,
            claim: Some((
                shared.opts.instance_id.clone(),
                lease_until(now, shared.opts.lease + shared.opts.handler_timeout),
            )),
        })
        .collect();
    let inserted = shared.inbox.insert(&shared.opts.subscriber, &rows).await?;
    let new: std::collections::HashMap<&str, i64> =
        inserted.iter().map(|(id, e)| (e.as_str(), *id)).collect();
    let lookup = shared
        .db
        .sql("SELECT id, status FROM ey_inbox WHERE subscriber = $1 AND event_id = $2");
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        if let Some(id) = new.get(e.event_id.as_str()) {
            out.push((*id, true));
            continue;
        }
        let row: Option<(i64, String)> = with_pool!(&shared.db, pool => {
            sqlx::query_as(&lookup).bind(&shared.opts.subscriber).bind(&e.event_id)
                .fetch_optional(pool).await?
        });
        match row {
            Some((id, status)) => out.push((id, status == "received" || status == "retrying")),
            None => out.push((0, false)),
        }
    }
    Ok(out)
}

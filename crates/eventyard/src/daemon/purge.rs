//! Retention: delete finished rows past their keep time, in small chunks.
//!
//! Safe with several instances: a delete of rows another instance already
//! deleted simply removes nothing.

use std::time::Duration;

use chrono::Utc;
use eventyard_core::db::{Backend, Db};
use eventyard_core::with_pool;

/// Rows deleted per statement, so a purge never holds long locks.
const CHUNK: i64 = 1000;

/// Deletes `sent` outbox rows and `done` inbox rows older than `keep`.
/// Returns (outbox rows, inbox rows) deleted.
pub(crate) async fn purge_once(db: &Db, keep: Duration) -> Result<(u64, u64), sqlx::Error> {
    let cutoff = Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(7));
    let outbox = purge_table(db, "ey_outbox", "status = 'sent' AND sent_at < $1", cutoff).await?;
    let inbox = purge_table(
        db,
        "ey_inbox",
        "status = 'done' AND processed_at < $1",
        cutoff,
    )
    .await?;
    Ok((outbox, inbox))
}

async fn purge_table(
    db: &Db,
    table: &str,
    filter: &str,
    cutoff: chrono::DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    // MySQL cannot LIMIT a DELETE with a subquery on the same table; it can LIMIT the DELETE itself.
    let sql = match db.backend() {
        Backend::MySql => format!("DELETE FROM {table} WHERE {filter} LIMIT {CHUNK}"),
        _ => format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {filter} LIMIT {CHUNK})"
        ),
    };
    let sql = db.sql(&sql).into_owned();
    let mut total = 0;
    loop {
        let n = with_pool!(db, pool => sqlx::query(&sql).bind(cutoff).execute(pool).await?.rows_affected());
        total += n;
        if n < CHUNK as u64 {
            return Ok(total);
        }
    }
}

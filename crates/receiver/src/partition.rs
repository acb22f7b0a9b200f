//! Partition leases: how the instances of one subscriber share the
//! partitions of a partitioned sequenced receive row.
//!
//! Every instance serving the row runs [`PartitionLeases::round`] on a
//! heartbeat (a third of the lease time). A round, in short statements that
//! are safe on PostgreSQL, MySQL/MariaDB and SQLite alike (each claim is a
//! conditional `UPDATE … WHERE owner IS NULL OR expires_at < now`, so two
//! instances can never both win one partition):
//!
//! 1. renews this instance's row in `ey_seq_member` (`expires_at` = now +
//!    lease); members past their `expires_at` are dead;
//! 2. makes sure `ey_seq_partition_lease` has one row per partition
//!    `0 … partitions-1` (rows beyond are deleted: a shrink);
//! 3. renews the leases this instance holds;
//! 4. computes its share: with `L` live members sorted by instance id and
//!    `P` partitions, the member of rank `r` should hold `P / L` partitions,
//!    plus one if `r < P % L` (so at most `ceil(P / L)`, and the shares add
//!    up to `P`);
//! 5. releases its highest partitions above the share (a new instance
//!    appeared), or claims free or expired partitions up to it (an instance
//!    left or died: its leases expire and are taken over).
//!
//! The same table holds the inspection-pass lease of the type (row
//! `partition_no = -1`): whoever holds it runs the pass.
//!
//! The broker's single-active-consumer stays on every partition queue, so
//! during a hand-over (the old holder still consuming for a moment) only
//! one consumer is active; the applies are fenced on `ey_stream_state`
//! anyway.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventyard_core::db::{Backend, Db};
use eventyard_core::with_pool;

use crate::error::{ReceiveError, Result};

/// The partition number of the inspection-pass lease row.
pub const INSPECTION_LEASE: i32 = -1;

/// How long a member row is kept after it expired (then it is deleted).
const FORGET_DEAD: Duration = Duration::from_secs(3600);

/// The leases of one instance for one (subscriber, event type).
#[derive(Debug, Clone)]
pub struct PartitionLeases {
    db: Db,
    subscriber: String,
    event_type: String,
    instance: String,
    ttl: Duration,
}

/// What a [`round`](PartitionLeases::round) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// The partitions this instance holds after the round.
    pub held: BTreeSet<u32>,
    /// This instance's share (how many it should hold).
    pub share: u32,
    /// Live members (including this one).
    pub live: u32,
    /// Whether this instance holds the inspection-pass lease.
    pub inspector: bool,
}

/// One row of `ey_seq_partition_lease`, for `eventyard seq partitions`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct LeaseRow {
    /// The subscriber.
    pub subscriber: String,
    /// The event type.
    pub event_type: String,
    /// The partition (`-1`: the inspection-pass lease).
    pub partition_no: i32,
    /// The holder, if any.
    pub owner: Option<String>,
    /// Until when (a lease in the past is expired: free to take).
    pub expires_at: Option<DateTime<Utc>>,
}

/// One row of `ey_seq_member`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct MemberRow {
    /// The subscriber.
    pub subscriber: String,
    /// The event type.
    pub event_type: String,
    /// The instance.
    pub instance_id: String,
    /// Until when it counts as live.
    pub expires_at: DateTime<Utc>,
}

fn until(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(30))
}

/// The share of the member of rank `rank` among `live` members, out of
/// `partitions`: `partitions / live`, plus one for the first
/// `partitions % live` ranks. A rank beyond the members (this instance's
/// row not visible yet) gets nothing.
pub fn share(partitions: u32, live: u32, rank: u32) -> u32 {
    if live == 0 || rank >= live {
        return 0;
    }
    partitions / live + u32::from(rank < partitions % live)
}

impl PartitionLeases {
    /// The leases of `instance` for (`subscriber`, `event_type`), each valid
    /// for `ttl` after a round (renew every `ttl / 3`).
    pub fn new(
        db: Db,
        subscriber: impl Into<String>,
        event_type: impl Into<String>,
        instance: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        Self {
            db,
            subscriber: subscriber.into(),
            event_type: event_type.into(),
            instance: instance.into(),
            ttl,
        }
    }

    /// The instance id these leases are held for.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn err(&self, what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> ReceiveError + '_ {
        let what = what.into();
        move |source| ReceiveError::PartitionLease {
            subscriber: self.subscriber.clone(),
            event_type: self.event_type.clone(),
            what,
            source,
        }
    }

    /// One heartbeat at `now` for a row of `partitions` partitions (see the
    /// module docs). Returns what this instance holds afterwards.
    pub async fn round(&self, partitions: u32, now: DateTime<Utc>) -> Result<Round> {
        let partitions = partitions.max(1);
        let expires = until(now, self.ttl);
        let (sub, et, me) = (&self.subscriber, &self.event_type, &self.instance);
        let db = &self.db;

        // 1. Membership.
        let upsert = match db.backend() {
            Backend::MySql => {
                "INSERT INTO ey_seq_member (subscriber, event_type, instance_id, expires_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at), \
                 updated_at = VALUES(updated_at)"
            }
            _ => {
                "INSERT INTO ey_seq_member (subscriber, event_type, instance_id, expires_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subscriber, event_type, instance_id) \
                 DO UPDATE SET expires_at = excluded.expires_at, updated_at = excluded.updated_at"
            }
        };
        with_pool!(db, pool => {
            sqlx::query(upsert).bind(sub).bind(et).bind(me).bind(expires).bind(now)
                .execute(pool).await.map_err(self.err("renewing this instance in ey_seq_member"))?;
        });
        let forget = db.sql(
            "DELETE FROM ey_seq_member WHERE subscriber = $1 AND event_type = $2 AND expires_at < $3",
        );
        let long_ago = now - chrono::Duration::from_std(FORGET_DEAD).unwrap_or_default();
        with_pool!(db, pool => {
            sqlx::query(&forget).bind(sub).bind(et).bind(long_ago)
                .execute(pool).await.map_err(self.err("forgetting dead members in ey_seq_member"))?;
        });
        let live_sql = db.sql(
            "SELECT instance_id FROM ey_seq_member WHERE subscriber = $1 AND event_type = $2 \
             AND expires_at >= $3 ORDER BY instance_id",
        );
        let live: Vec<String> = with_pool!(db, pool => {
            sqlx::query_scalar(&live_sql).bind(sub).bind(et).bind(now)
                .fetch_all(pool).await.map_err(self.err("reading live members from ey_seq_member"))?
        });

        // 2. One lease row per partition (and the inspection row).
        let exist_sql = db.sql(
            "SELECT partition_no FROM ey_seq_partition_lease WHERE subscriber = $1 AND event_type = $2",
        );
        let existing: Vec<i32> = with_pool!(db, pool => {
            sqlx::query_scalar(&exist_sql).bind(sub).bind(et)
                .fetch_all(pool).await.map_err(self.err("reading ey_seq_partition_lease"))?
        });
        let insert = match db.backend() {
            Backend::MySql => {
                "INSERT IGNORE INTO ey_seq_partition_lease (subscriber, event_type, partition_no, updated_at) \
                 VALUES (?, ?, ?, ?)"
            }
            _ => {
                "INSERT INTO ey_seq_partition_lease (subscriber, event_type, partition_no, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (subscriber, event_type, partition_no) DO NOTHING"
            }
        };
        let wanted = (INSPECTION_LEASE..i32::try_from(partitions).unwrap_or(i32::MAX))
            .filter(|p| !existing.contains(p));
        for p in wanted {
            with_pool!(db, pool => {
                sqlx::query(insert).bind(sub).bind(et).bind(p).bind(now)
                    .execute(pool).await
                    .map_err(self.err(format!("adding partition {p} to ey_seq_partition_lease")))?;
            });
        }
        let shrink = db.sql(
            "DELETE FROM ey_seq_partition_lease WHERE subscriber = $1 AND event_type = $2 \
             AND partition_no >= $3",
        );
        let count = i32::try_from(partitions).unwrap_or(i32::MAX);
        with_pool!(db, pool => {
            sqlx::query(&shrink).bind(sub).bind(et).bind(count)
                .execute(pool).await
                .map_err(self.err(format!("deleting partitions >= {partitions} from ey_seq_partition_lease")))?;
        });

        // 3. Renew what this instance holds (the inspection lease included).
        let renew = db.sql(
            "UPDATE ey_seq_partition_lease SET expires_at = $1, updated_at = $2 WHERE subscriber = $3 \
             AND event_type = $4 AND owner = $5",
        );
        with_pool!(db, pool => {
            sqlx::query(&renew).bind(expires).bind(now).bind(sub).bind(et).bind(me)
                .execute(pool).await.map_err(self.err("renewing held leases in ey_seq_partition_lease"))?;
        });
        let held_sql = db.sql(
            "SELECT partition_no FROM ey_seq_partition_lease WHERE subscriber = $1 AND event_type = $2 \
             AND owner = $3 AND partition_no >= 0 ORDER BY partition_no",
        );
        let held: Vec<i32> = with_pool!(db, pool => {
            sqlx::query_scalar(&held_sql).bind(sub).bind(et).bind(me)
                .fetch_all(pool).await.map_err(self.err("reading held leases from ey_seq_partition_lease"))?
        });
        let mut held: BTreeSet<u32> = held
            .into_iter()
            .filter_map(|p| u32::try_from(p).ok())
            .collect();

        // 4. The share.
        let live_n = u32::try_from(live.len()).unwrap_or(u32::MAX);
        let rank = live
            .iter()
            .position(|i| i == me)
            .map_or(u32::MAX, |r| u32::try_from(r).unwrap_or(u32::MAX));
        let share = share(partitions, live_n, rank);

        // 5. Release above it, claim up to it.
        let release = db.sql(
            "UPDATE ey_seq_partition_lease SET owner = NULL, expires_at = NULL, updated_at = $1 \
             WHERE subscriber = $2 AND event_type = $3 AND partition_no = $4 AND owner = $5",
        );
        while u32::try_from(held.len()).unwrap_or(u32::MAX) > share {
            let Some(p) = held.pop_last() else { break };
            let pi = i32::try_from(p).unwrap_or(i32::MAX);
            with_pool!(db, pool => {
                sqlx::query(&release).bind(now).bind(sub).bind(et).bind(pi).bind(me)
                    .execute(pool).await
                    .map_err(self.err(format!("releasing partition {p} in ey_seq_partition_lease")))?;
            });
        }
        if u32::try_from(held.len()).unwrap_or(u32::MAX) < share {
            let free_sql = db.sql(
                "SELECT partition_no FROM ey_seq_partition_lease WHERE subscriber = $1 \
                 AND event_type = $2 AND partition_no >= 0 AND (owner IS NULL OR expires_at IS NULL \
                 OR expires_at < $3) ORDER BY partition_no",
            );
            let free: Vec<i32> = with_pool!(db, pool => {
                sqlx::query_scalar(&free_sql).bind(sub).bind(et).bind(now)
                    .fetch_all(pool).await.map_err(self.err("reading free partitions from ey_seq_partition_lease"))?
            });
            for p in free {
                if u32::try_from(held.len()).unwrap_or(u32::MAX) >= share {
                    break;
                }
                if self.claim(p, now, expires).await? {
                    if let Ok(p) = u32::try_from(p) {
                        held.insert(p);
                    }
                }
            }
        }
        let inspector = self.claim(INSPECTION_LEASE, now, expires).await?;
        Ok(Round {
            held,
            share,
            live: live_n,
            inspector,
        })
    }

    /// Takes partition `p` if it is free, expired or already ours.
    async fn claim(&self, p: i32, now: DateTime<Utc>, expires: DateTime<Utc>) -> Result<bool> {
        let sql = self.db.sql(
            "UPDATE ey_seq_partition_lease SET owner = $1, expires_at = $2, updated_at = $3 \
             WHERE subscriber = $4 AND event_type = $5 AND partition_no = $6 AND (owner IS NULL \
             OR owner = $7 OR expires_at IS NULL OR expires_at < $8)",
        );
        let n = with_pool!(&self.db, pool => {
            sqlx::query(&sql).bind(&self.instance).bind(expires).bind(now).bind(&self.subscriber)
                .bind(&self.event_type).bind(p).bind(&self.instance).bind(now)
                .execute(pool).await
                .map_err(self.err(format!("claiming partition {p} in ey_seq_partition_lease")))?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// How many partitions the lease table holds for the type (the highest
    /// partition + 1; 0 if none): the partition count before a change.
    pub async fn extent(&self) -> Result<u32> {
        let sql = self.db.sql(
            "SELECT MAX(partition_no) FROM ey_seq_partition_lease WHERE subscriber = $1 \
             AND event_type = $2",
        );
        let max: Option<i32> = with_pool!(&self.db, pool => {
            sqlx::query_scalar(&sql).bind(&self.subscriber).bind(&self.event_type)
                .fetch_one(pool).await.map_err(self.err("reading the partition count from ey_seq_partition_lease"))?
        });
        Ok(max
            .and_then(|m| u32::try_from(m.saturating_add(1)).ok())
            .unwrap_or(0))
    }

    /// Gives every lease of this instance back and removes its member row
    /// (a graceful stop: the others take over on their next round).
    pub async fn leave(&self) -> Result<()> {
        let release = self.db.sql(
            "UPDATE ey_seq_partition_lease SET owner = NULL, expires_at = NULL, updated_at = $1 \
             WHERE subscriber = $2 AND event_type = $3 AND owner = $4",
        );
        let forget = self.db.sql(
            "DELETE FROM ey_seq_member WHERE subscriber = $1 AND event_type = $2 AND instance_id = $3",
        );
        with_pool!(&self.db, pool => {
            sqlx::query(&release).bind(Utc::now()).bind(&self.subscriber).bind(&self.event_type)
                .bind(&self.instance).execute(pool).await
                .map_err(self.err("releasing every lease in ey_seq_partition_lease"))?;
            sqlx::query(&forget).bind(&self.subscriber).bind(&self.event_type).bind(&self.instance)
                .execute(pool).await.map_err(self.err("removing this instance from ey_seq_member"))?;
        });
        Ok(())
    }
}

/// Every partition lease row (of one subscriber, if given), by subscriber,
/// event type and partition.
pub async fn leases(db: &Db, subscriber: Option<&str>) -> Result<Vec<LeaseRow>> {
    let mut sql = String::from(
        "SELECT subscriber, event_type, partition_no, owner, expires_at FROM ey_seq_partition_lease",
    );
    if subscriber.is_some() {
        sql.push_str(" WHERE subscriber = $1");
    }
    sql.push_str(" ORDER BY subscriber, event_type, partition_no");
    let sql = db.sql(&sql).into_owned();
    Ok(with_pool!(db, pool => {
        let mut q = sqlx::query_as::<_, LeaseRow>(&sql);
        if let Some(s) = subscriber { q = q.bind(s); }
        q.fetch_all(pool).await?
    }))
}

/// Every member row (of one subscriber, if given).
pub async fn members(db: &Db, subscriber: Option<&str>) -> Result<Vec<MemberRow>> {
    let mut sql =
        String::from("SELECT subscriber, event_type, instance_id, expires_at FROM ey_seq_member");
    if subscriber.is_some() {
        sql.push_str(" WHERE subscriber = $1");
    }
    sql.push_str(" ORDER BY subscriber, event_type, instance_id");
    let sql = db.sql(&sql).into_owned();
    Ok(with_pool!(db, pool => {
        let mut q = sqlx::query_as::<_, MemberRow>(&sql);
        if let Some(s) = subscriber { q = q.bind(s); }
        q.fetch_all(pool).await?
    }))
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for p in 1..=20u32 {
            for live in 1..=7u32 {
                let shares: Vec<u32> = (0..live).map(|r| share(p, live, r)).collect();
                assert_eq!(shares.iter().sum::<u32>(), p, "p={p} live={live}");
                let (lo, hi) = (shares.iter().min(), shares.iter().max());
                assert!(hi.unwrap() - lo.unwrap() <= 1);
                assert!(*hi.unwrap() <= p.div_ceil(live));
            }
        }
        assert_eq!(share(4, 2, 5), 0);
        assert_eq!(share(4, 0, 0), 0);
    }
}

//! The inspection pass: re-reads a sequenced type's recent outbox rows and
//! feeds them through the trackers, to find tail gaps that no later message
//! reveals; then commits a checkpoint.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use eventyard_core::config::Schedule;
use eventyard_core::db::Backend;
use eventyard_core::with_pool;

use super::engine::{Engine, Item};
use super::source::FetchedEvent;
use super::store::{self, Key};
use crate::error::Result;

/// The schedule of the pass and when it fires next.
#[derive(Debug, Default)]
pub(super) struct InspectState {
    cron: Option<String>,
    schedule: Option<Schedule>,
    next: Option<DateTime<Utc>>,
    read_at: Option<Instant>,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PassReport {
    pub(super) read: usize,
    pub(super) stored: usize,
    pub(super) checkpoint: Option<DateTime<Utc>>,
}

type OutboxRow = (String, String, String, i64, i64, Vec<u8>, DateTime<Utc>);

impl Engine {
    /// Re-reads `inspect_cron` every few seconds and runs the pass when due.
    pub(super) async fn maybe_inspect(&mut self) {
        // Partitioned rows: one instance (the inspection-lease holder) inspects.
        if !self.inspects() {
            return;
        }
        let stale = self
            .inspect
            .read_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
        if stale {
            self.inspect.read_at = Some(Instant::now());
            let sql = self.shared.db.sql(
                "SELECT inspect_cron FROM ey_receive_config WHERE event_type = $1 AND subscriber = $2",
            );
            let cron: std::result::Result<Option<Option<String>>, sqlx::Error> = with_pool!(&self.shared.db, pool => {
                sqlx::query_scalar(&sql).bind(&self.rt.event_type).bind(&self.shared.opts.subscriber)
                    .fetch_optional(pool).await
            });
            let cron = match cron {
                Ok(c) => c.flatten().filter(|c| !c.trim().is_empty()),
                Err(e) => {
                    tracing::debug!(error = %e, "sequenced: cannot read inspect_cron");
                    return;
                }
            };
            if cron != self.inspect.cron {
                self.inspect.schedule = match cron.as_deref().map(Schedule::parse) {
                    Some(Ok(s)) => Some(s),
                    Some(Err(e)) => {
                        tracing::error!(event_type = %self.rt.event_type, error = %e,
                            "sequenced: inspect_cron does not parse; no inspection pass");
                        None
                    }
                    None => None,
                };
                self.inspect.cron = cron;
                self.inspect.next = self
                    .inspect
                    .schedule
                    .as_ref()
                    .and_then(|s| s.next_after(Utc::now()));
            }
        }
        let Some(next) = self.inspect.next else {
            return;
        };
        let now = Utc::now();
        if now < next {
            return;
        }
        self.inspect.next = self
            .inspect
            .schedule
            .as_ref()
            .and_then(|s| s.next_after(now));
        match self.inspection_pass().await {
            Ok(r) => {
                tracing::info!(event_type = %self.rt.event_type, read = r.read, stored = r.stored,
                checkpoint = ?r.checkpoint, "sequenced: inspection pass")
            }
            Err(e) => tracing::warn!(event_type = %self.rt.event_type, error = %e,
                "sequenced: inspection pass failed; the checkpoint stays"),
        }
        self.export_metrics();
    }

    /// One pass: outbox rows of the type created in
    /// `[checkpoint − overlap, now − safety lag]` go through the trackers
    /// (already applied ones count as `dup`, missing ones are stored in the
    /// inbox and applied); the new checkpoint is `min(now − safety lag,
    /// creation time of the oldest row beyond a hole that remains)`.
    pub(super) async fn inspection_pass(&mut self) -> Result<PassReport> {
        let shared = std::sync::Arc::clone(&self.shared);
        let et = self.rt.event_type.clone();
        let read_cp = shared.db.sql(
            "SELECT checkpoint_at FROM ey_seq_checkpoint WHERE subscriber = $1 AND event_type = $2",
        );
        let checkpoint: Option<DateTime<Utc>> = with_pool!(&shared.db, pool => {
            sqlx::query_scalar(&read_cp).bind(&shared.opts.subscriber).bind(&et)
                .fetch_optional(pool).await?
        });
        let overlap = chrono::Duration::from_std(self.opts.inspect_overlap)
            .unwrap_or(chrono::Duration::seconds(60));
        let lag = chrono::Duration::from_std(self.opts.safety_lag)
            .unwrap_or(chrono::Duration::seconds(5));
        let upper = Utc::now() - lag;
        // The first pass looks back one overlap.
        let from = checkpoint.unwrap_or(upper) - overlap;
        let sql = shared.db.sql(
            "SELECT event_id, producer_id, stream, epoch, seq, payload, created_at FROM ey_outbox \
             WHERE event_type = $1 AND seq IS NOT NULL AND epoch IS NOT NULL \
             AND producer_id IS NOT NULL AND stream IS NOT NULL AND created_at >= $2 \
             AND created_at <= $3 ORDER BY producer_id, stream, epoch, seq",
        );
        let rows: Vec<OutboxRow> = with_pool!(&shared.db, pool => {
            sqlx::query_as(&sql).bind(&et).bind(from).bind(upper).fetch_all(pool).await?
        });
        let mut report = PassReport {
            read: rows.len(),
            ..PassReport::default()
        };
        let mut by_key: BTreeMap<Key, Vec<OutboxRow>> = BTreeMap::new();
        for row in rows {
            by_key
                .entry((row.1.clone(), row.2.clone()))
                .or_default()
                .push(row);
        }
        let mut oldest_hole: Option<DateTime<Utc>> = None;
        for (key, rows) in by_key {
            if !self.ensure_key(&key).await {
                continue;
            }
            for (event_id, _, _, epoch, seq, payload, _) in &rows {
                let (Ok(epoch), Ok(seq)) = (u64::try_from(*epoch), u64::try_from(*seq)) else {
                    continue;
                };
                let Some(ks) = self.keys.get(&key) else { break };
                let t = &ks.tracker;
                let known = epoch < t.epoch()
                    || (epoch == t.epoch() && t.last().is_some_and(|l| seq <= l))
                    || t.buffered().any(|b| epoch == t.epoch() && b == seq);
                if known {
                    // Counted as `dup` by the tracker.
                    self.feed_message(&key, epoch, seq, Item { id: -1, msg: None })
                        .await;
                    continue;
                }
                let event = FetchedEvent {
                    event_id: event_id.clone(),
                    seq,
                    payload: payload.clone(),
                };
                let stored =
                    store::store_fetched(&shared, &et, &key, epoch, std::slice::from_ref(&event))
                        .await?;
                let Some(&(id, unapplied)) = stored.first() else {
                    continue;
                };
                if !unapplied {
                    continue;
                }
                report.stored += 1;
                let decoded = shared
                    .opts
                    .codec
                    .unpack(payload)
                    .map_err(|e| format!("unreadable envelope: {e}"))
                    .and_then(|env| crate::runtime::decode::to_message(&shared, env, id, 1));
                match decoded {
                    Ok((_, msg)) => {
                        self.feed_message(
                            &key,
                            epoch,
                            seq,
                            Item {
                                id,
                                msg: Some(Box::new(msg)),
                            },
                        )
                        .await;
                    }
                    Err(e) => tracing::warn!(event_type = %et, producer = %key.0, stream = %key.1,
                        epoch, seq, error = %e, "sequenced: an outbox row cannot be decoded"),
                }
            }
            self.drive(&key).await;
            if let Some(ks) = self.keys.get(&key) {
                let t = &ks.tracker;
                if t.has_hole() {
                    let beyond = rows
                        .iter()
                        .filter(|r| {
                            u64::try_from(r.3).ok() == Some(t.epoch())
                                && t.last().is_none_or(|l| u64::try_from(r.4).unwrap_or(0) > l)
                        })
                        .map(|r| r.6)
                        .min()
                        .unwrap_or(from);
                    oldest_hole = Some(oldest_hole.map_or(beyond, |o| o.min(beyond)));
                }
            }
        }
        let new_cp = oldest_hole.map_or(upper, |h| h.min(upper));
        let upsert = match shared.db.backend() {
            Backend::MySql => {
                "INSERT INTO ey_seq_checkpoint (subscriber, event_type, checkpoint_at, updated_at) \
                 VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE checkpoint_at = VALUES(checkpoint_at), \
                 updated_at = VALUES(updated_at)"
            }
            _ => {
                "INSERT INTO ey_seq_checkpoint (subscriber, event_type, checkpoint_at, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (subscriber, event_type) DO UPDATE SET \
                 checkpoint_at = excluded.checkpoint_at, updated_at = excluded.updated_at"
            }
        };
        with_pool!(&shared.db, pool => {
            sqlx::query(upsert).bind(&shared.opts.subscriber).bind(&et).bind(new_cp).bind(Utc::now())
                .execute(pool).await?;
        });
        report.checkpoint = Some(new_cp);
        Ok(report)
    }
}

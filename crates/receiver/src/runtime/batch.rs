//! The batch timer of one event type: on `batch_cron`, claim the type's
//! `received` (and due `retrying`) rows and process them.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use eventyard_core::config::{ProcessMode, Schedule};
use eventyard_core::db::Backend;
use eventyard_core::with_pool;
use futures_util::FutureExt;
use tokio::sync::watch;

use super::decode::to_message;
use super::pool::{panic_text, record_failure, Attempt, Job, JobSource};
use super::{Shared, TypeRuntime, TypeSettings};
use crate::error::Result;
use crate::handler::{BatchHandler, HandlerContext, HandlerKind, HandlerOutcome, Message};
use crate::inbox::{ClaimedRows, InboxRow};

/// When the schedule fires next, tracking `@every` cadence from the last firing.
#[derive(Debug)]
pub(crate) struct BatchClock {
    schedule: Option<Schedule>,
    next: Option<DateTime<Utc>>,
}

impl BatchClock {
    pub(crate) fn new() -> Self {
        BatchClock {
            schedule: None,
            next: None,
        }
    }

    /// Follows the row's schedule; a changed schedule restarts from `now`.
    pub(crate) fn update(&mut self, schedule: Option<&Schedule>, now: DateTime<Utc>) {
        if self.schedule.as_ref() != schedule {
            self.schedule = schedule.cloned();
            self.next = schedule.and_then(|s| s.next_after(now));
        }
    }

    /// The next firing.
    pub(crate) fn next(&self) -> Option<DateTime<Utc>> {
        self.next
    }

    /// Whether a firing is due at `now`; if so, moves to the following one
    /// (missed firings collapse into one).
    pub(crate) fn take_due(&mut self, now: DateTime<Utc>) -> bool {
        let (Some(schedule), Some(next)) = (&self.schedule, self.next) else {
            return false;
        };
        if next > now {
            return false;
        }
        let mut following = schedule.next_after(now);
        if let (Some(interval), Ok(step)) = (
            schedule.interval(),
            chrono::Duration::from_std(schedule.interval().unwrap_or_default()),
        ) {
            if !interval.is_zero() {
                let mut n = next + step;
                while n <= now {
                    n += step;
                }
                following = Some(n);
            }
        }
        self.next = following;
        true
    }
}

pub(crate) async fn batch_timer(
    shared: Arc<Shared>,
    rt: Arc<TypeRuntime>,
    mut stop: watch::Receiver<bool>,
) {
    let mut clock = BatchClock::new();
    loop {
        let settings = rt.settings();
        let schedule = (settings.cfg.process_mode == ProcessMode::Batch)
            .then_some(settings.cfg.batch_schedule.as_ref())
            .flatten();
        let now = Utc::now();
        clock.update(schedule, now);
        if clock.take_due(now) {
            match run_batch(&shared, &rt, &mut stop).await {
                Ok(n) if n > 0 => {
                    tracing::info!(event_type = %rt.event_type, events = n, "batch run finished");
                    shared.stats.update(&rt.event_type, |s| s.batch_runs += 1);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(event_type = %rt.event_type, error = %e, "batch run failed; the rest waits for the next run")
                }
            }
            continue;
        }
        let wait = clock
            .next()
            .and_then(|n| (n - now).to_std().ok())
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = rt.changed.notified() => {}
            _ = super::stopped(&mut stop) => return,
        }
    }
}

/// One batch run: claims and processes chunks until none is left, each
/// claim past the highest id claimed before it in this run. Rows of lower
/// ids that become claimable meanwhile (a lease of another instance
/// expiring, a retry falling due) wait for the next run.
/// Returns how many events it handled.
async fn run_batch(
    shared: &Arc<Shared>,
    rt: &Arc<TypeRuntime>,
    stop: &mut watch::Receiver<bool>,
) -> Result<u64> {
    let mut total = 0;
    let mut after_id = 0;
    loop {
        if *stop.borrow() {
            return Ok(total);
        }
        let settings = rt.settings();
        if settings.cfg.process_mode != ProcessMode::Batch {
            return Ok(total);
        }
        let batch_handler = match settings.handler.clone() {
            Some(HandlerKind::Batch(h)) => Some(h),
            _ => None,
        };
        let limit = if batch_handler.is_some() {
            shared.opts.batch_size
        } else {
            // A per-event handler (or none): feed the pool as room allows.
            let room = shared.opts.backlog.saturating_sub(rt.pending());
            if room == 0 {
                tokio::select! {
                    _ = rt.progress.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = super::stopped(stop) => return Ok(total),
                }
                continue;
            }
            u32::try_from(room)
                .unwrap_or(u32::MAX)
                .min(shared.opts.batch_size)
        };
        let mut claim = shared.claim(&rt.event_type, limit);
        claim.after_id = after_id;
        let rows = shared.inbox.claim(&claim).await?;
        // Claimed rows come in id order.
        let Some(last) = rows.last() else {
            return Ok(total);
        };
        after_id = last.id;
        total += rows.len() as u64;
        match batch_handler {
            Some(h) => process_batch(shared, rt, &settings, h.as_ref(), rows).await?,
            None => {
                for row in rows {
                    rt.dispatch(Job {
                        id: row.id,
                        attempts: row.attempts,
                        from_batch: true,
                        requeued: false,
                        source: JobSource::Stored(Box::new(row)),
                    });
                }
            }
        }
    }
}

/// Runs a batch handler over claimed rows in one transaction.
async fn process_batch(
    shared: &Shared,
    rt: &TypeRuntime,
    settings: &TypeSettings,
    handler: &dyn BatchHandler,
    rows: Vec<InboxRow>,
) -> Result<()> {
    let owner = shared.opts.instance_id.as_str();
    let mut msgs: Vec<Message> = Vec::with_capacity(rows.len());
    for row in &rows {
        let attempt = u32::try_from(row.attempts).unwrap_or(0).saturating_add(1);
        let decoded = shared
            .opts
            .codec
            .unpack(&row.payload)
            .map_err(|e| format!("unreadable envelope: {e}"))
            .and_then(|env| to_message(shared, env, row.id, attempt));
        match decoded {
            Ok((_, m)) => msgs.push(m),
            Err(e) => {
                shared
                    .inbox
                    .record_unreadable(row.id, owner, &e, Utc::now())
                    .await?;
                shared.stats.update(&rt.event_type, |s| s.dead += 1);
            }
        }
    }
    if msgs.is_empty() {
        return Ok(());
    }
    let failures: Vec<(i64, u32, Attempt)> = with_pool!(&shared.db, pool => {
        let mut tx = if shared.db.backend() == Backend::Sqlite {
            pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            pool.begin().await?
        };
        // Lock the rows that are still ours; drop the others from the batch.
        let ids: Vec<i64> = msgs.iter().map(|m| m.inbox_id).collect();
        let ours = tx.lock_held(owner, &ids).await?;
        msgs.retain(|m| ours.contains(&m.inbox_id));
        if msgs.is_empty() {
            tx.rollback().await?;
            return Ok(());
        }
        let started = Instant::now();
        let result = {
            let mut ctx = HandlerContext::new(
                &mut *tx,
                &shared.db,
                &settings.cfg,
                settings.handler_config.as_deref(),
            );
            let fut = handler.handle_batch(&msgs, &mut ctx);
            match tokio::time::timeout(settings.timeout, AssertUnwindSafe(fut).catch_unwind()).await {
                Ok(Ok(outcomes)) => Ok(outcomes),
                Ok(Err(p)) => Err(Attempt::Panicked(panic_text(p.as_ref()))),
                Err(_) => Err(Attempt::TimedOut(settings.timeout)),
            }
        };
        shared.stats.observe_handler(&rt.event_type, started.elapsed(), msgs.len() as u64);
        match result {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                let mut failures = Vec::new();
                let mut results = Vec::with_capacity(msgs.len());
                for m in &msgs {
                    let outcome = outcomes.next().unwrap_or_else(|| {
                        HandlerOutcome::retry("the batch handler returned no outcome for this event")
                    });
                    match outcome {
                        HandlerOutcome::Done { result } => results.push((m.inbox_id, result)),
                        other => failures.push((m.inbox_id, m.attempt, Attempt::Returned(other))),
                    }
                }
                // The rows stay locked by this transaction: all are still ours.
                let done = tx.mark_done(owner, &results, Utc::now()).await?;
                tx.commit().await?;
                shared.stats.update(&rt.event_type, |s| s.processed += done);
                failures
            }
            Err(attempt) => {
                drop(tx);
                let text = attempt.failure_text().unwrap_or_default();
                msgs.iter()
                    .map(|m| {
                        let a = match &attempt {
                            Attempt::Panicked(_) => Attempt::Panicked(text.clone()),
                            _ => Attempt::TimedOut(settings.timeout),
                        };
                        (m.inbox_id, m.attempt, a)
                    })
                    .collect()
            }
        }
    });
    for (id, attempt, result) in failures {
        record_failure(shared, rt, settings, id, attempt, &result).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn fixed_intervals_keep_their_cadence() {
        let s = Schedule::parse("@every 10s").unwrap();
        let mut c = BatchClock::new();
        c.update(Some(&s), at("2026-01-01T00:00:00Z"));
        assert_eq!(c.next(), Some(at("2026-01-01T00:00:10Z")));
        assert!(!c.take_due(at("2026-01-01T00:00:09Z")));
        assert!(c.take_due(at("2026-01-01T00:00:11Z")));
        assert_eq!(c.next(), Some(at("2026-01-01T00:00:20Z")));
        // Missed firings collapse into one.
        assert!(c.take_due(at("2026-01-01T00:01:05Z")));
        assert_eq!(c.next(), Some(at("2026-01-01T00:01:10Z")));
        assert!(!c.take_due(at("2026-01-01T00:01:06Z")));
    }

    #[test]
    fn cron_and_schedule_changes() {
        let daily = Schedule::parse("0 30 2 * * *").unwrap();
        let mut c = BatchClock::new();
        c.update(Some(&daily), at("2026-01-01T03:00:00Z"));
        assert_eq!(c.next(), Some(at("2026-01-02T02:30:00Z")));
        assert!(c.take_due(at("2026-01-02T02:30:00Z")));
        assert_eq!(c.next(), Some(at("2026-01-03T02:30:00Z")));
        // Same schedule again: nothing moves; a new one restarts from now.
        c.update(Some(&daily), at("2026-01-02T05:00:00Z"));
        assert_eq!(c.next(), Some(at("2026-01-03T02:30:00Z")));
        let every = Schedule::parse("@every 1m").unwrap();
        c.update(Some(&every), at("2026-01-02T05:00:00Z"));
        assert_eq!(c.next(), Some(at("2026-01-02T05:01:00Z")));
        c.update(None, at("2026-01-02T05:00:30Z"));
        assert_eq!(c.next(), None);
        assert!(!c.take_due(at("2026-01-09T00:00:00Z")));
    }
}

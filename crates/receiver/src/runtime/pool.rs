//! The handler pool of one event type, the per-event processing
//! transaction, and the retry poller.

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use eventyard_core::config::ProcessMode;
use eventyard_core::db::Backend;
use eventyard_core::with_pool;
use futures_util::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::decode::to_message;
use super::{backoff, Shared, TypeRuntime, TypeSettings};
use crate::error::Result;
use crate::handler::{HandlerContext, HandlerKind, HandlerOutcome, Message};
use crate::inbox::{lease_until, InboxRow};

/// One event for the pool.
#[derive(Debug)]
pub(crate) struct Job {
    /// The inbox row id.
    pub(crate) id: i64,
    /// Attempts recorded before this one.
    pub(crate) attempts: i32,
    /// Claimed by a batch run (runs whatever the mode says now).
    pub(crate) from_batch: bool,
    /// Sent back after a database error (already counted and known).
    pub(crate) requeued: bool,
    pub(crate) source: JobSource,
}

#[derive(Debug)]
pub(crate) enum JobSource {
    /// Decoded by the listener that stored it.
    Decoded(Box<Message>),
    /// Claimed from the inbox: decode the stored payload.
    Stored(Box<InboxRow>),
}

/// How a handler call ended.
pub(crate) enum Attempt {
    Returned(HandlerOutcome),
    Panicked(String),
    TimedOut(Duration),
}

impl Attempt {
    pub(crate) fn failure_text(&self) -> Option<String> {
        match self {
            Attempt::Returned(HandlerOutcome::Done { .. }) => None,
            Attempt::Returned(o) => Some(o.text().to_string()),
            Attempt::Panicked(m) => Some(format!("handler panicked: {m}")),
            Attempt::TimedOut(d) => Some(format!("handler timed out after {d:?}")),
        }
    }
}

pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

/// When the next attempt is due after failed attempt number `attempt`, or
/// `None` for dead.
pub(crate) fn next_attempt(
    shared: &Shared,
    settings: &TypeSettings,
    attempt: u32,
    result: &Attempt,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let after = match result {
        Attempt::Returned(HandlerOutcome::Fail { .. } | HandlerOutcome::Done { .. }) => {
            return None
        }
        Attempt::Returned(HandlerOutcome::Retry { after, .. }) => *after,
        Attempt::Panicked(_) | Attempt::TimedOut(_) => None,
    };
    if attempt >= settings.cfg.max_attempts {
        return None;
    }
    let delay =
        after.unwrap_or_else(|| backoff(settings.cfg.backoff, attempt, shared.opts.max_backoff));
    Some(now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1)))
}

/// Runs the jobs of one type, at most `workers` at a time (read live).
pub(crate) async fn dispatcher(
    shared: Arc<Shared>,
    rt: Arc<TypeRuntime>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    mut stop: watch::Receiver<bool>,
) {
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut known: HashSet<i64> = HashSet::new();
    let mut running: JoinSet<(i64, Option<Job>)> = JoinSet::new();
    loop {
        let limit = rt.settings().cfg.workers.max(1) as usize;
        while running.len() < limit {
            let Some(job) = queue.pop_front() else { break };
            let shared = Arc::clone(&shared);
            let rt = Arc::clone(&rt);
            running.spawn(async move {
                let id = job.id;
                match AssertUnwindSafe(process(&shared, &rt, job)).catch_unwind().await {
                    Ok(again) => (id, again),
                    Err(p) => {
                        tracing::error!(event_type = %rt.event_type, id, panic = %panic_text(p.as_ref()), "receiver worker panicked");
                        (id, None)
                    }
                }
            });
        }
        tokio::select! {
            _ = super::stopped(&mut stop) => break,
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok((id, again)) = done {
                    match again {
                        Some(mut job) => {
                            // The database is unreachable: try again shortly.
                            job.requeued = true;
                            let tx_rt = Arc::clone(&rt);
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_millis(500)).await;
                                let _ = tx_rt.jobs.send(job);
                            });
                            continue;
                        }
                        None => {
                            known.remove(&id);
                        }
                    }
                }
                rt.pending.fetch_sub(1, Ordering::SeqCst);
                rt.progress.notify_waiters();
            }
            job = jobs.recv() => {
                let Some(job) = job else { break };
                if known.insert(job.id) || job.requeued {
                    queue.push_back(job);
                } else {
                    // Already queued or running here (e.g. re-claimed after its lease).
                    rt.pending.fetch_sub(1, Ordering::SeqCst);
                }
            }
            _ = rt.changed.notified() => {}
        }
    }
    // Hand queued events back to any instance, let running ones finish.
    let queued: Vec<i64> = queue.drain(..).map(|j| j.id).collect();
    if !queued.is_empty() {
        if let Err(e) = shared
            .inbox
            .release(&queued, &shared.opts.instance_id)
            .await
        {
            tracing::warn!(event_type = %rt.event_type, error = %e, "cannot release queued events; their leases will expire");
        }
        rt.pending.fetch_sub(queued.len(), Ordering::SeqCst);
    }
    let grace = tokio::time::sleep(shared.opts.shutdown_grace);
    tokio::pin!(grace);
    while !running.is_empty() {
        tokio::select! {
            _ = running.join_next() => {
                rt.pending.fetch_sub(1, Ordering::SeqCst);
            }
            _ = &mut grace => {
                tracing::warn!(event_type = %rt.event_type, running = running.len(),
                    "handlers still running after the shutdown grace; abandoning them (rolled back, retried after their lease)");
                running.abort_all();
                break;
            }
        }
    }
    rt.progress.notify_waiters();
}

/// Processes one job. Returns the job back if the database was unreachable.
async fn process(shared: &Shared, rt: &TypeRuntime, job: Job) -> Option<Job> {
    match process_inner(shared, rt, &job).await {
        Ok(()) => None,
        Err(e) => {
            tracing::warn!(event_type = %rt.event_type, id = job.id, error = %e,
                "database error while processing; will try again");
            Some(job)
        }
    }
}

async fn process_inner(shared: &Shared, rt: &TypeRuntime, job: &Job) -> Result<()> {
    let settings = rt.settings();
    let owner = shared.opts.instance_id.as_str();
    let mode = settings.cfg.process_mode;
    if !(mode == ProcessMode::Realtime || job.from_batch && mode == ProcessMode::Batch) {
        // The mode changed since the event was queued: leave it to the new mode.
        shared.inbox.release(&[job.id], owner).await?;
        return Ok(());
    }
    let attempt = u32::try_from(job.attempts).unwrap_or(0).saturating_add(1);
    let msg = match &job.source {
        JobSource::Decoded(m) => {
            let mut m = (**m).clone();
            m.attempt = attempt;
            m
        }
        JobSource::Stored(row) => {
            let decoded = shared
                .opts
                .codec
                .unpack(&row.payload)
                .map_err(|e| format!("unreadable envelope: {e}"))
                .and_then(|env| to_message(shared, env, row.id, attempt));
            match decoded {
                Ok((_, m)) => m,
                Err(e) => {
                    shared
                        .inbox
                        .record_unreadable(row.id, owner, &e, Utc::now())
                        .await?;
                    shared.stats.update(&rt.event_type, |s| s.dead += 1);
                    return Ok(());
                }
            }
        }
    };
    let Some(handler) = settings.handler.clone() else {
        let reason = format!(
            "handler `{}` is not registered in this process",
            settings.cfg.handler_id.as_deref().unwrap_or("")
        );
        let result = Attempt::Returned(HandlerOutcome::retry(reason));
        return record_failure(shared, rt, &settings, job.id, attempt, &result).await;
    };
    let lease = lease_until(Utc::now(), settings.timeout + shared.opts.lease);
    with_pool!(&shared.db, pool => {
        let mut tx = if shared.db.backend() == Backend::Sqlite {
            pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            pool.begin().await?
        };
        // Take the row lock (SQLite: the write lock) and check the claim is still ours.
        let lock = shared.db.sql(
            "UPDATE ey_inbox SET claimed_until = $1 WHERE id = $2 AND claimed_by = $3 \
             AND status IN ('received', 'retrying')",
        );
        let n = sqlx::query(&lock).bind(lease).bind(job.id).bind(owner)
            .execute(&mut *tx).await?.rows_affected();
        if n == 0 {
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
            call(&handler, &msg, &mut ctx, settings.timeout).await
        };
        shared.stats.observe_handler(&rt.event_type, started.elapsed(), 1);
        match result {
            Attempt::Returned(HandlerOutcome::Done { result }) => {
                let done = shared.db.sql(
                    "UPDATE ey_inbox SET status = 'done', attempts = attempts + 1, result = $1, \
                     processed_at = $2, next_attempt_at = NULL, claimed_by = NULL, \
                     claimed_until = NULL WHERE id = $3 AND claimed_by = $4",
                );
                let n = sqlx::query(&done).bind(&result).bind(Utc::now()).bind(job.id).bind(owner)
                    .execute(&mut *tx).await?.rows_affected();
                if n == 1 {
                    tx.commit().await?;
                    shared.stats.update(&rt.event_type, |s| s.processed += 1);
                } else {
                    tx.rollback().await?;
                }
                Ok(())
            }
            Attempt::Returned(other) => {
                tx.rollback().await?;
                let r = Attempt::Returned(other);
                record_failure(shared, rt, &settings, job.id, attempt, &r).await
            }
            other => {
                // The handler was interrupted mid-flight: drop the whole transaction.
                drop(tx);
                record_failure(shared, rt, &settings, job.id, attempt, &other).await
            }
        }
    })
}

/// Calls a handler with a timeout, catching panics.
pub(crate) async fn call(
    handler: &HandlerKind,
    msg: &Message,
    ctx: &mut HandlerContext<'_>,
    timeout: Duration,
) -> Attempt {
    let fut = async {
        match handler {
            HandlerKind::Single(h) => h.handle(msg, ctx).await,
            HandlerKind::Batch(h) => h
                .handle_batch(std::slice::from_ref(msg), ctx)
                .await
                .into_iter()
                .next()
                .unwrap_or_else(|| HandlerOutcome::retry("the batch handler returned no outcome")),
        }
    };
    match tokio::time::timeout(timeout, AssertUnwindSafe(fut).catch_unwind()).await {
        Ok(Ok(o)) => Attempt::Returned(o),
        Ok(Err(p)) => Attempt::Panicked(panic_text(p.as_ref())),
        Err(_) => Attempt::TimedOut(timeout),
    }
}

pub(crate) async fn record_failure(
    shared: &Shared,
    rt: &TypeRuntime,
    settings: &TypeSettings,
    id: i64,
    attempt: u32,
    result: &Attempt,
) -> Result<()> {
    let now = Utc::now();
    let next = next_attempt(shared, settings, attempt, result, now);
    let reason = result.failure_text().unwrap_or_default();
    let recorded = shared
        .inbox
        .record_failure(id, &shared.opts.instance_id, &reason, next, now)
        .await?;
    if !recorded {
        return Ok(());
    }
    tracing::warn!(event_type = %rt.event_type, id, attempt, dead = next.is_none(), reason = %reason, "handler attempt failed");
    shared.stats.update(&rt.event_type, |s| {
        match result {
            Attempt::Panicked(_) => s.panics += 1,
            Attempt::TimedOut(_) => s.timeouts += 1,
            Attempt::Returned(_) => {}
        }
        if next.is_some() {
            s.retried += 1;
        } else {
            s.dead += 1;
        }
    });
    Ok(())
}

/// Claims due retries, replayed rows and rows of vanished instances for
/// the realtime types, as room in their pools allows.
pub(crate) async fn retry_poller(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.opts.retry_poll_interval) => {}
            _ = super::stopped(&mut shutdown) => return,
        }
        for rt in shared.runtimes() {
            if *shutdown.borrow() {
                return;
            }
            let settings = rt.settings();
            if settings.cfg.process_mode != ProcessMode::Realtime || settings.cfg.sequenced {
                // Sequenced rows are applied by their trackers, in order.
                continue;
            }
            let room = shared.opts.backlog.saturating_sub(rt.pending());
            if room == 0 {
                continue;
            }
            let limit = u32::try_from(room.min(500)).unwrap_or(500);
            match shared
                .inbox
                .claim(&shared.claim(&rt.event_type, limit))
                .await
            {
                Ok(rows) => {
                    for row in rows {
                        rt.dispatch(Job {
                            id: row.id,
                            attempts: row.attempts,
                            from_batch: false,
                            requeued: false,
                            source: JobSource::Stored(Box::new(row)),
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(event_type = %rt.event_type, error = %e, "cannot claim due retries");
                }
            }
        }
    }
}

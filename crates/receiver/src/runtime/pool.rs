//! The handler pool of one event type, the grouped processing
//! transaction, and the retry poller.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
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
use crate::handler::{HandlerContext, HandlerKind, HandlerOutcome, Message, Tx};
use crate::inbox::{ClaimedRows, InboxRow};

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

/// A running average of a type's handler call time (microseconds; unknown
/// until the first call).
pub(crate) struct CallTime(AtomicU64);

impl Default for CallTime {
    fn default() -> Self {
        CallTime(AtomicU64::new(u64::MAX))
    }
}

impl CallTime {
    /// Calls this short are grouped greedily: a transaction costs more.
    const QUICK_MICROS: u64 = 1_000;

    pub(crate) fn observe(&self, took: Duration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX / 8);
        let old = self.0.load(Ordering::Relaxed);
        let new = if old == u64::MAX {
            sample
        } else {
            (old.saturating_mul(7).saturating_add(sample)) / 8
        };
        self.0.store(new, Ordering::Relaxed);
    }

    pub(crate) fn is_quick(&self) -> bool {
        self.0.load(Ordering::Relaxed) < Self::QUICK_MICROS
    }
}

/// What became of one job of a group.
enum Next {
    /// Finished here: done, failure recorded, released, or its claim lost.
    Finished,
    /// The database was unreachable: try again shortly.
    Again(Job),
    /// Its group's transaction was abandoned after an interrupted handler
    /// (nothing of it committed): run it again at once.
    Rerun(Job),
}

/// Runs the jobs of one type, at most `workers` handler calls at a time
/// (read live). A free worker takes a group of the jobs already queued (up
/// to [`ReceiverOptions::realtime_group`](crate::ReceiverOptions::realtime_group):
/// all of them while handler calls are quick, else a share per worker) and
/// runs their handlers one after another in one transaction; it never
/// waits for a group to fill.
pub(crate) async fn dispatcher(
    shared: Arc<Shared>,
    rt: Arc<TypeRuntime>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    mut stop: watch::Receiver<bool>,
) {
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut known: HashSet<i64> = HashSet::new();
    let mut running: JoinSet<Vec<(i64, Next)>> = JoinSet::new();
    // How many jobs each running group has, and how many run in all.
    let mut groups: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut in_flight: usize = 0;
    let accept = |job: Job, queue: &mut VecDeque<Job>, known: &mut HashSet<i64>| {
        if known.insert(job.id) || job.requeued {
            queue.push_back(job);
        } else {
            // Already queued or running here (e.g. re-claimed after its lease).
            rt.pending.fetch_sub(1, Ordering::SeqCst);
        }
    };
    loop {
        let settings = rt.settings();
        let limit = settings.cfg.workers.max(1) as usize;
        let group_max = if settings.cfg.sequenced {
            // Keep sequenced rows one at a time, should any come this way.
            1
        } else {
            shared.opts.realtime_group.max(1)
        };
        while !queue.is_empty() && rt.try_take_worker(limit) {
            // Never wait for more. Quick handlers: take all that is queued
            // (fewer, larger transactions); slower ones: spread it over the
            // workers, so that they run in parallel.
            let share = if rt.call_time.is_quick() {
                queue.len()
            } else {
                queue.len().div_ceil(limit)
            };
            let take = share.clamp(1, group_max);
            let group: Vec<Job> = queue.drain(..take.min(queue.len())).collect();
            let ids: Vec<i64> = group.iter().map(|j| j.id).collect();
            let n = group.len();
            let shared = Arc::clone(&shared);
            let rt = Arc::clone(&rt);
            let handle = running.spawn(async move {
                match AssertUnwindSafe(process_group(&shared, &rt, group))
                    .catch_unwind()
                    .await
                {
                    Ok(results) => results,
                    Err(p) => {
                        tracing::error!(event_type = %rt.event_type, ids = ?ids, panic = %panic_text(p.as_ref()), "receiver worker panicked");
                        ids.into_iter().map(|id| (id, Next::Finished)).collect()
                    }
                }
            });
            groups.insert(handle.id(), n);
            in_flight += n;
        }
        tokio::select! {
            _ = super::stopped(&mut stop) => break,
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                // Its worker is free again.
                rt.busy.fetch_sub(1, Ordering::SeqCst);
                let mut finished = 0usize;
                match done {
                    Ok((task, results)) => {
                        groups.remove(&task);
                        in_flight = in_flight.saturating_sub(results.len());
                        let mut rerun = Vec::new();
                        for (id, next) in results {
                            match next {
                                Next::Finished => {
                                    known.remove(&id);
                                    finished += 1;
                                }
                                Next::Again(mut job) => {
                                    // The database is unreachable: try again shortly.
                                    job.requeued = true;
                                    let tx_rt = Arc::clone(&rt);
                                    tokio::spawn(async move {
                                        tokio::time::sleep(Duration::from_millis(500)).await;
                                        let _ = tx_rt.jobs.send(job);
                                    });
                                }
                                Next::Rerun(job) => rerun.push(job),
                            }
                        }
                        for job in rerun.into_iter().rev() {
                            queue.push_front(job);
                        }
                    }
                    Err(e) => {
                        let n = groups.remove(&e.id()).unwrap_or(0);
                        in_flight = in_flight.saturating_sub(n);
                        finished = n;
                    }
                }
                if finished > 0 {
                    rt.pending.fetch_sub(finished, Ordering::SeqCst);
                    rt.progress.notify_waiters();
                }
            }
            job = jobs.recv() => {
                let Some(job) = job else { break };
                accept(job, &mut queue, &mut known);
                // Take in whatever else is waiting, so groups can form.
                while let Ok(job) = jobs.try_recv() {
                    accept(job, &mut queue, &mut known);
                }
            }
            _ = rt.changed.notified() => {}
            // A listener's inline store gave its worker back.
            _ = rt.worker_freed.notified(), if !queue.is_empty() => {}
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
            done = running.join_next_with_id() => {
                if done.is_some() {
                    rt.busy.fetch_sub(1, Ordering::SeqCst);
                }
                let n = match done {
                    Some(Ok((task, results))) => {
                        groups.remove(&task);
                        results.len()
                    }
                    Some(Err(e)) => groups.remove(&e.id()).unwrap_or(0),
                    None => 0,
                };
                in_flight = in_flight.saturating_sub(n);
                rt.pending.fetch_sub(n, Ordering::SeqCst);
            }
            _ = &mut grace => {
                tracing::warn!(event_type = %rt.event_type, running = in_flight,
                    "handlers still running after the shutdown grace; abandoning them (rolled back, retried after their lease)");
                running.abort_all();
                rt.busy.fetch_sub(running.len(), Ordering::SeqCst);
                rt.pending.fetch_sub(in_flight, Ordering::SeqCst);
                break;
            }
        }
    }
    rt.progress.notify_waiters();
}

/// A job ready for its handler.
struct Ready {
    job: Job,
    msg: Message,
    attempt: u32,
}

/// How a job of a group's transaction ended.
pub(crate) enum Slot {
    /// Its handler and its `done` committed.
    Done,
    /// Its handler failed; its writes were rolled back to its savepoint.
    Failed(Attempt),
    /// Not ours any more (claim lost, or no longer processable).
    Lost,
    /// The group's transaction was abandoned; run it again.
    Rerun,
}

/// How long rolling back to a handler's savepoint may take after the
/// handler was interrupted (timeout, panic) before the whole transaction is
/// abandoned.
const SAVEPOINT_ROLLBACK_WAIT: Duration = Duration::from_secs(5);

/// Undoes the current handler's writes (the savepoint stays set).
const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT ey_handler";

/// Processes a group of jobs of one type: decodes them, then runs their
/// handlers in one transaction (see [`run_group`]) and records the
/// failures after its commit.
async fn process_group(shared: &Shared, rt: &TypeRuntime, jobs: Vec<Job>) -> Vec<(i64, Next)> {
    let settings = rt.settings();
    let owner = shared.opts.instance_id.as_str();
    let mode = settings.cfg.process_mode;
    let mut out = Vec::with_capacity(jobs.len());
    let mut ready: Vec<Ready> = Vec::with_capacity(jobs.len());
    let mut release: Vec<Job> = Vec::new();
    for job in jobs {
        if !(mode == ProcessMode::Realtime || job.from_batch && mode == ProcessMode::Batch) {
            // The mode changed since the event was queued: leave it to the new mode.
            release.push(job);
            continue;
        }
        let attempt = u32::try_from(job.attempts).unwrap_or(0).saturating_add(1);
        let decoded = match &job.source {
            JobSource::Decoded(m) => {
                let mut m = (**m).clone();
                m.attempt = attempt;
                Ok(m)
            }
            JobSource::Stored(row) => shared
                .opts
                .codec
                .unpack(&row.payload)
                .map_err(|e| format!("unreadable envelope: {e}"))
                .and_then(|env| to_message(shared, env, row.id, attempt))
                .map(|(_, m)| m),
        };
        match decoded {
            Ok(msg) => ready.push(Ready { job, msg, attempt }),
            Err(e) => {
                let id = job.id;
                match shared
                    .inbox
                    .record_unreadable(id, owner, &e, Utc::now())
                    .await
                {
                    Ok(()) => {
                        shared.stats.update(&rt.event_type, |s| s.dead += 1);
                        out.push((id, Next::Finished));
                    }
                    Err(e) => out.push(again(rt, job, &e)),
                }
            }
        }
    }
    if !release.is_empty() {
        let ids: Vec<i64> = release.iter().map(|j| j.id).collect();
        match shared.inbox.release(&ids, owner).await {
            Ok(()) => out.extend(ids.into_iter().map(|id| (id, Next::Finished))),
            Err(e) => out.extend(release.into_iter().map(|job| again(rt, job, &e))),
        }
    }
    if ready.is_empty() {
        return out;
    }
    let Some(handler) = settings.handler.clone() else {
        let reason = format!(
            "handler `{}` is not registered in this process",
            settings.cfg.handler_id.as_deref().unwrap_or("")
        );
        for r in ready {
            let result = Attempt::Returned(HandlerOutcome::retry(reason.clone()));
            out.push(finish_failed(shared, rt, &settings, r, &result).await);
        }
        return out;
    };
    let slots = match run_group(shared, rt, &settings, &handler, &ready).await {
        Ok(slots) => slots,
        Err(e) => {
            out.extend(ready.into_iter().map(|r| again(rt, r.job, &e)));
            return out;
        }
    };
    let done = slots.iter().filter(|s| matches!(s, Slot::Done)).count() as u64;
    if done > 0 {
        shared.stats.update(&rt.event_type, |s| s.processed += done);
    }
    for (r, slot) in ready.into_iter().zip(slots) {
        match slot {
            Slot::Done | Slot::Lost => out.push((r.job.id, Next::Finished)),
            Slot::Rerun => out.push((r.job.id, Next::Rerun(r.job))),
            Slot::Failed(result) => {
                out.push(finish_failed(shared, rt, &settings, r, &result).await)
            }
        }
    }
    out
}

fn again(rt: &TypeRuntime, job: Job, e: &dyn std::fmt::Display) -> (i64, Next) {
    tracing::warn!(event_type = %rt.event_type, id = job.id, error = %e,
        "database error while processing; will try again");
    (job.id, Next::Again(job))
}

async fn finish_failed(
    shared: &Shared,
    rt: &TypeRuntime,
    settings: &TypeSettings,
    r: Ready,
    result: &Attempt,
) -> (i64, Next) {
    match record_failure(shared, rt, settings, r.job.id, r.attempt, result).await {
        Ok(()) => (r.job.id, Next::Finished),
        Err(e) => again(rt, r.job, &e),
    }
}

/// The group's transaction: one claim check for all its rows, the handler
/// calls ([`call_handlers`]), one `done` update for the rows whose handlers
/// succeeded, one commit. A handler's writes commit together with its own
/// `done`; a failed handler's writes are undone without touching the others'.
async fn run_group(
    shared: &Shared,
    rt: &TypeRuntime,
    settings: &TypeSettings,
    handler: &HandlerKind,
    ready: &[Ready],
) -> Result<Vec<Slot>> {
    let owner = shared.opts.instance_id.as_str();
    let backend = shared.db.backend();
    let ids: Vec<i64> = ready.iter().map(|r| r.job.id).collect();
    let calls: Vec<Call<'_>> = ready
        .iter()
        .map(|r| Call {
            id: r.job.id,
            msg: &r.msg,
        })
        .collect();
    with_pool!(&shared.db, pool => {
        let mut tx = if backend == Backend::Sqlite {
            pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            pool.begin().await?
        };
        let held: HashSet<i64> = tx.lock_held(owner, &ids).await?;
        if held.is_empty() {
            tx.rollback().await?;
            return Ok(ready.iter().map(|_| Slot::Lost).collect());
        }
        let Calls { mut slots, results, abandoned, unguarded_done } = call_handlers(
            shared,
            rt,
            settings,
            handler,
            &calls,
            &|id| held.contains(&id),
            false,
            &mut Tx::from(&mut *tx),
        )
        .await?;
        if abandoned {
            drop(tx);
            return Ok(slots);
        }
        if !results.is_empty() {
            let n = match tx.mark_done(owner, &results, Utc::now()).await {
                Ok(n) => n,
                Err(e) if !unguarded_done.is_empty() => {
                    // An unguarded handler answered `Done` but left the
                    // transaction failed: its row fails, the others run again.
                    drop(tx);
                    for (slot, r) in slots.iter_mut().zip(ready) {
                        if !matches!(slot, Slot::Done) {
                            continue;
                        }
                        *slot = if unguarded_done.contains(&r.job.id) {
                            Slot::Failed(Attempt::Returned(HandlerOutcome::retry(format!(
                                "the handler answered done, but its transaction failed: {e}"
                            ))))
                        } else {
                            Slot::Rerun
                        };
                    }
                    return Ok(slots);
                }
                Err(e) => return Err(e),
            };
            if n != results.len() as u64 {
                // Cannot happen while the claim check's locks hold; undo all.
                tx.rollback().await?;
                for s in slots.iter_mut() {
                    if matches!(s, Slot::Done) {
                        *s = Slot::Lost;
                    }
                }
                return Ok(slots);
            }
        }
        tx.commit().await?;
        Ok(slots)
    })
}

/// One event of a processing transaction: its inbox row and its message.
pub(crate) struct Call<'a> {
    pub(crate) id: i64,
    pub(crate) msg: &'a Message,
}

/// What the handler calls of a processing transaction left to finish.
pub(crate) struct Calls {
    /// One per call, in order.
    pub(crate) slots: Vec<Slot>,
    /// `(id, result text)` of the calls that answered `Done`.
    pub(crate) results: Vec<(i64, String)>,
    /// The transaction must be dropped, nothing of it committed (its `Done`
    /// slots are turned into reruns already).
    pub(crate) abandoned: bool,
    /// Rows answered `Done` by a handler that reached for the transaction
    /// while no savepoint guarded it (a lone event, or a handler that
    /// declared it would not).
    pub(crate) unguarded_done: Vec<i64>,
}

/// Calls the handler of each event of `calls`, one after another in the
/// open transaction `tx`, skipping the ones `held` refuses (`Lost`).
///
/// Each call runs in its own savepoint (released when it is done, rolled
/// back to when it is not), so that one handler's writes can be undone
/// alone. No savepoints are set for a lone event unless `guard_lone` (a
/// failure then rolls back the whole transaction instead), nor for a
/// handler that declares it does not write in the transaction
/// ([`Handler::uses_transaction`](crate::Handler::uses_transaction)).
/// Should such a handler touch the transaction and then fail, the
/// transaction is abandoned and the others run again.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn call_handlers(
    shared: &Shared,
    rt: &TypeRuntime,
    settings: &TypeSettings,
    handler: &HandlerKind,
    calls: &[Call<'_>],
    held: &(dyn Fn(i64) -> bool + Sync),
    guard_lone: bool,
    tx: &mut Tx<'_>,
) -> Result<Calls> {
    let mut slots: Vec<Slot> = Vec::with_capacity(calls.len());
    let mut results: Vec<(i64, String)> = Vec::new();
    let mut abandoned = false;
    let savepoints = (calls.len() > 1 || guard_lone) && handler.uses_transaction();
    let mut unguarded_done: Vec<i64> = Vec::new();
    // Whether `ey_handler` is set. After a rollback to it, it still marks
    // where the next handler starts; after a `Done`, it is released and
    // set again.
    let mut savepoint = false;
    // The last handler answered `Done` and its savepoint is not released yet.
    let mut last_done = false;
    // Releasing the savepoint after a `Done` fails when the handler left
    // the transaction failed (PostgreSQL: a statement error it did not
    // report): undo it like a failure, so that the others still commit.
    macro_rules! release_or_demote {
        ($sql:expr) => {
            if let Err(e) = tx.raw($sql).await {
                tx.raw(ROLLBACK_TO).await?;
                results.pop();
                if let Some(s) = slots.iter_mut().rev().find(|s| matches!(s, Slot::Done)) {
                    *s = Slot::Failed(Attempt::Returned(HandlerOutcome::retry(format!(
                        "the handler answered done, but its transaction failed: {e}"
                    ))));
                }
            }
        };
    }
    for c in calls {
        if abandoned {
            slots.push(Slot::Rerun);
            continue;
        }
        if !held(c.id) {
            slots.push(Slot::Lost);
            continue;
        }
        if savepoints {
            // Raw statements: the release of the previous one travels with it.
            if last_done {
                release_or_demote!("RELEASE SAVEPOINT ey_handler; SAVEPOINT ey_handler");
            } else if !savepoint {
                tx.raw("SAVEPOINT ey_handler").await?;
            }
            savepoint = true;
            last_done = false;
        }
        let started = Instant::now();
        let (result, touched) = {
            let mut ctx = HandlerContext::new(
                tx.reborrow(),
                &shared.db,
                &settings.cfg,
                settings.handler_config.as_deref(),
            );
            let result = call(handler, c.msg, &mut ctx, settings.timeout).await;
            (result, ctx.touched_transaction())
        };
        let took = started.elapsed();
        shared.stats.observe_handler(&rt.event_type, took, 1);
        rt.call_time.observe(took);
        match result {
            Attempt::Returned(HandlerOutcome::Done { result }) => {
                results.push((c.id, result));
                slots.push(Slot::Done);
                last_done = savepoints;
                if touched && !savepoints {
                    unguarded_done.push(c.id);
                }
            }
            Attempt::Returned(other) if savepoints => {
                tx.raw(ROLLBACK_TO).await?;
                slots.push(Slot::Failed(Attempt::Returned(other)));
            }
            other if savepoints => {
                // Interrupted mid-flight: the connection may still be busy
                // with the handler's statement. Roll back to the savepoint
                // if that finishes soon; otherwise drop the whole
                // transaction and run the rest of the group again.
                let rolled =
                    tokio::time::timeout(SAVEPOINT_ROLLBACK_WAIT, tx.raw(ROLLBACK_TO)).await;
                if !matches!(rolled, Ok(Ok(_))) {
                    abandoned = true;
                    rerun_done(&mut slots);
                }
                slots.push(Slot::Failed(other));
            }
            other => {
                // No savepoint: what the handler wrote can only be undone
                // with the whole transaction. Drop it and run the group's
                // other events again. A handler that never reached for
                // the transaction left nothing to undo.
                if touched {
                    abandoned = true;
                    rerun_done(&mut slots);
                }
                slots.push(Slot::Failed(other));
            }
        }
    }
    if !abandoned && last_done {
        release_or_demote!("RELEASE SAVEPOINT ey_handler");
    }
    Ok(Calls {
        slots,
        results,
        abandoned,
        unguarded_done,
    })
}

/// Turns the `Done` slots of a transaction that is being dropped into reruns.
fn rerun_done(slots: &mut [Slot]) {
    for s in slots.iter_mut() {
        if matches!(s, Slot::Done) {
            *s = Slot::Rerun;
        }
    }
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

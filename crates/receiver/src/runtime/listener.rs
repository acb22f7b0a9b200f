//! One queue's listener: store a micro-batch of deliveries, then ack them
//! with one `ack_multiple`, then hand the realtime ones to their pools.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use eventyard_core::config::ProcessMode;
use eventyard_core::db::Backend;
use eventyard_transport::{Consumer, Delivery, Subscription};
use tokio::sync::{oneshot, watch};

use super::decode::decode;
use super::pool::{record_failure, run_group, Attempt, Job, JobSource, Prologue, Ready, Slot};
use super::{Shared, TypeRuntime};
use crate::error::Result;
use crate::handler::Message;
use crate::inbox::{InboxStatus, NewInboxRow};

const MAX_DB_BACKOFF: Duration = Duration::from_secs(5);
const MAX_SUBSCRIBE_BACKOFF: Duration = Duration::from_secs(10);

/// Runs until `stop` turns true. The first subscribe result goes to `first`.
/// `partition`: the partition the queue is (partitioned sequenced rows).
pub(crate) async fn listen(
    shared: Arc<Shared>,
    rt: Arc<TypeRuntime>,
    sub: Subscription,
    partition: Option<u32>,
    mut stop: watch::Receiver<bool>,
    first: oneshot::Sender<Result<()>>,
) {
    let mut first = Some(first);
    let mut delay = Duration::from_millis(100);
    loop {
        let subscribed = async {
            shared.transport.declare_exchange(&sub.exchange).await?;
            shared.transport.subscribe(sub.clone()).await
        };
        let consumer = tokio::select! {
            c = subscribed => c,
            _ = super::stopped(&mut stop) => return,
        };
        let mut consumer = match consumer {
            Ok(c) => {
                if let Some(f) = first.take() {
                    let _ = f.send(Ok(()));
                }
                tracing::info!(event_type = %rt.event_type, queue = %sub.queue, "listening");
                delay = Duration::from_millis(100);
                c
            }
            Err(e) => {
                tracing::warn!(event_type = %rt.event_type, queue = %sub.queue, error = %e,
                    "cannot subscribe; retrying");
                if let Some(f) = first.take() {
                    let _ = f.send(Err(e.into()));
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = super::stopped(&mut stop) => return,
                }
                delay = (delay * 2).min(MAX_SUBSCRIBE_BACKOFF);
                continue;
            }
        };
        let ended = consume(&shared, &rt, consumer.as_mut(), partition, &mut stop).await;
        if let Err(e) = consumer.cancel().await {
            tracing::debug!(event_type = %rt.event_type, error = %e, "cancelling the consumer");
        }
        if !ended || *stop.borrow() {
            return;
        }
        tracing::warn!(event_type = %rt.event_type, queue = %sub.queue,
            "consumer closed by the transport; subscribing again");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = super::stopped(&mut stop) => return,
        }
        delay = (delay * 2).min(MAX_SUBSCRIBE_BACKOFF);
    }
}

/// Consumes until stopped (`false`) or the consumer ends (`true`).
async fn consume(
    shared: &Shared,
    rt: &TypeRuntime,
    consumer: &mut dyn Consumer,
    partition: Option<u32>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        if !wait_for_room(shared, rt, stop).await {
            return false;
        }
        // Handled in the store's transaction: no more than a group's worth.
        let max = if may_store_and_handle(shared, rt) {
            shared.opts.ack_batch.min(shared.opts.realtime_group)
        } else {
            shared.opts.ack_batch
        };
        let first = tokio::select! {
            d = consumer.next() => d,
            _ = super::stopped(stop) => return false,
        };
        let Some(first) = first else { return true };
        let mut batch = vec![first];
        let mut ended = false;
        // The linger is counted from the first delivery, not per delivery: at
        // a steady trickle (one message per millisecond, say) a per-gap
        // linger would keep extending the batch and hold its first message
        // back for many milliseconds. Deliveries already buffered are taken
        // even after the deadline (a timeout polls its future first).
        let deadline = tokio::time::Instant::now() + shared.opts.ack_linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, consumer.next()).await {
                Ok(Some(d)) => batch.push(d),
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if !store_and_ack(shared, rt, batch, partition, stop).await {
            return false;
        }
        if ended {
            return true;
        }
    }
}

/// Waits while this type's backlog is at its bound. `false` on stop.
async fn wait_for_room(
    shared: &Shared,
    rt: &TypeRuntime,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let bound = shared.opts.backlog;
    let mut logged = false;
    loop {
        if *stop.borrow() {
            return false;
        }
        let settings = rt.settings();
        let full = match settings.cfg.process_mode {
            ProcessMode::Realtime => rt.pending() >= bound,
            ProcessMode::Batch => {
                match shared
                    .inbox
                    .count(
                        InboxStatus::Received,
                        Some(&shared.opts.subscriber),
                        Some(&rt.event_type),
                    )
                    .await
                {
                    Ok(n) => usize::try_from(n).unwrap_or(usize::MAX) >= bound,
                    // The store will find out whether the database is back.
                    Err(_) => false,
                }
            }
            ProcessMode::None => false,
        };
        if !full {
            if logged {
                tracing::info!(event_type = %rt.event_type, "backlog below its bound; consuming again");
            }
            return true;
        }
        if !logged {
            tracing::info!(event_type = %rt.event_type, bound, "backlog at its bound; consumption paused");
            logged = true;
        }
        let wait = match settings.cfg.process_mode {
            ProcessMode::Batch => shared
                .opts
                .retry_poll_interval
                .max(Duration::from_millis(200)),
            _ => Duration::from_millis(100),
        };
        tokio::select! {
            _ = rt.progress.notified() => {}
            _ = rt.changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = super::stopped(stop) => return false,
        }
    }
}

/// Whether this type's listener may run its handlers in the store's
/// transaction now (before the slot is taken): see
/// [`ReceiverOptions::store_and_handle`](crate::ReceiverOptions::store_and_handle).
fn may_store_and_handle(shared: &Shared, rt: &TypeRuntime) -> bool {
    if !shared.opts.store_and_handle || shared.db.backend() == Backend::MySql {
        return false;
    }
    let settings = rt.settings();
    settings.cfg.process_mode == ProcessMode::Realtime
        && !settings.cfg.sequenced
        && settings.handler.is_some()
        && rt.call_time.is_quick()
}

/// Stores the batch (retrying while the database is unreachable), then acks
/// it. `false` if stopped before the batch was stored (nothing acked).
async fn store_and_ack(
    shared: &Shared,
    rt: &TypeRuntime,
    batch: Vec<Delivery>,
    partition: Option<u32>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut seen = HashSet::new();
    let mut rows: Vec<NewInboxRow> = Vec::with_capacity(batch.len());
    let mut goods: Vec<Good> = Vec::with_capacity(batch.len());
    let mut duplicates_in_batch: Vec<String> = Vec::new();
    for d in &batch {
        let dec = decode(shared, &rt.event_type, d);
        if seen.insert(dec.row.event_id.clone()) {
            rows.push(dec.row);
            goods.push(dec.good);
        } else {
            duplicates_in_batch.push(dec.row.event_type);
        }
    }
    for t in duplicates_in_batch {
        shared.stats.update(&t, |s| s.duplicates += 1);
    }
    if may_store_and_handle(shared, rt) {
        let now = chrono::Utc::now();
        let lag = goods
            .iter()
            .rev()
            .find_map(|g| g.as_ref().map(|(_, m)| lag_seconds(m, now)));
        match store_and_handle(shared, rt, &rows, &mut goods).await {
            Inline::Committed { stored, failed } => {
                ack(rt, &batch).await;
                account(shared, &rows, goods, &stored, partition, lag);
                for (r, result) in failed {
                    record_inline_failure(shared, rt, r, &result).await;
                }
                return true;
            }
            Inline::NotCommitted => {}
        }
    }
    let mut delay = Duration::from_millis(50);
    let inserted = loop {
        match shared.inbox.insert(&shared.opts.subscriber, &rows).await {
            Ok(ids) => break ids,
            Err(e) => {
                tracing::warn!(event_type = %rt.event_type, error = %e, held = batch.len(),
                    "cannot store deliveries; holding them unacked and retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = super::stopped(stop) => return false,
                }
                delay = (delay * 2).min(MAX_DB_BACKOFF);
            }
        }
    };
    ack(rt, &batch).await;
    account(shared, &rows, goods, &inserted, partition, None);
    true
}

/// A decoded delivery's type runtime and message (`None`: unreadable).
type Good = Option<(Arc<TypeRuntime>, Message)>;

/// How a store-and-handle transaction ended.
enum Inline {
    /// Stored and processed: the rows stored (`(id, event_id)`), and the
    /// events whose handlers failed (their rows are `received` and claimed
    /// here, their failures not recorded yet).
    Committed {
        stored: Vec<(i64, String)>,
        failed: Vec<(Ready, Attempt)>,
    },
    /// Nothing took effect; the messages are back in their places.
    NotCommitted,
}

/// Stores the rows and runs the handlers of the realtime ones in one
/// transaction, if a handler slot is free. Takes the handled messages out
/// of `goods` (putting them back unless it committed).
async fn store_and_handle(
    shared: &Shared,
    rt: &TypeRuntime,
    rows: &[NewInboxRow],
    goods: &mut [Good],
) -> Inline {
    let settings = rt.settings();
    let Some(handler) = settings.handler.clone() else {
        return Inline::NotCommitted;
    };
    // Every event to handle must be this type's (a queue can be bound to others).
    let realtime = rows
        .iter()
        .zip(goods.iter())
        .filter(|(r, _)| r.claim.is_some());
    let mut any = false;
    for (_, good) in realtime {
        match good {
            Some((target, _)) if std::ptr::eq(Arc::as_ptr(target), rt) => any = true,
            _ => return Inline::NotCommitted,
        }
    }
    if !any || !rt.try_acquire_worker(settings.cfg.workers.max(1) as usize) {
        return Inline::NotCommitted;
    }
    let mut ready: Vec<Ready> = Vec::new();
    let mut places: Vec<(usize, Arc<TypeRuntime>)> = Vec::new();
    for (i, (row, good)) in rows.iter().zip(goods.iter_mut()).enumerate() {
        if row.claim.is_none() {
            continue;
        }
        if let Some((target, msg)) = good.take() {
            ready.push(Ready {
                job: Job {
                    id: 0,
                    attempts: 0,
                    from_batch: false,
                    requeued: false,
                    source: JobSource::Decoded(Box::new(msg.clone())),
                },
                msg,
                attempt: 1,
            });
            places.push((i, target));
        }
    }
    let run = run_group(
        shared,
        rt,
        &settings,
        &handler,
        &mut ready,
        Prologue::Insert(rows),
    )
    .await;
    rt.release_worker();
    rt.freed.notify_one();
    match run {
        Ok(run) if run.committed => {
            let done = run.slots.iter().filter(|s| matches!(s, Slot::Done)).count() as u64;
            if done > 0 {
                shared.stats.update(&rt.event_type, |s| s.processed += done);
            }
            let mut failed = Vec::new();
            for ((r, slot), (i, target)) in ready.into_iter().zip(run.slots).zip(places) {
                match slot {
                    Slot::Failed(result) => failed.push((r, result)),
                    // Duplicates: the stats count them, the row is not ours.
                    Slot::Lost => goods[i] = Some((target, r.msg)),
                    Slot::Done | Slot::Rerun => {}
                }
            }
            Inline::Committed {
                stored: run.stored,
                failed,
            }
        }
        other => {
            if let Err(e) = other {
                tracing::debug!(event_type = %rt.event_type, error = %e,
                    "storing and handling in one transaction failed; storing the usual way");
            }
            for (r, (i, target)) in ready.into_iter().zip(places) {
                goods[i] = Some((target, r.msg));
            }
            Inline::NotCommitted
        }
    }
}

/// Records a failed handler call of a store-and-handle transaction; if the
/// database refuses, the pool runs the event again.
async fn record_inline_failure(shared: &Shared, rt: &TypeRuntime, r: Ready, result: &Attempt) {
    let settings = rt.settings();
    if let Err(e) = record_failure(shared, rt, &settings, r.job.id, r.attempt, result).await {
        tracing::warn!(event_type = %rt.event_type, id = r.job.id, error = %e,
            "cannot record a failed handler call; the pool will run the event again");
        rt.dispatch(r.job);
    }
}

/// Acks everything up to the batch's last delivery (all of it is stored,
/// or was already).
async fn ack(rt: &TypeRuntime, batch: &[Delivery]) {
    if let Some(last) = batch.last() {
        if let Err(e) = last.acker.ack_multiple().await {
            tracing::warn!(event_type = %rt.event_type, error = %e,
                "ack failed after storing; the broker will redeliver and the inbox deduplicates");
        }
    }
}

/// Counts a stored batch and hands its realtime events still in `goods`
/// (those not handled in the store's transaction) to their pools or
/// sequence trackers. `inserted`: the rows the store took, `(id, event_id)`;
/// the others were duplicates. `inline_lag`: the queue lag of the events
/// handled in the store's transaction.
fn account(
    shared: &Shared,
    rows: &[NewInboxRow],
    goods: Vec<Good>,
    inserted: &[(i64, String)],
    partition: Option<u32>,
    inline_lag: Option<f64>,
) {
    let now = chrono::Utc::now();
    let ids: std::collections::HashMap<&str, i64> =
        inserted.iter().map(|(id, e)| (e.as_str(), *id)).collect();
    for (row, good) in rows.iter().zip(goods) {
        let event_type = row.event_type.as_str();
        let Some(&id) = ids.get(row.event_id.as_str()) else {
            shared.stats.update(event_type, |s| s.duplicates += 1);
            continue;
        };
        match row.status {
            InboxStatus::Dead => {
                shared.stats.update(event_type, |s| s.unreadable += 1);
                continue;
            }
            InboxStatus::Stored => {
                let lag = good.as_ref().map_or(0.0, |(_, m)| lag_seconds(m, now));
                shared.stats.update(event_type, |s| {
                    s.received += 1;
                    s.stored_only += 1;
                    s.last_lag_seconds = lag;
                });
                continue;
            }
            _ => {}
        }
        let Some((target, mut msg)) = good else {
            // Handled in the store's transaction.
            shared.stats.update(event_type, |s| {
                s.received += 1;
                if let Some(lag) = inline_lag {
                    s.last_lag_seconds = lag;
                }
            });
            continue;
        };
        let lag = lag_seconds(&msg, now);
        shared.stats.update(event_type, |s| {
            s.received += 1;
            s.last_lag_seconds = lag;
        });
        if row.claim.is_some() && target.settings().cfg.sequenced {
            msg.inbox_id = id;
            let _ = target.seq.send(crate::sequenced::Live {
                id,
                msg: Box::new(msg),
                partition,
            });
        } else if row.claim.is_some() {
            msg.inbox_id = id;
            target.dispatch(Job {
                id,
                attempts: 0,
                from_batch: false,
                requeued: false,
                source: JobSource::Decoded(Box::new(msg)),
            });
        }
    }
}

fn lag_seconds(msg: &Message, now: chrono::DateTime<chrono::Utc>) -> f64 {
    (now - msg.header.created_at)
        .to_std()
        .map_or(0.0, |d| d.as_secs_f64())
}

//! One queue's listener: store a micro-batch of deliveries, then ack them
//! with one `ack_multiple`, then hand the realtime ones to their pools.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use eventyard_core::config::ProcessMode;
use eventyard_transport::{Consumer, Delivery, Subscription};
use tokio::sync::{oneshot, watch};

use super::decode::{decode, Decoded};
use super::inline;
use super::pool::{record_failure, Job, JobSource};
use super::{Shared, TypeRuntime};
use crate::error::Result;
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
    let max = shared.opts.ack_batch;
    loop {
        if !wait_for_room(shared, rt, stop).await {
            return false;
        }
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
    let mut decoded: Vec<Decoded> = Vec::with_capacity(batch.len());
    // The delivery each decoded row came from.
    let mut from: Vec<usize> = Vec::with_capacity(batch.len());
    let mut duplicates_in_batch: Vec<String> = Vec::new();
    for (i, d) in batch.iter().enumerate() {
        let dec = decode(shared, &rt.event_type, d);
        if seen.insert(dec.row.event_id.clone()) {
            decoded.push(dec);
            from.push(i);
        } else {
            duplicates_in_batch.push(dec.row.event_type);
        }
    }
    // Deliveries the database refuses for good, rejected to the dead-letter queue.
    let mut rejected = reject_oversized(shared, &batch, &decoded, &from).await;
    let mut rows: Vec<NewInboxRow> = Vec::with_capacity(decoded.len());
    // The delivery and the decoded entry each row came from.
    let mut rows_from: Vec<usize> = Vec::with_capacity(decoded.len());
    let mut rows_dec: Vec<usize> = Vec::with_capacity(decoded.len());
    for (k, (d, &i)) in decoded.iter().zip(&from).enumerate() {
        if !rejected.contains(&i) {
            rows.push(d.row.clone());
            rows_from.push(i);
            rows_dec.push(k);
        }
    }
    let mut inline = store_inline(shared, rt, &mut rows, &rows_dec, &mut decoded).await;
    let mut delay = Duration::from_millis(50);
    let inserted = loop {
        if let Some(done) = &mut inline {
            break std::mem::take(&mut done.inserted);
        }
        match shared.inbox.insert(&shared.opts.subscriber, &rows).await {
            Ok(ids) => break ids,
            Err(e) => {
                if e.refuses_the_data() {
                    // The database is up and refuses this batch: store its
                    // deliveries one by one to find the ones it refuses.
                    match store_one_by_one(shared, &batch, &rows, &rows_from, stop).await {
                        Some((ids, refused)) => {
                            rejected.extend(refused);
                            break ids;
                        }
                        None => return false,
                    }
                }
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
    // Everything up to the last delivery is stored (or was already, or was
    // rejected on its own): ack it all at once.
    let last = (0..batch.len()).rev().find(|i| !rejected.contains(i));
    if let Some(last) = last.and_then(|i| batch.get(i)) {
        if let Err(e) = last.acker.ack_multiple().await {
            tracing::warn!(event_type = %rt.event_type, error = %e,
                "ack failed after storing; the broker will redeliver and the inbox deduplicates");
        }
    }
    let decoded: Vec<Decoded> = decoded
        .into_iter()
        .zip(&from)
        .filter(|(_, i)| !rejected.contains(i))
        .map(|(d, _)| d)
        .collect();
    if let Some(done) = &inline {
        if done.done > 0 {
            shared.stats.update(&rt.event_type, |s| {
                s.processed += done.done;
                s.processed_inline += done.done;
            });
        }
        if !done.failed.is_empty() {
            let settings = rt.settings();
            for (id, attempt) in &done.failed {
                if let Err(e) = record_failure(shared, rt, &settings, *id, 1, attempt).await {
                    // The row stays claimed and `received`: taken up again
                    // once its lease expires.
                    tracing::warn!(event_type = %rt.event_type, id, error = %e,
                        "cannot record a handler failure; the event runs again after its lease");
                }
            }
        }
    }
    let handled = inline.map(|d| d.handled).unwrap_or_default();
    let now = chrono::Utc::now();
    let ids: std::collections::HashMap<&str, i64> =
        inserted.iter().map(|(id, e)| (e.as_str(), *id)).collect();
    for t in duplicates_in_batch {
        shared.stats.update(&t, |s| s.duplicates += 1);
    }
    for dec in decoded {
        let event_type = dec.row.event_type.clone();
        let Some(&id) = ids.get(dec.row.event_id.as_str()) else {
            shared.stats.update(&event_type, |s| s.duplicates += 1);
            continue;
        };
        match (dec.row.status, dec.good) {
            (InboxStatus::Dead, _) | (_, None) => {
                shared.stats.update(&event_type, |s| s.unreadable += 1);
            }
            (InboxStatus::Stored, Some((_, msg))) => {
                let lag = lag_seconds(&msg, now);
                shared.stats.update(&event_type, |s| {
                    s.received += 1;
                    s.stored_only += 1;
                    s.last_lag_seconds = lag;
                });
            }
            (_, Some((target, mut msg))) => {
                let lag = lag_seconds(&msg, now);
                shared.stats.update(&event_type, |s| {
                    s.received += 1;
                    s.last_lag_seconds = lag;
                });
                if handled.contains(&id) {
                    // Handled in the storing transaction.
                } else if dec.row.claim.is_some() && target.settings().cfg.sequenced {
                    msg.inbox_id = id;
                    let _ = target.seq.send(crate::sequenced::Live {
                        id,
                        msg: Box::new(msg),
                        partition,
                    });
                } else if dec.row.claim.is_some() {
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
    }
    true
}

/// Stores `rows` with their quick handlers called in the storing
/// transaction, when [`inline::eligible`] and a worker of the type is free;
/// `None` when not (or when that transaction was dropped, leaving `rows` as
/// they were): store them the usual way.
async fn store_inline(
    shared: &Shared,
    rt: &TypeRuntime,
    rows: &mut [NewInboxRow],
    rows_dec: &[usize],
    decoded: &mut [Decoded],
) -> Option<inline::Stored> {
    let settings = rt.settings();
    if !inline::eligible(shared, rt, &settings) {
        return None;
    }
    // This type's claimed (realtime) rows; other types' go the usual way.
    let picks: Vec<usize> = (0..rows.len())
        .filter(|&j| {
            rows_dec
                .get(j)
                .and_then(|&k| decoded.get(k))
                .is_some_and(|d| {
                    d.row.claim.is_some()
                        && d.good
                            .as_ref()
                            .is_some_and(|(target, _)| std::ptr::eq(target.as_ref(), rt))
                })
        })
        .collect();
    // Only for a backlog: a micro-batch this full means events arrive faster
    // than they are stored. A trickle of small micro-batches goes the usual
    // way, whose store is one statement and whose handler transaction runs
    // beside the next store: the storing transaction's extra round trips
    // (begin, id check, commit) would add to every event's latency there.
    if picks.len() < inline::min_batch(shared.opts.ack_batch)
        || !rt.try_take_worker(settings.cfg.workers.max(1) as usize)
    {
        return None;
    }
    let stored = inline::store(shared, rt, &settings, rows, &picks, rows_dec, decoded).await;
    rt.give_back_worker();
    match stored {
        Ok(stored) => stored,
        Err(e) => {
            tracing::debug!(event_type = %rt.event_type, error = %e,
                "storing with the handlers failed; storing the usual way");
            None
        }
    }
}

/// Rejects to the dead-letter queue the deliveries too large for one row of
/// the database (MySQL's `max_allowed_packet`, read live), before trying to
/// store them: a packet above it can fail as a dropped connection rather
/// than an error naming the cause, which no retry would ever get past.
/// Returns the indices (in `batch`) of the deliveries rejected; `from`
/// gives each decoded row's delivery.
async fn reject_oversized(
    shared: &Shared,
    batch: &[Delivery],
    decoded: &[Decoded],
    from: &[usize],
) -> HashSet<usize> {
    let mut rejected = HashSet::new();
    let biggest = decoded
        .iter()
        .map(|d| d.row.payload.len())
        .max()
        .unwrap_or(0);
    let limit = match shared.inbox.storable(biggest).await {
        Ok(Some(limit)) => limit,
        // Fits, or the database cannot say now (the store will find out).
        Ok(None) | Err(_) => return rejected,
    };
    for (dec, &i) in decoded.iter().zip(from) {
        if dec.row.payload.len() > limit {
            let why = format!("larger than one row may be ({limit} bytes)");
            dead_letter(shared, batch.get(i), &dec.row, &why).await;
            rejected.insert(i);
        }
    }
    rejected
}

/// Gives up a delivery the database refuses to store (`why`): rejects it
/// to the queue's dead-letter queue, where the message stays whole, logs
/// it and counts it as unreadable.
async fn dead_letter(
    shared: &Shared,
    delivery: Option<&Delivery>,
    row: &NewInboxRow,
    why: &(dyn std::fmt::Display + Sync),
) {
    tracing::error!(event_type = %row.event_type, event_id = %row.event_id,
        bytes = row.payload.len(), error = %why,
        "the database refuses to store this delivery; rejecting it to the dead-letter queue");
    if let Some(d) = delivery {
        if let Err(e) = d.acker.reject_to_dead_letter().await {
            tracing::warn!(event_id = %row.event_id, error = %e,
                "rejecting failed; the broker will redeliver it");
        }
    }
    shared.stats.update(&row.event_type, |s| s.unreadable += 1);
}

/// How many times a lone row is refused for its data before its delivery
/// is given up (these errors do not go away by themselves; one retry guards
/// against the odd misreport).
const REFUSED_AFTER: u32 = 2;

/// Stores `rows` one at a time, retrying each while the database is
/// unreachable. A row the database refuses for its data
/// ([`ReceiveError::refuses_the_data`](crate::error::ReceiveError::refuses_the_data)) [`REFUSED_AFTER`] times is given up: its
/// delivery is rejected to the
/// queue's dead-letter queue, where the message stays whole, so that it
/// does not hold the queue. Returns the rows stored and the indices (in
/// `batch`) of the deliveries rejected; `None` if stopped.
async fn store_one_by_one(
    shared: &Shared,
    batch: &[Delivery],
    rows: &[NewInboxRow],
    from: &[usize],
    stop: &mut watch::Receiver<bool>,
) -> Option<(Vec<(i64, String)>, HashSet<usize>)> {
    let mut inserted = Vec::with_capacity(rows.len());
    let mut rejected = HashSet::new();
    for (row, &i) in rows.iter().zip(from) {
        let mut delay = Duration::from_millis(50);
        let mut refusals = 0u32;
        loop {
            match shared
                .inbox
                .insert(&shared.opts.subscriber, std::slice::from_ref(row))
                .await
            {
                Ok(ids) => {
                    inserted.extend(ids);
                    break;
                }
                Err(e) => {
                    if e.refuses_the_data() {
                        refusals += 1;
                        if refusals >= REFUSED_AFTER {
                            dead_letter(shared, batch.get(i), row, &e).await;
                            rejected.insert(i);
                            break;
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = super::stopped(stop) => return None,
                    }
                    delay = (delay * 2).min(MAX_DB_BACKOFF);
                }
            }
        }
    }
    Some((inserted, rejected))
}

fn lag_seconds(msg: &crate::handler::Message, now: chrono::DateTime<chrono::Utc>) -> f64 {
    (now - msg.header.created_at)
        .to_std()
        .map_or(0.0, |d| d.as_secs_f64())
}

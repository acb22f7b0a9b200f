//! Handling a quick `realtime` type's events in the transaction that stores
//! them.
//!
//! The usual way stores a micro-batch (`received`, claimed by this
//! instance), acks it, and hands it to the pool, whose worker then opens a
//! second transaction: a claim check, the handler calls, a `done` update.
//! Every event's row is written twice. When a backlog builds (micro-batches
//! at least a quarter full, see [`min_batch`]), the type's handler calls are
//! quick and one of its `workers` is free, the listener instead stores the
//! micro-batch with its rows already `done` and calls their handlers in that
//! same transaction, before the commit and the ack: one write per event,
//! one transaction.
//!
//! The transaction first takes row ids for the events not stored yet
//! (those already stored are duplicates: no handler call), then calls their
//! handlers, then inserts every row in its final state: `done` with its
//! result, or, for a failed handler (its writes rolled back to its
//! savepoint), a claimed `received` row whose failure is recorded after the
//! commit like any other. Nothing is acked before it is committed, nothing
//! is lost, and no handler's writes commit twice: a crash before the commit
//! leaves nothing stored and the broker redelivers; should another instance
//! store one of the events between the id check and the insert, the insert
//! skips it and the whole transaction is dropped, the handlers' writes with
//! it (what a handler did outside the transaction may then happen again,
//! as after any interrupted attempt). A dropped transaction (that race, a
//! handler interrupted in a statement that does not stop, a database error)
//! leaves the micro-batch to be stored the usual way.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use eventyard_core::config::ProcessMode;
use eventyard_core::db::Backend;
use eventyard_core::with_pool;

use super::decode::Decoded;
use super::pool::{call_handlers, Attempt, Call, Calls, Slot};
use super::{Shared, TypeRuntime, TypeSettings};
use crate::error::Result;
use crate::handler::Tx;
use crate::inbox::{FreshIds, InboxStatus, InsertNew, NewInboxRow};

/// Whether `rt`'s events may be handled as they are stored, before a
/// worker is asked for.
///
/// Not on MySQL: its insert cannot tell the rows it inserted from rows a
/// concurrent instance inserted a moment before, and a handler must only
/// run for a row this instance stored.
pub(crate) fn eligible(shared: &Shared, rt: &TypeRuntime, settings: &TypeSettings) -> bool {
    shared.opts.inline_handling
        && shared.db.backend() != Backend::MySql
        && settings.cfg.process_mode == ProcessMode::Realtime
        && !settings.cfg.sequenced
        && settings.handler.is_some()
        && rt.call_time.is_quick()
}

/// The fewest of a type's events in one micro-batch for them to be handled
/// as they are stored: a quarter of a full micro-batch (`ack_batch`).
pub(crate) fn min_batch(ack_batch: usize) -> usize {
    (ack_batch / 4).max(1)
}

/// What an inline store did.
pub(crate) struct Stored {
    /// `(id, event_id)` of every row inserted, as [`Inbox::insert`](crate::inbox::Inbox::insert) returns.
    pub(crate) inserted: Vec<(i64, String)>,
    /// The rows whose handlers ran here: not for the pool.
    pub(crate) handled: HashSet<i64>,
    /// How many of them are `done`.
    pub(crate) done: u64,
    /// The others: their failures, to record after the commit.
    pub(crate) failed: Vec<(i64, Attempt)>,
}

/// Stores `rows` in one transaction and calls, in it, the handlers of the
/// rows `picks` (indices into `rows`; `rows_dec[j]` is row `j`'s entry in
/// `decoded`, whose message it is, and whose row `rows[j]` is a copy of).
///
/// Returns `None` (and `rows` as they were) when the transaction was
/// dropped: the caller stores the rows the usual way.
pub(crate) async fn store(
    shared: &Shared,
    rt: &TypeRuntime,
    settings: &TypeSettings,
    rows: &mut [NewInboxRow],
    picks: &[usize],
    rows_dec: &[usize],
    decoded: &mut [Decoded],
) -> Result<Option<Stored>> {
    let got = run(shared, rt, settings, rows, picks, rows_dec, decoded).await;
    if !matches!(got, Ok(Some(_))) {
        // Back to the rows as decoded (those the usual way stores).
        for &j in picks {
            if let (Some(r), Some(d)) = (
                rows.get_mut(j),
                rows_dec.get(j).and_then(|&k| decoded.get(k)),
            ) {
                r.clone_from(&d.row);
            }
        }
    }
    got
}

async fn run(
    shared: &Shared,
    rt: &TypeRuntime,
    settings: &TypeSettings,
    rows: &mut [NewInboxRow],
    picks: &[usize],
    rows_dec: &[usize],
    decoded: &mut [Decoded],
) -> Result<Option<Stored>> {
    let Some(handler) = settings.handler.as_ref() else {
        return Ok(None);
    };
    let subscriber = shared.opts.subscriber.as_str();
    let backend = shared.db.backend();
    with_pool!(&shared.db, pool => {
        let mut tx = if backend == Backend::Sqlite {
            pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            pool.begin().await?
        };
        let wanted: Vec<&str> = picks
            .iter()
            .filter_map(|&j| rows.get(j).map(|r| r.event_id.as_str()))
            .collect();
        let Some(fresh_ids) = tx.fresh_ids(subscriber, &wanted).await? else {
            return Ok(None);
        };
        // The picked events not stored yet, `(row, id)`; their messages
        // learn their row ids. The others are duplicates, skipped by the insert.
        let mut fresh: Vec<(usize, i64)> = Vec::with_capacity(picks.len());
        for &j in picks {
            let (Some(row), Some(&k)) = (rows.get(j), rows_dec.get(j)) else { continue };
            let Some(&id) = fresh_ids.get(row.event_id.as_str()) else { continue };
            if let Some((_, msg)) = decoded.get_mut(k).and_then(|d| d.good.as_mut()) {
                msg.inbox_id = id;
                msg.attempt = 1;
                fresh.push((j, id));
            }
        }
        let calls: Vec<Call<'_>> = fresh
            .iter()
            .filter_map(|&(j, id)| {
                let (_, msg) = decoded.get(*rows_dec.get(j)?)?.good.as_ref()?;
                Some(Call { id, msg })
            })
            .collect();
        let Calls { slots, results, abandoned, .. } = call_handlers(
            shared,
            rt,
            settings,
            handler,
            &calls,
            &|_| true,
            true,
            &mut Tx::from(&mut *tx),
        )
        .await?;
        if abandoned || calls.len() != fresh.len() {
            drop(tx);
            return Ok(None);
        }
        let now = Utc::now();
        let mut results: HashMap<i64, String> = results.into_iter().collect();
        let mut failed = Vec::new();
        for (&(j, id), slot) in fresh.iter().zip(slots) {
            let Some(row) = rows.get_mut(j) else { continue };
            row.id = Some(id);
            match slot {
                Slot::Done => {
                    row.status = InboxStatus::Done;
                    row.attempts = 1;
                    row.result = Some(results.remove(&id).unwrap_or_default());
                    row.processed_at = Some(now);
                    row.claim = None;
                }
                // Stored claimed and `received`, as the usual way stores it.
                Slot::Failed(attempt) => failed.push((id, attempt)),
                // Every row is held here, and only an abandoned transaction
                // asks for reruns.
                Slot::Lost | Slot::Rerun => {
                    drop(tx);
                    return Ok(None);
                }
            }
        }
        let inserted = tx.insert_new(subscriber, rows).await?;
        let stored: HashSet<i64> = inserted.iter().map(|(id, _)| *id).collect();
        if fresh.iter().any(|(_, id)| !stored.contains(id)) {
            // Another instance stored one of these events after the id
            // check: its handler must not count here.
            drop(tx);
            return Ok(None);
        }
        tx.commit().await?;
        let handled: HashSet<i64> = fresh.iter().map(|(_, id)| *id).collect();
        Ok(Some(Stored {
            done: (handled.len() - failed.len()) as u64,
            handled,
            failed,
            inserted,
        }))
    })
}

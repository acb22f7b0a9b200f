//! The lease task of a partitioned sequenced row: declares the partitioned
//! topology, runs the lease heartbeat ([`crate::partition`]) and keeps one
//! listener per held partition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use eventyard_transport::Partitions;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::{listener, Shared, TypeRuntime};
use crate::partition::PartitionLeases;

/// The partitions this instance holds for one type, as the engine sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Held {
    /// Whether the row is partitioned (`partitions > 1`).
    pub(crate) partitioned: bool,
    /// The held partitions.
    pub(crate) held: BTreeSet<u32>,
    /// Whether this instance holds the inspection-pass lease.
    pub(crate) inspector: bool,
}

/// The running lease task of one type.
pub(crate) struct PartitionTask {
    pub(crate) spec: watch::Sender<Partitions>,
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) task: JoinHandle<()>,
}

/// Starts the lease task for `spec`.
pub(crate) fn start(
    shared: &Arc<Shared>,
    rt: &Arc<TypeRuntime>,
    spec: Partitions,
) -> PartitionTask {
    let (spec_tx, spec_rx) = watch::channel(spec);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run(Arc::clone(shared), Arc::clone(rt), spec_rx, stop_rx));
    PartitionTask {
        spec: spec_tx,
        stop: stop_tx,
        task,
    }
}

struct PartitionListener {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn stop_listener(rt: &TypeRuntime, index: u32, l: PartitionListener) {
    let _ = l.stop.send(true);
    if let Err(e) = l.task.await {
        tracing::error!(event_type = %rt.event_type, partition = index, error = %e, "partition listener task failed");
    }
}

async fn run(
    shared: Arc<Shared>,
    rt: Arc<TypeRuntime>,
    mut spec_rx: watch::Receiver<Partitions>,
    mut stop: watch::Receiver<bool>,
) {
    let ttl = shared.opts.sequencing.partition_lease;
    let beat = (ttl / 3).max(Duration::from_millis(50));
    let leases = PartitionLeases::new(
        shared.db.clone(),
        &shared.opts.subscriber,
        &rt.event_type,
        &shared.opts.instance_id,
        ttl,
    );
    let mut listeners: BTreeMap<u32, PartitionListener> = BTreeMap::new();
    let mut declared: Option<Partitions> = None;
    loop {
        let spec = spec_rx.borrow_and_update().clone();
        if declared.as_ref() != Some(&spec) {
            // A changed spec (count, queue, exchange, keys): all listeners
            // restart on the new topology.
            if declared.is_some() {
                for (i, l) in std::mem::take(&mut listeners) {
                    stop_listener(&rt, i, l).await;
                }
            }
            let previous = leases.extent().await.unwrap_or(0);
            let with_previous = spec.clone().previous(previous);
            match shared.transport.declare_partitions(&with_previous).await {
                Ok(()) => {
                    tracing::info!(event_type = %rt.event_type, queue = %spec.base.queue,
                        partitions = spec.count, hash_exchange = %spec.hash_exchange(),
                        "sequenced: partitioned queues declared");
                    declared = Some(spec.clone());
                }
                Err(e) => tracing::warn!(event_type = %rt.event_type, queue = %spec.base.queue,
                    partitions = spec.count, error = %e,
                    "sequenced: cannot declare the partitioned queues; retrying"),
            }
        }
        if declared.is_some() {
            match leases.round(spec.count, chrono::Utc::now()).await {
                Ok(round) => {
                    let lost: Vec<u32> = listeners
                        .keys()
                        .filter(|i| !round.held.contains(i))
                        .copied()
                        .collect();
                    // Stop consuming first (unacked messages go back to the
                    // queue), then tell the engine to drop the trackers.
                    for i in &lost {
                        if let Some(l) = listeners.remove(i) {
                            stop_listener(&rt, *i, l).await;
                        }
                    }
                    let finished: Vec<u32> = listeners
                        .iter()
                        .filter(|(_, l)| l.task.is_finished())
                        .map(|(i, _)| *i)
                        .collect();
                    for i in finished {
                        listeners.remove(&i);
                    }
                    rt.partitions.send_if_modified(|h| {
                        let new = Held {
                            partitioned: true,
                            held: round.held.clone(),
                            inspector: round.inspector,
                        };
                        let changed = *h != new;
                        *h = new;
                        changed
                    });
                    for &i in &round.held {
                        if listeners.contains_key(&i) {
                            continue;
                        }
                        let sub = spec.subscription(i).prefetch(shared.opts.prefetch);
                        let (stop_tx, stop_rx) = watch::channel(false);
                        let (first_tx, _first_rx) = oneshot::channel();
                        let task = tokio::spawn(listener::listen(
                            Arc::clone(&shared),
                            Arc::clone(&rt),
                            sub,
                            Some(i),
                            stop_rx,
                            first_tx,
                        ));
                        listeners.insert(
                            i,
                            PartitionListener {
                                stop: stop_tx,
                                task,
                            },
                        );
                    }
                    if !lost.is_empty() {
                        tracing::info!(event_type = %rt.event_type, lost = ?lost, held = ?round.held,
                            "sequenced: partitions released or taken over; their listeners stopped");
                    }
                    tracing::debug!(event_type = %rt.event_type, held = ?round.held, share = round.share,
                        live = round.live, inspector = round.inspector, "sequenced: partition lease round");
                }
                Err(e) => tracing::warn!(event_type = %rt.event_type, error = %e,
                    "sequenced: partition lease round failed; keeping the current partitions"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(beat) => {}
            changed = spec_rx.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = super::stopped(&mut stop) => break,
        }
    }
    for (i, l) in std::mem::take(&mut listeners) {
        stop_listener(&rt, i, l).await;
    }
    rt.partitions.send_replace(Held::default());
    if let Err(e) = leases.leave().await {
        tracing::warn!(event_type = %rt.event_type, error = %e,
            "sequenced: cannot release the partition leases; they expire by themselves");
    }
}

//! The receiver runtime: one listener, one handler pool and one batch
//! timer per enabled `ey_receive_config` row of the subscriber, following
//! the config live.
//!
//! ```text
//!  queue ──► listener ──(store micro-batch, then ack_multiple)──► ey_inbox
//!                 │ realtime rows (claimed by this instance); for a backlog of
//!                 │ quick handlers, handled in the storing transaction instead
//!                 │ (see `inline`)
//!                 ▼
//!          pool of `workers` ──► handler in a transaction ──► done | retrying | dead
//!                 ▲
//!  retry poller ──┘ due `retrying` rows, replayed rows, rows of vanished instances
//!  batch timer  ──► claims `received` rows on `batch_cron` ──► batch handler
//! ```

mod batch;
pub(crate) mod decode;
mod inline;
mod listener;
mod options;
pub(crate) mod partitions;
pub(crate) mod pool;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use eventyard_converter::{CompiledReceive, Registry};
use eventyard_core::config::{Loaded, ProcessMode, ReceiveConfig};
use eventyard_core::db::Db;
use eventyard_core::with_pool;
use eventyard_transport::{Partitions, Subscription, Transport};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::error::{ReceiveError, Result};
use crate::handler::{HandlerKind, HandlerRegistry};
use crate::inbox::{Claim, Inbox};
use crate::stats::Stats;

pub use options::ReceiverOptions;

pub(crate) use pool::Job;

/// The resolved settings of one event type, swapped whole on every reload.
pub(crate) struct TypeSettings {
    pub(crate) cfg: ReceiveConfig,
    pub(crate) converter: std::result::Result<Arc<dyn CompiledReceive>, String>,
    pub(crate) handler: Option<HandlerKind>,
    pub(crate) handler_config: Option<String>,
    pub(crate) timeout: Duration,
}

/// The running parts of one event type.
pub(crate) struct TypeRuntime {
    pub(crate) event_type: String,
    settings: RwLock<Arc<TypeSettings>>,
    /// Wakes the pool and the batch timer after a settings change.
    pub(crate) changed: Notify,
    /// Signalled whenever a job of this type finishes (room in the backlog).
    pub(crate) progress: Notify,
    /// Events stored or claimed by this instance and not finished yet.
    pub(crate) pending: AtomicUsize,
    /// Handler transactions of this type running now: the pool's groups
    /// and listeners' inline stores, together at most `workers`.
    pub(crate) busy: AtomicUsize,
    /// Signalled when a listener's inline store gives its worker back.
    pub(crate) worker_freed: Notify,
    /// The running average of this type's handler call time.
    pub(crate) call_time: pool::CallTime,
    jobs: mpsc::UnboundedSender<Job>,
    /// Stored events of a sequenced row go to its trackers, not the pool.
    pub(crate) seq: crate::sequenced::Feed,
    stop: watch::Sender<bool>,
    listener: Mutex<Option<ListenerTask>>,
    /// The partitions held here (partitioned sequenced rows), for the engine.
    pub(crate) partitions: watch::Sender<partitions::Held>,
    /// The lease task of a partitioned sequenced row (instead of `listener`).
    partitioned: Mutex<Option<partitions::PartitionTask>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

struct ListenerTask {
    subscription: Subscription,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TypeRuntime {
    pub(crate) fn settings(&self) -> Arc<TypeSettings> {
        Arc::clone(&self.settings.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Queues a job for the pool (counted in `pending` until it finishes).
    pub(crate) fn dispatch(&self, job: Job) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.jobs.send(job).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Takes one of the type's `limit` workers, if one is free.
    pub(crate) fn try_take_worker(&self, limit: usize) -> bool {
        self.busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                (b < limit).then_some(b + 1)
            })
            .is_ok()
    }

    /// Gives back a worker taken outside the pool, waking the pool.
    pub(crate) fn give_back_worker(&self) {
        self.busy.fetch_sub(1, Ordering::SeqCst);
        self.worker_freed.notify_one();
    }
}

/// What every task of a receiver shares.
pub(crate) struct Shared {
    pub(crate) db: Db,
    pub(crate) inbox: Inbox,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) converters: Arc<Registry>,
    pub(crate) handlers: Arc<HandlerRegistry>,
    pub(crate) opts: ReceiverOptions,
    pub(crate) stats: Arc<Stats>,
    types: RwLock<HashMap<String, Arc<TypeRuntime>>>,
}

impl Shared {
    pub(crate) fn runtime(&self, event_type: &str) -> Option<Arc<TypeRuntime>> {
        self.types
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(event_type)
            .cloned()
    }

    fn runtimes(&self) -> Vec<Arc<TypeRuntime>> {
        self.types
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The claim description for one type, limited to `limit` rows.
    pub(crate) fn claim<'a>(&'a self, event_type: &'a str, limit: u32) -> Claim<'a> {
        Claim {
            subscriber: &self.opts.subscriber,
            event_type,
            owner: &self.opts.instance_id,
            lease: self.opts.lease + self.opts.handler_timeout,
            now: chrono::Utc::now(),
            limit,
            after_id: 0,
        }
    }
}

/// The receive side of a subscriber system. Build it, then
/// [`start`](Self::start) it.
///
/// ```no_run
/// # async fn demo(db: eventyard_core::db::Db,
/// #   config: tokio::sync::watch::Receiver<std::sync::Arc<eventyard_core::config::Loaded>>,
/// #   transport: std::sync::Arc<dyn eventyard_transport::Transport>)
/// #   -> Result<(), eventyard_receiver::ReceiveError> {
/// use std::sync::Arc;
/// use eventyard_receiver::{HandlerRegistry, Receiver, ReceiverOptions};
///
/// let mut handlers = HandlerRegistry::new();
/// handlers.register_fn("print", |msg: eventyard_receiver::Message| async move {
///     println!("{} {:?}", msg.event_type, msg.fields);
/// });
/// let receiver = Receiver::new(db, transport, config,
///     Arc::new(eventyard_converter::Registry::with_builtins()), Arc::new(handlers),
///     ReceiverOptions::new("BILLING"));
/// let running = receiver.start().await?;
/// // … until SIGTERM:
/// running.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Receiver {
    db: Db,
    transport: Arc<dyn Transport>,
    config: watch::Receiver<Arc<Loaded>>,
    converters: Arc<Registry>,
    handlers: Arc<HandlerRegistry>,
    options: ReceiverOptions,
    stats: Arc<Stats>,
}

impl Receiver {
    /// A receiver over the inbox database, a transport, the live config
    /// (see [`ConfigWatcher::subscribe`](eventyard_core::config::ConfigWatcher::subscribe)),
    /// the converters and the handlers.
    pub fn new(
        db: Db,
        transport: Arc<dyn Transport>,
        config: watch::Receiver<Arc<Loaded>>,
        converters: Arc<Registry>,
        handlers: Arc<HandlerRegistry>,
        options: ReceiverOptions,
    ) -> Self {
        Receiver {
            db,
            transport,
            config,
            converters,
            handlers,
            options,
            stats: Arc::new(Stats::default()),
        }
    }

    /// The counters this receiver will update.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Starts listening for every enabled receive row of the subscriber.
    ///
    /// Fails if the database cannot be read or a queue of the current
    /// config cannot be subscribed; later failures (a lost broker or
    /// database) are retried in the background.
    pub async fn start(self) -> Result<ReceiverHandle> {
        if self.options.subscriber.trim().is_empty() {
            return Err(ReceiveError::Options("the subscriber id is empty".into()));
        }
        let shared = Arc::new(Shared {
            inbox: Inbox::new(self.db.clone()),
            db: self.db,
            transport: self.transport,
            converters: self.converters,
            handlers: self.handlers,
            opts: self.options,
            stats: Arc::clone(&self.stats),
            types: RwLock::new(HashMap::new()),
        });
        let released = shared
            .inbox
            .release_all(&shared.opts.subscriber, &shared.opts.instance_id)
            .await?;
        if released > 0 {
            tracing::info!(
                released,
                instance = %shared.opts.instance_id,
                "took back the claims of this instance's previous run"
            );
        }
        let mut config = self.config;
        let loaded = config.borrow_and_update().clone();
        let mut extras = HashMap::new();
        let startup = reconcile(&shared, &loaded, &mut extras).await;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        for r in startup {
            if let Ok(Err(e)) = r.await {
                let _ = shutdown_tx.send(true);
                stop_all(&shared).await;
                return Err(e);
            }
        }
        let poller = tokio::spawn(pool::retry_poller(Arc::clone(&shared), shutdown_rx.clone()));
        let supervisor = tokio::spawn(supervise(
            Arc::clone(&shared),
            config,
            extras,
            shutdown_rx,
            poller,
        ));
        Ok(ReceiverHandle {
            shared,
            shutdown: shutdown_tx,
            supervisor,
        })
    }
}

/// A running [`Receiver`].
#[derive(Debug)]
pub struct ReceiverHandle {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    supervisor: JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("subscriber", &self.opts.subscriber)
            .field("instance_id", &self.opts.instance_id)
            .finish()
    }
}

impl ReceiverHandle {
    /// The live counters per event type.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.shared.stats)
    }

    /// Per served event type, the events this instance has stored or
    /// claimed and not finished yet (a gauge for the backlog).
    pub fn in_flight(&self) -> std::collections::BTreeMap<String, usize> {
        self.shared
            .runtimes()
            .iter()
            .map(|r| (r.event_type.clone(), r.pending()))
            .collect()
    }

    /// The inbox this receiver writes.
    pub fn inbox(&self) -> Inbox {
        self.shared.inbox.clone()
    }

    /// The event types currently served (enabled rows of the subscriber).
    pub fn event_types(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .shared
            .runtimes()
            .iter()
            .map(|r| r.event_type.clone())
            .collect();
        v.sort();
        v
    }

    /// Stops gracefully: consuming stops (a micro-batch being stored is
    /// stored and acked, or left unacked for redelivery), queued events are
    /// handed back (their claims released for any instance), running
    /// handlers get the shutdown grace to finish. Nothing is acked that is
    /// not stored.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Err(e) = self.supervisor.await {
            tracing::error!(error = %e, "receiver supervisor failed");
        }
    }
}

/// Follows the config until shutdown, then stops everything.
async fn supervise(
    shared: Arc<Shared>,
    mut config: watch::Receiver<Arc<Loaded>>,
    mut extras: HashMap<String, Extras>,
    mut shutdown: watch::Receiver<bool>,
    poller: JoinHandle<()>,
) {
    let mut watching = true;
    loop {
        if !watching {
            // The watcher is gone: keep serving the last config until shutdown.
            stopped(&mut shutdown).await;
            break;
        }
        tokio::select! {
            changed = config.changed() => {
                if changed.is_err() {
                    watching = false;
                    continue;
                }
                let loaded = config.borrow_and_update().clone();
                for r in reconcile(&shared, &loaded, &mut extras).await {
                    if let Ok(Err(e)) = r.await {
                        tracing::warn!(error = %e, "subscribing failed after a config reload; retrying in the background");
                    }
                }
            }
            _ = stopped(&mut shutdown) => break,
        }
    }
    stop_all(&shared).await;
    let _ = poller.await;
}

async fn stop_all(shared: &Arc<Shared>) {
    let all: Vec<Arc<TypeRuntime>> = {
        let mut types = shared.types.write().unwrap_or_else(PoisonError::into_inner);
        types.drain().map(|(_, r)| r).collect()
    };
    // Listeners first, everywhere, so nothing new is stored while pools drain.
    for rt in &all {
        stop_listener(rt).await;
    }
    for rt in &all {
        stop_type(rt).await;
    }
}

/// Columns of `ey_receive_config` the core config does not carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Extras {
    handler_config: Option<String>,
    handler_timeout_ms: Option<i64>,
}

async fn read_extras(shared: &Shared) -> Result<HashMap<String, Extras>> {
    let sql = shared.db.sql(
        "SELECT event_type, handler_config, handler_timeout_ms FROM ey_receive_config \
         WHERE subscriber = $1",
    );
    let rows: Vec<(String, Option<String>, Option<i64>)> = with_pool!(&shared.db, pool => {
        sqlx::query_as(&sql).bind(&shared.opts.subscriber).fetch_all(pool).await?
    });
    Ok(rows
        .into_iter()
        .map(|(t, handler_config, handler_timeout_ms)| {
            (
                t,
                Extras {
                    handler_config,
                    handler_timeout_ms,
                },
            )
        })
        .collect())
}

/// Brings the running types in line with `loaded`. Returns, per listener
/// (re)started, a receiver of its first subscribe result.
async fn reconcile(
    shared: &Arc<Shared>,
    loaded: &Loaded,
    extras: &mut HashMap<String, Extras>,
) -> Vec<oneshot::Receiver<Result<()>>> {
    match read_extras(shared).await {
        Ok(e) => *extras = e,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read handler_config columns; keeping the previous values")
        }
    }
    let wanted: HashMap<String, ReceiveConfig> = loaded
        .config
        .receive_for(&shared.opts.subscriber)
        .filter(|c| c.enabled)
        .map(|c| (c.event_type.clone(), c.clone()))
        .collect();
    let gone: Vec<Arc<TypeRuntime>> = {
        let mut types = shared.types.write().unwrap_or_else(PoisonError::into_inner);
        let names: Vec<String> = types
            .keys()
            .filter(|t| !wanted.contains_key(*t))
            .cloned()
            .collect();
        names.iter().filter_map(|t| types.remove(t)).collect()
    };
    for rt in gone {
        tracing::info!(event_type = %rt.event_type, "event type no longer received here; stopping its listener");
        stop_listener(&rt).await;
        stop_type(&rt).await;
    }
    let mut started = Vec::new();
    for (event_type, cfg) in wanted {
        let existing = shared.runtime(&event_type);
        let previous = existing.as_ref().map(|rt| rt.settings());
        let settings = Arc::new(resolve(
            shared,
            cfg,
            extras.get(&event_type),
            previous.as_deref(),
        ));
        let subscription = Subscription::new(&settings.cfg.queue, &settings.cfg.exchange)
            .bind(&settings.cfg.binding_key)
            .prefetch(shared.opts.prefetch)
            .dead_letter(true)
            // Sequenced: one instance consumes at a time (all messages of a
            // (producer, stream) reach one tracker); the others take over.
            .single_active_consumer(settings.cfg.sequenced);
        let rt = match existing {
            Some(rt) => {
                *rt.settings.write().unwrap_or_else(PoisonError::into_inner) = settings;
                rt.changed.notify_waiters();
                rt
            }
            None => {
                let rt = start_type(shared, event_type.clone(), settings);
                shared
                    .types
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(event_type.clone(), Arc::clone(&rt));
                rt
            }
        };
        let partitions = rt.settings().cfg.partitions;
        if rt.settings().cfg.sequenced && partitions > 1 {
            // Partitioned: the lease task runs one listener per held partition.
            let spec = Partitions::new(subscription, partitions);
            stop_single_listener(&rt).await;
            let running = {
                let guard = rt
                    .partitioned
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match guard.as_ref() {
                    Some(t) if !t.task.is_finished() => {
                        t.spec.send_if_modified(|s| {
                            let changed = *s != spec;
                            *s = spec.clone();
                            changed
                        });
                        true
                    }
                    _ => false,
                }
            };
            if !running {
                stop_partitioned(&rt).await;
                let task = partitions::start(shared, &rt, spec);
                *rt.partitioned
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(task);
            }
            continue;
        }
        let was_partitioned = rt
            .partitioned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        stop_partitioned(&rt).await;
        let same = rt
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|l| l.subscription == subscription && !l.task.is_finished());
        if !same {
            stop_listener(&rt).await;
            if rt.settings().cfg.sequenced {
                // Undo a partitioning (of this or an earlier run): the hash
                // exchange no longer gets the messages, the queue does.
                let undo = Partitions::new(subscription.clone(), 1);
                if let Err(e) = shared.transport.declare_partitions(&undo).await {
                    let level_warn = was_partitioned;
                    if level_warn {
                        tracing::warn!(event_type = %event_type, error = %e,
                            "cannot unbind the partitions' hash exchange; the partition queues keep getting copies");
                    } else {
                        tracing::debug!(event_type = %event_type, error = %e, "no partitioned topology to undo");
                    }
                }
            }
            let (stop_tx, stop_rx) = watch::channel(false);
            let (first_tx, first_rx) = oneshot::channel();
            let task = tokio::spawn(listener::listen(
                Arc::clone(shared),
                Arc::clone(&rt),
                subscription.clone(),
                None,
                stop_rx,
                first_tx,
            ));
            *rt.listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(ListenerTask {
                subscription,
                stop: stop_tx,
                task,
            });
            started.push(first_rx);
        }
    }
    started
}

fn resolve(
    shared: &Shared,
    cfg: ReceiveConfig,
    extras: Option<&Extras>,
    previous: Option<&TypeSettings>,
) -> TypeSettings {
    let converter = match shared
        .converters
        .receive_for(&cfg.converter_id, cfg.converter_rules.as_deref())
    {
        Ok(c) => Ok(c),
        Err(e) => {
            let msg = format!(
                "event type `{}`: receive converter `{}`: {e}",
                cfg.event_type, cfg.converter_id
            );
            tracing::error!("{msg}");
            match previous.map(|p| &p.converter) {
                Some(Ok(c)) if previous.is_some_and(|p| p.cfg.converter_id == cfg.converter_id) => {
                    Ok(Arc::clone(c))
                }
                _ => Err(msg),
            }
        }
    };
    let handler = cfg
        .handler_id
        .as_deref()
        .and_then(|id| shared.handlers.get(id).cloned());
    if let (Some(id), None, true) = (
        cfg.handler_id.as_deref(),
        &handler,
        cfg.process_mode != ProcessMode::None,
    ) {
        tracing::error!(event_type = %cfg.event_type, handler_id = id,
            "handler is not registered in this process; its events will be retried and then dead-lettered");
    }
    let extras = extras.cloned().unwrap_or_default();
    let timeout = extras
        .handler_timeout_ms
        .and_then(|ms| u64::try_from(ms).ok())
        .filter(|ms| *ms > 0)
        .map_or(shared.opts.handler_timeout, Duration::from_millis);
    TypeSettings {
        cfg,
        converter,
        handler,
        handler_config: extras.handler_config,
        timeout,
    }
}

fn start_type(
    shared: &Arc<Shared>,
    event_type: String,
    settings: Arc<TypeSettings>,
) -> Arc<TypeRuntime> {
    let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
    let (seq_tx, seq_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let rt = Arc::new(TypeRuntime {
        event_type,
        settings: RwLock::new(settings),
        changed: Notify::new(),
        progress: Notify::new(),
        pending: AtomicUsize::new(0),
        busy: AtomicUsize::new(0),
        worker_freed: Notify::new(),
        call_time: pool::CallTime::default(),
        jobs: jobs_tx,
        seq: seq_tx,
        stop: stop_tx,
        listener: Mutex::new(None),
        partitions: watch::Sender::new(partitions::Held::default()),
        partitioned: Mutex::new(None),
        tasks: Mutex::new(Vec::new()),
    });
    let dispatcher = tokio::spawn(pool::dispatcher(
        Arc::clone(shared),
        Arc::clone(&rt),
        jobs_rx,
        stop_rx.clone(),
    ));
    let batch = tokio::spawn(batch::batch_timer(
        Arc::clone(shared),
        Arc::clone(&rt),
        stop_rx,
    ));
    let sequencer = tokio::spawn(crate::sequenced::run(
        Arc::clone(shared),
        Arc::clone(&rt),
        seq_rx,
        rt.stop.subscribe(),
    ));
    rt.tasks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend([dispatcher, batch, sequencer]);
    rt
}

/// Stops whatever consumes the type: its listener, or its partition lease
/// task (which gives its leases back).
async fn stop_listener(rt: &TypeRuntime) {
    stop_partitioned(rt).await;
    stop_single_listener(rt).await;
}

async fn stop_partitioned(rt: &TypeRuntime) {
    let task = rt
        .partitioned
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(t) = task {
        let _ = t.stop.send(true);
        if let Err(e) = t.task.await {
            tracing::error!(event_type = %rt.event_type, error = %e, "partition lease task failed");
        }
    }
}

async fn stop_single_listener(rt: &TypeRuntime) {
    let listener = rt
        .listener
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(l) = listener {
        let _ = l.stop.send(true);
        if let Err(e) = l.task.await {
            tracing::error!(event_type = %rt.event_type, error = %e, "listener task failed");
        }
    }
}

async fn stop_type(rt: &TypeRuntime) {
    let _ = rt.stop.send(true);
    rt.changed.notify_waiters();
    let tasks: Vec<JoinHandle<()>> = rt
        .tasks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
        .collect();
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(event_type = %rt.event_type, error = %e, "receiver task failed");
        }
    }
}

/// The delay before attempt `attempt + 1` after attempt `attempt` failed:
/// `backoff × 2^(attempt−1)`, capped.
pub(crate) fn backoff(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(20);
    base.checked_mul(factor).unwrap_or(cap).min(cap)
}

/// Resolves once `rx` reads `true` (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        assert_eq!(backoff(b, 1, cap), Duration::from_millis(100));
        assert_eq!(backoff(b, 2, cap), Duration::from_millis(200));
        assert_eq!(backoff(b, 3, cap), Duration::from_millis(400));
        assert_eq!(backoff(b, 5, cap), cap);
        assert_eq!(backoff(b, 1000, cap), cap);
        assert_eq!(backoff(Duration::ZERO, 3, cap), Duration::ZERO);
    }
}

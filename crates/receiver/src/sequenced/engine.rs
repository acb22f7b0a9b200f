//! The per-event-type task that owns the trackers of a sequenced row.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use eventyard_core::db::{clip_text, Backend};
use eventyard_core::with_pool;
use eventyard_seq::{Action, Counters, Tracker};
use tokio::sync::{mpsc, watch};

use super::source::{DbResyncSource, ResyncSource, SnapshotNeed, StoredSnapshot};
use super::store::{self, i64_of, Key};
use super::{SeqOptions, Snapshot};
use crate::error::Result;
use crate::handler::{HandlerContext, HandlerOutcome, Message};
use crate::inbox::{lease_until, InboxRow};
use crate::runtime::decode::to_message;
use crate::runtime::pool::{call, Attempt};
use crate::runtime::{Shared, TypeRuntime};

/// A stored live message of a sequenced type, handed over by the listener.
#[derive(Debug)]
pub(crate) struct Live {
    /// Its inbox row.
    pub(crate) id: i64,
    /// The decoded message.
    pub(crate) msg: Box<Message>,
    /// The partition queue it came from (partitioned rows).
    pub(crate) partition: Option<u32>,
}

/// The listener's side of the channel.
pub(crate) type Feed = mpsc::UnboundedSender<Live>;

/// What the tracker carries per message: the inbox row, and the decoded
/// message (`None` only for inputs fed to count a duplicate).
#[derive(Debug)]
pub(super) struct Item {
    pub(super) id: i64,
    pub(super) msg: Option<Box<Message>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Fetch { epoch: u64, from: u64, to: u64 },
    Snapshot,
}

pub(super) struct KeyState {
    pub(super) tracker: Tracker<Item>,
    /// Counters of the trackers this key had before its last reload.
    base: Counters,
    /// Unapplied rows the tracker was given, by (epoch, seq).
    held: HashMap<(u64, u64), i64>,
    request: Option<Req>,
    next_try: Instant,
    backoff: Duration,
    /// A failed apply blocks the key until this time, then it is reloaded.
    blocked_until: Option<Instant>,
    apply_failures: u32,
    snapshot: Option<StoredSnapshot>,
    /// The `ey_stream_state` (epoch, last seq) this engine last read or
    /// wrote for the key. An apply checks it in its transaction: another
    /// value means another instance moved the key on (a single-active-
    /// consumer hand-over), and the key is reloaded instead.
    committed: Option<(u64, u64)>,
}

/// How an apply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Yes,
    No,
    /// `ey_stream_state` moved under this engine: reload the key.
    Stale,
}

pub(super) struct Engine {
    pub(super) shared: Arc<Shared>,
    pub(super) rt: Arc<TypeRuntime>,
    pub(super) opts: SeqOptions,
    source: Arc<dyn ResyncSource>,
    pub(super) keys: HashMap<Key, KeyState>,
    pub(super) loaded: bool,
    pub(super) out: Vec<Action<Item>>,
    last_poll: Instant,
    pub(super) inspect: super::inspect::InspectState,
    pub(super) part: super::partitions::PartState,
}

/// Runs the trackers of one event type until `stop`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    rt: Arc<TypeRuntime>,
    mut rx: mpsc::UnboundedReceiver<Live>,
    mut stop: watch::Receiver<bool>,
) {
    let opts = shared.opts.sequencing.clone();
    let source = opts
        .source
        .clone()
        .unwrap_or_else(|| Arc::new(DbResyncSource::new(shared.db.clone())));
    let rt_partitions = rt.partitions.subscribe();
    let mut ticker = tokio::time::interval(opts.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut eng = Engine {
        shared,
        rt,
        opts,
        source,
        keys: HashMap::new(),
        loaded: false,
        out: Vec::new(),
        last_poll: Instant::now(),
        inspect: super::inspect::InspectState::default(),
        part: super::partitions::PartState::new(rt_partitions),
    };
    loop {
        tokio::select! {
            _ = crate::runtime::stopped(&mut stop) => break,
            live = rx.recv() => match live {
                Some(live) => eng.live(live).await,
                None => break,
            },
            _ = ticker.tick() => eng.tick().await,
            _ = eng.part.changed() => eng.on_partitions().await,
        }
    }
}

fn jitter(d: Duration) -> Duration {
    // 50 %–100 % of the delay.
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(ms / 2 + fastrand::u64(0..=ms / 2))
}

impl KeyState {
    /// Nothing pending: no request, no block, no held row, no snapshot.
    pub(super) fn idle(&self) -> bool {
        self.request.is_none()
            && self.blocked_until.is_none()
            && self.held.is_empty()
            && self.snapshot.is_none()
    }
}

impl Engine {
    /// Makes the next tick re-run the startup load (stored, unapplied rows
    /// of keys without a tracker here).
    pub(super) fn reload_stored(&mut self) {
        self.loaded = false;
    }

    pub(super) fn now_ms(&self) -> u64 {
        super::trace::now_ms()
    }

    fn sequenced(&self) -> bool {
        self.rt.settings().cfg.sequenced
    }

    /// Builds the trackers from the stored state and unapplied rows (once).
    async fn ensure_loaded(&mut self) -> bool {
        if self.loaded {
            return true;
        }
        let rows = match store::unapplied(&self.shared, &self.rt.event_type, None).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(event_type = %self.rt.event_type, error = %e,
                    "sequenced: cannot read the unapplied inbox rows; retrying");
                return false;
            }
        };
        self.loaded = true;
        let mut keys: Vec<Key> = Vec::new();
        for row in rows {
            let Some(key) = row_key(&row) else { continue };
            if !self.ensure_key(&key).await {
                continue;
            }
            if keys.last() != Some(&key) {
                keys.push(key.clone());
            }
            self.feed_row(&key, row).await;
        }
        for key in keys {
            self.drive(&key).await;
        }
        true
    }

    /// Creates the tracker of `key` from `ey_stream_state` if it is new.
    pub(super) async fn ensure_key(&mut self, key: &Key) -> bool {
        if self.keys.contains_key(key) {
            return true;
        }
        match store::load_state(&self.shared, key).await {
            Ok(state) => {
                let tracker = match state {
                    Some((epoch, last)) => Tracker::resume(self.opts.params, epoch, Some(last)),
                    None => Tracker::new(self.opts.params),
                };
                self.keys.insert(
                    key.clone(),
                    KeyState {
                        tracker,
                        base: Counters::default(),
                        held: HashMap::new(),
                        request: None,
                        next_try: Instant::now(),
                        backoff: self.opts.min_backoff,
                        blocked_until: None,
                        apply_failures: 0,
                        snapshot: None,
                        committed: state,
                    },
                );
                true
            }
            Err(e) => {
                tracing::warn!(event_type = %self.rt.event_type, producer = %key.0, stream = %key.1,
                    error = %e, "sequenced: cannot read ey_stream_state");
                false
            }
        }
    }

    /// Feeds a stored row (after a restart or a reload) as a live message.
    async fn feed_row(&mut self, key: &Key, row: InboxRow) {
        let (Some(epoch), Some(seq)) = (
            row.epoch.and_then(|e| u64::try_from(e).ok()),
            row.seq.and_then(|s| u64::try_from(s).ok()),
        ) else {
            return;
        };
        let attempt = u32::try_from(row.attempts).unwrap_or(0).saturating_add(1);
        let decoded = self
            .shared
            .opts
            .codec
            .unpack(&row.payload)
            .map_err(|e| format!("unreadable envelope: {e}"))
            .and_then(|env| to_message(&self.shared, env, row.id, attempt));
        match decoded {
            Ok((_, msg)) => {
                let item = Item {
                    id: row.id,
                    msg: Some(Box::new(msg)),
                };
                self.feed_message(key, epoch, seq, item).await;
            }
            Err(e) => {
                tracing::warn!(event_type = %self.rt.event_type, producer = %key.0, stream = %key.1,
                    epoch, seq, id = row.id, error = %e, "sequenced: a stored row cannot be decoded");
            }
        }
    }

    /// One message for the tracker of `key` (its actions land in `out`).
    pub(super) async fn feed_message(&mut self, key: &Key, epoch: u64, seq: u64, item: Item) {
        let now = self.now_ms();
        let Some(ks) = self.keys.get_mut(key) else {
            return;
        };
        if ks.held.get(&(epoch, seq)) == Some(&item.id) {
            return; // already given to the tracker (startup load and live copy)
        }
        let t = &ks.tracker;
        let dup = epoch < t.epoch()
            || (epoch == t.epoch()
                && (t.last().is_some_and(|l| seq <= l) || ks.held.contains_key(&(epoch, seq))));
        let id = item.id;
        if !dup && id > 0 {
            ks.held.insert((epoch, seq), id);
        }
        if let Some(trace) = &self.opts.trace {
            trace.message(now, key, epoch, seq);
        }
        ks.tracker.on_message(now, epoch, seq, item, &mut self.out);
        if dup && id > 0 {
            let why = if epoch < ks.tracker.epoch() {
                "not applied: an older producer epoch"
            } else {
                "not applied: duplicate seq"
            };
            if let Err(e) = store::mark_done(&self.shared, id, why).await {
                tracing::warn!(id, error = %e, "sequenced: cannot mark a duplicate done");
            }
        }
    }

    async fn live(&mut self, live: Live) {
        if !self.ensure_loaded().await {
            return; // the row stays received; the load finds it
        }
        let header = &live.msg.header;
        let (Some(producer), Some(seq)) = (header.producer_id.clone(), header.sequence.clone())
        else {
            tracing::warn!(event_type = %self.rt.event_type, id = live.id,
                "sequenced: an event without producer id or sequence; applying it is impossible");
            let _ = store::record_failure(
                &self.shared,
                live.id,
                "sequenced event type: the envelope has no producer id or sequence",
            )
            .await;
            return;
        };
        let key = (producer, seq.stream.clone());
        self.note_partition(&key, live.partition);
        if !self.keys.contains_key(&key) {
            // A key new here (e.g. taken over from another instance): its
            // stored state, then its stored unapplied rows.
            self.reload(&key).await;
            if !self.keys.contains_key(&key) {
                return;
            }
        }
        if self
            .keys
            .get(&key)
            .is_some_and(|ks| ks.blocked_until.is_some())
        {
            // Stored `received`: the key's reload feeds it.
            return;
        }
        let item = Item {
            id: live.id,
            msg: Some(live.msg),
        };
        self.feed_message(&key, seq.epoch, seq.seq, item).await;
        self.drive(&key).await;
    }

    async fn tick(&mut self) {
        if !self.sequenced() {
            return;
        }
        if !self.ensure_loaded().await {
            return;
        }
        let now = self.now_ms();
        if let Some(trace) = &self.opts.trace {
            let due = self
                .keys
                .iter()
                .any(|(k, ks)| trace.wants(k) && ks.tracker.deadline().is_some_and(|d| now >= d));
            if due {
                trace.tick(now);
            }
        }
        let keys: Vec<Key> = self.keys.keys().cloned().collect();
        for key in keys {
            let reload = match self.keys.get_mut(&key) {
                Some(ks) => match ks.blocked_until {
                    Some(t) if Instant::now() >= t => true,
                    Some(_) => continue,
                    None => {
                        ks.tracker.on_tick(now, &mut self.out);
                        false
                    }
                },
                None => continue,
            };
            if reload {
                self.reload(&key).await;
            }
            self.drive(&key).await;
        }
        if self.last_poll.elapsed() >= Duration::from_secs(1) {
            self.last_poll = Instant::now();
            self.poll_resync_requests().await;
            self.drop_adopted();
            self.export_metrics();
            self.export_partition_metrics();
        }
        self.maybe_inspect().await;
    }

    /// Rebuilds a key from the database (after a failed apply or a forced
    /// snapshot): stored state, then the unapplied rows.
    pub(super) async fn reload(&mut self, key: &Key) {
        let old = self.keys.remove(key);
        if !self.ensure_key(key).await {
            if let Some(old) = old {
                self.keys.insert(key.clone(), old);
            }
            return;
        }
        if let (Some(old), Some(ks)) = (old, self.keys.get_mut(key)) {
            ks.base = old.base;
            ks.base.add(old.tracker.counters());
            ks.apply_failures = old.apply_failures;
            ks.backoff = old.backoff;
        }
        // A stored state with an unknown `last` does not exist; but a key
        // resumed mid-snapshot must ask for it again.
        match store::unapplied(&self.shared, &self.rt.event_type, Some(key)).await {
            Ok(rows) => {
                for row in rows {
                    self.feed_row(key, row).await;
                }
            }
            Err(e) => {
                tracing::warn!(event_type = %self.rt.event_type, producer = %key.0, stream = %key.1,
                    error = %e, "sequenced: cannot reload the unapplied rows");
                if let Some(ks) = self.keys.get_mut(key) {
                    ks.blocked_until = Some(Instant::now() + jitter(ks.backoff));
                }
            }
        }
    }

    /// Carries out the pending actions of `key`, then its due request, as
    /// long as answers produce more actions.
    pub(super) async fn drive(&mut self, key: &Key) {
        loop {
            let actions = std::mem::take(&mut self.out);
            self.process(key, actions).await;
            let Some(ks) = self.keys.get_mut(key) else {
                return;
            };
            if ks.blocked_until.is_some() || Instant::now() < ks.next_try {
                return;
            }
            let Some(req) = ks.request.take() else {
                return;
            };
            self.execute(key, req).await;
            if self.out.is_empty() {
                return;
            }
        }
    }

    fn failed_request(&mut self, key: &Key, req: Req) {
        if let Some(ks) = self.keys.get_mut(key) {
            ks.request = Some(req);
        }
        self.bump(key);
    }

    /// Delays the key's next request (jittered, doubling backoff).
    fn bump(&mut self, key: &Key) {
        if let Some(ks) = self.keys.get_mut(key) {
            ks.next_try = Instant::now() + jitter(ks.backoff);
            ks.backoff = (ks.backoff * 2).min(self.opts.max_backoff);
        }
    }

    fn succeeded_request(&mut self, key: &Key) {
        if let Some(ks) = self.keys.get_mut(key) {
            ks.backoff = self.opts.min_backoff;
            ks.next_try = Instant::now();
        }
    }

    async fn execute(&mut self, key: &Key, req: Req) {
        let et = self.rt.event_type.clone();
        match req {
            Req::Fetch { epoch, from, to } => {
                let fetched = self.source.fetch(&key.0, &key.1, epoch, from, to).await;
                let now = self.now_ms();
                let events = match fetched {
                    Ok(events) => events,
                    Err(e) => {
                        tracing::warn!(event_type = %et, producer = %key.0, stream = %key.1, epoch, from, to,
                            error = %e, "sequenced: fetch failed");
                        // The tracker asks again at once; the retry waits for the backoff.
                        if let Some(trace) = &self.opts.trace {
                            trace.fetch_err(now, key);
                        }
                        if let Some(ks) = self.keys.get_mut(key) {
                            ks.tracker.on_fetch_err(now, &mut self.out);
                        }
                        self.bump(key);
                        return;
                    }
                };
                let stored = match store::store_fetched(&self.shared, &et, key, epoch, &events)
                    .await
                {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(event_type = %et, producer = %key.0, stream = %key.1, epoch, from, to,
                                error = %e, "sequenced: cannot store fetched events");
                        if let Some(trace) = &self.opts.trace {
                            trace.fetch_err(now, key);
                        }
                        if let Some(ks) = self.keys.get_mut(key) {
                            ks.tracker.on_fetch_err(now, &mut self.out);
                        }
                        self.bump(key);
                        return;
                    }
                };
                let mut messages = Vec::with_capacity(events.len());
                for (event, (id, unapplied)) in events.into_iter().zip(stored) {
                    if !unapplied {
                        continue;
                    }
                    let decoded = self
                        .shared
                        .opts
                        .codec
                        .unpack(&event.payload)
                        .map_err(|e| format!("unreadable envelope: {e}"))
                        .and_then(|env| to_message(&self.shared, env, id, 1));
                    match decoded {
                        Ok((_, msg)) => messages.push((
                            event.seq,
                            Item {
                                id,
                                msg: Some(Box::new(msg)),
                            },
                        )),
                        Err(e) => {
                            tracing::warn!(event_type = %et, producer = %key.0, stream = %key.1, epoch,
                                seq = event.seq, error = %e, "sequenced: a fetched event cannot be decoded");
                        }
                    }
                }
                self.succeeded_request(key);
                if let Some(ks) = self.keys.get_mut(key) {
                    for (seq, item) in &messages {
                        ks.held.entry((epoch, *seq)).or_insert(item.id);
                    }
                    if let Some(trace) = &self.opts.trace {
                        let seqs: Vec<u64> = messages.iter().map(|(s, _)| *s).collect();
                        trace.fetch_ok(now, key, &seqs);
                    }
                    ks.tracker.on_fetch_ok(now, messages, &mut self.out);
                }
            }
            Req::Snapshot => {
                let need = self.snapshot_need(key);
                let loaded = self.source.snapshot(&key.0, &key.1, need).await;
                let now = self.now_ms();
                match loaded {
                    Ok(Some(snap)) if !need.satisfied_by(snap.epoch, snap.seq) => {
                        // Feeding it would only count `snap_stale` and ask again at once.
                        tracing::warn!(target: "eventyard::seq", event_type = %et, producer = %key.0, stream = %key.1,
                            snapshot_epoch = snap.epoch, snapshot_seq = snap.seq, need = %need,
                            "sequenced: the producer's snapshot is older than needed; the key waits in snapshot mode");
                        self.failed_request(key, Req::Snapshot);
                    }
                    Ok(Some(snap)) => {
                        self.succeeded_request(key);
                        if let Some(ks) = self.keys.get_mut(key) {
                            let (epoch, seq) = (snap.epoch, snap.seq);
                            ks.snapshot = Some(snap);
                            if let Some(trace) = &self.opts.trace {
                                trace.snapshot(now, key, epoch, seq);
                            }
                            ks.tracker.on_snapshot(now, epoch, seq, &mut self.out);
                        }
                    }
                    Ok(None) => {
                        tracing::warn!(target: "eventyard::seq", event_type = %et, producer = %key.0, stream = %key.1,
                            "sequenced: a snapshot is needed but the producer has none stored; the key waits in snapshot mode");
                        self.failed_request(key, Req::Snapshot);
                    }
                    Err(e) => {
                        tracing::warn!(event_type = %et, producer = %key.0, stream = %key.1, error = %e,
                            "sequenced: loading the snapshot failed; retrying with backoff");
                        self.failed_request(key, Req::Snapshot);
                    }
                }
            }
        }
    }

    /// The oldest snapshot the tracker of `key` can apply: newer than
    /// `(epoch, last)`, or any of the epoch while `last` is unknown.
    fn snapshot_need(&self, key: &Key) -> SnapshotNeed {
        self.keys.get(key).map_or(SnapshotNeed::default(), |ks| {
            let t = &ks.tracker;
            SnapshotNeed {
                epoch: t.epoch(),
                seq: t.last().map_or(0, |last| last.saturating_add(1)),
            }
        })
    }

    fn block(&mut self, key: &Key) {
        if let Some(ks) = self.keys.get_mut(key) {
            ks.apply_failures = ks.apply_failures.saturating_add(1);
            let delay = crate::runtime::backoff(
                self.rt.settings().cfg.backoff,
                ks.apply_failures,
                self.opts.max_backoff,
            );
            ks.blocked_until = Some(Instant::now() + delay);
            ks.request = None;
        }
    }

    async fn process(&mut self, key: &Key, actions: Vec<Action<Item>>) {
        let et = self.rt.event_type.clone();
        let mut mode_changed = false;
        for action in actions {
            if self
                .keys
                .get(key)
                .is_none_or(|ks| ks.blocked_until.is_some())
            {
                return;
            }
            match action {
                Action::Apply {
                    epoch,
                    seq,
                    payload,
                    ..
                } => {
                    if let Some(ks) = self.keys.get_mut(key) {
                        ks.held.remove(&(epoch, seq));
                    }
                    match self.apply(key, epoch, seq, payload).await {
                        Applied::Yes => {}
                        Applied::No => {
                            self.block(key);
                            return;
                        }
                        Applied::Stale => {
                            // Reloaded from the database on the next tick.
                            if let Some(ks) = self.keys.get_mut(key) {
                                ks.blocked_until = Some(Instant::now());
                                ks.request = None;
                            }
                            return;
                        }
                    }
                    if let Some(ks) = self.keys.get_mut(key) {
                        ks.apply_failures = 0;
                    }
                }
                Action::ApplySnapshot { epoch, seq } => {
                    let snap = self.keys.get_mut(key).and_then(|ks| ks.snapshot.take());
                    let Some(snap) = snap else { continue };
                    if !self.apply_snapshot(key, snap).await {
                        self.block(key);
                        return;
                    }
                    if let Some(ks) = self.keys.get_mut(key) {
                        ks.held
                            .retain(|(e, s), _| *e > epoch || (*e == epoch && *s > seq));
                    }
                }
                Action::RequestFetch { epoch, from, to } => {
                    if let Some(ks) = self.keys.get_mut(key) {
                        ks.request = Some(Req::Fetch { epoch, from, to });
                    }
                    mode_changed = true;
                }
                Action::RequestSnapshot => {
                    if let Some(ks) = self.keys.get_mut(key) {
                        ks.request = Some(Req::Snapshot);
                    }
                    mode_changed = true;
                }
                Action::Alert(alert) => {
                    tracing::warn!(target: "eventyard::seq", event_type = %et, producer = %key.0,
                        stream = %key.1, epoch = alert.epoch, missing_from = alert.from,
                        missing_to = alert.to, hwm = alert.hwm, "sequence gap");
                    mode_changed = true;
                }
            }
        }
        if mode_changed {
            if let Some(ks) = self.keys.get(key) {
                let t = &ks.tracker;
                let saved = store::save_mode(
                    &self.shared,
                    key,
                    ks.committed,
                    (t.epoch(), t.last()),
                    t.mode().as_str(),
                )
                .await;
                match saved {
                    Ok(Some(state)) => {
                        if let Some(ks) = self.keys.get_mut(key) {
                            ks.committed = Some(state);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "sequenced: cannot record the mode"),
                }
            }
        }
    }

    fn mode_of(&self, key: &Key) -> &'static str {
        self.keys
            .get(key)
            .map_or("synced", |ks| ks.tracker.mode().as_str())
    }

    /// Runs the handler of one event and records `(epoch, seq)` in the
    /// transaction that marks its row done.
    async fn apply(&mut self, key: &Key, epoch: u64, seq: u64, item: Item) -> Applied {
        let Some(msg) = item.msg else {
            return Applied::Yes;
        };
        let committed = self.keys.get(key).and_then(|ks| ks.committed);
        let settings = self.rt.settings();
        let shared = Arc::clone(&self.shared);
        let mode = self.mode_of(key);
        let id = item.id;
        let et = self.rt.event_type.clone();
        let Some(handler) = settings.handler.clone() else {
            let reason = format!(
                "handler `{}` is not registered in this process",
                settings.cfg.handler_id.as_deref().unwrap_or("")
            );
            tracing::warn!(event_type = %et, producer = %key.0, stream = %key.1, epoch, seq, reason = %reason,
                "sequenced: cannot apply; the key waits");
            let _ = store::record_failure(&shared, id, &reason).await;
            return Applied::No;
        };
        let owner = shared.opts.instance_id.clone();
        let result: Result<Option<Option<String>>> = async {
            let lease = lease_until(Utc::now(), settings.timeout + shared.opts.lease);
            let state_sql = store::upsert_state_sql(shared.db.backend());
            let fence = store::locked_state_sql(&shared);
            with_pool!(&shared.db, pool => {
                let mut tx = if shared.db.backend() == Backend::Sqlite {
                    pool.begin_with("BEGIN IMMEDIATE").await?
                } else {
                    pool.begin().await?
                };
                let stored: Option<(i64, i64)> = sqlx::query_as(&fence)
                    .bind(&shared.opts.subscriber).bind(&key.0).bind(&key.1)
                    .fetch_optional(&mut *tx).await?;
                if stored != committed.map(|(e, l)| (i64_of(e), i64_of(l))) {
                    drop(tx);
                    return Ok(None);
                }
                let lock = shared.db.sql(
                    "UPDATE ey_inbox SET claimed_by = $1, claimed_until = $2 WHERE id = $3 \
                     AND status IN ('received', 'retrying')",
                );
                let n = sqlx::query(&lock).bind(&owner).bind(lease).bind(id)
                    .execute(&mut *tx).await?.rows_affected();
                if n == 0 {
                    // Already finished (a copy applied before a crash): record the state only.
                    sqlx::query(state_sql).bind(&shared.opts.subscriber).bind(&key.0).bind(&key.1)
                        .bind(i64_of(epoch)).bind(i64_of(seq)).bind(mode).bind(Utc::now())
                        .execute(&mut *tx).await?;
                    tx.commit().await?;
                    return Ok(Some(None));
                }
                let mut msg = *msg;
                let started = Instant::now();
                let attempt = {
                    let mut ctx = HandlerContext::new(
                        &mut *tx,
                        &shared.db,
                        &settings.cfg,
                        settings.handler_config.as_deref(),
                    );
                    msg.attempt = msg.attempt.max(1);
                    call(&handler, &msg, &mut ctx, settings.timeout).await
                };
                shared.stats.observe_handler(&et, started.elapsed(), 1);
                match attempt {
                    Attempt::Returned(HandlerOutcome::Done { result }) => {
                        sqlx::query(state_sql).bind(&shared.opts.subscriber).bind(&key.0).bind(&key.1)
                            .bind(i64_of(epoch)).bind(i64_of(seq)).bind(mode).bind(Utc::now())
                            .execute(&mut *tx).await?;
                        let done = shared.db.sql(
                            "UPDATE ey_inbox SET status = 'done', attempts = attempts + 1, result = $1, \
                             processed_at = $2, next_attempt_at = NULL, claimed_by = NULL, \
                             claimed_until = NULL WHERE id = $3",
                        );
                        sqlx::query(&done).bind(clip_text(&result)).bind(Utc::now()).bind(id)
                            .execute(&mut *tx).await?;
                        tx.commit().await?;
                        Ok(Some(None))
                    }
                    other => {
                        drop(tx);
                        Ok(Some(Some(other.failure_text().unwrap_or_default())))
                    }
                }
            })
        }
        .await;
        match result {
            Ok(None) => {
                tracing::info!(event_type = %et, producer = %key.0, stream = %key.1, epoch, seq,
                    "sequenced: the stored stream state moved (another instance applied); reloading the key");
                Applied::Stale
            }
            Ok(Some(None)) => {
                shared.stats.update(&et, |s| s.processed += 1);
                if let Some(ks) = self.keys.get_mut(key) {
                    ks.committed = Some((epoch, seq));
                }
                Applied::Yes
            }
            Ok(Some(Some(reason))) => {
                tracing::warn!(event_type = %et, producer = %key.0, stream = %key.1, epoch, seq, id,
                    reason = %reason, "sequenced: handler failed; the key waits and retries with backoff");
                shared.stats.update(&et, |s| s.retried += 1);
                let _ = store::record_failure(&shared, id, &reason).await;
                Applied::No
            }
            Err(e) => {
                tracing::warn!(event_type = %et, producer = %key.0, stream = %key.1, epoch, seq, id,
                    error = %e, "sequenced: database error while applying; retrying");
                Applied::No
            }
        }
    }

    /// Hands a snapshot to the snapshot handler and records its watermark,
    /// marking superseded rows done, in one transaction. `false`: not applied.
    pub(super) async fn apply_snapshot(&mut self, key: &Key, snap: StoredSnapshot) -> bool {
        let settings = self.rt.settings();
        let shared = Arc::clone(&self.shared);
        let et = self.rt.event_type.clone();
        let handler_id = settings.cfg.handler_id.clone().unwrap_or_default();
        let Some(handler) = self.opts.snapshot_handlers.get(&handler_id).cloned() else {
            tracing::warn!(target: "eventyard::seq", event_type = %et, producer = %key.0, stream = %key.1,
                handler_id = %handler_id,
                "sequenced: a snapshot must be applied but no snapshot handler is registered for the handler id; the key waits");
            return false;
        };
        let snapshot = Snapshot {
            event_type: et.clone(),
            producer_id: key.0.clone(),
            stream: key.1.clone(),
            epoch: snap.epoch,
            seq: snap.seq,
            state: snap.state,
        };
        let mode = self.mode_of(key);
        let result: Result<Option<String>> = async {
            let state_sql = store::upsert_state_sql(shared.db.backend());
            with_pool!(&shared.db, pool => {
                let mut tx = if shared.db.backend() == Backend::Sqlite {
                    pool.begin_with("BEGIN IMMEDIATE").await?
                } else {
                    pool.begin().await?
                };
                let outcome = {
                    let mut ctx = HandlerContext::new(
                        &mut *tx,
                        &shared.db,
                        &settings.cfg,
                        settings.handler_config.as_deref(),
                    );
                    tokio::time::timeout(settings.timeout, handler.apply_snapshot(&snapshot, &mut ctx)).await
                };
                match outcome {
                    Ok(HandlerOutcome::Done { .. }) => {
                        sqlx::query(state_sql).bind(&shared.opts.subscriber).bind(&key.0).bind(&key.1)
                            .bind(i64_of(snapshot.epoch)).bind(i64_of(snapshot.seq)).bind(mode).bind(Utc::now())
                            .execute(&mut *tx).await?;
                        let superseded = shared.db.sql(
                            "UPDATE ey_inbox SET status = 'done', result = $1, processed_at = $2, \
                             claimed_by = NULL, claimed_until = NULL WHERE subscriber = $3 \
                             AND event_type = $4 AND producer_id = $5 AND stream = $6 \
                             AND status IN ('received', 'retrying') \
                             AND (epoch < $7 OR (epoch = $8 AND seq <= $9))",
                        );
                        let note = format!("superseded by snapshot ({}, {})", snapshot.epoch, snapshot.seq);
                        sqlx::query(&superseded).bind(&note).bind(Utc::now()).bind(&shared.opts.subscriber)
                            .bind(&et).bind(&key.0).bind(&key.1)
                            .bind(i64_of(snapshot.epoch)).bind(i64_of(snapshot.epoch)).bind(i64_of(snapshot.seq))
                            .execute(&mut *tx).await?;
                        tx.commit().await?;
                        Ok(None)
                    }
                    Ok(other) => {
                        drop(tx);
                        Ok(Some(other.text().to_string()))
                    }
                    Err(_) => {
                        drop(tx);
                        Ok(Some(format!("snapshot handler timed out after {:?}", settings.timeout)))
                    }
                }
            })
        }
        .await;
        match result {
            Ok(None) => {
                tracing::info!(target: "eventyard::seq", event_type = %et, producer = %key.0, stream = %key.1,
                    epoch = snapshot.epoch, seq = snapshot.seq, "sequenced: snapshot applied");
                if let Some(ks) = self.keys.get_mut(key) {
                    ks.committed = Some((snapshot.epoch, snapshot.seq));
                }
                true
            }
            Ok(Some(reason)) => {
                tracing::warn!(event_type = %et, producer = %key.0, stream = %key.1, reason = %reason,
                    "sequenced: the snapshot handler failed; retrying with backoff");
                false
            }
            Err(e) => {
                tracing::warn!(event_type = %et, producer = %key.0, stream = %key.1, error = %e,
                    "sequenced: database error while applying a snapshot; retrying");
                false
            }
        }
    }

    /// Operator requests (`eventyard seq resync`): apply the stored snapshot
    /// now, then reload the key.
    async fn poll_resync_requests(&mut self) {
        let shared = Arc::clone(&self.shared);
        let et = self.rt.event_type.clone();
        let sql = shared.db.sql(
            "SELECT r.producer_id, r.stream, r.requested_at FROM ey_seq_resync r WHERE r.subscriber = $1 AND EXISTS \
             (SELECT 1 FROM ey_inbox i WHERE i.subscriber = r.subscriber AND i.event_type = $2 \
             AND i.producer_id = r.producer_id AND i.stream = r.stream)",
        );
        let wanted: Vec<(String, String, chrono::DateTime<Utc>)> = match with_pool!(&shared.db, pool => {
            sqlx::query_as(&sql).bind(&shared.opts.subscriber).bind(&et).fetch_all(pool).await
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(error = %e, "sequenced: cannot read ey_seq_resync");
                return;
            }
        };
        for (producer, stream, requested_at) in wanted {
            let key = (producer, stream);
            // Partitioned rows: the key's owner serves it (see partitions.rs).
            if !self.serves_resync(&key, (Utc::now() - requested_at).num_seconds()) {
                continue;
            }
            // At least the applied state: an older one is not applied, and a
            // source that can make a fresh one is asked to.
            let current = store::load_state(&shared, &key).await.ok().flatten();
            let need = current.map_or(SnapshotNeed::default(), |(epoch, seq)| SnapshotNeed {
                epoch,
                seq,
            });
            let snap = match self.source.snapshot(&key.0, &key.1, need).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    tracing::warn!(target: "eventyard::seq", event_type = %et, producer = %key.0, stream = %key.1,
                        "seq resync: the producer has no stored snapshot; request kept");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "seq resync: cannot load the snapshot; request kept");
                    continue;
                }
            };
            let older = current.is_some_and(|(e, l)| (snap.epoch, snap.seq) < (e, l));
            if older {
                tracing::warn!(target: "eventyard::seq", event_type = %et, producer = %key.0, stream = %key.1,
                    snapshot_epoch = snap.epoch, snapshot_seq = snap.seq,
                    "seq resync: the stored snapshot is older than the applied state; not applied");
            } else if !self.apply_snapshot(&key, snap).await {
                continue;
            }
            let del = shared.db.sql(
                "DELETE FROM ey_seq_resync WHERE subscriber = $1 AND producer_id = $2 AND stream = $3",
            );
            let _ = with_pool!(&shared.db, pool => {
                sqlx::query(&del).bind(&shared.opts.subscriber).bind(&key.0).bind(&key.1).execute(pool).await.map(|_| ())
            });
            if !older {
                self.reload(&key).await;
                self.drive(&key).await;
            }
        }
    }

    /// Publishes every tracker counter, summed per event type, and the keys
    /// per mode.
    pub(super) fn export_metrics(&self) {
        let mut total = Counters::default();
        let mut modes: HashMap<&'static str, u64> = HashMap::new();
        for ks in self.keys.values() {
            total.add(&ks.base);
            total.add(ks.tracker.counters());
            *modes.entry(ks.tracker.mode().as_str()).or_default() += 1;
        }
        let et = self.rt.event_type.clone();
        for (name, value) in total.iter() {
            metrics::counter!(format!("eventyard_seq_{name}_total"), "event_type" => et.clone())
                .absolute(value);
        }
        for mode in ["synced", "hold", "fetch", "snapshot"] {
            let n = modes.get(mode).copied().unwrap_or(0);
            metrics::gauge!("eventyard_seq_keys", "event_type" => et.clone(), "mode" => mode)
                .set(n as f64);
        }
    }
}

fn row_key(row: &InboxRow) -> Option<Key> {
    Some((row.producer_id.clone()?, row.stream.clone()?))
}

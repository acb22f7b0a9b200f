//! The batch scheduler and the relay.
//!
//! Per event type whose send mode uses batches, the scheduler fires on the
//! row's `batch_cron` and drains that type's pending outbox rows in chunks
//! of `batch_size`, each row marked by its own confirm. The relay resends
//! `pending` rows of the real-time modes that stayed unsent past the grace
//! period (a process that died between commit and publish). Rows are
//! claimed with leases, so several instances can run this safely.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventyard_core::config::{Config, Schedule, SendConfig, SendMode};
use tokio::sync::watch;

use crate::error::{retry_deadlocks, Result};
use crate::outbox::{ClaimRequest, OutboxRow};
use crate::publisher::Publisher;
use eventyard_transport::{PublishOrder, Transport};

/// A source of the current time, injectable for tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// When each batch event type fires next. Pure: fed the config and the
/// time, it answers which types are due — so cron timing is tested with
/// chosen instants, not sleeps.
#[derive(Debug, Default)]
pub struct BatchPlan {
    entries: BTreeMap<String, PlanEntry>,
}

#[derive(Debug)]
struct PlanEntry {
    schedule: Schedule,
    next: Option<DateTime<Utc>>,
}

impl BatchPlan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// Follows a (re)loaded config: adds new batch types, drops types that
    /// are gone, disabled or no longer batch, and reschedules types whose
    /// schedule text changed.
    pub fn update(&mut self, config: &Config, now: DateTime<Utc>) {
        let wanted: BTreeMap<&str, &Schedule> = config
            .send
            .values()
            .filter(|c| c.enabled && c.send_mode.uses_batch())
            .filter_map(|c| {
                c.batch_schedule
                    .as_ref()
                    .map(|s| (c.event_type.as_str(), s))
            })
            .collect();
        self.entries.retain(|t, _| wanted.contains_key(t.as_str()));
        for (event_type, schedule) in wanted {
            let fresh = match self.entries.get(event_type) {
                Some(e) => e.schedule != *schedule,
                None => true,
            };
            if fresh {
                self.entries.insert(
                    event_type.to_string(),
                    PlanEntry {
                        schedule: schedule.clone(),
                        next: schedule.next_after(now),
                    },
                );
            }
        }
    }

    /// The event types due at `now`, each rescheduled to its next firing
    /// after `now` (missed firings collapse into one).
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<String> {
        let mut due = Vec::new();
        for (event_type, entry) in &mut self.entries {
            if entry.next.is_some_and(|n| n <= now) {
                due.push(event_type.clone());
                let mut next = entry.schedule.next_after(now);
                // Fixed intervals keep their cadence from the previous firing.
                if let (Some(interval), Some(prev)) = (entry.schedule.interval(), entry.next) {
                    if let Ok(step) = chrono::Duration::from_std(interval) {
                        let mut n = prev + step;
                        while n <= now {
                            n += step;
                        }
                        next = Some(n);
                    }
                }
                entry.next = next;
            }
        }
        due
    }

    /// The earliest next firing.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.entries.values().filter_map(|e| e.next).min()
    }

    /// The next firing of one event type.
    pub fn next_for(&self, event_type: &str) -> Option<DateTime<Utc>> {
        self.entries.get(event_type).and_then(|e| e.next)
    }
}

/// What one batch run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchReport {
    /// Rows claimed.
    pub claimed: u64,
    /// Rows confirmed and marked `sent`.
    pub sent: u64,
    /// Rows that failed and stay `pending` for a later run.
    pub retrying: u64,
    /// Rows that failed for the last allowed time and are now `failed`.
    pub failed: u64,
}

impl BatchReport {
    fn add(&mut self, other: &BatchReport) {
        self.claimed += other.claimed;
        self.sent += other.sent;
        self.retrying += other.retrying;
        self.failed += other.failed;
    }
}

/// Each row's publish result, in row order (`Err`: why it was not sent).
type RowResults = Vec<std::result::Result<(), String>>;

/// A chunk handed to the transport, published on its own task. Dropping it
/// while the task runs (the drain was cancelled) aborts the task, so that
/// messages not yet written are not sent.
struct Publishing {
    task: Option<tokio::task::JoinHandle<(Vec<OutboxRow>, RowResults)>>,
    /// The rows and their answers, once every confirm is in.
    done: Option<(Vec<OutboxRow>, RowResults)>,
}

impl Publishing {
    /// Waits for every confirm. A publishing task that died (it cannot
    /// panic in normal operation) leaves its rows claimed: they are taken
    /// again when their lease ends.
    async fn wait(&mut self) {
        let Some(task) = self.task.as_mut() else {
            return;
        };
        let answered = task.await;
        self.task = None;
        self.done = Some(match answered {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "a batch publishing task ended abnormally; its rows are sent again when their lease ends");
                (Vec::new(), Vec::new())
            }
        });
    }

    /// Whether a confirmed chunk has rows that were not sent.
    fn has_failures(&self) -> bool {
        self.done
            .as_ref()
            .is_some_and(|(_, results)| results.iter().any(Result::is_err))
    }

    /// The rows and their answers, after every confirm.
    async fn results(mut self) -> (Vec<OutboxRow>, RowResults) {
        self.wait().await;
        self.done.take().unwrap_or_default()
    }
}

impl Drop for Publishing {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Publishes one claimed chunk: one result per row, in row order. Rows of
/// one sequenced stream keep their order (one publishing channel per
/// stream); the others may use every channel at once. The payloads move
/// into the messages (the bookkeeping after the confirms does not need them).
async fn publish_chunk(
    publisher: &Publisher,
    cfg: &SendConfig,
    rows: &mut [OutboxRow],
) -> RowResults {
    let transport = &publisher.inner.transport;
    if let Err(e) = transport.declare_exchange(&cfg.exchange).await {
        let e = e.to_string();
        return rows.iter().map(|_| Err(e.clone())).collect();
    }
    let messages = rows
        .iter_mut()
        .map(|r| {
            let order = match (&r.producer_id, &r.stream) {
                (Some(producer), stream) => PublishOrder::Key(format!(
                    "{producer}\u{1f}{}",
                    stream.as_deref().unwrap_or_default()
                )),
                (None, _) => PublishOrder::Any,
            };
            publisher
                .message(cfg, &r.event_id, std::mem::take(&mut r.payload))
                .order(order)
        })
        .collect();
    transport
        .publish_many(messages)
        .await
        .into_iter()
        .map(|r| r.map_err(|e| e.to_string()))
        .collect()
}

/// Runs batch sends and the relay for a [`Publisher`].
#[derive(Debug, Clone)]
pub struct BatchScheduler {
    publisher: Publisher,
    clock: Arc<dyn Clock>,
    relay_interval: Duration,
}

impl BatchScheduler {
    /// A scheduler sharing the publisher's outbox, config and transport.
    pub fn new(publisher: Publisher) -> Self {
        BatchScheduler {
            publisher,
            clock: Arc::new(SystemClock),
            relay_interval: Duration::from_secs(5),
        }
    }

    /// Uses another clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How often the relay looks for stale pending rows (default 5 s).
    pub fn relay_interval(mut self, d: Duration) -> Self {
        self.relay_interval = d.max(Duration::from_millis(10));
        self
    }

    /// Sends every pending row of `event_type` now, in chunks of its
    /// `batch_size` ("send batch now"). Stops early when a chunk has
    /// failures (the broker is likely unreachable); the rest waits for the
    /// next run.
    pub async fn send_now(&self, event_type: &str) -> Result<BatchReport> {
        let cfg = self.publisher.send_config(event_type)?;
        let total = self.drain(&cfg, None).await?;
        metrics::counter!("eventyard_batch_runs_total", "event_type" => event_type.to_string())
            .increment(1);
        metrics::counter!("eventyard_batch_events_total", "event_type" => event_type.to_string(), "result" => "sent")
            .increment(total.sent);
        metrics::counter!("eventyard_batch_events_total", "event_type" => event_type.to_string(), "result" => "failed")
            .increment(total.failed + total.retrying);
        if total.claimed > 0 {
            tracing::info!(
                event_type,
                claimed = total.claimed,
                sent = total.sent,
                retrying = total.retrying,
                failed = total.failed,
                "batch sent"
            );
        }
        Ok(total)
    }

    /// Resends pending rows of real-time event types older than the grace
    /// period. Returns what it did.
    pub async fn relay_once(&self) -> Result<BatchReport> {
        let loaded = Arc::clone(&self.publisher.inner.config.borrow());
        let grace = chrono::Duration::from_std(self.publisher.inner.options.relay_grace)
            .unwrap_or(chrono::Duration::seconds(10));
        let mut total = BatchReport::default();
        for cfg in loaded.config.send.values() {
            if !cfg.enabled || cfg.send_mode == SendMode::Batch {
                continue;
            }
            let before = self.clock.now() - grace;
            total.add(&self.drain(cfg, Some(before)).await?);
        }
        metrics::counter!("eventyard_relay_events_total").increment(total.sent);
        if total.claimed > 0 {
            tracing::info!(
                claimed = total.claimed,
                sent = total.sent,
                "relay resent stale pending rows"
            );
        }
        Ok(total)
    }

    /// Sends the type's pending rows (created before `created_before`, if
    /// given) in chunks of its `batch_size`, as a pipeline. Each chunk is
    /// published on its own task while the database steps of the others
    /// (claiming the next chunk, marking a confirmed one's rows `sent`) run
    /// one after the other, so they never wait on each other's row locks.
    /// For an unsequenced type up to
    /// [`PublisherOptions::batch_chunks_in_flight`](crate::PublisherOptions::batch_chunks_in_flight)
    /// chunks publish at once, so the publishing channels never run dry
    /// between chunks (see [`drain_overlapping`](Self::drain_overlapping)).
    /// For a sequenced type a chunk starts only when the one
    /// before it is confirmed, so rows of one stream go out in sequence order
    /// across chunks (within a chunk, each stream stays on one channel). A
    /// chunk with failures ends the drain: the chunks already publishing are
    /// finished and recorded; for a sequenced type the next chunk, if already
    /// claimed but not yet published, is released unsent (it would overtake
    /// the failed rows); the rest waits for the next run.
    async fn drain(
        &self,
        cfg: &SendConfig,
        created_before: Option<DateTime<Utc>>,
    ) -> Result<BatchReport> {
        let rows = self.claim_chunk(cfg, created_before).await?;
        if cfg.sequenced {
            self.drain_in_order(cfg, created_before, rows).await
        } else {
            self.drain_overlapping(cfg, created_before, rows).await
        }
    }

    /// [`drain`](Self::drain) for an unsequenced type: several chunks
    /// publishing at once, the oldest finished first.
    ///
    /// Once `batch_chunks_in_flight` chunks are publishing, the next chunk
    /// is claimed while the oldest one's confirms come in, and it starts
    /// publishing as soon as they have; only then is the oldest one marked
    /// `sent`. So neither the claim nor the marking stands between two
    /// chunks, and the broker is never left without work while the
    /// database answers. When the oldest chunk had failures the drain stops
    /// (the chunk claimed ahead is given back, the chunks still publishing
    /// are finished and recorded).
    async fn drain_overlapping(
        &self,
        cfg: &SendConfig,
        created_before: Option<DateTime<Utc>>,
        rows: Vec<OutboxRow>,
    ) -> Result<BatchReport> {
        let depth = self.publisher.inner.options.batch_chunks_in_flight;
        let mut total = BatchReport::default();
        let mut publishing: VecDeque<Publishing> = VecDeque::new();
        // Nothing more to claim.
        let mut exhausted = rows.is_empty();
        if !exhausted {
            publishing.push_back(self.start_publishing(cfg, rows));
        }
        loop {
            while !exhausted && publishing.len() < depth {
                match self.claim_chunk(cfg, created_before).await {
                    Ok(next) if next.is_empty() => exhausted = true,
                    Ok(next) => publishing.push_back(self.start_publishing(cfg, next)),
                    Err(e) => {
                        self.finish_all(cfg, publishing, &mut total).await;
                        return Err(e);
                    }
                }
            }
            let Some(oldest) = publishing.pop_front() else {
                return Ok(total);
            };
            let (confirmed, claimed) = if exhausted {
                (oldest.results().await, None)
            } else {
                let (confirmed, claimed) =
                    tokio::join!(oldest.results(), self.claim_chunk(cfg, created_before));
                (confirmed, Some(claimed))
            };
            let clean = confirmed.1.iter().all(Result::is_ok);
            match claimed {
                None => {}
                Some(Ok(next)) if next.is_empty() => exhausted = true,
                Some(Ok(next)) if clean => publishing.push_back(self.start_publishing(cfg, next)),
                // The drain stops after this chunk: give the next one back.
                Some(Ok(next)) => self.release_claimed(next).await,
                Some(Err(e)) => {
                    let _ = self.record_chunk(cfg, confirmed, &mut total).await;
                    self.finish_all(cfg, publishing, &mut total).await;
                    return Err(e);
                }
            }
            if let Err(end) = self.record_chunk(cfg, confirmed, &mut total).await {
                // Stop here; what is already publishing is finished and recorded.
                self.finish_all(cfg, publishing, &mut total).await;
                return end.map(|()| total);
            }
        }
    }

    /// Finishes and records the chunks still publishing when a drain stops
    /// early (their own failures are recorded; the drain's end is decided).
    async fn finish_all(
        &self,
        cfg: &SendConfig,
        publishing: VecDeque<Publishing>,
        total: &mut BatchReport,
    ) {
        for chunk in publishing {
            let _ = self.finish_chunk(cfg, chunk, total).await;
        }
    }

    /// [`drain`](Self::drain) for a sequenced type: the next chunk is
    /// claimed while one publishes, but starts only once that one is
    /// confirmed without failures.
    async fn drain_in_order(
        &self,
        cfg: &SendConfig,
        created_before: Option<DateTime<Utc>>,
        mut rows: Vec<OutboxRow>,
    ) -> Result<BatchReport> {
        let mut total = BatchReport::default();
        // The chunk before the current one: published and not yet marked.
        let mut previous: Option<Publishing> = None;
        loop {
            let current =
                (!rows.is_empty()).then(|| self.start_publishing(cfg, std::mem::take(&mut rows)));
            if let Some(previous) = previous.take() {
                if let Err(end) = self.finish_chunk(cfg, previous, &mut total).await {
                    // Stop here; what is already publishing is finished and recorded.
                    if let Some(current) = current {
                        let _ = self.finish_chunk(cfg, current, &mut total).await;
                    }
                    return end.map(|()| total);
                }
            }
            let Some(mut current) = current else {
                return Ok(total);
            };
            match self.claim_chunk(cfg, created_before).await {
                Ok(next) => rows = next,
                Err(e) => {
                    let _ = self.finish_chunk(cfg, current, &mut total).await;
                    return Err(e);
                }
            }
            current.wait().await;
            if current.has_failures() {
                // The next chunk would overtake the failed rows: give it back.
                self.release_claimed(std::mem::take(&mut rows)).await;
            }
            previous = Some(current);
        }
    }

    /// Starts publishing a claimed chunk on its own task.
    fn start_publishing(&self, cfg: &SendConfig, rows: Vec<OutboxRow>) -> Publishing {
        let publisher = self.publisher.clone();
        let cfg = cfg.clone();
        Publishing {
            task: Some(tokio::spawn(async move {
                let mut rows = rows;
                let results = publish_chunk(&publisher, &cfg, &mut rows).await;
                (rows, results)
            })),
            done: None,
        }
    }

    /// Waits for a chunk's confirms, marks its sent rows and records its
    /// failures. `Err(Ok(()))` ends the drain without an error (the chunk
    /// had failures), `Err(Err(e))` with one.
    async fn finish_chunk(
        &self,
        cfg: &SendConfig,
        chunk: Publishing,
        total: &mut BatchReport,
    ) -> std::result::Result<(), Result<()>> {
        let confirmed = chunk.results().await;
        self.record_chunk(cfg, confirmed, total).await
    }

    /// Marks a confirmed chunk's sent rows and records its failures; the
    /// result as for [`finish_chunk`](Self::finish_chunk).
    async fn record_chunk(
        &self,
        cfg: &SendConfig,
        (rows, results): (Vec<OutboxRow>, RowResults),
        total: &mut BatchReport,
    ) -> std::result::Result<(), Result<()>> {
        let mut sent = Vec::with_capacity(rows.len());
        let mut failed = Vec::new();
        for (row, result) in rows.iter().zip(results) {
            match result {
                Ok(()) => sent.push(row.id),
                Err(e) => failed.push((row, e)),
            }
        }
        let mut report = BatchReport {
            claimed: rows.len() as u64,
            sent: sent.len() as u64,
            ..BatchReport::default()
        };
        let marked = self.mark_sent(cfg, &sent).await;
        let recorded = self.record_failures(cfg, &failed, &mut report).await;
        total.add(&report);
        match (marked, recorded) {
            (Err(e), _) | (_, Err(e)) => Err(Err(e)),
            (Ok(()), Ok(())) if !failed.is_empty() => Err(Ok(())),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    /// Marks published rows `sent`, retrying a deadlock or serialization
    /// failure (MySQL can report one when another instance claims nearby
    /// rows): a row left `pending` would be sent again after its lease.
    async fn mark_sent(&self, cfg: &SendConfig, sent: &[i64]) -> Result<()> {
        if sent.is_empty() {
            return Ok(());
        }
        let outbox = &self.publisher.inner.outbox;
        retry_deadlocks("marking sent rows", &cfg.event_type, || {
            outbox.mark_sent_by_id(sent, Utc::now())
        })
        .await
    }

    async fn claim_chunk(
        &self,
        cfg: &SendConfig,
        created_before: Option<DateTime<Utc>>,
    ) -> Result<Vec<OutboxRow>> {
        let inner = &self.publisher.inner;
        retry_deadlocks("claiming outbox rows", &cfg.event_type, || async move {
            let request = ClaimRequest {
                owner: &inner.options.instance_id,
                lease: inner.options.lease,
                event_type: Some(&cfg.event_type),
                event_types: &[],
                created_before,
                limit: cfg.batch_size,
                now: self.clock.now(),
            };
            inner.outbox.claim(&request).await
        })
        .await
    }

    /// Gives claimed rows back unsent (their lease is cleared), so the next
    /// run takes them at once. A failure here only delays them until the
    /// lease ends.
    async fn release_claimed(&self, rows: Vec<OutboxRow>) {
        if rows.is_empty() {
            return;
        }
        let ids: Vec<String> = rows.into_iter().map(|r| r.event_id).collect();
        if let Err(e) = self.publisher.inner.outbox.release(&ids).await {
            tracing::warn!(rows = ids.len(), error = %e, "could not release claimed outbox rows; they are taken again when their lease ends");
        }
    }

    async fn record_failures(
        &self,
        cfg: &SendConfig,
        failed: &[(&OutboxRow, String)],
        report: &mut BatchReport,
    ) -> Result<()> {
        for (row, error) in failed {
            self.record_failure(cfg, row, error, report).await?;
        }
        Ok(())
    }

    async fn record_failure(
        &self,
        cfg: &SendConfig,
        row: &OutboxRow,
        error: &str,
        report: &mut BatchReport,
    ) -> Result<()> {
        let attempts_after = i64::from(row.attempts) + 1;
        let give_up = attempts_after > i64::from(cfg.retry_count);
        self.publisher
            .inner
            .outbox
            .mark_attempt_failed(&row.event_id, error, give_up, 1)
            .await?;
        if give_up {
            report.failed += 1;
            tracing::error!(event_id = %row.event_id, event_type = %cfg.event_type, attempts = attempts_after, error, "batch send failed for the last time; outbox row marked failed");
        } else {
            report.retrying += 1;
        }
        Ok(())
    }

    /// Runs until `shutdown` turns true: fires batch types on their
    /// schedules, runs the relay every relay interval, and follows config
    /// reloads (a changed `batch_cron` or mode applies at once).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut config = self.publisher.inner.config.clone();
        let mut plan = BatchPlan::new();
        plan.update(&config.borrow_and_update().config, self.clock.now());
        let mut next_relay = self.clock.now();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now = self.clock.now();
            for event_type in plan.take_due(now) {
                if let Err(e) = self.send_now(&event_type).await {
                    tracing::error!(%event_type, error = %e, "batch run failed");
                }
            }
            if now >= next_relay {
                if let Err(e) = self.relay_once().await {
                    tracing::error!(error = %e, "relay run failed");
                }
                next_relay = now
                    + chrono::Duration::from_std(self.relay_interval)
                        .unwrap_or(chrono::Duration::seconds(5));
            }
            let wake = plan.next_wake().map_or(next_relay, |w| w.min(next_relay));
            let sleep = (wake - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(Duration::from_secs(60));
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                changed = config.changed() => {
                    if changed.is_err() { return; }
                    plan.update(&config.borrow_and_update().config, self.clock.now());
                }
                _ = shutdown.changed() => {}
            }
        }
    }
}

//! `e2e`: end to end, publish → handler → `done`, at a steady rate.
//!
//! (c) A [`Publisher`] with a `realtime` send row (`persist` on) publishes
//! `--rate` events per second for `--seconds` seconds (one task per event,
//! started on a fixed tick); a [`Receiver`](eventyard_receiver::Receiver) in
//! the same process handles them with a handler that only records the
//! latency: the time of the handler call minus the envelope's `created_at`
//! (set by `publish`, so the latency includes the outbox insert, the
//! confirmed publish, the broker, the inbox insert and the ack). Both sides
//! run on the same clock.
//!
//! Checked afterwards: every publish `sent`, N rows `done`, N handler calls,
//! the queue empty.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Args;
use eventyard_converter::Registry;
use eventyard_core::db::Db;
use eventyard_receiver::{HandlerOutcome, HandlerRegistry, InboxStatus, Message};
use eventyard_sender::{Outbox, Outcome, Publisher, PublisherOptions};
use eventyard_transport::Transport;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::common::{fail, thousands, Broker, Result, ScratchDb, Services};
use crate::receive::{EventyardRx, ReceiveSpec};
use crate::send::{body_value, redact};

/// The event type of (c).
const E2E: &str = "EYB.E2E";
/// Subscriber of (c).
const SUB_E2E: &str = "BENCH_E2E";
/// Publishes in flight at most (a stalled broker does not pile up tasks).
const MAX_IN_FLIGHT: usize = 5_000;

/// The rate and length of (c).
#[derive(Debug, Clone, Args)]
pub(crate) struct E2eParams {
    /// Events published per second.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) rate: u64,

    /// Seconds of publishing.
    #[arg(long, default_value_t = 20)]
    pub(crate) seconds: u64,

    /// The p99 latency target in milliseconds.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) p99_target_ms: f64,

    /// Coalesced outbox writes in flight at once (`PublisherOptions::coalesce_writers`).
    #[arg(long, default_value_t = 2)]
    pub(crate) coalesce_writers: usize,
}

/// Options of `e2e`.
#[derive(Debug, Clone, Args)]
pub(crate) struct E2eArgs {
    /// The services.
    #[command(flatten)]
    pub(crate) services: Services,

    /// Size of the event body in bytes (before the envelope).
    #[arg(long, default_value_t = 500)]
    pub(crate) body_bytes: usize,

    /// `workers` of the receive row (handler pool size).
    #[arg(long, default_value_t = 8)]
    pub(crate) workers: i32,

    /// eventyard's receiver never calls handlers in the transaction that
    /// stores a micro-batch (`ReceiverOptions::inline_handling(false)`),
    /// for comparing.
    #[arg(long)]
    pub(crate) no_inline: bool,

    /// Rate and length.
    #[command(flatten)]
    pub(crate) params: E2eParams,
}

/// The result of (c).
#[derive(Debug, Clone)]
pub(crate) struct E2eResult {
    /// Events published (and expected `done`).
    pub(crate) events: u64,
    /// The asked rate.
    pub(crate) offered: u64,
    /// Events per second, from the first publish until the last row was `done`.
    pub(crate) achieved: f64,
    /// Latency percentiles in milliseconds: p50, p90, p99, max.
    pub(crate) p50: f64,
    /// p90.
    pub(crate) p90: f64,
    /// p99.
    pub(crate) p99: f64,
    /// The largest.
    pub(crate) max: f64,
    /// The p99 target.
    pub(crate) target_ms: f64,
    /// How long `publish` itself took (outbox insert, confirmed publish,
    /// `sent`): p50 and p99 in milliseconds — the send side's share.
    pub(crate) publish_p50: f64,
    /// p99 of `publish`.
    pub(crate) publish_p99: f64,
    /// Where the time went, per stage (see [`stages`]).
    pub(crate) stages: String,
    /// The check in words.
    pub(crate) check: String,
    /// Whether the check passed.
    pub(crate) ok: bool,
}

impl E2eResult {
    /// The result as a Markdown table.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| run | events | offered/s | achieved events/s | p50 | p90 | p99 | max | target | met | check |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|");
        let met = if self.p99 < self.target_ms && self.achieved >= 0.95 * self.offered as f64 {
            "yes"
        } else {
            "**no**"
        };
        let _ = writeln!(
            out,
            "| (c) e2e: `realtime` publish (persist) → no-op handler | {} | {} | **{}** | {:.1} ms | {:.1} ms | **{:.1} ms** | {:.1} ms | p99 < {:.0} ms at {} events/s | {met} | {} {} |",
            thousands(self.events),
            thousands(self.offered),
            thousands(self.achieved.round() as u64),
            self.p50,
            self.p90,
            self.p99,
            self.max,
            self.target_ms,
            thousands(self.offered),
            if self.ok { "ok:" } else { "FAILED:" },
            self.check
        );
        let _ = writeln!(
            out,
            "\n(c) of which `publish()` itself (outbox insert, confirmed publish, `sent`): p50 {:.1} ms, p99 {:.1} ms",
            self.publish_p50, self.publish_p99
        );
        let _ = writeln!(out, "\n{}", self.stages);
        out
    }
}

/// Runs `e2e` and prints its table.
pub(crate) async fn run(args: E2eArgs) -> Result<()> {
    let result = run_collect(&args).await?;
    println!();
    print!("{}", result.render());
    if !result.ok {
        return Err(fail("a correctness check failed (see the table)"));
    }
    Ok(())
}

/// Runs `e2e` and returns its result (printing only progress).
pub(crate) async fn run_collect(args: &E2eArgs) -> Result<E2eResult> {
    let p = &args.params;
    if p.rate == 0 || p.seconds == 0 || args.workers <= 0 {
        return Err(fail("--rate, --seconds and --workers must be positive"));
    }
    args.services.check_loopback()?;
    let db = ScratchDb::create(&args.services).await?;
    let mut broker = match Broker::connect(&args.services.amqp_url).await {
        Ok(b) => b,
        Err(e) => {
            let _ = db.drop_database().await;
            return Err(e);
        }
    };
    let outcome = measure(args, &db, &mut broker).await;
    let broker_cleanup = broker.cleanup().await;
    let db_cleanup = db.drop_database().await;
    let result = outcome?;
    broker_cleanup?;
    db_cleanup?;
    Ok(result)
}

async fn measure(args: &E2eArgs, db: &ScratchDb, broker: &mut Broker) -> Result<E2eResult> {
    let p = &args.params;
    let n = p.rate * p.seconds;
    let (value, body_len) = body_value(E2E, args.body_bytes)?;
    println!(
        "e2e: database {}, broker {}, {} events/s for {} s, body {body_len} B, workers {}",
        db.name(),
        redact(&args.services.amqp_url),
        thousands(p.rate),
        p.seconds,
        args.workers
    );
    let ey = EventyardRx::start(
        &args.services,
        db,
        &[ReceiveSpec {
            event_type: E2E,
            subscriber: SUB_E2E,
            mode: "realtime",
            workers: args.workers,
        }],
        Some(E2E),
        !args.no_inline,
    )
    .await?;
    let outcome = args
        .services
        .bounded("(c)", steady(args, &ey, broker, Arc::new(value), n))
        .await;
    ey.close().await;
    outcome
}

async fn steady(
    args: &E2eArgs,
    ey: &EventyardRx,
    broker: &mut Broker,
    value: Arc<Value>,
    n: u64,
) -> Result<E2eResult> {
    let p = &args.params;
    let (subscriber, _, queue) = ey.route(E2E)?;
    let queue = queue.to_owned();
    ey.declare(broker, E2E).await?;
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::with_capacity(
        usize::try_from(n).unwrap_or(0),
    )));
    let calls = Arc::new(AtomicU64::new(0));
    let called: Arc<Mutex<Vec<Called>>> = Arc::new(Mutex::new(Vec::with_capacity(
        usize::try_from(n).unwrap_or(0),
    )));
    let publish_times: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let mut handlers = HandlerRegistry::new();
    {
        let (latencies, calls) = (Arc::clone(&latencies), Arc::clone(&calls));
        let called = Arc::clone(&called);
        handlers.register_fn("noop", move |m: Message| {
            let now = Utc::now();
            let ms = (now - m.header.created_at)
                .to_std()
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
            called
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Called {
                    event_id: m.event_id.clone(),
                    published_at: m.header.created_at,
                    called_at: now,
                });
            latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(ms);
            calls.fetch_add(1, Ordering::Relaxed);
            async { HandlerOutcome::done("ok") }
        });
    }
    let handle = ey.receiver(subscriber, handlers).await?;
    let publisher = Publisher::new(
        Outbox::new(ey.db.clone()),
        ey.watcher.subscribe(),
        Arc::new(Registry::with_builtins()),
        Arc::clone(&ey.transport) as Arc<dyn Transport>,
        PublisherOptions::new("BENCH").coalesce_writers(args.params.coalesce_writers),
    );
    eprintln!(
        "(c) e2e: {} events at {}/s…",
        thousands(n),
        thousands(p.rate)
    );
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / p.rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    let started = Instant::now();
    let mut first_error = None;
    for _ in 0..n {
        tick.tick().await;
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let (publisher, value) = (publisher.clone(), Arc::clone(&value));
        let times = Arc::clone(&publish_times);
        tasks.spawn(async move {
            let t0 = Instant::now();
            let published = publisher.publish(E2E, value.as_ref()).await?;
            let took = t0.elapsed().as_secs_f64() * 1000.0;
            drop(permit);
            times
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(took);
            if published.outcome != Outcome::Sent {
                return Err(fail(format!(
                    "{}: {:?}, expected Sent",
                    published.event_id, published.outcome
                )));
            }
            Ok(())
        });
        while let Some(joined) = tasks.try_join_next() {
            if let Err(e) = joined.map_err(Into::into).and_then(|r| r) {
                first_error.get_or_insert(e);
            }
        }
        if first_error.is_some() {
            break;
        }
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined.map_err(Into::into).and_then(|r| r) {
            first_error.get_or_insert(e);
        }
    }
    let published_in = started.elapsed();
    if let Some(e) = first_error {
        handle.shutdown().await;
        return Err(e);
    }
    let waited = ey
        .wait_finished(&handle, subscriber, E2E, InboxStatus::Done, n)
        .await;
    handle.shutdown().await;
    let (finished_at, done) = waited?;
    let elapsed = finished_at.duration_since(started);
    let rows = ey.all_rows(subscriber, E2E).await?;
    let left = broker.message_count(&queue).await?;
    let handled = calls.load(Ordering::Relaxed);
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap_or_else(PoisonError::into_inner));
    let mut pubs =
        std::mem::take(&mut *publish_times.lock().unwrap_or_else(PoisonError::into_inner));
    let called = std::mem::take(&mut *called.lock().unwrap_or_else(PoisonError::into_inner));
    let stages = stages(&ey.db, &called).await?;
    let mut pct = |q: f64| percentile(&mut lat, q);
    Ok(E2eResult {
        events: n,
        offered: p.rate,
        achieved: n as f64 / elapsed.as_secs_f64().max(1e-9),
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: pct(1.0),
        target_ms: p.p99_target_ms,
        publish_p50: percentile(&mut pubs, 0.50),
        publish_p99: percentile(&mut pubs, 0.99),
        stages,
        ok: done == n && rows == n && handled == n && left == 0,
        check: format!(
            "{} rows `done` of {}, {} handler calls, {} left in queue; publishing took {:.2} s ({} events/s), last `done` at {:.2} s",
            thousands(done),
            thousands(rows),
            thousands(handled),
            thousands(left.into()),
            published_in.as_secs_f64(),
            thousands((n as f64 / published_in.as_secs_f64().max(1e-9)).round() as u64),
            elapsed.as_secs_f64()
        ),
    })
}

/// One handler call, for the stage breakdown.
struct Called {
    event_id: String,
    published_at: DateTime<Utc>,
    called_at: DateTime<Utc>,
}

/// Where the latency went, from the timestamps the database keeps:
/// `publish()` called (the envelope's `created_at`) → the outbox insert's
/// transaction began (`ey_outbox.created_at`: waiting for the coalescing
/// writer) → the inbox store's transaction began (`ey_inbox.received_at`:
/// the insert's commit, the confirmed publish's write, the broker, the
/// listener's linger and decoding) → the handler was called (the store's
/// commit, the ack, the dispatch and the group's claim check).
async fn stages(db: &Db, called: &[Called]) -> Result<String> {
    // Irrefutable when the bench is built alone (PostgreSQL only); not in
    // the workspace build, where other crates turn on the other backends.
    #[allow(irrefutable_let_patterns)]
    let Db::Postgres(pool) = db
    else {
        return Ok("(c) stages: PostgreSQL only".to_owned());
    };
    let outbox = times(pool, "SELECT event_id, created_at FROM ey_outbox").await?;
    let inbox = times(pool, "SELECT event_id, received_at FROM ey_inbox").await?;
    let ms = |a: DateTime<Utc>, b: DateTime<Utc>| {
        (b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0
    };
    let (mut queued, mut carried, mut dispatched) = (Vec::new(), Vec::new(), Vec::new());
    for c in called {
        let (Some(&inserted), Some(&stored)) = (outbox.get(&c.event_id), inbox.get(&c.event_id))
        else {
            continue;
        };
        queued.push(ms(c.published_at, inserted));
        carried.push(ms(inserted, stored));
        dispatched.push(ms(stored, c.called_at));
    }
    let mut line = String::from("(c) stages, p50 / p99:");
    for (name, values) in [
        ("publish() → outbox insert begins", &mut queued),
        (
            "→ inbox store begins (insert commit, publish, broker, linger)",
            &mut carried,
        ),
        (
            "→ handler called (store commit, ack, dispatch, claim)",
            &mut dispatched,
        ),
    ] {
        let _ = write!(
            line,
            " {name}: {:.1} / {:.1} ms;",
            percentile(values, 0.50),
            percentile(values, 0.99)
        );
    }
    Ok(line)
}

/// A time per event id, from a query selecting (event_id, timestamp).
async fn times(pool: &sqlx::PgPool, sql: &str) -> Result<HashMap<String, DateTime<Utc>>> {
    Ok(sqlx::query_as::<_, (String, DateTime<Utc>)>(sql)
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect())
}

/// The `q` quantile (nearest rank) of `values`, sorting them; 0 when empty.
fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let i = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
    values[i]
}

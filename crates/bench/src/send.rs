//! `send`: the send path, in one run against the local services.
//!
//! - (a) raw lapin: persistent, mandatory publishes with confirms pipelined
//!   (a bounded window per channel) to a classic durable queue — the
//!   broker's ceiling.
//! - (a') the naive outbox loop: per message an `INSERT` into `ey_outbox`,
//!   a publish waiting for its confirm, an `UPDATE … SET status = 'sent'`,
//!   with the same concurrency as (b).
//! - (b) eventyard `realtime` with `persist` on: [`Publisher::publish`] from
//!   concurrent tasks.
//! - (c) eventyard `batch`: the outbox is filled with pending rows
//!   (untimed), then [`BatchScheduler::send_now`] drains them.
//!
//! Every phase is checked afterwards: outbox rows `sent`, messages in the
//! queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Args;
use eventyard_converter::{Registry, SendContext};
use eventyard_core::config::{
    Catalog, ConfigStore, ConfigWatcher, RawSendRow, StaticCatalog, WatchOptions,
};
use eventyard_core::envelope::{Body, Codec, Envelope};
use eventyard_core::Compression;
use eventyard_sender::{
    BatchScheduler, ClaimRequest, Outbox, OutboxStatus, Outcome, Publisher, PublisherOptions,
};
use eventyard_transport::{AmqpOptions, AmqpTransport, OutgoingMessage, Transport};
use lapin::options::BasicPublishOptions;
use lapin::PublisherConfirm;
use lapin::{BasicProperties, Channel};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::common::{
    fail, ratios, render_tables, short, thousands, unique, BoxError, Broker, Measurement, Ratio,
    Result, ScratchDb, Services,
};

/// Options of `send`.
#[derive(Debug, Clone, Args)]
pub(crate) struct SendArgs {
    /// The services.
    #[command(flatten)]
    services: Services,

    /// Messages for (a) raw lapin, (b) realtime and (c) batch.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,

    /// Messages for (a') the naive loop (slow; its rate settles quickly).
    #[arg(long, default_value_t = 20_000)]
    naive_messages: u64,

    /// Concurrent publishing tasks for (a') and (b), and for filling (c).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,

    /// Size of the rendered event body in bytes (before the envelope).
    #[arg(long, default_value_t = 500)]
    body_bytes: usize,

    /// Compression in the config rows (`none`, `gzip`, `deflate`); the raw and
    /// naive runs publish an envelope packed the same way, so every run puts
    /// the same bytes on the wire.
    #[arg(long, default_value = "none")]
    compression: String,

    /// `batch_size` of the batch config row (rows per claim and publish_many).
    #[arg(long, default_value_t = 1000)]
    batch_size: i32,

    /// Publishing channels for (a); eventyard's transport uses 2 by default.
    #[arg(long, default_value_t = 2)]
    raw_channels: usize,

    /// Unconfirmed messages in flight per channel for (a); eventyard's
    /// transport allows 1000 by default.
    #[arg(long, default_value_t = 1000)]
    raw_in_flight: usize,

    /// Unconfirmed messages in flight per channel for eventyard's transport
    /// (`AmqpOptions::max_in_flight`), for (b) and (c).
    #[arg(long, default_value_t = 1000)]
    in_flight: usize,

    /// Also show where the time goes: (b) without the outbox (`persist`
    /// off), and (c)'s chunk loop rebuilt from the public outbox and
    /// transport API with each step timed.
    #[arg(long)]
    breakdown: bool,

    /// Phases to leave out, comma-separated (`a`, `a'`, `b`, `c`), e.g.
    /// `--skip "a',b"` to time the batch drain against the broker's ceiling
    /// only; ratios that need a skipped phase are not printed.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
}

/// The phases of `send`, by key.
const SEND_PHASES: [&str; 4] = ["a", "a'", "b", "c"];

impl SendArgs {
    fn runs(&self, phase: &str) -> bool {
        crate::common::runs(&self.skip, phase)
    }
}

const REALTIME: &str = "EYB.REALTIME";
const BATCH: &str = "EYB.BATCHED";
const NAIVE: &str = "EYB.NAIVE";
const NO_PERSIST: &str = "EYB.NOPERSIST";
const STEPS: &str = "EYB.STEPS";

/// Runs the send benchmark and prints its tables.
pub(crate) async fn run(args: SendArgs) -> Result<()> {
    if args.messages == 0 || args.naive_messages == 0 || args.concurrency == 0 {
        return Err(fail(
            "--messages, --naive-messages and --concurrency must be positive",
        ));
    }
    if args.raw_channels == 0 || args.raw_in_flight == 0 || args.batch_size <= 0 {
        return Err(fail(
            "--raw-channels, --raw-in-flight and --batch-size must be positive",
        ));
    }
    crate::common::check_skip(&args.skip, &SEND_PHASES)?;
    let compression: Compression = args
        .compression
        .parse()
        .map_err(|e| fail(format!("--compression: {e}")))?;
    args.services.check_loopback()?;

    let db = ScratchDb::create(&args.services).await?;
    let mut broker = match Broker::connect(&args.services.amqp_url).await {
        Ok(b) => b,
        Err(e) => {
            let _ = db.drop_database().await;
            return Err(e);
        }
    };
    let outcome = phases(&args, compression, &db, &mut broker).await;
    let broker_cleanup = broker.cleanup().await;
    let db_cleanup = db.drop_database().await;
    let (measurements, ratios) = outcome?;
    println!();
    print!("{}", render_tables(&measurements, &ratios));
    broker_cleanup?;
    db_cleanup?;
    if measurements.iter().any(|m| !m.ok) {
        return Err(fail("a correctness check failed (see the table)"));
    }
    Ok(())
}

async fn phases(
    args: &SendArgs,
    compression: Compression,
    db: &ScratchDb,
    broker: &mut Broker,
) -> Result<(Vec<Measurement>, Vec<Ratio>)> {
    let services = &args.services;
    let command: Vec<String> = std::env::args().skip(1).collect();
    let pg_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&db.pool)
        .await?;
    let (body_rt, body_len) = body_value(REALTIME, args.body_bytes)?;
    let (body_batch, _) = body_value(BATCH, args.body_bytes)?;
    let payload = Arc::new(sample_payload(NAIVE, args.body_bytes, compression)?);
    println!(
        "command: cargo run --release -p eventyard-bench -- {}",
        command.join(" ")
    );
    println!(
        "database {} (PostgreSQL {pg_version}), broker {}, body {body_len} B, packed envelope {} B ({compression}), concurrency {}",
        db.name(),
        redact(&services.amqp_url),
        payload.len(),
        args.concurrency
    );

    let mut measurements = Vec::new();

    if args.runs("a") {
        let heading = format!(
            "(a) raw lapin: {} messages on {} channel(s)…",
            args.messages, args.raw_channels
        );
        let phase = raw_lapin(args, broker, Arc::clone(&payload));
        measurements.push(services.measure("(a)", heading, phase).await?);
    }

    if args.runs("a'") {
        let heading = format!("(a') naive loop: {} messages…", args.naive_messages);
        let phase = naive_loop(args, db, broker, Arc::clone(&payload));
        measurements.push(services.measure("(a')", heading, phase).await?);
    }

    let ey = Eventyard::start(args, compression, db).await?;
    if args.runs("b") {
        let heading = format!("(b) eventyard realtime: {} messages…", args.messages);
        let phase = realtime(args, &ey, broker, Arc::new(body_rt));
        measurements.push(services.measure("(b)", heading, phase).await?);
    }

    if args.runs("c") {
        let heading = format!("(c) eventyard batch: {} messages…", args.messages);
        let phase = batch(args, &ey, broker, Arc::new(body_batch));
        measurements.push(services.measure("(c)", heading, phase).await?);
    }
    let breakdown = if args.breakdown {
        let (body_np, _) = body_value(NO_PERSIST, args.body_bytes)?;
        let (body_steps, _) = body_value(STEPS, args.body_bytes)?;
        eprintln!("breakdown: realtime without the outbox…");
        let b0 = services
            .bounded(
                "(b0)",
                realtime_without_outbox(args, &ey, broker, Arc::new(body_np)),
            )
            .await?;
        eprintln!("breakdown: the batch chunk loop, step by step…");
        let steps = services
            .bounded(
                "(c steps)",
                batch_steps(args, &ey, broker, Arc::new(body_steps)),
            )
            .await?;
        Some((b0, steps))
    } else {
        None
    };
    ey.stop().await;

    let ratios = ratios(
        &measurements,
        &[
            ("b/a'", "b", "a'", Some(1.0)),
            ("b/a", "b", "a", None),
            ("c/a", "c", "a", Some(0.8)),
        ],
    );
    if let Some((b0, steps)) = breakdown {
        println!();
        println!(
            "breakdown: (b0) realtime with persist off, {} tasks: {} events/s ({})",
            args.concurrency,
            thousands(b0.rate().round() as u64),
            b0.check
        );
        println!("breakdown: {steps}");
    }
    Ok((measurements, ratios))
}

/// The URL without its password.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// A JSON value the `xml` converter renders to about `bytes` bytes for `event_type`.
pub(crate) fn body_value(event_type: &str, bytes: usize) -> Result<(Value, usize)> {
    let registry = Registry::with_builtins();
    let converter = registry
        .send("xml")
        .ok_or_else(|| fail("the built-in `xml` converter is missing"))?;
    let ctx = SendContext::new(event_type, "xml");
    let value = |filler: &str| json!({"account": "1001", "amount": "12.50", "note": filler});
    let base = converter.to_body(&ctx, &value(""))?.content.len();
    let v = value(&"x".repeat(bytes.saturating_sub(base)));
    let len = converter.to_body(&ctx, &v)?.content.len();
    Ok((v, len))
}

/// An envelope packed like eventyard packs one (for the runs without eventyard).
fn sample_payload(event_type: &str, bytes: usize, compression: Compression) -> Result<Vec<u8>> {
    let (value, _) = body_value(event_type, bytes)?;
    let registry = Registry::with_builtins();
    let converter = registry
        .send("xml")
        .ok_or_else(|| fail("the built-in `xml` converter is missing"))?;
    let body = converter.to_body(&SendContext::new(event_type, "xml"), &value)?;
    let envelope = Envelope::builder(event_type, "BENCH")
        .compression(compression)
        .producer_id("BENCH")
        .build(Body::Xml(body.content));
    Ok(Codec::default().pack(&envelope)?)
}

fn properties(message_id: &str, event_type: &str) -> Result<BasicProperties> {
    Ok(BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(short(message_id)?)
        .with_type(short(event_type)?))
}

const MANDATORY: BasicPublishOptions = BasicPublishOptions {
    mandatory: true,
    immediate: false,
};

/// Joins every task, returning the sum of their counts or the first error.
async fn join_counts(mut tasks: JoinSet<Result<u64>>) -> Result<u64> {
    let mut total = 0;
    let mut first_error: Option<BoxError> = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
                tasks.abort_all();
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                first_error.get_or_insert(Box::new(e));
                tasks.abort_all();
            }
        }
    }
    first_error.map_or(Ok(total), Err)
}

/// Splits `total` into `parts` near-equal counts.
fn split(total: u64, parts: usize) -> Vec<u64> {
    let parts = parts as u64;
    (0..parts)
        .map(|i| total / parts + u64::from(i < total % parts))
        .collect()
}

/// (a) raw lapin, confirms pipelined in a bounded window per channel.
async fn raw_lapin(
    args: &SendArgs,
    broker: &mut Broker,
    payload: Arc<Vec<u8>>,
) -> Result<Measurement> {
    let (exchange, queue) = (unique("raw"), unique("raw.q"));
    broker.exchange_and_queue(&exchange, &queue).await?;
    let mut channels = Vec::with_capacity(args.raw_channels);
    for _ in 0..args.raw_channels {
        channels.push(broker.confirm_channel().await?);
    }
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut first = 0;
    for (channel, count) in channels
        .into_iter()
        .zip(split(args.messages, args.raw_channels))
    {
        let (exchange, payload) = (exchange.clone(), Arc::clone(&payload));
        let window = args.raw_in_flight;
        tasks.spawn(raw_channel(
            channel, exchange, first, count, payload, window,
        ));
        first += count;
    }
    let acked = join_counts(tasks).await?;
    let elapsed = started.elapsed();
    let in_queue = broker.message_count(&queue).await?;
    broker.delete_queue(&queue).await?;
    let n = args.messages;
    Ok(Measurement {
        key: "a",
        label: format!(
            "raw lapin, {} channel(s), ≤{} in flight each",
            args.raw_channels, args.raw_in_flight
        ),
        events: acked,
        elapsed,
        ok: acked == n && u64::from(in_queue) == n,
        check: format!(
            "{} confirmed, {} in queue",
            thousands(acked),
            thousands(in_queue.into())
        ),
    })
}

/// Publishes `count` messages on one channel; a second task awaits the
/// confirms in order, at most `window` behind.
async fn raw_channel(
    channel: Channel,
    exchange: String,
    first: u64,
    count: u64,
    payload: Arc<Vec<u8>>,
    window: usize,
) -> Result<u64> {
    let (tx, mut rx) = mpsc::channel::<PublisherConfirm>(window);
    let collector = tokio::spawn(async move {
        let (mut acked, mut bad) = (0u64, 0u64);
        while let Some(confirm) = rx.recv().await {
            match confirm.await {
                Ok(c) => {
                    let ack = c.is_ack();
                    if ack && c.take_message().is_none() {
                        acked += 1;
                    } else {
                        bad += 1;
                    }
                }
                Err(_) => bad += 1,
            }
        }
        (acked, bad)
    });
    let exchange = short(&exchange)?;
    let routing_key = short("EYB.RAW")?;
    for i in first..first + count {
        let props = properties(&format!("raw-{i}"), "EYB.RAW")?;
        let confirm = channel
            .basic_publish(
                exchange.clone(),
                routing_key.clone(),
                MANDATORY,
                &payload,
                props,
            )
            .await?;
        if tx.send(confirm).await.is_err() {
            break;
        }
    }
    drop(tx);
    let (acked, bad) = collector.await?;
    let _ = channel.close(200, short("done")?).await;
    if bad > 0 {
        return Err(fail(format!(
            "raw lapin: {bad} publishes were not confirmed"
        )));
    }
    Ok(acked)
}

/// (a') per message: insert the outbox row, publish and wait for the confirm,
/// mark the row sent.
async fn naive_loop(
    args: &SendArgs,
    db: &ScratchDb,
    broker: &mut Broker,
    payload: Arc<Vec<u8>>,
) -> Result<Measurement> {
    let (exchange, queue) = (unique("naive"), unique("naive.q"));
    broker.exchange_and_queue(&exchange, &queue).await?;
    let mut channels = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        channels.push(broker.confirm_channel().await?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for channel in channels {
        let worker = NaiveWorker {
            pool: db.pool.clone(),
            channel,
            next: Arc::clone(&next),
            total: args.naive_messages,
            exchange: exchange.clone(),
            payload: Arc::clone(&payload),
        };
        tasks.spawn(worker.run());
    }
    let done = join_counts(tasks).await?;
    let elapsed = started.elapsed();
    let sent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ey_outbox WHERE event_type = $1 AND status = 'sent'",
    )
    .bind(NAIVE)
    .fetch_one(&db.pool)
    .await?;
    let in_queue = broker.message_count(&queue).await?;
    broker.delete_queue(&queue).await?;
    let n = args.naive_messages;
    Ok(Measurement {
        key: "a'",
        label: format!(
            "naive loop: INSERT, publish + confirm, UPDATE sent; {} tasks",
            args.concurrency
        ),
        events: done,
        elapsed,
        ok: done == n && u64::try_from(sent).ok() == Some(n) && u64::from(in_queue) == n,
        check: format!(
            "{} rows sent, {} in queue",
            thousands(u64::try_from(sent).unwrap_or(0)),
            thousands(in_queue.into())
        ),
    })
}

/// One task of the naive loop.
struct NaiveWorker {
    pool: sqlx::PgPool,
    channel: Channel,
    next: Arc<AtomicU64>,
    total: u64,
    exchange: String,
    payload: Arc<Vec<u8>>,
}

impl NaiveWorker {
    async fn run(self) -> Result<u64> {
        let exchange = short(&self.exchange)?;
        let routing_key = short(NAIVE)?;
        let mut done = 0;
        while self.next.fetch_add(1, Ordering::Relaxed) < self.total {
            let event_id = uuid::Uuid::now_v7().to_string();
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO ey_outbox (event_id, event_type, payload) VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(&event_id)
            .bind(NAIVE)
            .bind(self.payload.as_slice())
            .fetch_one(&self.pool)
            .await?;
            let confirmation = self
                .channel
                .basic_publish(
                    exchange.clone(),
                    routing_key.clone(),
                    MANDATORY,
                    &self.payload,
                    properties(&event_id, NAIVE)?,
                )
                .await?
                .await?;
            let ack = confirmation.is_ack();
            if !ack || confirmation.take_message().is_some() {
                return Err(fail(format!("naive loop: {event_id} was not confirmed")));
            }
            sqlx::query(
                "UPDATE ey_outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1 \
                 WHERE id = $1",
            )
            .bind(id)
            .execute(&self.pool)
            .await?;
            done += 1;
        }
        let _ = self.channel.close(200, short("done")?).await;
        Ok(done)
    }
}

/// eventyard set up as an application would: config rows, a watcher, the
/// AMQP transport and a publisher.
struct Eventyard {
    publisher: Publisher,
    transport: Arc<AmqpTransport>,
    _watcher: ConfigWatcher,
    realtime_exchange: String,
    batch_exchange: String,
    no_persist_exchange: String,
    steps_exchange: String,
}

impl Eventyard {
    async fn start(args: &SendArgs, compression: Compression, db: &ScratchDb) -> Result<Self> {
        let realtime_exchange = unique("rt");
        let batch_exchange = unique("batch");
        let store = Arc::new(ConfigStore::new(db.db.clone()));
        let mut rt = RawSendRow::new(REALTIME);
        rt.send_mode = "realtime".into();
        rt.persist = true;
        rt.compression = compression.as_str().into();
        rt.exchange = realtime_exchange.clone();
        store.upsert_send(&rt).await?;
        let mut batch = RawSendRow::new(BATCH);
        batch.send_mode = "batch".into();
        batch.batch_cron = Some("@every 1h".into());
        batch.batch_size = args.batch_size;
        batch.compression = compression.as_str().into();
        batch.exchange = batch_exchange.clone();
        store.upsert_send(&batch).await?;
        let no_persist_exchange = unique("np");
        let mut np = rt.clone();
        np.event_type = NO_PERSIST.into();
        np.persist = false;
        np.exchange = no_persist_exchange.clone();
        store.upsert_send(&np).await?;
        let steps_exchange = unique("steps");
        let mut steps = batch.clone();
        steps.event_type = STEPS.into();
        steps.exchange = steps_exchange.clone();
        store.upsert_send(&steps).await?;

        let registry = Registry::with_builtins();
        let catalog: Arc<dyn Catalog> = Arc::new(
            StaticCatalog::new()
                .send_converters(registry.send_ids().map(str::to_string).collect::<Vec<_>>()),
        );
        let watcher = ConfigWatcher::start(
            store,
            catalog,
            WatchOptions::default()
                .poll_interval(Duration::from_secs(5))
                .listen(false),
        )
        .await?;
        let problems = &watcher.current().problems;
        if !problems.is_empty() {
            return Err(fail(format!("config rows rejected: {problems:?}")));
        }
        let transport = Arc::new(
            AmqpTransport::connect(
                &args.services.amqp_url,
                AmqpOptions::default().max_in_flight(args.in_flight),
            )
            .await?,
        );
        let publisher = Publisher::new(
            Outbox::new(db.db.clone()),
            watcher.subscribe(),
            Arc::new(registry),
            Arc::clone(&transport) as Arc<dyn Transport>,
            PublisherOptions::new("BENCH"),
        );
        Ok(Eventyard {
            publisher,
            transport,
            _watcher: watcher,
            realtime_exchange,
            batch_exchange,
            no_persist_exchange,
            steps_exchange,
        })
    }

    async fn stop(self) {
        let _ = self
            .transport
            .delete_exchange(&self.realtime_exchange)
            .await;
        for exchange in [
            &self.batch_exchange,
            &self.no_persist_exchange,
            &self.steps_exchange,
        ] {
            let _ = self.transport.delete_exchange(exchange).await;
        }
        let _ = self.transport.close().await;
    }
}

/// Publishes events of `event_type` from `concurrency` tasks until `total`
/// are done; every outcome must be `expected`.
async fn publish_all(
    publisher: &Publisher,
    event_type: &'static str,
    value: Arc<Value>,
    total: u64,
    concurrency: usize,
    expected: Outcome,
) -> Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let (publisher, value, next) = (publisher.clone(), Arc::clone(&value), Arc::clone(&next));
        let expected = expected.clone();
        tasks.spawn(async move {
            let mut done = 0;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let published = publisher.publish(event_type, value.as_ref()).await?;
                if published.outcome != expected {
                    return Err(fail(format!(
                        "{}: {:?}, expected {expected:?}",
                        published.event_id, published.outcome
                    )));
                }
                done += 1;
            }
            Ok(done)
        });
    }
    join_counts(tasks).await
}

async fn count(publisher: &Publisher, status: OutboxStatus, event_type: &str) -> Result<u64> {
    let n = publisher.outbox().count(status, Some(event_type)).await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// (b) `realtime` with `persist`: publish from concurrent tasks.
async fn realtime(
    args: &SendArgs,
    ey: &Eventyard,
    broker: &mut Broker,
    value: Arc<Value>,
) -> Result<Measurement> {
    let queue = unique("rt.q");
    broker
        .exchange_and_queue(&ey.realtime_exchange, &queue)
        .await?;
    ey.transport.declare_exchange(&ey.realtime_exchange).await?;
    let n = args.messages;
    let started = Instant::now();
    let done = publish_all(
        &ey.publisher,
        REALTIME,
        value,
        n,
        args.concurrency,
        Outcome::Sent,
    )
    .await?;
    let elapsed = started.elapsed();
    let sent = count(&ey.publisher, OutboxStatus::Sent, REALTIME).await?;
    let in_queue = broker.message_count(&queue).await?;
    broker.delete_queue(&queue).await?;
    Ok(Measurement {
        key: "b",
        label: format!(
            "eventyard `realtime`, persist on, {} tasks",
            args.concurrency
        ),
        events: done,
        elapsed,
        ok: done == n && sent == n && u64::from(in_queue) == n,
        check: format!(
            "{} rows sent, {} in queue",
            thousands(sent),
            thousands(in_queue.into())
        ),
    })
}

/// Breakdown: (b) with `persist` off — the transport alone at the same concurrency.
async fn realtime_without_outbox(
    args: &SendArgs,
    ey: &Eventyard,
    broker: &mut Broker,
    value: Arc<Value>,
) -> Result<Measurement> {
    let queue = unique("np.q");
    broker
        .exchange_and_queue(&ey.no_persist_exchange, &queue)
        .await?;
    ey.transport
        .declare_exchange(&ey.no_persist_exchange)
        .await?;
    let n = args.messages;
    let started = Instant::now();
    let done = publish_all(
        &ey.publisher,
        NO_PERSIST,
        value,
        n,
        args.concurrency,
        Outcome::Sent,
    )
    .await?;
    let elapsed = started.elapsed();
    let in_queue = broker.message_count(&queue).await?;
    broker.delete_queue(&queue).await?;
    Ok(Measurement {
        key: "b0",
        label: "eventyard `realtime`, persist off".into(),
        events: done,
        elapsed,
        ok: done == n && u64::from(in_queue) == n,
        check: format!("{} in queue", thousands(in_queue.into())),
    })
}

/// Breakdown: `send_now`'s chunk loop (claim, publish_many, mark_sent) rebuilt
/// from the public API, each step timed.
async fn batch_steps(
    args: &SendArgs,
    ey: &Eventyard,
    broker: &mut Broker,
    value: Arc<Value>,
) -> Result<String> {
    let queue = unique("steps.q");
    broker
        .exchange_and_queue(&ey.steps_exchange, &queue)
        .await?;
    ey.transport.declare_exchange(&ey.steps_exchange).await?;
    let n = args.messages;
    publish_all(
        &ey.publisher,
        STEPS,
        value,
        n,
        args.concurrency,
        Outcome::Queued,
    )
    .await?;
    let outbox = ey.publisher.outbox();
    let (mut claim, mut publish, mut mark) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut chunks, mut sent_total) = (0u64, 0u64);
    let started = Instant::now();
    loop {
        let t0 = Instant::now();
        let rows = outbox
            .claim(&ClaimRequest {
                owner: "eventyard-bench",
                lease: Duration::from_secs(60),
                event_type: Some(STEPS),
                event_types: &[],
                created_before: None,
                limit: u32::try_from(args.batch_size).unwrap_or(1000),
                now: Utc::now(),
            })
            .await?;
        claim += t0.elapsed();
        if rows.is_empty() {
            break;
        }
        chunks += 1;
        let messages = rows
            .iter()
            .map(|r| {
                OutgoingMessage::new(
                    ey.steps_exchange.as_str(),
                    STEPS,
                    r.event_id.as_str(),
                    STEPS,
                    r.payload.clone(),
                )
            })
            .collect();
        let t1 = Instant::now();
        let results = ey.transport.publish_many(messages).await;
        publish += t1.elapsed();
        let mut sent = Vec::with_capacity(rows.len());
        for (row, result) in rows.iter().zip(results) {
            result?;
            sent.push((row.event_id.clone(), 1));
        }
        let t2 = Instant::now();
        outbox.mark_sent(&sent, Utc::now()).await?;
        mark += t2.elapsed();
        sent_total += sent.len() as u64;
    }
    let total = started.elapsed();
    let in_queue = broker.message_count(&queue).await?;
    broker.delete_queue(&queue).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0 / chunks.max(1) as f64;
    Ok(format!(
        "(c) step by step, {chunks} chunks of ≤{}: {} events/s overall; per chunk claim {:.1} ms, publish_many {:.1} ms ({} events/s while publishing), mark_sent {:.1} ms; {} sent, {} in queue",
        args.batch_size,
        thousands((sent_total as f64 / total.as_secs_f64().max(1e-9)).round() as u64),
        ms(claim),
        ms(publish),
        thousands((sent_total as f64 / publish.as_secs_f64().max(1e-9)).round() as u64),
        ms(mark),
        thousands(sent_total),
        thousands(in_queue.into()),
    ))
}

/// (c) `batch`: fill the outbox (untimed), then time `send_now`.
async fn batch(
    args: &SendArgs,
    ey: &Eventyard,
    broker: &mut Broker,
    value: Arc<Value>,
) -> Result<Measurement> {
    let queue = unique("batch.q");
    broker
        .exchange_and_queue(&ey.batch_exchange, &queue)
        .await?;
    ey.transport.declare_exchange(&ey.batch_exchange).await?;
    let n = args.messages;
    let filling = Instant::now();
    publish_all(
        &ey.publisher,
        BATCH,
        value,
        n,
        args.concurrency,
        Outcome::Queued,
    )
    .await?;
    let fill = filling.elapsed();
    let pending = count(&ey.publisher, OutboxStatus::Pending, BATCH).await?;
    eprintln!(
        "    filled {} pending rows in {:.2} s ({:.0}/s, untimed)",
        thousands(pending),
        fill.as_secs_f64(),
        pending as f64 / fill.as_secs_f64().max(1e-9)
    );
    if pending != n {
        return Err(fail(format!("expected {n} pending rows, found {pending}")));
    }
    let scheduler = BatchScheduler::new(ey.publisher.clone());
    let started = Instant::now();
    let report = scheduler.send_now(BATCH).await?;
    let elapsed = started.elapsed();
    let sent = count(&ey.publisher, OutboxStatus::Sent, BATCH).await?;
    let in_queue = broker.message_count(&queue).await?;
    broker.delete_queue(&queue).await?;
    Ok(Measurement {
        key: "c",
        label: format!("eventyard `batch` send_now, batch_size {}", args.batch_size),
        events: report.sent,
        elapsed,
        ok: report.sent == n && sent == n && u64::from(in_queue) == n,
        check: format!(
            "{} rows sent, {} in queue",
            thousands(sent),
            thousands(in_queue.into())
        ),
    })
}

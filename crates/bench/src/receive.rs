//! `receive`: the receive path, in one run against the local services.
//!
//! Every phase gets its own durable classic queue, pre-filled (untimed) with
//! N persistent messages, each a real eventyard envelope (`xml` body of
//! about 500 bytes, uncompressed) with its own event id; then the timed
//! consumer drains it:
//!
//! - (a0) raw lapin: one consumer, prefetch 1,000 (as eventyard's receiver),
//!   acks with `multiple` every
//!   `--raw-ack-every` deliveries and at the last one — the broker's ceiling.
//! - (a) naive store-then-ack: `--naive-consumers` lapin consumers, each
//!   doing one autocommit `INSERT` per message into a plain table, then
//!   acking that message alone.
//! - (b) eventyard: a [`Receiver`] with a no-op `realtime` handler; timed
//!   until all N inbox rows are `done`.
//! - (b') eventyard with `process_mode = 'none'`: store and ack only, timed
//!   until all N rows are `stored`.
//!
//! Every phase is checked afterwards: N rows in their final status, each
//! handled once, and the queue empty after the consumer is gone (an unacked
//! message would be back in it).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Args;
use eventyard_converter::{Registry, SendContext};
use eventyard_core::config::{
    Catalog, ConfigStore, ConfigWatcher, RawReceiveRow, RawSendRow, StaticCatalog, WatchOptions,
};
use eventyard_core::envelope::{Body, Codec, Envelope};
use eventyard_core::Compression;
use eventyard_receiver::{
    HandlerOutcome, HandlerRegistry, Inbox, InboxStatus, Message, Receiver, ReceiverHandle,
    ReceiverOptions, TypeStats,
};
use eventyard_transport::{
    dead_letter_exchange, dead_letter_queue, AmqpOptions, AmqpTransport, Subscription, Transport,
};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, PublisherConfirm};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::common::{
    fail, ratios, render_tables, short, thousands, unique, Broker, Measurement, Result, ScratchDb,
    Services,
};
use crate::send::{body_value, redact};

/// Options of `receive`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ReceiveArgs {
    /// The services.
    #[command(flatten)]
    pub(crate) services: Services,

    /// Messages pre-filled into each phase's queue.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) messages: u64,

    /// Size of the event body in bytes (before the envelope).
    #[arg(long, default_value_t = 500)]
    pub(crate) body_bytes: usize,

    /// Prefetch of the lapin consumers in (a0) and (a) (eventyard's
    /// receiver uses its own default, also 1,000).
    #[arg(long, default_value_t = 1000)]
    pub(crate) prefetch: u16,

    /// (a0) acks with `multiple` every this many deliveries (1: one ack per
    /// message).
    #[arg(long, default_value_t = 50)]
    pub(crate) raw_ack_every: u64,

    /// Consumers (channels) of (a), each storing and acking one message at a time.
    #[arg(long, default_value_t = 16)]
    pub(crate) naive_consumers: usize,

    /// `workers` of the eventyard receive rows (handler pool size).
    #[arg(long, default_value_t = 8)]
    pub(crate) workers: i32,

    /// Also show where (b)'s time goes: after (b'), its `stored` rows are
    /// marked `done` again from `--workers` tasks, once with the realtime
    /// pool's per-event transaction (BEGIN, claim check, `done`, COMMIT) and
    /// once with one transaction per 256 rows.
    #[arg(long)]
    pub(crate) breakdown: bool,

    /// Phases to leave out, comma-separated (`a0`, `a`, `b`, `b'`), e.g.
    /// `--skip a` to leave out the slow naive loop; ratios that need a
    /// skipped phase are not printed.
    #[arg(long, value_delimiter = ',')]
    pub(crate) skip: Vec<String>,
    /// eventyard's receiver never calls handlers in the transaction that
    /// stores a micro-batch: every event is stored, acked and handed to
    /// the pool (`ReceiverOptions::inline_handling(false)`), for comparing.
    #[arg(long)]
    pub(crate) no_inline: bool,
}

/// The phases of `receive`, by key.
const RECEIVE_PHASES: [&str; 4] = ["a0", "a", "b", "b'"];

impl ReceiveArgs {
    fn runs(&self, phase: &str) -> bool {
        crate::common::runs(&self.skip, phase)
    }
}

/// The event type of (b).
const RECV: &str = "EYB.RECV";
/// The event type of (b').
const STORE: &str = "EYB.STORE";
/// The event type of (a0) and (a) (their envelopes are never unpacked).
const RAW: &str = "EYB.RAWRECV";
/// Subscriber of (b).
const SUB_RECV: &str = "BENCH_RECV";
/// Subscriber of (b').
const SUB_STORE: &str = "BENCH_STORE";
/// Interval of the inbox polls that confirm (b), (b') and (c) in the
/// database once the receiver's counters say they are finished.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Interval of the polls of the receiver's in-memory counters that time
/// (b), (b') and (c). Counting the inbox's rows in the database instead,
/// 20 times a second over a table of up to 100,000 rows, took a sizeable
/// share of PostgreSQL's CPU away from the receiver being measured.
pub(crate) const STATS_POLL: Duration = Duration::from_millis(1);

/// Runs the receive benchmark and prints its table.
pub(crate) async fn run(args: ReceiveArgs) -> Result<()> {
    let measurements = run_collect(&args).await?;
    if measurements.iter().any(|m| !m.ok) {
        return Err(fail("a correctness check failed (see the table)"));
    }
    Ok(())
}

/// Runs the receive benchmark, prints its table and returns the measurements.
pub(crate) async fn run_collect(args: &ReceiveArgs) -> Result<Vec<Measurement>> {
    if args.messages == 0
        || args.raw_ack_every == 0
        || args.naive_consumers == 0
        || args.workers <= 0
        || args.prefetch == 0
    {
        return Err(fail(
            "--messages, --raw-ack-every, --naive-consumers, --workers and --prefetch must be positive",
        ));
    }
    crate::common::check_skip(&args.skip, &RECEIVE_PHASES)?;
    args.services.check_loopback()?;
    let db = ScratchDb::create(&args.services).await?;
    let mut broker = match Broker::connect(&args.services.amqp_url).await {
        Ok(b) => b,
        Err(e) => {
            let _ = db.drop_database().await;
            return Err(e);
        }
    };
    let outcome = phases(args, &db, &mut broker).await;
    let broker_cleanup = broker.cleanup().await;
    let db_cleanup = db.drop_database().await;
    let measurements = outcome?;
    let ratios = ratios(
        &measurements,
        &[
            ("b/a", "b", "a", Some(1.0)),
            ("b/a0", "b", "a0", Some(0.5)),
            ("b'/a", "b'", "a", None),
            ("b'/a0", "b'", "a0", None),
        ],
    );
    println!();
    print!("{}", render_tables(&measurements, &ratios));
    broker_cleanup?;
    db_cleanup?;
    Ok(measurements)
}

async fn phases(
    args: &ReceiveArgs,
    db: &ScratchDb,
    broker: &mut Broker,
) -> Result<Vec<Measurement>> {
    let services = &args.services;
    let n = args.messages;
    let pg_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&db.pool)
        .await?;
    let sample = Filler::new(RAW, args.body_bytes)?;
    let envelope_len = sample.envelope()?.1.len();
    println!(
        "receive: database {} (PostgreSQL {pg_version}), broker {}, {} messages per phase, body {} B, envelope {envelope_len} B (none), prefetch {}, workers {}",
        db.name(),
        redact(&services.amqp_url),
        thousands(n),
        sample.body.len(),
        args.prefetch,
        args.workers
    );
    let mut measurements = Vec::new();

    if args.runs("a0") {
        let heading = format!("(a0) raw lapin consumer, ack only: {n} messages…");
        let phase = raw_consumer(args, broker, &sample);
        measurements.push(services.measure("(a0)", heading, phase).await?);
    }
    if args.runs("a") {
        let heading = format!(
            "(a) naive store-then-ack, {} consumers: {n} messages…",
            args.naive_consumers
        );
        let phase = naive_consumers(args, db, broker, &sample);
        measurements.push(services.measure("(a)", heading, phase).await?);
    }

    let ey = EventyardRx::start(
        &args.services,
        db,
        &[
            ReceiveSpec {
                event_type: RECV,
                subscriber: SUB_RECV,
                mode: "realtime",
                workers: args.workers,
            },
            ReceiveSpec {
                event_type: STORE,
                subscriber: SUB_STORE,
                mode: "none",
                workers: args.workers,
            },
        ],
        None,
        !args.no_inline,
    )
    .await?;
    let result = async {
        if args.runs("b") {
            let heading = format!("(b) eventyard, no-op realtime handler: {n} messages…");
            let phase = eventyard_phase(args, &ey, broker, RECV);
            measurements.push(services.measure("(b)", heading, phase).await?);
        }
        if args.runs("b'") {
            let heading = format!("(b') eventyard, process_mode none: {n} messages…");
            let phase = eventyard_phase(args, &ey, broker, STORE);
            measurements.push(services.measure("(b')", heading, phase).await?);
        }
        if args.breakdown {
            eprintln!("breakdown: the handler step's database work alone…");
            let steps = services
                .bounded("(breakdown)", done_marking(args, db))
                .await?;
            measurements.extend(steps);
        }
        Ok::<_, crate::common::BoxError>(())
    }
    .await;
    ey.close().await;
    result?;
    Ok(measurements)
}

/// Makes envelopes of one event type with a body of about the asked size.
pub(crate) struct Filler {
    event_type: String,
    body: String,
    codec: Codec,
}

impl Filler {
    /// An `xml` body rendered by the built-in converter, like eventyard sends.
    pub(crate) fn new(event_type: &str, bytes: usize) -> Result<Filler> {
        let (value, _) = body_value(event_type, bytes)?;
        let registry = Registry::with_builtins();
        let converter = registry
            .send("xml")
            .ok_or_else(|| fail("the built-in `xml` converter is missing"))?;
        let body = converter
            .to_body(&SendContext::new(event_type, "xml"), &value)?
            .content;
        Ok(Filler {
            event_type: event_type.to_owned(),
            body,
            codec: Codec::default(),
        })
    }

    /// A packed envelope with a fresh event id: `(event id, bytes)`.
    pub(crate) fn envelope(&self) -> Result<(String, Vec<u8>)> {
        let id = uuid::Uuid::now_v7();
        let envelope = Envelope::builder(self.event_type.as_str(), "BENCH")
            .event_id(id)
            .compression(Compression::None)
            .producer_id("BENCH")
            .build(Body::Xml(self.body.clone()));
        Ok((id.hyphenated().to_string(), self.codec.pack(&envelope)?))
    }
}

/// Publishes `n` persistent envelopes to `exchange` with routing key
/// `routing_key`, confirms pipelined in a window of 1,000 (untimed filling).
async fn prefill(
    broker: &Broker,
    exchange: &str,
    routing_key: &str,
    filler: &Filler,
    n: u64,
) -> Result<()> {
    let channel = broker.confirm_channel().await?;
    let (exchange_s, key) = (short(exchange)?, short(routing_key)?);
    let mut window: VecDeque<PublisherConfirm> = VecDeque::with_capacity(1000);
    let started = Instant::now();
    let mut bad = 0u64;
    for _ in 0..n {
        let (id, payload) = filler.envelope()?;
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(short(&id)?)
            .with_type(short(&filler.event_type)?);
        let confirm = channel
            .basic_publish(
                exchange_s.clone(),
                key.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &payload,
                props,
            )
            .await?;
        window.push_back(confirm);
        if window.len() >= 1000 {
            if let Some(c) = window.pop_front() {
                bad += u64::from(!confirmed(c).await);
            }
        }
    }
    while let Some(c) = window.pop_front() {
        bad += u64::from(!confirmed(c).await);
    }
    let _ = channel.close(200, short("done")?).await;
    if bad > 0 {
        return Err(fail(format!(
            "filling {exchange}: {bad} publishes not confirmed"
        )));
    }
    eprintln!(
        "    filled {} messages in {:.2} s (untimed)",
        thousands(n),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn confirmed(confirm: PublisherConfirm) -> bool {
    match confirm.await {
        Ok(c) => c.is_ack() && c.take_message().is_none(),
        Err(_) => false,
    }
}

/// A consuming lapin channel on `queue` with `prefetch`.
async fn consume(
    broker: &Broker,
    queue: &str,
    prefetch: u16,
) -> Result<(Channel, lapin::Consumer)> {
    let channel = broker.channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            short(queue)?,
            short("")?,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

/// (a0) one lapin consumer that only acks.
async fn raw_consumer(
    args: &ReceiveArgs,
    broker: &mut Broker,
    filler: &Filler,
) -> Result<Measurement> {
    let (exchange, queue) = (unique("a0"), unique("a0.q"));
    broker.exchange_and_queue(&exchange, &queue).await?;
    let n = args.messages;
    prefill(broker, &exchange, RAW, filler, n).await?;
    let started = Instant::now();
    let (channel, mut consumer) = consume(broker, &queue, args.prefetch).await?;
    let mut received = 0u64;
    let mut bytes = 0u64;
    while received < n {
        let Some(delivery) = consumer.next().await else {
            return Err(fail("(a0): the consumer ended early"));
        };
        let delivery = delivery?;
        received += 1;
        bytes += delivery.data.len() as u64;
        if received.is_multiple_of(args.raw_ack_every) || received == n {
            delivery
                .acker
                .ack(BasicAckOptions {
                    multiple: args.raw_ack_every > 1,
                })
                .await?;
        }
    }
    let elapsed = started.elapsed();
    let _ = channel.close(200, short("done")?).await;
    let left = broker.message_count(&queue).await?;
    broker.delete_queue(&queue).await?;
    Ok(Measurement {
        key: "a0",
        label: format!(
            "raw lapin consumer, ack only (prefetch {}, {})",
            args.prefetch,
            if args.raw_ack_every > 1 {
                format!("ack `multiple` every {}", args.raw_ack_every)
            } else {
                "one ack per message".to_owned()
            }
        ),
        events: received,
        elapsed,
        ok: received == n && left == 0,
        check: format!(
            "{} received ({} MB), {} left in queue",
            thousands(received),
            bytes / 1_000_000,
            thousands(left.into())
        ),
    })
}

/// (a) naive store-then-ack: per message one autocommit `INSERT`, then its ack.
async fn naive_consumers(
    args: &ReceiveArgs,
    db: &ScratchDb,
    broker: &mut Broker,
    filler: &Filler,
) -> Result<Measurement> {
    sqlx::query(
        "CREATE TABLE eyb_naive_inbox (id BIGSERIAL PRIMARY KEY, event_id VARCHAR(128) NOT NULL UNIQUE, \
         event_type VARCHAR(128) NOT NULL, payload BYTEA NOT NULL, received_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&db.pool)
    .await?;
    let (exchange, queue) = (unique("a"), unique("a.q"));
    broker.exchange_and_queue(&exchange, &queue).await?;
    let n = args.messages;
    prefill(broker, &exchange, RAW, filler, n).await?;
    let done = Arc::new(AtomicU64::new(0));
    let finished_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let started = Instant::now();
    let mut channels = Vec::with_capacity(args.naive_consumers);
    let mut tasks = JoinSet::new();
    for _ in 0..args.naive_consumers {
        let (channel, consumer) = consume(broker, &queue, args.prefetch).await?;
        channels.push(channel);
        let worker = NaiveConsumer {
            pool: db.pool.clone(),
            consumer,
            done: Arc::clone(&done),
            total: n,
            finished_at: Arc::clone(&finished_at),
            stop_tx: Arc::clone(&stop_tx),
            stop: stop_rx.clone(),
        };
        tasks.spawn(worker.run());
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let outcome = match joined {
            Ok(r) => r,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = outcome {
            let _ = stop_tx.send(true);
            first_error.get_or_insert(e);
        }
    }
    for channel in channels {
        let _ = channel.close(200, short("done")?).await;
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let finished =
        (*finished_at.lock().unwrap_or_else(PoisonError::into_inner)).unwrap_or_else(Instant::now);
    let elapsed = finished.duration_since(started);
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM eyb_naive_inbox")
        .fetch_one(&db.pool)
        .await?;
    let left = broker.message_count(&queue).await?;
    broker.delete_queue(&queue).await?;
    let handled = done.load(Ordering::SeqCst);
    Ok(Measurement {
        key: "a",
        label: format!(
            "naive store-then-ack: {} lapin consumers, autocommit INSERT then ack, per message",
            args.naive_consumers
        ),
        events: handled,
        elapsed,
        ok: handled == n && u64::try_from(stored).ok() == Some(n) && left == 0,
        check: format!(
            "{} rows stored, {} left in queue",
            thousands(u64::try_from(stored).unwrap_or(0)),
            thousands(left.into())
        ),
    })
}

/// One consumer of (a).
struct NaiveConsumer {
    pool: sqlx::PgPool,
    consumer: lapin::Consumer,
    done: Arc<AtomicU64>,
    total: u64,
    finished_at: Arc<Mutex<Option<Instant>>>,
    stop_tx: Arc<watch::Sender<bool>>,
    stop: watch::Receiver<bool>,
}

impl NaiveConsumer {
    async fn run(mut self) -> Result<()> {
        loop {
            if *self.stop.borrow() {
                return Ok(());
            }
            let next = tokio::select! {
                d = self.consumer.next() => d,
                _ = self.stop.changed() => return Ok(()),
            };
            let Some(delivery) = next else {
                return Ok(());
            };
            let delivery = delivery?;
            let event_id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.as_str().to_owned())
                .ok_or_else(|| fail("(a): a message without a message id"))?;
            sqlx::query(
                "INSERT INTO eyb_naive_inbox (event_id, event_type, payload) VALUES ($1, $2, $3) \
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(&event_id)
            .bind(RAW)
            .bind(delivery.data.as_slice())
            .execute(&self.pool)
            .await?;
            delivery
                .acker
                .ack(BasicAckOptions { multiple: false })
                .await?;
            if self.done.fetch_add(1, Ordering::SeqCst) + 1 == self.total {
                *self
                    .finished_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                let _ = self.stop_tx.send(true);
                return Ok(());
            }
        }
    }
}

/// One receive row of the eventyard setup.
pub(crate) struct ReceiveSpec {
    /// Its event type (also the routing key).
    pub(crate) event_type: &'static str,
    /// Its subscriber (one receiver per subscriber).
    pub(crate) subscriber: &'static str,
    /// `process_mode`.
    pub(crate) mode: &'static str,
    /// `workers`.
    pub(crate) workers: i32,
}

/// eventyard set up as an application would: config rows (a send row and a
/// receive row per event type, each on its own exchange and queue), a
/// watcher and the AMQP transport.
pub(crate) struct EventyardRx {
    /// The config watcher.
    pub(crate) watcher: ConfigWatcher,
    /// The transport shared by receivers (and the publisher of `e2e`).
    pub(crate) transport: Arc<AmqpTransport>,
    /// The database.
    pub(crate) db: eventyard_core::db::Db,
    /// Per event type: (subscriber, exchange, queue).
    pub(crate) routes: Vec<(&'static str, &'static str, String, String)>,
    /// Whether receivers may call quick handlers as they store.
    pub(crate) inline: bool,
}

impl EventyardRx {
    /// Writes the config rows and starts the watcher and the transport.
    /// `send` names an event type whose send row is `realtime` with `persist`
    /// (for `e2e`); `inline`: whether its receivers may handle a backlog in
    /// the storing transaction.
    pub(crate) async fn start(
        services: &Services,
        db: &ScratchDb,
        specs: &[ReceiveSpec],
        send: Option<&str>,
        inline: bool,
    ) -> Result<EventyardRx> {
        let store = Arc::new(ConfigStore::new(db.db.clone()));
        let mut routes = Vec::new();
        for spec in specs {
            let exchange = unique(&format!("{}.x", spec.event_type.to_lowercase()));
            let queue = unique(&format!("{}.q", spec.event_type.to_lowercase()));
            let mut s = RawSendRow::new(spec.event_type);
            s.exchange = exchange.clone();
            s.send_mode = "realtime".into();
            s.persist = send == Some(spec.event_type);
            s.compression = "none".into();
            store.upsert_send(&s).await?;
            let mut r = RawReceiveRow::new(spec.event_type, spec.subscriber);
            r.exchange = exchange.clone();
            r.queue = Some(queue.clone());
            r.process_mode = spec.mode.into();
            r.handler_id = (spec.mode != "none").then(|| "noop".to_owned());
            r.workers = spec.workers;
            store.upsert_receive(&r).await?;
            routes.push((spec.event_type, spec.subscriber, exchange, queue));
        }
        let registry = Registry::with_builtins();
        let catalog: Arc<dyn Catalog> = Arc::new(
            StaticCatalog::new()
                .send_converters(registry.send_ids().map(str::to_string).collect::<Vec<_>>())
                .receive_converters(
                    registry
                        .receive_ids()
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                )
                .handlers(["noop", "log", "sql"]),
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
        let transport =
            Arc::new(AmqpTransport::connect(&services.amqp_url, AmqpOptions::default()).await?);
        Ok(EventyardRx {
            watcher,
            transport,
            db: db.db.clone(),
            routes,
            inline,
        })
    }

    /// `(subscriber, exchange, queue)` of `event_type`.
    pub(crate) fn route(&self, event_type: &str) -> Result<(&'static str, &str, &str)> {
        self.routes
            .iter()
            .find(|r| r.0 == event_type)
            .map(|r| (r.1, r.2.as_str(), r.3.as_str()))
            .ok_or_else(|| fail(format!("no route for {event_type}")))
    }

    /// Declares `event_type`'s queue exactly as the receiver will (with its
    /// dead-letter queue) by subscribing once and cancelling at once, and
    /// hands the objects to `broker`'s cleanup.
    pub(crate) async fn declare(&self, broker: &mut Broker, event_type: &str) -> Result<()> {
        let (_, exchange, queue) = self.route(event_type)?;
        self.transport.declare_exchange(exchange).await?;
        let mut consumer = self
            .transport
            .subscribe(
                Subscription::new(queue, exchange)
                    .bind(event_type)
                    .prefetch(1)
                    .dead_letter(true),
            )
            .await?;
        consumer.cancel().await?;
        broker.adopt(
            &[exchange.to_owned(), dead_letter_exchange(exchange)],
            &[queue.to_owned(), dead_letter_queue(queue)],
        );
        Ok(())
    }

    /// Starts a receiver for `subscriber` with `handlers`.
    pub(crate) async fn receiver(
        &self,
        subscriber: &str,
        handlers: HandlerRegistry,
    ) -> Result<ReceiverHandle> {
        let handle = Receiver::new(
            self.db.clone(),
            Arc::clone(&self.transport) as Arc<dyn Transport>,
            self.watcher.subscribe(),
            Arc::new(Registry::with_builtins()),
            Arc::new(handlers),
            ReceiverOptions::new(subscriber)
                .shutdown_grace(Duration::from_secs(10))
                .inline_handling(self.inline),
        )
        .start()
        .await?;
        Ok(handle)
    }

    /// Waits until the receiver's counters say `n` events of `event_type`
    /// reached `status` (`done`: [`TypeStats::processed`], `stored`:
    /// [`TypeStats::stored_only`], both counted after their commit),
    /// polling every [`STATS_POLL`], then confirms it in the database with
    /// [`wait_rows`](Self::wait_rows). Returns when the counters got there
    /// and the database's count.
    pub(crate) async fn wait_finished(
        &self,
        handle: &ReceiverHandle,
        subscriber: &str,
        event_type: &str,
        status: InboxStatus,
        n: u64,
    ) -> Result<(Instant, u64)> {
        let stats = handle.stats();
        let counted = |s: &TypeStats| match status {
            InboxStatus::Stored => s.stored_only,
            _ => s.processed,
        };
        while counted(&stats.get(event_type)) < n {
            tokio::time::sleep(STATS_POLL).await;
        }
        let finished = Instant::now();
        let rows = self.wait_rows(subscriber, event_type, status, n).await?;
        Ok((finished, rows))
    }

    /// Waits until `n` rows of `event_type` have `status`, polling every
    /// [`POLL`]; returns the count seen last.
    pub(crate) async fn wait_rows(
        &self,
        subscriber: &str,
        event_type: &str,
        status: InboxStatus,
        n: u64,
    ) -> Result<u64> {
        let inbox = Inbox::new(self.db.clone());
        loop {
            let c = inbox
                .count(status, Some(subscriber), Some(event_type))
                .await?;
            let c = u64::try_from(c).unwrap_or(0);
            if c >= n {
                return Ok(c);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Rows of `event_type` for `subscriber`, any status.
    pub(crate) async fn all_rows(&self, subscriber: &str, event_type: &str) -> Result<u64> {
        let inbox = Inbox::new(self.db.clone());
        let mut total = 0;
        for status in [
            InboxStatus::Received,
            InboxStatus::Stored,
            InboxStatus::Retrying,
            InboxStatus::Done,
            InboxStatus::Dead,
        ] {
            total += inbox
                .count(status, Some(subscriber), Some(event_type))
                .await?;
        }
        Ok(u64::try_from(total).unwrap_or(0))
    }

    /// Closes the transport.
    pub(crate) async fn close(self) {
        let _ = self.transport.close().await;
    }
}

/// A registry whose `noop` handler counts its calls and returns `done`.
fn noop_handlers(calls: &Arc<AtomicU64>) -> HandlerRegistry {
    let mut handlers = HandlerRegistry::new();
    let calls = Arc::clone(calls);
    handlers.register_fn("noop", move |_m: Message| {
        calls.fetch_add(1, Ordering::Relaxed);
        async { HandlerOutcome::done("ok") }
    });
    handlers
}

/// (b) or (b'): eventyard drains a pre-filled queue of `event_type`.
async fn eventyard_phase(
    args: &ReceiveArgs,
    ey: &EventyardRx,
    broker: &mut Broker,
    event_type: &'static str,
) -> Result<Measurement> {
    let n = args.messages;
    let (subscriber, exchange, queue) = ey.route(event_type)?;
    let (exchange, queue) = (exchange.to_owned(), queue.to_owned());
    ey.declare(broker, event_type).await?;
    let filler = Filler::new(event_type, args.body_bytes)?;
    prefill(broker, &exchange, event_type, &filler, n).await?;
    let realtime = event_type == RECV;
    let status = if realtime {
        InboxStatus::Done
    } else {
        InboxStatus::Stored
    };
    let calls = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handle = ey.receiver(subscriber, noop_handlers(&calls)).await?;
    let waited = ey
        .wait_finished(&handle, subscriber, event_type, status, n)
        .await;
    let inline = handle.stats().get(event_type).processed_inline;
    handle.shutdown().await;
    let (finished_at, finished) = waited?;
    let elapsed = finished_at.duration_since(started);
    let rows = ey.all_rows(subscriber, event_type).await?;
    let left = broker.message_count(&queue).await?;
    let handled = calls.load(Ordering::Relaxed);
    let expected_calls = if realtime { n } else { 0 };
    Ok(Measurement {
        key: if realtime { "b" } else { "b'" },
        label: if realtime {
            format!(
                "eventyard `realtime`, no-op handler, {} workers; until all rows `done`",
                args.workers
            )
        } else {
            "eventyard `process_mode = 'none'` (store + ack only); until all rows `stored`".into()
        },
        events: finished.min(n),
        elapsed,
        ok: finished == n && rows == n && handled == expected_calls && left == 0,
        check: format!(
            "{} rows `{status}` of {} rows, {} handler calls ({} in the storing transaction), {} left in queue",
            thousands(finished),
            thousands(rows),
            thousands(handled),
            thousands(inline),
            thousands(left.into())
        ),
    })
}

/// The owner the breakdown claims rows as.
const BENCH_OWNER: &str = "eyb-breakdown";

/// Puts (b')'s rows back to `received`, claimed by [`BENCH_OWNER`] (untimed).
async fn reset_rows(db: &ScratchDb) -> Result<Vec<i64>> {
    sqlx::query(
        "UPDATE ey_inbox SET status = 'received', claimed_by = $1, \
         claimed_until = now() + interval '1 hour', result = NULL, processed_at = NULL \
         WHERE subscriber = $2 AND event_type = $3",
    )
    .bind(BENCH_OWNER)
    .bind(SUB_STORE)
    .bind(STORE)
    .execute(&db.pool)
    .await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM ey_inbox WHERE subscriber = $1 AND event_type = $2 ORDER BY id",
    )
    .bind(SUB_STORE)
    .bind(STORE)
    .fetch_all(&db.pool)
    .await?;
    Ok(ids)
}

/// Counts (b')'s rows that are `done`.
async fn done_rows(db: &ScratchDb) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ey_inbox WHERE subscriber = $1 AND event_type = $2 AND status = 'done'",
    )
    .bind(SUB_STORE)
    .bind(STORE)
    .fetch_one(&db.pool)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Breakdown of (b): the realtime pool's database work per event, replayed
/// with plain sqlx on (b')'s stored rows — (t1) one transaction per event
/// with the pool's statements, (t1') the same with `SET LOCAL
/// synchronous_commit = off`, (t2) one transaction per 256 events.
async fn done_marking(args: &ReceiveArgs, db: &ScratchDb) -> Result<Vec<Measurement>> {
    const CHUNK: usize = 256;
    let workers = usize::try_from(args.workers).unwrap_or(1).max(1);
    let mut out = Vec::new();
    for (key, per_event, async_commit) in [
        ("t1", true, false),
        ("t1'", true, true),
        ("t2", false, false),
    ] {
        let ids = Arc::new(reset_rows(db).await?);
        let n = ids.len() as u64;
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            let (pool, ids, next) = (db.pool.clone(), Arc::clone(&ids), Arc::clone(&next));
            tasks.spawn(async move {
                let step = if per_event { 1 } else { CHUNK as u64 };
                loop {
                    let from = usize::try_from(next.fetch_add(step, Ordering::Relaxed))
                        .unwrap_or(usize::MAX);
                    if from >= ids.len() {
                        return Ok::<_, crate::common::BoxError>(());
                    }
                    let chunk = &ids[from..(from + step as usize).min(ids.len())];
                    let mut tx = pool.begin().await?;
                    if async_commit {
                        sqlx::query("SET LOCAL synchronous_commit = off")
                            .execute(&mut *tx)
                            .await?;
                    }
                    sqlx::query(
                        "UPDATE ey_inbox SET claimed_until = now() + interval '90 seconds' \
                         WHERE id = ANY($1) AND claimed_by = $2 AND status IN ('received', 'retrying')",
                    )
                    .bind(chunk)
                    .bind(BENCH_OWNER)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE ey_inbox SET status = 'done', attempts = attempts + 1, result = 'ok', \
                         processed_at = now(), next_attempt_at = NULL, claimed_by = NULL, \
                         claimed_until = NULL WHERE id = ANY($1) AND claimed_by = $2",
                    )
                    .bind(chunk)
                    .bind(BENCH_OWNER)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                }
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(e.into());
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let elapsed = started.elapsed();
        let done = done_rows(db).await?;
        out.push(Measurement {
            key,
            label: if async_commit {
                format!("breakdown: (t1) with `SET LOCAL synchronous_commit = off`, {workers} tasks")
            } else if per_event {
                format!(
                    "breakdown: per-event transaction of the realtime pool (BEGIN, claim check, `done`, COMMIT), {workers} tasks, sqlx alone"
                )
            } else {
                format!("breakdown: the same statements, one transaction per {CHUNK} events, {workers} tasks")
            },
            events: done,
            elapsed,
            ok: done == n,
            check: format!("{} rows `done`", thousands(done)),
        });
    }
    Ok(out)
}

//! Sequenced streams between a producer and a consumer on two separate
//! PostgreSQL databases, resynced over RabbitMQ by request/reply: the
//! consumer's `AmqpResyncSource` asks the producer's `ResyncResponder` for
//! missing events and for (fresh) snapshots. The producer keeps its state
//! (a running total) in its own database, updated in the transaction that
//! numbers each event; some events are lost on the way; the consumer's
//! replica must end equal to the producer's state.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use eventyard_converter::Registry;
use eventyard_core::config::{
    Catalog, ConfigStore, ConfigWatcher, RawReceiveRow, RawSendRow, StaticCatalog, WatchOptions,
};
use eventyard_core::db::{Backend, Db, DbOptions};
use eventyard_core::resync::{self as wire, Reply, Request};
use eventyard_core::with_pool;
use eventyard_receiver::sequenced::{
    AmqpResyncSource, DbResyncSource, ResyncSource, SeqOptions, Snapshot, SnapshotHandler,
    SnapshotNeed,
};
use eventyard_receiver::{
    Handler, HandlerContext, HandlerOutcome, HandlerRegistry, Message, Receiver, ReceiverHandle,
    ReceiverOptions,
};
use eventyard_sender::{
    EventMeta, Outbox, Publisher, PublisherOptions, ResponderOptions, ResyncResponder,
    RunningResponder, SeqStamp, SnapshotConn, SnapshotProvider,
};
use eventyard_seq::Params;
use eventyard_testkit::TestDb;
use eventyard_transport::{
    AmqpOptions, AmqpTransport, Consumer, OutgoingMessage, Subscription, Transport, TransportError,
};

const SUBSCRIBER: &str = "REPLICA";
const STREAM: &str = "acct";

fn unique(prefix: &str) -> String {
    format!("{prefix}.{}", uuid::Uuid::new_v4().simple())
}

fn catalog() -> Arc<dyn Catalog> {
    let registry = Registry::with_builtins();
    Arc::new(
        StaticCatalog::new()
            .send_converters(registry.send_ids().map(str::to_string).collect::<Vec<_>>())
            .receive_converters(
                registry
                    .receive_ids()
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            )
            .handlers(["replica"]),
    )
}

async fn amqp() -> Arc<dyn Transport> {
    Arc::new(
        AmqpTransport::connect(&eventyard_testkit::amqp_url(), AmqpOptions::new())
            .await
            .unwrap(),
    )
}

/// RabbitMQ, but every `n`th publish is lost on the way (the publisher sees
/// an error, so the outbox row is `failed`; nothing reaches the queue).
#[derive(Debug)]
struct Dropping {
    inner: Arc<dyn Transport>,
    every: u64,
    count: AtomicU64,
}

#[async_trait]
impl Transport for Dropping {
    async fn declare_exchange(&self, exchange: &str) -> Result<(), TransportError> {
        self.inner.declare_exchange(exchange).await
    }
    async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if n.is_multiple_of(self.every) {
            return Err(TransportError::Closed);
        }
        self.inner.publish(msg).await
    }
    async fn publish_many(&self, msgs: Vec<OutgoingMessage>) -> Vec<Result<(), TransportError>> {
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            out.push(self.publish(m).await);
        }
        out
    }
    async fn subscribe(&self, sub: Subscription) -> Result<Box<dyn Consumer>, TransportError> {
        self.inner.subscribe(sub).await
    }
    async fn close(&self) -> Result<(), TransportError> {
        self.inner.close().await
    }
}

/// The producer: its own database (outbox, counter, snapshots, and its
/// state `ledger.total`), a publisher losing every 4th message.
struct ProducerSide {
    _t: TestDb,
    db: Db,
    _watcher: ConfigWatcher,
    publisher: Publisher,
    amqp: Arc<dyn Transport>,
    id: String,
}

/// The consumer: another database (inbox, stream state, replica).
struct ConsumerSide {
    _t: TestDb,
    db: Db,
    watcher: ConfigWatcher,
    amqp: Arc<dyn Transport>,
}

struct Env {
    producer: ProducerSide,
    consumer: ConsumerSide,
    et: String,
    resync_exchange: String,
}

async fn env(drop_every: u64) -> Env {
    let et = unique("LEDGER");
    let exchange = unique("ex");
    let resync_exchange = unique("resync");

    let pt = TestDb::migrated(Backend::Postgres).await;
    let pdb = Db::connect_with(&pt.url, &DbOptions::default().max_connections(8))
        .await
        .unwrap();
    let pstore = Arc::new(ConfigStore::new(pdb.clone()));
    let mut send = RawSendRow::new(&et);
    send.exchange = exchange.clone();
    send.sequenced = true;
    send.persist = true;
    send.retry_count = 0;
    pstore.upsert_send(&send).await.unwrap();
    with_pool!(&pdb, pool => {
        sqlx::query("CREATE TABLE ledger (total BIGINT NOT NULL)").execute(pool).await.unwrap();
        sqlx::query("INSERT INTO ledger VALUES (0)").execute(pool).await.unwrap();
    });
    let pwatcher = ConfigWatcher::start(
        Arc::clone(&pstore),
        catalog(),
        WatchOptions::default()
            .poll_interval(Duration::from_millis(50))
            .listen(false),
    )
    .await
    .unwrap();
    assert!(pwatcher.current().problems.is_empty());
    let pamqp = amqp().await;
    let wire: Arc<dyn Transport> = Arc::new(Dropping {
        inner: Arc::clone(&pamqp),
        every: drop_every,
        count: AtomicU64::new(0),
    });
    let publisher = Publisher::new(
        Outbox::new(pdb.clone()),
        pwatcher.subscribe(),
        Arc::new(Registry::with_builtins()),
        wire,
        PublisherOptions::new("CORE").relay_grace(Duration::from_secs(3600)),
    );

    let ct = TestDb::migrated(Backend::Postgres).await;
    let cdb = Db::connect_with(&ct.url, &DbOptions::default().max_connections(16))
        .await
        .unwrap();
    let cstore = Arc::new(ConfigStore::new(cdb.clone()));
    let mut r = RawReceiveRow::new(&et, SUBSCRIBER);
    r.exchange = exchange.clone();
    r.queue = Some(unique("q"));
    r.process_mode = "realtime".into();
    r.handler_id = Some("replica".into());
    r.sequenced = true;
    r.backoff_ms = 20;
    r.workers = 1;
    r.converter_rules = Some(format!(
        "kind = \"xml\"\n[[fields]]\nname = \"v\"\npath = \"{et}/v\"\n"
    ));
    cstore.upsert_receive(&r).await.unwrap();
    with_pool!(&cdb, pool => {
        sqlx::query("CREATE TABLE replica (total BIGINT NOT NULL, last_seq BIGINT NOT NULL, \
                     applied BIGINT NOT NULL, snapshots BIGINT NOT NULL)")
            .execute(pool).await.unwrap();
        sqlx::query("INSERT INTO replica VALUES (0, 0, 0, 0)").execute(pool).await.unwrap();
    });
    let cwatcher = ConfigWatcher::start(
        Arc::clone(&cstore),
        catalog(),
        WatchOptions::default()
            .poll_interval(Duration::from_millis(50))
            .listen(false),
    )
    .await
    .unwrap();
    assert!(cwatcher.current().problems.is_empty());
    Env {
        producer: ProducerSide {
            _t: pt,
            db: pdb,
            _watcher: pwatcher,
            publisher,
            amqp: pamqp,
            id: unique("P"),
        },
        consumer: ConsumerSide {
            _t: ct,
            db: cdb,
            watcher: cwatcher,
            amqp: amqp().await,
        },
        et,
        resync_exchange,
    }
}

/// Adds `v` to the replica and records the seq, in the handler transaction.
struct ReplicaHandler;

#[async_trait]
impl Handler for ReplicaHandler {
    async fn handle(&self, msg: &Message, ctx: &mut HandlerContext<'_>) -> HandlerOutcome {
        let v = msg.fields.get_str("v").unwrap_or("0").to_string();
        let seq = msg
            .header
            .sequence
            .as_ref()
            .map_or(0, |s| s.seq)
            .to_string();
        match ctx
            .execute(
                "UPDATE replica SET total = total + CAST($1 AS BIGINT), \
                 last_seq = CAST($2 AS BIGINT), applied = applied + 1",
                &[&v, &seq],
            )
            .await
        {
            Ok(_) => HandlerOutcome::done("applied"),
            Err(e) => HandlerOutcome::retry(e.to_string()),
        }
    }
}

/// Replaces the replica with the producer's total.
struct ReplicaSnapshots;

#[async_trait]
impl SnapshotHandler for ReplicaSnapshots {
    async fn apply_snapshot(
        &self,
        snapshot: &Snapshot,
        ctx: &mut HandlerContext<'_>,
    ) -> HandlerOutcome {
        let total = String::from_utf8_lossy(&snapshot.state).to_string();
        match ctx
            .execute(
                "UPDATE replica SET total = CAST($1 AS BIGINT), last_seq = CAST($2 AS BIGINT), \
                 snapshots = snapshots + 1",
                &[&total, &snapshot.seq.to_string()],
            )
            .await
        {
            Ok(_) => HandlerOutcome::done("snapshot"),
            Err(e) => HandlerOutcome::retry(e.to_string()),
        }
    }
}

/// The producer's state, read in the transaction that holds the key's
/// counter row.
struct LedgerState;

#[async_trait]
impl SnapshotProvider for LedgerState {
    async fn snapshot(
        &self,
        _producer_id: &str,
        _stream: &str,
        _at: SeqStamp,
        conn: SnapshotConn<'_>,
    ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        let SnapshotConn::Postgres(conn) = conn else {
            return Err("this test runs on PostgreSQL".into());
        };
        let total: i64 = sqlx::query_scalar("SELECT total FROM ledger")
            .fetch_one(&mut *conn)
            .await?;
        Ok(total.to_string().into_bytes())
    }
}

fn params(max_fetch: u64, fetch_tries: u32) -> Params {
    Params {
        window_count: 4,
        window_ms: 50,
        max_fetch,
        buffer: 1000,
        fetch_tries,
    }
}

impl Env {
    fn source(&self, timeout: Duration) -> AmqpResyncSource {
        AmqpResyncSource::new(Arc::clone(&self.consumer.amqp))
            .exchange(&self.resync_exchange)
            .timeout(timeout)
    }

    async fn start_consumer(
        &self,
        source: Arc<dyn ResyncSource>,
        params: Params,
    ) -> ReceiverHandle {
        let mut handlers = HandlerRegistry::new();
        handlers.register("replica", Arc::new(ReplicaHandler));
        let seq = SeqOptions::default()
            .params(params)
            .tick(Duration::from_millis(10))
            .backoff(Duration::from_millis(50), Duration::from_millis(400))
            .snapshot_handler("replica", Arc::new(ReplicaSnapshots))
            .source(source);
        let rx = Receiver::new(
            self.consumer.db.clone(),
            Arc::clone(&self.consumer.amqp),
            self.consumer.watcher.subscribe(),
            Arc::new(Registry::with_builtins()),
            Arc::new(handlers),
            ReceiverOptions::new(SUBSCRIBER)
                .instance_id("replica-1")
                .retry_poll_interval(Duration::from_millis(50))
                .handler_timeout(Duration::from_secs(5))
                .lease(Duration::from_secs(5))
                .shutdown_grace(Duration::from_secs(5))
                .sequencing(seq),
        )
        .start()
        .await
        .unwrap();
        // The queue is declared by the listener: give it time before the
        // first publish (a message published earlier is only one more loss).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        rx
    }

    async fn start_responder(&self, provider: bool) -> RunningResponder {
        let mut opts =
            ResponderOptions::new([self.producer.id.clone()]).exchange(&self.resync_exchange);
        if provider {
            opts = opts.snapshot_provider(Arc::new(LedgerState));
        }
        ResyncResponder::new(
            self.producer.db.clone(),
            Arc::clone(&self.producer.amqp),
            opts,
        )
        .start()
        .await
        .unwrap()
    }

    fn meta(&self) -> EventMeta {
        EventMeta {
            producer_id: Some(self.producer.id.clone()),
            stream: Some(STREAM.into()),
            ..EventMeta::default()
        }
    }

    /// The producer adds `v` to its ledger and numbers the event in the
    /// same transaction, then sends it (which may be lost).
    async fn publish(&self, v: i64) {
        let p = &self.producer;
        let staged = with_pool!(&p.db, pool => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(&p.db.sql("UPDATE ledger SET total = total + $1")).bind(v)
                .execute(&mut *tx).await.unwrap();
            let staged = p.publisher
                .stage(&mut *tx, &self.et, &serde_json::json!({ "v": v }), self.meta())
                .await
                .unwrap();
            tx.commit().await.unwrap();
            staged
        });
        let _ = p.publisher.flush(staged).await;
    }

    async fn replica(&self) -> (i64, i64, i64, i64) {
        with_pool!(&self.consumer.db, pool => sqlx::query_as::<_, (i64, i64, i64, i64)>(
            "SELECT total, last_seq, applied, snapshots FROM replica")
            .fetch_one(pool).await.unwrap())
    }

    async fn mode(&self) -> Option<String> {
        with_pool!(&self.consumer.db, pool => sqlx::query_scalar::<_, String>(
            "SELECT mode FROM ey_stream_state WHERE subscriber = $1 AND producer_id = $2 AND stream = $3")
            .bind(SUBSCRIBER).bind(&self.producer.id).bind(STREAM)
            .fetch_optional(pool).await.unwrap())
    }

    async fn wait_replica(&self, total: i64, last: i64, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.replica().await;
            if r.0 == total && r.1 == last {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "replica {r:?} != producer total {total}, last {last}; mode {:?}",
                    self.mode().await
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn consumer_outbox_rows(&self) -> i64 {
        with_pool!(&self.consumer.db, pool => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM ey_outbox").fetch_one(pool).await.unwrap())
    }

    async fn producer_snapshot(&self) -> Option<(i64, i64, Vec<u8>)> {
        with_pool!(&self.producer.db, pool => sqlx::query_as::<_, (i64, i64, Vec<u8>)>(
            "SELECT epoch, seq, state FROM ey_snapshot WHERE producer_id = $1 AND stream = $2")
            .bind(&self.producer.id).bind(STREAM).fetch_optional(pool).await.unwrap())
    }
}

/// Every 4th message is lost; the gaps are fetched from the producer's
/// outbox over AMQP (the consumer's database has no outbox rows at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_messages_are_fetched_from_the_producer_over_amqp() {
    let env = env(4).await;
    let responder = env.start_responder(false).await;
    let rx = env
        .start_consumer(
            Arc::new(env.source(Duration::from_secs(5))),
            params(1000, 3),
        )
        .await;
    let mut total = 0;
    for v in 1..=30 {
        total += v;
        env.publish(v).await;
    }
    // 4, 8, …, 28 are lost; 29 and 30 arrive: every gap is behind a later message.
    env.wait_replica(total, 30, 60).await;
    let (_, _, applied, snapshots) = env.replica().await;
    assert_eq!(applied, 30, "every event applied once, live or fetched");
    assert_eq!(snapshots, 0);
    assert_eq!(env.consumer_outbox_rows().await, 0, "separate databases");
    let inbox: i64 = with_pool!(&env.consumer.db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM ey_inbox WHERE status = 'done'").fetch_one(pool).await.unwrap());
    assert_eq!(
        inbox, 30,
        "fetched events are stored in the consumer's inbox"
    );
    rx.shutdown().await;
    responder.shutdown().await;
}

/// `max_fetch` 0: every gap takes a snapshot. The producer's stored
/// snapshot is missing (`stored = false`) or older than needed: the
/// responder asks the application's provider for a fresh one, stores it in
/// the producer's `ey_snapshot` and answers it.
async fn snapshots_are_made_fresh(stored: bool) {
    let env = env(4).await;
    let responder = env.start_responder(true).await;
    let rx = env
        .start_consumer(Arc::new(env.source(Duration::from_secs(5))), params(0, 3))
        .await;
    let mut total = 0;
    for v in 1..=2 {
        total += v;
        env.publish(v).await;
    }
    if stored {
        let fresh = env
            .producer
            .publisher
            .write_snapshot(&env.producer.id, STREAM, &LedgerState)
            .await
            .unwrap();
        assert_eq!(fresh.at, SeqStamp { epoch: 1, seq: 2 });
        assert_eq!(fresh.state, b"3");
        assert_eq!(env.producer_snapshot().await, Some((1, 2, b"3".to_vec())));
    }
    for v in 3..=30 {
        total += v;
        env.publish(v).await;
    }
    env.wait_replica(total, 30, 60).await;
    let (_, _, applied, snapshots) = env.replica().await;
    assert!(snapshots >= 1, "a snapshot was applied");
    assert!(applied < 30, "some events were superseded by a snapshot");
    let (epoch, seq, state) = env.producer_snapshot().await.unwrap();
    assert_eq!(epoch, 1);
    assert!(seq >= 4, "a fresh snapshot was written (seq {seq})");
    // The stored state is the ledger total as of its seq: 1 + … + seq.
    assert_eq!(
        String::from_utf8(state).unwrap(),
        (seq * (seq + 1) / 2).to_string()
    );
    assert_eq!(env.mode().await.as_deref(), Some("synced"));
    rx.shutdown().await;
    responder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_without_a_snapshot_is_asked_for_a_fresh_one() {
    snapshots_are_made_fresh(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_stored_snapshot_is_replaced_by_a_fresh_one() {
    snapshots_are_made_fresh(true).await;
}

/// The producer has no snapshot and its responder no provider: the key
/// waits in `snapshot` mode (what `seq status` shows) and keeps asking; once
/// the producer writes a snapshot, the next request gets it and the replica
/// converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_snapshot_the_key_waits_in_snapshot_mode_until_one_exists() {
    let env = env(4).await;
    let responder = env.start_responder(false).await;
    let rx = env
        .start_consumer(Arc::new(env.source(Duration::from_secs(5))), params(0, 3))
        .await;
    let mut total = 0;
    for v in 1..=10 {
        total += v;
        env.publish(v).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while env.mode().await.as_deref() != Some("snapshot") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mode {:?}",
            env.mode().await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (_, last, _, snapshots) = env.replica().await;
    assert_eq!(snapshots, 0);
    assert!(last < 4, "stuck before the first lost event (last {last})");
    env.producer
        .publisher
        .write_snapshot(&env.producer.id, STREAM, &LedgerState)
        .await
        .unwrap();
    env.wait_replica(total, 10, 60).await;
    assert_eq!(env.replica().await.3, 1, "the stored snapshot was applied");
    assert_eq!(env.mode().await.as_deref(), Some("synced"));
    rx.shutdown().await;
    responder.shutdown().await;
}

/// The producer's responder is down: first a stuck one holds the request
/// queue and never answers (requests time out), then none runs (requests
/// are unroutable). The consumer keeps asking with backoff and converges
/// once the responder starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_time_out_and_are_retried_until_the_responder_starts() {
    let env = env(4).await;
    let stuck_transport = amqp().await;
    let mut stuck = stuck_transport
        .subscribe(
            Subscription::new(
                ResponderOptions::new([env.producer.id.clone()])
                    .exchange(&env.resync_exchange)
                    .request_queue(&env.producer.id),
                &env.resync_exchange,
            )
            .bind(wire::request_routing_key(&env.producer.id))
            .prefetch(0)
            .transient(true),
        )
        .await
        .unwrap();
    let rx = env
        // Fetches keep being retried (no fallback to a snapshot, which this
        // responder could not make).
        .start_consumer(
            Arc::new(env.source(Duration::from_millis(300))),
            params(1000, u32::MAX),
        )
        .await;
    let mut total = 0;
    for v in 1..=10 {
        total += v;
        env.publish(v).await;
    }
    // At least two requests reach the stuck responder: the first timed out
    // and was asked again. They carry what a responder needs to answer.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let d = tokio::time::timeout(Duration::from_secs(30), stuck.next())
            .await
            .expect("the consumer keeps asking")
            .unwrap();
        assert!(d.headers.contains_key(wire::HEADER_CORRELATION));
        assert!(d.headers.contains_key(wire::HEADER_REPLY_TO));
        assert!(d.headers.contains_key(wire::HEADER_DEADLINE));
        let req = wire::decode_request(&d.payload).unwrap();
        assert!(
            matches!(req, Request::Fetch { ref producer, .. } if *producer == env.producer.id),
            "{req:?}"
        );
        seen.push(d.headers[wire::HEADER_CORRELATION].clone());
    }
    assert_ne!(seen[0], seen[1], "each try is a new request");
    let (_, last, _, _) = env.replica().await;
    assert!(
        last < 10,
        "nothing resynced without a responder (last {last})"
    );
    assert_eq!(env.mode().await.as_deref(), Some("fetch"));
    // The stuck responder goes (its transient queue with it): requests are
    // now unroutable until the real one starts.
    stuck.cancel().await.unwrap();
    drop(stuck);
    stuck_transport.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let responder = env.start_responder(false).await;
    env.wait_replica(total, 10, 60).await;
    assert_eq!(env.replica().await.2, 10);
    rx.shutdown().await;
    responder.shutdown().await;
}

/// A shared database whose stored snapshot is stale: `DbResyncSource` with
/// `fresh_snapshots` asks the producer's daemon, which writes a fresh one
/// into that same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_source_asks_the_producer_for_a_fresh_snapshot() {
    let env = env(1000).await;
    let responder = env.start_responder(true).await;
    for v in 1..=3 {
        env.publish(v).await;
    }
    env.producer
        .publisher
        .write_snapshot(&env.producer.id, STREAM, &LedgerState)
        .await
        .unwrap();
    for v in 4..=6 {
        env.publish(v).await;
    }
    let db_only = DbResyncSource::new(env.producer.db.clone());
    let need = SnapshotNeed { epoch: 1, seq: 5 };
    let stale = db_only
        .snapshot(&env.producer.id, STREAM, need)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stale.epoch, stale.seq), (1, 3), "the stored one, too old");
    let source = DbResyncSource::new(env.producer.db.clone())
        .fresh_snapshots(Arc::new(env.source(Duration::from_secs(5))));
    let fresh = source
        .snapshot(&env.producer.id, STREAM, need)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (fresh.epoch, fresh.seq, fresh.state),
        (1, 6, b"21".to_vec())
    );
    assert_eq!(env.producer_snapshot().await, Some((1, 6, b"21".to_vec())));
    // New enough now: read from the database without asking.
    responder.shutdown().await;
    let again = source
        .snapshot(&env.producer.id, STREAM, need)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.epoch, again.seq), (1, 6));
}

/// A fake producer daemon: consumes the request queue of `producer` and
/// answers each request with `answer(request)` as the raw reply body.
async fn fake_responder(
    transport: Arc<dyn Transport>,
    exchange: String,
    producer: String,
    answer: impl Fn(&Request) -> Vec<u8> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let mut c = transport
        .subscribe(
            Subscription::new(format!("{exchange}.request.{producer}"), &exchange)
                .bind(wire::request_routing_key(&producer))
                .transient(true),
        )
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(d) = c.next().await {
            let req = wire::decode_request(&d.payload).unwrap();
            let corr = d.headers[wire::HEADER_CORRELATION].clone();
            let reply = OutgoingMessage::new(
                &exchange,
                &d.headers[wire::HEADER_REPLY_TO],
                &corr,
                wire::REPLY_TYPE,
                answer(&req),
            )
            .header(wire::HEADER_CORRELATION, &corr);
            transport.publish(reply).await.unwrap();
            d.acker.ack().await.unwrap();
        }
    })
}

/// Malformed or wrong replies are errors naming the producer and stream,
/// never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replies_are_errors() {
    let transport = amqp().await;
    let exchange = unique("resync");
    let producer = unique("PX");
    let answers: Vec<Vec<u8>> = vec![
        b"\x00garbage".to_vec(),
        br#"{"v":1,"kind":"events","events":[{"event_id":"e","seq":1,"payload":"%%%"}]}"#.to_vec(),
        br#"{"v":9,"kind":"events","events":[]}"#.to_vec(),
        wire::encode_reply(&Reply::Events {
            events: vec![wire::WireEvent {
                event_id: "e-99".into(),
                seq: 99,
                payload: b"<x/>".to_vec(),
            }],
        }),
        wire::encode_reply(&Reply::Error {
            message: "disk on fire".into(),
        }),
        wire::encode_reply(&Reply::Snapshot {
            epoch: 1,
            seq: 1,
            state: Vec::new(),
        }),
    ];
    let expected = [
        "malformed resync reply",
        "invalid base64",
        "version 9",
        "seq 99 (event `e-99`), outside the range",
        "the producer answered: disk on fire",
        "answered a snapshot instead of events",
    ];
    let next = Arc::new(AtomicU64::new(0));
    let n2 = Arc::clone(&next);
    let task = fake_responder(
        Arc::clone(&transport),
        exchange.clone(),
        producer.clone(),
        move |_| answers[usize::try_from(n2.fetch_add(1, Ordering::SeqCst)).unwrap()].clone(),
    )
    .await;
    let source = AmqpResyncSource::new(Arc::clone(&transport))
        .exchange(&exchange)
        .timeout(Duration::from_secs(10));
    for want in expected {
        let err = source.fetch(&producer, STREAM, 1, 1, 3).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(want), "{text}");
        assert!(text.contains(&producer) && text.contains(STREAM), "{text}");
        assert!(text.contains("fetch of seqs 1..=3 of epoch 1"), "{text}");
    }
    task.abort();
}

/// The responder answers an error for a producer it does not serve, and
/// drops requests past their deadline without answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_responder_refuses_unknown_producers_and_drops_stale_requests() {
    static RECORDER: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    let handle = RECORDER.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .unwrap()
    });
    let env = env(1000).await;
    let responder = env.start_responder(false).await;
    let transport = Arc::clone(&env.consumer.amqp);
    let ex = env.resync_exchange.clone();
    let reply_key = unique("reply");
    let mut replies = transport
        .subscribe(
            Subscription::new(format!("{ex}.{reply_key}"), &ex)
                .bind(&reply_key)
                .transient(true),
        )
        .await
        .unwrap();
    let request = |corr: &str, deadline: i64, producer: &str| {
        OutgoingMessage::new(
            &ex,
            wire::request_routing_key(&env.producer.id),
            corr,
            wire::REQUEST_TYPE,
            wire::encode_request(&Request::Snapshot {
                producer: producer.into(),
                stream: STREAM.into(),
                min_epoch: 1,
                min_seq: 0,
            }),
        )
        .header(wire::HEADER_CORRELATION, corr)
        .header(wire::HEADER_REPLY_TO, &reply_key)
        .header(wire::HEADER_DEADLINE, deadline.to_string())
    };
    let now = chrono::Utc::now().timestamp_millis();
    transport
        .publish(request("stale", now - 1000, &env.producer.id))
        .await
        .unwrap();
    transport
        .publish(request("other", now + 60_000, "SOMEONE-ELSE"))
        .await
        .unwrap();
    transport
        .publish(request("mine", now + 60_000, &env.producer.id))
        .await
        .unwrap();
    let mut got = std::collections::BTreeMap::new();
    while got.len() < 2 {
        let d = tokio::time::timeout(Duration::from_secs(30), replies.next())
            .await
            .unwrap()
            .unwrap();
        d.acker.ack().await.unwrap();
        got.insert(
            d.headers[wire::HEADER_CORRELATION].clone(),
            wire::decode_reply(&d.payload).unwrap(),
        );
    }
    assert!(!got.contains_key("stale"), "{got:?}");
    match &got["other"] {
        Reply::Error { message } => assert!(
            message.contains("`SOMEONE-ELSE`") && message.contains("not served"),
            "{message}"
        ),
        r => panic!("{r:?}"),
    }
    match &got["mine"] {
        Reply::NoSnapshot { reason } => {
            assert!(reason.contains("no stored snapshot"), "{reason}")
        }
        r => panic!("{r:?}"),
    }
    // The stale request was taken before the later ones (one queue, one
    // request at a time) and counted as dropped.
    let text = handle.render();
    let stale = text
        .lines()
        .find(|l| {
            l.starts_with("eventyard_resync_requests_total")
                && l.contains(&env.producer.id)
                && l.contains("outcome=\"stale\"")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(stale.ends_with(" 1"), "{stale}");
    responder.shutdown().await;
}

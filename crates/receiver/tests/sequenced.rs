//! Sequenced streams end to end over the in-process transport and the real
//! databases (PostgreSQL and SQLite): the real publisher numbers events,
//! some are dropped on the wire, and the consumer's replica (a running sum
//! and the last seq, written in the handler transaction) must end equal to
//! the producer's state — via fetch, via snapshot, with duplicates and
//! reordering, across a producer epoch, via the inspection pass, and after
//! a consumer restart mid-resync.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use eventyard_converter::Registry;
use eventyard_core::config::{
    Catalog, ConfigStore, ConfigWatcher, RawReceiveRow, RawSendRow, StaticCatalog, WatchOptions,
};
use eventyard_core::db::{Backend, Db, DbOptions};
use eventyard_core::with_pool;
use eventyard_receiver::sequenced::{
    FetchedEvent, ResyncError, ResyncSource, SeqOptions, Snapshot, SnapshotHandler, StoredSnapshot,
};
use eventyard_receiver::{
    Handler, HandlerContext, HandlerOutcome, HandlerRegistry, Message, Receiver, ReceiverHandle,
    ReceiverOptions,
};
use eventyard_sender::{EventMeta, Outbox, OutboxFilter, Publisher, PublisherOptions};
use eventyard_seq::Params;
use eventyard_testkit::TestDb;
use eventyard_transport::{InProcessTransport, OutgoingMessage, PublishFault, Transport};

const SUBSCRIBER: &str = "REPLICA";
const PRODUCER: &str = "P1";
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

struct Env {
    _t: TestDb,
    db: Db,
    _store: Arc<ConfigStore>,
    watcher: ConfigWatcher,
    publisher: Publisher,
    transport: Arc<InProcessTransport>,
    /// What the publisher and the receiver use (the in-process transport,
    /// or RabbitMQ behind a dropping wrapper).
    wire: Arc<dyn Transport>,
    et: String,
    exchange: String,
}

async fn env(backend: Backend, inspect: Option<&str>) -> Env {
    env_with(backend, inspect, true).await
}

async fn env_with(backend: Backend, inspect: Option<&str>, sequenced: bool) -> Env {
    let transport = Arc::new(InProcessTransport::new());
    env_on(
        backend,
        inspect,
        sequenced,
        Arc::clone(&transport) as Arc<dyn Transport>,
        transport,
    )
    .await
}

async fn env_on(
    backend: Backend,
    inspect: Option<&str>,
    sequenced: bool,
    wire: Arc<dyn Transport>,
    transport: Arc<InProcessTransport>,
) -> Env {
    let t = TestDb::migrated(backend).await;
    let db = Db::connect_with(&t.url, &DbOptions::default().max_connections(16))
        .await
        .unwrap();
    let store = Arc::new(ConfigStore::new(db.clone()));
    let et = unique("LEDGER");
    let exchange = unique("ex");
    let mut send = RawSendRow::new(&et);
    send.exchange = exchange.clone();
    send.sequenced = sequenced;
    send.persist = true;
    send.retry_count = 0;
    store.upsert_send(&send).await.unwrap();
    let mut r = RawReceiveRow::new(&et, SUBSCRIBER);
    r.exchange = exchange.clone();
    r.queue = Some(unique("q"));
    r.process_mode = "realtime".into();
    r.handler_id = Some("replica".into());
    r.sequenced = sequenced;
    r.backoff_ms = 20;
    r.workers = 1;
    r.converter_rules = Some(format!(
        "kind = \"xml\"\n[[fields]]\nname = \"v\"\npath = \"{et}/v\"\n"
    ));
    store.upsert_receive(&r).await.unwrap();
    with_pool!(&db, pool => {
        sqlx::query("CREATE TABLE replica (producer VARCHAR(100) NOT NULL, stream VARCHAR(100) NOT NULL, \
                     total BIGINT NOT NULL, last_seq BIGINT NOT NULL, applied BIGINT NOT NULL, PRIMARY KEY (producer, stream))")
            .execute(pool).await.unwrap();
        sqlx::query("INSERT INTO replica VALUES ('P1', 'acct', 0, 0, 0)").execute(pool).await.unwrap();
        if let Some(cron) = inspect {
            let sql = db.sql("UPDATE ey_receive_config SET inspect_cron = $1 WHERE event_type = $2").into_owned();
            sqlx::query(&sql).bind(cron).bind(&et).execute(pool).await.unwrap();
        }
    });
    let watcher = ConfigWatcher::start(
        Arc::clone(&store),
        catalog(),
        WatchOptions::default()
            .poll_interval(Duration::from_millis(50))
            .listen(false),
    )
    .await
    .unwrap();
    assert!(
        watcher.current().problems.is_empty(),
        "{:?}",
        watcher.current().problems
    );
    let publisher = Publisher::new(
        Outbox::new(db.clone()),
        watcher.subscribe(),
        Arc::new(Registry::with_builtins()),
        Arc::clone(&wire),
        PublisherOptions::new("CORE").relay_grace(Duration::from_secs(3600)),
    );
    Env {
        _t: t,
        db,
        _store: store,
        watcher,
        publisher,
        transport,
        wire,
        et,
        exchange,
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
                "UPDATE replica SET total = total + CAST($1 AS BIGINT), last_seq = CAST($2 AS BIGINT), \
                 applied = applied + 1 WHERE producer = 'P1' AND stream = 'acct'",
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
                "UPDATE replica SET total = CAST($1 AS BIGINT), last_seq = CAST($2 AS BIGINT) \
                 WHERE producer = 'P1' AND stream = 'acct'",
                &[&total, &snapshot.seq.to_string()],
            )
            .await
        {
            Ok(_) => HandlerOutcome::done("snapshot"),
            Err(e) => HandlerOutcome::retry(e.to_string()),
        }
    }
}

/// A resync source that is down.
struct DownSource;

#[async_trait]
impl ResyncSource for DownSource {
    async fn fetch(
        &self,
        producer_id: &str,
        stream: &str,
        _e: u64,
        _f: u64,
        _t: u64,
    ) -> Result<Vec<FetchedEvent>, ResyncError> {
        Err(ResyncError {
            producer_id: producer_id.into(),
            stream: stream.into(),
            reason: "down".into(),
        })
    }
    async fn snapshot(
        &self,
        producer_id: &str,
        stream: &str,
        _need: eventyard_receiver::sequenced::SnapshotNeed,
    ) -> Result<Option<StoredSnapshot>, ResyncError> {
        Err(ResyncError {
            producer_id: producer_id.into(),
            stream: stream.into(),
            reason: "down".into(),
        })
    }
}

fn seq_options(params: Params) -> SeqOptions {
    SeqOptions::default()
        .params(params)
        .tick(Duration::from_millis(10))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .inspection(Duration::from_secs(60), Duration::ZERO)
        .snapshot_handler("replica", Arc::new(ReplicaSnapshots))
}

fn params(max_fetch: u64) -> Params {
    Params {
        window_count: 4,
        window_ms: 50,
        max_fetch,
        buffer: 1000,
        fetch_tries: 3,
    }
}

impl Env {
    async fn start(&self, seq: SeqOptions) -> ReceiverHandle {
        let mut handlers = HandlerRegistry::new();
        handlers.register("replica", Arc::new(ReplicaHandler));
        Receiver::new(
            self.db.clone(),
            Arc::clone(&self.wire),
            self.watcher.subscribe(),
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
        .unwrap()
    }

    fn meta(&self) -> EventMeta {
        EventMeta {
            producer_id: Some(PRODUCER.into()),
            stream: Some(STREAM.into()),
            ..EventMeta::default()
        }
    }

    /// Publishes `v`; a dropped message (publish failed) is fine.
    async fn publish(&self, v: i64, snapshot_total: Option<i64>) {
        let value = serde_json::json!({ "v": v });
        let _ = match snapshot_total {
            Some(total) => {
                self.publisher
                    .publish_with_snapshot(
                        &self.et,
                        &value,
                        self.meta(),
                        total.to_string().into_bytes(),
                    )
                    .await
            }
            None => {
                self.publisher
                    .publish_with(&self.et, &value, self.meta())
                    .await
            }
        };
    }

    async fn replica(&self) -> (i64, i64, i64) {
        with_pool!(&self.db, pool => sqlx::query_as::<_, (i64, i64, i64)>(
            "SELECT total, last_seq, applied FROM replica WHERE producer = 'P1' AND stream = 'acct'")
            .fetch_one(pool).await.unwrap())
    }

    async fn state(&self) -> Option<(i64, i64)> {
        let sql = self
            .db
            .sql("SELECT epoch, last_seq FROM ey_stream_state WHERE subscriber = $1 AND producer_id = $2 AND stream = $3")
            .into_owned();
        with_pool!(&self.db, pool => sqlx::query_as::<_, (i64, i64)>(&sql)
            .bind(SUBSCRIBER).bind(PRODUCER).bind(STREAM).fetch_optional(pool).await.unwrap())
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
                    "replica {r:?} != producer total {total}, last {last}; state {:?}",
                    self.state().await
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Routes the queue before publishing (the receiver declares it).
    async fn wait_listening(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn dropped_messages_are_fetched(backend: Backend) {
    let env = env(backend, None).await;
    let rx = env.start(seq_options(params(1000))).await;
    env.wait_listening().await;
    env.transport
        .fail_every_nth_publish(3, PublishFault::ConnectionLost);
    for v in 1..=20 {
        env.publish(v, None).await;
    }
    env.transport.clear_faults();
    env.wait_replica(210, 20, 20).await;
    assert_eq!(
        env.replica().await.2,
        20,
        "every event applied exactly once"
    );
    assert_eq!(env.state().await, Some((1, 20)));
    rx.shutdown().await;
}

#[tokio::test]
async fn dropped_messages_are_fetched_postgres() {
    dropped_messages_are_fetched(Backend::Postgres).await;
}

#[tokio::test]
async fn dropped_messages_are_fetched_sqlite() {
    dropped_messages_are_fetched(Backend::Sqlite).await;
}

async fn large_gap_takes_a_snapshot(backend: Backend) {
    let env = env(backend, None).await;
    // max_fetch 0: every gap is a snapshot.
    let rx = env.start(seq_options(params(0))).await;
    env.wait_listening().await;
    env.transport
        .fail_every_nth_publish(4, PublishFault::ConnectionLost);
    let mut total = 0;
    for v in 1..=21 {
        total += v;
        env.publish(v, Some(total)).await;
    }
    env.transport.clear_faults();
    env.wait_replica(total, 21, 20).await;
    assert!(
        env.replica().await.2 < 21,
        "some events were superseded by snapshots"
    );
    rx.shutdown().await;
}

#[tokio::test]
async fn large_gap_takes_a_snapshot_postgres() {
    large_gap_takes_a_snapshot(Backend::Postgres).await;
}

#[tokio::test]
async fn large_gap_takes_a_snapshot_sqlite() {
    large_gap_takes_a_snapshot(Backend::Sqlite).await;
}

async fn stored_payloads(env: &Env) -> Vec<(String, Vec<u8>)> {
    let mut rows = env
        .publisher
        .outbox()
        .list(&OutboxFilter {
            limit: Some(10_000),
            ..OutboxFilter::default()
        })
        .await
        .unwrap();
    rows.sort_by_key(|r| r.seq);
    rows.into_iter().map(|r| (r.event_id, r.payload)).collect()
}

fn wire(env: &Env, event_id: &str, payload: Vec<u8>) -> OutgoingMessage {
    OutgoingMessage {
        exchange: env.exchange.clone(),
        routing_key: env.et.clone(),
        message_id: event_id.to_string(),
        event_type: env.et.clone(),
        content_encoding: Some("gzip".into()),
        headers: Default::default(),
        payload,
        order: Default::default(),
    }
}

async fn duplicates_and_reordering(backend: Backend) {
    let env = env(backend, None).await;
    let rx = env.start(seq_options(params(1000))).await;
    env.wait_listening().await;
    // Nothing reaches the wire from the publisher…
    env.transport
        .set_publish_failure(Some(PublishFault::ConnectionLost));
    for v in 1..=12 {
        env.publish(v, None).await;
    }
    env.transport.clear_faults();
    // … then the stored envelopes arrive shuffled, each twice.
    let mut msgs = stored_payloads(&env).await;
    assert_eq!(msgs.len(), 12);
    let mut order: Vec<usize> = (0..12).chain(0..12).collect();
    fastrand::seed(7);
    fastrand::shuffle(&mut order);
    for i in order {
        let (id, payload) = msgs[i].clone();
        env.transport
            .publish(wire(&env, &id, payload))
            .await
            .unwrap();
    }
    msgs.clear();
    env.wait_replica(78, 12, 20).await;
    assert_eq!(env.replica().await.2, 12);
    rx.shutdown().await;
}

#[tokio::test]
async fn duplicates_and_reordering_postgres() {
    duplicates_and_reordering(Backend::Postgres).await;
}

#[tokio::test]
async fn duplicates_and_reordering_sqlite() {
    duplicates_and_reordering(Backend::Sqlite).await;
}

async fn producer_restart_new_epoch(backend: Backend) {
    let env = env(backend, None).await;
    let rx = env.start(seq_options(params(1000))).await;
    env.wait_listening().await;
    let mut total = 0;
    for v in 1..=5 {
        total += v;
        env.publish(v, Some(total)).await;
    }
    env.wait_replica(15, 5, 20).await;
    // The producer restarts with a fresh epoch; its state continues.
    assert_eq!(
        env.publisher.reset_epoch(PRODUCER, STREAM).await.unwrap(),
        2
    );
    for v in 6..=9 {
        total += v;
        env.publish(v, Some(total)).await;
    }
    env.wait_replica(total, 4, 20).await;
    let state = env.state().await.unwrap();
    assert_eq!(state, (2, 4));
    rx.shutdown().await;
}

#[tokio::test]
async fn producer_restart_new_epoch_postgres() {
    producer_restart_new_epoch(Backend::Postgres).await;
}

#[tokio::test]
async fn producer_restart_new_epoch_sqlite() {
    producer_restart_new_epoch(Backend::Sqlite).await;
}

async fn tail_gap_found_by_inspection(backend: Backend) {
    let env = env(backend, Some("@every 1s")).await;
    let rx = env.start(seq_options(params(1000))).await;
    env.wait_listening().await;
    for v in 1..=4 {
        env.publish(v, None).await;
    }
    env.wait_replica(10, 4, 20).await;
    // The last message is lost and nothing follows it.
    env.transport
        .set_publish_failure(Some(PublishFault::ConnectionLost));
    env.publish(5, None).await;
    env.transport.clear_faults();
    env.wait_replica(15, 5, 20).await;
    let sql = env
        .db
        .sql("SELECT COUNT(*) FROM ey_seq_checkpoint WHERE subscriber = $1 AND event_type = $2")
        .into_owned();
    // The pass commits its checkpoint after applying what it found: wait for it.
    let mut n: i64 = 0;
    for _ in 0..100 {
        n = with_pool!(&env.db, pool => sqlx::query_scalar(&sql).bind(SUBSCRIBER).bind(&env.et)
            .fetch_one(pool).await.unwrap());
        if n == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(n, 1, "the pass committed a checkpoint");
    rx.shutdown().await;
}

#[tokio::test]
async fn tail_gap_found_by_inspection_postgres() {
    tail_gap_found_by_inspection(Backend::Postgres).await;
}

#[tokio::test]
async fn tail_gap_found_by_inspection_sqlite() {
    tail_gap_found_by_inspection(Backend::Sqlite).await;
}

async fn restart_mid_resync(backend: Backend) {
    let env = env(backend, None).await;
    // The first consumer cannot resync: the gap stays open, later rows wait.
    let rx = env
        .start(seq_options(params(1000)).source(Arc::new(DownSource)))
        .await;
    env.wait_listening().await;
    for v in 1..=10 {
        if v == 3 {
            env.transport
                .set_publish_failure(Some(PublishFault::ConnectionLost));
        }
        env.publish(v, None).await;
        env.transport.clear_faults();
    }
    env.wait_replica(3, 2, 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.replica().await, (3, 2, 2));
    rx.shutdown().await;
    // A restarted consumer rebuilds from ey_stream_state and the stored rows.
    let rx = env.start(seq_options(params(1000))).await;
    env.wait_replica(55, 10, 20).await;
    assert_eq!(env.replica().await.2, 10);
    rx.shutdown().await;
}

#[tokio::test]
async fn restart_mid_resync_postgres() {
    restart_mid_resync(Backend::Postgres).await;
}

#[tokio::test]
async fn restart_mid_resync_sqlite() {
    restart_mid_resync(Backend::Sqlite).await;
}

async fn forced_resync_applies_the_stored_snapshot(backend: Backend) {
    let env = env(backend, None).await;
    let rx = env.start(seq_options(params(1000))).await;
    env.wait_listening().await;
    let mut total = 0;
    for v in 1..=6 {
        total += v;
        env.publish(v, Some(total)).await;
    }
    env.wait_replica(21, 6, 20).await;
    // The replica gets corrupted behind the daemon's back…
    with_pool!(&env.db, pool => {
        sqlx::query("UPDATE replica SET total = -1").execute(pool).await.unwrap();
    });
    // … and the operator forces a snapshot (`eventyard seq resync`).
    let sql = env
        .db
        .sql("INSERT INTO ey_seq_resync (subscriber, producer_id, stream, requested_at) VALUES ($1, $2, $3, $4)")
        .into_owned();
    with_pool!(&env.db, pool => {
        sqlx::query(&sql).bind(SUBSCRIBER).bind(PRODUCER).bind(STREAM).bind(chrono::Utc::now())
            .execute(pool).await.unwrap();
    });
    env.wait_replica(21, 6, 20).await;
    // Later events apply on top of it.
    env.publish(7, Some(28)).await;
    env.wait_replica(28, 7, 20).await;
    let n: i64 = with_pool!(&env.db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM ey_seq_resync")
        .fetch_one(pool).await.unwrap());
    assert_eq!(n, 0, "the request was consumed");
    rx.shutdown().await;
}

#[tokio::test]
async fn forced_resync_applies_the_stored_snapshot_postgres() {
    forced_resync_applies_the_stored_snapshot(Backend::Postgres).await;
}

#[tokio::test]
async fn forced_resync_applies_the_stored_snapshot_sqlite() {
    forced_resync_applies_the_stored_snapshot(Backend::Sqlite).await;
}

/// The sequencing counters reach the `metrics` facade per event type.
#[tokio::test]
async fn tracker_counters_are_exported_as_metrics() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();
    let env = env(Backend::Sqlite, None).await;
    let rx = env.start(seq_options(params(1000))).await;
    env.wait_listening().await;
    env.transport
        .fail_every_nth_publish(2, PublishFault::ConnectionLost);
    for v in 1..=7 {
        env.publish(v, None).await;
    }
    env.transport.clear_faults();
    env.wait_replica(28, 7, 20).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let text = handle.render();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(&env.et))
            .map(str::to_string)
    };
    let gaps = line("eventyard_seq_gaps_total").expect("gaps counter exported");
    assert!(!gaps.ends_with(" 0"), "{gaps}");
    assert!(line("eventyard_seq_fetches_total").is_some(), "{text}");
    assert!(line("eventyard_seq_keys").is_some(), "{text}");
    rx.shutdown().await;
}

// Benchmarks (ignored; figures in docs/performance.md):
//   cargo test --release -p eventyard-receiver --test sequenced -- --ignored --nocapture --test-threads 1

fn bench_params(max_fetch: u64) -> Params {
    Params {
        window_count: 1,
        window_ms: 10,
        max_fetch,
        buffer: 20_000,
        fetch_tries: 3,
    }
}

/// A 10,000-message gap closed by fetch (`snapshot = false`) or by a snapshot.
async fn resync_gap(snapshot: bool) {
    const GAP: i64 = 10_000;
    let env = env(Backend::Postgres, None).await;
    let rx = env
        .start(seq_options(bench_params(if snapshot { 0 } else { 20_000 })))
        .await;
    env.wait_listening().await;
    env.transport
        .set_publish_failure(Some(PublishFault::ConnectionLost));
    let mut total = 0;
    for v in 1..=GAP {
        total += v;
        env.publish(v, (snapshot && v == GAP).then_some(total))
            .await;
    }
    env.transport.clear_faults();
    let started = std::time::Instant::now();
    total += GAP + 1;
    env.publish(GAP + 1, None).await;
    env.wait_replica(total, GAP + 1, 600).await;
    let took = started.elapsed();
    println!(
        "BENCH resync of a {GAP}-message gap via {}: {:.3} s (applied {} events)",
        if snapshot { "snapshot" } else { "fetch" },
        took.as_secs_f64(),
        env.replica().await.2
    );
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_resync_10000_via_fetch() {
    resync_gap(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_resync_10000_via_snapshot() {
    resync_gap(true).await;
}

/// Publish rate and end-to-end apply rate with `sequenced` off and on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_sequenced_on_vs_off() {
    const N: i64 = 3_000;
    const TASKS: i64 = 16;
    for sequenced in [false, true] {
        let env = env_with(Backend::Postgres, None, sequenced).await;
        let rx = env.start(seq_options(params(1000))).await;
        env.wait_listening().await;
        let env = Arc::new(env);
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let env = Arc::clone(&env);
            tasks.push(tokio::spawn(async move {
                let mut v = t + 1;
                while v <= N {
                    env.publish(v, None).await;
                    v += TASKS;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let published = started.elapsed();
        let total = N * (N + 1) / 2;
        // Unsequenced: the handler's last_seq stays 0; wait for the sum.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        while env.replica().await.0 != total {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                env.replica().await
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let applied = started.elapsed();
        println!(
            "BENCH sequenced={sequenced}: publish {N} events from {TASKS} tasks (one key) {:.0} events/s; applied end to end {:.0} events/s",
            N as f64 / published.as_secs_f64(),
            N as f64 / applied.as_secs_f64()
        );
        match Arc::try_unwrap(env) {
            Ok(env) => {
                rx.shutdown().await;
                drop(env);
            }
            Err(_) => rx.shutdown().await,
        }
    }
}

/// RabbitMQ, but every `n`th publish is lost on the way (the publisher sees
/// an error, so its outbox row is `failed`; nothing reaches the queue).
#[derive(Debug)]
struct Dropping {
    inner: Arc<dyn Transport>,
    every: u64,
    count: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl Transport for Dropping {
    async fn declare_exchange(
        &self,
        exchange: &str,
    ) -> Result<(), eventyard_transport::TransportError> {
        self.inner.declare_exchange(exchange).await
    }
    async fn publish(
        &self,
        msg: OutgoingMessage,
    ) -> Result<(), eventyard_transport::TransportError> {
        let n = self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n.is_multiple_of(self.every) {
            return Err(eventyard_transport::TransportError::Closed);
        }
        self.inner.publish(msg).await
    }
    async fn publish_many(
        &self,
        msgs: Vec<OutgoingMessage>,
    ) -> Vec<Result<(), eventyard_transport::TransportError>> {
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            out.push(self.publish(m).await);
        }
        out
    }
    async fn subscribe(
        &self,
        sub: eventyard_transport::Subscription,
    ) -> Result<Box<dyn eventyard_transport::Consumer>, eventyard_transport::TransportError> {
        self.inner.subscribe(sub).await
    }
    async fn close(&self) -> Result<(), eventyard_transport::TransportError> {
        self.inner.close().await
    }
}

/// Over the real broker: every 4th message is lost, the consumer fetches
/// them from the outbox and takes a snapshot across a producer restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_rabbitmq_lost_messages_and_a_new_epoch() {
    let url = std::env::var("EVENTYARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string());
    let amqp: Arc<dyn Transport> = Arc::new(
        eventyard_transport::AmqpTransport::connect(&url, eventyard_transport::AmqpOptions::new())
            .await
            .unwrap(),
    );
    let wire: Arc<dyn Transport> = Arc::new(Dropping {
        inner: amqp,
        every: 4,
        count: std::sync::atomic::AtomicU64::new(0),
    });
    let env = env_on(
        Backend::Postgres,
        None,
        true,
        wire,
        Arc::new(InProcessTransport::new()),
    )
    .await;
    let rx = env.start(seq_options(params(1000))).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut total = 0;
    for v in 1..=30 {
        total += v;
        env.publish(v, Some(total)).await;
    }
    // 28 is lost; 29 and 30 arrive: every gap is behind a later message.
    env.wait_replica(total, 30, 30).await;
    assert_eq!(
        env.replica().await.2,
        30,
        "every event applied once, by fetch or live"
    );
    env.publisher.reset_epoch(PRODUCER, STREAM).await.unwrap();
    for v in 31..=35 {
        total += v;
        env.publish(v, Some(total)).await;
    }
    // 32 is lost (the 32nd publish); 33–35 arrive after the snapshot of epoch 2.
    env.wait_replica(total, 5, 30).await;
    assert_eq!(env.state().await, Some((2, 5)));
    rx.shutdown().await;
}

/// The recorded inputs replay through a fresh tracker (as `seq simulate`
/// does) to the state the daemon reached.
#[tokio::test]
async fn recorded_trace_replays_to_the_same_state() {
    let env = env(Backend::Sqlite, None).await;
    let dir = std::env::temp_dir().join(unique("trace"));
    let sink = eventyard_receiver::sequenced::TraceSink::open(
        &dir,
        vec![(PRODUCER.to_string(), STREAM.to_string())],
    )
    .unwrap();
    let rx = env
        .start(seq_options(params(1000)).trace(Arc::new(sink)))
        .await;
    env.wait_listening().await;
    env.transport
        .fail_every_nth_publish(3, PublishFault::ConnectionLost);
    for v in 1..=20 {
        env.publish(v, None).await;
    }
    env.transport.clear_faults();
    env.wait_replica(210, 20, 20).await;
    rx.shutdown().await;
    let text = std::fs::read_to_string(&dir).unwrap();
    let _ = std::fs::remove_file(&dir);
    let mut tracker: eventyard_seq::Tracker<()> = eventyard_seq::Tracker::new(params(1000));
    let mut out = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = v["t"].as_u64().unwrap();
        if let Some(m) = v.get("msg") {
            kinds.insert("msg");
            tracker.on_message(
                t,
                m["epoch"].as_u64().unwrap(),
                m["seq"].as_u64().unwrap(),
                (),
                &mut out,
            );
        } else if v.get("tick").is_some() {
            kinds.insert("tick");
            tracker.on_tick(t, &mut out);
        } else if let Some(f) = v.get("fetch_ok") {
            kinds.insert("fetch_ok");
            let seqs = f["seqs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s.as_u64().unwrap(), ()))
                .collect();
            tracker.on_fetch_ok(t, seqs, &mut out);
        } else {
            panic!("unexpected trace line {line}");
        }
    }
    assert!(kinds.contains("fetch_ok"), "{text}");
    assert_eq!(tracker.last(), Some(20), "{text}");
    assert_eq!(tracker.mode(), eventyard_seq::Mode::Synced);
}

//! Shared setup for receiver tests: a fresh database, config rows, a
//! publisher (eventyard-sender) and a receiver on the same transport.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use eventyard_converter::Registry;
use eventyard_core::config::{
    Catalog, ConfigStore, ConfigWatcher, RawReceiveRow, RawSendRow, StaticCatalog, WatchOptions,
};
use eventyard_core::db::{Backend, Db, DbOptions};
use eventyard_core::envelope::{Body, Envelope};
use eventyard_core::with_pool;
use eventyard_core::Compression;
use eventyard_receiver::{
    Handler, HandlerContext, HandlerOutcome, HandlerRegistry, Inbox, InboxRow, InboxStatus,
    Message, Receiver, ReceiverHandle, ReceiverOptions,
};
use eventyard_sender::{Outbox, Publisher, PublisherOptions};
use eventyard_testkit::TestDb;
use eventyard_transport::{InProcessTransport, OutgoingMessage, Transport};

pub const SUBSCRIBER: &str = "BILLING";

pub fn unique(prefix: &str) -> String {
    format!("{prefix}.{}", uuid::Uuid::new_v4().simple())
}

pub fn catalog() -> Arc<dyn Catalog> {
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
            .handlers([
                "log",
                "sql",
                "record",
                "batch_record",
                "slow",
                "flaky",
                "writer",
                "plain",
                "missing",
            ]),
    )
}

pub struct Env {
    pub t: TestDb,
    /// A pool with room for the handler transactions.
    pub db: Db,
    pub store: Arc<ConfigStore>,
    pub watcher: ConfigWatcher,
    pub publisher: Publisher,
    pub transport: Arc<dyn Transport>,
    pub exchange: String,
}

impl Env {
    /// [`Env::new`] over a fresh in-process transport.
    pub async fn in_process(backend: Backend, exchange: &str, receive: Vec<RawReceiveRow>) -> Env {
        Env::new(
            backend,
            Arc::new(InProcessTransport::new()),
            exchange,
            receive,
        )
        .await
    }

    /// A database with send rows (realtime) and the given receive rows.
    pub async fn new(
        backend: Backend,
        transport: Arc<dyn Transport>,
        exchange: &str,
        receive: Vec<RawReceiveRow>,
    ) -> Env {
        let t = TestDb::migrated(backend).await;
        let db = Db::connect_with(&t.url, &DbOptions::default().max_connections(16))
            .await
            .unwrap();
        let store = Arc::new(ConfigStore::new(db.clone()));
        for r in &receive {
            let mut send = RawSendRow::new(&r.event_type);
            send.exchange = exchange.to_string();
            store.upsert_send(&send).await.unwrap();
            store.upsert_receive(r).await.unwrap();
        }
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
            Arc::clone(&transport),
            PublisherOptions::new("CORE"),
        );
        sqlx_exec(
            &db,
            "CREATE TABLE effects (event_id VARCHAR(128) PRIMARY KEY, note VARCHAR(200))",
        )
        .await;
        Env {
            t,
            db,
            store,
            watcher,
            publisher,
            transport,
            exchange: exchange.to_string(),
        }
    }

    pub fn options(&self) -> ReceiverOptions {
        ReceiverOptions::new(SUBSCRIBER)
            .retry_poll_interval(Duration::from_millis(50))
            .handler_timeout(Duration::from_secs(5))
            .lease(Duration::from_secs(5))
            .shutdown_grace(Duration::from_secs(5))
    }

    pub async fn start(
        &self,
        handlers: HandlerRegistry,
        options: ReceiverOptions,
    ) -> ReceiverHandle {
        Receiver::new(
            self.db.clone(),
            Arc::clone(&self.transport),
            self.watcher.subscribe(),
            Arc::new(Registry::with_builtins()),
            Arc::new(handlers),
            options,
        )
        .start()
        .await
        .unwrap()
    }

    /// Changes a receive row and waits until the watcher has loaded it.
    pub async fn update_receive(&self, row: &RawReceiveRow) {
        let before = self.watcher.current().version;
        self.store.upsert_receive(row).await.unwrap();
        self.watcher.check_now();
        eventually(5, || async { self.watcher.current().version > before }).await;
    }

    pub fn inbox(&self) -> Inbox {
        Inbox::new(self.db.clone())
    }

    pub async fn rows(&self, event_type: &str) -> Vec<InboxRow> {
        let mut rows = self
            .inbox()
            .list(&eventyard_receiver::InboxFilter {
                event_type: Some(event_type.to_string()),
                limit: Some(100_000),
                ..Default::default()
            })
            .await
            .unwrap();
        rows.reverse();
        rows
    }

    pub async fn count(&self, event_type: &str, status: InboxStatus) -> i64 {
        self.inbox()
            .count(status, Some(SUBSCRIBER), Some(event_type))
            .await
            .unwrap()
    }

    /// Waits until `n` rows of the type have `status`.
    pub async fn wait_status(&self, event_type: &str, status: InboxStatus, n: i64, secs: u64) {
        let ok = try_eventually(secs, || async { self.count(event_type, status).await >= n }).await;
        if !ok {
            let rows = self.rows(event_type).await;
            let summary: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "{} {} a={} {:?}",
                        r.event_id, r.status, r.attempts, r.result
                    )
                })
                .collect();
            panic!(
                "expected {n} `{status}` rows of {event_type}; have {}:\n{}",
                self.count(event_type, status).await,
                summary.join("\n")
            );
        }
    }

    pub async fn effects(&self) -> Vec<String> {
        with_pool!(&self.db, pool => sqlx::query_scalar::<_, String>("SELECT event_id FROM effects ORDER BY event_id")
            .fetch_all(pool).await.unwrap())
    }

    pub async fn publish(&self, event_type: &str, account: &str) -> String {
        let value = serde_json::json!({ "account": account, "name": format!("name-{account}") });
        self.publisher
            .publish(event_type, &value)
            .await
            .unwrap()
            .event_id
    }
}

/// A gzip envelope of `event_type` for `account`, packed into a message to
/// `exchange` that can be published as it is, again and again (the same
/// event id every time): `(event id, message)`.
pub fn packed_message(
    exchange: &str,
    event_type: &str,
    account: &str,
) -> (String, OutgoingMessage) {
    let envelope = Envelope::builder(event_type, "CORE")
        .compression(Compression::Gzip)
        .build(Body::Xml(format!(
            "<{event_type}><account>{account}</account><name>n</name></{event_type}>"
        )));
    let id = envelope.header.event_id.to_string();
    let bytes = eventyard_core::envelope::pack(&envelope).unwrap();
    let msg = OutgoingMessage::new(exchange, event_type, &id, event_type, bytes);
    (id, msg)
}

pub async fn sqlx_exec(db: &Db, sql: &str) {
    with_pool!(db, pool => { sqlx::query(sql).execute(pool).await.unwrap(); });
}

/// A receive row of `event_type` on `exchange` with a unique queue.
pub fn receive_row(event_type: &str, exchange: &str, mode: &str, handler: &str) -> RawReceiveRow {
    let mut r = RawReceiveRow::new(event_type, SUBSCRIBER);
    r.exchange = exchange.to_string();
    r.queue = Some(unique("q"));
    r.process_mode = mode.to_string();
    r.handler_id = (mode != "none").then(|| handler.to_string());
    r.backoff_ms = 20;
    r.converter_rules = Some(format!(
        "kind = \"xml\"\n[[fields]]\nname = \"account\"\npath = \"{event_type}/account\"\n\
         [[fields]]\nname = \"name\"\npath = \"{event_type}/name\"\n"
    ));
    if mode == "batch" {
        r.batch_cron = Some("@every 300ms".into());
    }
    r
}

pub async fn try_eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn eventually<F, Fut>(secs: u64, f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        try_eventually(secs, f).await,
        "condition not met in {secs}s"
    );
}

/// Records every message it sees, writes an effect row in the handler
/// transaction, and answers with `outcome(msg)`.
pub struct Recorder {
    pub seen: Mutex<Vec<Message>>,
    pub calls: AtomicUsize,
    pub running: AtomicUsize,
    pub max_running: AtomicUsize,
    pub delay: Duration,
    pub outcome: Box<dyn Fn(&Message) -> HandlerOutcome + Send + Sync>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Self::with(Duration::ZERO, |m| {
            HandlerOutcome::done(format!("ok {}", m.event_id))
        })
    }

    pub fn with(
        delay: Duration,
        outcome: impl Fn(&Message) -> HandlerOutcome + Send + Sync + 'static,
    ) -> Arc<Recorder> {
        Arc::new(Recorder {
            seen: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            delay,
            outcome: Box::new(outcome),
        })
    }

    /// A registry with this recorder as the handler `record`.
    pub fn handlers(self: &Arc<Self>) -> HandlerRegistry {
        let mut handlers = HandlerRegistry::new();
        handlers.register("record", self.clone());
        handlers
    }

    pub fn seen(&self) -> Vec<Message> {
        self.seen.lock().unwrap().clone()
    }

    pub fn calls_per_event(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for msg in self.seen() {
            *m.entry(msg.event_id).or_insert(0) += 1;
        }
        m
    }

    pub fn max_running(&self) -> usize {
        self.max_running.load(Ordering::SeqCst)
    }

    pub fn reset_max(&self) {
        self.max_running.store(0, Ordering::SeqCst);
    }
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, msg: &Message, ctx: &mut HandlerContext<'_>) -> HandlerOutcome {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(msg.clone());
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let written = ctx
            .execute(
                "INSERT INTO effects (event_id, note) VALUES ($1, $2)",
                &[&msg.event_id, &format!("attempt {}", msg.attempt)],
            )
            .await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if let Err(e) = written {
            return HandlerOutcome::fail(format!("effect insert failed: {e}"));
        }
        (self.outcome)(msg)
    }
}

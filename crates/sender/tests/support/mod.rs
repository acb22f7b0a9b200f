//! Shared setup for sender tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use eventyard_converter::Registry;
use eventyard_core::config::{
    Catalog, ConfigStore, ConfigWatcher, RawSendRow, StaticCatalog, WatchOptions,
};
use eventyard_core::db::Backend;
use eventyard_sender::{Outbox, OutboxRow, OutboxStatus, Publisher, PublisherOptions};
use eventyard_testkit::TestDb;
use eventyard_transport::{Consumer, Delivery, Subscription, Transport};

pub struct Env {
    pub t: TestDb,
    pub store: Arc<ConfigStore>,
    pub watcher: ConfigWatcher,
    pub publisher: Publisher,
    pub transport: Arc<dyn Transport>,
    pub exchange: String,
}

pub fn catalog() -> Arc<dyn Catalog> {
    let registry = Registry::with_builtins();
    Arc::new(
        StaticCatalog::new()
            .send_converters(registry.send_ids().map(str::to_string).collect::<Vec<_>>())
            .send_converters(["delimited", "multi_delimited", "fixed_width"]),
    )
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}.{}", uuid::Uuid::new_v4().simple())
}

/// A send row on a unique exchange.
pub fn row(event_type: &str, mode: &str, exchange: &str) -> RawSendRow {
    let mut r = RawSendRow::new(event_type);
    r.send_mode = mode.into();
    r.exchange = exchange.into();
    if mode != "realtime" {
        r.batch_cron = Some("@every 1h".into());
    }
    r
}

impl Env {
    pub async fn new(
        backend: Backend,
        transport: Arc<dyn Transport>,
        rows: Vec<RawSendRow>,
        options: PublisherOptions,
    ) -> Env {
        let t = TestDb::migrated(backend).await;
        let exchange = rows
            .first()
            .map(|r| r.exchange.clone())
            .unwrap_or_else(|| unique("ex"));
        let store = Arc::new(ConfigStore::new(t.db.clone()));
        for r in &rows {
            store.upsert_send(r).await.unwrap();
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
            Outbox::new(t.db.clone()),
            watcher.subscribe(),
            Arc::new(Registry::with_builtins()),
            Arc::clone(&transport),
            options,
        );
        Env {
            t,
            store,
            watcher,
            publisher,
            transport,
            exchange,
        }
    }

    pub async fn subscribe(&self, queue: &str, binding: &str) -> Box<dyn Consumer> {
        self.transport
            .declare_exchange(&self.exchange)
            .await
            .unwrap();
        self.transport
            .subscribe(
                Subscription::new(queue, &self.exchange)
                    .bind(binding)
                    .prefetch(500),
            )
            .await
            .unwrap()
    }

    /// Outbox rows of `event_type` in `status`.
    pub async fn count(&self, status: OutboxStatus, event_type: &str) -> i64 {
        self.publisher
            .outbox()
            .count(status, Some(event_type))
            .await
            .unwrap()
    }

    pub async fn row(&self, event_id: &str) -> OutboxRow {
        self.publisher
            .outbox()
            .get(event_id)
            .await
            .unwrap()
            .expect("the outbox row exists")
    }
}

/// The message ids of `deliveries`, sorted.
pub fn sorted_ids(deliveries: &[Delivery]) -> Vec<String> {
    let mut ids: Vec<String> = deliveries
        .iter()
        .map(|d| d.message_id.clone().unwrap())
        .collect();
    ids.sort();
    ids
}

/// How many times each message id was delivered.
pub fn deliveries_by_id(deliveries: &[Delivery]) -> std::collections::HashMap<String, u32> {
    let mut seen = std::collections::HashMap::new();
    for d in deliveries {
        *seen.entry(d.message_id.clone().unwrap()).or_default() += 1;
    }
    seen
}

/// Receives `n` deliveries (acking each), failing after `secs` seconds.
pub async fn receive(consumer: &mut Box<dyn Consumer>, n: usize, secs: u64) -> Vec<Delivery> {
    let mut got = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while got.len() < n {
        let d = tokio::time::timeout_at(deadline, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} deliveries arrived", got.len()))
            .expect("consumer open");
        d.acker.ack().await.unwrap();
        got.push(d);
    }
    got
}

/// Asserts that nothing more arrives within `ms`.
pub async fn nothing_more(consumer: &mut Box<dyn Consumer>, ms: u64) {
    if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(ms), consumer.next()).await {
        panic!("unexpected delivery {:?}", d.message_id);
    }
}

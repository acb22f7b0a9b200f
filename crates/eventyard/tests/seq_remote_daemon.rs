//! Two embedded daemons on separate databases: the producer's (publisher
//! role, its resync responder on) loses every 4th event on the way; the
//! consumer's (`[resync] source = "amqp"`) fetches the missing ones from
//! the producer's daemon over RabbitMQ and applies every event once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use eventyard::daemon::{Daemon, Settings};
use eventyard_core::config::{ConfigStore, RawSendRow};
use eventyard_core::db::Backend;
use eventyard_sender::EventMeta;
use eventyard_testkit::TestDb;
use eventyard_transport::{
    AmqpOptions, AmqpTransport, Consumer, OutgoingMessage, Subscription, Transport, TransportError,
};

/// RabbitMQ, but every `every`th event published on `exchange` is lost
/// (replies and other exchanges pass).
#[derive(Debug)]
struct Dropping {
    inner: Arc<dyn Transport>,
    exchange: String,
    every: u64,
    count: AtomicU64,
}

#[async_trait]
impl Transport for Dropping {
    async fn declare_exchange(&self, exchange: &str) -> Result<(), TransportError> {
        self.inner.declare_exchange(exchange).await
    }
    async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
        if msg.exchange == self.exchange {
            let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
            if n.is_multiple_of(self.every) {
                return Err(TransportError::Closed);
            }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_daemon_resyncs_from_the_producer_daemon_over_amqp() {
    let resync_exchange = format!("resync.{}", uuid::Uuid::new_v4().simple());
    let producer_id = format!("CORE{}", uuid::Uuid::new_v4().simple());

    // The consumer's database: the receive row (its send row is unused).
    let ct = TestDb::migrated(Backend::Postgres).await;
    let (_cstore, event_type, exchange, _queue) = support::sequenced_sql_type(&ct).await;

    // The producer's database: the same event type's send row only.
    let pt = TestDb::migrated(Backend::Postgres).await;
    let pstore = ConfigStore::new(pt.db.clone());
    let mut send = RawSendRow::new(&event_type);
    send.exchange = exchange.clone();
    send.sequenced = true;
    send.retry_count = 0;
    pstore.upsert_send(&send).await.unwrap();

    let consumer = Daemon::new(
        Settings::from_toml(&format!(
            "database_url = \"{}\"\namqp_url = \"{}\"\nsystem_id = \"CRM\"\nroles = [\"subscriber\"]\n\
             [http]\nlisten = \"\"\n[config]\npoll_interval = \"200ms\"\n\
             [resync]\nsource = \"amqp\"\ntimeout = \"2s\"\nexchange = \"{resync_exchange}\"\n",
            ct.url,
            eventyard_testkit::amqp_url()
        ))
        .unwrap(),
    )
    .start()
    .await
    .unwrap();

    let amqp: Arc<dyn Transport> = Arc::new(
        AmqpTransport::connect(&eventyard_testkit::amqp_url(), AmqpOptions::new())
            .await
            .unwrap(),
    );
    let producer = Daemon::new(
        Settings::from_toml(&format!(
            "database_url = \"{}\"\nsystem_id = \"{producer_id}\"\nroles = [\"publisher\"]\n\
             [http]\nlisten = \"\"\n[resync]\nexchange = \"{resync_exchange}\"\n",
            pt.url
        ))
        .unwrap(),
    )
    .transport(Arc::new(Dropping {
        inner: amqp,
        exchange: exchange.clone(),
        every: 4,
        count: AtomicU64::new(0),
    }))
    .start()
    .await
    .unwrap();
    // The consumer's queue is declared by its listener.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    for v in 1..=21 {
        let _ = producer
            .publisher()
            .publish_with(
                &event_type,
                &serde_json::json!({ "v": v }),
                EventMeta::default(),
            )
            .await;
    }
    let failed = support::scalar(
        &pt.db,
        "SELECT COUNT(*) FROM ey_outbox WHERE status = 'failed'",
    )
    .await;
    assert!(failed >= 5, "every 4th event was lost ({failed})");
    support::wait_count(
        &ct.db,
        "SELECT COUNT(*) FROM applied",
        21,
        60,
        "events applied on the consumer",
    )
    .await;
    assert_eq!(
        support::scalar(
            &ct.db,
            "SELECT CAST(COALESCE(SUM(v), 0) AS BIGINT) FROM applied"
        )
        .await,
        231
    );
    assert_eq!(
        support::scalar(&ct.db, "SELECT COUNT(DISTINCT event_id) FROM applied").await,
        21,
        "each event applied once"
    );
    assert_eq!(
        support::scalar(&ct.db, "SELECT COUNT(*) FROM ey_outbox").await,
        0,
        "the consumer's database has none of the producer's rows"
    );
    producer.shutdown().await;
    consumer.shutdown().await;
}

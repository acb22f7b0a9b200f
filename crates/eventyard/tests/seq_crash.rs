//! A sequenced stream over RabbitMQ into a daemon subprocess, with messages
//! lost on the way (a long run of them, and every 37th): the daemon fetches
//! them from the outbox, is killed (SIGKILL) in the middle of the resync and
//! started again, and ends with every event applied exactly once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventyard_core::config::{
    ConfigStore, ConfigWatcher, RawReceiveRow, RawSendRow, StaticCatalog, WatchOptions,
};
use eventyard_core::db::Backend;
use eventyard_core::with_pool;
use eventyard_sender::{EventMeta, Outbox, Publisher, PublisherOptions};
use eventyard_testkit::TestDb;
use eventyard_transport::{
    AmqpOptions, AmqpTransport, InProcessTransport, OutgoingMessage, PublishFault, Transport,
};
use support::{free_port, scalar, start_daemon};

const EVENTS: u64 = 3_000;

fn lost(n: u64) -> bool {
    (1001..=1600).contains(&n) || n.is_multiple_of(37)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_resync_resumes_and_applies_everything_once_in_order() {
    let t = TestDb::migrated(Backend::Postgres).await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (event_type, exchange) = (format!("SEQ.{suffix}"), format!("ex.{suffix}"));
    with_pool!(&t.db, pool => {
        // No unique key on purpose: a second application would show.
        sqlx::query("CREATE TABLE applied (id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL, v BIGINT NOT NULL)")
            .execute(pool).await.unwrap();
    });
    let store = Arc::new(ConfigStore::new(t.db.clone()));
    let mut send = RawSendRow::new(&event_type);
    send.exchange = exchange.clone();
    send.sequenced = true;
    send.retry_count = 0;
    store.upsert_send(&send).await.unwrap();
    let mut recv = RawReceiveRow::new(&event_type, "CRM");
    recv.exchange = exchange.clone();
    recv.queue = Some(format!("q.{suffix}"));
    recv.handler_id = Some("sql".into());
    recv.sequenced = true;
    recv.converter_rules = Some(format!(
        "kind = \"xml\"\n[[fields]]\nname = \"v\"\npath = \"{event_type}/v\"\n"
    ));
    store.upsert_receive(&recv).await.unwrap();
    with_pool!(&t.db, pool => {
        sqlx::query("UPDATE ey_receive_config SET handler_config = 'INSERT INTO applied (event_id, v) VALUES (:event_id, :v::bigint)'")
            .execute(pool).await.unwrap();
    });

    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("eventyard.toml");
    let port = free_port();
    std::fs::write(
        &settings,
        format!(
            "database_url = \"{}\"\namqp_url = \"{}\"\nsystem_id = \"CRM\"\ninstance_id = \"crm-1\"\nroles = [\"subscriber\"]\n[http]\nlisten = \"127.0.0.1:{port}\"\n[config]\npoll_interval = \"200ms\"\n",
            t.url,
            eventyard_testkit::amqp_url()
        ),
    )
    .unwrap();
    let mut daemon = start_daemon(&settings, port);

    let amqp: Arc<dyn Transport> = Arc::new(
        AmqpTransport::connect(&eventyard_testkit::amqp_url(), AmqpOptions::default())
            .await
            .unwrap(),
    );
    // The framework's publisher writes the outbox but never reaches the
    // wire; the test then sends what is not "lost" to RabbitMQ itself.
    let nowhere = Arc::new(InProcessTransport::new());
    nowhere.set_publish_failure(Some(PublishFault::ConnectionLost));
    let transport: Arc<dyn Transport> = nowhere;
    let watcher = ConfigWatcher::start(
        Arc::clone(&store),
        Arc::new(
            StaticCatalog::new()
                .send_converters(["xml"])
                .receive_converters(["xml"])
                .handlers(["sql"]),
        ),
        WatchOptions::default(),
    )
    .await
    .unwrap();
    let publisher = Publisher::new(
        Outbox::new(t.db.clone()),
        watcher.subscribe(),
        Arc::new(eventyard_converter::Registry::with_builtins()),
        transport,
        PublisherOptions::new("CORE"),
    );
    let (p, et, ex) = (publisher.clone(), event_type.clone(), exchange.clone());
    let producer = tokio::spawn(async move {
        for v in 1..=EVENTS {
            let meta = EventMeta {
                producer_id: Some("P1".into()),
                stream: Some("s".into()),
                ..EventMeta::default()
            };
            // Fails on the wire; the outbox row (numbered) stays, `failed`.
            let err = p
                .publish_with(&et, &serde_json::json!({ "v": v }), meta)
                .await
                .unwrap_err();
            let eventyard_sender::SendError::PublishFailed { event_id, .. } = err else {
                panic!("{err}");
            };
            if lost(v) {
                continue;
            }
            let row = p.outbox().get(&event_id).await.unwrap().unwrap();
            amqp.publish(OutgoingMessage {
                exchange: ex.clone(),
                routing_key: et.clone(),
                message_id: event_id,
                event_type: et.clone(),
                content_encoding: Some("gzip".into()),
                headers: Default::default(),
                payload: row.payload,
            })
            .await
            .unwrap();
        }
    });

    // Kill the daemon while it fetches the 600 lost events behind seq 1000.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = scalar(&t.db, "SELECT COUNT(*) FROM applied").await;
        if done >= 1100 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon made no progress ({done})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    producer.await.unwrap();
    let at_kill = scalar(&t.db, "SELECT COUNT(*) FROM applied").await;
    assert!(
        at_kill < EVENTS as i64,
        "killed mid-stream ({at_kill} applied)"
    );

    // Start it again: it resumes from ey_stream_state and the stored rows.
    let mut daemon = start_daemon(&settings, port);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let done = scalar(&t.db, "SELECT COUNT(*) FROM applied").await;
        if done >= EVENTS as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {EVENTS} applied after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();

    assert_eq!(
        scalar(&t.db, "SELECT COUNT(*) FROM applied").await,
        EVENTS as i64,
        "every event applied exactly once"
    );
    // Applied in seq order: the values come out sorted by insertion.
    let out_of_order = scalar(
        &t.db,
        "SELECT COUNT(*) FROM (SELECT v, LAG(v) OVER (ORDER BY id) AS prev FROM applied) x WHERE v <> prev + 1",
    )
    .await;
    assert_eq!(out_of_order, 0, "applied strictly in order");
    assert_eq!(
        scalar(
            &t.db,
            "SELECT last_seq FROM ey_stream_state WHERE producer_id = 'P1' AND stream = 's'"
        )
        .await,
        EVENTS as i64
    );
}

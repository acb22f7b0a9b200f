//! A sequenced stream over RabbitMQ into a daemon subprocess, with messages
//! lost on the way (a long run of them, and every 37th): the daemon fetches
//! them from the outbox, is killed (SIGKILL) in the middle of the resync and
//! started again, and ends with every event applied exactly once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use eventyard_core::config::{ConfigWatcher, StaticCatalog, WatchOptions};
use eventyard_core::db::Backend;
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
    let (store, event_type, exchange, _queue) = support::sequenced_sql_type(&t).await;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let settings = support::subscriber_settings(dir.path(), &t, "crm-1", port);
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
                order: Default::default(),
            })
            .await
            .unwrap();
        }
    });

    // Kill the daemon while it fetches the 600 lost events behind seq 1000.
    support::wait_count(
        &t.db,
        "SELECT COUNT(*) FROM applied",
        1100,
        120,
        "before the kill",
    )
    .await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    producer.await.unwrap();
    let at_kill = scalar(&t.db, "SELECT COUNT(*) FROM applied").await;
    assert!(
        at_kill < EVENTS as i64,
        "killed mid-stream ({at_kill} applied)"
    );

    // Start it again: it resumes from ey_stream_state and the stored rows.
    let daemon = start_daemon(&settings, port);
    support::wait_count(
        &t.db,
        "SELECT COUNT(*) FROM applied",
        EVENTS as i64,
        180,
        "after the restart",
    )
    .await;
    support::stop(daemon);

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

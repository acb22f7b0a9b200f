//! Two daemon subprocesses of one subscriber (different instance ids)
//! consume a sequenced event type over RabbitMQ; its queue is declared with
//! single-active-consumer, so one of them applies. Messages are lost on the
//! way (a long run of them, and every 37th) and fetched from the outbox. The
//! active daemon is killed (SIGKILL) mid-stream; the other takes over from
//! `ey_stream_state` and the stored rows, and every event ends applied
//! exactly once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use eventyard_core::config::{ConfigWatcher, StaticCatalog, WatchOptions};
use eventyard_core::db::Backend;
use eventyard_sender::{EventMeta, Outbox, Publisher, PublisherOptions};
use eventyard_testkit::TestDb;
use eventyard_transport::{
    AmqpOptions, AmqpTransport, InProcessTransport, OutgoingMessage, PublishFault, Subscription,
    Transport,
};
use support::{free_port, scalar, start_daemon};

const EVENTS: u64 = 2_000;
/// Published while only the first daemon runs, so that it is the active one.
const FIRST: u64 = 10;

fn lost(n: u64) -> bool {
    (801..=1200).contains(&n) || n.is_multiple_of(37)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_daemon_takes_over_a_sequenced_queue_and_applies_everything_once_in_order() {
    let t = TestDb::migrated(Backend::Postgres).await;
    let (store, event_type, exchange, queue) = support::sequenced_sql_type(&t).await;

    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let settings_a = support::subscriber_settings(dir.path(), &t, "crm-a", port_a);
    let settings_b = support::subscriber_settings(dir.path(), &t, "crm-b", port_b);
    let daemon_a = start_daemon(&settings_a, port_a);

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
    let (queue, probe) = (queue.clone(), Arc::clone(&amqp));
    let probe_exchange = exchange.clone();
    let publish = move |range: std::ops::RangeInclusive<u64>| {
        let (p, amqp) = (publisher.clone(), Arc::clone(&amqp));
        let (et, ex) = (event_type.clone(), exchange.clone());
        tokio::spawn(async move {
            for v in range {
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
        })
    };

    // Only A runs: it is the queue's active consumer.
    publish(1..=FIRST).await.unwrap();
    support::wait_count(
        &t.db,
        "SELECT COUNT(*) FROM applied",
        FIRST as i64,
        60,
        "daemon A alone",
    )
    .await;
    // B subscribes too and waits as the standby consumer.
    let daemon_b = start_daemon(&settings_b, port_b);
    let producer = publish(FIRST + 1..=EVENTS);

    // Kill A (SIGKILL) mid-stream, while it fetches the lost run behind 800.
    support::wait_count(&t.db, "SELECT COUNT(*) FROM applied", 900, 120, "daemon A").await;
    let mut daemon_a = daemon_a;
    daemon_a.kill().unwrap();
    daemon_a.wait().unwrap();
    let at_kill = scalar(&t.db, "SELECT COUNT(*) FROM applied").await;
    assert!(
        at_kill < EVENTS as i64,
        "killed mid-stream ({at_kill} applied)"
    );
    producer.await.unwrap();

    // B takes over from ey_stream_state and the stored rows.
    support::wait_count(
        &t.db,
        "SELECT COUNT(*) FROM applied",
        EVENTS as i64,
        180,
        "after the failover",
    )
    .await;
    // Let anything that would apply twice show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    support::stop(daemon_b);

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
    // The queue was declared single-active-consumer: declaring it without
    // the argument is refused, with a message that says what to do.
    let err = match probe
        .subscribe(Subscription::new(&queue, &probe_exchange))
        .await
    {
        Ok(_) => panic!("redeclaring without x-single-active-consumer must fail"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("x-single-active-consumer = false") && err.contains("new queue name"),
        "{err}"
    );
    // B applied the rest: the rows done after the kill were claimed and
    // finished by B (A was dead), and nothing waits any more.
    assert_eq!(
        scalar(
            &t.db,
            "SELECT COUNT(*) FROM ey_inbox WHERE status IN ('received', 'retrying')"
        )
        .await,
        0
    );
}

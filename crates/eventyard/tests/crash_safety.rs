//! Kill the daemon (SIGKILL) in the middle of 10,000 events and start it
//! again: every event ends `done` exactly once, and the handler — the built-in
//! `sql` handler recording event ids in an application table inside the
//! `done` transaction — saw each event exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use eventyard_core::config::{
    ConfigStore, ConfigWatcher, RawReceiveRow, RawSendRow, StaticCatalog, WatchOptions,
};
use eventyard_core::db::Backend;
use eventyard_core::with_pool;
use eventyard_sender::{Outbox, Publisher, PublisherOptions};
use eventyard_testkit::TestDb;
use eventyard_transport::{AmqpOptions, AmqpTransport, Transport};
use support::{free_port, scalar, start_daemon};

const EVENTS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_and_processes_nothing_twice() {
    let t = TestDb::migrated(Backend::Postgres).await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (event_type, exchange) = (format!("CRASH.{suffix}"), format!("ex.{suffix}"));
    let queue = format!("q.{suffix}");
    with_pool!(&t.db, pool => {
        // No unique key on purpose: a second processing would show as a duplicate row.
        sqlx::query("CREATE TABLE handled (event_id TEXT NOT NULL)").execute(pool).await.unwrap();
    });
    let store = Arc::new(ConfigStore::new(t.db.clone()));
    let mut send = RawSendRow::new(&event_type);
    send.exchange = exchange.clone();
    send.persist = false;
    store.upsert_send(&send).await.unwrap();
    let mut recv = RawReceiveRow::new(&event_type, "CRM");
    recv.exchange = exchange.clone();
    recv.queue = Some(queue.clone());
    recv.handler_id = Some("sql".into());
    recv.workers = 8;
    store.upsert_receive(&recv).await.unwrap();
    with_pool!(&t.db, pool => {
        sqlx::query("UPDATE ey_receive_config SET handler_config = 'INSERT INTO handled (event_id) VALUES (:event_id)'")
            .execute(pool).await.unwrap();
    });

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let settings = support::subscriber_settings(dir.path(), &t, "crm-1", port);
    let mut daemon = start_daemon(&settings, port);

    // Publish 10,000 events from 32 tasks while the daemon consumes.
    let transport: Arc<dyn Transport> = Arc::new(
        AmqpTransport::connect(&eventyard_testkit::amqp_url(), AmqpOptions::default())
            .await
            .unwrap(),
    );
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
        Arc::clone(&transport),
        PublisherOptions::new("CORE"),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..32 {
        let (p, et) = (publisher.clone(), event_type.clone());
        tasks.spawn(async move {
            for i in (w..EVENTS).step_by(32) {
                p.publish(&et, &serde_json::json!({ "n": i }))
                    .await
                    .unwrap();
            }
        });
    }

    // Kill the daemon once it is well into the stream.
    support::wait_count(
        &t.db,
        "SELECT COUNT(*) FROM handled",
        1500,
        120,
        "before the kill",
    )
    .await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let at_kill = scalar(&t.db, "SELECT COUNT(*) FROM handled").await;
    assert!(
        at_kill < EVENTS as i64,
        "killed mid-stream ({at_kill} handled)"
    );

    // Start it again: it finishes the rest.
    let daemon = start_daemon(&settings, port);
    support::wait_count(
        &t.db,
        "SELECT COUNT(*) FROM ey_inbox WHERE status = 'done'",
        EVENTS as i64,
        180,
        "after the restart",
    )
    .await;
    support::stop(daemon);

    assert_eq!(
        scalar(&t.db, "SELECT COUNT(*) FROM ey_inbox").await,
        EVENTS as i64,
        "every event stored once"
    );
    assert_eq!(
        scalar(&t.db, "SELECT COUNT(*) FROM ey_inbox WHERE status = 'done'").await,
        EVENTS as i64
    );
    assert_eq!(
        scalar(&t.db, "SELECT COUNT(*) FROM handled").await,
        EVENTS as i64,
        "no event handled twice"
    );
    assert_eq!(
        scalar(&t.db, "SELECT COUNT(DISTINCT event_id) FROM handled").await,
        EVENTS as i64,
        "none lost"
    );
    if let Ok(amqp) =
        AmqpTransport::connect(&eventyard_testkit::amqp_url(), AmqpOptions::default()).await
    {
        let _ = amqp.delete_queue(&queue).await;
        let _ = amqp.delete_exchange(&exchange).await;
    }
}

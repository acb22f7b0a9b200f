//! The database goes away under a running subscriber: nothing is acknowledged
//! while it is unreachable, and everything is stored and processed once it is
//! back. The database connection runs through a TCP proxy the test controls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventyard::daemon::{Daemon, Settings};
use eventyard_core::config::{ConfigStore, RawReceiveRow, RawSendRow};
use eventyard_core::db::Backend;
use eventyard_core::with_pool;
use eventyard_testkit::proxy::Proxy;
use eventyard_testkit::TestDb;
use eventyard_transport::InProcessTransport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_acked_while_the_database_is_down_and_all_is_stored_after() {
    let t = TestDb::migrated(Backend::Postgres).await;
    let store = ConfigStore::new(t.db.clone());
    let mut send = RawSendRow::new("METER.READ");
    send.persist = false; // publishing needs no database, so only the subscriber feels the outage
    store.upsert_send(&send).await.unwrap();
    let mut recv = RawReceiveRow::new("METER.READ", "GRID");
    recv.handler_id = Some("log".into());
    store.upsert_receive(&recv).await.unwrap();

    let proxy = Proxy::start("127.0.0.1:5432").await;
    let db_name = t.url.rsplit('/').next().unwrap().to_string();
    let proxied = format!("postgres://postgres@{}/{db_name}", proxy.addr());
    let transport = Arc::new(InProcessTransport::new());
    let mut settings = Settings::from_toml(
        "system_id = \"GRID\"\n[http]\nlisten = \"\"\n[retention]\nkeep = \"0s\"\n[config]\npoll_interval = \"200ms\"",
    )
    .unwrap();
    settings.database_url = Some(proxied);
    let running = Daemon::new(settings)
        .transport(transport.clone())
        .start()
        .await
        .unwrap();

    let done = || async {
        with_pool!(&t.db, pool => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ey_inbox WHERE status = 'done'").fetch_one(pool).await.unwrap())
    };
    for i in 0..30 {
        running.publisher().publish("METER.READ", &i).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while done().await < 30 {
        assert!(Instant::now() < deadline, "the first 30 were not processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The database becomes unreachable.
    proxy.cut(Duration::from_secs(3600));
    for i in 30..50 {
        running.publisher().publish("METER.READ", &i).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let depth = transport.queue_depth("ey.GRID.METER.READ").unwrap();
    assert_eq!(
        depth.ready + depth.unacked,
        20,
        "nothing acknowledged while the database is down: {depth:?}"
    );
    let stored = with_pool!(&t.db, pool => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ey_inbox").fetch_one(pool).await.unwrap());
    assert_eq!(stored, 30);

    // It comes back: the held deliveries are stored, acked and processed.
    proxy.allow();
    let deadline = Instant::now() + Duration::from_secs(60);
    while done().await < 50 {
        assert!(
            Instant::now() < deadline,
            "only {} of 50 done after the database came back",
            done().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let depth = transport.queue_depth("ey.GRID.METER.READ").unwrap();
        if depth.ready + depth.unacked == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries still unacked: {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = with_pool!(&t.db, pool => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ey_inbox").fetch_one(pool).await.unwrap());
    assert_eq!(stored, 50, "each event stored once");
    running.shutdown().await;
}

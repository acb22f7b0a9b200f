//! Live reload of config rows edited with plain SQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use eventyard_core::config::{
    Catalog, ConfigStore, ConfigWatcher, RawSendRow, SendMode, StaticCatalog, WatchOptions,
};
use eventyard_core::db::{Backend, Db};
use eventyard_core::with_pool;
use eventyard_testkit::TestDb;

fn catalog() -> Arc<dyn Catalog> {
    Arc::new(StaticCatalog::new().send_converters(["xml"]))
}

async fn exec(db: &Db, sql: &str) {
    with_pool!(db, pool => { sqlx::query(sql).execute(pool).await.unwrap(); });
}

async fn next_reload(
    rx: &mut tokio::sync::watch::Receiver<Arc<eventyard_core::config::Loaded>>,
) -> Arc<eventyard_core::config::Loaded> {
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("a reload within 10 s")
        .unwrap();
    Arc::clone(&rx.borrow_and_update())
}

#[tokio::test]
async fn postgres_notifies_without_waiting_for_the_poll() {
    let t = TestDb::migrated(Backend::Postgres).await;
    let store = Arc::new(ConfigStore::new(t.db.clone()));
    store
        .upsert_send(&RawSendRow::new("ACCT.OPENED"))
        .await
        .unwrap();
    // A poll interval far longer than the test: only NOTIFY can deliver the change.
    let watcher = ConfigWatcher::start(
        Arc::clone(&store),
        catalog(),
        WatchOptions::default().poll_interval(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    let mut rx = watcher.subscribe();
    assert_eq!(
        watcher
            .current()
            .config
            .send("ACCT.OPENED")
            .unwrap()
            .send_mode,
        SendMode::Realtime
    );
    // Give the listener a moment to subscribe.
    tokio::time::sleep(Duration::from_millis(200)).await;
    exec(
        &t.db,
        "UPDATE ey_send_config SET send_mode = 'batch', batch_cron = '@every 5s' WHERE event_type = 'ACCT.OPENED'",
    )
    .await;
    let loaded = next_reload(&mut rx).await;
    assert_eq!(
        loaded.config.send("ACCT.OPENED").unwrap().send_mode,
        SendMode::Batch
    );
}

#[tokio::test]
async fn polling_picks_up_edits_and_deletes_and_keeps_the_last_valid_row() {
    for backend in [Backend::Sqlite, Backend::MySql] {
        let t = TestDb::migrated(backend).await;
        let store = Arc::new(ConfigStore::new(t.db.clone()));
        store
            .upsert_send(&RawSendRow::new("ACCT.OPENED"))
            .await
            .unwrap();
        store
            .upsert_send(&RawSendRow::new("ACCT.CLOSED"))
            .await
            .unwrap();
        let watcher = ConfigWatcher::start(
            Arc::clone(&store),
            catalog(),
            WatchOptions::default().poll_interval(Duration::from_millis(50)),
        )
        .await
        .unwrap();
        let mut rx = watcher.subscribe();

        exec(
            &t.db,
            "UPDATE ey_send_config SET retry_count = 9 WHERE event_type = 'ACCT.OPENED'",
        )
        .await;
        let loaded = next_reload(&mut rx).await;
        assert_eq!(
            loaded.config.send("ACCT.OPENED").unwrap().retry_count,
            9,
            "{backend:?}"
        );

        exec(
            &t.db,
            "DELETE FROM ey_send_config WHERE event_type = 'ACCT.CLOSED'",
        )
        .await;
        let loaded = next_reload(&mut rx).await;
        assert!(
            loaded.config.send("ACCT.CLOSED").is_none(),
            "{backend:?}: deletes apply"
        );

        // An invalid edit: reported, and the last valid version keeps serving.
        exec(
            &t.db,
            "UPDATE ey_send_config SET converter_id = 'nope' WHERE event_type = 'ACCT.OPENED'",
        )
        .await;
        let loaded = next_reload(&mut rx).await;
        assert_eq!(loaded.problems.len(), 1, "{backend:?}");
        assert_eq!(loaded.problems[0].column, "converter_id");
        let kept = loaded.config.send("ACCT.OPENED").unwrap();
        assert_eq!(kept.converter_id, "xml", "{backend:?}");
        assert_eq!(kept.retry_count, 9);
    }
}

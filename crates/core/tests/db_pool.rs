//! The pool's connection checks (`DbOptions::ping_idle_after`), against a
//! real PostgreSQL behind a proxy the test cuts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::time::Duration;

use eventyard_core::db::{Db, DbOptions};
use eventyard_testkit::proxy::Proxy;
use eventyard_testkit::TestDb;

/// A pool of one connection to a fresh database through a new proxy, with
/// `ping_idle_after`, its connection opened and used once.
async fn pool_through_proxy(ping_idle_after: Duration) -> (TestDb, Proxy, Db) {
    let t = TestDb::postgres().await;
    let opts = sqlx::postgres::PgConnectOptions::from_str(&t.url).unwrap();
    let server = format!("{}:{}", opts.get_host(), opts.get_port());
    let proxy = Proxy::start(&server).await;
    assert!(t.url.contains(&server), "{} names {server}", t.url);
    let url = t.url.replacen(&server, &proxy.addr().to_string(), 1);
    let options = DbOptions::default()
        .max_connections(1)
        .ping_idle_after(ping_idle_after);
    let db = Db::connect_with(&url, &options).await.unwrap();
    assert_eq!(select_one(&db).await.unwrap(), 1);
    assert_eq!(proxy.open_connections(), 1);
    (t, proxy, db)
}

async fn select_one(db: &Db) -> Result<i32, sqlx::Error> {
    let Db::Postgres(pool) = db else {
        unreachable!("a PostgreSQL pool")
    };
    sqlx::query_scalar("SELECT 1").fetch_one(pool).await
}

/// A connection idle for longer than `ping_idle_after` is checked before
/// use: one broken meanwhile is replaced, and the statement succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_broken_while_idle_is_replaced_before_use() {
    let (_t, proxy, db) = pool_through_proxy(Duration::from_millis(50)).await;

    proxy.cut(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        select_one(&db).await.unwrap(),
        1,
        "checked, replaced, then used"
    );
    assert_eq!(proxy.open_connections(), 1);
}

/// A connection reused sooner than `ping_idle_after` is not checked again
/// (it was when it went back to the pool): broken meanwhile, it fails one
/// statement, is dropped, and the next statement gets a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reused_at_once_is_not_checked_again() {
    let (_t, proxy, db) = pool_through_proxy(Duration::from_secs(3600)).await;
    // Back in the pool (its check on release has run).
    tokio::time::sleep(Duration::from_millis(100)).await;

    proxy.cut(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(select_one(&db).await.is_err(), "no check before this use");
    // The failed connection is not handed out again.
    let mut answered = None;
    for _ in 0..50 {
        if let Ok(v) = select_one(&db).await {
            answered = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answered, Some(1));
}

//! The daemon: start, schedule batches, serve /metrics and /healthz, purge, stop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use eventyard::daemon::{Daemon, Settings};
use eventyard_core::config::{ConfigStore, RawSendRow};
use eventyard_core::db::Backend;
use eventyard_core::with_pool;
use eventyard_sender::{OutboxStatus, Outcome};
use eventyard_testkit::TestDb;
use eventyard_transport::{Subscription, Transport};

#[tokio::test]
async fn the_daemon_sends_batches_on_schedule_and_reports_health() {
    let t = TestDb::migrated(Backend::Sqlite).await;
    let store = ConfigStore::new(t.db.clone());
    let mut row = RawSendRow::new("LEDGER.LINE");
    row.send_mode = "batch".into();
    row.batch_cron = Some("@every 200ms".into());
    store.upsert_send(&row).await.unwrap();

    let mut settings = Settings::from_toml(
        r#"
        system_id = "CORE"
        [http]
        listen = "127.0.0.1:0"
        [config]
        poll_interval = "100ms"
        "#,
    )
    .unwrap();
    settings.database_url = Some(t.url.clone());
    let running = Daemon::new(settings).start().await.unwrap();
    let transport = running.transport().clone();
    transport.declare_exchange("eventyard").await.unwrap();
    let mut consumer = transport
        .subscribe(Subscription::new("ledger", "eventyard").bind("LEDGER.LINE"))
        .await
        .unwrap();

    let p = running
        .publisher()
        .publish("LEDGER.LINE", &serde_json::json!({"amount": 5}))
        .await
        .unwrap();
    assert_eq!(p.outcome, Outcome::Queued);
    let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.message_id.as_deref(), Some(p.event_id.as_str()));
    d.acker.ack().await.unwrap();
    let outbox = running.publisher().outbox().clone();
    for _ in 0..50 {
        if outbox.count(OutboxStatus::Sent, None).await.unwrap() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outbox.count(OutboxStatus::Sent, None).await.unwrap(), 1);

    let addr = running.http_addr().unwrap();
    let (code, body) = tokio::task::spawn_blocking(move || support::get(addr, "/healthz").unwrap())
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, _) = tokio::task::spawn_blocking(move || support::get(addr, "/metrics").unwrap())
        .await
        .unwrap();
    assert_eq!(code, 200);
    let (code, _) = tokio::task::spawn_blocking(move || support::get(addr, "/nope").unwrap())
        .await
        .unwrap();
    assert_eq!(code, 404);

    // The daemon recorded its converters for `config check`.
    let recorded = store.recorded_components().await.unwrap();
    assert!(
        recorded.contains(&("send_converter".to_string(), "xml".to_string())),
        "{recorded:?}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn retention_purges_old_finished_rows_only() {
    let t = TestDb::migrated(Backend::Postgres).await;
    with_pool!(&t.db, pool => {
        for (id, status, age) in [("old-sent", "sent", "10 days"), ("new-sent", "sent", "1 hour"), ("old-failed", "failed", "10 days")] {
            sqlx::query(&format!(
                "INSERT INTO ey_outbox (event_id, event_type, status, payload, sent_at) VALUES ($1, 'T', $2, $3, now() - interval '{age}')"
            ))
            .bind(id).bind(status).bind(vec![0u8]).execute(pool).await.unwrap();
        }
    });
    let mut settings = Settings::from_toml(
        "system_id = \"CORE\"\n[http]\nlisten = \"\"\n[retention]\nkeep = \"7d\"\nevery = \"1h\"",
    )
    .unwrap();
    settings.database_url = Some(t.url.clone());
    let running = Daemon::new(settings).start().await.unwrap();
    let mut left = Vec::new();
    for _ in 0..50 {
        left = with_pool!(&t.db, pool => sqlx::query_scalar::<_, String>("SELECT event_id FROM ey_outbox ORDER BY event_id").fetch_all(pool).await.unwrap());
        if left.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, vec!["new-sent".to_string(), "old-failed".to_string()]);
    running.shutdown().await;
}

#[test]
fn eventyard_run_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ey.db");
    let settings = dir.path().join("eventyard.toml");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::write(
        &settings,
        format!(
            "database_url = \"sqlite://{}\"\nsystem_id = \"CORE\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
            db.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventyard"))
        .env_remove("EVENTYARD_DATABASE_URL")
        .env_remove("EVENTYARD_AMQP_URL")
        .args(["run", "--config"])
        .arg(&settings)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut healthy = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).is_ok() && support::healthy(addr) {
            healthy = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(healthy, "the daemon answered /healthz");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn eventyard_run_without_a_database_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_eventyard"))
        .env_remove("EVENTYARD_DATABASE_URL")
        .args(["run", "--system", "CORE"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("database_url"));
}

//! A real RabbitMQ restart (`rabbitmqctl stop_app` / `start_app`) while the
//! daemon consumes: the consumer reconnects by itself and finishes; nothing is
//! lost or processed twice. Its own test binary with one test, because it
//! stops the shared broker (cargo runs test binaries one at a time).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventyard::daemon::{Daemon, Settings};
use eventyard_core::config::{ConfigStore, RawReceiveRow, RawSendRow};
use eventyard_core::db::Backend;
use eventyard_core::with_pool;
use eventyard_receiver::{HandlerOutcome, HandlerRegistry, Message};
use eventyard_testkit::TestDb;

const EVENTS: usize = 3_000;

struct RestartGuard;

impl Drop for RestartGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
        let _ = Command::new("rabbitmqctl")
            .args(["await_startup", "--timeout", "60"])
            .status();
    }
}

fn rabbitmqctl(arg: &str) {
    assert!(
        Command::new("rabbitmqctl")
            .arg(arg)
            .status()
            .unwrap()
            .success(),
        "rabbitmqctl {arg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_survives_a_broker_restart_mid_consumption() {
    let t = TestDb::migrated(Backend::Postgres).await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (event_type, exchange) = (format!("RESTART.{suffix}"), format!("ex.{suffix}"));
    let store = ConfigStore::new(t.db.clone());
    let mut send = RawSendRow::new(&event_type);
    send.exchange = exchange.clone();
    send.send_mode = "realtime_batch".into();
    send.batch_cron = Some("@every 1s".into());
    store.upsert_send(&send).await.unwrap();
    let mut recv = RawReceiveRow::new(&event_type, "CRM");
    recv.exchange = exchange.clone();
    recv.handler_id = Some("slow".into());
    recv.workers = 4;
    store.upsert_receive(&recv).await.unwrap();

    let calls = Arc::new(AtomicU64::new(0));
    let mut handlers = HandlerRegistry::new();
    let counter = Arc::clone(&calls);
    handlers.register_fn("slow", move |_msg: Message| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(2)).await;
            HandlerOutcome::done("ok")
        }
    });
    let mut settings = Settings::from_toml("system_id = \"CRM\"\ninstance_id = \"crm-restart\"\n[http]\nlisten = \"\"\n[config]\npoll_interval = \"200ms\"").unwrap();
    settings.database_url = Some(t.url.clone());
    settings.amqp_url = Some(eventyard_testkit::amqp_url());
    let running = Daemon::new(settings)
        .handlers(handlers)
        .start()
        .await
        .unwrap();

    for i in 0..EVENTS {
        running
            .publisher()
            .publish(&event_type, &serde_json::json!({ "n": i }))
            .await
            .unwrap();
    }
    // Restart the broker while the backlog is being consumed.
    let guard = RestartGuard;
    tokio::task::spawn_blocking(|| rabbitmqctl("stop_app"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::spawn_blocking(|| {
        rabbitmqctl("start_app");
        rabbitmqctl("await_startup");
    })
    .await
    .unwrap();
    drop(guard);

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = with_pool!(&t.db, pool => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ey_inbox WHERE status = 'done'").fetch_one(pool).await.unwrap());
        if done >= EVENTS as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {EVENTS} done after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (rows, sent) = with_pool!(&t.db, pool => {
        let rows = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ey_inbox").fetch_one(pool).await.unwrap();
        let sent = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ey_outbox WHERE status = 'sent'").fetch_one(pool).await.unwrap();
        (rows, sent)
    });
    assert_eq!(rows, EVENTS as i64, "each event stored once");
    assert_eq!(sent, EVENTS as i64, "each event confirmed by the broker");
    assert_eq!(
        calls.load(Ordering::Relaxed),
        EVENTS as u64,
        "each event handled once"
    );
    running.shutdown().await;
}

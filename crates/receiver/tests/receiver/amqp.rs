//! The real broker: a connection cut in the middle of consumption.

use std::sync::Arc;
use std::time::Duration;

use eventyard_core::db::Backend;
use eventyard_receiver::{HandlerOutcome, InboxStatus};
use eventyard_transport::{AmqpOptions, AmqpTransport, Transport};

use crate::support::*;
use eventyard_testkit::proxy::Proxy;

const BROKER: &str = "127.0.0.1:5672";

fn amqp_url() -> String {
    std::env::var("EVENTYARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| format!("amqp://guest:guest@{BROKER}/%2f"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_survives_a_connection_cut_and_loses_nothing() {
    let proxy = Proxy::start(BROKER).await;
    let options = || {
        AmqpOptions::new()
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
            .connect_wait(Duration::from_secs(10))
    };
    // The receiver goes through the proxy; the publisher straight to the broker.
    let through_proxy: Arc<dyn Transport> = Arc::new(
        AmqpTransport::connect(&proxy.url(), options())
            .await
            .unwrap(),
    );
    let direct: Arc<dyn Transport> = Arc::new(
        AmqpTransport::connect(&amqp_url(), options())
            .await
            .unwrap(),
    );
    let exchange = unique("ey.test.rx");
    let mut row = receive_row("ACCT.OPENED", &exchange, "realtime", "record");
    row.workers = 8;
    let env = Env::new(Backend::Postgres, Arc::clone(&direct), &exchange, vec![row]).await;
    let recorder = Recorder::with(Duration::from_millis(2), |_| HandlerOutcome::done("ok"));
    let handlers = recorder.handlers();
    let running = eventyard_receiver::Receiver::new(
        env.db.clone(),
        Arc::clone(&through_proxy),
        env.watcher.subscribe(),
        Arc::new(eventyard_converter::Registry::with_builtins()),
        Arc::new(handlers),
        env.options().prefetch(50),
    )
    .start()
    .await
    .unwrap();

    let n = 1500;
    for chunk in 0..3 {
        for i in 0..n / 3 {
            env.publish("ACCT.OPENED", &format!("{chunk}-{i}")).await;
        }
        if chunk == 0 {
            // Cut while the first third is being consumed.
            eventually(20, || async {
                env.count("ACCT.OPENED", InboxStatus::Done).await > 50
            })
            .await;
            proxy.cut(Duration::from_millis(800));
        }
    }
    env.wait_status("ACCT.OPENED", InboxStatus::Done, n, 60)
        .await;
    assert_eq!(env.rows("ACCT.OPENED").await.len(), n as usize);
    assert_eq!(env.effects().await.len(), n as usize);
    let per_event = recorder.calls_per_event();
    assert_eq!(per_event.len(), n as usize);
    assert!(per_event.values().all(|c| *c == 1));
    running.shutdown().await;
    through_proxy.close().await.ok();
    direct.close().await.ok();
}

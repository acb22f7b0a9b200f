//! A real RabbitMQ restart (`rabbitmqctl stop_app` / `start_app`) in the middle
//! of 10,000 publishes. Its own test binary with one test, because it stops
//! the shared broker: cargo runs test binaries one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use eventyard_core::db::Backend;
use eventyard_sender::{BatchScheduler, OutboxStatus, Outcome, PublisherOptions};
use eventyard_transport::{AmqpOptions, AmqpTransport, Subscription, Transport};
use support::{row, unique, Env};

/// Starts the RabbitMQ app again when dropped, even if the test fails.
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
    let status = Command::new("rabbitmqctl").arg(arg).status().unwrap();
    assert!(status.success(), "rabbitmqctl {arg} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_survives_a_broker_restart_mid_stream() {
    const EVENTS: usize = 10_000;
    let url = eventyard_testkit::amqp_url();
    let amqp = AmqpTransport::connect(
        &url,
        AmqpOptions::default()
            .confirm_timeout(Duration::from_secs(5))
            .connect_wait(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let transport: Arc<dyn Transport> = Arc::new(amqp.clone());
    let exchange = unique("ex");
    let et = unique("RESTART");
    let mut r = row(&et, "realtime_batch", &exchange);
    r.batch_size = 1000;
    r.retry_count = 100;
    let env = Env::new(
        Backend::Postgres,
        Arc::clone(&transport),
        vec![r],
        PublisherOptions::new("CORE").relay_grace(Duration::from_secs(1)),
    )
    .await;
    // A durable queue bound before publishing (publishing is mandatory).
    let queue = unique("q");
    transport.declare_exchange(&exchange).await.unwrap();
    let mut c = transport
        .subscribe(Subscription::new(&queue, &exchange).bind(&et))
        .await
        .unwrap();
    c.cancel().await.unwrap();
    drop(c);

    let publishing = {
        let publisher = env.publisher.clone();
        let et = et.clone();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for t in 0..32 {
                let (p, et) = (publisher.clone(), et.clone());
                tasks.spawn(async move {
                    let mut deferred = 0;
                    for i in (t..EVENTS).step_by(32) {
                        match p.publish(&et, &i).await.unwrap().outcome {
                            Outcome::Sent => {}
                            Outcome::Deferred { .. } => deferred += 1,
                            Outcome::Queued => unreachable!(),
                        }
                    }
                    deferred
                });
            }
            let mut deferred = 0;
            while let Some(r) = tasks.join_next().await {
                deferred += r.unwrap();
            }
            deferred
        })
    };

    // Restart the broker while the stream is running.
    let guard = RestartGuard;
    tokio::time::sleep(Duration::from_millis(1500)).await;
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

    let deferred = publishing.await.unwrap();
    assert!(
        deferred > 0,
        "the restart hit the stream (some publishes were deferred)"
    );

    // The scheduler resends what the outage left pending.
    let scheduler = BatchScheduler::new(env.publisher.clone());
    for _ in 0..120 {
        let pending = env
            .publisher
            .outbox()
            .count(OutboxStatus::Pending, Some(&et))
            .await
            .unwrap();
        if pending == 0 {
            break;
        }
        let _ = scheduler.send_now(&et).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let outbox = env.publisher.outbox();
    assert_eq!(
        outbox
            .count(OutboxStatus::Pending, Some(&et))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        outbox.count(OutboxStatus::Failed, Some(&et)).await.unwrap(),
        0
    );
    assert_eq!(
        outbox.count(OutboxStatus::Sent, Some(&et)).await.unwrap(),
        EVENTS as i64
    );

    // Every event id is on the durable queue at least once.
    let mut consumer = transport
        .subscribe(
            Subscription::new(&queue, &exchange)
                .bind(&et)
                .prefetch(1000),
        )
        .await
        .unwrap();
    let mut seen = HashSet::new();
    let mut total = 0;
    while seen.len() < EVENTS {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} distinct events on the queue", seen.len()))
            .unwrap();
        seen.insert(d.message_id.clone().unwrap());
        total += 1;
        d.acker.ack().await.unwrap();
    }
    assert_eq!(seen.len(), EVENTS);
    assert!(total >= EVENTS);
    consumer.cancel().await.unwrap();
    amqp.delete_queue(&queue).await.unwrap();
    amqp.delete_exchange(&exchange).await.unwrap();
}

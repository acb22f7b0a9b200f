//! The send path over the real RabbitMQ: every mode, broker outages through a
//! proxy the test controls, and two schedulers sharing one outbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use eventyard_core::db::Backend;
use eventyard_sender::{
    BatchScheduler, Outbox, OutboxStatus, Outcome, Publisher, PublisherOptions, SendError,
};
use eventyard_testkit::proxy::Proxy;
use eventyard_transport::{AmqpOptions, AmqpTransport, Transport};
use support::{deliveries_by_id, nothing_more, receive, row, sorted_ids, unique, Env};

async fn amqp(url: &str) -> Arc<dyn Transport> {
    Arc::new(
        AmqpTransport::connect(
            url,
            AmqpOptions::default().confirm_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap(),
    )
}

#[tokio::test]
async fn every_mode_end_to_end_over_rabbitmq() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let transport = amqp(&eventyard_testkit::amqp_url()).await;
        let exchange = unique("ex");
        let (rt, batch, rtb) = (unique("RT"), unique("BATCH"), unique("RTB"));
        let env = Env::new(
            backend,
            Arc::clone(&transport),
            vec![
                row(&rt, "realtime", &exchange),
                row(&batch, "batch", &exchange),
                row(&rtb, "realtime_batch", &exchange),
            ],
            PublisherOptions::new("CORE"),
        )
        .await;
        let queue = unique("q");
        let mut consumer = env.subscribe(&queue, "#").await;

        let a = env
            .publisher
            .publish(&rt, &serde_json::json!({"n": 1}))
            .await
            .unwrap();
        let b = env
            .publisher
            .publish(&batch, &serde_json::json!({"n": 2}))
            .await
            .unwrap();
        let c = env
            .publisher
            .publish(&rtb, &serde_json::json!({"n": 3}))
            .await
            .unwrap();
        assert_eq!(
            (a.outcome.clone(), b.outcome.clone(), c.outcome.clone()),
            (Outcome::Sent, Outcome::Queued, Outcome::Sent)
        );
        let got = receive(&mut consumer, 2, 10).await;
        let ids = sorted_ids(&got);
        let mut want = vec![a.event_id.clone(), c.event_id.clone()];
        want.sort();
        assert_eq!(ids, want, "{backend:?}");
        assert_eq!(env.row(&b.event_id).await.status, "pending");
        let report = BatchScheduler::new(env.publisher.clone())
            .send_now(&batch)
            .await
            .unwrap();
        assert_eq!(report.sent, 1);
        let got = receive(&mut consumer, 1, 10).await;
        assert_eq!(got[0].message_id.as_deref(), Some(b.event_id.as_str()));
        assert_eq!(got[0].routing_key, batch);
        for id in [&a.event_id, &b.event_id, &c.event_id] {
            let r = env.row(id).await;
            assert_eq!((r.status.as_str(), r.attempts), ("sent", 1), "{backend:?}");
            assert!(r.sent_at.is_some());
        }
        let _ = transport.close().await;
    }
}

#[tokio::test]
async fn an_unroutable_event_is_a_failure_not_a_success() {
    let transport = amqp(&eventyard_testkit::amqp_url()).await;
    let et = unique("NOBODY.LISTENS");
    let mut r = row(&et, "realtime", &unique("ex"));
    r.retry_count = 1;
    let env = Env::new(
        Backend::Sqlite,
        transport,
        vec![r],
        PublisherOptions::new("CORE"),
    )
    .await;
    let err = env.publisher.publish(&et, &1).await.unwrap_err();
    let SendError::PublishFailed {
        event_id, attempts, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(*attempts, 2);
    let row = env.row(event_id).await;
    assert_eq!(row.status, "failed");
    assert!(row
        .last_error
        .unwrap()
        .to_lowercase()
        .contains("unroutable"));
}

#[tokio::test]
async fn broker_unreachable_realtime_fails_and_realtime_batch_waits_for_the_scheduler() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let amqp_transport = AmqpTransport::connect(
        &url,
        AmqpOptions::default()
            .confirm_timeout(Duration::from_secs(2))
            .connect_wait(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let transport: Arc<dyn Transport> = Arc::new(amqp_transport.clone());
    let exchange = unique("ex");
    let (rt, rtb) = (unique("RT"), unique("RTB"));
    let mut rt_row = row(&rt, "realtime", &exchange);
    rt_row.retry_count = 2;
    let env = Env::new(
        Backend::Postgres,
        Arc::clone(&transport),
        vec![rt_row, row(&rtb, "realtime_batch", &exchange)],
        PublisherOptions::new("CORE"),
    )
    .await;
    // Consume on a direct connection, so only the publisher's path is cut.
    let direct = amqp(&eventyard_testkit::amqp_url()).await;
    direct.declare_exchange(&exchange).await.unwrap();
    let mut consumer = direct
        .subscribe(eventyard_transport::Subscription::new(unique("q"), &exchange).bind("#"))
        .await
        .unwrap();

    proxy.cut(Duration::from_secs(3600));
    let err = env.publisher.publish(&rt, &1).await.unwrap_err();
    let SendError::PublishFailed {
        event_id, attempts, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(*attempts, 3, "first try plus retry_count = 2");
    let failed = env.row(event_id).await;
    assert_eq!((failed.status.as_str(), failed.attempts), ("failed", 3));

    let deferred = env.publisher.publish(&rtb, &2).await.unwrap();
    assert!(
        matches!(deferred.outcome, Outcome::Deferred { .. }),
        "{:?}",
        deferred.outcome
    );
    assert_eq!(env.row(&deferred.event_id).await.status, "pending");
    nothing_more(&mut consumer, 300).await;

    // The broker is back: the scheduler sends the deferred row. (Wait for
    // the reconnect first: its backoff may have grown to seconds, and every
    // send_now before it would spend one of the row's attempts.)
    proxy.allow();
    assert!(
        amqp_transport.wait_connected(Duration::from_secs(30)).await,
        "the transport reconnects once the broker is reachable"
    );
    let scheduler = BatchScheduler::new(env.publisher.clone());
    let mut sent = 0;
    for _ in 0..50 {
        sent += scheduler.send_now(&rtb).await.unwrap().sent;
        if sent == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        sent, 1,
        "the deferred row went out once the broker was back"
    );
    let got = receive(&mut consumer, 1, 10).await;
    assert_eq!(
        got[0].message_id.as_deref(),
        Some(deferred.event_id.as_str())
    );
    assert_eq!(env.row(&deferred.event_id).await.status, "sent");
}

#[tokio::test]
async fn two_schedulers_over_rabbitmq_publish_each_row_once() {
    let transport = amqp(&eventyard_testkit::amqp_url()).await;
    let exchange = unique("ex");
    let et = unique("LEDGER");
    let mut r = row(&et, "batch", &exchange);
    r.batch_size = 500;
    let env = Env::new(
        Backend::Postgres,
        Arc::clone(&transport),
        vec![r],
        PublisherOptions::new("CORE").instance_id("a"),
    )
    .await;
    let mut consumer = env.subscribe(&unique("q"), &et).await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..50 {
        let (p, et) = (env.publisher.clone(), et.clone());
        tasks.spawn(async move {
            for i in 0..100 {
                p.publish(&et, &(t * 100 + i)).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let second = amqp(&eventyard_testkit::amqp_url()).await;
    let other = Publisher::new(
        Outbox::new(env.t.db.clone()),
        env.watcher.subscribe(),
        Arc::new(eventyard_converter::Registry::with_builtins()),
        second,
        PublisherOptions::new("CORE").instance_id("b"),
    );
    let (s1, s2) = (
        BatchScheduler::new(env.publisher.clone()),
        BatchScheduler::new(other),
    );
    let (r1, r2) = tokio::join!(s1.send_now(&et), s2.send_now(&et));
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1.sent + r2.sent, 5000, "{r1:?} {r2:?}");
    assert!(
        r1.sent > 0 && r2.sent > 0,
        "both instances took a share: {r1:?} {r2:?}"
    );
    let got = receive(&mut consumer, 5000, 60).await;
    let seen = deliveries_by_id(&got);
    assert_eq!(seen.len(), 5000);
    nothing_more(&mut consumer, 500).await;
    assert_eq!(env.count(OutboxStatus::Sent, &et).await, 5000);
}

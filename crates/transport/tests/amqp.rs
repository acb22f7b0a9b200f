//! The AMQP transport against the local RabbitMQ (127.0.0.1:5672, guest/guest).
//! Every test uses its own exchange and queue names and deletes them at the end.
//! Connection loss is simulated with a TCP proxy, never by restarting RabbitMQ.
#![cfg(feature = "amqp")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use eventyard_testkit::proxy::Proxy;
use eventyard_transport::{
    AmqpOptions, AmqpTransport, Consumer, Delivery, OutgoingMessage, PublishOrder, Subscription,
    Transport, TransportError,
};

const BROKER: &str = "127.0.0.1:5672";

fn url() -> String {
    std::env::var("EVENTYARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| format!("amqp://guest:guest@{BROKER}/%2f"))
}

fn unique(prefix: &str) -> String {
    format!("ey-test.{prefix}.{}", uuid::Uuid::new_v4().simple())
}

async fn connect() -> AmqpTransport {
    AmqpTransport::connect(&url(), AmqpOptions::new())
        .await
        .expect("RabbitMQ must run on 127.0.0.1:5672 (guest/guest)")
}

fn message(exchange: &str, routing_key: &str, id: &str) -> OutgoingMessage {
    OutgoingMessage::new(
        exchange,
        routing_key,
        id,
        "TEST.EVENT",
        format!("<e id=\"{id}\"/>").into_bytes(),
    )
}

async fn next(consumer: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(15), consumer.next())
        .await
        .expect("a delivery within 15 s")
        .expect("the consumer is open")
}

async fn nothing_within(consumer: &mut Box<dyn Consumer>, wait: Duration) {
    if let Ok(Some(d)) = tokio::time::timeout(wait, consumer.next()).await {
        panic!("expected no delivery, got {:?}", d.message_id);
    }
}

/// Waits until `queue` holds `n` ready messages (the count lags slightly).
async fn wait_count(t: &AmqpTransport, queue: &str, n: u32) {
    let mut last = 0;
    for _ in 0..100 {
        last = t.queue_message_count(queue).await.unwrap();
        if last == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("queue `{queue}` holds {last} messages, expected {n}");
}

/// A fresh exchange and a durable queue bound to it with `key` (declared by
/// subscribing once), with no consumer left on it.
async fn bound_queue(t: &AmqpTransport, key: &str) -> (String, String) {
    let (ex, q) = (unique("ex"), unique("q"));
    let mut c = t
        .subscribe(Subscription::new(&q, &ex).bind(key))
        .await
        .unwrap();
    c.cancel().await.unwrap();
    (ex, q)
}

async fn cleanup(t: &AmqpTransport, exchange: &str, queues: &[&str]) {
    for q in queues {
        t.delete_queue(q).await.unwrap();
    }
    t.delete_exchange(exchange).await.unwrap();
}

#[tokio::test]
async fn round_trip_keeps_properties_and_headers() {
    let t = connect().await;
    let (ex, q) = (unique("ex"), unique("q"));
    t.declare_exchange(&ex).await.unwrap();
    let mut c = t
        .subscribe(Subscription::new(&q, &ex).bind("ACCT.*"))
        .await
        .unwrap();
    let msg = message(&ex, "ACCT.OPENED", "evt-1")
        .content_encoding("gzip")
        .header("producer", "p-7")
        .header("trace", "abc");
    t.publish(msg.clone()).await.unwrap();

    let d = next(&mut c).await;
    assert_eq!(d.payload, msg.payload);
    assert_eq!(d.message_id.as_deref(), Some("evt-1"));
    assert_eq!(d.event_type.as_deref(), Some("TEST.EVENT"));
    assert_eq!(d.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(
        d.headers,
        BTreeMap::from([
            ("producer".to_owned(), "p-7".to_owned()),
            ("trace".to_owned(), "abc".to_owned())
        ])
    );
    assert!(!d.redelivered);
    assert_eq!(d.exchange, ex);
    assert_eq!(d.routing_key, "ACCT.OPENED");
    d.acker.ack().await.unwrap();
    // A second settlement is refused without hurting the channel.
    assert!(matches!(
        d.acker.ack().await,
        Err(TransportError::AlreadySettled { .. })
    ));
    c.cancel().await.unwrap();
    assert!(c.next().await.is_none());
    assert_eq!(t.queue_message_count(&q).await.unwrap(), 0);
    cleanup(&t, &ex, &[&q]).await;
}

#[tokio::test]
async fn confirm_is_ok_only_when_routed() {
    let t = connect().await;
    let (ex, q) = (unique("ex"), unique("q"));
    // Publishing declares the exchange; nothing is bound yet.
    let err = t.publish(message(&ex, "A.B", "evt-u")).await.unwrap_err();
    match &err {
        TransportError::Unroutable {
            exchange,
            routing_key,
            message_id,
        } => {
            assert_eq!(
                (exchange.as_str(), routing_key.as_str()),
                (ex.as_str(), "A.B")
            );
            assert_eq!(message_id, "evt-u");
        }
        other => panic!("expected Unroutable, got {other:?}"),
    }
    assert!(err.to_string().contains(&ex));

    let mut c = t
        .subscribe(Subscription::new(&q, &ex).bind("A.#").prefetch(10))
        .await
        .unwrap();
    t.publish(message(&ex, "A.B", "evt-r")).await.unwrap();
    assert!(matches!(
        t.publish(message(&ex, "Z.B", "evt-z")).await,
        Err(TransportError::Unroutable { .. })
    ));
    let d = next(&mut c).await;
    assert_eq!(d.message_id.as_deref(), Some("evt-r"));
    d.acker.ack().await.unwrap();
    c.cancel().await.unwrap();
    cleanup(&t, &ex, &[&q]).await;
}

#[tokio::test]
async fn publish_many_pipelines_ten_thousand() {
    let t = connect().await;
    let (ex, q) = bound_queue(&t, "BULK").await;
    let msgs: Vec<_> = (0..10_000)
        .map(|i| message(&ex, "BULK", &format!("evt-{i}")))
        .collect();
    let results = t.publish_many(msgs).await;
    assert_eq!(results.len(), 10_000);
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    wait_count(&t, &q, 10_000).await;
    cleanup(&t, &ex, &[&q]).await;
}

/// Messages spread over the publishing channels (`Key`, `Any`) still get
/// their own answers in call order, and each key's messages arrive in order.
#[tokio::test]
async fn publish_many_keeps_each_keys_order_while_spreading() {
    let t = connect().await;
    let (ex, q) = bound_queue(&t, "SPREAD").await;
    let order = |i: usize| match i % 4 {
        0 => PublishOrder::Key("stream-a".into()),
        1 => PublishOrder::Key("stream-b".into()),
        _ => PublishOrder::Any,
    };
    // Every fifth `Any` message has no queue: its error must come back at its own index.
    let lost = |i: usize| i % 4 == 3 && i.is_multiple_of(5);
    let msgs: Vec<_> = (0..3000)
        .map(|i| {
            let key = if lost(i) { "LOST" } else { "SPREAD" };
            message(&ex, key, &format!("evt-{i}")).order(order(i))
        })
        .collect();
    let results = t.publish_many(msgs).await;
    assert_eq!(results.len(), 3000);
    for (i, result) in results.iter().enumerate() {
        if lost(i) {
            assert!(
                matches!(result, Err(TransportError::Unroutable { message_id, .. }) if *message_id == format!("evt-{i}")),
                "message {i}: {result:?}"
            );
        } else {
            assert!(result.is_ok(), "message {i}: {result:?}");
        }
    }
    let routed = (0..3000).filter(|i| !lost(*i)).count();
    let mut consumer = t
        .subscribe(Subscription::new(&q, &ex).bind("SPREAD"))
        .await
        .unwrap();
    let mut seen: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut ids = HashSet::new();
    for _ in 0..routed {
        let d = next(&mut consumer).await;
        let id = d.message_id.clone().unwrap_or_default();
        let i: usize = id.trim_start_matches("evt-").parse().unwrap();
        seen.entry(i % 4).or_default().push(i);
        assert!(ids.insert(id), "delivered once");
        d.acker.ack().await.unwrap();
    }
    for key in [0, 1] {
        let got = &seen[&key];
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(got, &sorted, "the messages of key {key} arrive in order");
        assert_eq!(got.len(), 750);
    }
    consumer.cancel().await.unwrap();
    cleanup(&t, &ex, &[&q]).await;
}

#[tokio::test]
async fn publish_many_attributes_returns_to_the_right_message() {
    let t = connect().await;
    let (ex, q) = bound_queue(&t, "ROUTED").await;
    // Every third message has no queue; lapin hands returns to whichever
    // confirm comes next, so this checks the attribution by message id.
    let msgs: Vec<_> = (0..3000)
        .map(|i| {
            let key = if i % 3 == 0 { "LOST" } else { "ROUTED" };
            message(&ex, key, &format!("evt-{i}"))
        })
        .collect();
    let results = t.publish_many(msgs).await;
    for (i, result) in results.iter().enumerate() {
        if i % 3 == 0 {
            assert!(
                matches!(result, Err(TransportError::Unroutable { message_id, .. }) if *message_id == format!("evt-{i}")),
                "message {i}: {result:?}"
            );
        } else {
            assert!(result.is_ok(), "message {i}: {result:?}");
        }
    }
    wait_count(&t, &q, 2000).await;
    cleanup(&t, &ex, &[&q]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_keep_returns_attributed_while_the_pipeline_overlaps() {
    // Many single publishes at once keep the pump writing while earlier
    // confirms are still out: returns must still reach their own publish.
    let t = connect().await;
    let (ex, q) = bound_queue(&t, "ROUTED").await;
    let mut tasks = Vec::new();
    for task in 0..64 {
        let (t, ex) = (t.clone(), ex.clone());
        tasks.push(tokio::spawn(async move {
            let mut wrong = Vec::new();
            for i in 0..100 {
                let lost = (task + i) % 5 == 0;
                let id = format!("evt-{task}-{i}");
                let key = if lost { "LOST" } else { "ROUTED" };
                let result = t.publish(message(&ex, key, &id)).await;
                let right = match &result {
                    Err(TransportError::Unroutable { message_id, .. }) => lost && *message_id == id,
                    Ok(()) => !lost,
                    Err(_) => false,
                };
                if !right {
                    wrong.push(format!("{id} (lost: {lost}): {result:?}"));
                }
            }
            wrong
        }));
    }
    let mut wrong = Vec::new();
    for task in tasks {
        wrong.extend(task.await.unwrap());
    }
    assert!(
        wrong.is_empty(),
        "{} misattributed: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    wait_count(&t, &q, 64 * 80).await;
    cleanup(&t, &ex, &[&q]).await;
}

#[tokio::test]
async fn ack_multiple_acknowledges_the_batch() {
    let t = connect().await;
    let (ex, q) = (unique("ex"), unique("q"));
    let mut c = t
        .subscribe(Subscription::new(&q, &ex).bind("K").prefetch(50))
        .await
        .unwrap();
    let results = t
        .publish_many(
            (0..20)
                .map(|i| message(&ex, "K", &format!("m{i}")))
                .collect(),
        )
        .await;
    assert!(results.iter().all(Result::is_ok));
    let mut batch = Vec::new();
    for _ in 0..10 {
        batch.push(next(&mut c).await);
    }
    batch.last().unwrap().acker.ack_multiple().await.unwrap();
    // Earlier deliveries are covered: acking one again is harmless.
    batch[3].acker.ack().await.unwrap();
    // Cancel: the 10 delivered-but-unacked (if any were prefetched) go back.
    c.cancel().await.unwrap();
    wait_count(&t, &q, 10).await;
    cleanup(&t, &ex, &[&q]).await;
}

#[tokio::test]
async fn nack_requeues_and_marks_redelivered() {
    let t = connect().await;
    let (ex, q) = (unique("ex"), unique("q"));
    let mut c = t
        .subscribe(Subscription::new(&q, &ex).bind("K").prefetch(1))
        .await
        .unwrap();
    t.publish(message(&ex, "K", "again")).await.unwrap();
    let d = next(&mut c).await;
    assert!(!d.redelivered);
    d.acker.nack(true).await.unwrap();
    let d = next(&mut c).await;
    assert_eq!(d.message_id.as_deref(), Some("again"));
    assert!(d.redelivered);
    d.acker.ack().await.unwrap();
    c.cancel().await.unwrap();
    cleanup(&t, &ex, &[&q]).await;
}

#[tokio::test]
async fn rejected_messages_go_to_the_dead_letter_queue() {
    let t = connect().await;
    let (ex, q) = (unique("ex"), unique("q"));
    let sub = Subscription::new(&q, &ex).bind("K");
    let dlq = sub.dead_letter_queue();
    assert_eq!(dlq, format!("{q}.dlq"));
    let mut c = t.subscribe(sub).await.unwrap();
    t.publish(message(&ex, "K", "poison").header("h", "v"))
        .await
        .unwrap();
    t.publish(message(&ex, "K", "nacked")).await.unwrap();
    next(&mut c)
        .await
        .acker
        .reject_to_dead_letter()
        .await
        .unwrap();
    next(&mut c).await.acker.nack(false).await.unwrap();
    c.cancel().await.unwrap();
    wait_count(&t, &dlq, 2).await;
    assert_eq!(t.queue_message_count(&q).await.unwrap(), 0);

    let mut dead = t
        .subscribe(Subscription::new(&dlq, "").dead_letter(false))
        .await
        .unwrap();
    let d = next(&mut dead).await;
    assert_eq!(d.message_id.as_deref(), Some("poison"));
    assert_eq!(d.headers.get("h").map(String::as_str), Some("v"));
    assert_eq!(
        d.headers.get("x-first-death-queue").map(String::as_str),
        Some(q.as_str())
    );
    assert_eq!(
        d.headers.get("x-first-death-reason").map(String::as_str),
        Some("rejected")
    );
    d.acker.ack().await.unwrap();
    dead.cancel().await.unwrap();
    cleanup(&t, &ex, &[&q]).await;
}

#[tokio::test]
async fn single_active_consumer_hands_over_on_cancel() {
    let t = connect().await;
    let (ex, q) = (unique("ex"), unique("q"));
    let sub = Subscription::new(&q, &ex)
        .bind("K")
        .single_active_consumer(true);
    let mut first = t.subscribe(sub.clone()).await.unwrap();
    let mut second = t.subscribe(sub).await.unwrap();
    let results = t
        .publish_many(
            (0..4)
                .map(|i| message(&ex, "K", &format!("s{i}")))
                .collect(),
        )
        .await;
    assert!(results.iter().all(Result::is_ok));
    for _ in 0..2 {
        next(&mut first).await.acker.ack().await.unwrap();
    }
    nothing_within(&mut second, Duration::from_millis(500)).await;
    first.cancel().await.unwrap();
    // The second takes over (the first's unacked, prefetched messages come back too).
    let mut seen = HashSet::new();
    while seen.len() < 2 {
        let d = next(&mut second).await;
        seen.insert(d.message_id.clone().unwrap());
        d.acker.ack().await.unwrap();
    }
    second.cancel().await.unwrap();
    cleanup(&t, &ex, &[&q]).await;
}

#[tokio::test]
async fn invalid_url_and_unreachable_broker_are_clear_errors() {
    let err = AmqpTransport::connect("http://nope", AmqpOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::InvalidUrl { .. }), "{err:?}");

    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = AmqpTransport::connect(
        &format!("amqp://guest:secret@127.0.0.1:{port}/%2f"),
        AmqpOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TransportError::Connection { .. }), "{err:?}");
    assert!(!err.to_string().contains("secret"), "{err}");

    // Lazy: publishing waits for a connection, then fails clearly.
    let t = AmqpTransport::connect_lazy(
        &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        AmqpOptions::new().connect_wait(Duration::from_millis(300)),
    )
    .unwrap();
    let err = t.publish(message("x", "y", "z")).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Disconnected { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("message z"), "{err}");
    t.close().await.unwrap();
}

fn proxied_options() -> AmqpOptions {
    AmqpOptions::new()
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .connect_wait(Duration::from_secs(10))
        .confirm_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn publishing_recovers_after_the_connection_is_cut() {
    let admin = connect().await;
    let (ex, q) = (unique("ex"), unique("q"));
    let mut c = admin
        .subscribe(Subscription::new(&q, &ex).bind("K"))
        .await
        .unwrap();
    c.cancel().await.unwrap();

    let proxy = Proxy::start(BROKER).await;
    let t = AmqpTransport::connect(&proxy.url(), proxied_options())
        .await
        .unwrap();
    t.publish(message(&ex, "K", "before")).await.unwrap();
    assert_eq!(t.connection_generation(), 1);

    // Publishes in flight when the connection dies: none may be Ok unless confirmed.
    let t2 = t.clone();
    let ex2 = ex.clone();
    let inflight = tokio::spawn(async move {
        let msgs = (0..5000)
            .map(|i| message(&ex2, "K", &format!("cut-{i}")))
            .collect();
        t2.publish_many(msgs).await
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    proxy.cut(Duration::from_millis(700));
    let results = inflight.await.unwrap();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let failed = results.len() - ok;
    assert!(
        failed > 0,
        "the cut should have failed some in-flight publishes"
    );
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(r.is_transient(), "{r:?}");
    }

    // It reconnects by itself and publishing works again.
    t.publish(message(&ex, "K", "after")).await.unwrap();
    assert!(t.connection_generation() >= 2);
    assert!(t.is_connected());

    // Every Ok was confirmed by the broker: at least `ok` + 2 messages are on the queue.
    let count = admin.queue_message_count(&q).await.unwrap() as usize;
    assert!(
        count >= ok + 2,
        "queue holds {count}, {ok} cut publishes were Ok"
    );

    t.close().await.unwrap();
    cleanup(&admin, &ex, &[&q]).await;
}

#[tokio::test]
async fn consumer_resumes_after_the_connection_is_cut() {
    let admin = connect().await;
    let (ex, q) = (unique("ex"), unique("q"));
    let proxy = Proxy::start(BROKER).await;
    let t = AmqpTransport::connect(&proxy.url(), proxied_options())
        .await
        .unwrap();
    let mut c = t
        .subscribe(Subscription::new(&q, &ex).bind("K").prefetch(5))
        .await
        .unwrap();
    let results = admin
        .publish_many(
            (0..20)
                .map(|i| message(&ex, "K", &format!("c{i}")))
                .collect(),
        )
        .await;
    assert!(results.iter().all(Result::is_ok));

    // Take three, ack one, hold two unacked, then lose the connection.
    let first = next(&mut c).await;
    first.acker.ack().await.unwrap();
    // An ack has no answer: `Ok` only means it was written. Wait until the
    // broker has taken it (it then delivers one more of the 15 ready within
    // the prefetch of 5), or the cut can lose it and `first` comes again.
    wait_count(&admin, &q, 14).await;
    let held = [next(&mut c).await, next(&mut c).await];
    let generation = t.connection_generation();
    proxy.cut(Duration::from_millis(500));
    // Wait until the transport has noticed the cut and connected again (a
    // fixed short sleep raced the client under CPU load): the held
    // deliveries' channel is certainly gone then.
    for _ in 0..150 {
        if t.connection_generation() > generation {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        t.connection_generation() > generation,
        "reconnected within 15 s"
    );
    for d in &held {
        assert!(matches!(
            d.acker.ack().await,
            Err(TransportError::ChannelClosed { .. })
        ));
    }

    // The consumer does not end: it reconnects and the rest (including the
    // two unacked ones, redelivered) arrive.
    let mut ids = HashSet::new();
    let mut redelivered = 0;
    while ids.len() < 19 {
        let d = next(&mut c).await;
        redelivered += usize::from(d.redelivered);
        match d.acker.ack().await {
            Ok(()) => {
                ids.insert(d.message_id.clone().unwrap());
            }
            // Delivered just before the channel died: it comes again.
            Err(TransportError::ChannelClosed { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(!ids.contains(first.message_id.as_deref().unwrap()));
    assert!(
        redelivered >= 2,
        "the held deliveries come back redelivered"
    );
    assert!(t.connection_generation() >= 2);
    c.cancel().await.unwrap();
    wait_count(&admin, &q, 0).await;
    t.close().await.unwrap();
    cleanup(&admin, &ex, &[&q]).await;
}

/// `Consumer::next` is raced against short timers by its callers (the
/// receiver lingers 1 ms for a micro-batch). A resubscription cancelled
/// half-way must not leave a broker-side consumer behind that holds
/// `prefetch` messages nobody reads: every message must still arrive.
#[tokio::test]
async fn consumer_next_is_cancellation_safe_across_a_cut() {
    let admin = connect().await;
    let (ex, q) = (unique("ex"), unique("q"));
    let proxy = Proxy::start(BROKER).await;
    let t = AmqpTransport::connect(&proxy.url(), proxied_options())
        .await
        .unwrap();
    let mut c = t
        .subscribe(Subscription::new(&q, &ex).bind("K").prefetch(5))
        .await
        .unwrap();
    let n = 60;
    let results = admin
        .publish_many(
            (0..n)
                .map(|i| message(&ex, "K", &format!("x{i}")))
                .collect(),
        )
        .await;
    assert!(results.iter().all(Result::is_ok));
    let first = next(&mut c).await;
    first.acker.ack().await.unwrap();
    proxy.cut(Duration::from_millis(300));

    let mut ids = HashSet::from([first.message_id.clone().unwrap()]);
    let mut cancelled = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ids.len() < n && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(1), c.next()).await {
            Ok(Some(d)) => {
                if d.acker.ack().await.is_ok() {
                    ids.insert(d.message_id.clone().unwrap());
                }
            }
            Ok(None) => panic!("the consumer ended"),
            Err(_) => cancelled += 1,
        }
    }
    assert_eq!(
        ids.len(),
        n,
        "every message arrives although {cancelled} next() calls were cancelled"
    );
    assert!(cancelled > 0, "the test must cancel calls to next()");
    c.cancel().await.unwrap();
    wait_count(&admin, &q, 0).await;
    t.close().await.unwrap();
    cleanup(&admin, &ex, &[&q]).await;
}

#[tokio::test]
async fn close_ends_consumers() {
    let t = connect().await;
    let (ex, q) = (unique("ex"), unique("q"));
    let mut c = t
        .subscribe(Subscription::new(&q, &ex).bind("K"))
        .await
        .unwrap();
    let admin = connect().await;
    t.close().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), c.next()).await;
    assert!(matches!(ended, Ok(None)));
    assert!(matches!(
        t.publish(message(&ex, "K", "x")).await,
        Err(TransportError::Closed)
    ));
    cleanup(&admin, &ex, &[&q]).await;
}

//! The in-process transport: the same semantics as the AMQP tests where they apply,
//! plus the fault hooks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventyard_transport::{
    Consumer, Delivery, InProcessTransport, OutgoingMessage, PublishFault, QueueDepth,
    Subscription, Transport, TransportError,
};

fn message(exchange: &str, routing_key: &str, id: &str) -> OutgoingMessage {
    OutgoingMessage::new(
        exchange,
        routing_key,
        id,
        "TEST.EVENT",
        id.as_bytes().to_vec(),
    )
}

async fn next(consumer: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a delivery within 5 s")
        .expect("the consumer is open")
}

async fn nothing(consumer: &mut Box<dyn Consumer>) {
    if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(50), consumer.next()).await {
        panic!("expected no delivery, got {:?}", d.message_id);
    }
}

fn depth(t: &InProcessTransport, queue: &str) -> (usize, usize) {
    let QueueDepth { ready, unacked, .. } = t.queue_depth(queue).unwrap();
    (ready, unacked)
}

#[tokio::test]
async fn topic_routing_and_unroutable() {
    let t = InProcessTransport::new();
    let _a = t
        .subscribe(Subscription::new("one-word", "ex").bind("ACCT.*"))
        .await
        .unwrap();
    let _b = t
        .subscribe(Subscription::new("all", "ex").bind("ACCT.#"))
        .await
        .unwrap();
    let _c = t
        .subscribe(
            Subscription::new("eu", "ex")
                .bind("*.*.EU")
                .bind("ACCT.OPENED.EU"),
        )
        .await
        .unwrap();

    t.publish(message("ex", "ACCT.OPENED", "1")).await.unwrap();
    t.publish(message("ex", "ACCT.OPENED.EU", "2"))
        .await
        .unwrap();
    t.publish(message("ex", "ACCT", "3")).await.unwrap();
    let err = t
        .publish(message("ex", "CARD.ISSUED", "4"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Unroutable { exchange, routing_key, message_id }
            if exchange == "ex" && routing_key == "CARD.ISSUED" && message_id == "4"),
        "{err:?}"
    );
    assert_eq!(t.queue_depth("one-word").unwrap().ready, 1);
    // `eu` is bound twice to ACCT.OPENED.EU and still gets it once.
    assert_eq!(t.queue_depth("all").unwrap().ready, 3);
    assert_eq!(t.queue_depth("eu").unwrap().ready, 1);
    // The default exchange routes by queue name.
    t.publish(message("", "eu", "5")).await.unwrap();
    assert_eq!(t.queue_depth("eu").unwrap().ready, 2);
    assert!(t.publish(message("", "nope", "6")).await.is_err());
}

#[tokio::test]
async fn round_trip_ack_and_double_settle() {
    let t = InProcessTransport::new();
    t.declare_exchange("ex").await.unwrap();
    let mut c = t
        .subscribe(Subscription::new("q", "ex").bind("K"))
        .await
        .unwrap();
    let msg = message("ex", "K", "evt-1")
        .content_encoding("gzip")
        .header("h", "v");
    t.publish(msg.clone()).await.unwrap();
    let d = next(&mut c).await;
    assert_eq!(d.payload, msg.payload);
    assert_eq!(d.message_id.as_deref(), Some("evt-1"));
    assert_eq!(d.event_type.as_deref(), Some("TEST.EVENT"));
    assert_eq!(d.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(d.headers.get("h").map(String::as_str), Some("v"));
    assert_eq!((d.exchange.as_str(), d.routing_key.as_str()), ("ex", "K"));
    assert!(!d.redelivered);
    assert_eq!(depth(&t, "q"), (0, 1));
    d.acker.ack().await.unwrap();
    assert_eq!(depth(&t, "q"), (0, 0));
    assert!(matches!(
        d.acker.nack(true).await,
        Err(TransportError::AlreadySettled { .. })
    ));
}

#[tokio::test]
async fn nack_requeue_redelivers() {
    let t = InProcessTransport::new();
    let mut c = t
        .subscribe(Subscription::new("q", "ex").bind("K"))
        .await
        .unwrap();
    t.publish(message("ex", "K", "a")).await.unwrap();
    t.publish(message("ex", "K", "b")).await.unwrap();
    let a = next(&mut c).await;
    a.acker.nack(true).await.unwrap();
    let again = next(&mut c).await;
    assert_eq!(again.message_id.as_deref(), Some("a"));
    assert!(again.redelivered);
    let b = next(&mut c).await;
    assert_eq!(b.message_id.as_deref(), Some("b"));
    assert!(!b.redelivered);
}

#[tokio::test]
async fn reject_and_nack_without_requeue_dead_letter() {
    let t = InProcessTransport::new();
    let sub = Subscription::new("q", "ex").bind("K");
    let mut c = t.subscribe(sub.clone()).await.unwrap();
    t.publish(message("ex", "K", "poison")).await.unwrap();
    t.publish(message("ex", "K", "nacked")).await.unwrap();
    next(&mut c)
        .await
        .acker
        .reject_to_dead_letter()
        .await
        .unwrap();
    next(&mut c).await.acker.nack(false).await.unwrap();
    assert_eq!(depth(&t, "q"), (0, 0));
    assert_eq!(depth(&t, "q.dlq"), (2, 0));

    let mut dead = t
        .subscribe(Subscription::new(sub.dead_letter_queue(), "").dead_letter(false))
        .await
        .unwrap();
    let d = next(&mut dead).await;
    assert_eq!(d.message_id.as_deref(), Some("poison"));
    assert_eq!(
        d.headers.get("x-first-death-queue").map(String::as_str),
        Some("q")
    );
    assert_eq!(
        d.headers.get("x-first-death-reason").map(String::as_str),
        Some("rejected")
    );

    // Without a dead-letter queue a rejected message is dropped.
    let mut plain = t
        .subscribe(
            Subscription::new("plain", "ex")
                .bind("P")
                .dead_letter(false),
        )
        .await
        .unwrap();
    t.publish(message("ex", "P", "gone")).await.unwrap();
    next(&mut plain)
        .await
        .acker
        .reject_to_dead_letter()
        .await
        .unwrap();
    assert!(t.queue_depth("plain.dlq").is_none());
    assert_eq!(depth(&t, "plain"), (0, 0));
}

#[tokio::test]
async fn prefetch_bounds_unacked_deliveries() {
    let t = InProcessTransport::new();
    let mut c = t
        .subscribe(Subscription::new("q", "ex").bind("K").prefetch(2))
        .await
        .unwrap();
    for i in 0..5 {
        t.publish(message("ex", "K", &i.to_string())).await.unwrap();
    }
    let first = next(&mut c).await;
    let second = next(&mut c).await;
    nothing(&mut c).await;
    assert_eq!(depth(&t, "q"), (3, 2));
    first.acker.ack().await.unwrap();
    let third = next(&mut c).await;
    assert_eq!(third.message_id.as_deref(), Some("2"));
    // ack_multiple settles `second` and `third` together.
    third.acker.ack_multiple().await.unwrap();
    second.acker.ack().await.unwrap(); // already covered: Ok
    assert_eq!(depth(&t, "q"), (2, 0));
}

#[tokio::test]
async fn cancel_and_drop_return_unacked_messages() {
    let t = InProcessTransport::new();
    let mut c = t
        .subscribe(Subscription::new("q", "ex").bind("K"))
        .await
        .unwrap();
    for i in 0..3 {
        t.publish(message("ex", "K", &i.to_string())).await.unwrap();
    }
    let held = next(&mut c).await;
    let _held2 = next(&mut c).await;
    c.cancel().await.unwrap();
    assert!(c.next().await.is_none());
    assert_eq!(depth(&t, "q"), (3, 0));
    assert!(matches!(
        held.acker.ack().await,
        Err(TransportError::ChannelClosed { .. })
    ));

    let mut c2 = t
        .subscribe(Subscription::new("q", "ex").bind("K"))
        .await
        .unwrap();
    let d = next(&mut c2).await;
    assert_eq!(d.message_id.as_deref(), Some("0"));
    assert!(d.redelivered);
    drop(c2);
    assert_eq!(depth(&t, "q"), (3, 0));
}

#[tokio::test]
async fn single_active_consumer_hands_over() {
    let t = InProcessTransport::new();
    let sub = Subscription::new("q", "ex")
        .bind("K")
        .single_active_consumer(true);
    let mut first = t.subscribe(sub.clone()).await.unwrap();
    let mut second = t.subscribe(sub).await.unwrap();
    for i in 0..3 {
        t.publish(message("ex", "K", &i.to_string())).await.unwrap();
    }
    next(&mut first).await.acker.ack().await.unwrap();
    nothing(&mut second).await;
    first.cancel().await.unwrap();
    assert_eq!(next(&mut second).await.message_id.as_deref(), Some("1"));
}

#[tokio::test]
async fn a_waiting_consumer_wakes_on_publish() {
    let t = InProcessTransport::new();
    let mut c = t
        .subscribe(Subscription::new("q", "ex").bind("K"))
        .await
        .unwrap();
    let waiter = tokio::spawn(async move { c.next().await.map(|d| d.message_id) });
    tokio::task::yield_now().await;
    t.publish(message("ex", "K", "late")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.flatten().as_deref(), Some("late"));
}

#[tokio::test]
async fn conflicting_queue_arguments_are_rejected() {
    let t = InProcessTransport::new();
    let _c = t
        .subscribe(Subscription::new("q", "ex").bind("K"))
        .await
        .unwrap();
    let err = t
        .subscribe(Subscription::new("q", "ex").bind("K").dead_letter(false))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Topology { .. }), "{err:?}");
}

#[tokio::test]
async fn injected_faults() {
    let t = InProcessTransport::new();
    let _c = t
        .subscribe(Subscription::new("q", "ex").bind("K"))
        .await
        .unwrap();

    t.set_publish_failure(Some(PublishFault::Nack));
    assert!(matches!(
        t.publish(message("ex", "K", "1")).await,
        Err(TransportError::Nacked { .. })
    ));
    t.set_publish_failure(None);

    t.fail_next_publishes(2, PublishFault::ConnectionLost);
    let results = t
        .publish_many(
            (0..4)
                .map(|i| message("ex", "K", &format!("m{i}")))
                .collect(),
        )
        .await;
    assert!(matches!(results[0], Err(TransportError::Connection { .. })));
    assert!(matches!(results[1], Err(TransportError::Connection { .. })));
    assert!(results[2].is_ok() && results[3].is_ok());
    assert_eq!(depth(&t, "q").0, 2);

    // A lost confirm: an error to the publisher, but the message is on the queue.
    t.fail_next_publishes(1, PublishFault::LostConfirm);
    assert!(matches!(
        t.publish(message("ex", "K", "dup")).await,
        Err(TransportError::ConfirmTimeout { .. })
    ));
    assert_eq!(depth(&t, "q").0, 3);

    t.fail_every_nth_publish(3, PublishFault::Unroutable);
    let results = t
        .publish_many(
            (0..6)
                .map(|i| message("ex", "K", &format!("n{i}")))
                .collect(),
        )
        .await;
    let failed: Vec<usize> = (0..6).filter(|&i| results[i].is_err()).collect();
    assert_eq!(failed, vec![2, 5]);
    t.clear_faults();
    t.publish(message("ex", "K", "ok")).await.unwrap();
}

#[tokio::test]
async fn close_ends_consumers_and_refuses_publishes() {
    let t = InProcessTransport::new();
    let mut c = t
        .subscribe(Subscription::new("q", "ex").bind("K"))
        .await
        .unwrap();
    let t2 = t.clone();
    let waiter = tokio::spawn(async move { c.next().await.is_none() });
    tokio::task::yield_now().await;
    t2.close().await.unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap());
    assert!(matches!(
        t.publish(message("ex", "K", "x")).await,
        Err(TransportError::Closed)
    ));
}

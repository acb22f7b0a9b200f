//! Poison messages, duplicates, retries, dead letters and replays, and the
//! handler transaction's rollback.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventyard_core::db::Backend;
use eventyard_core::envelope::{self, Body, Envelope};
use eventyard_receiver::{HandlerOutcome, HandlerRegistry, InboxStatus, ReplayRequest};
use eventyard_transport::{OutgoingMessage, Transport};

use crate::support::*;

async fn poison_then_good(backend: Backend) {
    let exchange = unique("ex");
    let env = Env::in_process(
        backend,
        &exchange,
        vec![receive_row("ACCT.OPENED", &exchange, "realtime", "record")],
    )
    .await;
    let recorder = Recorder::new();
    let handlers = recorder.handlers();
    let running = env.start(handlers, env.options()).await;

    // Corrupt gzip, with a message id.
    let mut gzip = vec![0x1f, 0x8b, 0x08, 0x00];
    gzip.extend_from_slice(b"definitely not deflate data");
    env.transport
        .publish(OutgoingMessage::new(
            &exchange,
            "ACCT.OPENED",
            "bad-gzip-1",
            "ACCT.OPENED",
            gzip,
        ))
        .await
        .unwrap();
    // Malformed XML, without a message id: keyed by the SHA-256 of its bytes.
    let xml = b"<envelope version=\"1\"><header><event_id>oops".to_vec();
    env.transport
        .publish(OutgoingMessage::new(
            &exchange,
            "ACCT.OPENED",
            "",
            "ACCT.OPENED",
            xml,
        ))
        .await
        .unwrap();
    // An envelope of a type this subscriber does not receive.
    let stranger =
        envelope::pack(&Envelope::new("OTHER.TYPE", "CORE", Body::Text("x".into()))).unwrap();
    env.transport
        .publish(OutgoingMessage::new(
            &exchange,
            "ACCT.OPENED",
            "stranger",
            "OTHER.TYPE",
            stranger,
        ))
        .await
        .unwrap();
    let good = env.publish("ACCT.OPENED", "1001").await;

    env.wait_status("ACCT.OPENED", InboxStatus::Done, 1, 10)
        .await;
    env.wait_status("ACCT.OPENED", InboxStatus::Dead, 1, 10)
        .await;
    let bad = env
        .inbox()
        .get(Some(SUBSCRIBER), "bad-gzip-1")
        .await
        .unwrap()
        .expect("gzip row");
    assert_eq!(bad.status, "dead");
    assert!(
        bad.result
            .as_deref()
            .unwrap()
            .contains("unreadable envelope"),
        "{:?}",
        bad.result
    );
    assert!(bad.payload.starts_with(&[0x1f, 0x8b]));
    let dead = env
        .inbox()
        .list(&eventyard_receiver::InboxFilter {
            status: Some(InboxStatus::Dead),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 3, "{dead:?}");
    let sha = dead
        .iter()
        .find(|r| r.event_id.starts_with("sha256:"))
        .expect("a sha256-keyed row");
    assert_eq!(sha.event_id.len(), "sha256:".len() + 64);
    assert!(sha
        .result
        .as_deref()
        .unwrap()
        .contains("unreadable envelope"));
    let other = dead
        .iter()
        .find(|r| r.event_type == "OTHER.TYPE")
        .expect("the stranger");
    assert!(other
        .result
        .as_deref()
        .unwrap()
        .contains("unknown event type `OTHER.TYPE`"));

    let seen = recorder.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].event_id, good);
    assert_eq!(running.stats().get("ACCT.OPENED").unreadable, 2);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_and_the_queue_goes_on_postgres() {
    poison_then_good(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_and_the_queue_goes_on_sqlite() {
    poison_then_good(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_envelope_twice_is_processed_once() {
    let exchange = unique("ex");
    let env = Env::in_process(
        Backend::Postgres,
        &exchange,
        vec![receive_row("ACCT.OPENED", &exchange, "realtime", "record")],
    )
    .await;
    let recorder = Recorder::new();
    let handlers = recorder.handlers();
    let running = env.start(handlers, env.options()).await;

    let (id, msg) = packed_message(&exchange, "ACCT.OPENED", "7");
    env.transport.publish(msg.clone()).await.unwrap();
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 1, 10)
        .await;
    // Again later (a redelivery after a lost ack), and twice in one micro-batch.
    env.transport.publish(msg.clone()).await.unwrap();
    env.transport
        .publish_many(vec![msg.clone(), msg])
        .await
        .into_iter()
        .for_each(|r| r.unwrap());
    eventually(10, || async {
        running.stats().get("ACCT.OPENED").duplicates >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(recorder.calls_per_event().get(&id), Some(&1));
    assert_eq!(env.rows("ACCT.OPENED").await.len(), 1);
    assert_eq!(env.effects().await, [id]);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_backoff_dead_replay_done() {
    let exchange = unique("ex");
    let mut row = receive_row("ACCT.OPENED", &exchange, "realtime", "flaky");
    row.max_attempts = 3;
    row.backoff_ms = 100;
    let env = Env::in_process(Backend::Postgres, &exchange, vec![row]).await;
    let healthy = Arc::new(AtomicBool::new(false));
    let h = Arc::clone(&healthy);
    let recorder = Recorder::with(Duration::ZERO, move |m| {
        if h.load(Ordering::SeqCst) {
            HandlerOutcome::done("fine now")
        } else {
            HandlerOutcome::retry(format!("downstream unavailable (attempt {})", m.attempt))
        }
    });
    let mut handlers = HandlerRegistry::new();
    handlers.register("flaky", recorder.clone());
    let running = env.start(handlers, env.options()).await;
    let started = std::time::Instant::now();
    let id = env.publish("ACCT.OPENED", "1").await;

    env.wait_status("ACCT.OPENED", InboxStatus::Dead, 1, 10)
        .await;
    // Attempts 1, 2, 3 with 100 ms then 200 ms between them.
    assert!(started.elapsed() >= Duration::from_millis(300));
    let row = env
        .inbox()
        .get(Some(SUBSCRIBER), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.attempts, 3);
    assert_eq!(
        row.result.as_deref(),
        Some("downstream unavailable (attempt 3)")
    );
    assert!(row.next_attempt_at.is_none() && row.processed_at.is_some());
    let attempts: Vec<u32> = recorder.seen().iter().map(|m| m.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    // The failed attempts' writes were rolled back.
    assert!(env.effects().await.is_empty());
    let stats = running.stats().get("ACCT.OPENED");
    assert_eq!((stats.retried, stats.dead), (2, 1));

    healthy.store(true, Ordering::SeqCst);
    let replayed = env
        .inbox()
        .replay(&ReplayRequest {
            event_type: Some("ACCT.OPENED".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 1, 10)
        .await;
    let row = env
        .inbox()
        .get(Some(SUBSCRIBER), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.attempts, 1);
    assert_eq!(row.result.as_deref(), Some("fine now"));
    assert_eq!(env.effects().await, [id]);
    assert!(env.inbox().replay(&ReplayRequest::default()).await.is_err());
    running.shutdown().await;
}

async fn rollback_unless_done(backend: Backend) {
    let exchange = unique("ex");
    let mut row = receive_row("ACCT.OPENED", &exchange, "realtime", "writer");
    row.max_attempts = 2;
    row.backoff_ms = 10;
    let env = Env::in_process(backend, &exchange, vec![row]).await;
    sqlx_exec(
        &env.db,
        "UPDATE ey_receive_config SET handler_timeout_ms = 300 WHERE event_type = 'ACCT.OPENED'",
    )
    .await;
    let recorder = Recorder::with(Duration::ZERO, |m| {
        match m.fields.get_str("account").unwrap_or("") {
            "ok" => HandlerOutcome::done("ok"),
            "retry" => HandlerOutcome::retry_after(Duration::from_millis(10), "not yet"),
            "fail" => HandlerOutcome::fail("bad account"),
            "panic" => panic!("handler bug"),
            _ => {
                std::thread::sleep(Duration::from_millis(1));
                HandlerOutcome::done("unexpected")
            }
        }
    });
    let slow = Recorder::with(Duration::from_secs(3), |_| HandlerOutcome::done("too late"));
    let rec = recorder.clone();
    let mut handlers = HandlerRegistry::new();
    handlers.register_fn_tx("writer", move |msg, ctx| {
        let rec = rec.clone();
        let slow = slow.clone();
        Box::pin(async move {
            use eventyard_receiver::Handler;
            if msg.fields.get_str("account") == Some("slow") {
                slow.handle(msg, ctx).await
            } else {
                rec.handle(msg, ctx).await
            }
        })
    });
    let running = env.start(handlers, env.options()).await;
    let ok = env.publish("ACCT.OPENED", "ok").await;
    let retry = env.publish("ACCT.OPENED", "retry").await;
    let fail = env.publish("ACCT.OPENED", "fail").await;
    let panic = env.publish("ACCT.OPENED", "panic").await;
    let slow = env.publish("ACCT.OPENED", "slow").await;
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 1, 10)
        .await;
    env.wait_status("ACCT.OPENED", InboxStatus::Dead, 4, 15)
        .await;
    assert_eq!(env.effects().await, [ok]);
    let result = |id: String| {
        let inbox = env.inbox();
        async move { inbox.get(Some(SUBSCRIBER), &id).await.unwrap().unwrap() }
    };
    let r = result(retry).await;
    assert_eq!((r.attempts, r.result.as_deref()), (2, Some("not yet")));
    let r = result(fail).await;
    assert_eq!((r.attempts, r.result.as_deref()), (1, Some("bad account")));
    let r = result(panic).await;
    assert_eq!(r.attempts, 2);
    assert!(
        r.result
            .as_deref()
            .unwrap()
            .contains("handler panicked: handler bug"),
        "{r:?}"
    );
    let r = result(slow).await;
    assert_eq!(r.attempts, 2);
    assert!(r.result.as_deref().unwrap().contains("timed out"), "{r:?}");
    let stats = running.stats().get("ACCT.OPENED");
    assert_eq!((stats.panics, stats.timeouts), (2, 2));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_writes_commit_only_with_done_postgres() {
    rollback_unless_done(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_writes_commit_only_with_done_sqlite() {
    rollback_unless_done(Backend::Sqlite).await;
}

/// Unreadable deliveries keep their raw bytes, however large. Three of 6 MiB
/// in one micro-batch are 18 MiB, more than MariaDB's default 16 MiB
/// `max_allowed_packet`: the store splits them over several statements
/// instead of retrying one that can never pass (which would hold the queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_micro_batch_of_large_payloads_is_stored_in_several_statements_mysql() {
    const BIG: usize = 6 << 20;
    let exchange = unique("ex");
    let env = Env::in_process(
        Backend::MySql,
        &exchange,
        vec![receive_row("ACCT.OPENED", &exchange, "realtime", "record")],
    )
    .await;
    let recorder = Recorder::new();
    let handlers = recorder.handlers();
    // A long linger, so that the three land in one micro-batch.
    let running = env
        .start(
            handlers,
            env.options().ack_linger(Duration::from_millis(500)),
        )
        .await;
    for i in 0..3u8 {
        env.transport
            .publish(OutgoingMessage::new(
                &exchange,
                "ACCT.OPENED",
                format!("big-{i}"),
                "ACCT.OPENED",
                vec![b'a' + i; BIG],
            ))
            .await
            .unwrap();
    }
    let good = env.publish("ACCT.OPENED", "1001").await;
    env.wait_status("ACCT.OPENED", InboxStatus::Dead, 3, 30)
        .await;
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 1, 30)
        .await;
    for i in 0..3u8 {
        let row = env
            .inbox()
            .get(Some(SUBSCRIBER), &format!("big-{i}"))
            .await
            .unwrap()
            .expect("large row stored");
        assert_eq!(row.status, "dead");
        assert_eq!(row.payload.len(), BIG, "raw bytes kept whole");
        assert!(row.payload.iter().all(|b| *b == b'a' + i));
    }
    assert_eq!(recorder.calls_per_event().get(&good), Some(&1));
    running.shutdown().await;
}

/// Header values longer than the inbox's columns (191 characters) make an
/// event dead with a clear error, stored with its event type clipped;
/// they never make the store fail (which would hold the queue).
async fn oversized_header_values(backend: Backend) {
    let exchange = unique("ex");
    let env = Env::in_process(
        backend,
        &exchange,
        vec![receive_row("ACCT.OPENED", &exchange, "realtime", "record")],
    )
    .await;
    let recorder = Recorder::new();
    let handlers = recorder.handlers();
    let running = env.start(handlers, env.options()).await;

    let long_type = "T".repeat(300);
    let unknown = Envelope::new(long_type.clone(), "CORE", Body::Text("x".into()));
    let mut long_producer = Envelope::new(
        "ACCT.OPENED",
        "CORE",
        Body::Xml("<ACCT.OPENED><account>7</account><name>n</name></ACCT.OPENED>".into()),
    );
    long_producer.header.producer_id = Some("P".repeat(300));
    let mut ids = Vec::new();
    for (e, amqp_type) in [
        (&unknown, long_type.as_str()),
        (&long_producer, "ACCT.OPENED"),
    ] {
        let id = e.header.event_id.hyphenated().to_string();
        env.transport
            .publish(OutgoingMessage::new(
                &exchange,
                "ACCT.OPENED",
                &id,
                amqp_type,
                envelope::pack(e).unwrap(),
            ))
            .await
            .unwrap();
        ids.push(id);
    }
    let good = env.publish("ACCT.OPENED", "1001").await;
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 1, 10)
        .await;
    let inbox = env.inbox();
    let first = inbox
        .get(Some(SUBSCRIBER), &ids[0])
        .await
        .unwrap()
        .expect("long type stored");
    assert_eq!(first.status, "dead", "{backend:?}");
    assert_eq!(first.event_type, "T".repeat(191), "{backend:?}: clipped");
    assert!(
        first
            .result
            .as_deref()
            .is_some_and(|r| r.contains("event type is longer than 191")),
        "{backend:?}: {:?}",
        first.result
    );
    let second = inbox
        .get(Some(SUBSCRIBER), &ids[1])
        .await
        .unwrap()
        .expect("long producer stored");
    assert_eq!(second.status, "dead", "{backend:?}");
    assert!(
        second
            .result
            .as_deref()
            .is_some_and(|r| r.contains("producer id is longer than 191")),
        "{backend:?}: {:?}",
        second.result
    );
    let calls = recorder.calls_per_event();
    assert_eq!(
        calls.get(&good),
        Some(&1),
        "{backend:?}: the next good event is handled"
    );
    assert!(
        !calls.contains_key(&ids[1]),
        "{backend:?}: the dead one is not"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_values_postgres() {
    oversized_header_values(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_values_mysql() {
    oversized_header_values(Backend::MySql).await;
}

/// Runs a `realtime` type with one attempt on `backend` whose handler
/// answers `done(done_text)` for account 1 and `fail(fail_text)` for
/// account 2; waits until the first row is `done` and the second `dead`,
/// checks that the first was handled once, and returns the `result` stored
/// in each.
async fn stored_result_texts(
    backend: Backend,
    done_text: String,
    fail_text: String,
) -> (String, String) {
    let exchange = unique("ex");
    let mut row = receive_row("ACCT.OPENED", &exchange, "realtime", "record");
    row.max_attempts = 1;
    let env = Env::in_process(backend, &exchange, vec![row]).await;
    let recorder = Recorder::with(Duration::ZERO, move |m| {
        if m.fields.get_str("account") == Some("1") {
            HandlerOutcome::done(done_text.clone())
        } else {
            HandlerOutcome::fail(fail_text.clone())
        }
    });
    let handlers = recorder.handlers();
    let running = env.start(handlers, env.options()).await;
    let done = env.publish("ACCT.OPENED", "1").await;
    let failed = env.publish("ACCT.OPENED", "2").await;
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 1, 10)
        .await;
    env.wait_status("ACCT.OPENED", InboxStatus::Dead, 1, 10)
        .await;
    let mut texts = Vec::new();
    for id in [&done, &failed] {
        let r = env
            .inbox()
            .get(Some(SUBSCRIBER), id)
            .await
            .unwrap()
            .unwrap();
        texts.push(r.result.unwrap_or_default());
    }
    assert_eq!(
        recorder.calls_per_event().get(&done),
        Some(&1),
        "{backend:?}: handled once"
    );
    running.shutdown().await;
    let failed_text = texts.pop().unwrap_or_default();
    (texts.pop().unwrap_or_default(), failed_text)
}

/// A handler's result or failure text longer than a MySQL `TEXT` column is
/// stored shortened, with a note; the update recording it does not fail
/// (which would make the event run again and again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_result_and_failure_texts_are_stored_shortened_mysql() {
    const LONG: usize = 100_000;
    let text = "r".repeat(LONG);
    let (done, failed) = stored_result_texts(Backend::MySql, text.clone(), text).await;
    for text in [done, failed] {
        assert!(text.len() <= 60_000, "{} bytes stored", text.len());
        assert!(text.starts_with("rrrr"));
        assert!(
            text.ends_with(&format!("[cut from {LONG} bytes]")),
            "{}",
            &text[text.len() - 40..]
        );
    }
}

/// A handler's result or failure text with a NUL character, which a
/// PostgreSQL `text` column cannot hold, is stored with U+FFFD in its
/// place; the update recording it does not fail (which would make the
/// event run again and again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_and_failure_texts_with_nul_are_stored_postgres() {
    let (done, failed) = stored_result_texts(
        Backend::Postgres,
        "done\0here".into(),
        "failed\0here".into(),
    )
    .await;
    assert_eq!(done, "done\u{FFFD}here");
    assert!(
        failed.contains("failed\u{FFFD}here"),
        "the failure text is stored"
    );
}

/// Publishes a good event, `bad` (built for the exchange) and another good
/// event to a fresh realtime type on `backend`, waits (up to `secs`) until
/// both good ones are `done`, each handled once, and returns the
/// environment and the one message that reached the queue's dead-letter
/// queue.
async fn dead_lettered_between_good_ones(
    backend: Backend,
    bad: impl FnOnce(&str) -> OutgoingMessage,
    secs: u64,
) -> (Env, eventyard_transport::Delivery) {
    let exchange = unique("ex");
    let row = receive_row("ACCT.OPENED", &exchange, "realtime", "record");
    let queue = row.queue.clone().unwrap();
    let env = Env::in_process(backend, &exchange, vec![row]).await;
    let recorder = Recorder::new();
    // A long linger, so that all three land in one micro-batch.
    let running = env
        .start(
            recorder.handlers(),
            env.options().ack_linger(Duration::from_millis(300)),
        )
        .await;
    let before = env.publish("ACCT.OPENED", "1").await;
    env.transport.publish(bad(&exchange)).await.unwrap();
    let after = env.publish("ACCT.OPENED", "2").await;
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 2, secs)
        .await;
    let calls = recorder.calls_per_event();
    assert_eq!(calls.get(&before), Some(&1), "{backend:?}");
    assert_eq!(calls.get(&after), Some(&1), "{backend:?}");
    running.shutdown().await;
    let mut dead = env
        .transport
        .subscribe(
            eventyard_transport::Subscription::new(format!("{queue}.dlq"), "").dead_letter(false),
        )
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), dead.next())
        .await
        .expect("a dead-lettered message")
        .expect("the dead-letter queue is open");
    d.acker.ack().await.unwrap();
    (env, d)
}

/// A delivery the database refuses for good (here one larger than MariaDB's
/// 16 MiB `max_allowed_packet`) goes to the queue's dead-letter queue, whole,
/// instead of holding the queue; the deliveries around it are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_the_database_refuses_goes_to_the_dead_letter_queue_mysql() {
    const HUGE: usize = 20 << 20;
    let (env, d) = dead_lettered_between_good_ones(
        Backend::MySql,
        |exchange| {
            OutgoingMessage::new(
                exchange,
                "ACCT.OPENED",
                "huge-1",
                "ACCT.OPENED",
                vec![b'z'; HUGE],
            )
        },
        60,
    )
    .await;
    assert_eq!(d.message_id.as_deref(), Some("huge-1"));
    assert_eq!(d.payload.len(), HUGE, "kept whole");
    assert!(env
        .inbox()
        .get(Some(SUBSCRIBER), "huge-1")
        .await
        .unwrap()
        .is_none());
}

/// A delivery whose row PostgreSQL refuses for its data (a NUL character in
/// a text column, from the message's AMQP `type`) is found by storing the
/// batch one by one and goes to the dead-letter queue; the good deliveries
/// of the same batch are stored and handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_refused_for_its_data_is_dead_lettered_and_the_batch_stored_postgres() {
    let (_env, d) = dead_lettered_between_good_ones(
        Backend::Postgres,
        |exchange| {
            OutgoingMessage::new(
                exchange,
                "ACCT.OPENED",
                "nul-type-1",
                "BAD\u{0}TYPE",
                b"not an envelope".to_vec(),
            )
        },
        30,
    )
    .await;
    assert_eq!(d.message_id.as_deref(), Some("nul-type-1"));
    assert_eq!(d.payload, b"not an envelope".to_vec());
}

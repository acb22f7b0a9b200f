//! Send modes, failures, transactional outbox, relay and live config, over the
//! in-process transport and the real databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use eventyard_core::db::{Backend, Db};
use eventyard_core::envelope::{self, Body, Limits};
use eventyard_core::with_pool;
use eventyard_sender::{
    BatchScheduler, EventMeta, OutboxStatus, Outcome, PublisherOptions, SendError,
};
use eventyard_transport::{InProcessTransport, PublishFault};
use support::{nothing_more, receive, row, sorted_ids, unique, Env};

#[derive(serde::Serialize)]
struct Opened {
    account: String,
    amount: i64,
}

fn opened(i: i64) -> Opened {
    Opened {
        account: format!("ACC-{i}"),
        amount: i * 100,
    }
}

async fn env(
    backend: Backend,
    mode: &str,
    tweak: impl FnOnce(&mut eventyard_core::config::RawSendRow),
) -> (Env, Arc<InProcessTransport>, String) {
    env_with(
        backend,
        mode,
        tweak,
        PublisherOptions::new("CORE").relay_grace(Duration::ZERO),
    )
    .await
}

async fn env_with(
    backend: Backend,
    mode: &str,
    tweak: impl FnOnce(&mut eventyard_core::config::RawSendRow),
    options: PublisherOptions,
) -> (Env, Arc<InProcessTransport>, String) {
    let transport = Arc::new(InProcessTransport::new());
    let exchange = unique("ex");
    let event_type = unique("ACCT.OPENED");
    let mut r = row(&event_type, mode, &exchange);
    tweak(&mut r);
    let env = Env::new(backend, transport.clone(), vec![r], options).await;
    (env, transport, event_type)
}

#[tokio::test]
async fn an_uncompressed_event_carries_no_content_encoding() {
    let (env, _t, et) = env(Backend::Sqlite, "realtime", |row| {
        row.compression = "none".into();
    })
    .await;
    let mut consumer = env.subscribe(&unique("q"), &et).await;
    let published = env.publisher.publish(&et, &opened(1)).await.unwrap();
    assert_eq!(published.outcome, Outcome::Sent);
    let got = receive(&mut consumer, 1, 5).await;
    assert_eq!(got[0].content_encoding, None);
    assert!(got[0].headers.is_empty(), "{:?}", got[0].headers);
    assert!(got[0].payload.starts_with(b"<"));
}

#[tokio::test]
async fn realtime_publishes_at_once_and_marks_sent() {
    for backend in [Backend::Sqlite, Backend::Postgres, Backend::MySql] {
        let (env, _t, et) = env(backend, "realtime", |_| {}).await;
        let mut consumer = env.subscribe(&unique("q"), &et).await;
        let published = env
            .publisher
            .publish_with(
                &et,
                &opened(1),
                EventMeta {
                    business_key: Some("ACC-1".into()),
                    ..EventMeta::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(published.outcome, Outcome::Sent);
        let got = receive(&mut consumer, 1, 5).await;
        assert_eq!(
            got[0].message_id.as_deref(),
            Some(published.event_id.as_str())
        );
        assert_eq!(got[0].event_type.as_deref(), Some(et.as_str()));
        assert_eq!(got[0].content_encoding.as_deref(), Some("gzip"));
        let env_in = envelope::unpack(&got[0].payload, &Limits::default()).unwrap();
        assert_eq!(env_in.header.publisher, "CORE");
        assert_eq!(env_in.common.business_key.as_deref(), Some("ACC-1"));
        match &env_in.body {
            Body::Xml(x) => assert!(x.contains("ACC-1") && x.contains("100"), "{x}"),
            other => panic!("expected an XML body, got {other:?}"),
        }
        let row = env.row(&published.event_id).await;
        assert_eq!(row.status, "sent", "{backend:?}");
        assert_eq!(row.attempts, 1);
        assert!(row.sent_at.is_some());
        assert!(row.sent_at.unwrap() >= row.created_at);
        assert!(row.claimed_by.is_none());
        assert_eq!(row.payload, got[0].payload);
    }
}

#[tokio::test]
async fn realtime_without_persist_writes_no_row() {
    let (env, _t, et) = env(Backend::Sqlite, "realtime", |r| r.persist = false).await;
    let mut consumer = env.subscribe(&unique("q"), &et).await;
    let published = env.publisher.publish(&et, &opened(1)).await.unwrap();
    assert_eq!(published.outcome, Outcome::Sent);
    receive(&mut consumer, 1, 5).await;
    assert!(env
        .publisher
        .outbox()
        .get(&published.event_id)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn realtime_retries_then_fails_with_the_error_recorded() {
    let (env, transport, et) = env(Backend::Postgres, "realtime", |r| r.retry_count = 2).await;
    let mut consumer = env.subscribe(&unique("q"), &et).await;
    transport.set_publish_failure(Some(PublishFault::Nack));
    let err = env.publisher.publish(&et, &opened(1)).await.unwrap_err();
    let SendError::PublishFailed {
        event_id, attempts, ..
    } = &err
    else {
        panic!("expected PublishFailed, got {err}");
    };
    assert_eq!(*attempts, 3, "the first try and retry_count = 2 retries");
    assert!(err.to_string().contains(&et), "{err}");
    let row = env.row(event_id).await;
    assert_eq!(row.status, "failed");
    assert_eq!(row.attempts, 3);
    assert!(
        row.last_error.as_deref().unwrap_or("").contains("nack"),
        "{:?}",
        row.last_error
    );
    nothing_more(&mut consumer, 200).await;

    // A transient failure within the retry budget ends sent, with the attempts counted.
    transport.set_publish_failure(None);
    transport.fail_next_publishes(2, PublishFault::ConnectionLost);
    let published = env.publisher.publish(&et, &opened(2)).await.unwrap();
    assert_eq!(published.outcome, Outcome::Sent);
    let row = env.row(&published.event_id).await;
    assert_eq!((row.status.as_str(), row.attempts), ("sent", 3));
    receive(&mut consumer, 1, 5).await;

    // Replay puts the failed row back; the relay sends it.
    assert_eq!(
        env.publisher
            .outbox()
            .replay_failed(std::slice::from_ref(event_id), None)
            .await
            .unwrap(),
        1
    );
    let report = BatchScheduler::new(env.publisher.clone())
        .relay_once()
        .await
        .unwrap();
    assert_eq!(report.sent, 1);
    let got = receive(&mut consumer, 1, 5).await;
    assert_eq!(got[0].message_id.as_deref(), Some(event_id.as_str()));
    assert_eq!(env.row(event_id).await.status, "sent");
}

#[tokio::test]
async fn batch_waits_for_the_scheduler_and_sends_in_chunks() {
    for (backend, depth) in [
        (Backend::Postgres, 3),
        (Backend::MySql, 3),
        (Backend::Postgres, 1),
    ] {
        let options = PublisherOptions::new("CORE")
            .relay_grace(Duration::ZERO)
            .batch_chunks_in_flight(depth);
        let (env, _t, et) = env_with(backend, "batch", |r| r.batch_size = 7, options).await;
        let mut consumer = env.subscribe(&unique("q"), &et).await;
        let mut ids = Vec::new();
        for i in 0..20 {
            let p = env.publisher.publish(&et, &opened(i)).await.unwrap();
            assert_eq!(p.outcome, Outcome::Queued);
            ids.push(p.event_id);
        }
        nothing_more(&mut consumer, 200).await;
        assert_eq!(env.count(OutboxStatus::Pending, &et).await, 20);
        let report = BatchScheduler::new(env.publisher.clone())
            .send_now(&et)
            .await
            .unwrap();
        assert_eq!(
            (report.claimed, report.sent, report.failed),
            (20, 20, 0),
            "{backend:?}"
        );
        let got = receive(&mut consumer, 20, 5).await;
        // Unsequenced chunks overlap (the next starts before the previous is
        // confirmed), so only each row's presence is promised, not the order.
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(
            sorted_ids(&got),
            expected,
            "{backend:?}, {depth} in flight: every row sent once"
        );
        if depth == 1 {
            // One chunk at a time, each on one channel of the in-process
            // transport: insertion order end to end.
            let in_order: Vec<String> = got
                .iter()
                .map(|d| d.message_id.clone().unwrap_or_default())
                .collect();
            assert_eq!(
                in_order, ids,
                "{backend:?}: one chunk at a time keeps the order"
            );
        }
        assert_eq!(env.count(OutboxStatus::Sent, &et).await, 20);
        let r = env.row(&ids[0]).await;
        assert_eq!(r.attempts, 1);
    }
}

#[tokio::test]
async fn batch_failures_retry_on_later_runs_up_to_retry_count() {
    let (env, transport, et) = env(Backend::Sqlite, "batch", |r| r.retry_count = 1).await;
    let mut consumer = env.subscribe(&unique("q"), &et).await;
    let p = env.publisher.publish(&et, &opened(1)).await.unwrap();
    let scheduler = BatchScheduler::new(env.publisher.clone());
    transport.set_publish_failure(Some(PublishFault::Nack));
    let r1 = scheduler.send_now(&et).await.unwrap();
    assert_eq!((r1.retrying, r1.failed), (1, 0));
    assert_eq!(env.row(&p.event_id).await.status, "pending");
    let r2 = scheduler.send_now(&et).await.unwrap();
    assert_eq!((r2.retrying, r2.failed), (0, 1));
    let row = env.row(&p.event_id).await;
    assert_eq!((row.status.as_str(), row.attempts), ("failed", 2));
    transport.set_publish_failure(None);
    assert_eq!(
        scheduler.send_now(&et).await.unwrap().claimed,
        0,
        "failed rows wait for a replay"
    );
    nothing_more(&mut consumer, 100).await;
}

/// A chunk with failures ends the run even while the next chunk is already
/// publishing: that chunk is finished and recorded, nothing stays claimed,
/// and the next run sends the rest.
#[tokio::test]
async fn a_failed_chunk_ends_the_run_and_leaves_nothing_claimed() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let (env, transport, et) = env(backend, "batch", |r| r.batch_size = 10).await;
        let mut consumer = env.subscribe(&unique("q"), &et).await;
        let mut ids = Vec::new();
        for i in 0..50 {
            let p = env.publisher.publish(&et, &opened(i)).await.unwrap();
            ids.push(p.event_id);
        }
        let scheduler = BatchScheduler::new(env.publisher.clone());
        transport.fail_next_publishes(3, PublishFault::Nack);
        let first = scheduler.send_now(&et).await.unwrap();
        assert_eq!(first.retrying, 3, "{backend:?}: {first:?}");
        assert!(
            first.claimed < 50 && first.sent == first.claimed - 3,
            "{backend:?}: the run stopped after the failed chunk: {first:?}"
        );
        let rows = env
            .publisher
            .outbox()
            .list(&eventyard_sender::OutboxFilter {
                event_type: Some(et.clone()),
                limit: Some(100),
                ..Default::default()
            })
            .await
            .unwrap();
        for r in &rows {
            assert!(
                r.claimed_by.is_none(),
                "{backend:?}: {} left claimed ({})",
                r.event_id,
                r.status
            );
        }
        let failed: Vec<_> = rows
            .iter()
            .filter(|r| r.status == "pending" && r.attempts == 1)
            .collect();
        assert_eq!(failed.len(), 3, "{backend:?}");
        let second = scheduler.send_now(&et).await.unwrap();
        assert_eq!(second.sent, 50 - first.sent, "{backend:?}: {second:?}");
        assert_eq!(env.count(OutboxStatus::Sent, &et).await, 50);
        let got = receive(&mut consumer, 50, 5).await;
        ids.sort();
        assert_eq!(sorted_ids(&got), ids, "{backend:?}: each row once");
        nothing_more(&mut consumer, 100).await;
    }
}

#[tokio::test]
async fn realtime_batch_leaves_a_failure_for_the_scheduler() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (env, transport, et) = env(backend, "realtime_batch", |r| r.retry_count = 5).await;
        let mut consumer = env.subscribe(&unique("q"), &et).await;
        let ok = env.publisher.publish(&et, &opened(0)).await.unwrap();
        assert_eq!(ok.outcome, Outcome::Sent);
        receive(&mut consumer, 1, 5).await;

        transport.set_publish_failure(Some(PublishFault::ConnectionLost));
        let p = env.publisher.publish(&et, &opened(1)).await.unwrap();
        assert!(
            matches!(p.outcome, Outcome::Deferred { .. }),
            "{:?}",
            p.outcome
        );
        let row = env.row(&p.event_id).await;
        assert_eq!(row.status, "pending", "{backend:?}");
        assert_eq!(row.attempts, 1, "no immediate retry");
        assert!(row.claimed_by.is_none(), "released for the scheduler");
        transport.set_publish_failure(None);
        nothing_more(&mut consumer, 100).await;
        let report = BatchScheduler::new(env.publisher.clone())
            .send_now(&et)
            .await
            .unwrap();
        assert_eq!(report.sent, 1);
        let got = receive(&mut consumer, 1, 5).await;
        assert_eq!(got[0].message_id.as_deref(), Some(p.event_id.as_str()));
        let row = env.row(&p.event_id).await;
        assert_eq!((row.status.as_str(), row.attempts), ("sent", 2));
    }
}

#[tokio::test]
async fn unknown_and_disabled_event_types_publish_nothing() {
    let (env, _t, et) = env(Backend::Sqlite, "realtime", |_| {}).await;
    let mut consumer = env.subscribe(&unique("q"), "#").await;
    let err = env
        .publisher
        .publish("NO.SUCH.TYPE", &opened(1))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::UnknownEventType { .. }), "{err}");
    assert!(err.to_string().contains("NO.SUCH.TYPE"));
    with_pool!(&env.t.db, pool => {
        sqlx::query(&format!("UPDATE ey_send_config SET enabled = false WHERE event_type = '{et}'")).execute(pool).await.unwrap();
    });
    env.watcher.check_now();
    wait_until(|| {
        let cur = env.watcher.current();
        !cur.config.send(&et).unwrap().enabled
    })
    .await;
    let err = env.publisher.publish(&et, &opened(1)).await.unwrap_err();
    assert!(matches!(err, SendError::Disabled { .. }), "{err}");
    nothing_more(&mut consumer, 100).await;
    assert_eq!(
        env.publisher
            .outbox()
            .list(&Default::default())
            .await
            .unwrap()
            .len(),
        0
    );
}

async fn wait_until(f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not reached in 5 s");
}

async fn business_rows(db: &Db) -> i64 {
    with_pool!(db, pool => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM app_account").fetch_one(pool).await.unwrap())
}

#[tokio::test]
async fn transactional_outbox_commits_or_rolls_back_with_the_business_write() {
    let (env, _t, et) = env(Backend::Postgres, "realtime", |_| {}).await;
    let mut consumer = env.subscribe(&unique("q"), &et).await;
    let Db::Postgres(pool) = &env.t.db else {
        unreachable!()
    };
    sqlx::query("CREATE TABLE app_account (id TEXT PRIMARY KEY)")
        .execute(pool)
        .await
        .unwrap();

    // Rolled back: no business row, no outbox row, nothing published.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO app_account (id) VALUES ('ACC-1')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let staged = env
        .publisher
        .stage(&mut *tx, &et, &opened(1), EventMeta::default())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(business_rows(&env.t.db).await, 0);
    assert!(env
        .publisher
        .outbox()
        .get(&staged.event_id)
        .await
        .unwrap()
        .is_none());
    let err = env.publisher.flush(staged).await.unwrap_err();
    assert!(matches!(err, SendError::NotClaimable { .. }), "{err}");
    nothing_more(&mut consumer, 200).await;

    // Committed: published on flush.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO app_account (id) VALUES ('ACC-2')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let staged = env
        .publisher
        .stage(&mut *tx, &et, &opened(2), EventMeta::default())
        .await
        .unwrap();
    assert!(
        env.publisher
            .outbox()
            .get(&staged.event_id)
            .await
            .unwrap()
            .is_none(),
        "invisible before commit"
    );
    tx.commit().await.unwrap();
    let id = staged.event_id.clone();
    let published = env.publisher.flush(staged).await.unwrap();
    assert_eq!(published.outcome, Outcome::Sent);
    let got = receive(&mut consumer, 1, 5).await;
    assert_eq!(got[0].message_id.as_deref(), Some(id.as_str()));
    assert_eq!(env.row(&id).await.status, "sent");
}

#[tokio::test]
async fn the_relay_sends_what_a_dead_process_committed_but_never_published() {
    for backend in [Backend::Sqlite, Backend::MySql] {
        let (env, _t, et) = env(backend, "realtime", |_| {}).await;
        let mut consumer = env.subscribe(&unique("q"), &et).await;
        let mut ids = Vec::new();
        with_pool!(&env.t.db, pool => {
            let mut tx = pool.begin().await.unwrap();
            for i in 0..3 {
                let s = env.publisher.stage(&mut *tx, &et, &opened(i), EventMeta::default()).await.unwrap();
                ids.push(s.event_id);
            }
            tx.commit().await.unwrap();
        });
        // The "process" dies here: no flush.
        nothing_more(&mut consumer, 100).await;
        let report = BatchScheduler::new(env.publisher.clone())
            .relay_once()
            .await
            .unwrap();
        assert_eq!(report.sent, 3, "{backend:?}");
        let got = receive(&mut consumer, 3, 5).await;
        let got_ids: Vec<_> = got.iter().map(|d| d.message_id.clone().unwrap()).collect();
        assert_eq!(got_ids, ids);
    }
}

#[tokio::test]
async fn a_live_switch_from_realtime_to_batch_holds_later_events() {
    let (env, _t, et) = env(Backend::Postgres, "realtime", |_| {}).await;
    let mut consumer = env.subscribe(&unique("q"), &et).await;
    let first = env.publisher.publish(&et, &opened(1)).await.unwrap();
    assert_eq!(first.outcome, Outcome::Sent);
    receive(&mut consumer, 1, 5).await;
    with_pool!(&env.t.db, pool => {
        sqlx::query(&format!("UPDATE ey_send_config SET send_mode = 'batch', batch_cron = '0 0 3 * * *' WHERE event_type = '{et}'")).execute(pool).await.unwrap();
    });
    wait_until(|| {
        env.watcher.current().config.send(&et).unwrap().send_mode
            == eventyard_core::config::SendMode::Batch
    })
    .await;
    let later = env.publisher.publish(&et, &opened(2)).await.unwrap();
    assert_eq!(later.outcome, Outcome::Queued);
    nothing_more(&mut consumer, 200).await;
    assert_eq!(env.row(&later.event_id).await.status, "pending");
}

#[tokio::test]
async fn delimited_send_rules_render_text_bodies() {
    let (env, _t, et) = env(Backend::Sqlite, "realtime", |r| {
        r.converter_id = "delimited".into();
        r.converter_rules = Some("delimiter = \"|\"\nfields = [\"account\", \"amount\"]".into());
    })
    .await;
    let mut consumer = env.subscribe(&unique("q"), &et).await;
    env.publisher.publish(&et, &opened(7)).await.unwrap();
    let got = receive(&mut consumer, 1, 5).await;
    let e = envelope::unpack(&got[0].payload, &Limits::default()).unwrap();
    assert_eq!(e.body, Body::Text("ACC-7|700".into()));
}

//! Sequenced event types: numbering per (producer, stream) in the outbox
//! transaction, epochs, snapshots, on the real databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use eventyard_core::db::Backend;
use eventyard_core::envelope::{Codec, Limits};
use eventyard_core::with_pool;
use eventyard_sender::{EventMeta, OutboxFilter, Outcome, PublisherOptions, SendError};
use eventyard_transport::InProcessTransport;
use support::{receive, row, unique, Env};

async fn env(backend: Backend) -> (Env, String) {
    let transport = Arc::new(InProcessTransport::new());
    let exchange = unique("ex");
    let event_type = unique("LEDGER");
    let mut r = row(&event_type, "realtime", &exchange);
    r.sequenced = true;
    r.persist = true;
    let env = Env::new(
        backend,
        transport,
        vec![r],
        PublisherOptions::new("CORE").relay_grace(Duration::ZERO),
    )
    .await;
    (env, event_type)
}

fn meta(producer: &str, stream: &str) -> EventMeta {
    EventMeta {
        producer_id: Some(producer.into()),
        stream: Some(stream.into()),
        ..EventMeta::default()
    }
}

#[tokio::test]
async fn numbering_sqlite() {
    numbers_strictly_per_key_under_concurrency_and_epochs(Backend::Sqlite).await;
}

#[tokio::test]
async fn numbering_postgres() {
    numbers_strictly_per_key_under_concurrency_and_epochs(Backend::Postgres).await;
}

#[tokio::test]
async fn numbering_mysql() {
    numbers_strictly_per_key_under_concurrency_and_epochs(Backend::MySql).await;
}

async fn numbers_strictly_per_key_under_concurrency_and_epochs(backend: Backend) {
    {
        let (env, et) = env(backend).await;
        let mut consumer = env.subscribe(&unique("q"), &et).await;
        // 40 concurrent publishers on one key, 5 on another.
        let mut tasks = Vec::new();
        for i in 0..45 {
            let p = env.publisher.clone();
            let et = et.clone();
            let stream = if i < 40 { "a" } else { "b" };
            tasks.push(tokio::spawn(async move {
                p.publish_with(&et, &serde_json::json!({"v": i}), meta("P1", stream))
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().outcome, Outcome::Sent);
        }
        let rows = env
            .publisher
            .outbox()
            .list(&OutboxFilter {
                limit: Some(1000),
                ..OutboxFilter::default()
            })
            .await
            .unwrap();
        let mut a: Vec<(i64, i64, i64)> = rows
            .iter()
            .filter(|r| r.stream.as_deref() == Some("a"))
            .map(|r| (r.id, r.epoch.unwrap(), r.seq.unwrap()))
            .collect();
        a.sort();
        // Ids follow commit-ordered inserts; seqs are 1..=40 in id order.
        assert_eq!(
            a.iter().map(|r| r.2).collect::<Vec<_>>(),
            (1..=40).collect::<Vec<_>>(),
            "{backend:?}"
        );
        assert!(a.iter().all(|r| r.1 == 1));
        assert_eq!(
            rows.iter()
                .filter(|r| r.stream.as_deref() == Some("b"))
                .count(),
            5
        );
        // The envelope carries the same stamp.
        let got = receive(&mut consumer, 45, 10).await;
        let codec = Codec::new(Limits::default());
        let mut seen_a = Vec::new();
        for d in &got {
            let env = codec.unpack(&d.payload).unwrap();
            assert_eq!(env.header.producer_id.as_deref(), Some("P1"));
            let s = env.header.sequence.unwrap();
            if s.stream == "a" {
                seen_a.push(s.seq);
            }
        }
        seen_a.sort();
        assert_eq!(seen_a, (1..=40).collect::<Vec<u64>>());

        // A new epoch restarts the numbering at 1.
        assert_eq!(env.publisher.reset_epoch("P1", "a").await.unwrap(), 2);
        env.publisher
            .publish_with(&et, &serde_json::json!({"v": 1}), meta("P1", "a"))
            .await
            .unwrap();
        let latest = &env
            .publisher
            .outbox()
            .list(&OutboxFilter {
                limit: Some(1),
                ..OutboxFilter::default()
            })
            .await
            .unwrap()[0];
        assert_eq!((latest.epoch, latest.seq), (Some(2), Some(1)));

        // A lost counter table starts a new epoch by itself.
        with_pool!(&env.t.db, pool => {
            sqlx::query("DELETE FROM ey_stream_counter").execute(pool).await.unwrap();
        });
        env.publisher
            .publish_with(&et, &serde_json::json!({"v": 1}), meta("P1", "a"))
            .await
            .unwrap();
        let latest = &env
            .publisher
            .outbox()
            .list(&OutboxFilter {
                limit: Some(1),
                ..OutboxFilter::default()
            })
            .await
            .unwrap()[0];
        assert_eq!(
            (latest.epoch, latest.seq),
            (Some(3), Some(1)),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn snapshot_is_written_with_its_event() {
    for backend in [Backend::Sqlite, Backend::Postgres, Backend::MySql] {
        let (env, et) = env(backend).await;
        let _consumer = env.subscribe(&unique("q"), &et).await;
        for i in 1..=3i64 {
            env.publisher
                .publish_with_snapshot(
                    &et,
                    &serde_json::json!({"v": i}),
                    meta("P", "s"),
                    format!("state-{i}").into_bytes(),
                )
                .await
                .unwrap();
        }
        let sql = env
            .t
            .db
            .sql("SELECT epoch, seq, state FROM ey_snapshot WHERE producer_id = $1 AND stream = $2")
            .into_owned();
        let (epoch, seq, state): (i64, i64, Vec<u8>) = with_pool!(&env.t.db, pool => {
            sqlx::query_as(&sql).bind("P").bind("s").fetch_one(pool).await.unwrap()
        });
        assert_eq!(
            (epoch, seq, state),
            (1, 3, b"state-3".to_vec()),
            "{backend:?}"
        );
        // Staging a sequenced type is refused clearly.
        let err = env
            .publisher
            .publish_with_snapshot("NOPE", &1, EventMeta::default(), vec![])
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::UnknownEventType { .. }));
    }
}

#[tokio::test]
async fn staged_sequenced_events_are_numbered_in_the_callers_transaction() {
    for backend in [Backend::Sqlite, Backend::Postgres, Backend::MySql] {
        let (env, et) = env(backend).await;
        let _consumer = env.subscribe(&unique("q"), &et).await;
        // A rolled-back transaction gives its number back.
        with_pool!(&env.t.db, pool => {
            let mut tx = pool.begin().await.unwrap();
            let _staged = env.publisher.stage(&mut *tx, &et, &serde_json::json!({"v": 0}), meta("P", "s")).await.unwrap();
            tx.rollback().await.unwrap();
        });
        for i in 1..=3 {
            let staged = with_pool!(&env.t.db, pool => {
                let mut tx = pool.begin().await.unwrap();
                let staged = env.publisher.stage(&mut *tx, &et, &serde_json::json!({"v": i}), meta("P", "s")).await.unwrap();
                tx.commit().await.unwrap();
                staged
            });
            let published = env.publisher.flush(staged).await.unwrap();
            assert_eq!(published.outcome, Outcome::Sent);
            let row = env.row(&published.event_id).await;
            assert_eq!((row.epoch, row.seq), (Some(1), Some(i)), "{backend:?}");
        }
    }
}

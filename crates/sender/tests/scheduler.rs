//! Cron timing with chosen instants, and several schedulers sharing one outbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventyard_core::config::{Config, RawSendRow, StaticCatalog};
use eventyard_core::db::Backend;
use eventyard_sender::{
    BatchPlan, BatchScheduler, Outbox, OutboxStatus, Publisher, PublisherOptions,
};
use eventyard_transport::InProcessTransport;
use support::{deliveries_by_id, receive, row, unique, Env};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn config(rows: &[RawSendRow]) -> Config {
    let catalog = StaticCatalog::new().send_converters(["xml"]);
    let mut c = Config::default();
    for r in rows {
        let v = eventyard_core::config::validate_send_row(r, &catalog).unwrap();
        c.send.insert(v.event_type.clone(), v);
    }
    c
}

fn batch_row(event_type: &str, cron: &str) -> RawSendRow {
    let mut r = RawSendRow::new(event_type);
    r.send_mode = "batch".into();
    r.batch_cron = Some(cron.into());
    r
}

#[test]
fn cron_fires_at_its_seconds_and_collapses_missed_runs() {
    let mut plan = BatchPlan::new();
    let start = at("2026-01-01T10:00:00Z");
    plan.update(
        &config(&[batch_row("A", "*/15 * * * * *"), RawSendRow::new("RT")]),
        start,
    );
    assert_eq!(plan.next_wake(), Some(at("2026-01-01T10:00:15Z")));
    assert!(
        plan.next_for("RT").is_none(),
        "realtime types are not scheduled"
    );
    assert!(plan.take_due(at("2026-01-01T10:00:14.999Z")).is_empty());
    assert_eq!(
        plan.take_due(at("2026-01-01T10:00:15Z")),
        vec!["A".to_string()]
    );
    assert_eq!(plan.next_wake(), Some(at("2026-01-01T10:00:30Z")));
    // Asleep for a minute: one run, not four.
    assert_eq!(plan.take_due(at("2026-01-01T10:01:20Z")).len(), 1);
    assert_eq!(plan.next_wake(), Some(at("2026-01-01T10:01:30Z")));
}

#[test]
fn fixed_intervals_keep_their_cadence() {
    let mut plan = BatchPlan::new();
    plan.update(
        &config(&[batch_row("A", "@every 10s")]),
        at("2026-01-01T10:00:00Z"),
    );
    assert_eq!(plan.next_for("A"), Some(at("2026-01-01T10:00:10Z")));
    // Served 3 s late: the next firing stays on the 10 s grid.
    assert_eq!(plan.take_due(at("2026-01-01T10:00:13Z")).len(), 1);
    assert_eq!(plan.next_for("A"), Some(at("2026-01-01T10:00:20Z")));
}

#[test]
fn daily_time_in_a_timezone() {
    let mut plan = BatchPlan::new();
    plan.update(
        &config(&[batch_row("NIGHTLY", "CRON_TZ=Asia/Shanghai 0 30 2 * * *")]),
        at("2026-01-01T00:00:00Z"),
    );
    assert_eq!(plan.next_for("NIGHTLY"), Some(at("2026-01-01T18:30:00Z")));
}

#[test]
fn config_changes_reschedule_add_and_drop_types() {
    let mut plan = BatchPlan::new();
    let t0 = at("2026-01-01T10:00:00Z");
    plan.update(
        &config(&[batch_row("A", "0 * * * * *"), batch_row("B", "@every 1h")]),
        t0,
    );
    assert_eq!(plan.next_for("A"), Some(at("2026-01-01T10:01:00Z")));
    // A's schedule changes; B is switched to realtime; C appears.
    let mut b = RawSendRow::new("B");
    b.send_mode = "realtime".into();
    let t1 = at("2026-01-01T10:00:30Z");
    plan.update(
        &config(&[
            batch_row("A", "*/5 * * * * *"),
            b,
            batch_row("C", "@every 1m"),
        ]),
        t1,
    );
    assert_eq!(plan.next_for("A"), Some(at("2026-01-01T10:00:35Z")));
    assert!(plan.next_for("B").is_none());
    assert_eq!(plan.next_for("C"), Some(at("2026-01-01T10:01:30Z")));
    // An unchanged schedule keeps its next firing.
    plan.update(
        &config(&[batch_row("A", "*/5 * * * * *"), batch_row("C", "@every 1m")]),
        at("2026-01-01T10:00:31Z"),
    );
    assert_eq!(plan.next_for("C"), Some(at("2026-01-01T10:01:30Z")));
    // A disabled type is dropped.
    let mut a = batch_row("A", "*/5 * * * * *");
    a.enabled = false;
    plan.update(&config(&[a]), t1);
    assert!(plan.next_for("A").is_none());
    assert!(plan.next_for("C").is_none());
}

#[tokio::test]
async fn two_schedulers_send_each_of_5000_rows_exactly_once() {
    for backend in [Backend::Postgres, Backend::MySql] {
        let transport = Arc::new(InProcessTransport::new());
        let exchange = unique("ex");
        let et = unique("LEDGER.LINE");
        let mut r = row(&et, "batch", &exchange);
        r.batch_size = 250;
        let env = Env::new(
            backend,
            transport.clone(),
            vec![r],
            PublisherOptions::new("CORE").instance_id("a"),
        )
        .await;
        let mut consumer = env.subscribe(&unique("q"), &et).await;
        // 5,000 pending rows, written by 50 concurrent publishers (coalesced inserts).
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..50 {
            let (p, et) = (env.publisher.clone(), et.clone());
            tasks.spawn(async move {
                for i in 0..100 {
                    p.publish(&et, &serde_json::json!({ "line": t * 100 + i }))
                        .await
                        .unwrap();
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let other = Publisher::new(
            Outbox::new(env.t.db.clone()),
            env.watcher.subscribe(),
            Arc::new(eventyard_converter::Registry::with_builtins()),
            transport.clone(),
            PublisherOptions::new("CORE").instance_id("b"),
        );
        let s1 = BatchScheduler::new(env.publisher.clone());
        let s2 = BatchScheduler::new(other);
        let (r1, r2) = tokio::join!(s1.send_now(&et), s2.send_now(&et));
        let (r1, r2) = (r1.unwrap(), r2.unwrap());
        assert_eq!(r1.sent + r2.sent, 5000, "{backend:?}: {r1:?} {r2:?}");
        let got = receive(&mut consumer, 5000, 30).await;
        let seen = deliveries_by_id(&got);
        assert_eq!(seen.len(), 5000);
        assert!(seen.values().all(|n| *n == 1));
        support::nothing_more(&mut consumer, 300).await;
        assert_eq!(env.count(OutboxStatus::Sent, &et).await, 5000);
    }
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let transport = Arc::new(InProcessTransport::new());
    let et = unique("T");
    let env = Env::new(
        Backend::Sqlite,
        transport.clone(),
        vec![row(&et, "batch", &unique("ex"))],
        PublisherOptions::new("CORE").lease(Duration::from_millis(200)),
    )
    .await;
    let mut consumer = env.subscribe(&unique("q"), &et).await;
    let p = env.publisher.publish(&et, &1).await.unwrap();
    // A crashed instance claimed the row and never finished.
    let claimed = env
        .publisher
        .outbox()
        .claim(&eventyard_sender::ClaimRequest {
            owner: "crashed",
            lease: Duration::from_millis(200),
            event_type: Some(&et),
            event_types: &[],
            created_before: None,
            limit: 10,
            now: Utc::now(),
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let s = BatchScheduler::new(env.publisher.clone());
    assert_eq!(
        s.send_now(&et).await.unwrap().claimed,
        0,
        "held by the crashed instance"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.send_now(&et).await.unwrap().sent,
        1,
        "lease expired: taken over"
    );
    let got = receive(&mut consumer, 1, 5).await;
    assert_eq!(got[0].message_id.as_deref(), Some(p.event_id.as_str()));
}

#[tokio::test]
async fn the_running_scheduler_fires_on_its_schedule() {
    let transport = Arc::new(InProcessTransport::new());
    let et = unique("T");
    let mut r = row(&et, "batch", &unique("ex"));
    r.batch_cron = Some("@every 200ms".into());
    let env = Env::new(
        Backend::Sqlite,
        transport.clone(),
        vec![r],
        PublisherOptions::new("CORE"),
    )
    .await;
    let mut consumer = env.subscribe(&unique("q"), &et).await;
    for i in 0..3 {
        env.publisher.publish(&et, &i).await.unwrap();
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(BatchScheduler::new(env.publisher.clone()).run(stopped));
    receive(&mut consumer, 3, 5).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

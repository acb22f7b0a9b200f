//! Worker pools: the `workers` bound, live reload, backpressure and two
//! instances of one subscriber.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventyard_core::db::Backend;
use eventyard_receiver::{HandlerOutcome, HandlerRegistry, InboxStatus};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_bound_concurrent_handler_calls() {
    let exchange = unique("ex");
    let mut row = receive_row("ACCT.OPENED", &exchange, "realtime", "slow");
    row.workers = 3;
    let env = Env::in_process(Backend::Postgres, &exchange, vec![row]).await;
    let slow = Recorder::with(Duration::from_millis(60), |_| HandlerOutcome::done("slow"));
    let mut handlers = HandlerRegistry::new();
    handlers.register("slow", slow.clone());
    let running = env.start(handlers, env.options()).await;
    for i in 0..24 {
        env.publish("ACCT.OPENED", &i.to_string()).await;
    }
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 24, 20)
        .await;
    assert_eq!(
        slow.max_running(),
        3,
        "at most `workers` calls at once, and all of them used"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_reload_of_workers_and_process_mode() {
    let exchange = unique("ex");
    let mut row = receive_row("ACCT.OPENED", &exchange, "realtime", "slow");
    row.workers = 1;
    let env = Env::in_process(Backend::Postgres, &exchange, vec![row.clone()]).await;
    let slow = Recorder::with(Duration::from_millis(40), |_| HandlerOutcome::done("slow"));
    let mut handlers = HandlerRegistry::new();
    handlers.register("slow", slow.clone());
    let running = env.start(handlers, env.options()).await;
    for i in 0..8 {
        env.publish("ACCT.OPENED", &format!("a{i}")).await;
    }
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 8, 20)
        .await;
    assert_eq!(slow.max_running(), 1);

    // More workers, no restart.
    row.workers = 4;
    env.update_receive(&row).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    slow.reset_max();
    for i in 0..16 {
        env.publish("ACCT.OPENED", &format!("b{i}")).await;
    }
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 24, 20)
        .await;
    assert_eq!(slow.max_running(), 4);

    // Store only from now on.
    row.process_mode = "none".into();
    env.update_receive(&row).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls = slow.calls.load(Ordering::SeqCst);
    for i in 0..3 {
        env.publish("ACCT.OPENED", &format!("c{i}")).await;
    }
    env.wait_status("ACCT.OPENED", InboxStatus::Stored, 3, 10)
        .await;
    assert_eq!(slow.calls.load(Ordering::SeqCst), calls);

    // And batch: the stored `received` rows of a batch type wait for the schedule.
    row.process_mode = "batch".into();
    row.batch_cron = Some("@every 200ms".into());
    env.update_receive(&row).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..3 {
        env.publish("ACCT.OPENED", &format!("d{i}")).await;
    }
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 27, 10)
        .await;
    assert_eq!(env.count("ACCT.OPENED", InboxStatus::Stored).await, 3);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_bound_pauses_consumption_until_handlers_catch_up() {
    let exchange = unique("ex");
    let row = receive_row("ACCT.OPENED", &exchange, "realtime", "slow");
    let env = Env::in_process(Backend::Postgres, &exchange, vec![row]).await;
    let open = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&open);
    let mut handlers = HandlerRegistry::new();
    handlers.register_fn("slow", move |_msg| {
        let gate = Arc::clone(&gate);
        async move {
            while !gate.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            HandlerOutcome::done("through")
        }
    });
    let running = env
        .start(handlers, env.options().backlog(5).ack_batch(1))
        .await;
    for i in 0..20 {
        env.publish("ACCT.OPENED", &i.to_string()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = env.rows("ACCT.OPENED").await.len();
    assert!(
        stored <= 6,
        "consumption pauses at the backlog bound: {stored} stored"
    );
    open.store(true, Ordering::SeqCst);
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 20, 20)
        .await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_of_one_subscriber_never_process_an_event_twice() {
    let exchange = unique("ex");
    let mut row = receive_row("ACCT.OPENED", &exchange, "realtime", "record");
    row.workers = 4;
    row.backoff_ms = 10;
    let env = Env::in_process(Backend::Postgres, &exchange, vec![row]).await;
    // Every event fails its first attempt, so both instances' retry pollers
    // compete for the same due rows.
    let recorder = Recorder::with(Duration::ZERO, |m| {
        if m.attempt == 1 {
            HandlerOutcome::retry("first attempt always fails")
        } else {
            HandlerOutcome::done("second time lucky")
        }
    });
    let mut a = HandlerRegistry::new();
    a.register("record", recorder.clone());
    let b = a.clone();
    let one = env.start(a, env.options().instance_id("one")).await;
    let two = env.start(b, env.options().instance_id("two")).await;
    let n = 200;
    for i in 0..n {
        env.publish("ACCT.OPENED", &i.to_string()).await;
    }
    env.wait_status("ACCT.OPENED", InboxStatus::Done, n, 30)
        .await;
    let per_event = recorder.calls_per_event();
    assert_eq!(per_event.len(), n as usize);
    assert!(
        per_event.values().all(|c| *c == 2),
        "each event: one failed attempt, one success: {:?}",
        per_event.values().filter(|c| **c != 2).collect::<Vec<_>>()
    );
    let effects = env.effects().await;
    assert_eq!(effects.len(), n as usize);
    let s1 = one.stats().get("ACCT.OPENED");
    let s2 = two.stats().get("ACCT.OPENED");
    assert_eq!(s1.processed + s2.processed, n as u64);
    assert_eq!(s1.received + s2.received, n as u64);
    one.shutdown().await;
    two.shutdown().await;
}

//! Quick handlers called in the transaction that stores their micro-batch
//! (`ReceiverOptions::inline_handling`): rows written once in their final
//! state, the handler's writes committed with them or rolled back alone,
//! failures recorded and retried as on the pool's path, duplicates never
//! handled twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use eventyard_core::db::{Backend, Db};
use eventyard_receiver::{
    Handler, HandlerContext, HandlerOutcome, HandlerRegistry, InboxStatus, Message, ReceiverHandle,
};

use crate::support::*;

const TYPE: &str = "ACCT.OPENED";

/// Writes an effect row in the handler transaction and answers by account:
/// `fail` fails for good, `retry` asks for a retry on its first attempt,
/// anything else is done with `ok <account>`.
#[derive(Default)]
struct Quick {
    /// (event id, inbox id, attempt) per call.
    seen: Mutex<Vec<(String, i64, u32)>>,
    calls: AtomicUsize,
}

#[async_trait]
impl Handler for Quick {
    async fn handle(&self, msg: &Message, ctx: &mut HandlerContext<'_>) -> HandlerOutcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen
            .lock()
            .unwrap()
            .push((msg.event_id.clone(), msg.inbox_id, msg.attempt));
        let account = msg.fields.get_str("account").unwrap_or("");
        if account == "race" {
            // Another instance stores this event meanwhile, between the id
            // check and the insert (its own connection, committed at once).
            if let Db::Postgres(pool) = ctx.db().clone() {
                sqlx::query(
                    "INSERT INTO ey_inbox (event_id, event_type, subscriber, status, payload, \
                     claimed_by, claimed_until) VALUES ($1, $2, $3, 'received', $4, \
                     'other-instance', now() + interval '1 hour') \
                     ON CONFLICT (subscriber, event_id) DO NOTHING",
                )
                .bind(&msg.event_id)
                .bind(&msg.event_type)
                .bind(&msg.subscriber)
                .bind(b"stored elsewhere".as_slice())
                .execute(&pool)
                .await
                .unwrap();
            }
        }
        if let Err(e) = ctx
            .execute(
                "INSERT INTO effects (event_id, note) VALUES ($1, $2)",
                &[&msg.event_id, &format!("attempt {}", msg.attempt)],
            )
            .await
        {
            return HandlerOutcome::fail(format!("effect insert failed: {e}"));
        }
        match (account, msg.attempt) {
            ("fail", _) => HandlerOutcome::fail("refused"),
            ("retry", 1) => HandlerOutcome::retry("not yet"),
            _ => HandlerOutcome::done(format!("ok {account}")),
        }
    }
}

impl Quick {
    fn calls_per_event(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for (e, _, _) in self.seen.lock().unwrap().iter() {
            *m.entry(e.clone()).or_insert(0) += 1;
        }
        m
    }
}

fn registry(h: &Arc<Quick>) -> HandlerRegistry {
    let mut handlers = HandlerRegistry::new();
    handlers.register("record", h.clone());
    handlers
}

/// Micro-batches of at most 4 deliveries: any micro-batch is a "backlog"
/// (at least a quarter full), so that single events are handled inline.
fn inline_options(env: &Env) -> eventyard_receiver::ReceiverOptions {
    env.options().ack_batch(4)
}

/// A receiver of `TYPE` (realtime, handler [`Quick`]) on a fresh database
/// of `backend`, started with the options `options` gives.
struct Setup {
    exchange: String,
    env: Env,
    quick: Arc<Quick>,
    running: ReceiverHandle,
}

async fn setup(
    backend: Backend,
    options: impl FnOnce(&Env) -> eventyard_receiver::ReceiverOptions,
) -> Setup {
    let exchange = unique("ex");
    let env = Env::in_process(
        backend,
        &exchange,
        vec![receive_row(TYPE, &exchange, "realtime", "record")],
    )
    .await;
    let quick = Arc::new(Quick::default());
    let running = env.start(registry(&quick), options(&env)).await;
    Setup {
        exchange,
        env,
        quick,
        running,
    }
}

fn inline_count(running: &ReceiverHandle) -> u64 {
    running.stats().get(TYPE).processed_inline
}

/// Publishes rounds of `accounts` until at least one round was handled in
/// the storing transaction (the first events teach the receiver that the
/// handler is quick); `done_so_far` counts the events published.
async fn publish_until_inline(
    env: &Env,
    running: &ReceiverHandle,
    accounts: &[&str],
    done_so_far: &mut i64,
) {
    for _ in 0..30 {
        let before = inline_count(running);
        for a in accounts {
            env.publish(TYPE, a).await;
        }
        *done_so_far += accounts.len() as i64;
        env.wait_status(TYPE, InboxStatus::Done, *done_so_far, 20)
            .await;
        if inline_count(running) > before {
            return;
        }
    }
    panic!("no micro-batch was handled in its storing transaction");
}

/// [`setup`] with [`inline_options`], once micro-batches are handled in
/// their storing transaction; with the number of events `done` by then.
async fn warmed_up(backend: Backend) -> (Setup, i64) {
    let setup = setup(backend, inline_options).await;
    let mut done = 0;
    publish_until_inline(
        &setup.env,
        &setup.running,
        &["w1", "w2", "w3", "w4"],
        &mut done,
    )
    .await;
    (setup, done)
}

async fn rows_written_once_in_their_final_state(backend: Backend) {
    let Setup {
        env,
        quick,
        running,
        ..
    } = setup(backend, inline_options).await;
    let mut done = 0;
    let accounts: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
    let accounts: Vec<&str> = accounts.iter().map(String::as_str).collect();
    publish_until_inline(&env, &running, &accounts, &mut done).await;

    let rows = env.rows(TYPE).await;
    assert_eq!(rows.len() as i64, done);
    let seen: BTreeMap<String, (i64, u32)> = quick
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(e, id, a)| (e.clone(), (*id, *a)))
        .collect();
    for r in &rows {
        assert_eq!(r.status, "done", "{r:?}");
        assert_eq!(r.attempts, 1, "{r:?}");
        assert!(
            r.result.as_deref().is_some_and(|t| t.starts_with("ok a")),
            "{r:?}"
        );
        assert!(r.processed_at.is_some() && r.claimed_by.is_none(), "{r:?}");
        // The handler was told the id the row was then written with.
        assert_eq!(seen.get(&r.event_id), Some(&(r.id, 1)), "{r:?}");
    }
    assert!(quick.calls_per_event().values().all(|&n| n == 1));
    assert_eq!(quick.calls.load(Ordering::SeqCst) as i64, done);
    // Each handler's write committed with its row.
    let mut effects = env.effects().await;
    let mut ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
    effects.sort();
    ids.sort();
    assert_eq!(effects, ids);
    eventually(5, || async {
        running.stats().get(TYPE).processed as i64 == done
    })
    .await;
    let stats = running.stats().get(TYPE);
    assert!(stats.processed_inline > 0 && stats.processed_inline <= stats.processed);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_rows_are_written_once_in_their_final_state_postgres() {
    rows_written_once_in_their_final_state(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_rows_are_written_once_in_their_final_state_sqlite() {
    rows_written_once_in_their_final_state(Backend::Sqlite).await;
}

async fn failures_in_the_storing_transaction(backend: Backend) {
    let (
        Setup {
            env,
            quick,
            running,
            ..
        },
        mut done,
    ) = warmed_up(backend).await;

    // Until a round with the failing events is handled inline.
    let mut round = None;
    for _ in 0..20 {
        let before = inline_count(&running);
        let ok1 = env.publish(TYPE, "g1").await;
        let fail = env.publish(TYPE, "fail").await;
        let retry = env.publish(TYPE, "retry").await;
        let ok2 = env.publish(TYPE, "g2").await;
        done += 3;
        env.wait_status(TYPE, InboxStatus::Done, done, 20).await;
        if inline_count(&running) > before {
            round = Some((ok1, fail, retry, ok2));
            break;
        }
        // Handled by the pool: the failed one is dead; try another round.
    }
    let (ok1, fail, retry, ok2) = round.expect("no round handled in its storing transaction");
    let row = |id: String| {
        let inbox = env.inbox();
        async move { inbox.get(Some(SUBSCRIBER), &id).await.unwrap().unwrap() }
    };
    let dead = row(fail.clone()).await;
    assert_eq!(dead.status, "dead");
    assert_eq!(dead.attempts, 1);
    assert_eq!(dead.result.as_deref(), Some("refused"));
    let retried = row(retry.clone()).await;
    assert_eq!(retried.status, "done", "{retried:?}");
    assert_eq!(retried.attempts, 2, "{retried:?}");
    for id in [&ok1, &ok2] {
        let r = row(id.clone()).await;
        assert_eq!((r.status.as_str(), r.attempts), ("done", 1), "{r:?}");
    }
    let calls = quick.calls_per_event();
    assert_eq!(calls.get(&fail), Some(&1));
    assert_eq!(calls.get(&retry), Some(&2));
    assert_eq!(calls.get(&ok1), Some(&1));
    // The failed attempts' writes were rolled back alone: no effect for the
    // dead event, one (the second attempt's) for the retried one, and the
    // others in their transaction kept theirs.
    let effects = env.effects().await;
    assert!(!effects.contains(&fail));
    assert_eq!(effects.iter().filter(|e| **e == retry).count(), 1);
    assert!(effects.contains(&ok1) && effects.contains(&ok2));
    let note: String = eventyard_core::with_pool!(&env.db, pool => sqlx::query_scalar(
        &eventyard_core::db::placeholders(backend, "SELECT note FROM effects WHERE event_id = $1"))
        .bind(&retry).fetch_one(pool).await.unwrap());
    assert_eq!(note, "attempt 2");
    let stats = running.stats().get(TYPE);
    assert!(stats.dead >= 1 && stats.retried >= 1, "{stats:?}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_failures_roll_back_alone_and_are_retried_postgres() {
    failures_in_the_storing_transaction(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_failures_roll_back_alone_and_are_retried_sqlite() {
    failures_in_the_storing_transaction(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_is_not_handled_again_inline() {
    let (
        Setup {
            exchange,
            env,
            quick,
            running,
        },
        mut done,
    ) = warmed_up(Backend::Postgres).await;

    // Rounds until one is handled (at least in part) in its storing
    // transaction; every round must handle its event once.
    let mut handled_inline = false;
    for round in 0..10 {
        let (id, msg) = packed_message(&exchange, TYPE, "7");
        let before = inline_count(&running);
        let duplicates = running.stats().get(TYPE).duplicates;
        env.transport.publish(msg.clone()).await.unwrap();
        env.wait_status(TYPE, InboxStatus::Done, done + 1, 20).await;
        // Again alone, then twice in one micro-batch with a new event.
        env.transport.publish(msg.clone()).await.unwrap();
        let other = env.publish(TYPE, &format!("8-{round}")).await;
        env.transport
            .publish_many(vec![msg.clone(), msg])
            .await
            .into_iter()
            .for_each(|r| r.unwrap());
        eventually(10, || async {
            running.stats().get(TYPE).duplicates >= duplicates + 3
        })
        .await;
        done += 2;
        env.wait_status(TYPE, InboxStatus::Done, done, 20).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let calls = quick.calls_per_event();
        assert_eq!(calls.get(&id), Some(&1));
        assert_eq!(calls.get(&other), Some(&1));
        assert_eq!(env.rows(TYPE).await.len() as i64, done);
        if inline_count(&running) > before {
            handled_inline = true;
            break;
        }
    }
    assert!(
        handled_inline,
        "no round was handled in its storing transaction"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_handling_off_leaves_every_event_to_the_pool() {
    let Setup { env, running, .. } = setup(Backend::Sqlite, |env| {
        inline_options(env).inline_handling(false)
    })
    .await;
    for round in 0..5 {
        for i in 0..10 {
            env.publish(TYPE, &format!("{round}-{i}")).await;
        }
        env.wait_status(TYPE, InboxStatus::Done, (round + 1) * 10, 20)
            .await;
    }
    // Counted just after the commit that the rows show.
    eventually(5, || async { running.stats().get(TYPE).processed == 50 }).await;
    assert_eq!(running.stats().get(TYPE).processed_inline, 0);
    assert_eq!(env.effects().await.len(), 50);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_of_events_goes_the_usual_way() {
    // Default micro-batches (256): one event at a time is no backlog.
    let Setup { env, running, .. } = setup(Backend::Postgres, Env::options).await;
    for i in 0..20 {
        env.publish(TYPE, &format!("t{i}")).await;
        env.wait_status(TYPE, InboxStatus::Done, i + 1, 20).await;
    }
    eventually(5, || async { running.stats().get(TYPE).processed == 20 }).await;
    assert_eq!(inline_count(&running), 0);
    assert_eq!(env.effects().await.len(), 20);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_another_instance_stores_meanwhile_is_left_to_it() {
    let (
        Setup {
            env,
            quick,
            running,
            ..
        },
        _,
    ) = warmed_up(Backend::Postgres).await;
    // Until a `race` event is handled in its storing transaction (one
    // handled by the pool finds its own row stored and is simply done).
    let mut raced = None;
    for _ in 0..10 {
        let before = running.stats().get(TYPE);
        let race = env.publish(TYPE, "race").await;
        eventually(10, || async {
            let stats = running.stats().get(TYPE);
            stats.duplicates > before.duplicates || stats.processed > before.processed
        })
        .await;
        if running.stats().get(TYPE).duplicates > before.duplicates {
            raced = Some((race, before));
            break;
        }
    }
    let (race, before) = raced.expect("no `race` event was handled in its storing transaction");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Called once, in the storing transaction, which was then dropped: its
    // write is gone, and the row is the other instance's, left to it.
    assert_eq!(quick.calls_per_event().get(&race), Some(&1));
    assert!(!env.effects().await.contains(&race));
    let row = env
        .inbox()
        .get(Some(SUBSCRIBER), &race)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "received");
    assert_eq!(row.claimed_by.as_deref(), Some("other-instance"));
    let after = running.stats().get(TYPE);
    assert_eq!(after.processed_inline, before.processed_inline);
    assert_eq!(after.processed, before.processed);
    running.shutdown().await;
}

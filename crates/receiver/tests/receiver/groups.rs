//! Grouped realtime transactions: the events queued for a type run in one
//! transaction, each handler in its own savepoint, so a failing handler's
//! writes are rolled back while the others in its group commit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eventyard_core::db::Backend;
use eventyard_receiver::{
    Handler, HandlerContext, HandlerOutcome, HandlerRegistry, InboxStatus, Message, ReplayRequest,
};

use crate::support::*;

/// Writes an effect row for every call, then answers by the event's
/// account: `fail` fails for good; `retry` and
/// `panic` do so on their first attempt only; `sloppy…` ignores a failed
/// statement; anything else is done.
#[derive(Default)]
struct Grouped {
    /// Declares that it does not write in the transaction (and writes anyway).
    claims_no_transaction: bool,
    calls: AtomicUsize,
    /// (account, attempt, PostgreSQL transaction id) per call.
    seen: Mutex<Vec<(String, u32, Option<i64>)>>,
}

#[async_trait]
impl Handler for Grouped {
    async fn handle(&self, msg: &Message, ctx: &mut HandlerContext<'_>) -> HandlerOutcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let account = msg.fields.get_str("account").unwrap_or("").to_string();
        let txid = match ctx.postgres() {
            Some(c) => Some(
                sqlx::query_scalar::<_, i64>("SELECT txid_current()")
                    .fetch_one(c)
                    .await
                    .unwrap(),
            ),
            None => None,
        };
        self.seen
            .lock()
            .unwrap()
            .push((account.clone(), msg.attempt, txid));
        if let Err(e) = ctx
            .execute(
                "INSERT INTO effects (event_id, note) VALUES ($1, $2)",
                &[&msg.event_id, &format!("attempt {}", msg.attempt)],
            )
            .await
        {
            return HandlerOutcome::fail(format!("effect insert failed: {e}"));
        }
        if account.starts_with("sloppy") {
            // A failed statement the handler does not report: on PostgreSQL
            // the transaction is failed from here on.
            let _ = ctx
                .execute("INSERT INTO no_such_table VALUES ($1)", &[&msg.event_id])
                .await;
        }
        answer(&account, msg.attempt)
    }

    fn uses_transaction(&self) -> bool {
        !self.claims_no_transaction
    }
}

/// The answer by account: `fail` fails for good; `retry` and `panic` do so
/// on their first attempt only; anything else is done.
fn answer(account: &str, attempt: u32) -> HandlerOutcome {
    match (account, attempt) {
        ("fail", _) => HandlerOutcome::fail("refused"),
        ("retry", 1) => HandlerOutcome::retry("not yet"),
        ("panic", 1) => panic!("handler blew up"),
        _ => HandlerOutcome::done(format!("ok {account}")),
    }
}

/// A receiver whose one worker gets `accounts` queued all at once, so that
/// they run as one group.
async fn queued_group(
    backend: Backend,
    accounts: &[&'static str],
) -> (
    Env,
    Arc<Grouped>,
    BTreeMap<&'static str, String>,
    eventyard_receiver::ReceiverHandle,
) {
    queued_group_of(backend, accounts, Grouped::default()).await
}

async fn queued_group_of(
    backend: Backend,
    accounts: &[&'static str],
    handler: Grouped,
) -> (
    Env,
    Arc<Grouped>,
    BTreeMap<&'static str, String>,
    eventyard_receiver::ReceiverHandle,
) {
    let handler = Arc::new(handler);
    let mut handlers = HandlerRegistry::new();
    handlers.register("writer", handler.clone());
    let (env, ids, running) = queue_as_group(backend, accounts, "writer", handlers).await;
    (env, handler, ids, running)
}

/// Publishes one event per account while the type only stores, then turns
/// it to `realtime` with `handler_id`, so that the one worker gets them
/// queued all at once.
async fn queue_as_group(
    backend: Backend,
    accounts: &[&'static str],
    handler_id: &str,
    handlers: HandlerRegistry,
) -> (
    Env,
    BTreeMap<&'static str, String>,
    eventyard_receiver::ReceiverHandle,
) {
    let exchange = unique("ex");
    // Stored only at first, so that the events can be queued all at once.
    let mut row = receive_row("ACCT.OPENED", &exchange, "none", handler_id);
    row.workers = 1;
    let env = Env::in_process(backend, &exchange, vec![row.clone()]).await;
    let running = env.start(handlers, env.options()).await;
    let mut ids = BTreeMap::new();
    for a in accounts {
        ids.insert(*a, env.publish("ACCT.OPENED", a).await);
    }
    let n = i64::try_from(accounts.len()).unwrap();
    env.wait_status("ACCT.OPENED", InboxStatus::Stored, n, 10)
        .await;
    let moved = env
        .inbox()
        .replay(&ReplayRequest {
            subscriber: Some(SUBSCRIBER.into()),
            event_type: Some("ACCT.OPENED".into()),
            status: InboxStatus::Stored,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(moved, n as u64);
    // Realtime now: the retry poller claims them together and queues them
    // for the one worker.
    row.process_mode = "realtime".into();
    row.handler_id = Some(handler_id.into());
    env.update_receive(&row).await;
    (env, ids, running)
}

async fn failing_handler_in_a_group(backend: Backend) {
    let accounts = ["ok1", "fail", "ok2", "panic", "retry", "ok3"];
    let (env, handler, ids, running) = queued_group(backend, &accounts).await;
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 5, 20)
        .await;
    env.wait_status("ACCT.OPENED", InboxStatus::Dead, 1, 5)
        .await;

    // The queued events ran as a group: one transaction for their first
    // attempts (from `fail` on at least, should the worker have woken up
    // before the poller had queued them all).
    let seen = handler.seen.lock().unwrap().clone();
    let first: Vec<&(String, u32, Option<i64>)> = seen
        .iter()
        .filter(|(_, attempt, _)| *attempt == 1)
        .collect();
    let order: Vec<&str> = first.iter().map(|(a, _, _)| a.as_str()).collect();
    assert_eq!(order, accounts, "queued events run in order, each once");
    if backend == Backend::Postgres {
        let txids: std::collections::BTreeSet<Option<i64>> =
            first.iter().skip(1).map(|(_, _, t)| *t).collect();
        assert_eq!(txids.len(), 1, "one transaction for the group: {seen:?}");
    }

    // Effects: every event but `fail`; `retry` and `panic` only from their
    // second attempt (the first attempt's row was rolled back with its savepoint).
    let effects = env.effects().await;
    let mut expected: Vec<String> = Vec::new();
    for a in ["ok1", "ok2", "ok3", "retry", "panic"] {
        expected.push(ids[a].clone());
    }
    expected.sort();
    assert_eq!(effects, expected);
    for row in env.rows("ACCT.OPENED").await {
        let account = ids
            .iter()
            .find(|(_, id)| **id == row.event_id)
            .map_or("?", |(a, _)| *a);
        match account {
            "fail" => {
                assert_eq!(row.status, "dead");
                assert_eq!(row.attempts, 1);
                assert!(row.result.as_deref().unwrap_or("").contains("refused"));
            }
            "retry" | "panic" => {
                assert_eq!(row.status, "done", "{account}");
                assert_eq!(row.attempts, 2, "{account}");
                assert_eq!(
                    row.result.as_deref(),
                    Some(format!("ok {account}").as_str())
                );
            }
            _ => {
                assert_eq!(row.status, "done", "{account}");
                assert_eq!(row.attempts, 1, "{account}");
                assert_eq!(
                    row.result.as_deref(),
                    Some(format!("ok {account}").as_str())
                );
            }
        }
    }
    let notes: BTreeMap<String, String> = eventyard_core::with_pool!(&env.db, pool => {
        sqlx::query_as::<_, (String, String)>("SELECT event_id, note FROM effects")
            .fetch_all(pool).await.unwrap().into_iter().collect()
    });
    for a in ["retry", "panic"] {
        assert_eq!(notes[ids[a].as_str()], "attempt 2", "{a}");
    }
    assert_eq!(notes[ids["ok2"].as_str()], "attempt 1");
    running.shutdown().await;
}

/// PostgreSQL fails the whole transaction after a statement error: a handler
/// that ignores one and answers `Done` is undone and retried, without
/// taking its group down (in the middle of the group and at its end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_with_a_handler_ignoring_a_statement_error_postgres() {
    let accounts = ["ok1", "sloppy1", "ok2", "sloppy2"];
    let (env, _handler, ids, running) = queued_group(Backend::Postgres, &accounts).await;
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 2, 20)
        .await;
    // Retried until out of attempts (5, backoff from 20 ms).
    env.wait_status("ACCT.OPENED", InboxStatus::Dead, 2, 20)
        .await;
    let mut expected = vec![ids["ok1"].clone(), ids["ok2"].clone()];
    expected.sort();
    assert_eq!(env.effects().await, expected);
    for row in env.rows("ACCT.OPENED").await {
        if row.event_id == ids["sloppy1"] || row.event_id == ids["sloppy2"] {
            assert_eq!(row.status, "dead");
            let result = row.result.unwrap_or_default();
            assert!(result.contains("transaction failed"), "{result}");
        } else {
            assert_eq!(row.status, "done");
            assert_eq!(row.attempts, 1);
        }
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_with_a_failing_handler_postgres() {
    failing_handler_in_a_group(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_with_a_failing_handler_mysql() {
    failing_handler_in_a_group(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_with_a_failing_handler_sqlite() {
    failing_handler_in_a_group(Backend::Sqlite).await;
}

/// A handler that declares it does not write in the transaction runs without
/// savepoints. If it writes anyway and then fails, the whole group's
/// transaction is dropped: nothing of the failed call survives, and the
/// group's other events run again (their handler is called twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_a_handler_that_wrote_after_declaring_it_would_not_postgres() {
    let accounts = ["ok1", "retry", "ok2"];
    let handler = Grouped {
        claims_no_transaction: true,
        ..Grouped::default()
    };
    let (env, handler, ids, running) = queued_group_of(Backend::Postgres, &accounts, handler).await;
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 3, 20)
        .await;
    let mut expected: Vec<String> = accounts.iter().map(|a| ids[a].clone()).collect();
    expected.sort();
    assert_eq!(env.effects().await, expected, "one effect per event");
    let notes: BTreeMap<String, String> = eventyard_core::with_pool!(&env.db, pool => {
        sqlx::query_as::<_, (String, String)>("SELECT event_id, note FROM effects")
            .fetch_all(pool).await.unwrap().into_iter().collect()
    });
    assert_eq!(
        notes[ids["retry"].as_str()],
        "attempt 2",
        "the failed call's write is gone"
    );
    for row in env.rows("ACCT.OPENED").await {
        let expected_attempts = if row.event_id == ids["retry"] { 2 } else { 1 };
        assert_eq!(row.status, "done");
        assert_eq!(row.attempts, expected_attempts, "{}", row.event_id);
    }
    let seen = handler.seen.lock().unwrap().clone();
    let ok1_calls = seen.iter().filter(|(a, _, _)| a == "ok1").count();
    assert_eq!(
        ok1_calls, 2,
        "ok1 ran again after the group was dropped: {seen:?}"
    );
    running.shutdown().await;
}

/// A handler that does not write in the transaction (a plain function) runs
/// its groups without savepoints; a failure in the middle leaves the others
/// `done` and is retried on its own.
async fn plain_function_group(backend: Backend) {
    let calls = Arc::new(Mutex::new(Vec::<(String, u32)>::new()));
    let mut handlers = HandlerRegistry::new();
    let seen = Arc::clone(&calls);
    handlers.register_fn("plain", move |msg: Message| {
        let seen = Arc::clone(&seen);
        async move {
            let account = msg.fields.get_str("account").unwrap_or("").to_string();
            seen.lock().unwrap().push((account.clone(), msg.attempt));
            answer(&account, msg.attempt)
        }
    });
    let accounts = ["ok1", "fail", "ok2", "panic", "retry", "ok3"];
    let (env, ids, running) = queue_as_group(backend, &accounts, "plain", handlers).await;
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 5, 20)
        .await;
    env.wait_status("ACCT.OPENED", InboxStatus::Dead, 1, 5)
        .await;
    for row in env.rows("ACCT.OPENED").await {
        let account = ids
            .iter()
            .find(|(_, id)| **id == row.event_id)
            .map_or("?", |(a, _)| *a);
        match account {
            "fail" => assert_eq!(row.status, "dead"),
            "retry" | "panic" => {
                assert_eq!(row.status, "done", "{account}");
                assert_eq!(row.attempts, 2, "{account}");
            }
            _ => {
                assert_eq!(row.status, "done", "{account}");
                assert_eq!(row.attempts, 1, "{account}");
            }
        }
    }
    let calls = calls.lock().unwrap().clone();
    for a in ["ok1", "ok2", "ok3"] {
        let n = calls.iter().filter(|(c, _)| c == a).count();
        assert_eq!(n, 1, "{a} called once: {calls:?}");
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_a_plain_function_postgres() {
    plain_function_group(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_a_plain_function_sqlite() {
    plain_function_group(Backend::Sqlite).await;
}

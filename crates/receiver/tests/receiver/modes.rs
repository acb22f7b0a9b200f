//! Each process mode end to end, publisher to handler.

use std::sync::Arc;

use async_trait::async_trait;
use eventyard_core::db::Backend;
use eventyard_receiver::{
    BatchHandler, HandlerContext, HandlerOutcome, HandlerRegistry, InboxStatus, Message,
};

use crate::support::*;

struct BatchRecorder {
    batches: std::sync::Mutex<Vec<Vec<Message>>>,
}

#[async_trait]
impl BatchHandler for BatchRecorder {
    async fn handle_batch(
        &self,
        msgs: &[Message],
        ctx: &mut HandlerContext<'_>,
    ) -> Vec<HandlerOutcome> {
        self.batches.lock().unwrap().push(msgs.to_vec());
        let mut out = Vec::new();
        for m in msgs {
            ctx.execute(
                "INSERT INTO effects (event_id, note) VALUES ($1, 'batch')",
                &[&m.event_id],
            )
            .await
            .unwrap();
            out.push(HandlerOutcome::done(format!(
                "batched {}",
                m.fields.get_str("account").unwrap_or("?")
            )));
        }
        out
    }
}

async fn every_mode(backend: Backend) {
    let exchange = unique("ex");
    let env = Env::in_process(
        backend,
        &exchange,
        vec![
            receive_row("ACCT.OPENED", &exchange, "realtime", "record"),
            receive_row("ACCT.DAILY", &exchange, "batch", "batch_record"),
            receive_row("ACCT.AUDIT", &exchange, "none", ""),
        ],
    )
    .await;
    let recorder = Recorder::new();
    let batches = Arc::new(BatchRecorder {
        batches: Default::default(),
    });
    let mut handlers = recorder.handlers();
    handlers.register_batch("batch_record", batches.clone());
    let running = env.start(handlers, env.options()).await;
    assert_eq!(
        running.event_types(),
        ["ACCT.AUDIT", "ACCT.DAILY", "ACCT.OPENED"]
    );

    let mut realtime_ids = Vec::new();
    for i in 0..5 {
        realtime_ids.push(env.publish("ACCT.OPENED", &format!("100{i}")).await);
        env.publish("ACCT.DAILY", &format!("200{i}")).await;
        env.publish("ACCT.AUDIT", &format!("300{i}")).await;
    }
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 5, 10)
        .await;
    env.wait_status("ACCT.DAILY", InboxStatus::Done, 5, 10)
        .await;
    env.wait_status("ACCT.AUDIT", InboxStatus::Stored, 5, 10)
        .await;

    // Realtime: the handler saw the converted fields, the header and the attempt.
    let seen = recorder.seen();
    assert_eq!(seen.len(), 5);
    let mut accounts: Vec<&str> = seen
        .iter()
        .map(|m| m.fields.get_str("account").expect("an account field"))
        .collect();
    accounts.sort();
    assert_eq!(accounts, ["1000", "1001", "1002", "1003", "1004"]);
    for m in &seen {
        assert_eq!(m.event_type, "ACCT.OPENED");
        assert_eq!(m.header.publisher, "CORE");
        assert_eq!(m.attempt, 1);
        assert_eq!(m.subscriber, SUBSCRIBER);
        assert_eq!(
            m.fields.get_str("name"),
            Some(format!("name-{}", m.fields.get_str("account").unwrap()).as_str())
        );
        assert!(m
            .body
            .as_str()
            .contains(m.fields.get_str("account").unwrap()));
        assert!(realtime_ids.contains(&m.event_id));
    }
    for row in env.rows("ACCT.OPENED").await {
        assert_eq!(row.status, "done");
        assert_eq!(row.attempts, 1);
        assert_eq!(
            row.result.as_deref(),
            Some(format!("ok {}", row.event_id).as_str())
        );
        assert!(row.processed_at.is_some());
        assert!(row.claimed_by.is_none());
        assert_eq!(row.subscriber, SUBSCRIBER);
        assert!(!row.payload.is_empty());
    }

    // Batch: the batch handler got the stored events in order, with fields.
    let batched: Vec<Message> = batches.batches.lock().unwrap().concat();
    assert_eq!(batched.len(), 5);
    let rows = env.rows("ACCT.DAILY").await;
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.status, "done");
        assert_eq!(row.attempts, 1);
        assert_eq!(
            row.result.as_deref(),
            Some(format!("batched 200{i}").as_str())
        );
    }

    // None: stored only, never handed to a handler.
    for row in env.rows("ACCT.AUDIT").await {
        assert_eq!(row.status, "stored");
        assert_eq!(row.attempts, 0);
        assert!(row.processed_at.is_none());
    }
    // Effects of both handlers committed with `done`.
    assert_eq!(env.effects().await.len(), 10);

    let stats = running.stats();
    let opened = stats.get("ACCT.OPENED");
    assert_eq!((opened.received, opened.processed), (5, 5));
    assert_eq!(opened.handler_calls, 5);
    assert_eq!(stats.get("ACCT.AUDIT").stored_only, 5);
    assert!(stats.get("ACCT.DAILY").batch_runs >= 1);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_end_to_end_postgres() {
    every_mode(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_end_to_end_sqlite() {
    every_mode(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_end_to_end_mariadb() {
    every_mode(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_builtin_binds_fields_as_parameters() {
    let exchange = unique("ex");
    let mut row = receive_row("ACCT.OPENED", &exchange, "realtime", "sql");
    row.max_attempts = 1;
    let env = Env::in_process(Backend::Sqlite, &exchange, vec![row]).await;
    sqlx_exec(
        &env.db,
        "CREATE TABLE accounts (id VARCHAR(64) PRIMARY KEY, name VARCHAR(200), ev VARCHAR(128))",
    )
    .await;
    sqlx_exec(
        &env.db,
        "UPDATE ey_receive_config SET handler_config = \
         'INSERT INTO accounts (id, name, ev) VALUES (:account, :name, :event_id)' \
         WHERE event_type = 'ACCT.OPENED'",
    )
    .await;
    let running = env.start(HandlerRegistry::new(), env.options()).await;
    let value =
        serde_json::json!({ "account": "A1", "name": "O'Brien'); DROP TABLE accounts; --" });
    let id = env
        .publisher
        .publish("ACCT.OPENED", &value)
        .await
        .unwrap()
        .event_id;
    env.wait_status("ACCT.OPENED", InboxStatus::Done, 1, 10)
        .await;
    let got: Vec<(String, String, String)> = eventyard_core::with_pool!(&env.db, pool =>
        sqlx::query_as("SELECT id, name, ev FROM accounts").fetch_all(pool).await.unwrap());
    assert_eq!(
        got,
        [(
            "A1".to_string(),
            "O'Brien'); DROP TABLE accounts; --".to_string(),
            id
        )]
    );
    let rows = env.rows("ACCT.OPENED").await;
    assert_eq!(rows[0].result.as_deref(), Some("1 row(s) affected"));
    running.shutdown().await;
}

//! An application embedding eventyard as a library.
//!
//! ```sh
//! cargo run -p eventyard-example-embedded
//! ```
//!
//! The "bank" application opens accounts. Opening an account writes the
//! account row **and** its `ACCT.OPENED` event in one database transaction
//! (the transactional outbox): if the transaction rolls back, no event exists.
//! The "crm" side of the same process receives the event with its own
//! [`Handler`], which writes a customer row inside the transaction that marks
//! the inbox row `done` — so the customer row exists exactly once per event,
//! even if the event is delivered twice.
//!
//! Everything runs on SQLite in a temporary file with the in-process
//! transport; the same code runs on PostgreSQL/MySQL and RabbitMQ by changing
//! the settings.

use std::time::Duration;

use eventyard::daemon::{Daemon, Settings};
use eventyard_core::config::{ConfigStore, RawReceiveRow, RawSendRow};
use eventyard_core::db::Db;
use eventyard_receiver::{Handler, HandlerContext, HandlerOutcome, HandlerRegistry, Message};
use eventyard_sender::EventMeta;

/// The CRM's handler: one customer row per opened account, written in the
/// inbox transaction (committed together with `done`).
#[derive(Debug)]
struct CreateCustomer;

#[async_trait::async_trait]
impl Handler for CreateCustomer {
    async fn handle(&self, msg: &Message, ctx: &mut HandlerContext<'_>) -> HandlerOutcome {
        // Field names come from the receive row's extraction rules (below).
        let account = msg
            .fields
            .get_str("account")
            .unwrap_or_default()
            .to_string();
        let owner = msg.fields.get_str("owner").unwrap_or_default().to_string();
        if account.is_empty() {
            return HandlerOutcome::fail("the event has no account field");
        }
        let Some(conn) = ctx.sqlite() else {
            return HandlerOutcome::fail("this example handler is written for SQLite");
        };
        match sqlx::query("INSERT INTO crm_customer (account, owner) VALUES ($1, $2)")
            .bind(&account)
            .bind(&owner)
            .execute(&mut *conn)
            .await
        {
            Ok(_) => HandlerOutcome::done(format!("customer for {account} created")),
            Err(e) => HandlerOutcome::retry(format!("cannot write crm_customer: {e}")),
        }
    }
}

#[derive(serde::Serialize)]
struct AccountOpened<'a> {
    id: &'a str,
    owner: &'a str,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bank.db").display());
    let db = Db::connect(&url).await?;
    db.migrate().await?;
    let Db::Sqlite(pool) = &db else {
        return Err("expected SQLite".into());
    };
    sqlx::query("CREATE TABLE account (id TEXT PRIMARY KEY, owner TEXT NOT NULL)")
        .execute(pool)
        .await?;
    sqlx::query("CREATE TABLE crm_customer (account TEXT NOT NULL, owner TEXT NOT NULL)")
        .execute(pool)
        .await?;

    // The config rows an operator would write.
    let store = ConfigStore::new(db.clone());
    store.upsert_send(&RawSendRow::new("ACCT.OPENED")).await?;
    let mut receive = RawReceiveRow::new("ACCT.OPENED", "BANK");
    receive.handler_id = Some("crm.create_customer".into());
    // The send side renders `<ACCT.OPENED><id>…</id><owner>…</owner></ACCT.OPENED>`;
    // these rules name the fields the handler reads.
    receive.converter_rules = Some(
        "[[fields]]\nname = \"account\"\npath = \"*/id\"\n\n[[fields]]\nname = \"owner\"\npath = \"*/owner\"\n"
            .into(),
    );
    store.upsert_receive(&receive).await?;

    let mut handlers = HandlerRegistry::new();
    handlers.register("crm.create_customer", std::sync::Arc::new(CreateCustomer));
    let mut settings = Settings::from_toml("system_id = \"BANK\"\n[http]\nlisten = \"\"")?;
    settings.database_url = Some(url);
    let running = Daemon::new(settings).handlers(handlers).start().await?;
    let publisher = running.publisher().clone();

    // 1. A committed business transaction: account row + event, together.
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO account (id, owner) VALUES ('ACC-1', 'Ada')")
        .execute(&mut *tx)
        .await?;
    let staged = publisher
        .stage(
            &mut *tx,
            "ACCT.OPENED",
            &AccountOpened {
                id: "ACC-1",
                owner: "Ada",
            },
            EventMeta::default(),
        )
        .await?;
    tx.commit().await?;
    let published = publisher.flush(staged).await?;
    println!(
        "ACC-1 committed; event {} {:?}",
        published.event_id, published.outcome
    );

    // 2. A rolled-back business transaction: neither the account nor the event exists.
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO account (id, owner) VALUES ('ACC-2', 'Bob')")
        .execute(&mut *tx)
        .await?;
    let staged = publisher
        .stage(
            &mut *tx,
            "ACCT.OPENED",
            &AccountOpened {
                id: "ACC-2",
                owner: "Bob",
            },
            EventMeta::default(),
        )
        .await?;
    tx.rollback().await?;
    match publisher.flush(staged).await {
        Err(e) => println!("ACC-2 rolled back; its event is gone too ({e})"),
        Ok(p) => return Err(format!("a rolled-back event was published: {p:?}").into()),
    }

    // Wait for the CRM side to process ACC-1.
    let mut customers = 0i64;
    for _ in 0..100 {
        customers = sqlx::query_scalar("SELECT COUNT(*) FROM crm_customer")
            .fetch_one(pool)
            .await?;
        if customers > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM account")
        .fetch_one(pool)
        .await?;
    let (status, result): (String, Option<String>) =
        sqlx::query_as("SELECT status, result FROM ey_inbox WHERE event_id = $1")
            .bind(&published.event_id)
            .fetch_one(pool)
            .await?;
    println!("accounts: {accounts}, crm customers: {customers}");
    println!(
        "inbox row of ACC-1: {status} ({})",
        result.unwrap_or_default()
    );
    running.shutdown().await;
    if accounts != 1 || customers != 1 || status != "done" {
        return Err("the example did not end as expected".into());
    }
    Ok(())
}

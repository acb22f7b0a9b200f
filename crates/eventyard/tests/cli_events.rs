//! `eventyard events list|show|replay` over the outbox and the inbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use eventyard_core::db::Backend;
use eventyard_core::envelope::{self, Body, Envelope};
use eventyard_core::with_pool;
use eventyard_sender::{NewOutboxRow, Outbox};
use eventyard_testkit::TestDb;

fn eventyard(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventyard"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn outbox_and_inbox_events_can_be_listed_shown_and_replayed() {
    let t = TestDb::migrated(Backend::Sqlite).await;
    let payload =
        envelope::pack(&Envelope::builder("ACCT.OPENED", "CORE").build(Body::Text("a|b".into())))
            .unwrap();
    Outbox::new(t.db.clone())
        .insert(&[NewOutboxRow {
            event_id: "out-1".into(),
            event_type: "ACCT.OPENED".into(),
            producer_id: None,
            stream: None,
            epoch: None,
            seq: None,
            payload: payload.clone(),
            claim: None,
        }])
        .await
        .unwrap();
    with_pool!(&t.db, pool => {
        sqlx::query("UPDATE ey_outbox SET status = 'failed', attempts = 4, last_error = 'broker said no'").execute(pool).await.unwrap();
        sqlx::query("INSERT INTO ey_inbox (event_id, event_type, subscriber, status, attempts, result, payload) VALUES ('in-1', 'ACCT.OPENED', 'crm', 'dead', 5, 'handler gave up', $1)")
            .bind(&payload).execute(pool).await.unwrap();
    });

    let rows = json(&eventyard(
        &t.url,
        &["--json", "events", "list", "--status", "failed"],
    ));
    assert_eq!(rows[0]["event_id"], "out-1");
    assert_eq!(rows[0]["last_error"], "broker said no");
    let rows = json(&eventyard(
        &t.url,
        &["--json", "events", "list", "--inbox", "--status", "dead"],
    ));
    assert_eq!(rows[0]["event_id"], "in-1");
    assert_eq!(rows[0]["result"], "handler gave up");

    let shown = json(&eventyard(&t.url, &["--json", "events", "show", "in-1"]));
    assert_eq!(shown["table"], "ey_inbox");
    assert_eq!(shown["envelope"]["body"]["content"], "a|b");
    let human = eventyard(&t.url, &["events", "show", "out-1"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("broker said no"));
    let missing = eventyard(&t.url, &["events", "show", "nope"]);
    assert_eq!(missing.status.code(), Some(1));

    let r = json(&eventyard(&t.url, &["--json", "events", "replay", "out-1"]));
    assert_eq!(r["replayed"], 1);
    let r = json(&eventyard(
        &t.url,
        &[
            "--json",
            "events",
            "replay",
            "--inbox",
            "--event-type",
            "ACCT.OPENED",
        ],
    ));
    assert_eq!(r["replayed"], 1);
    let (out_status, out_attempts, in_status, in_attempts) = with_pool!(&t.db, pool => {
        let (a, b): (String, i32) = sqlx::query_as("SELECT status, attempts FROM ey_outbox").fetch_one(pool).await.unwrap();
        let (c, d): (String, i32) = sqlx::query_as("SELECT status, attempts FROM ey_inbox").fetch_one(pool).await.unwrap();
        (a, b, c, d)
    });
    assert_eq!((out_status.as_str(), out_attempts), ("pending", 0));
    assert_eq!((in_status.as_str(), in_attempts), ("received", 0));

    // Replaying an id that is not failed is reported.
    let again = eventyard(&t.url, &["events", "replay", "out-1"]);
    assert_eq!(again.status.code(), Some(1));
    let usage = eventyard(&t.url, &["events", "replay"]);
    assert_eq!(usage.status.code(), Some(2));
}

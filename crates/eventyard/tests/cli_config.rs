//! `eventyard migrate` and `eventyard config list|check` against real databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use eventyard_core::config::{ConfigStore, RawReceiveRow, RawSendRow};
use eventyard_core::db::Backend;
use eventyard_testkit::TestDb;

fn eventyard(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventyard"))
        .env_remove("EVENTYARD_DATABASE_URL")
        .arg("--database-url")
        .arg(url)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn migrate_is_idempotent_from_the_cli() {
    for backend in [Backend::Sqlite, Backend::Postgres, Backend::MySql] {
        let t = TestDb::new(backend).await;
        for _ in 0..2 {
            let out = eventyard(&t.url, &["migrate"]);
            assert!(out.status.success(), "{backend:?}: {}", text(&out.stderr));
            let want = format!(
                "schema is at version {}",
                eventyard_core::migrate::latest_version()
            );
            assert!(text(&out.stdout).contains(&want), "{}", text(&out.stdout));
        }
        let store = ConfigStore::new(t.db.clone());
        assert!(
            store.version().await.unwrap() >= 1,
            "tables exist after the CLI migrated"
        );
    }
}

#[tokio::test]
async fn check_reports_each_problem_on_its_own_line_and_exits_1() {
    let t = TestDb::migrated(Backend::Sqlite).await;
    let store = ConfigStore::new(t.db.clone());
    store
        .upsert_send(&RawSendRow::new("ACCT.OPENED"))
        .await
        .unwrap();

    let out = eventyard(&t.url, &["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("all valid"));

    let mut bad = RawSendRow::new("ORDER.PAID");
    bad.send_mode = "batch".into();
    bad.persist = false;
    bad.batch_cron = Some("sometimes".into());
    store.upsert_send(&bad).await.unwrap();
    let mut recv = RawReceiveRow::new("ORDER.PAID", "erp");
    recv.handler_id = Some("nobody".into());
    recv.converter_id = "delimited".into();
    recv.converter_rules = Some("this is = = not toml".into());
    store.upsert_receive(&recv).await.unwrap();

    let out = eventyard(&t.url, &["config", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ORDER.PAID") && l.contains("`persist`")),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.contains("ORDER.PAID")
            && l.contains("`batch_cron`")
            && l.contains("sometimes")),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.contains("subscriber=erp")
            && l.contains("`handler_id`")
            && l.contains("nobody")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("subscriber=erp") && l.contains("`converter_rules`")),
        "{stderr}"
    );

    // A handler recorded by a running daemon is known to the CLI.
    store
        .record_components("daemon-1", "handler", &["nobody".into()])
        .await
        .unwrap();
    let out = eventyard(&t.url, &["--json", "config", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 3, "{report}");
    assert!(
        problems.iter().all(|p| p["column"] != "handler_id"),
        "{report}"
    );
}

#[tokio::test]
async fn list_shows_rows_and_validity() {
    let t = TestDb::migrated(Backend::Postgres).await;
    let store = ConfigStore::new(t.db.clone());
    store
        .upsert_send(&RawSendRow::new("ACCT.OPENED"))
        .await
        .unwrap();
    let mut bad = RawSendRow::new("ACCT.CLOSED");
    bad.converter_id = "nope".into();
    store.upsert_send(&bad).await.unwrap();

    let out = eventyard(&t.url, &["config", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let opened = stdout
        .lines()
        .find(|l| l.starts_with("ACCT.OPENED"))
        .unwrap();
    assert!(opened.ends_with("ok"), "{stdout}");
    let closed = stdout
        .lines()
        .find(|l| l.starts_with("ACCT.CLOSED"))
        .unwrap();
    assert!(closed.ends_with("INVALID"), "{stdout}");

    let out = eventyard(&t.url, &["config", "list", "--send", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = json["send"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["event_type"], "ACCT.CLOSED");
    assert_eq!(rows[0]["valid"], false);
    assert_eq!(rows[1]["valid"], true);
}

#[test]
fn missing_database_url_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_eventyard"))
        .env_remove("EVENTYARD_DATABASE_URL")
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--database-url"));
}

#[test]
fn unsupported_database_fails_with_exit_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_eventyard"))
        .args(["--database-url", "redis://127.0.0.1/0", "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unsupported database URL"),
        "{}",
        text(&out.stderr)
    );
}

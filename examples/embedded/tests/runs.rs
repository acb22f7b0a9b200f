//! The embedding example ends as it says: one account, one customer, inbox `done`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_embedded_example_commits_and_rolls_back_with_the_business_write() {
    let out = Command::new(env!("CARGO_BIN_EXE_eventyard-example-embedded"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("accounts: 1, crm customers: 1"), "{stdout}");
    assert!(stdout.contains("inbox row of ACC-1: done"), "{stdout}");
}

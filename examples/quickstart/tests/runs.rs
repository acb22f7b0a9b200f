//! The README's quickstart command works and reports what it should.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_quickstart_exchanges_events_on_the_embedded_default() {
    let out = Command::new(env!("CARGO_BIN_EXE_eventyard-quickstart"))
        .env_remove("EVENTYARD_DATABASE_URL")
        .env_remove("EVENTYARD_AMQP_URL")
        .args(["--events", "8"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("on sqlite with the in-process transport"),
        "{stdout}"
    );
    let row = |et: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.starts_with(et))
            .unwrap_or_else(|| panic!("no {et} row in\n{stdout}"))
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    // SENT PENDING RECEIVED PROCESSED RETRIED DEAD
    assert_eq!(
        row("ORDER.PLACED"),
        ["8", "0", "8", "7", "2", "1"],
        "{stdout}"
    );
    assert_eq!(
        row("STOCK.MOVED"),
        ["8", "0", "8", "8", "0", "0"],
        "{stdout}"
    );
    assert_eq!(
        row("PAYMENT.CAPTURED"),
        ["8", "0", "8", "8", "0", "0"],
        "{stdout}"
    );
    assert!(stdout.contains("negative amount -5"), "{stdout}");
}

//! `eventyard envelope pack|unpack` end to end, through the built binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn eventyard(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventyard"))
        .args(args)
        .env_remove("EVENTYARD_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // A command that fails early exits before reading stdin: the write then
    // meets a closed pipe, which is not what these tests check.
    if let Err(e) = pipe.write_all(stdin) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing stdin: {e}"
        );
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn ok(output: &Output) -> &[u8] {
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    &output.stdout
}

const BODY: &str = "  <account id=\"1001\"><holder>Zoë &amp; Li</holder></account>\n";

fn packed_sample(compression: &str) -> Vec<u8> {
    let out = eventyard(
        &[
            "envelope",
            "pack",
            "--compression",
            compression,
            "--event-type",
            "ACCT.OPENED",
            "--publisher",
            "CORE",
            "--producer-id",
            "branch-042",
            "--stream",
            "accounts",
            "--epoch",
            "3",
            "--seq",
            "1187",
            "--business-key",
            "ACC-1001",
            "--entry",
            "channel=mobile",
            "--created-at",
            "2025-01-31T09:15:02Z",
        ],
        BODY.as_bytes(),
    );
    ok(&out).to_vec()
}

#[test]
fn pack_then_unpack_shows_the_envelope() {
    let packed = packed_sample("gzip");
    assert_eq!(&packed[..2], &[0x1f, 0x8b]);

    let human = eventyard(&["envelope", "unpack"], &packed);
    let human = String::from_utf8(ok(&human).to_vec()).unwrap();
    for expected in [
        "event_type       ACCT.OPENED",
        "publisher        CORE",
        "stream           accounts",
        "seq              1187",
        "created_at       2025-01-31T09:15:02Z",
        "content_encoding gzip",
        "entry            channel = mobile",
        "body (xml, ",
        BODY,
    ] {
        assert!(
            human.contains(expected),
            "missing `{expected}` in:\n{human}"
        );
    }

    let body = eventyard(&["envelope", "unpack", "--body-only"], &packed);
    assert_eq!(ok(&body), BODY.as_bytes());
}

#[test]
fn json_round_trips_through_pack() {
    let packed = packed_sample("deflate");
    let json = eventyard(&["envelope", "unpack", "--json"], &packed);
    let json = ok(&json).to_vec();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(value["header"]["event_type"], "ACCT.OPENED");
    assert_eq!(value["header"]["content_encoding"], "deflate");
    assert_eq!(value["body"]["format"], "xml");
    assert_eq!(value["body"]["content"], BODY);

    for compression in ["gzip", "deflate", "none"] {
        let repacked = eventyard(&["envelope", "pack", "--compression", compression], &json);
        let repacked = ok(&repacked).to_vec();
        let again = eventyard(&["envelope", "--json", "unpack"], &repacked);
        let again: serde_json::Value = serde_json::from_slice(ok(&again)).unwrap();
        let mut expected = value.clone();
        expected["header"]["content_encoding"] = compression.into();
        assert_eq!(again, expected);
    }

    // Without --compression the JSON's content_encoding is used.
    let repacked = eventyard(&["envelope", "pack"], &json);
    assert_eq!(&ok(&repacked)[..1], &[0x78]);
}

#[test]
fn xml_view_prints_the_raw_document() {
    let packed = packed_sample("gzip");
    let xml = eventyard(&["envelope", "unpack", "--xml"], &packed);
    let xml = String::from_utf8(ok(&xml).to_vec()).unwrap();
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<envelope version=\"1\">"),
        "{xml}"
    );
}

#[test]
fn text_bodies_and_limits_flags() {
    let out = eventyard(
        &[
            "envelope",
            "pack",
            "--compression",
            "none",
            "--event-type",
            "FEED",
            "--publisher",
            "GL",
            "--body-format",
            "text",
        ],
        b"A|1|x<y\r\n",
    );
    let xml = String::from_utf8(ok(&out).to_vec()).unwrap();
    assert!(
        xml.contains("<body format=\"text\">A|1|x&lt;y&#13;\n</body>"),
        "{xml}"
    );

    let tight = eventyard(
        &["envelope", "unpack", "--max-decompressed-size", "100"],
        xml.as_bytes(),
    );
    assert_eq!(tight.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&tight.stderr).contains("max_decompressed_size"));
    let roomy = eventyard(
        &["envelope", "unpack", "--max-decompressed-size", "1KiB"],
        xml.as_bytes(),
    );
    ok(&roomy);
}

#[test]
fn hostile_input_fails_with_a_clear_message() {
    let packed = packed_sample("gzip");
    let out = eventyard(&["envelope", "unpack"], &packed[..packed.len() / 2]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: truncated gzip stream"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = eventyard(&["envelope", "unpack"], b"PK\x03\x04");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown compression marker"));

    let out = eventyard(
        &["envelope", "pack", "--compression", "none"],
        b"{\"not\": \"an envelope\"}",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an envelope in JSON"));

    let out = eventyard(
        &[
            "envelope",
            "pack",
            "--compression",
            "none",
            "--event-type",
            "T",
            "--publisher",
            "P",
        ],
        b"<a>unclosed",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a well-formed fragment"));
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["envelope", "pack", "--compression", "brotli"][..],
        &["envelope", "pack", "--event-type", "T"],
        &[
            "envelope",
            "pack",
            "--business-key",
            "K",
            "--compression",
            "none",
        ],
        &["envelope", "unpack", "--max-depth", "deep"],
        &[
            "envelope",
            "pack",
            "--compression",
            "none",
            "--event-type",
            "T",
            "--publisher",
            "P",
            "--stream",
            "s",
        ],
    ] {
        let out = eventyard(args, b"");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

//! `eventyard convert`, end to end through the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn convert(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventyard"))
        .arg("convert")
        .args(args)
        .env_remove("EVENTYARD_DATABASE_URL")
        .env_remove("EVENTYARD_AMQP_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A usage error exits before reading stdin: the write then meets a
    // closed pipe, which is not what these tests check.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing stdin: {e}"
        );
    }
    child.wait_with_output().unwrap()
}

fn rules_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn delimited_with_kind_in_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "d.toml",
        "kind = \"delimited\"\nfields = [\"account\", \"name\", \"amount\"]\n",
    );
    let out = convert(&["--rules", &rules], "6222001|张三|100.00\n");
    assert_eq!(
        stdout_json(&out),
        serde_json::json!({"account": "6222001", "name": "张三", "amount": "100.00"})
    );
    // Pretty by default; one line with --json, keys in rules order.
    assert!(String::from_utf8_lossy(&out.stdout).contains("\n  \"account\""));
    let out = convert(&["--json", "--rules", &rules], "1|2|3");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"account\":\"1\",\"name\":\"2\",\"amount\":\"3\"}\n"
    );
}

#[test]
fn gbk_fixed_width_with_converter_flag() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "f.toml",
        "unit = \"byte\"\nencoding = \"GBK\"\nrecord_separator = \"\\n\"\nfields = [\n  { name = \"account\", length = 8 },\n  { name = \"name\", length = 10 },\n]\n",
    );
    let out = convert(
        &["--rules", &rules, "--converter", "fixed_width"],
        "62220001张三      \n62220002欧阳锋    \n",
    );
    assert_eq!(
        stdout_json(&out),
        serde_json::json!({"records": [
            {"account": "62220001", "name": "张三"},
            {"account": "62220002", "name": "欧阳锋"},
        ]})
    );
}

#[test]
fn xml_without_rules_and_with_paths() {
    let body = "<order id=\"7\"><sku>A</sku><sku>B</sku></order>";
    let out = convert(&["--converter", "xml"], body);
    assert_eq!(
        stdout_json(&out),
        serde_json::json!({"order/@id": "7", "order/sku": ["A", "B"]})
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "x.toml",
        "kind = \"xml\"\n[[fields]]\nname = \"id\"\npath = \"order/@id\"\n",
    );
    let out = convert(&["--rules", &rules], body);
    assert_eq!(stdout_json(&out), serde_json::json!({"id": "7"}));
}

#[test]
fn send_renders_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "m.toml",
        "kind = \"multi_delimited\"\nfields = [\"a\", \"b\"]\n",
    );
    let out = convert(
        &["--rules", &rules, "--send"],
        r#"[{"a":1,"b":"x"},{"a":2}]"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1|x@@2|\n");
    let out = convert(
        &[
            "--converter",
            "xml",
            "--send",
            "--event-type",
            "ACCT.OPENED",
        ],
        r#"{"a":"<b>"}"#,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "<ACCT.OPENED><a>&lt;b&gt;</a></ACCT.OPENED>\n"
    );
}

#[test]
fn invalid_rules_exit_1_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "bad.toml",
        "kind = \"fixed_width\"\nfields = [{ name = \"amount\", length = 0 }]\n",
    );
    let out = convert(&["--rules", &rules], "x");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("error: {rules}: converter `fixed_width`: invalid rules: field `amount`: length must be > 0\n")
    );
}

#[test]
fn unconvertible_input_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(
        dir.path(),
        "d.toml",
        "kind = \"delimited\"\nfields = [\"a\", \"b\", \"c\"]\n",
    );
    let out = convert(&["--rules", &rules], "1|2\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: stdin: converter `delimited`: record 1 has 2 fields, expected 3\n"
    );
    let out = convert(&["--converter", "xml"], "<a><b></a>");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: stdin: converter `xml`: invalid XML at byte"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = convert(&[], "x");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pass --rules FILE"),
        "{}",
        stderr(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(dir.path(), "nokind.toml", "fields = [\"a\"]\n");
    let out = convert(&["--rules", &rules], "x");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("does not name its kind"),
        "{}",
        stderr(&out)
    );

    let out = convert(&["--converter", "xml", "--format", "json"], "x");
    assert_eq!(out.status.code(), Some(2));

    let out = convert(&["--rules", "/nonexistent/rules.toml"], "x");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: cannot read rules file /nonexistent/rules.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_converter_exits_1() {
    let out = convert(&["--converter", "csv"], "x");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: unknown receive converter `csv` (known: delimited, fixed_width, multi_delimited, xml)\n"
    );
}

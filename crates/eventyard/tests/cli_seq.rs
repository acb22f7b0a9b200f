//! `eventyard seq simulate`, end to end: the worked examples of
//! `docs/sequencing.md` (read from the document itself, so the two cannot
//! drift apart), and the error paths.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// One worked example: arguments, trace, expected output.
struct Example {
    line: usize,
    args: Vec<String>,
    input: String,
    output: String,
}

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/sequencing.md")
}

/// Finds every `<!-- simulate[: ARGS] -->` marker; the first fenced block
/// after it is the trace, the next one the expected output.
fn examples() -> Vec<Example> {
    let text = std::fs::read_to_string(doc_path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut examples = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        let Some(rest) = line.strip_prefix("<!-- simulate") else {
            continue;
        };
        let rest = rest.strip_suffix("-->").expect("marker ends with -->");
        let args = rest
            .trim()
            .strip_prefix(':')
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect();
        let marker = i;
        let mut block = || {
            while !lines[i].starts_with("```") {
                i += 1;
            }
            i += 1;
            let start = i;
            while !lines[i].starts_with("```") {
                i += 1;
            }
            i += 1;
            let mut body = lines[start..i - 1].join("\n");
            body.push('\n');
            body
        };
        let input = block();
        let output = block();
        examples.push(Example {
            line: marker,
            args,
            input,
            output,
        });
    }
    examples
}

fn simulate(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventyard"))
        .arg("seq")
        .arg("simulate")
        .args(args)
        .env_remove("EVENTYARD_DATABASE_URL")
        .env_remove("EVENTYARD_AMQP_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn worked_examples_of_the_documentation() {
    let examples = examples();
    assert!(
        examples.len() >= 10,
        "expected the worked examples in {}, found {}",
        doc_path().display(),
        examples.len()
    );
    let mut failures = Vec::new();
    for example in &examples {
        let args: Vec<&str> = example.args.iter().map(String::as_str).collect();
        let out = simulate(&args, &example.input);
        let stdout = String::from_utf8(out.stdout).unwrap();
        if !out.status.success() || stdout != example.output {
            failures.push(format!(
                "docs/sequencing.md line {} ({:?}): status {:?}, stderr {}\n--- expected\n{}--- got\n{}",
                example.line,
                example.args,
                out.status.code(),
                String::from_utf8_lossy(&out.stderr),
                example.output,
                stdout
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_action_kind_is_documented_by_an_example() {
    let all: String = examples().into_iter().map(|e| e.output).collect();
    for action in [
        "apply",
        "apply_snapshot",
        "request_fetch",
        "request_snapshot",
        "alert",
        "state",
    ] {
        assert!(
            all.contains(&format!("\"action\":\"{action}\"")),
            "no worked example shows {action}"
        );
    }
    for from in ["live", "buffer", "fetch"] {
        assert!(all.contains(&format!("\"from\":\"{from}\"")));
    }
}

#[test]
fn output_is_deterministic() {
    let examples = examples();
    let example = examples.last().unwrap();
    let args: Vec<&str> = example.args.iter().map(String::as_str).collect();
    let first = simulate(&args, &example.input).stdout;
    for _ in 0..3 {
        assert_eq!(simulate(&args, &example.input).stdout, first);
    }
}

#[test]
fn a_bad_line_fails_with_its_number() {
    let trace = concat!(
        r#"{"t":0,"msg":{"producer":"p","stream":"s","epoch":1,"seq":1}}"#,
        "\n\n",
        r#"{"t":1,"msg":{"producer":"p","stream":"s","epoch":1,"seq":"two"}}"#,
        "\n",
    );
    let out = simulate(&[], trace);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("line 3:"), "{stderr}");
    // What came before the bad line was already printed.
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(r#""action":"apply""#), "{stdout}");
    assert!(!stdout.contains(r#""action":"state""#), "{stdout}");
}

#[test]
fn not_json_fails() {
    let out = simulate(&[], "hello\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("line 1:"));
}

#[test]
fn extreme_sequences_do_not_crash() {
    let max = u64::MAX;
    let trace = format!(
        "{{\"t\":{max},\"msg\":{{\"producer\":\"p\",\"stream\":\"s\",\"epoch\":1,\"seq\":{max}}}}}\n\
         {{\"t\":{max},\"heartbeat\":{{\"producer\":\"p\",\"stream\":\"s\",\"epoch\":1,\"next\":{max}}}}}\n\
         {{\"t\":{max},\"tick\":true}}\n\
         {{\"t\":{max},\"snapshot\":{{\"producer\":\"p\",\"stream\":\"s\",\"epoch\":1,\"seq\":{max}}}}}\n\
         {{\"t\":{max},\"msg\":{{\"producer\":\"p\",\"stream\":\"s\",\"epoch\":1,\"seq\":{max}}}}}\n"
    );
    let max_arg = max.to_string();
    let out = simulate(
        &["--window-ms", &max_arg, "--window-count", &max_arg],
        &trace,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(&format!("\"last\":{max},\"mode\":\"synced\"")),
        "{stdout}"
    );
}

#[test]
fn a_bad_option_is_a_usage_error() {
    let out = simulate(&["--buffer", "-1"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = simulate(&["--window-count"], "");
    assert_eq!(out.status.code(), Some(2));
}

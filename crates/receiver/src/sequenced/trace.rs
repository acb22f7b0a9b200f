//! Recording a key's tracker inputs as a `seq simulate` trace (JSON lines,
//! the input format of `eventyard seq simulate`, docs/sequencing.md), so an
//! operator can replay a production incident.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

use serde_json::json;

use super::store::Key;

/// The logical clock of every tracker of the process (ms since the first
/// use), shared so that a trace mixing event types stays consistent.
pub(super) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Where the inputs of the chosen keys are appended.
#[derive(Debug)]
pub struct TraceSink {
    file: Mutex<std::fs::File>,
    keys: HashSet<Key>,
}

impl TraceSink {
    /// Appends to `path` (created if missing) the inputs of `keys`
    /// (`(producer, stream)`; empty: every key).
    pub fn open(path: &Path, keys: Vec<(String, String)>) -> std::io::Result<TraceSink> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(TraceSink {
            file: Mutex::new(file),
            keys: keys.into_iter().collect(),
        })
    }

    pub(super) fn wants(&self, key: &Key) -> bool {
        self.keys.is_empty() || self.keys.contains(key)
    }

    fn write(&self, line: serde_json::Value) {
        let mut text = line.to_string();
        text.push('\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = file.write_all(text.as_bytes()) {
            tracing::warn!(error = %e, "sequenced: cannot write the trace");
        }
    }

    pub(super) fn message(&self, t: u64, key: &Key, epoch: u64, seq: u64) {
        if self.wants(key) {
            self.write(json!({"t": t, "msg": {"producer": key.0, "stream": key.1, "epoch": epoch, "seq": seq}}));
        }
    }

    pub(super) fn tick(&self, t: u64) {
        self.write(json!({"t": t, "tick": true}));
    }

    pub(super) fn fetch_ok(&self, t: u64, key: &Key, seqs: &[u64]) {
        if self.wants(key) {
            self.write(
                json!({"t": t, "fetch_ok": {"producer": key.0, "stream": key.1, "seqs": seqs}}),
            );
        }
    }

    pub(super) fn fetch_err(&self, t: u64, key: &Key) {
        if self.wants(key) {
            self.write(json!({"t": t, "fetch_err": {"producer": key.0, "stream": key.1}}));
        }
    }

    pub(super) fn snapshot(&self, t: u64, key: &Key, epoch: u64, seq: u64) {
        if self.wants(key) {
            self.write(json!({"t": t, "snapshot": {"producer": key.0, "stream": key.1, "epoch": epoch, "seq": seq}}));
        }
    }
}

//! Prometheus text for the receiver's per-event-type counters.

use std::collections::BTreeMap;
use std::fmt::Write;

use eventyard_receiver::{TypeStats, LATENCY_BUCKETS};

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A counter: metric name, help text, and how to read it from the stats.
type Counter = (&'static str, &'static str, fn(&TypeStats) -> u64);

/// Renders the receiver's counters in the Prometheus text format.
pub(crate) fn render(stats: &BTreeMap<String, TypeStats>) -> String {
    let mut out = String::new();
    let counters: [Counter; 11] = [
        (
            "eventyard_events_received_total",
            "Deliveries stored as new inbox rows.",
            |s| s.received,
        ),
        (
            "eventyard_events_duplicate_total",
            "Deliveries of an event id already stored.",
            |s| s.duplicates,
        ),
        (
            "eventyard_events_unreadable_total",
            "Deliveries that could not be read (stored dead).",
            |s| s.unreadable,
        ),
        (
            "eventyard_events_stored_only_total",
            "Events stored only (process_mode none).",
            |s| s.stored_only,
        ),
        (
            "eventyard_events_processed_total",
            "Events a handler completed.",
            |s| s.processed,
        ),
        (
            "eventyard_events_processed_inline_total",
            "Of those, events handled in the transaction that stored them.",
            |s| s.processed_inline,
        ),
        (
            "eventyard_events_failed_total",
            "Handler attempts that ended in a retry.",
            |s| s.retried,
        ),
        (
            "eventyard_events_dead_total",
            "Events dead-lettered.",
            |s| s.dead,
        ),
        (
            "eventyard_handler_panics_total",
            "Handler attempts that panicked.",
            |s| s.panics,
        ),
        (
            "eventyard_handler_timeouts_total",
            "Handler attempts that timed out.",
            |s| s.timeouts,
        ),
        (
            "eventyard_receive_batch_runs_total",
            "Batch processing runs.",
            |s| s.batch_runs,
        ),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (event_type, s) in stats {
            let _ = writeln!(
                out,
                "{name}{{event_type=\"{}\"}} {}",
                escape(event_type),
                get(s)
            );
        }
    }
    let _ = writeln!(out, "# HELP eventyard_queue_lag_seconds Seconds from an event's creation to its storage (last delivery).\n# TYPE eventyard_queue_lag_seconds gauge");
    for (event_type, s) in stats {
        let _ = writeln!(
            out,
            "eventyard_queue_lag_seconds{{event_type=\"{}\"}} {}",
            escape(event_type),
            s.last_lag_seconds
        );
    }
    let name = "eventyard_handler_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Handler latency.\n# TYPE {name} histogram"
    );
    for (event_type, s) in stats {
        let et = escape(event_type);
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += s.handler_buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{name}_bucket{{event_type=\"{et}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{event_type=\"{et}\",le=\"+Inf\"}} {}",
            s.handler_calls
        );
        let _ = writeln!(
            out,
            "{name}_sum{{event_type=\"{et}\"}} {}",
            s.handler_seconds
        );
        let _ = writeln!(
            out,
            "{name}_count{{event_type=\"{et}\"}} {}",
            s.handler_calls
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_a_cumulative_histogram() {
        let mut stats = BTreeMap::new();
        let mut s = TypeStats {
            received: 3,
            processed: 2,
            dead: 1,
            handler_calls: 3,
            handler_seconds: 0.5,
            ..TypeStats::default()
        };
        s.handler_buckets = vec![1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        stats.insert("ACCT.\"X\"".to_string(), s);
        let text = render(&stats);
        assert!(
            text.contains("eventyard_events_received_total{event_type=\"ACCT.\\\"X\\\"\"} 3"),
            "{text}"
        );
        assert!(text.contains("eventyard_events_dead_total{event_type=\"ACCT.\\\"X\\\"\"} 1"));
        assert!(text.contains("le=\"0.0025\"} 2"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 3"));
        assert!(text
            .contains("eventyard_handler_duration_seconds_count{event_type=\"ACCT.\\\"X\\\"\"} 3"));
    }
}

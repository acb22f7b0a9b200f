//! Turning a delivery (or a stored payload) into a [`Message`] or a dead row.

use std::sync::Arc;

use chrono::Utc;
use eventyard_converter::BodyFormat;
use eventyard_core::config::ProcessMode;
use eventyard_core::envelope::{Body, Envelope};
use eventyard_transport::Delivery;
use sha2::{Digest, Sha256};

use super::{Shared, TypeRuntime};
use crate::handler::Message;
use crate::inbox::{lease_until, InboxStatus, NewInboxRow};

/// A delivery ready to store.
pub(crate) struct Decoded {
    pub(crate) row: NewInboxRow,
    /// For readable events: the runtime of their type and the message.
    pub(crate) good: Option<(Arc<TypeRuntime>, Message)>,
}

/// The key of a message whose envelope cannot be read: its AMQP message id,
/// or else the SHA-256 of its bytes.
pub(crate) fn poison_key(message_id: Option<&str>, payload: &[u8]) -> String {
    match message_id.map(str::trim).filter(|m| !m.is_empty()) {
        Some(id) => id.chars().take(128).collect(),
        None => {
            let digest = Sha256::digest(payload);
            let mut hex = String::with_capacity(71);
            hex.push_str("sha256:");
            for b in digest {
                hex.push_str(&format!("{b:02x}"));
            }
            hex
        }
    }
}

fn body_format(body: &Body) -> BodyFormat {
    match body {
        Body::Xml(_) => BodyFormat::Xml,
        Body::Text(_) => BodyFormat::Text,
    }
}

/// Converts an unpacked envelope with its type's converter.
pub(crate) fn to_message(
    shared: &Shared,
    env: Envelope,
    inbox_id: i64,
    attempt: u32,
) -> Result<(Arc<TypeRuntime>, Message), String> {
    let event_type = env.header.event_type.clone();
    let Some(rt) = shared.runtime(&event_type) else {
        return Err(format!(
            "unknown event type `{event_type}`: no enabled ey_receive_config row for subscriber `{}`",
            shared.opts.subscriber
        ));
    };
    let settings = rt.settings();
    let converter = settings.converter.as_ref().map_err(Clone::clone)?;
    let fields = converter
        .convert(body_format(&env.body), env.body.as_str())
        .map_err(|e| format!("conversion failed: {e}"))?;
    let msg = Message {
        event_id: env.header.event_id.hyphenated().to_string(),
        event_type,
        subscriber: shared.opts.subscriber.clone(),
        inbox_id,
        header: env.header,
        common: env.common,
        fields,
        body: env.body,
        attempt,
    };
    Ok((rt, msg))
}

/// The longest value of `ey_inbox`'s name columns (`event_type`,
/// `producer_id`, `stream`), in characters.
const MAX_NAME_CHARS: usize = 191;

/// `s` cut to [`MAX_NAME_CHARS`] characters.
fn clip(s: &str) -> String {
    s.chars().take(MAX_NAME_CHARS).collect()
}

/// Which header value, if any, is too long to be stored, and why.
fn oversized(header: &eventyard_core::envelope::Header) -> Option<String> {
    let long = |v: &str| v.chars().count() > MAX_NAME_CHARS;
    let what = if long(&header.event_type) {
        "event type"
    } else if header.producer_id.as_deref().is_some_and(long) {
        "producer id"
    } else if header.sequence.as_ref().is_some_and(|s| long(&s.stream)) {
        "sequence stream"
    } else {
        return None;
    };
    Some(format!(
        "invalid header: the {what} is longer than {MAX_NAME_CHARS} characters"
    ))
}

/// Unpacks and converts a delivery that arrived on `queue_type`'s queue.
pub(crate) fn decode(shared: &Shared, queue_type: &str, d: &Delivery) -> Decoded {
    let now = Utc::now();
    let dead = |event_id: String, event_type: String, error: String| {
        // Clipped so that the row can be stored whatever the header said;
        // the payload keeps the whole value.
        let event_type = clip(&event_type);
        tracing::warn!(event_id = %event_id, event_type = %event_type, error = %error, "unreadable event stored as dead");
        Decoded {
            row: NewInboxRow {
                id: None,
                event_id,
                event_type,
                producer_id: None,
                stream: None,
                epoch: None,
                seq: None,
                status: InboxStatus::Dead,
                attempts: 0,
                result: Some(error),
                payload: d.payload.clone(),
                processed_at: Some(now),
                claim: None,
            },
            good: None,
        }
    };
    let env = match shared.opts.codec.unpack(&d.payload) {
        Ok(env) => env,
        Err(e) => {
            let event_type = d
                .event_type
                .clone()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| queue_type.to_string());
            return dead(
                poison_key(d.message_id.as_deref(), &d.payload),
                event_type,
                format!("unreadable envelope: {e}"),
            );
        }
    };
    let header = env.header.clone();
    let event_id = header.event_id.hyphenated().to_string();
    if let Some(error) = oversized(&header) {
        return dead(event_id, header.event_type, error);
    }
    match to_message(shared, env, 0, 1) {
        Err(e) => dead(event_id, header.event_type, e),
        Ok((rt, msg)) => {
            let mode = rt.settings().cfg.process_mode;
            let (status, claim) = match mode {
                ProcessMode::Realtime => (
                    InboxStatus::Received,
                    Some((
                        shared.opts.instance_id.clone(),
                        lease_until(now, shared.opts.lease + shared.opts.handler_timeout),
                    )),
                ),
                ProcessMode::Batch => (InboxStatus::Received, None),
                ProcessMode::None => (InboxStatus::Stored, None),
            };
            let seq = header.sequence.as_ref();
            Decoded {
                row: NewInboxRow {
                    id: None,
                    event_id,
                    event_type: header.event_type.clone(),
                    producer_id: header.producer_id.clone(),
                    stream: seq.map(|s| s.stream.clone()),
                    epoch: seq.map(|s| i64::try_from(s.epoch).unwrap_or(i64::MAX)),
                    seq: seq.map(|s| i64::try_from(s.seq).unwrap_or(i64::MAX)),
                    status,
                    attempts: 0,
                    result: None,
                    payload: d.payload.clone(),
                    processed_at: None,
                    claim,
                },
                good: Some((rt, msg)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_header_values_are_named() {
        use eventyard_core::envelope::Header;
        let ok = Header::new("ACCT.OPENED", "CORE");
        assert_eq!(oversized(&ok), None);
        let mut h = ok.clone();
        h.event_type = "é".repeat(MAX_NAME_CHARS);
        assert_eq!(oversized(&h), None, "characters count, not bytes");
        h.event_type.push('x');
        assert!(oversized(&h).is_some_and(|e| e.contains("event type")));
        let mut h = ok.clone();
        h.producer_id = Some("p".repeat(MAX_NAME_CHARS + 1));
        assert!(oversized(&h).is_some_and(|e| e.contains("producer id")));
        assert_eq!(clip(&"t".repeat(500)).len(), MAX_NAME_CHARS);
    }

    #[test]
    fn poison_keys() {
        assert_eq!(poison_key(Some("m-1"), b"x"), "m-1");
        let k = poison_key(None, b"abc");
        assert_eq!(
            k,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(poison_key(Some("  "), b"abc"), k);
    }
}

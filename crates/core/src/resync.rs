//! The wire format of resync requests and replies between a consumer and the
//! daemon of a producer whose database it cannot read (sequenced streams,
//! `docs/sequencing.md`, "Request/reply over AMQP").
//!
//! A request is a message on the resync exchange (default
//! [`DEFAULT_EXCHANGE`]) with the routing key [`request_routing_key`]`(producer)`
//! and three headers: [`HEADER_CORRELATION`] (any unique text),
//! [`HEADER_REPLY_TO`] (the routing key of the requester's reply queue on the
//! same exchange) and [`HEADER_DEADLINE`] (Unix time in ms after which the
//! answer is useless and the responder drops the request). Its body is one
//! JSON object:
//!
//! ```json
//! {"v":1,"kind":"fetch","producer":"P1","stream":"acct","epoch":2,"from":41,"to":57}
//! {"v":1,"kind":"snapshot","producer":"P1","stream":"acct","min_epoch":2,"min_seq":41}
//! ```
//!
//! The reply goes to the same exchange with the request's reply-to as its
//! routing key and the same correlation header; its body is one of:
//!
//! ```json
//! {"v":1,"kind":"events","events":[{"event_id":"…","seq":41,"payload":"<base64>"}]}
//! {"v":1,"kind":"snapshot","epoch":2,"seq":60,"state":"<base64>"}
//! {"v":1,"kind":"no_snapshot","reason":"no stored snapshot and no snapshot provider"}
//! {"v":1,"kind":"error","message":"producer `P9` is not served here"}
//! ```
//!
//! Payloads are the packed envelopes exactly as published, and the state the
//! bytes the producer stored, both in standard base64 with padding. Unknown
//! fields are ignored (a later minor revision may add some); another `v` is
//! refused.
//!
//! Encoding never fails; decoding returns a [`WireError`] naming what was
//! wrong, never panics, whatever the bytes.

use serde::{Deserialize, Serialize};

/// The exchange requests and replies travel on unless configured otherwise.
pub const DEFAULT_EXCHANGE: &str = "eventyard.resync";
/// The AMQP `type` of a request.
pub const REQUEST_TYPE: &str = "eventyard.resync.request";
/// The AMQP `type` of a reply.
pub const REPLY_TYPE: &str = "eventyard.resync.reply";
/// Header: the correlation id, copied from the request to its reply.
pub const HEADER_CORRELATION: &str = "ey-correlation-id";
/// Header of a request: the routing key its reply is published with.
pub const HEADER_REPLY_TO: &str = "ey-reply-to";
/// Header of a request: Unix time (ms) after which it is dropped unanswered.
pub const HEADER_DEADLINE: &str = "ey-deadline-ms";
/// The version of the format this module writes and reads.
pub const VERSION: u32 = 1;

/// The routing key of requests for `producer_id`.
pub fn request_routing_key(producer_id: &str) -> String {
    format!("request.{producer_id}")
}

/// The routing key of the replies for one requester (`instance` unique per
/// requester, e.g. a random uuid).
pub fn reply_routing_key(instance: &str) -> String {
    format!("reply.{instance}")
}

/// What a consumer asks a producer for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// The events `from..=to` of `(producer, stream, epoch)` that the
    /// producer's outbox holds.
    Fetch {
        /// The producer id.
        producer: String,
        /// The stream.
        stream: String,
        /// The producer epoch.
        epoch: u64,
        /// The first seq wanted.
        from: u64,
        /// The last seq wanted (inclusive).
        to: u64,
    },
    /// The producer's state of `(producer, stream)`, valid as of at least
    /// `(min_epoch, min_seq)` (compared as a pair). A stored snapshot older
    /// than that is useless: the producer writes a fresh one if it can.
    Snapshot {
        /// The producer id.
        producer: String,
        /// The stream.
        stream: String,
        /// The lowest useful epoch.
        min_epoch: u64,
        /// The lowest useful seq within `min_epoch`.
        min_seq: u64,
    },
}

impl Request {
    /// The producer the request is for.
    pub fn producer(&self) -> &str {
        match self {
            Request::Fetch { producer, .. } | Request::Snapshot { producer, .. } => producer,
        }
    }

    /// The stream the request is for.
    pub fn stream(&self) -> &str {
        match self {
            Request::Fetch { stream, .. } | Request::Snapshot { stream, .. } => stream,
        }
    }
}

/// One event of a fetch reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    /// The event id.
    pub event_id: String,
    /// Its seq.
    pub seq: u64,
    /// The packed envelope as published (base64 on the wire).
    #[serde(with = "b64")]
    pub payload: Vec<u8>,
}

/// A producer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// The requested events the outbox holds, in seq order (missing ones are
    /// absent).
    Events {
        /// The events.
        events: Vec<WireEvent>,
    },
    /// The producer's state, valid as of `(epoch, seq)`.
    Snapshot {
        /// Its epoch.
        epoch: u64,
        /// The seq it is valid as of.
        seq: u64,
        /// The state bytes (base64 on the wire).
        #[serde(with = "b64")]
        state: Vec<u8>,
    },
    /// No snapshot new enough exists and the producer cannot make one (no
    /// snapshot provider registered). The consumer asks again later.
    NoSnapshot {
        /// Why, for the consumer's log.
        reason: String,
    },
    /// The request could not be answered.
    Error {
        /// What went wrong, naming the producer and stream.
        message: String,
    },
}

/// A request or reply body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not the JSON object this format describes (syntax, a missing or
    /// mistyped field, an unknown `kind`, bad base64).
    #[error("malformed resync {what}: {source}")]
    Malformed {
        /// `request` or `reply`.
        what: &'static str,
        /// The parser's error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// Another version of the format.
    #[error("resync {what} of format version {found}; this build reads version {VERSION}")]
    Version {
        /// `request` or `reply`.
        what: &'static str,
        /// The version found.
        found: u32,
    },
}

#[derive(Serialize)]
struct Out<'a, T> {
    v: u32,
    #[serde(flatten)]
    body: &'a T,
}

#[derive(Deserialize)]
struct In<T> {
    v: u32,
    #[serde(flatten)]
    body: T,
}

fn encode<T: Serialize>(body: &T) -> Vec<u8> {
    // Serializing these plain structs to a Vec cannot fail (no maps with
    // non-string keys, no I/O); an empty body would be refused by the reader.
    serde_json::to_vec(&Out { v: VERSION, body }).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(what: &'static str, bytes: &[u8]) -> Result<T, WireError> {
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let version: Version =
        serde_json::from_slice(bytes).map_err(|source| WireError::Malformed { what, source })?;
    if version.v != VERSION {
        return Err(WireError::Version {
            what,
            found: version.v,
        });
    }
    let parsed: In<T> =
        serde_json::from_slice(bytes).map_err(|source| WireError::Malformed { what, source })?;
    debug_assert_eq!(parsed.v, VERSION);
    Ok(parsed.body)
}

/// The body of a request.
pub fn encode_request(request: &Request) -> Vec<u8> {
    encode(request)
}

/// Reads a request body.
pub fn decode_request(bytes: &[u8]) -> Result<Request, WireError> {
    decode("request", bytes)
}

/// The body of a reply.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    encode(reply)
}

/// Reads a reply body.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, WireError> {
    decode("reply", bytes)
}

mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_and_replies_round_trip() {
        let requests = [
            Request::Fetch {
                producer: "P1".into(),
                stream: "acct".into(),
                epoch: 2,
                from: 41,
                to: 57,
            },
            Request::Snapshot {
                producer: "P1".into(),
                stream: "acct".into(),
                min_epoch: 2,
                min_seq: 41,
            },
        ];
        for r in &requests {
            assert_eq!(&decode_request(&encode_request(r)).unwrap(), r);
        }
        let replies = [
            Reply::Events {
                events: vec![WireEvent {
                    event_id: "e-1".into(),
                    seq: 41,
                    payload: vec![0, 159, 255, b'<'],
                }],
            },
            Reply::Snapshot {
                epoch: 2,
                seq: 60,
                state: b"1830".to_vec(),
            },
            Reply::NoSnapshot {
                reason: "none".into(),
            },
            Reply::Error {
                message: "boom".into(),
            },
        ];
        for r in &replies {
            assert_eq!(&decode_reply(&encode_reply(r)).unwrap(), r);
        }
    }

    #[test]
    fn the_documented_form_is_what_is_written() {
        let text = String::from_utf8(encode_reply(&Reply::Snapshot {
            epoch: 2,
            seq: 60,
            state: b"1830".to_vec(),
        }))
        .unwrap();
        assert_eq!(
            text,
            r#"{"v":1,"kind":"snapshot","epoch":2,"seq":60,"state":"MTgzMA=="}"#
        );
        let r = decode_request(
            br#"{"v":1,"kind":"fetch","producer":"P1","stream":"acct","epoch":2,"from":41,"to":57,"later":true}"#,
        )
        .unwrap();
        assert_eq!(r.producer(), "P1");
        assert_eq!(r.stream(), "acct");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let bad: &[&[u8]] = &[
            b"",
            b"\xff\xfe",
            b"null",
            b"[]",
            b"{}",
            br#"{"kind":"events","events":[]}"#,
            br#"{"v":"1","kind":"events","events":[]}"#,
            br#"{"v":1}"#,
            br#"{"v":1,"kind":"teleport"}"#,
            br#"{"v":1,"kind":"events"}"#,
            br#"{"v":1,"kind":"events","events":[{"event_id":"e","seq":-1,"payload":""}]}"#,
            br#"{"v":1,"kind":"events","events":[{"event_id":"e","seq":1,"payload":"not base64!"}]}"#,
            br#"{"v":1,"kind":"snapshot","epoch":1,"seq":18446744073709551616,"state":""}"#,
            br#"{"v":1,"kind":"snapshot","epoch":1,"seq":2}"#,
            br#"{"v":1,"kind":"events","events":[]"#,
        ];
        for b in bad {
            let err = decode_reply(b).unwrap_err();
            assert!(
                matches!(err, WireError::Malformed { what: "reply", .. }),
                "{:?}: {err}",
                String::from_utf8_lossy(b)
            );
        }
        let err = decode_reply(br#"{"v":2,"kind":"events","events":[]}"#).unwrap_err();
        assert!(matches!(err, WireError::Version { found: 2, .. }), "{err}");
        assert!(err.to_string().contains("version 2"), "{err}");
        let err = decode_request(br#"{"v":1,"kind":"fetch","producer":"P1"}"#).unwrap_err();
        assert!(
            err.to_string().contains("malformed resync request"),
            "{err}"
        );
    }
}

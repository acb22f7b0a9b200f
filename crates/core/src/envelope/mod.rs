//! The wire envelope: header + common section + body, as XML, optionally compressed.
//!
//! Every event eventyard sends travels as one envelope. The packed form is a
//! UTF-8 XML document, gzip- or zlib-compressed or not, whose first bytes tell
//! which (`1f 8b` gzip, a zlib header for `deflate`, `<` or a UTF-8 BOM for
//! none):
//!
//! ```xml
//! <?xml version="1.0" encoding="UTF-8"?>
//! <envelope version="1">
//!   <header>
//!     <event_id>0190f0c6-5e2a-7c4d-9b1e-3f2a8d6c4b10</event_id>
//!     <event_type>ACCT.OPENED</event_type>
//!     <publisher>CORE</publisher>
//!     <created_at>2025-01-31T09:15:02.123456Z</created_at>
//!     <content_encoding>gzip</content_encoding>
//!     <schema_version>1</schema_version>
//!   </header>
//!   <common><entry key="channel">mobile</entry></common>
//!   <body format="xml"><account id="1001"/></body>
//! </envelope>
//! ```
//!
//! The full wire format, precise enough to implement in another language,
//! is in [`docs/envelope.md`](https://example.invalid/eventyard/blob/main/docs/envelope.md)
//! (`docs/envelope.md` in the repository).
//!
//! # Usage
//!
//! ```
//! use eventyard_core::envelope::{self, Body, Envelope, Limits};
//! use eventyard_core::Compression;
//!
//! let sent = Envelope::builder("ACCT.OPENED", "CORE")
//!     .compression(Compression::Gzip)
//!     .business_key("ACC-1001")
//!     .entry("channel", "mobile")
//!     .build(Body::Xml(r#"<account id="1001"/>"#.into()));
//!
//! let bytes = envelope::pack(&sent)?;
//! let received = envelope::unpack(&bytes, &Limits::default())?;
//! assert_eq!(received, sent);
//! # Ok::<(), eventyard_core::envelope::EnvelopeError>(())
//! ```
//!
//! A [`Codec`] holds [`Limits`]; the free functions use the defaults.
//! Compressors are reused per thread, so packing is cheap in a hot loop.
//!
//! # What XML cannot carry
//!
//! XML 1.0 has no way to carry C0 control characters other than TAB, LF and
//! CR, nor U+FFFE and U+FFFF. Packing refuses such a value with
//! [`EnvelopeError::IllegalCharacter`] naming the field; nothing is silently
//! dropped or replaced. CR is written as `&#13;` so it survives any XML
//! parser's line-end normalization; all other characters and all leading and
//! trailing whitespace survive a round trip unchanged.

mod codec;
mod compress;
mod error;
mod limits;
mod read;
mod write;
mod xmlchar;

use serde::{Deserialize, Serialize};

use crate::Compression;

/// Re-exported: the type of [`Header::created_at`].
pub use chrono::{DateTime, Utc};
pub use codec::{detect_compression, pack, unpack, Codec};
pub use error::EnvelopeError;
pub use limits::Limits;
/// Re-exported: the type of [`Header::event_id`].
pub use uuid::Uuid;

/// The envelope format version written in `<envelope version="…">`.
pub const FORMAT_VERSION: &str = "1";

/// One event on the wire: header, common section and body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Identity, origin, ordering and encoding of the event.
    pub header: Header,
    /// Cross-cutting metadata: trace id, business key, free key/values.
    #[serde(default)]
    pub common: Common,
    /// The payload produced by the event type's converter.
    pub body: Body,
}

impl Envelope {
    /// Starts an envelope for `event_type` published by `publisher`, with a
    /// fresh UUID v7 event id, `created_at` now, gzip and schema version 1.
    pub fn builder(event_type: impl Into<String>, publisher: impl Into<String>) -> EnvelopeBuilder {
        EnvelopeBuilder {
            header: Header::new(event_type, publisher),
            common: Common::default(),
        }
    }

    /// An envelope with a fresh header (see [`Header::new`]), an empty common
    /// section and `body`.
    pub fn new(event_type: impl Into<String>, publisher: impl Into<String>, body: Body) -> Self {
        Envelope {
            header: Header::new(event_type, publisher),
            common: Common::default(),
            body,
        }
    }
}

/// The envelope header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Unique id of the event (a UUID v7 when eventyard creates it).
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    /// The event type code, e.g. `ACCT.OPENED`; never empty.
    pub event_type: String,
    /// The publishing system's id; never empty.
    pub publisher: String,
    /// The producer (device or system instance) of a sequenced stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_id: Option<String>,
    /// Stream, epoch and sequence number, for sequenced event types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<Sequence>,
    /// When the event was created, UTC.
    pub created_at: DateTime<Utc>,
    /// The compression the envelope is packed with.
    pub content_encoding: Compression,
    /// Version of the event type's body schema, chosen by the application.
    pub schema_version: u32,
}

impl Header {
    /// `created_at` as written on the wire: RFC 3339, UTC (`Z`), with as many
    /// fractional digits as needed (none, 3, 6 or 9).
    pub fn created_at_rfc3339(&self) -> String {
        self.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }

    /// A header with a fresh UUID v7 event id, `created_at` now, no producer
    /// or sequence, gzip and schema version 1.
    pub fn new(event_type: impl Into<String>, publisher: impl Into<String>) -> Self {
        Header {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            publisher: publisher.into(),
            producer_id: None,
            sequence: None,
            created_at: Utc::now(),
            content_encoding: Compression::default(),
            schema_version: 1,
        }
    }
}

/// Position of an event in a producer's sequenced stream (SPEC §6).
///
/// On the wire these are the header elements `stream`, `epoch` and `seq`:
/// all three or none. `epoch` and `seq` fit a signed 64-bit database column
/// (at most 2^63 − 1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sequence {
    /// The stream within the producer; never empty.
    pub stream: String,
    /// The producer's epoch, raised when it restarts its numbering.
    pub epoch: u64,
    /// The sequence number, +1 per event within (producer, stream, epoch).
    pub seq: u64,
}

/// The common section: metadata every event type may carry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Common {
    /// Distributed-tracing id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The business key (account number, order id, …), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    /// Free key/values, in order; keys are non-empty and may repeat.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<Entry>,
}

/// One free key/value of the common section.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The key; never empty.
    pub key: String,
    /// The value; may be empty.
    pub value: String,
}

/// The body produced by a converter.
///
/// In JSON this is `{"format": "xml" | "text", "content": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", content = "content", rename_all = "lowercase")]
pub enum Body {
    /// A well-formed XML fragment, embedded as-is as the content of `<body>`
    /// and returned byte for byte on unpack.
    Xml(String),
    /// Plain text (delimited or fixed-width feeds), escaped inside `<body>`.
    Text(String),
}

impl Body {
    /// The body's text: the XML fragment or the plain text.
    pub fn as_str(&self) -> &str {
        match self {
            Body::Xml(s) | Body::Text(s) => s,
        }
    }

    /// The value of the wire attribute `format`: `xml` or `text`.
    pub fn format(&self) -> &'static str {
        match self {
            Body::Xml(_) => "xml",
            Body::Text(_) => "text",
        }
    }
}

/// Builds an [`Envelope`]; start with [`Envelope::builder`].
#[derive(Debug, Clone)]
#[must_use = "call .build(body) to get the envelope"]
pub struct EnvelopeBuilder {
    header: Header,
    common: Common,
}

impl EnvelopeBuilder {
    /// Replaces the generated event id.
    pub fn event_id(mut self, id: Uuid) -> Self {
        self.header.event_id = id;
        self
    }

    /// Replaces the generated creation time.
    pub fn created_at(mut self, at: DateTime<Utc>) -> Self {
        self.header.created_at = at;
        self
    }

    /// Sets the producer id.
    pub fn producer_id(mut self, producer_id: impl Into<String>) -> Self {
        self.header.producer_id = Some(producer_id.into());
        self
    }

    /// Sets stream, epoch and sequence number.
    pub fn sequence(mut self, stream: impl Into<String>, epoch: u64, seq: u64) -> Self {
        self.header.sequence = Some(Sequence {
            stream: stream.into(),
            epoch,
            seq,
        });
        self
    }

    /// Sets the compression to pack with (default gzip).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.header.content_encoding = compression;
        self
    }

    /// Sets the body schema version (default 1).
    pub fn schema_version(mut self, version: u32) -> Self {
        self.header.schema_version = version;
        self
    }

    /// Sets the trace id.
    pub fn trace_id(mut self, trace_id: impl Into<String>) -> Self {
        self.common.trace_id = Some(trace_id.into());
        self
    }

    /// Sets the business key.
    pub fn business_key(mut self, key: impl Into<String>) -> Self {
        self.common.business_key = Some(key.into());
        self
    }

    /// Appends a free key/value to the common section.
    pub fn entry(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.common.entries.push(Entry {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Finishes the envelope with `body`. Validation happens when it is packed.
    pub fn build(self, body: Body) -> Envelope {
        Envelope {
            header: self.header,
            common: self.common,
            body,
        }
    }
}

/// Serializes a UUID as its hyphenated text (the `uuid` crate is built
/// without its serde feature).
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub(super) fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&id.hyphenated())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

//! Writing the envelope XML, and the value checks shared with the reader.
//!
//! The writer is hand-rolled rather than quick-xml's `Writer`: the document
//! has a dozen fixed elements, and it needs escaping quick-xml does not do
//! (CR as `&#13;`, TAB/LF in attributes) plus the XML 1.0 character check in
//! the same pass.

use std::io::Write as _;

use super::error::shorten;
use super::xmlchar::{code_at, escape_into};
use super::{read, Body, Common, Envelope, EnvelopeError, Header, Limits, FORMAT_VERSION};
use crate::Compression;

const DECLARATION: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Largest value accepted for `epoch` and `seq`: they are stored in signed
/// 64-bit database columns.
pub(crate) const MAX_SEQUENCE_NUMBER: u64 = i64::MAX as u64;

/// Appends the XML document for `env`, declaring `compression` as its
/// `content_encoding`, after checking every value.
pub(crate) fn write_envelope(
    env: &Envelope,
    compression: Compression,
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    check_values(&env.header, &env.common, limits)?;
    if let Body::Xml(xml) = &env.body {
        read::check_fragment(xml, limits)?;
    }

    let h = &env.header;
    out.reserve(512 + env.body.as_str().len());
    out.extend_from_slice(DECLARATION);
    out.extend_from_slice(b"<envelope version=\"");
    out.extend_from_slice(FORMAT_VERSION.as_bytes());
    out.extend_from_slice(b"\"><header>");

    let mut id = uuid::Uuid::encode_buffer();
    let id = h.event_id.hyphenated().encode_lower(&mut id);
    element(out, "event_id", "header/event_id", id)?;
    element(out, "event_type", "header/event_type", &h.event_type)?;
    element(out, "publisher", "header/publisher", &h.publisher)?;
    if let Some(producer) = &h.producer_id {
        element(out, "producer_id", "header/producer_id", producer)?;
    }
    if let Some(seq) = &h.sequence {
        element(out, "stream", "header/stream", &seq.stream)?;
        number(out, "epoch", seq.epoch);
        number(out, "seq", seq.seq);
    }
    let created = h.created_at_rfc3339();
    element(out, "created_at", "header/created_at", &created)?;
    element(
        out,
        "content_encoding",
        "header/content_encoding",
        compression.as_str(),
    )?;
    number(out, "schema_version", u64::from(h.schema_version));
    out.extend_from_slice(b"</header>");

    let c = &env.common;
    if c.trace_id.is_none() && c.business_key.is_none() && c.entries.is_empty() {
        out.extend_from_slice(b"<common/>");
    } else {
        out.extend_from_slice(b"<common>");
        if let Some(trace) = &c.trace_id {
            element(out, "trace_id", "common/trace_id", trace)?;
        }
        if let Some(key) = &c.business_key {
            element(out, "business_key", "common/business_key", key)?;
        }
        for (i, entry) in c.entries.iter().enumerate() {
            out.extend_from_slice(b"<entry key=\"");
            escape_into(out, &entry.key, true)
                .map_err(|at| illegal(format!("common/entry[{i}]/@key"), &entry.key, at))?;
            out.extend_from_slice(b"\">");
            escape_into(out, &entry.value, false)
                .map_err(|at| illegal(format!("common/entry[{i}]"), &entry.value, at))?;
            out.extend_from_slice(b"</entry>");
        }
        out.extend_from_slice(b"</common>");
    }

    match &env.body {
        Body::Xml(xml) => {
            out.extend_from_slice(b"<body format=\"xml\">");
            // Checked by `check_fragment`: well-formed and free of illegal characters.
            out.extend_from_slice(xml.as_bytes());
        }
        Body::Text(text) => {
            out.extend_from_slice(b"<body format=\"text\">");
            escape_into(out, text, false).map_err(|at| illegal("body".into(), text, at))?;
        }
    }
    out.extend_from_slice(b"</body></envelope>\n");
    Ok(())
}

fn element(out: &mut Vec<u8>, name: &str, field: &str, value: &str) -> Result<(), EnvelopeError> {
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
    escape_into(out, value, false).map_err(|at| illegal(field.into(), value, at))?;
    out.extend_from_slice(b"</");
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
    Ok(())
}

fn number(out: &mut Vec<u8>, name: &str, value: u64) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "<{name}>{value}</{name}>");
}

fn illegal(field: String, value: &str, offset: usize) -> EnvelopeError {
    EnvelopeError::IllegalCharacter {
        field,
        code: code_at(value, offset),
        offset,
    }
}

/// Checks the rules on header and common values that both packing and
/// unpacking enforce (non-empty identifiers, number ranges, entry count).
pub(crate) fn check_values(h: &Header, c: &Common, limits: &Limits) -> Result<(), EnvelopeError> {
    non_empty(
        "header/event_type",
        &h.event_type,
        "a non-empty event type code",
    )?;
    non_empty(
        "header/publisher",
        &h.publisher,
        "a non-empty publisher system id",
    )?;
    if let Some(producer) = &h.producer_id {
        non_empty(
            "header/producer_id",
            producer,
            "a non-empty producer id, or no element",
        )?;
    }
    if let Some(seq) = &h.sequence {
        non_empty("header/stream", &seq.stream, "a non-empty stream name")?;
        for (field, value) in [("header/epoch", seq.epoch), ("header/seq", seq.seq)] {
            if value > MAX_SEQUENCE_NUMBER {
                return Err(EnvelopeError::InvalidNumber {
                    field,
                    value: value.to_string(),
                    reason: format!("out of range, at most {MAX_SEQUENCE_NUMBER}"),
                });
            }
        }
    }
    if c.entries.len() > limits.max_entries {
        return Err(EnvelopeError::TooManyEntries {
            limit: limits.max_entries,
        });
    }
    for (i, entry) in c.entries.iter().enumerate() {
        if entry.key.is_empty() {
            return Err(EnvelopeError::InvalidValue {
                field: format!("common/entry[{i}]/@key"),
                value: String::new(),
                expected: "a non-empty key",
            });
        }
    }
    Ok(())
}

fn non_empty(
    field: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<(), EnvelopeError> {
    if value.is_empty() {
        return Err(EnvelopeError::InvalidValue {
            field: field.into(),
            value: shorten(value),
            expected,
        });
    }
    Ok(())
}

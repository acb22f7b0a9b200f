//! Parsing the envelope XML with quick-xml's pull reader, limits checked as
//! it goes.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use quick_xml::events::{BytesStart, BytesText, Event};
use quick_xml::Reader;
use uuid::Uuid;

use super::error::shorten;
use super::write::{check_values, MAX_SEQUENCE_NUMBER};
use super::xmlchar::{code_at, find_illegal};
use super::{
    Body, Common, Entry, Envelope, EnvelopeError, Header, Limits, Sequence, FORMAT_VERSION,
};
use crate::Compression;

/// Header elements, in the order they are written, with their field paths.
const HEADER_FIELDS: [(&[u8], &str); 10] = [
    (b"event_id", "header/event_id"),
    (b"event_type", "header/event_type"),
    (b"publisher", "header/publisher"),
    (b"producer_id", "header/producer_id"),
    (b"stream", "header/stream"),
    (b"epoch", "header/epoch"),
    (b"seq", "header/seq"),
    (b"created_at", "header/created_at"),
    (b"content_encoding", "header/content_encoding"),
    (b"schema_version", "header/schema_version"),
];
const EVENT_ID: usize = 0;
const EVENT_TYPE: usize = 1;
const PUBLISHER: usize = 2;
const PRODUCER_ID: usize = 3;
const STREAM: usize = 4;
const EPOCH: usize = 5;
const SEQ: usize = 6;
const CREATED_AT: usize = 7;
const CONTENT_ENCODING: usize = 8;
const SCHEMA_VERSION: usize = 9;

/// Parses a whole envelope document.
pub(crate) fn parse_document(xml: &str, limits: &Limits) -> Result<Envelope, EnvelopeError> {
    Parser::new(xml, limits, 0).document()
}

/// Checks that `body` is a well-formed XML fragment that fits the limits once
/// placed in `<envelope><body>` (depth 2).
pub(crate) fn check_fragment(body: &str, limits: &Limits) -> Result<(), EnvelopeError> {
    if let Some(at) = find_illegal(body.as_bytes()) {
        return Err(EnvelopeError::IllegalCharacter {
            field: "body".into(),
            code: code_at(body, at),
            offset: at,
        });
    }
    let mut p = Parser::new(body, limits, 2);
    let as_body_error = |e: EnvelopeError| match e {
        EnvelopeError::MalformedXml { offset, detail } => {
            EnvelopeError::MalformedBody { offset, detail }
        }
        EnvelopeError::DoctypeNotAllowed { offset } => EnvelopeError::MalformedBody {
            offset,
            detail: "a DOCTYPE is not allowed in a body".into(),
        },
        other => other,
    };
    loop {
        let at = p.pos();
        match p.next().map_err(as_body_error)? {
            Event::Eof => break,
            event => p.check_body_event(&event, at).map_err(as_body_error)?,
        }
    }
    if p.depth != 2 {
        return Err(EnvelopeError::MalformedBody {
            offset: p.pos(),
            detail: "an element is not closed".into(),
        });
    }
    Ok(())
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
    xml: &'a str,
    limits: &'a Limits,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(xml: &'a str, limits: &'a Limits, depth: usize) -> Self {
        let mut reader = Reader::from_str(xml);
        let config = reader.config_mut();
        config.check_comments = true;
        config.check_end_names = true;
        config.allow_unmatched_ends = false;
        config.expand_empty_elements = false;
        config.trim_text(false);
        Parser {
            reader,
            xml,
            limits,
            depth,
        }
    }

    fn pos(&self) -> u64 {
        self.reader.buffer_position()
    }

    fn malformed(&self, offset: u64, detail: impl Into<String>) -> EnvelopeError {
        EnvelopeError::MalformedXml {
            offset,
            detail: detail.into(),
        }
    }

    /// The next event, with depth and DOCTYPE checked.
    fn next(&mut self) -> Result<Event<'a>, EnvelopeError> {
        let at = self.pos();
        let event = self
            .reader
            .read_event()
            .map_err(|e| EnvelopeError::MalformedXml {
                offset: self.reader.error_position(),
                detail: e.to_string(),
            })?;
        match &event {
            Event::Start(_) | Event::Empty(_) => {
                if self.depth + 1 > self.limits.max_depth {
                    return Err(EnvelopeError::TooDeep {
                        limit: self.limits.max_depth,
                        offset: at,
                    });
                }
                if matches!(event, Event::Start(_)) {
                    self.depth += 1;
                }
            }
            Event::End(_) => self.depth = self.depth.saturating_sub(1),
            Event::DocType(_) => return Err(EnvelopeError::DoctypeNotAllowed { offset: at }),
            _ => {}
        }
        Ok(event)
    }

    fn document(mut self) -> Result<Envelope, EnvelopeError> {
        let mut envelope = None;
        let mut seen_markup = false;
        loop {
            let at = self.pos();
            let event = self.next()?;
            match event {
                Event::Decl(decl) => {
                    if seen_markup {
                        return Err(self.malformed(at, "the XML declaration is not at the start"));
                    }
                    self.check_declaration(&decl, at)?;
                }
                Event::Start(start) => {
                    if envelope.is_some() {
                        return Err(self.malformed(at, "a second root element follows </envelope>"));
                    }
                    if start.name().as_ref() != b"envelope" {
                        return Err(EnvelopeError::NotAnEnvelope {
                            found: format!("<{}>", lossy(start.name().as_ref())),
                        });
                    }
                    envelope = Some(self.envelope(&start)?);
                }
                Event::Empty(start) => {
                    return Err(
                        if start.name().as_ref() == b"envelope" && envelope.is_none() {
                            self.check_version(&start)?;
                            EnvelopeError::MissingField { field: "header" }
                        } else if envelope.is_some() {
                            self.malformed(at, "a second root element follows </envelope>")
                        } else {
                            EnvelopeError::NotAnEnvelope {
                                found: format!("<{}/>", lossy(start.name().as_ref())),
                            }
                        },
                    );
                }
                Event::Text(text) if is_blank(&text) => {}
                Event::Text(_) | Event::CData(_) => {
                    return Err(match envelope {
                        None => EnvelopeError::NotAnEnvelope {
                            found: format!("text at byte {at}"),
                        },
                        Some(_) => self.malformed(at, "text follows </envelope>"),
                    });
                }
                Event::End(_) => return Err(self.malformed(at, "an end tag without a start tag")),
                Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
                Event::Eof => break,
            }
            seen_markup = true;
        }
        envelope.ok_or(EnvelopeError::NotAnEnvelope {
            found: "no element at all".into(),
        })
    }

    fn check_declaration(
        &self,
        decl: &quick_xml::events::BytesDecl<'_>,
        at: u64,
    ) -> Result<(), EnvelopeError> {
        let version = decl
            .version()
            .map_err(|e| self.malformed(at, e.to_string()))?;
        if version.as_ref() != b"1.0" {
            return Err(self.malformed(
                at,
                format!("XML version `{}`; envelopes are XML 1.0", lossy(&version)),
            ));
        }
        if let Some(encoding) = decl.encoding() {
            let encoding = encoding.map_err(|e| self.malformed(at, e.to_string()))?;
            if !encoding.eq_ignore_ascii_case(b"UTF-8") && !encoding.eq_ignore_ascii_case(b"UTF8") {
                return Err(self.malformed(
                    at,
                    format!(
                        "declared encoding `{}`; envelopes are always UTF-8",
                        lossy(&encoding)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_version(&self, start: &BytesStart<'a>) -> Result<(), EnvelopeError> {
        let version =
            self.attribute(start, b"version", self.pos())?
                .ok_or(EnvelopeError::MissingField {
                    field: "envelope/@version",
                })?;
        if version.trim() != FORMAT_VERSION {
            return Err(EnvelopeError::UnsupportedVersion {
                found: shorten(&version),
            });
        }
        Ok(())
    }

    fn envelope(&mut self, start: &BytesStart<'a>) -> Result<Envelope, EnvelopeError> {
        self.check_version(start)?;
        let mut header: Option<[Option<String>; 10]> = None;
        let mut common: Option<Common> = None;
        let mut body: Option<Body> = None;
        loop {
            let at = self.pos();
            match self.next()? {
                Event::Start(child) | Event::Empty(child)
                    if self.is_duplicate(&child, &header, &common, &body) =>
                {
                    return Err(EnvelopeError::DuplicateField {
                        field: section_name(child.name().as_ref()),
                        offset: at,
                    });
                }
                Event::Start(child) => match child.name().as_ref() {
                    b"header" => header = Some(self.header_fields()?),
                    b"common" => common = Some(self.common()?),
                    b"body" => body = Some(self.body(&child, false, at)?),
                    _ => self.skip()?,
                },
                Event::Empty(child) => match child.name().as_ref() {
                    b"header" => header = Some(Default::default()),
                    b"common" => common = Some(Common::default()),
                    b"body" => body = Some(self.body(&child, true, at)?),
                    _ => {}
                },
                Event::Text(text) if is_blank(&text) => {}
                Event::Text(_) | Event::CData(_) => {
                    return Err(self.malformed(at, "text directly inside <envelope>"));
                }
                Event::Decl(_) => {
                    return Err(self.malformed(at, "an XML declaration inside <envelope>"))
                }
                Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
                Event::End(_) => break,
                Event::Eof => return Err(self.malformed(at, "the document ends inside <envelope>")),
            }
        }
        let header = build_header(header.ok_or(EnvelopeError::MissingField { field: "header" })?)?;
        let common = common.unwrap_or_default();
        check_values(&header, &common, self.limits)?;
        let body = body.ok_or(EnvelopeError::MissingField { field: "body" })?;
        Ok(Envelope {
            header,
            common,
            body,
        })
    }

    fn is_duplicate(
        &self,
        child: &BytesStart<'_>,
        header: &Option<[Option<String>; 10]>,
        common: &Option<Common>,
        body: &Option<Body>,
    ) -> bool {
        match child.name().as_ref() {
            b"header" => header.is_some(),
            b"common" => common.is_some(),
            b"body" => body.is_some(),
            _ => false,
        }
    }

    /// Reads the children of `<header>` as raw strings, by field index.
    fn header_fields(&mut self) -> Result<[Option<String>; 10], EnvelopeError> {
        let mut fields: [Option<String>; 10] = Default::default();
        loop {
            let at = self.pos();
            let (child, empty) = match self.next()? {
                Event::Start(child) => (child, false),
                Event::Empty(child) => (child, true),
                Event::End(_) => return Ok(fields),
                event => {
                    self.structural_filler(&event, at, "<header>")?;
                    continue;
                }
            };
            let Some(index) = HEADER_FIELDS
                .iter()
                .position(|(name, _)| *name == child.name().as_ref())
            else {
                if !empty {
                    self.skip()?;
                }
                continue;
            };
            let field = HEADER_FIELDS[index].1;
            if fields[index].is_some() {
                return Err(EnvelopeError::DuplicateField { field, offset: at });
            }
            fields[index] = Some(if empty {
                String::new()
            } else {
                self.text(field)?
            });
        }
    }

    fn common(&mut self) -> Result<Common, EnvelopeError> {
        let mut common = Common::default();
        loop {
            let at = self.pos();
            let (child, empty) = match self.next()? {
                Event::Start(child) => (child, false),
                Event::Empty(child) => (child, true),
                Event::End(_) => return Ok(common),
                event => {
                    self.structural_filler(&event, at, "<common>")?;
                    continue;
                }
            };
            let read = |p: &mut Self, field| {
                if empty {
                    Ok(String::new())
                } else {
                    p.text(field)
                }
            };
            match child.name().as_ref() {
                b"trace_id" => {
                    if common.trace_id.is_some() {
                        return Err(EnvelopeError::DuplicateField {
                            field: "common/trace_id",
                            offset: at,
                        });
                    }
                    common.trace_id = Some(read(self, "common/trace_id")?);
                }
                b"business_key" => {
                    if common.business_key.is_some() {
                        return Err(EnvelopeError::DuplicateField {
                            field: "common/business_key",
                            offset: at,
                        });
                    }
                    common.business_key = Some(read(self, "common/business_key")?);
                }
                b"entry" => {
                    if common.entries.len() >= self.limits.max_entries {
                        return Err(EnvelopeError::TooManyEntries {
                            limit: self.limits.max_entries,
                        });
                    }
                    let key =
                        self.attribute(&child, b"key", at)?
                            .ok_or(EnvelopeError::MissingField {
                                field: "common/entry/@key",
                            })?;
                    let value = read(self, "common/entry")?;
                    common.entries.push(Entry { key, value });
                }
                _ if empty => {}
                _ => self.skip()?,
            }
        }
    }

    fn body(
        &mut self,
        start: &BytesStart<'a>,
        empty: bool,
        at: u64,
    ) -> Result<Body, EnvelopeError> {
        let format = self
            .attribute(start, b"format", at)?
            .ok_or(EnvelopeError::MissingField {
                field: "body/@format",
            })?;
        let xml = match format.as_str() {
            "xml" => true,
            "text" => false,
            other => {
                return Err(EnvelopeError::InvalidValue {
                    field: "body/@format".into(),
                    value: shorten(other),
                    expected: "`xml` or `text`",
                })
            }
        };
        if empty {
            return Ok(if xml {
                Body::Xml(String::new())
            } else {
                Body::Text(String::new())
            });
        }
        if !xml {
            return Ok(Body::Text(self.text("body")?));
        }
        let content_start = self.pos();
        let body_depth = self.depth;
        loop {
            let before = self.pos();
            let event = self.next()?;
            match event {
                Event::End(_) if self.depth < body_depth => {
                    let range = usize::try_from(content_start)
                        .ok()
                        .zip(usize::try_from(before).ok());
                    let content = range
                        .and_then(|(from, to)| self.xml.get(from..to))
                        .ok_or_else(|| self.malformed(before, "cannot delimit the body content"))?;
                    return Ok(Body::Xml(content.to_owned()));
                }
                Event::Eof => return Err(self.malformed(before, "the document ends inside <body>")),
                event => self.check_body_event(&event, before)?,
            }
        }
    }

    /// Checks one event of an XML body: attributes, entity references and
    /// characters, and the constructs XML forbids inside content.
    fn check_body_event(&self, event: &Event<'a>, at: u64) -> Result<(), EnvelopeError> {
        match event {
            Event::Start(element) | Event::Empty(element) => {
                let mut count = 0;
                for attribute in element.attributes() {
                    count += 1;
                    if count > self.limits.max_attributes {
                        return Err(self.too_many_attributes(element, at));
                    }
                    let attribute = attribute.map_err(|e| self.malformed(at, e.to_string()))?;
                    self.attribute_value(&attribute.value, at, "body")?;
                }
                Ok(())
            }
            Event::Text(text) => {
                if has_cdata_end(text) {
                    return Err(self.malformed(at, "`]]>` in character data"));
                }
                self.unescape(text, at, "body", |_| ())
            }
            Event::Decl(_) => Err(self.malformed(at, "an XML declaration inside content")),
            Event::DocType(_) => Err(EnvelopeError::DoctypeNotAllowed { offset: at }),
            Event::End(_) | Event::CData(_) | Event::Comment(_) | Event::PI(_) | Event::Eof => {
                Ok(())
            }
        }
    }

    /// Skips whitespace, comments and PIs between structural elements; refuses anything else.
    fn structural_filler(
        &self,
        event: &Event<'a>,
        at: u64,
        inside: &str,
    ) -> Result<(), EnvelopeError> {
        match event {
            Event::Text(text) if is_blank(text) => Ok(()),
            Event::Comment(_) | Event::PI(_) => Ok(()),
            Event::Eof => Err(self.malformed(at, format!("the document ends inside {inside}"))),
            _ => Err(self.malformed(at, format!("unexpected content directly inside {inside}"))),
        }
    }

    /// The text content of a simple element, up to its end tag.
    fn text(&mut self, field: &'static str) -> Result<String, EnvelopeError> {
        let mut value = String::new();
        loop {
            let at = self.pos();
            match self.next()? {
                Event::Text(text) => self.unescape(&text, at, field, |s| value.push_str(s))?,
                Event::CData(data) => {
                    let data = std::str::from_utf8(&data)
                        .map_err(|e| self.malformed(at, e.to_string()))?;
                    value.push_str(data);
                }
                Event::Comment(_) | Event::PI(_) => {}
                Event::End(_) => return Ok(value),
                Event::Start(child) | Event::Empty(child) => {
                    return Err(self.malformed(
                        at,
                        format!(
                            "unexpected element <{}> inside `{field}`",
                            lossy(child.name().as_ref())
                        ),
                    ));
                }
                Event::Eof => {
                    return Err(self.malformed(at, format!("the document ends inside `{field}`")))
                }
                Event::Decl(_) | Event::DocType(_) => {
                    return Err(
                        self.malformed(at, format!("unexpected declaration inside `{field}`"))
                    );
                }
            }
        }
    }

    /// Skips an unknown element (forward compatibility), depth still counted.
    fn skip(&mut self) -> Result<(), EnvelopeError> {
        let target = self.depth.saturating_sub(1);
        loop {
            let at = self.pos();
            match self.next()? {
                Event::End(_) if self.depth == target => return Ok(()),
                Event::Eof => return Err(self.malformed(at, "the document ends inside an element")),
                _ => {}
            }
        }
    }

    /// Unescapes character data and hands it to `f`, normalizing literal
    /// line ends as XML does (CR LF and lone CR become LF) and refusing
    /// character references to characters XML 1.0 cannot carry.
    fn unescape<R>(
        &self,
        text: &BytesText<'_>,
        at: u64,
        field: &str,
        f: impl FnOnce(&str) -> R,
    ) -> Result<R, EnvelopeError> {
        let raw = std::str::from_utf8(text).map_err(|e| self.malformed(at, e.to_string()))?;
        let normalized = normalize_line_ends(raw);
        let unescaped = quick_xml::escape::unescape(&normalized)
            .map_err(|e| self.malformed(at, e.to_string()))?;
        if let Cow::Owned(value) = &unescaped {
            if let Some(offset) = find_illegal(value.as_bytes()) {
                return Err(EnvelopeError::IllegalCharacter {
                    field: field.into(),
                    code: code_at(value, offset),
                    offset,
                });
            }
        }
        Ok(f(&unescaped))
    }

    /// The unescaped value of attribute `name`, checking the element's
    /// attribute count and syntax.
    fn attribute(
        &self,
        element: &BytesStart<'_>,
        name: &[u8],
        at: u64,
    ) -> Result<Option<String>, EnvelopeError> {
        let mut found = None;
        for (count, attribute) in element.attributes().enumerate() {
            if count >= self.limits.max_attributes {
                return Err(self.too_many_attributes(element, at));
            }
            let attribute = attribute.map_err(|e| self.malformed(at, e.to_string()))?;
            let field = lossy(element.name().as_ref());
            let value = self.attribute_value(&attribute.value, at, &field)?;
            if attribute.key.as_ref() == name {
                found = Some(value.into_owned());
            }
        }
        Ok(found)
    }

    /// Normalizes (literal TAB, LF, CR become spaces, as XML requires) and
    /// unescapes an attribute value.
    fn attribute_value<'v>(
        &self,
        raw: &'v [u8],
        at: u64,
        field: &str,
    ) -> Result<Cow<'v, str>, EnvelopeError> {
        let raw = std::str::from_utf8(raw).map_err(|e| self.malformed(at, e.to_string()))?;
        if raw.contains('<') {
            return Err(self.malformed(at, "`<` inside an attribute value"));
        }
        let normalized: Cow<'v, str> = if raw.bytes().any(|b| matches!(b, b'\t' | b'\n' | b'\r')) {
            Cow::Owned(raw.replace("\r\n", " ").replace(['\t', '\n', '\r'], " "))
        } else {
            Cow::Borrowed(raw)
        };
        let value = match normalized {
            Cow::Borrowed(raw) => quick_xml::escape::unescape(raw),
            Cow::Owned(ref owned) => {
                quick_xml::escape::unescape(owned).map(|v| Cow::Owned(v.into_owned()))
            }
        }
        .map_err(|e| self.malformed(at, e.to_string()))?;
        if let Some(offset) = find_illegal(value.as_bytes()) {
            return Err(EnvelopeError::IllegalCharacter {
                field: format!("{field}/@attribute"),
                code: code_at(&value, offset),
                offset,
            });
        }
        Ok(value)
    }

    fn too_many_attributes(&self, element: &BytesStart<'_>, at: u64) -> EnvelopeError {
        EnvelopeError::TooManyAttributes {
            element: shorten(&lossy(element.name().as_ref())),
            limit: self.limits.max_attributes,
            offset: at,
        }
    }
}

fn normalize_line_ends(raw: &str) -> Cow<'_, str> {
    if raw.contains('\r') {
        Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(raw)
    }
}

fn build_header(mut f: [Option<String>; 10]) -> Result<Header, EnvelopeError> {
    let mut required = |index: usize| {
        f[index].take().ok_or(EnvelopeError::MissingField {
            field: HEADER_FIELDS[index].1,
        })
    };
    let event_id = required(EVENT_ID)?;
    let event_type = required(EVENT_TYPE)?;
    let publisher = required(PUBLISHER)?;
    let created_at = required(CREATED_AT)?;
    let content_encoding = required(CONTENT_ENCODING)?;
    let schema_version = required(SCHEMA_VERSION)?;

    let event_id = Uuid::parse_str(event_id.trim()).map_err(|_| EnvelopeError::InvalidValue {
        field: HEADER_FIELDS[EVENT_ID].1.into(),
        value: shorten(&event_id),
        expected: "a UUID such as 0190f0c6-5e2a-7c4d-9b1e-3f2a8d6c4b10",
    })?;
    let created_at = DateTime::parse_from_rfc3339(created_at.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| EnvelopeError::InvalidValue {
            field: HEADER_FIELDS[CREATED_AT].1.into(),
            value: shorten(&created_at),
            expected: "an RFC 3339 timestamp such as 2025-01-31T09:15:02.123Z",
        })?;
    let content_encoding: Compression =
        content_encoding
            .trim()
            .parse()
            .map_err(|_| EnvelopeError::InvalidValue {
                field: HEADER_FIELDS[CONTENT_ENCODING].1.into(),
                value: shorten(&content_encoding),
                expected: "gzip, deflate or none",
            })?;
    let schema_version = parse_uint(SCHEMA_VERSION, &schema_version, u64::from(u32::MAX))?;
    let schema_version = u32::try_from(schema_version).unwrap_or(u32::MAX);

    let sequence = match (f[STREAM].take(), f[EPOCH].take(), f[SEQ].take()) {
        (None, None, None) => None,
        (Some(stream), Some(epoch), Some(seq)) => Some(Sequence {
            stream,
            epoch: parse_uint(EPOCH, &epoch, MAX_SEQUENCE_NUMBER)?,
            seq: parse_uint(SEQ, &seq, MAX_SEQUENCE_NUMBER)?,
        }),
        (stream, epoch, seq) => {
            let names = ["stream", "epoch", "seq"];
            let present = [stream.is_some(), epoch.is_some(), seq.is_some()];
            let first = |want: bool| {
                present
                    .iter()
                    .position(|p| *p == want)
                    .map_or("", |i| names[i])
            };
            return Err(EnvelopeError::IncompleteSequence {
                present: first(true),
                missing: first(false),
            });
        }
    };

    Ok(Header {
        event_id,
        event_type,
        publisher,
        producer_id: f[PRODUCER_ID].take(),
        sequence,
        created_at,
        content_encoding,
        schema_version,
    })
}

/// A decimal integer of ASCII digits (surrounding whitespace allowed), at most `max`.
fn parse_uint(index: usize, raw: &str, max: u64) -> Result<u64, EnvelopeError> {
    let field = HEADER_FIELDS[index].1;
    let invalid = |reason: String| EnvelopeError::InvalidNumber {
        field,
        value: shorten(raw),
        reason,
    };
    let digits = raw.trim();
    if digits.is_empty() {
        return Err(invalid("empty".into()));
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("not a decimal integer".into()));
    }
    match digits.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(invalid(format!("out of range, at most {max}"))),
    }
}

fn section_name(name: &[u8]) -> &'static str {
    match name {
        b"header" => "header",
        b"common" => "common",
        _ => "body",
    }
}

fn is_blank(text: &[u8]) -> bool {
    text.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

fn has_cdata_end(text: &[u8]) -> bool {
    text.contains(&b'>') && text.windows(3).any(|w| w == b"]]>")
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

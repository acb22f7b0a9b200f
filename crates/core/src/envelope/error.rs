//! The one error type of the envelope codec.

use crate::Compression;

/// Why an envelope could not be packed or unpacked.
///
/// Every variant names what was wrong and, where it is known, where: the
/// field (as its path in the wire format, such as `header/event_type`), the
/// limit that was hit, or the byte offset. Offsets in XML errors count bytes
/// of the *decompressed* XML document; offsets in compression errors count
/// bytes of the packed input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The input has no bytes at all.
    #[error("the packed envelope is empty (0 bytes)")]
    Empty,

    /// The leading bytes announce no supported compression.
    #[error(
        "unknown compression marker (first bytes {found}): expected gzip (1f 8b), \
         zlib-wrapped deflate (78 ..) or uncompressed XML starting with `<` or a UTF-8 BOM"
    )]
    UnknownCompressionMarker {
        /// The first bytes of the input, in hex.
        found: String,
    },

    /// The packed input (or packed output) is larger than `max_packed_size`.
    #[error(
        "the packed envelope is {size} bytes, over the limit of {limit} bytes (max_packed_size)"
    )]
    PackedTooLarge {
        /// The size of the packed envelope in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },

    /// Unpacking would produce more than `max_decompressed_size` bytes of XML.
    ///
    /// Decompression stops at the limit, so a decompression bomb costs at most
    /// the limit in memory.
    #[error(
        "the {compression} payload expands beyond the limit of {limit} bytes \
         (max_decompressed_size); refused as oversized or a decompression bomb"
    )]
    DecompressedTooLarge {
        /// The compression of the payload.
        compression: Compression,
        /// The configured limit in bytes.
        limit: usize,
    },

    /// Packing produced an XML document larger than `max_decompressed_size`;
    /// a receiver with the same limits would refuse it.
    #[error(
        "the envelope XML is {size} bytes, over the limit of {limit} bytes \
         (max_decompressed_size); receivers would refuse it"
    )]
    EnvelopeTooLarge {
        /// The size of the XML document in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },

    /// The compressed stream ends before its end marker or trailer.
    #[error(
        "truncated {compression} stream: the input ends after {size} bytes, \
         before the compressed data is complete"
    )]
    Truncated {
        /// The compression of the payload.
        compression: Compression,
        /// The size of the input in bytes.
        size: usize,
    },

    /// The compressed stream is not valid (bad header, bad data, bad checksum,
    /// or bytes after its end).
    #[error("corrupt {compression} stream at byte {offset}: {detail}")]
    Corrupt {
        /// The compression of the payload.
        compression: Compression,
        /// Byte offset in the packed input, as far as the decoder got.
        offset: usize,
        /// What the decoder found wrong.
        detail: String,
    },

    /// The compressor itself failed while packing (should not happen).
    #[error("{compression} compression failed: {detail}")]
    Compress {
        /// The compression requested.
        compression: Compression,
        /// What the compressor reported.
        detail: String,
    },

    /// The decompressed payload is not UTF-8.
    #[error("the envelope XML is not valid UTF-8 at byte {offset}; envelopes are always UTF-8")]
    InvalidUtf8 {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },

    /// The envelope is not well-formed XML, or has content where none is allowed.
    #[error("malformed envelope XML at byte {offset}: {detail}")]
    MalformedXml {
        /// Byte offset in the XML document.
        offset: u64,
        /// What is wrong.
        detail: String,
    },

    /// The document has a `<!DOCTYPE>`; DTDs (and their entity expansion) are refused.
    #[error("the envelope XML has a DOCTYPE declaration at byte {offset}; DTDs are refused")]
    DoctypeNotAllowed {
        /// Byte offset in the XML document.
        offset: u64,
    },

    /// Elements are nested deeper than `max_depth`.
    #[error("XML elements nest deeper than {limit} levels at byte {offset} (max_depth)")]
    TooDeep {
        /// The configured limit.
        limit: usize,
        /// Byte offset in the XML document (or in the body, when packing).
        offset: u64,
    },

    /// An element has more than `max_attributes` attributes.
    #[error(
        "element <{element}> at byte {offset} has more than {limit} attributes (max_attributes)"
    )]
    TooManyAttributes {
        /// The element name.
        element: String,
        /// The configured limit.
        limit: usize,
        /// Byte offset in the XML document (or in the body, when packing).
        offset: u64,
    },

    /// The common section has more than `max_entries` key/value entries.
    #[error("the common section has more than {limit} entries (max_entries)")]
    TooManyEntries {
        /// The configured limit.
        limit: usize,
    },

    /// The root element is not `<envelope>`.
    #[error("not an envelope: expected the root element <envelope>, found {found}")]
    NotAnEnvelope {
        /// What was found instead.
        found: String,
    },

    /// The `version` attribute of `<envelope>` names a format this build cannot read.
    #[error("unsupported envelope format version `{found}`; this build reads version 1")]
    UnsupportedVersion {
        /// The version found.
        found: String,
    },

    /// A required element or attribute is absent.
    #[error("required field `{field}` is missing from the envelope")]
    MissingField {
        /// The field's path in the wire format, e.g. `header/event_type`.
        field: &'static str,
    },

    /// An element that may appear once appears again.
    #[error("field `{field}` appears more than once (again at byte {offset})")]
    DuplicateField {
        /// The field's path in the wire format.
        field: &'static str,
        /// Byte offset of the second occurrence.
        offset: u64,
    },

    /// A numeric field does not hold a valid number in range.
    #[error("field `{field}` is not a valid number: `{value}` ({reason})")]
    InvalidNumber {
        /// The field's path in the wire format.
        field: &'static str,
        /// The value found (shortened if long).
        value: String,
        /// Why it was refused.
        reason: String,
    },

    /// A field holds a value of the wrong form (UUID, timestamp, enum value, empty).
    #[error("field `{field}` has an invalid value `{value}`: expected {expected}")]
    InvalidValue {
        /// The field's path in the wire format.
        field: String,
        /// The value found (shortened if long).
        value: String,
        /// What was expected.
        expected: &'static str,
    },

    /// Only some of `stream`, `epoch` and `seq` are present.
    #[error("the header has `{present}` but no `{missing}`: stream, epoch and seq come together or not at all")]
    IncompleteSequence {
        /// A field that is present.
        present: &'static str,
        /// A field that is missing.
        missing: &'static str,
    },

    /// The header's `content_encoding` differs from the compression actually found.
    #[error("the header says content_encoding `{declared}` but the payload is {detected}")]
    CompressionMismatch {
        /// What the header declares.
        declared: Compression,
        /// What the leading bytes show.
        detected: Compression,
    },

    /// A value holds a character XML 1.0 cannot carry (a C0 control other
    /// than TAB, LF and CR, or U+FFFE/U+FFFF).
    #[error("`{field}` contains U+{code:04X} at byte {offset}, a character XML 1.0 cannot carry")]
    IllegalCharacter {
        /// The field's path (`body` for the body, `document` for the raw XML).
        field: String,
        /// The code point.
        code: u32,
        /// Byte offset in the field's value.
        offset: usize,
    },

    /// An XML body is not a well-formed XML fragment.
    #[error("the XML body is not a well-formed fragment at byte {offset} of the body: {detail}")]
    MalformedBody {
        /// Byte offset in the body.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
}

/// Shortens a value quoted in an error so hostile input cannot flood logs.
pub(crate) fn shorten(value: &str) -> String {
    const MAX: usize = 64;
    if value.len() <= MAX {
        return value.to_owned();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &value[..end], value.len())
}

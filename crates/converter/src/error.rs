//! The one error type of this crate.

use std::fmt;

/// Which side of a converter an id was looked up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Application value → body (the publisher).
    Send,
    /// Body → fields (the receiver).
    Receive,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Send => "send",
            Side::Receive => "receive",
        })
    }
}

/// Everything that can go wrong while validating rules or converting a body.
///
/// Every message names the converter id; input errors also name the record
/// (numbered from 1), the field and the offset (numbered from 0, as in the
/// rules), so an operator can find the problem in the feed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// No converter is registered under this id for this side.
    #[error("unknown {side} converter `{id}` (known: {known})")]
    UnknownConverter {
        /// The id that was asked for.
        id: String,
        /// The side it was looked up for.
        side: Side,
        /// The registered ids, comma separated.
        known: String,
    },
    /// The converter needs extraction rules and none were configured.
    #[error("converter `{converter}` needs rules (ey_receive_config.converter_rules is empty)")]
    MissingRules {
        /// The converter id.
        converter: String,
    },
    /// The rules text is not valid TOML or has a key of the wrong type or name.
    #[error("converter `{converter}`: rules are not valid: {message}")]
    RulesSyntax {
        /// The converter id.
        converter: String,
        /// What the TOML parser reported, with line and column.
        message: String,
    },
    /// The rules parse but make no sense (zero length, overlapping fields, bad path, ...).
    #[error("converter `{converter}`: invalid rules: {problem}")]
    InvalidRules {
        /// The converter id.
        converter: String,
        /// The problem, naming the rule (e.g. "field `amount`: length must be > 0").
        problem: String,
    },
    /// The body is XML where text was expected, or the other way round.
    #[error("converter `{converter}` expects {expected} body, got {found} body")]
    WrongFormat {
        /// The converter id.
        converter: String,
        /// The format the converter reads.
        expected: crate::BodyFormat,
        /// The format it was given.
        found: crate::BodyFormat,
    },
    /// A delimited record has fewer or more fields than the rules define.
    #[error("converter `{converter}`: record {record} has {found} fields, expected {expected}")]
    FieldCount {
        /// The converter id.
        converter: String,
        /// The record, numbered from 1.
        record: usize,
        /// How many fields the rules define.
        expected: usize,
        /// How many the record has.
        found: usize,
    },
    /// A fixed-width record ends before a field does.
    #[error(
        "converter `{converter}`: record {record} is {len} {unit} long, \
         but field `{field}` needs {unit} {start}..{end}"
    )]
    ShortRecord {
        /// The converter id.
        converter: String,
        /// The record, numbered from 1.
        record: usize,
        /// The field that does not fit.
        field: String,
        /// Where the field starts (in `unit`s, from 0).
        start: usize,
        /// Where the field ends (exclusive).
        end: usize,
        /// The record's length.
        len: usize,
        /// `chars` or `bytes`.
        unit: &'static str,
    },
    /// In byte mode, a field boundary falls inside a multi-byte character.
    #[error(
        "converter `{converter}`: record {record}, field `{field}` (bytes {start}..{end}) \
         cuts through a multi-byte {encoding} character"
    )]
    SplitCharacter {
        /// The converter id.
        converter: String,
        /// The record, numbered from 1.
        record: usize,
        /// The field whose boundary is wrong.
        field: String,
        /// First byte of the field.
        start: usize,
        /// End of the field (exclusive).
        end: usize,
        /// The declared encoding.
        encoding: &'static str,
    },
    /// The text has a character the declared encoding cannot represent.
    #[error(
        "converter `{converter}`: record {record}, character {offset} ({ch:?}) \
         cannot be represented in {encoding}"
    )]
    Unencodable {
        /// The converter id.
        converter: String,
        /// The record, numbered from 1.
        record: usize,
        /// The character's offset in the record (in chars, from 0).
        offset: usize,
        /// The character.
        ch: char,
        /// The declared encoding.
        encoding: &'static str,
    },
    /// The body is not well-formed XML (or nests deeper than the limit).
    #[error("converter `{converter}`: invalid XML at byte {position}: {message}")]
    InvalidXml {
        /// The converter id.
        converter: String,
        /// Byte offset in the body where the problem was seen.
        position: u64,
        /// What is wrong.
        message: String,
    },
    /// An XML path found nothing (for a required field) or too much (for a single one).
    #[error("converter `{converter}`: field `{field}` (path `{path}`): {problem}")]
    Path {
        /// The converter id.
        converter: String,
        /// The field being extracted.
        field: String,
        /// Its path.
        path: String,
        /// What went wrong.
        problem: String,
    },
    /// Send side: the value does not fit the format (wrong shape, too wide, contains a delimiter).
    #[error("converter `{converter}`: {location}: {problem}")]
    Value {
        /// The converter id.
        converter: String,
        /// Where in the value (e.g. "record 2, field `name`" or "key `a b`").
        location: String,
        /// What is wrong.
        problem: String,
    },
    /// An application's own converter failed.
    #[error("converter `{converter}`: {source}")]
    Custom {
        /// The converter id.
        converter: String,
        /// The application's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl ConvertError {
    /// Wraps an application converter's error.
    pub fn custom(
        converter: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        ConvertError::Custom {
            converter: converter.into(),
            source: source.into(),
        }
    }

    /// An [`ConvertError::InvalidRules`] for `converter`.
    pub fn invalid_rules(converter: impl Into<String>, problem: impl Into<String>) -> Self {
        ConvertError::InvalidRules {
            converter: converter.into(),
            problem: problem.into(),
        }
    }

    /// True for errors about the rules themselves (config errors), false for
    /// errors about one body or value (data errors).
    pub fn is_rules_error(&self) -> bool {
        matches!(
            self,
            ConvertError::UnknownConverter { .. }
                | ConvertError::MissingRules { .. }
                | ConvertError::RulesSyntax { .. }
                | ConvertError::InvalidRules { .. }
        )
    }
}

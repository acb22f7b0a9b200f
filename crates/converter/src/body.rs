//! What a converter reads and writes: a body in one of two formats.

use std::fmt;
use std::str::FromStr;

/// The format of a message body.
///
/// `Xml` bodies are XML markup with one root element, carried as-is inside
/// the envelope; `Text` bodies (delimited or fixed-width records) are plain
/// text, escaped by the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyFormat {
    /// XML markup with one root element.
    Xml,
    /// Plain text.
    Text,
}

impl BodyFormat {
    /// `"xml"` or `"text"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyFormat::Xml => "xml",
            BodyFormat::Text => "text",
        }
    }
}

impl fmt::Display for BodyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyFormat::Xml => "an XML",
            BodyFormat::Text => "a text",
        })
    }
}

/// The error of parsing a [`BodyFormat`] from a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown body format `{0}` (expected `xml` or `text`)")]
pub struct ParseBodyFormatError(String);

impl FromStr for BodyFormat {
    type Err = ParseBodyFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "xml" => Ok(BodyFormat::Xml),
            "text" => Ok(BodyFormat::Text),
            other => Err(ParseBodyFormatError(other.to_owned())),
        }
    }
}

/// A rendered body: what a send converter produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// How `content` is to be read.
    pub format: BodyFormat,
    /// The body itself.
    pub content: String,
}

impl Body {
    /// An XML body.
    pub fn xml(content: impl Into<String>) -> Self {
        Body {
            format: BodyFormat::Xml,
            content: content.into(),
        }
    }

    /// A text body.
    pub fn text(content: impl Into<String>) -> Self {
        Body {
            format: BodyFormat::Text,
            content: content.into(),
        }
    }
}

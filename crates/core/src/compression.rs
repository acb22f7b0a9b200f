//! Compression applied to a packed envelope.

use std::fmt;
use std::str::FromStr;

/// How a packed envelope is compressed on the wire.
///
/// The value is what operators write in `ey_send_config.compression`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (RFC 1952); the default.
    #[default]
    Gzip,
    /// zlib-wrapped deflate (RFC 1950), as HTTP's `deflate` content coding.
    Deflate,
    /// No compression: the envelope is plain UTF-8 XML.
    None,
}

impl Compression {
    /// All values, in the order they are documented.
    pub const ALL: [Compression; 3] = [Compression::Gzip, Compression::Deflate, Compression::None];

    /// The name as stored in the config tables (`gzip`, `deflate`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Deflate => "deflate",
            Compression::None => "none",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string names no known compression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression `{0}` (expected gzip, deflate or none)")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gzip" => Ok(Compression::Gzip),
            "deflate" => Ok(Compression::Deflate),
            "none" => Ok(Compression::None),
            _ => Err(UnknownCompression(s.to_string())),
        }
    }
}

//! [`Codec`]: packing and unpacking under a set of [`Limits`].

use std::borrow::Cow;
use std::cell::RefCell;

use super::xmlchar::{code_at, find_illegal};
use super::{compress, read, write, Envelope, EnvelopeError, Limits};
use crate::Compression;

/// Scratch buffers above this size are not kept between calls.
const KEEP_SCRATCH: usize = 1 << 20;

thread_local! {
    /// The uncompressed XML of the envelope being packed, reused per thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Packs and unpacks envelopes under a set of [`Limits`].
///
/// A `Codec` is cheap to clone and share (`Send + Sync`); the deflate states
/// it uses are kept per thread and reused, so calling it in a loop does not
/// pay for a fresh compressor per event.
///
/// ```
/// use eventyard_core::envelope::{Body, Codec, Envelope, Limits};
/// use eventyard_core::Compression;
///
/// let codec = Codec::new(Limits::default().max_depth(16));
/// let env = Envelope::new("ORDER.PLACED", "SHOP", Body::Text("A|42|3.50".into()));
/// let packed = codec.pack_as(&env, Compression::Deflate)?;
/// let back = codec.unpack(&packed)?;
/// assert_eq!(back.header.content_encoding, Compression::Deflate);
/// assert_eq!(back.body, env.body);
/// # Ok::<(), eventyard_core::envelope::EnvelopeError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Codec {
    limits: Limits,
}

impl Codec {
    /// A codec enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Codec { limits }
    }

    /// The limits this codec enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Packs `env` with the compression its header names
    /// (`header.content_encoding`).
    ///
    /// Fails if a value is invalid or holds a character XML 1.0 cannot
    /// carry, if an XML body is not a well-formed fragment, or if the result
    /// would break this codec's limits.
    pub fn pack(&self, env: &Envelope) -> Result<Vec<u8>, EnvelopeError> {
        self.pack_as(env, env.header.content_encoding)
    }

    /// Packs `env` with `compression`, which is also what the packed header
    /// declares as `content_encoding` (whatever `env.header` says).
    pub fn pack_as(
        &self,
        env: &Envelope,
        compression: Compression,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = Vec::new();
        self.pack_into(env, compression, &mut out)?;
        Ok(out)
    }

    /// Like [`pack_as`](Self::pack_as), appending to `out`, so a caller can
    /// reuse one buffer. On error `out` keeps its previous contents.
    pub fn pack_into(
        &self,
        env: &Envelope,
        compression: Compression,
        out: &mut Vec<u8>,
    ) -> Result<(), EnvelopeError> {
        let start = out.len();
        let result = match compression {
            Compression::None => write::write_envelope(env, compression, &self.limits, out)
                .and_then(|()| self.check_xml_size(out.len() - start)),
            _ => with_scratch(|xml| {
                write::write_envelope(env, compression, &self.limits, xml)?;
                self.check_xml_size(xml.len())?;
                compress::compress(compression, xml, out)
            }),
        };
        let result = result.and_then(|()| {
            let size = out.len() - start;
            if size > self.limits.max_packed_size {
                return Err(EnvelopeError::PackedTooLarge {
                    size,
                    limit: self.limits.max_packed_size,
                });
            }
            Ok(())
        });
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn check_xml_size(&self, size: usize) -> Result<(), EnvelopeError> {
        if size > self.limits.max_decompressed_size {
            return Err(EnvelopeError::EnvelopeTooLarge {
                size,
                limit: self.limits.max_decompressed_size,
            });
        }
        Ok(())
    }

    /// Unpacks an envelope: detects the compression from the leading bytes,
    /// decompresses under the size limits, parses and checks the XML.
    pub fn unpack(&self, input: &[u8]) -> Result<Envelope, EnvelopeError> {
        let (compression, xml) = self.decompress(input)?;
        let xml = compress::strip_bom(&xml);
        let text = std::str::from_utf8(xml).map_err(|e| EnvelopeError::InvalidUtf8 {
            offset: e.valid_up_to(),
        })?;
        if let Some(offset) = find_illegal(xml) {
            return Err(EnvelopeError::IllegalCharacter {
                field: "document".into(),
                code: code_at(text, offset),
                offset,
            });
        }
        let env = read::parse_document(text, &self.limits)?;
        if env.header.content_encoding != compression {
            return Err(EnvelopeError::CompressionMismatch {
                declared: env.header.content_encoding,
                detected: compression,
            });
        }
        Ok(env)
    }

    /// Detects the compression and decompresses under the size limits,
    /// without parsing: the raw XML document, for debugging.
    pub fn decompress<'a>(
        &self,
        input: &'a [u8],
    ) -> Result<(Compression, Cow<'a, [u8]>), EnvelopeError> {
        if input.len() > self.limits.max_packed_size {
            return Err(EnvelopeError::PackedTooLarge {
                size: input.len(),
                limit: self.limits.max_packed_size,
            });
        }
        let compression = compress::detect(input)?;
        let limit = self.limits.max_decompressed_size;
        let xml = match compression {
            Compression::None if input.len() > limit => {
                return Err(EnvelopeError::DecompressedTooLarge { compression, limit })
            }
            Compression::None => Cow::Borrowed(input),
            _ => Cow::Owned(compress::decompress(compression, input, limit)?),
        };
        Ok((compression, xml))
    }
}

fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH
        .try_with(|cell| {
            cell.try_borrow_mut()
                .map(|mut b| std::mem::take(&mut *b))
                .ok()
        })
        .ok()
        .flatten()
        .unwrap_or_default();
    buf.clear();
    let result = f(&mut buf);
    if buf.capacity() <= KEEP_SCRATCH {
        let _ = SCRATCH.try_with(|cell| {
            if let Ok(mut slot) = cell.try_borrow_mut() {
                *slot = buf;
            }
        });
    }
    result
}

/// Packs `env` under the default [`Limits`], with the compression its header
/// names. See [`Codec::pack`].
pub fn pack(env: &Envelope) -> Result<Vec<u8>, EnvelopeError> {
    Codec::default().pack(env)
}

/// Unpacks an envelope under `limits`. See [`Codec::unpack`].
pub fn unpack(input: &[u8], limits: &Limits) -> Result<Envelope, EnvelopeError> {
    Codec::new(*limits).unpack(input)
}

/// Tells the compression of a packed envelope from its leading bytes:
/// `1f 8b` is gzip, a zlib header (RFC 1950) is `deflate`, `<` or a UTF-8 BOM
/// is none.
pub fn detect_compression(input: &[u8]) -> Result<Compression, EnvelopeError> {
    compress::detect(input)
}

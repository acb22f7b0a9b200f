//! Compression detection, and gzip / zlib with reused per-thread (de)compressors.
//!
//! A fresh deflate state costs far more than compressing a small envelope,
//! so each thread keeps one raw-deflate and one zlib compressor and
//! decompressor and resets them between uses. gzip is framed here by hand
//! (RFC 1952 header, raw deflate, CRC-32 and size trailer) so that it can use
//! the cheap-to-reset raw deflate state.

use std::cell::RefCell;
use std::thread::LocalKey;

use flate2::{Compress, Crc, Decompress, FlushCompress, FlushDecompress, Status};

use super::EnvelopeError;
use crate::Compression;

/// Compression level: fastest. Envelopes are small and latency matters more
/// than the last few percent of size.
const LEVEL: u32 = 1;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// ID1 ID2, CM = 8 (deflate), FLG = 0, MTIME = 0, XFL = 4 (fastest), OS = 255 (unknown).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];
const UTF8_BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

thread_local! {
    static RAW_DEFLATE: RefCell<Option<Compress>> = const { RefCell::new(None) };
    static ZLIB_DEFLATE: RefCell<Option<Compress>> = const { RefCell::new(None) };
    static RAW_INFLATE: RefCell<Option<Decompress>> = const { RefCell::new(None) };
    static ZLIB_INFLATE: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Tells the compression of a packed envelope from its first bytes.
pub(crate) fn detect(input: &[u8]) -> Result<Compression, EnvelopeError> {
    match input {
        [] => Err(EnvelopeError::Empty),
        [b'<', ..] => Ok(Compression::None),
        [0xEF, 0xBB, 0xBF, ..] => Ok(Compression::None),
        [0x1f, 0x8b, ..] => Ok(Compression::Gzip),
        [cmf, flg, ..] if is_zlib_header(*cmf, *flg) => Ok(Compression::Deflate),
        [0x1f] => Err(EnvelopeError::Truncated {
            compression: Compression::Gzip,
            size: 1,
        }),
        [cmf] if cmf & 0x0f == 8 && cmf >> 4 <= 7 => Err(EnvelopeError::Truncated {
            compression: Compression::Deflate,
            size: 1,
        }),
        _ => Err(EnvelopeError::UnknownCompressionMarker {
            found: hex_prefix(input),
        }),
    }
}

/// RFC 1950: CM = 8 (deflate), CINFO <= 7, and the header is a multiple of 31.
fn is_zlib_header(cmf: u8, flg: u8) -> bool {
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

fn hex_prefix(input: &[u8]) -> String {
    let shown: Vec<String> = input.iter().take(4).map(|b| format!("{b:02x}")).collect();
    shown.join(" ")
}

/// Strips a UTF-8 byte order mark.
pub(crate) fn strip_bom(xml: &[u8]) -> &[u8] {
    xml.strip_prefix(&UTF8_BOM).unwrap_or(xml)
}

/// Appends `data` compressed with `compression` to `out`.
pub(crate) fn compress(
    compression: Compression,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    match compression {
        Compression::None => {
            out.extend_from_slice(data);
            Ok(())
        }
        Compression::Gzip => {
            out.extend_from_slice(&GZIP_HEADER);
            with_compressor(&RAW_DEFLATE, false, |c| deflate(c, data, out))
                .map_err(|detail| compress_failed(compression, detail))?;
            let mut crc = Crc::new();
            crc.update(data);
            out.extend_from_slice(&crc.sum().to_le_bytes());
            // ISIZE is the input size modulo 2^32 (RFC 1952).
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            Ok(())
        }
        Compression::Deflate => with_compressor(&ZLIB_DEFLATE, true, |c| deflate(c, data, out))
            .map_err(|detail| compress_failed(compression, detail)),
    }
}

fn compress_failed(compression: Compression, detail: String) -> EnvelopeError {
    EnvelopeError::Compress {
        compression,
        detail,
    }
}

fn with_compressor<R>(
    slot: &'static LocalKey<RefCell<Option<Compress>>>,
    zlib: bool,
    f: impl FnOnce(&mut Compress) -> R,
) -> R {
    // Take the state out of its slot and put it back after use; if the slot is
    // gone (thread teardown) or empty, a fresh state does the job.
    let mut state = match take(slot) {
        Some(mut state) => {
            state.reset();
            state
        }
        None => Compress::new(flate2::Compression::new(LEVEL), zlib),
    };
    let result = f(&mut state);
    put_back(slot, state);
    result
}

fn take<T>(slot: &'static LocalKey<RefCell<Option<T>>>) -> Option<T> {
    slot.try_with(|cell| {
        cell.try_borrow_mut()
            .ok()
            .and_then(|mut guard| guard.take())
    })
    .ok()
    .flatten()
}

fn put_back<T>(slot: &'static LocalKey<RefCell<Option<T>>>, state: T) {
    let _ = slot.try_with(|cell| {
        if let Ok(mut guard) = cell.try_borrow_mut() {
            *guard = Some(state);
        }
    });
}

fn deflate(c: &mut Compress, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    // deflateBound-like first guess: incompressible data grows by a few bytes per block.
    out.reserve(data.len() + data.len() / 64 + 64);
    loop {
        let consumed = usize::try_from(c.total_in()).unwrap_or(usize::MAX);
        let rest = data.get(consumed..).unwrap_or_default();
        let status = c
            .compress_vec(rest, out, FlushCompress::Finish)
            .map_err(|e| e.to_string())?;
        match status {
            Status::StreamEnd => return Ok(()),
            Status::Ok | Status::BufError => out.reserve(out.capacity().max(256)),
        }
    }
}

/// Decompresses a gzip or zlib payload into at most `limit` bytes.
pub(crate) fn decompress(
    compression: Compression,
    input: &[u8],
    limit: usize,
) -> Result<Vec<u8>, EnvelopeError> {
    match compression {
        Compression::None => {
            if input.len() > limit {
                return Err(EnvelopeError::DecompressedTooLarge { compression, limit });
            }
            Ok(input.to_vec())
        }
        Compression::Deflate => {
            let (out, _) = with_decompressor(&ZLIB_INFLATE, true, |d| {
                inflate(d, compression, input, 0, limit)
            })?;
            Ok(out)
        }
        Compression::Gzip => gunzip(input, limit),
    }
}

fn gunzip(input: &[u8], limit: usize) -> Result<Vec<u8>, EnvelopeError> {
    const C: Compression = Compression::Gzip;
    let start = gzip_header_len(input)?;
    let (out, end) =
        with_decompressor(&RAW_INFLATE, false, |d| inflate(d, C, input, start, limit))?;
    let trailer = input.get(end..end + 8).ok_or(EnvelopeError::Truncated {
        compression: C,
        size: input.len(),
    })?;
    let word =
        |i: usize| u32::from_le_bytes([trailer[i], trailer[i + 1], trailer[i + 2], trailer[i + 3]]);
    let mut crc = Crc::new();
    crc.update(&out);
    if crc.sum() != word(0) {
        return Err(corrupt(C, end, "CRC-32 mismatch: the data is damaged"));
    }
    if out.len() as u32 != word(4) {
        return Err(corrupt(
            C,
            end + 4,
            "the size in the trailer does not match the data",
        ));
    }
    if input.len() > end + 8 {
        let extra = input.len() - end - 8;
        return Err(corrupt(
            C,
            end + 8,
            &format!("{extra} bytes follow the end of the gzip stream"),
        ));
    }
    Ok(out)
}

/// Length of the gzip member header (RFC 1952 §2.3), optional fields included.
fn gzip_header_len(input: &[u8]) -> Result<usize, EnvelopeError> {
    const C: Compression = Compression::Gzip;
    let truncated = || EnvelopeError::Truncated {
        compression: C,
        size: input.len(),
    };
    let fixed = input.get(..10).ok_or_else(truncated)?;
    if fixed[..2] != GZIP_MAGIC {
        return Err(corrupt(C, 0, "bad gzip magic"));
    }
    if fixed[2] != 8 {
        return Err(corrupt(
            C,
            2,
            &format!("compression method {} is not deflate (8)", fixed[2]),
        ));
    }
    let flags = fixed[3];
    if flags & 0xE0 != 0 {
        return Err(corrupt(C, 3, "reserved header flags are set"));
    }
    let mut pos = 10;
    if flags & 0x04 != 0 {
        // FEXTRA: two-byte length, then that many bytes.
        let len = input.get(pos..pos + 2).ok_or_else(truncated)?;
        pos += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [0x08, 0x10] {
        // FNAME, FCOMMENT: zero-terminated strings.
        if flags & flag != 0 {
            let rest = input.get(pos..).ok_or_else(truncated)?;
            let nul = rest.iter().position(|&b| b == 0).ok_or_else(truncated)?;
            pos += nul + 1;
        }
    }
    if flags & 0x02 != 0 {
        // FHCRC: low 16 bits of the CRC-32 of the header so far.
        let stored = input.get(pos..pos + 2).ok_or_else(truncated)?;
        let mut crc = Crc::new();
        crc.update(&input[..pos]);
        if (crc.sum() & 0xffff) as u16 != u16::from_le_bytes([stored[0], stored[1]]) {
            return Err(corrupt(C, pos, "header CRC mismatch"));
        }
        pos += 2;
    }
    if pos > input.len() {
        return Err(truncated());
    }
    Ok(pos)
}

fn corrupt(compression: Compression, offset: usize, detail: &str) -> EnvelopeError {
    EnvelopeError::Corrupt {
        compression,
        offset,
        detail: detail.to_owned(),
    }
}

fn with_decompressor<R>(
    slot: &'static LocalKey<RefCell<Option<Decompress>>>,
    zlib: bool,
    f: impl FnOnce(&mut Decompress) -> R,
) -> R {
    let mut state = match take(slot) {
        Some(mut state) => {
            state.reset(zlib);
            state
        }
        None => Decompress::new(zlib),
    };
    let result = f(&mut state);
    put_back(slot, state);
    result
}

/// Inflates `input[start..]` into a new buffer that never grows past
/// `limit + 1` bytes. Returns the output and the input offset just after the
/// deflate stream.
fn inflate(
    d: &mut Decompress,
    compression: Compression,
    input: &[u8],
    start: usize,
    limit: usize,
) -> Result<(Vec<u8>, usize), EnvelopeError> {
    // One byte past the limit proves the payload is too large.
    let cap = limit.saturating_add(1);
    let compressed = input.get(start..).unwrap_or_default();
    let guess = compressed.len().saturating_mul(4).max(1024);
    let mut out = Vec::with_capacity(guess.min(cap));
    loop {
        let consumed = usize::try_from(d.total_in()).unwrap_or(usize::MAX);
        let rest = compressed.get(consumed..).unwrap_or_default();
        let out_before = out.len();
        let status = d
            .decompress_vec(rest, &mut out, FlushDecompress::None)
            .map_err(|e| {
                let detail = match e.needs_dictionary() {
                    Some(_) => {
                        "the stream needs a preset dictionary, which envelopes never use".to_owned()
                    }
                    None => e.message().unwrap_or("invalid deflate data").to_owned(),
                };
                EnvelopeError::Corrupt {
                    compression,
                    offset: start + usize::try_from(d.total_in()).unwrap_or(0),
                    detail,
                }
            })?;
        if out.len() > limit {
            return Err(EnvelopeError::DecompressedTooLarge { compression, limit });
        }
        let consumed_now = usize::try_from(d.total_in()).unwrap_or(usize::MAX);
        if status == Status::StreamEnd {
            return Ok((out, start + consumed_now));
        }
        if out.len() == out.capacity() {
            // Output full: grow (doubling), never beyond the cap.
            let more = out.capacity().max(1024).min(cap - out.len());
            out.reserve_exact(more);
        } else if consumed_now >= compressed.len()
            || (consumed_now == consumed && out.len() == out_before)
        {
            // Room left for output, yet no end of stream: the input ran out.
            return Err(EnvelopeError::Truncated {
                compression,
                size: input.len(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_markers() {
        assert_eq!(detect(b"<x/>").unwrap(), Compression::None);
        assert_eq!(detect(b"\xEF\xBB\xBF<x/>").unwrap(), Compression::None);
        assert_eq!(detect(&[0x1f, 0x8b, 8]).unwrap(), Compression::Gzip);
        assert_eq!(detect(&[0x78, 0x01]).unwrap(), Compression::Deflate);
        assert_eq!(detect(&[0x78, 0x9c]).unwrap(), Compression::Deflate);
        assert_eq!(detect(&[0x78, 0xda]).unwrap(), Compression::Deflate);
        assert!(matches!(
            detect(b"PK\x03\x04"),
            Err(EnvelopeError::UnknownCompressionMarker { .. })
        ));
        assert!(matches!(detect(b""), Err(EnvelopeError::Empty)));
    }

    #[test]
    fn round_trips_each_compression_with_reuse() {
        let data = b"<envelope>hello hello hello hello</envelope>".repeat(50);
        for c in Compression::ALL {
            for _ in 0..3 {
                let mut packed = Vec::new();
                compress(c, &data, &mut packed).unwrap();
                assert_eq!(detect(&packed).unwrap(), c);
                assert_eq!(decompress(c, &packed, 1 << 20).unwrap(), data);
            }
        }
    }

    #[test]
    fn interoperates_with_flate2_streams() {
        use std::io::Write;
        let data = b"<a>interop</a>".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decompress(Compression::Gzip, &gz, 1 << 20).unwrap(), data);
        let mut named = flate2::GzBuilder::new()
            .filename("x.xml")
            .comment("c")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), flate2::Compression::fast());
        named.write_all(&data).unwrap();
        let named = named.finish().unwrap();
        assert_eq!(
            decompress(Compression::Gzip, &named, 1 << 20).unwrap(),
            data
        );

        let mut packed = Vec::new();
        compress(Compression::Gzip, &data, &mut packed).unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&packed[..]), &mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn stops_at_the_limit() {
        let data = vec![b'a'; 100_000];
        let mut packed = Vec::new();
        compress(Compression::Gzip, &data, &mut packed).unwrap();
        assert!(matches!(
            decompress(Compression::Gzip, &packed, 99_999),
            Err(EnvelopeError::DecompressedTooLarge { limit: 99_999, .. })
        ));
        assert_eq!(
            decompress(Compression::Gzip, &packed, 100_000)
                .unwrap()
                .len(),
            100_000
        );
    }
}

//! Hostile and broken input to `unpack`: each case gets its own typed error
//! with a message that names the problem, and nothing panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use eventyard_core::envelope::{self, Body, Codec, Envelope, EnvelopeError, Limits};
use eventyard_core::Compression;
use proptest::prelude::*;

fn unpack(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    envelope::unpack(bytes, &Limits::default())
}

fn sample(compression: Compression) -> Vec<u8> {
    let env = Envelope::builder("ACCT.OPENED", "CORE")
        .compression(compression)
        .sequence("accounts", 1, 42)
        .entry("k", "v")
        .build(Body::Xml(
            "<account id=\"1001\"><name>Zoë</name></account>".repeat(8),
        ));
    envelope::pack(&env).unwrap()
}

/// The uncompressed XML of a valid envelope with `header` as its header content.
fn doc_with_header(header: &str) -> String {
    format!(
        "<envelope version=\"1\"><header>{header}</header><common/><body format=\"text\">x</body></envelope>"
    )
}

const FULL_HEADER: [(&str, &str); 6] = [
    ("event_id", "0190f0c6-5e2a-7c4d-9b1e-3f2a8d6c4b10"),
    ("event_type", "ACCT.OPENED"),
    ("publisher", "CORE"),
    ("created_at", "2025-01-31T09:15:02Z"),
    ("content_encoding", "none"),
    ("schema_version", "1"),
];

fn header_without(skip: &str, replace: Option<(&str, &str)>) -> String {
    FULL_HEADER
        .iter()
        .filter(|(name, _)| *name != skip)
        .map(|(name, value)| {
            let value = match replace {
                Some((n, v)) if n == *name => v,
                _ => value,
            };
            format!("<{name}>{value}</{name}>")
        })
        .collect()
}

fn message(err: &EnvelopeError) -> String {
    err.to_string()
}

#[test]
fn the_complete_document_used_below_is_valid() {
    let doc = doc_with_header(&header_without("", None));
    unpack(doc.as_bytes()).unwrap();
}

#[test]
fn truncated_gzip_and_deflate_are_reported_as_truncated() {
    for compression in [Compression::Gzip, Compression::Deflate] {
        let packed = sample(compression);
        for cut in 1..packed.len() {
            let err = unpack(&packed[..cut]).unwrap_err();
            assert!(
                matches!(err, EnvelopeError::Truncated { compression: c, size } if c == compression && size == cut),
                "{compression} cut at {cut}/{}: {err:?}",
                packed.len()
            );
            assert!(
                message(&err).contains(&format!("truncated {compression} stream")),
                "{err}"
            );
        }
    }
}

#[test]
fn wrong_magic_is_an_unknown_marker_and_a_bad_gzip_header_is_corrupt() {
    let mut packed = sample(Compression::Gzip);
    packed[1] = 0x8c;
    let err = unpack(&packed).unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::UnknownCompressionMarker { found } if found.starts_with("1f 8c")),
        "{err:?}"
    );

    let mut packed = sample(Compression::Gzip);
    packed[2] = 7; // compression method other than deflate
    let err = unpack(&packed).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::Corrupt {
                compression: Compression::Gzip,
                offset: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(message(&err).contains("not deflate"), "{err}");
}

#[test]
fn unknown_compression_marker_names_the_bytes() {
    for input in [
        &b"PK\x03\x04zip"[..],
        b"BZh91AY",
        b"{\"json\":1}",
        b" <envelope/>",
        b"\x00",
    ] {
        let err = unpack(input).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::UnknownCompressionMarker { .. }),
            "{err:?}"
        );
        assert!(
            message(&err).contains("unknown compression marker"),
            "{err}"
        );
    }
    let err = unpack(b"PK\x03\x04").unwrap_err();
    assert!(message(&err).contains("50 4b 03 04"), "{err}");
    assert!(matches!(unpack(b""), Err(EnvelopeError::Empty)));
}

#[test]
fn corrupt_data_and_checksums_are_reported() {
    let mut packed = sample(Compression::Gzip);
    let n = packed.len();
    packed[n - 6] ^= 0xff; // inside the CRC-32
    let err = unpack(&packed).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::Corrupt {
                compression: Compression::Gzip,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(message(&err).contains("CRC-32"), "{err}");

    let mut packed = sample(Compression::Deflate);
    let n = packed.len();
    packed[n - 1] ^= 0xff; // inside the Adler-32
    let err = unpack(&packed).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::Corrupt {
                compression: Compression::Deflate,
                ..
            }
        ),
        "{err:?}"
    );

    let mut packed = sample(Compression::Gzip);
    packed.extend_from_slice(b"junk");
    let err = unpack(&packed).unwrap_err();
    assert!(message(&err).contains("4 bytes follow the end"), "{err}");
}

/// Builds a gzip stream that expands to 1 GiB, streaming, never holding 1 GiB.
fn gzip_bomb() -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"<envelope version=\"1\"><body format=\"text\">")
        .unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..1024 {
        gz.write_all(&chunk).unwrap();
    }
    gz.finish().unwrap()
}

#[test]
fn a_one_gib_gzip_bomb_is_refused_at_the_limit() {
    let bomb = gzip_bomb();
    assert!(
        bomb.len() < Limits::DEFAULT_MAX_PACKED_SIZE,
        "bomb is {} bytes",
        bomb.len()
    );
    let err = unpack(&bomb).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::DecompressedTooLarge { compression: Compression::Gzip, limit } if limit == Limits::DEFAULT_MAX_DECOMPRESSED_SIZE),
        "{err:?}"
    );
    assert!(message(&err).contains("decompression bomb"), "{err}");
    assert!(message(&err).contains("max_decompressed_size"), "{err}");

    // A tighter limit stops it sooner; `decompress` (the CLI's raw view) too.
    let codec = Codec::new(Limits::default().max_decompressed_size(1 << 20));
    assert!(
        matches!(codec.decompress(&bomb), Err(EnvelopeError::DecompressedTooLarge { limit, .. }) if limit == 1 << 20)
    );
}

#[test]
fn a_deflate_bomb_is_refused_too() {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..80 {
        z.write_all(&chunk).unwrap();
    }
    let bomb = z.finish().unwrap();
    let err = unpack(&bomb).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::DecompressedTooLarge {
                compression: Compression::Deflate,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn oversized_packed_input_is_refused_before_any_work() {
    let codec = Codec::new(Limits::default().max_packed_size(100));
    let err = codec.unpack(&sample(Compression::None)).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::PackedTooLarge { limit: 100, .. }),
        "{err:?}"
    );
    assert!(message(&err).contains("max_packed_size"), "{err}");
}

#[test]
fn deeply_nested_xml_is_refused() {
    let depth = 100_000;
    let doc = format!(
        "<envelope version=\"1\"><body format=\"xml\">{}{}</body></envelope>",
        "<a>".repeat(depth),
        "</a>".repeat(depth)
    );
    for compression in Compression::ALL {
        let mut packed = Vec::new();
        match compression {
            Compression::None => packed.extend_from_slice(doc.as_bytes()),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(doc.as_bytes()).unwrap();
                packed = gz.finish().unwrap();
            }
            Compression::Deflate => {
                let mut z =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                z.write_all(doc.as_bytes()).unwrap();
                packed = z.finish().unwrap();
            }
        }
        let err = unpack(&packed).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::TooDeep { limit: 64, .. }),
            "{err:?}"
        );
        assert!(message(&err).contains("deeper than 64 levels"), "{err}");
    }
    // Unknown elements are skipped, but still count.
    let doc = format!(
        "<envelope version=\"1\"><x>{}</x></envelope>",
        "<y>".repeat(100)
    );
    assert!(matches!(
        unpack(doc.as_bytes()),
        Err(EnvelopeError::TooDeep { .. })
    ));
}

#[test]
fn each_missing_header_field_is_named() {
    for (field, _) in FULL_HEADER {
        let doc = doc_with_header(&header_without(field, None));
        let err = unpack(doc.as_bytes()).unwrap_err();
        let expected = format!("header/{field}");
        assert!(
            matches!(&err, EnvelopeError::MissingField { field } if *field == expected),
            "{expected}: {err:?}"
        );
        assert!(
            message(&err).contains(&expected) && message(&err).contains("missing"),
            "{err}"
        );
    }
    for (doc, field) in [
        ("<envelope version=\"1\"><body format=\"text\"/></envelope>", "header"),
        (&*format!("<envelope version=\"1\"><header>{}</header></envelope>", header_without("", None)), "body"),
        ("<envelope><header/></envelope>", "envelope/@version"),
        (&*format!("<envelope version=\"1\"><header>{}</header><body/></envelope>", header_without("", None)), "body/@format"),
        (&*format!("<envelope version=\"1\"><header>{}</header><common><entry>v</entry></common><body format=\"xml\"/></envelope>", header_without("", None)), "common/entry/@key"),
    ] {
        let err = unpack(doc.as_bytes()).unwrap_err();
        assert!(matches!(&err, EnvelopeError::MissingField { field: f } if *f == field), "{field}: {err:?}");
    }
}

#[test]
fn bad_numbers_and_values_are_named() {
    for (field, value, reason) in [
        ("schema_version", "-1", "not a decimal integer"),
        ("schema_version", "1.5", "not a decimal integer"),
        ("schema_version", "4294967296", "out of range"),
        ("schema_version", "", "empty"),
        ("schema_version", "+1", "not a decimal integer"),
    ] {
        let doc = doc_with_header(&header_without("", Some((field, value))));
        let err = unpack(doc.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, EnvelopeError::InvalidNumber { field: f, .. } if *f == "header/schema_version"),
            "{value}: {err:?}"
        );
        assert!(message(&err).contains(reason), "{err}");
    }
    let sequenced = |epoch: &str, seq: &str| {
        doc_with_header(&format!(
            "{}<stream>s</stream><epoch>{epoch}</epoch><seq>{seq}</seq>",
            header_without("", None)
        ))
    };
    let err = unpack(sequenced("1", "9223372036854775808").as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::InvalidNumber {
                field: "header/seq",
                ..
            }
        ),
        "{err:?}"
    );
    let err = unpack(sequenced("x", "1").as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::InvalidNumber {
                field: "header/epoch",
                ..
            }
        ),
        "{err:?}"
    );
    unpack(sequenced("9223372036854775807", "0").as_bytes()).unwrap();

    for (field, value, expected) in [
        ("event_id", "not-a-uuid", "a UUID"),
        ("created_at", "yesterday", "RFC 3339"),
        ("created_at", "2025-01-31 09:15:02", "RFC 3339"),
        ("content_encoding", "brotli", "gzip, deflate or none"),
        ("event_type", "", "non-empty"),
    ] {
        let doc = doc_with_header(&header_without("", Some((field, value))));
        let err = unpack(doc.as_bytes()).unwrap_err();
        let path = format!("header/{field}");
        assert!(
            matches!(&err, EnvelopeError::InvalidValue { field: f, .. } if *f == path),
            "{value}: {err:?}"
        );
        assert!(
            message(&err).contains(expected) && message(&err).contains(&path),
            "{err}"
        );
    }

    let doc = doc_with_header(&format!(
        "{}<stream>s</stream><seq>1</seq>",
        header_without("", None)
    ));
    let err = unpack(doc.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::IncompleteSequence {
                present: "stream",
                missing: "epoch"
            }
        ),
        "{err:?}"
    );
}

/// A document, a check of the error variant, and text the message must contain.
type Case = (String, fn(&EnvelopeError) -> bool, &'static str);

#[test]
fn structural_problems_each_have_their_error() {
    let header = header_without("", None);
    let cases: Vec<Case> = vec![
        ("<other/>".into(), |e| matches!(e, EnvelopeError::NotAnEnvelope { .. }), "<other/>"),
        ("<?xml version=\"1.0\"?>".into(), |e| matches!(e, EnvelopeError::NotAnEnvelope { .. }), "no element"),
        ("<envelope version=\"2\"/>".into(), |e| matches!(e, EnvelopeError::UnsupportedVersion { .. }), "version `2`"),
        (format!("<!DOCTYPE envelope [<!ENTITY x \"y\">]><envelope version=\"1\"><header>{header}</header></envelope>"),
            |e| matches!(e, EnvelopeError::DoctypeNotAllowed { .. }), "DTDs are refused"),
        (format!("<envelope version=\"1\"><header>{header}</header><header/></envelope>"),
            |e| matches!(e, EnvelopeError::DuplicateField { field: "header", .. }), "more than once"),
        (format!("<envelope version=\"1\"><header>{header}<publisher>X</publisher></header></envelope>"),
            |e| matches!(e, EnvelopeError::DuplicateField { field: "header/publisher", .. }), "header/publisher"),
        (format!("<envelope version=\"1\"><header>{header}</header><body format=\"yaml\">x</body></envelope>"),
            |e| matches!(e, EnvelopeError::InvalidValue { .. }), "`xml` or `text`"),
        (format!("<envelope version=\"1\"><header>{header}</header><body format=\"text\">a<b/></body></envelope>"),
            |e| matches!(e, EnvelopeError::MalformedXml { .. }), "unexpected element <b>"),
        (format!("<envelope version=\"1\"><header>{header}</header><body format=\"xml\"><a></b></body></envelope>"),
            |e| matches!(e, EnvelopeError::MalformedXml { .. }), "malformed envelope XML"),
        (format!("<envelope version=\"1\"><header>{header}</header><body format=\"xml\">&bomb;</body></envelope>"),
            |e| matches!(e, EnvelopeError::MalformedXml { .. }), "bomb"),
        (format!("<envelope version=\"1\"><header>{}</header><body format=\"xml\"/></envelope>", header.replace("<content_encoding>none", "<content_encoding>gzip")),
            |e| matches!(e, EnvelopeError::CompressionMismatch { declared: Compression::Gzip, detected: Compression::None }), "says content_encoding `gzip`"),
        (format!("<envelope version=\"1\"><header>{header}</header><body format=\"text\">a\u{1}b</body></envelope>"),
            |e| matches!(e, EnvelopeError::IllegalCharacter { .. }), "U+0001"),
        (format!("<envelope version=\"1\"><header>{header}</header><body format=\"text\">a&#1;b</body></envelope>"),
            |e| matches!(e, EnvelopeError::IllegalCharacter { .. }), "U+0001"),
        (format!("<envelope version=\"1\"><header>{header}</header><body format=\"text\">x</body></envelope><second/>"),
            |e| matches!(e, EnvelopeError::MalformedXml { .. }), "second root"),
        (format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><envelope version=\"1\"><header>{header}</header></envelope>"),
            |e| matches!(e, EnvelopeError::MalformedXml { .. }), "always UTF-8"),
        (format!("<envelope version=\"1\"><header>{header}</header><common>{}</common><body format=\"text\"/></envelope>", "<entry key=\"k\">v</entry>".repeat(1025)),
            |e| matches!(e, EnvelopeError::TooManyEntries { limit: 1024 }), "max_entries"),
        (format!("<envelope version=\"1\"><header>{header}</header><body format=\"xml\"><a {}/></body></envelope>", (0..300).map(|i| format!("a{i}='x' ")).collect::<String>()),
            |e| matches!(e, EnvelopeError::TooManyAttributes { limit: 256, .. }), "max_attributes"),
    ];
    for (doc, is_expected, text) in cases {
        let err = unpack(doc.as_bytes()).unwrap_err();
        assert!(is_expected(&err), "{doc:.120}: {err:?}");
        assert!(message(&err).contains(text), "expected `{text}` in: {err}");
    }
    let mut latin1 = b"<envelope version=\"1\">".to_vec();
    latin1.push(0xE9);
    let err = unpack(&latin1).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::InvalidUtf8 { offset: 22 }),
        "{err:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = unpack(&bytes);
    }

    #[test]
    fn random_bytes_behind_each_marker_never_panic(
        marker in prop::sample::select(vec![&b"\x1f\x8b\x08"[..], b"\x1f\x8b\x08\x1f", b"\x78\x9c", b"\x78\x01", b"<", b"<envelope version=\"1\">", b"\xEF\xBB\xBF<"]),
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut input = marker.to_vec();
        input.extend_from_slice(&bytes);
        let _ = unpack(&input);
    }

    #[test]
    fn damaged_envelopes_never_panic(
        compression in prop::sample::select(Compression::ALL.to_vec()),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut packed = sample(compression);
        for (at, byte) in flips {
            let i = at.index(packed.len());
            packed[i] = byte;
        }
        let keep = cut.index(packed.len() + 1);
        let _ = unpack(&packed[..keep.max(1)]);
    }

    #[test]
    fn random_xml_like_text_never_panics(text in "[<>/a-z \"'=&;#!?\\[\\]-]{0,200}") {
        let _ = unpack(format!("<envelope version=\"1\">{text}").as_bytes());
    }
}

//! Envelope round trips: every compression, property-based over header fields
//! and bodies, plus the character rule and documents written by other tools.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeZone, Utc};
use eventyard_core::envelope::{
    self, Body, Codec, Common, Entry, Envelope, EnvelopeError, Header, Limits, Sequence,
};
use eventyard_core::Compression;
use proptest::prelude::*;
use uuid::Uuid;

// ---------------------------------------------------------------- strategies

/// One character XML 1.0 can carry.
fn legal_char() -> impl Strategy<Value = char> {
    any::<char>().prop_filter("XML 1.0 character", |c| {
        let c = u32::from(*c);
        (c >= 0x20 || c == 0x9 || c == 0xA || c == 0xD) && c != 0xFFFE && c != 0xFFFF
    })
}

/// Text mixing arbitrary legal Unicode with XML-special sequences and whitespace.
fn legal_text(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => legal_char().prop_map(String::from),
        1 => prop::sample::select(vec![
            "<", ">", "&", "'", "\"", "]]>", "&amp;", "&#13;", "<![CDATA[", " ", "  ", "\t",
            "\r", "\n", "\r\n", "é", "汉字", "🦀", "\u{FEFF}", "\u{85}", "\u{2028}",
        ])
        .prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|pieces| pieces.concat())
}

fn non_empty_text(max: usize) -> impl Strategy<Value = String> {
    (legal_char(), legal_text(max)).prop_map(|(c, rest)| format!("{c}{rest}"))
}

fn escape_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn escape_attr(s: &str) -> String {
    escape_text(s).replace('"', "&quot;")
}

fn xml_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_.-]{0,8}(:[a-z]{1,4})?"
}

/// A well-formed XML fragment: text, CDATA, comments, PIs and nested elements.
/// `t` without `]]>`, which would end a CDATA section early. One pass of
/// `replace` is not enough: `]]]>>` becomes `]]]>`.
fn without_cdata_end(mut t: String) -> String {
    while t.contains("]]>") {
        t = t.replace("]]>", "]]");
    }
    t
}

fn xml_fragment() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        legal_text(20).prop_map(|t| escape_text(&t)),
        legal_text(10).prop_map(|t| format!("<![CDATA[{}]]>", without_cdata_end(t))),
        legal_text(10).prop_map(|t| format!("<!--{}-->", t.replace('-', "_"))),
        Just("<?app instruction?>".to_string()),
        (xml_name(), legal_text(8)).prop_map(|(n, v)| format!("<{n} a=\"{}\"/>", escape_attr(&v))),
    ];
    leaf.prop_recursive(5, 40, 5, |inner| {
        (
            xml_name(),
            prop::collection::vec(legal_text(6), 0..3),
            prop::collection::vec(inner, 0..5),
        )
            .prop_map(|(name, attrs, children)| {
                let attrs: String = attrs
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!(" a{i}='{}'", escape_attr(v).replace('\'', "&apos;")))
                    .collect();
                format!("<{name}{attrs}>{}</{name}>", children.concat())
            })
    })
}

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    // 1970 ..= 9999, any nanosecond.
    (0i64..253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| Utc.timestamp_opt(secs, nanos).single().unwrap())
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u128>(),
        non_empty_text(12),
        non_empty_text(12),
        prop::option::of(non_empty_text(12)),
        prop::option::of((non_empty_text(8), 0..=i64::MAX as u64, 0..=i64::MAX as u64)),
        timestamp(),
        any::<u32>(),
    )
        .prop_map(
            |(id, event_type, publisher, producer_id, seq, created_at, schema_version)| Header {
                event_id: Uuid::from_u128(id),
                event_type,
                publisher,
                producer_id,
                sequence: seq.map(|(stream, epoch, seq)| Sequence { stream, epoch, seq }),
                created_at,
                content_encoding: Compression::Gzip,
                schema_version,
            },
        )
}

fn common() -> impl Strategy<Value = Common> {
    (
        prop::option::of(legal_text(12)),
        prop::option::of(legal_text(12)),
        prop::collection::vec((non_empty_text(8), legal_text(16)), 0..6),
    )
        .prop_map(|(trace_id, business_key, entries)| Common {
            trace_id,
            business_key,
            entries: entries
                .into_iter()
                .map(|(key, value)| Entry { key, value })
                .collect(),
        })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        legal_text(200).prop_map(Body::Text),
        xml_fragment().prop_map(Body::Xml),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (header(), common(), body()).prop_map(|(header, common, body)| Envelope {
        header,
        common,
        body,
    })
}

fn round_trip(env: &Envelope, compression: Compression) -> Envelope {
    let mut env = env.clone();
    env.header.content_encoding = compression;
    let packed = envelope::pack(&env).unwrap();
    assert_eq!(envelope::detect_compression(&packed).unwrap(), compression);
    let back = envelope::unpack(&packed, &Limits::default()).unwrap();
    assert_eq!(back, env);
    back
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trips_under_every_compression(env in envelope()) {
        for compression in Compression::ALL {
            round_trip(&env, compression);
        }
    }

    #[test]
    fn json_round_trips(env in envelope()) {
        let json = serde_json::to_string(&env).unwrap();
        let back: Envelope = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, env);
    }

    #[test]
    fn illegal_characters_are_refused_naming_the_field(
        env in envelope(),
        bad in prop::sample::select(vec!['\u{0}', '\u{1}', '\u{8}', '\u{B}', '\u{C}', '\u{1F}', '\u{FFFE}', '\u{FFFF}']),
        target in 0usize..5,
        prefix in legal_text(5),
    ) {
        let mut env = env;
        let value = format!("{prefix}{bad}");
        let expected_field = match target {
            0 => { env.header.event_type = value.clone(); "header/event_type".to_string() }
            1 => { env.header.publisher = value.clone(); "header/publisher".to_string() }
            2 => { env.common.business_key = Some(value.clone()); "common/business_key".to_string() }
            3 => { env.body = Body::Text(value.clone()); "body".to_string() }
            _ => { env.body = Body::Xml(escape_text(&value)); "body".to_string() }
        };
        for compression in Compression::ALL {
            let err = Codec::default().pack_as(&env, compression).unwrap_err();
            match &err {
                EnvelopeError::IllegalCharacter { field, code, .. } => {
                    prop_assert_eq!(field, &expected_field);
                    prop_assert_eq!(*code, u32::from(bad));
                }
                other => prop_assert!(false, "expected IllegalCharacter, got {other:?}"),
            }
            prop_assert!(err.to_string().contains(&expected_field));
            prop_assert!(err.to_string().contains("XML 1.0 cannot carry"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn large_bodies_round_trip(
        header in header(),
        chunk in non_empty_text(64),
        size in 100_000usize..600_000,
        xml in any::<bool>(),
    ) {
        let mut text = String::with_capacity(size + chunk.len());
        while text.len() < size {
            text.push_str(&chunk);
        }
        let body = if xml {
            Body::Xml(format!("<big>{}</big>", escape_text(&text)))
        } else {
            Body::Text(text)
        };
        let env = Envelope { header, common: Common::default(), body };
        for compression in Compression::ALL {
            round_trip(&env, compression);
        }
    }
}

// ---------------------------------------------------------------- examples

fn sample() -> Envelope {
    Envelope::builder("ACCT.OPENED", "CORE")
        .event_id(Uuid::parse_str("0190f0c6-5e2a-7c4d-9b1e-3f2a8d6c4b10").unwrap())
        .created_at(Utc.with_ymd_and_hms(2025, 1, 31, 9, 15, 2).unwrap())
        .producer_id("branch-042")
        .sequence("accounts", 3, 1187)
        .trace_id("4bf92f3577b34da6a3ce929d0e0e4736")
        .business_key("ACC-1001")
        .entry("channel", "mobile")
        .entry("channel", "second value, same key")
        .build(Body::Xml(
            r#"<account id="1001"><holder>Zoë &amp; Li</holder></account>"#.into(),
        ))
}

#[test]
fn builder_fills_id_time_and_defaults() {
    let before = Utc::now();
    let env = Envelope::builder("T", "P").build(Body::Text(String::new()));
    assert_eq!(env.header.event_id.get_version_num(), 7);
    assert!(env.header.created_at >= before && env.header.created_at <= Utc::now());
    assert_eq!(env.header.content_encoding, Compression::Gzip);
    assert_eq!(env.header.schema_version, 1);
    let other = Envelope::new("T", "P", Body::Text(String::new()));
    assert_ne!(env.header.event_id, other.header.event_id);
}

#[test]
fn uncompressed_wire_form_is_the_documented_one() {
    let env = sample();
    let xml =
        String::from_utf8(Codec::default().pack_as(&env, Compression::None).unwrap()).unwrap();
    assert_eq!(
        xml,
        concat!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
            "<envelope version=\"1\"><header>",
            "<event_id>0190f0c6-5e2a-7c4d-9b1e-3f2a8d6c4b10</event_id>",
            "<event_type>ACCT.OPENED</event_type><publisher>CORE</publisher>",
            "<producer_id>branch-042</producer_id><stream>accounts</stream>",
            "<epoch>3</epoch><seq>1187</seq>",
            "<created_at>2025-01-31T09:15:02Z</created_at>",
            "<content_encoding>none</content_encoding><schema_version>1</schema_version>",
            "</header><common><trace_id>4bf92f3577b34da6a3ce929d0e0e4736</trace_id>",
            "<business_key>ACC-1001</business_key>",
            "<entry key=\"channel\">mobile</entry>",
            "<entry key=\"channel\">second value, same key</entry></common>",
            "<body format=\"xml\"><account id=\"1001\"><holder>Zoë &amp; Li</holder></account></body>",
            "</envelope>\n"
        )
    );
}

#[test]
fn whitespace_cr_and_specials_survive() {
    let tricky = "  \r\n\tlead & trail <x> ]]> \"q\" 'a' \r ";
    let mut env = sample();
    env.header.event_type = tricky.into();
    env.common.entries = vec![Entry {
        key: " k\t\r\n\"".into(),
        value: tricky.into(),
    }];
    env.body = Body::Text(tricky.into());
    for compression in Compression::ALL {
        round_trip(&env, compression);
    }
    let xml = Codec::default().pack_as(&env, Compression::None).unwrap();
    let xml = String::from_utf8(xml).unwrap();
    assert!(!xml.contains('\r'), "CR must be written as &#13;");
    assert!(xml.contains("key=\" k&#9;&#13;&#10;&quot;\""));
    assert!(xml.contains("]]&gt;"));
}

#[test]
fn xml_body_comes_back_verbatim() {
    let fragment = "\n  <a x='1'  y=\"2\">t<![CDATA[<raw>]]><!-- c --><?pi x?><b/></a>\n  tail &amp; &#x263A; ";
    let env = Envelope::new("T", "P", Body::Xml(fragment.into()));
    for compression in Compression::ALL {
        let back = round_trip(&env, compression);
        assert_eq!(back.body.as_str(), fragment);
        assert_eq!(back.body.format(), "xml");
    }
    // A nested element named `body` is content, not the end of the body.
    let nested = "<body format=\"text\"><body/></body>";
    round_trip(
        &Envelope::new("T", "P", Body::Xml(nested.into())),
        Compression::None,
    );
    // Empty bodies of both kinds.
    round_trip(
        &Envelope::new("T", "P", Body::Xml(String::new())),
        Compression::Gzip,
    );
    round_trip(
        &Envelope::new("T", "P", Body::Text(String::new())),
        Compression::Gzip,
    );
}

#[test]
fn malformed_xml_bodies_are_refused_at_pack() {
    for bad in [
        "<a>",
        "</a>",
        "<a></b>",
        "a & b",
        "<a x=1/>",
        "x ]]> y",
        "<?xml version=\"1.0\"?><a/>",
        "<!DOCTYPE a><a/>",
        "<!-- a -- b -->",
        "&unknown;",
    ] {
        let env = Envelope::new("T", "P", Body::Xml(bad.into()));
        let err = envelope::pack(&env).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::MalformedBody { .. }),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains("XML body"), "{err}");
    }
}

#[test]
fn invalid_values_are_refused_at_pack() {
    let mut env = sample();
    env.header.event_type.clear();
    let err = envelope::pack(&env).unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::InvalidValue { field, .. } if field == "header/event_type"),
        "{err:?}"
    );

    let mut env = sample();
    env.header.sequence = Some(Sequence {
        stream: "s".into(),
        epoch: u64::MAX,
        seq: 1,
    });
    let err = envelope::pack(&env).unwrap_err();
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

    let mut env = sample();
    env.common.entries.push(Entry {
        key: String::new(),
        value: "v".into(),
    });
    let err = envelope::pack(&env).unwrap_err();
    assert!(err.to_string().contains("common/entry[2]/@key"), "{err}");
}

#[test]
fn pack_respects_limits() {
    let env = Envelope::new("T", "P", Body::Text("x".repeat(10_000)));
    let tight = Codec::new(Limits::default().max_decompressed_size(5_000));
    assert!(matches!(
        tight.pack(&env),
        Err(EnvelopeError::EnvelopeTooLarge { limit: 5_000, .. })
    ));
    let tight = Codec::new(Limits::default().max_packed_size(5_000));
    assert!(matches!(
        tight.pack_as(&env, Compression::None),
        Err(EnvelopeError::PackedTooLarge { limit: 5_000, .. })
    ));
    assert!(
        tight.pack_as(&env, Compression::Gzip).is_ok(),
        "10 000 x compress well"
    );

    let deep = format!("{}{}", "<a>".repeat(70), "</a>".repeat(70));
    let err = envelope::pack(&Envelope::new("T", "P", Body::Xml(deep))).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::TooDeep { limit: 64, .. }),
        "{err:?}"
    );

    let mut many = sample();
    many.common.entries = vec![
        Entry {
            key: "k".into(),
            value: "v".into()
        };
        3
    ];
    let err = Codec::new(Limits::default().max_entries(2))
        .pack(&many)
        .unwrap_err();
    assert!(
        matches!(err, EnvelopeError::TooManyEntries { limit: 2 }),
        "{err:?}"
    );
}

#[test]
fn pack_into_appends_and_restores_on_error() {
    let codec = Codec::default();
    let mut out = b"prefix".to_vec();
    codec
        .pack_into(&sample(), Compression::Deflate, &mut out)
        .unwrap();
    assert!(out.starts_with(b"prefix"));
    assert_eq!(
        codec.unpack(&out[6..]).unwrap().header.content_encoding,
        Compression::Deflate
    );
    let len = out.len();
    let bad = Envelope::new("", "P", Body::Text(String::new()));
    assert!(codec.pack_into(&bad, Compression::Gzip, &mut out).is_err());
    assert_eq!(out.len(), len);
}

/// What another language's XML library might write: pretty-printed, any
/// child order, a BOM, CDATA, literal CR LF, comments, unknown elements,
/// offsets in the timestamp, single quotes.
#[test]
fn reads_documents_written_by_other_tools() {
    let doc = "\u{FEFF}<?xml version='1.0' encoding='utf-8'?>\r\n\
        <!-- produced elsewhere -->\r\n\
        <envelope version='1' xmlns:x='urn:x'>\r\n\
          <common>\r\n\
            <entry key='multi&#10;line'>a\r\nb</entry>\r\n\
            <x:future>ignored <deep/></x:future>\r\n\
            <trace_id><![CDATA[t<1>]]></trace_id>\r\n\
          </common>\r\n\
          <header>\r\n\
            <schema_version> 7 </schema_version>\r\n\
            <content_encoding>none</content_encoding>\r\n\
            <created_at>2025-01-31T10:15:02.5+01:00</created_at>\r\n\
            <publisher>CORE</publisher>\r\n\
            <event_type>ACCT.OPENED</event_type>\r\n\
            <event_id>0190F0C6-5E2A-7C4D-9B1E-3F2A8D6C4B10</event_id>\r\n\
            <new_field_from_v1_1>x</new_field_from_v1_1>\r\n\
          </header>\r\n\
          <body format='text'>line 1&#13;\nline 2</body>\r\n\
        </envelope>\r\n";
    let env = envelope::unpack(doc.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(env.header.event_type, "ACCT.OPENED");
    assert_eq!(env.header.schema_version, 7);
    assert_eq!(
        env.header.created_at,
        Utc.with_ymd_and_hms(2025, 1, 31, 9, 15, 2).unwrap() + chrono::Duration::milliseconds(500)
    );
    assert_eq!(
        env.header.event_id,
        Uuid::parse_str("0190f0c6-5e2a-7c4d-9b1e-3f2a8d6c4b10").unwrap()
    );
    assert_eq!(env.common.trace_id.as_deref(), Some("t<1>"));
    assert_eq!(
        env.common.entries,
        vec![Entry {
            key: "multi\nline".into(),
            value: "a\nb".into()
        }]
    );
    assert_eq!(env.body, Body::Text("line 1\r\nline 2".into()));
}

/// The full example in docs/envelope.md is a valid envelope.
#[test]
fn the_documented_example_unpacks() {
    let doc = include_str!("../../../docs/envelope.md");
    let start = doc.find("```xml\n<?xml").unwrap() + "```xml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let env = envelope::unpack(&doc.as_bytes()[start..end], &Limits::default()).unwrap();
    assert_eq!(env.header.sequence.as_ref().unwrap().seq, 1187);
    assert_eq!(env.common.entries[1].value, "two\r\nlines & a <tag>");
    assert_eq!(
        env.body.as_str(),
        "<account id=\"1001\"><holder>Zoë &amp; Li</holder><opened>2025-01-31</opened></account>"
    );
    let sizes: Vec<usize> = [Compression::None, Compression::Gzip]
        .iter()
        .map(|c| Codec::default().pack_as(&env, *c).unwrap().len())
        .collect();
    println!("example packed sizes none/gzip: {sizes:?}");
}

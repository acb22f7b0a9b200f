use serde_json::json;

use crate::support::{json, text};

const CHARS: &str = r#"fields = [
    { name = "id",     offset = 0, length = 4 },
    { name = "name",   offset = 4, length = 6 },
    { name = "amount", offset = 10, length = 6, align = "right", pad = "0" },
]"#;

#[test]
fn char_offsets_with_trimming_by_alignment() {
    let f = text("fixed_width", CHARS, "0001Alice 000120").unwrap();
    assert_eq!(
        json(&f),
        json!({"id": "0001", "name": "Alice", "amount": "120"})
    );
}

#[test]
fn char_offsets_count_characters_not_bytes() {
    // 张三 is 2 characters (6 UTF-8 bytes, 4 GBK bytes).
    let f = text("fixed_width", CHARS, "0002张三    000099").unwrap();
    assert_eq!(
        json(&f),
        json!({"id": "0002", "name": "张三", "amount": "99"})
    );
}

#[test]
fn offsets_default_to_the_end_of_the_previous_field() {
    let rules = r#"fields = [
        { name = "a", length = 2 },
        { name = "b", length = 3 },
        { name = "c", offset = 7, length = 1 },
    ]"#;
    let f = text("fixed_width", rules, "ab中文字..Z").unwrap();
    assert_eq!(json(&f), json!({"a": "ab", "b": "中文字", "c": "Z"}));
}

#[test]
fn trim_options() {
    let rules = r#"trim = "both"
fields = [{ name = "a", length = 6 }, { name = "b", length = 4, trim = "none" }]"#;
    let f = text("fixed_width", rules, "  x   y   ").unwrap();
    assert_eq!(json(&f), json!({"a": "x", "b": "y   "}));
}

#[test]
fn empty_field_is_empty_string() {
    let f = text("fixed_width", CHARS, "0003      000000").unwrap();
    assert_eq!(f.get_str("name"), Some(""));
    assert_eq!(f.get_str("amount"), Some(""));
}

#[test]
fn short_record_is_an_error_naming_field_and_positions() {
    let err = text("fixed_width", CHARS, "0001Alice 0001").unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `fixed_width`: record 1 is 14 chars long, but field `amount` needs chars 10..16"
    );
}

#[test]
fn short_records_allow_takes_what_is_there() {
    let rules = format!("short_records = \"allow\"\n{CHARS}");
    let f = text("fixed_width", &rules, "0001Al").unwrap();
    assert_eq!(json(&f), json!({"id": "0001", "name": "Al", "amount": ""}));
}

#[test]
fn longer_record_is_fine() {
    let f = text("fixed_width", CHARS, "0001Alice 000120 trailing junk").unwrap();
    assert_eq!(f.get_str("amount"), Some("120"));
}

const GBK: &str = r#"unit = "byte"
encoding = "GBK"
fields = [
    { name = "account", offset = 0,  length = 8 },
    { name = "name",    offset = 8,  length = 10 },
    { name = "city",    offset = 18, length = 6 },
]"#;

#[test]
fn gbk_byte_offsets() {
    // 张三 = 4 GBK bytes, padded with 6 spaces to 10; 北京 = 4 bytes + 2 spaces.
    let f = text("fixed_width", GBK, "62220001张三      北京  ").unwrap();
    assert_eq!(
        json(&f),
        json!({"account": "62220001", "name": "张三", "city": "北京"})
    );
    // Three-character name: 6 bytes + 4 spaces.
    let f = text("fixed_width", GBK, "62220002欧阳锋    上海  ").unwrap();
    assert_eq!(f.get_str("name"), Some("欧阳锋"));
}

#[test]
fn gbk_encoding_labels_are_case_insensitive() {
    let rules = GBK.replace("GBK", "gb2312");
    let f = text("fixed_width", &rules, "62220001张三      北京  ").unwrap();
    assert_eq!(f.get_str("city"), Some("北京"));
}

#[test]
fn gbk_field_cutting_a_character_is_an_error() {
    // One space fewer after the account: 张 starts at byte 7 and spans 7..9,
    // so `account` (0..8) ends inside it.
    let err = text("fixed_width", GBK, "6222000张三       北京  ").unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `fixed_width`: record 1, field `account` (bytes 0..8) cuts through a multi-byte GBK character"
    );
}

#[test]
fn gbk_unrepresentable_character_is_an_error() {
    let err = text("fixed_width", GBK, "62220001🙂       北京  ").unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `fixed_width`: record 1, character 8 ('🙂') cannot be represented in GBK"
    );
}

#[test]
fn gbk_short_record_counts_bytes() {
    let err = text("fixed_width", GBK, "62220001张三").unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `fixed_width`: record 1 is 12 bytes long, but field `name` needs bytes 8..18"
    );
}

#[test]
fn byte_mode_defaults_to_utf8() {
    let rules = r#"unit = "byte"
fields = [{ name = "a", length = 3 }, { name = "b", length = 2 }]"#;
    // é is two UTF-8 bytes.
    let f = text("fixed_width", rules, "aébc").unwrap();
    assert_eq!(json(&f), json!({"a": "aé", "b": "bc"}));
}

#[test]
fn records_by_separator() {
    let rules = format!("record_separator = \"\\n\"\n{CHARS}");
    let body = "0001Alice 000120\n0002张三    000099\n";
    let f = text("fixed_width", &rules, body).unwrap();
    assert_eq!(
        json(&f),
        json!({"records": [
            {"id": "0001", "name": "Alice", "amount": "120"},
            {"id": "0002", "name": "张三", "amount": "99"},
        ]})
    );
    let err = text("fixed_width", &rules, "0001Alice 000120\n0002").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("converter `fixed_width`: record 2 is 4 chars long, but field `name`"),
        "{err}"
    );
}

#[test]
fn records_by_length_in_gbk_bytes() {
    let rules = format!("record_length = 24\nrecords = \"accounts\"\n{GBK}");
    let body = "62220001张三      北京  62220002欧阳锋    上海  ";
    let f = text("fixed_width", &rules, body).unwrap();
    assert_eq!(
        json(&f),
        json!({"accounts": [
            {"account": "62220001", "name": "张三", "city": "北京"},
            {"account": "62220002", "name": "欧阳锋", "city": "上海"},
        ]})
    );
    // A truncated last record names record 2.
    let err = text("fixed_width", &rules, "62220001张三      北京  62220002").unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `fixed_width`: record 2 is 8 bytes long, but field `name` needs bytes 8..18"
    );
}

#[test]
fn text_format_is_required() {
    let err = eventyard_converter::Registry::with_builtins()
        .receive_for("fixed_width", Some(CHARS))
        .unwrap()
        .convert(eventyard_converter::BodyFormat::Xml, "<a/>")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `fixed_width` expects a text body, got an XML body"
    );
}

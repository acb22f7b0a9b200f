use serde_json::json;

use crate::support::{json, text};

const ABC: &str = r#"fields = ["a", "b", "c"]"#;

#[test]
fn splits_named_fields_in_order() {
    let f = text("delimited", ABC, "1|two|3").unwrap();
    assert_eq!(f.names().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(
        serde_json::to_string(&f).unwrap(),
        r#"{"a":"1","b":"two","c":"3"}"#
    );
}

#[test]
fn custom_delimiter_and_multichar() {
    let rules = r#"delimiter = "~|~"
fields = ["a", "b"]"#;
    assert_eq!(
        json(&text("delimited", rules, "x~|~y").unwrap()),
        json!({"a": "x", "b": "y"})
    );
}

#[test]
fn empty_fields_are_empty_strings() {
    let f = text("delimited", ABC, "||").unwrap();
    assert_eq!(json(&f), json!({"a": "", "b": "", "c": ""}));
    let f = text("delimited", ABC, "1||3").unwrap();
    assert_eq!(f.get_str("b"), Some(""));
}

#[test]
fn one_final_newline_is_not_data() {
    let f = text("delimited", ABC, "1|2|3\n").unwrap();
    assert_eq!(f.get_str("c"), Some("3"));
    let f = text("delimited", ABC, "1|2|3\r\n").unwrap();
    assert_eq!(f.get_str("c"), Some("3"));
}

#[test]
fn trailing_delimiter_is_an_extra_field_unless_declared() {
    let err = text("delimited", ABC, "1|2|3|").unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `delimited`: record 1 has 4 fields, expected 3"
    );
    let rules = format!("{ABC}\ntrailing_delimiter = true");
    let f = text("delimited", &rules, "1|2|3|").unwrap();
    assert_eq!(f.get_str("c"), Some("3"));
    // Optional: a record without it is fine too.
    let f = text("delimited", &rules, "1|2|3").unwrap();
    assert_eq!(f.get_str("c"), Some("3"));
}

#[test]
fn short_record_is_an_error_by_default() {
    let err = text("delimited", ABC, "1|2").unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `delimited`: record 1 has 2 fields, expected 3"
    );
}

#[test]
fn short_records_allow_fills_empty() {
    let rules = format!("{ABC}\nshort_records = \"allow\"");
    let f = text("delimited", &rules, "1").unwrap();
    assert_eq!(json(&f), json!({"a": "1", "b": "", "c": ""}));
}

#[test]
fn extra_fields_ignore() {
    let rules = format!("{ABC}\nextra_fields = \"ignore\"");
    let f = text("delimited", &rules, "1|2|3|4|5").unwrap();
    assert_eq!(json(&f), json!({"a": "1", "b": "2", "c": "3"}));
}

#[test]
fn skip_columns_with_underscore() {
    let rules = r#"fields = ["a", "_", "c", "_"]"#;
    let f = text("delimited", rules, "1|2|3|4").unwrap();
    assert_eq!(json(&f), json!({"a": "1", "c": "3"}));
}

#[test]
fn trim() {
    let rules = format!("{ABC}\ntrim = \"both\"");
    let f = text("delimited", &rules, " 1 |\t2| 3").unwrap();
    assert_eq!(json(&f), json!({"a": "1", "b": "2", "c": "3"}));
    let f = text("delimited", ABC, " 1 |2|3").unwrap();
    assert_eq!(f.get_str("a"), Some(" 1 "));
}

#[test]
fn multi_byte_characters() {
    let f = text("delimited", ABC, "张三|¥100|🙂").unwrap();
    assert_eq!(json(&f), json!({"a": "张三", "b": "¥100", "c": "🙂"}));
}

const MULTI: &str = r#"kind = "multi_delimited"
record_delimiter = "@@"
delimiter = "|"
fields = ["a", "b", "c"]"#;

#[test]
fn multi_level_records() {
    let f = text("multi_delimited", MULTI, "a|b|c@@d|e|f").unwrap();
    assert_eq!(
        json(&f),
        json!({"records": [{"a": "a", "b": "b", "c": "c"}, {"a": "d", "b": "e", "c": "f"}]})
    );
    let records: Vec<_> = f.records("records").collect();
    assert_eq!(records[1].get_str("b"), Some("e"));
}

#[test]
fn multi_level_defaults_and_records_name() {
    let rules = r#"records = "lines"
fields = ["x", "y"]"#;
    let f = text("multi_delimited", rules, "1|2@@3|4").unwrap();
    assert_eq!(
        json(&f),
        json!({"lines": [{"x": "1", "y": "2"}, {"x": "3", "y": "4"}]})
    );
}

#[test]
fn multi_level_trailing_record_delimiter_and_empty_body() {
    let f = text("multi_delimited", MULTI, "a|b|c@@").unwrap();
    assert_eq!(f.records("records").count(), 1);
    let f = text("multi_delimited", MULTI, "").unwrap();
    assert_eq!(json(&f), json!({"records": []}));
    let rules = format!("{MULTI}\nskip_empty_records = false\nshort_records = \"allow\"");
    let f = text("multi_delimited", &rules, "a|b|c@@").unwrap();
    assert_eq!(f.records("records").count(), 2);
}

#[test]
fn multi_level_differing_field_counts_name_the_record() {
    let err = text("multi_delimited", MULTI, "a|b|c@@d|e@@g|h|i").unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `multi_delimited`: record 2 has 2 fields, expected 3"
    );
    let err = text("multi_delimited", MULTI, "a|b|c@@d|e|f|x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `multi_delimited`: record 2 has 4 fields, expected 3"
    );
    let rules = format!("{MULTI}\nshort_records = \"allow\"\nextra_fields = \"ignore\"");
    let f = text("multi_delimited", &rules, "a|b|c@@d@@e|f|g|h").unwrap();
    assert_eq!(
        json(&f),
        json!({"records": [
            {"a": "a", "b": "b", "c": "c"},
            {"a": "d", "b": "", "c": ""},
            {"a": "e", "b": "f", "c": "g"},
        ]})
    );
}

#[test]
fn newline_separated_records() {
    let rules = r#"record_delimiter = "\n"
fields = ["a", "b"]"#;
    let f = text("multi_delimited", rules, "1|2\n3|4\n").unwrap();
    assert_eq!(f.records("records").count(), 2);
}

use serde_json::json;

use crate::support::{json, xml};

const ORDER: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<order id="A-17" xmlns:x="urn:x">
  <!-- comment -->
  <customer id="C9" tier="gold"><name>张三 &amp; Co</name></customer>
  <lines>
    <line qty="2"><sku>SKU-1</sku><note/></line>
    <line qty="1"><sku>SKU-2</sku><note><![CDATA[<fragile>]]></note></line>
  </lines>
  <x:total currency="CNY">12.50</x:total>
</order>"#;

#[test]
fn no_rules_maps_every_leaf_and_attribute() {
    let f = xml(None, ORDER).unwrap();
    assert_eq!(
        json(&f),
        json!({
            "order/@id": "A-17",
            "order/customer/@id": "C9",
            "order/customer/@tier": "gold",
            "order/customer/name": "张三 & Co",
            "order/lines/line/@qty": ["2", "1"],
            "order/lines/line/sku": ["SKU-1", "SKU-2"],
            "order/lines/line/note": ["", "<fragile>"],
            "order/x:total/@currency": "CNY",
            "order/x:total": "12.50",
        })
    );
    // Keys keep document order.
    let names: Vec<_> = f.names().collect();
    assert_eq!(names[0], "order/@id");
    assert_eq!(names[3], "order/customer/name");
}

const RULES: &str = r#"
[[fields]]
name = "order_id"
path = "order/@id"

[[fields]]
name = "customer"
path = "order/customer/@id"

[[fields]]
name = "customer_name"
path = "/order/customer/name"

[[fields]]
name = "skus"
path = "order/lines/line/sku"
repeated = true

[[fields]]
name = "total"
path = "order/total"

[[fields]]
name = "lines"
path = "order/lines/line"
repeated = true
fields = [
    { name = "sku", path = "sku" },
    { name = "qty", path = "@qty" },
    { name = "note", path = "note", optional = true },
]
"#;

#[test]
fn paths_attributes_repeated_and_groups() {
    let f = xml(Some(RULES), ORDER).unwrap();
    assert_eq!(
        json(&f),
        json!({
            "order_id": "A-17",
            "customer": "C9",
            "customer_name": "张三 & Co",
            "skus": ["SKU-1", "SKU-2"],
            "total": "12.50",
            "lines": [
                {"sku": "SKU-1", "qty": "2", "note": ""},
                {"sku": "SKU-2", "qty": "1", "note": "<fragile>"},
            ],
        })
    );
}

#[test]
fn unprefixed_steps_match_local_names_prefixed_steps_match_exactly() {
    let rules = r#"fields = [
        { name = "a", path = "order/x:total" },
        { name = "b", path = "order/y:total", optional = true },
        { name = "c", path = "order/*/name" },
    ]"#;
    let f = xml(Some(rules), ORDER).unwrap();
    assert_eq!(json(&f), json!({"a": "12.50", "c": "张三 & Co"}));
}

#[test]
fn missing_required_field_is_an_error() {
    let rules = r#"fields = [{ name = "phone", path = "order/customer/phone" }]"#;
    let err = xml(Some(rules), ORDER).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `xml`: field `phone` (path `order/customer/phone`): nothing in the body matches \
         (set `optional = true` or a `default` if it may be absent)"
    );
}

#[test]
fn default_and_optional() {
    let rules = r#"fields = [
        { name = "phone", path = "order/customer/phone", default = "n/a" },
        { name = "fax", path = "order/customer/@fax", optional = true },
    ]"#;
    let f = xml(Some(rules), ORDER).unwrap();
    assert_eq!(json(&f), json!({"phone": "n/a"}));
}

#[test]
fn several_matches_for_a_single_field_is_an_error() {
    let rules = r#"fields = [{ name = "sku", path = "order/lines/line/sku" }]"#;
    let err = xml(Some(rules), ORDER).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `xml`: field `sku` (path `order/lines/line/sku`): 2 matches, but the field is not repeated \
         (set `repeated = true` to get a list)"
    );
}

#[test]
fn nested_errors_name_the_record() {
    let rules = r#"fields = [{ name = "lines", path = "order/lines/line", repeated = true, fields = [
        { name = "colour", path = "@colour" },
    ] }]"#;
    let err = xml(Some(rules), ORDER).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `xml`: field `lines[1].colour` (path `@colour`): nothing in the body matches \
         (set `optional = true` or a `default` if it may be absent)"
    );
}

#[test]
fn wrong_root_matches_nothing() {
    let rules = r#"fields = [{ name = "id", path = "invoice/@id", optional = true }]"#;
    assert!(xml(Some(rules), ORDER).unwrap().is_empty());
}

#[test]
fn repeated_with_no_match_is_an_empty_list() {
    let rules = r#"fields = [{ name = "tags", path = "order/tag", repeated = true }]"#;
    assert_eq!(json(&xml(Some(rules), ORDER).unwrap()), json!({"tags": []}));
}

#[test]
fn trim_on_pretty_printed_text() {
    let body = "<a>\n  <b>\n    text\n  </b>\n</a>";
    let rules = r#"fields = [
        { name = "raw", path = "a/b" },
        { name = "trimmed", path = "a/b", trim = "both" },
    ]"#;
    let f = xml(Some(rules), body).unwrap();
    assert_eq!(f.get_str("raw"), Some("\n    text\n  "));
    assert_eq!(f.get_str("trimmed"), Some("text"));
}

#[test]
fn invalid_xml_is_an_error_with_position() {
    for (body, needle) in [
        ("<a><b></a>", "invalid XML at byte"),
        ("<a>", "the body ends inside `<a>`"),
        ("<a/><b/>", "more than one root element"),
        ("", "no root element"),
        ("hello", "text outside the root element"),
        ("<a>&bogus;</a>", "invalid XML"),
        ("<a x=1/>", "invalid XML"),
    ] {
        let err = xml(None, body).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("converter `xml`: invalid XML at byte "),
            "{body}: {msg}"
        );
        assert!(msg.contains(needle), "{body}: {msg}");
    }
}

#[test]
fn deep_nesting_is_refused_without_stack_overflow() {
    let body = "<a>".repeat(100_000);
    let err = xml(None, &body).unwrap_err();
    assert!(err.to_string().contains("nest deeper than 256"), "{err}");
}

#[test]
fn xml_format_is_required() {
    let err = eventyard_converter::Registry::with_builtins()
        .receive_for("xml", None)
        .unwrap()
        .convert(eventyard_converter::BodyFormat::Text, "<a/>")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `xml` expects an XML body, got a text body"
    );
}

//! Send side, and value → body → fields round trips.

use eventyard_converter::{BodyFormat, ConvertError, Registry, SendContext};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use crate::support::json;

fn render(id: &str, rules: Option<&str>, value: &Value) -> Result<String, ConvertError> {
    Registry::with_builtins()
        .send_for(id, rules)?
        .to_body(&SendContext::new("ACCT.OPENED", id), value)
        .map(|b| b.content)
}

fn back(id: &str, rules: Option<&str>, body: &str) -> Value {
    let format = if id == "xml" {
        BodyFormat::Xml
    } else {
        BodyFormat::Text
    };
    json(
        &Registry::with_builtins()
            .receive_for(id, rules)
            .unwrap()
            .convert(format, body)
            .unwrap(),
    )
}

#[test]
fn xml_send_shapes_and_escaping() {
    let value = json!({
        "id": 7,
        "ok": true,
        "none": null,
        "text": "a<b & c>\"d'\r\n",
        "tags": ["x", "y"],
        "nested": {"deep": {"v": "张三"}},
        "matrix": [[1, 2], [3]],
    });
    let body = render("xml", None, &value).unwrap();
    assert_eq!(
        body,
        "<ACCT.OPENED><id>7</id><matrix><item>1</item><item>2</item></matrix><matrix><item>3</item></matrix>\
         <nested><deep><v>张三</v></deep></nested><none/><ok>true</ok><tags>x</tags><tags>y</tags>\
         <text>a&lt;b &amp; c&gt;\"d'&#13;\n</text></ACCT.OPENED>"
    );
    assert_eq!(
        back("xml", None, &body),
        json!({
            "ACCT.OPENED/id": "7",
            "ACCT.OPENED/matrix/item": ["1", "2", "3"],
            "ACCT.OPENED/nested/deep/v": "张三",
            "ACCT.OPENED/none": "",
            "ACCT.OPENED/ok": "true",
            "ACCT.OPENED/tags": ["x", "y"],
            "ACCT.OPENED/text": "a<b & c>\"d'\r\n",
        })
    );
}

#[test]
fn xml_send_root_rules() {
    assert_eq!(
        render(
            "xml",
            Some("root = \"list\"\nitem = \"row\""),
            &json!([1, {"a": 2}])
        )
        .unwrap(),
        "<list><row>1</row><row><a>2</a></row></list>"
    );
    // An event type that is no XML name falls back to `body`.
    let body = Registry::with_builtins()
        .send_for("xml", None)
        .unwrap()
        .to_body(&SendContext::new("1 bad", "xml"), &json!("v"))
        .unwrap();
    assert_eq!(body.content, "<body>v</body>");
}

#[test]
fn xml_send_errors() {
    let err = render("xml", None, &json!({"a": {"first name": 1}})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `xml`: element `ACCT.OPENED/a/first name`: \"first name\" is not a valid XML element name"
    );
    let err = render("xml", None, &json!({"a": "bell\u{7}"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `xml`: element `ACCT.OPENED/a`: the text contains U+0007, which XML 1.0 cannot carry"
    );
    let mut deep = json!("x");
    for _ in 0..200 {
        deep = json!({ "d": deep });
    }
    let err = render("xml", None, &deep).unwrap_err();
    assert!(
        err.to_string().contains("nests deeper than 128 levels"),
        "{err}"
    );
}

#[test]
fn delimited_send_errors() {
    let rules = Some("fields = [\"a\", \"b\"]");
    let err = render("delimited", rules, &json!({"a": "x|y"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `delimited`: field `a`: the value contains the separator `|`, which this format cannot escape"
    );
    let err = render("delimited", rules, &json!({"a": [1]})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `delimited`: field `a`: expected a string, number, boolean or null, found an array or object"
    );
    let err = render("delimited", rules, &json!([1])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `delimited`: value: expected an object of fields"
    );
    // Missing and null are empty.
    assert_eq!(
        render("delimited", rules, &json!({"b": null})).unwrap(),
        "|"
    );
}

#[test]
fn multi_delimited_send() {
    let rules = Some("fields = [\"a\", \"b\"]\ntrailing_delimiter = true");
    let value = json!({"records": [{"a": 1, "b": 2}, {"a": "x", "b": ""}]});
    let body = render("multi_delimited", rules, &value).unwrap();
    assert_eq!(body, "1|2|@@x||");
    assert_eq!(
        back("multi_delimited", rules, &body),
        json!({"records": [{"a": "1", "b": "2"}, {"a": "x", "b": ""}]})
    );
    // A bare array works too.
    assert_eq!(
        render("multi_delimited", rules, &json!([{"a": 1}])).unwrap(),
        "1||"
    );
    let err = render("multi_delimited", rules, &json!([{"a": "p@@q"}])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `multi_delimited`: record 1, field `a`: the value contains the separator `@@`, which this format cannot escape"
    );
    let err = render("multi_delimited", rules, &json!({"rows": []})).unwrap_err();
    assert!(err.to_string().contains("has no key `records`"), "{err}");
}

const GBK: &str = r#"unit = "byte"
encoding = "GBK"
fields = [
    { name = "account", offset = 0,  length = 8 },
    { name = "name",    offset = 8,  length = 10 },
    { name = "amount",  offset = 20, length = 6, align = "right", pad = "0" },
]"#;

#[test]
fn fixed_width_send_pads_and_fills_gaps() {
    let body = render(
        "fixed_width",
        Some(GBK),
        &json!({"account": "62220001", "name": "张三", "amount": 125}),
    )
    .unwrap();
    // 张三 is 4 GBK bytes: 6 spaces of padding, then the 2-byte gap.
    assert_eq!(body, "62220001张三        000125");
    assert_eq!(
        back("fixed_width", Some(GBK), &body),
        json!({"account": "62220001", "name": "张三", "amount": "125"})
    );
}

#[test]
fn fixed_width_send_errors() {
    let err = render("fixed_width", Some(GBK), &json!({"name": "欧阳锋欧阳锋"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `fixed_width`: field `name`: the value is 12 bytes long, longer than the field's length 10"
    );
    let err = render("fixed_width", Some(GBK), &json!({"name": "🙂"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `fixed_width`: field `name`: character '🙂' cannot be represented in GBK"
    );
    let rules = format!("record_separator = \"\\n\"\n{GBK}");
    let err = render("fixed_width", Some(&rules), &json!([{"name": "a\nb"}])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `fixed_width`: record 1, field `name`: the value contains the record separator \"\\n\""
    );
}

#[test]
fn fixed_width_send_records_by_length() {
    let rules = "record_length = 6\nfields = [{ name = \"a\", length = 2 }, { name = \"b\", offset = 3, length = 2 }]";
    let body = render(
        "fixed_width",
        Some(rules),
        &json!([{"a": "x", "b": "y"}, {"a": "中", "b": 1}]),
    )
    .unwrap();
    assert_eq!(body, "x  y  中  1  ");
    assert_eq!(
        back("fixed_width", Some(rules), &body),
        json!({"records": [{"a": "x", "b": "y"}, {"a": "中", "b": "1"}]})
    );
}

/// Field text the delimited format can carry: no separators, no line ending at the end.
fn field_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 张三李四¥€ñ_.,;:'\"<>&-]{0,12}"
}

/// Text for fixed-width fields: no padding at its ends (it would be trimmed).
fn fixed_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(vec!['a', 'Z', '9', '张', '三', '北', '京', '-', '.', '中']),
        0..=max,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn delimited_round_trip(values in proptest::collection::vec(field_text(), 4)) {
        let rules = Some("fields = [\"a\", \"b\", \"c\", \"d\"]");
        let value: Map<String, Value> = ["a", "b", "c", "d"]
            .iter()
            .zip(&values)
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let body = render("delimited", rules, &Value::Object(value.clone())).unwrap();
        prop_assert_eq!(back("delimited", rules, &body), Value::Object(value));
    }

    #[test]
    fn multi_delimited_round_trip(records in proptest::collection::vec(proptest::collection::vec(field_text(), 3), 1..6)) {
        let rules = Some("fields = [\"a\", \"b\", \"c\"]\nskip_empty_records = false");
        let records: Vec<Value> = records
            .iter()
            .map(|r| json!({"a": r[0], "b": r[1], "c": r[2]}))
            .collect();
        let value = json!({ "records": records });
        let body = render("multi_delimited", rules, &value).unwrap();
        prop_assert_eq!(back("multi_delimited", rules, &body), value);
    }

    #[test]
    fn fixed_width_round_trip_chars_and_gbk(
        records in proptest::collection::vec((fixed_text(8), fixed_text(3), 0u32..1_000_000), 1..5),
        byte_mode in any::<bool>(),
    ) {
        let unit = if byte_mode { "unit = \"byte\"\nencoding = \"GBK\"\n" } else { "" };
        let rules = format!(
            "{unit}record_separator = \"\\n\"\nfields = [
                {{ name = \"name\", length = 16 }},
                {{ name = \"city\", offset = 18, length = 6, align = \"right\" }},
                {{ name = \"n\", length = 6, align = \"right\", pad = \"0\" }},
            ]"
        );
        let value = json!({"records": records
            .iter()
            .map(|(name, city, n)| json!({"name": name, "city": city, "n": n.to_string()}))
            .collect::<Vec<_>>()});
        let body = render("fixed_width", Some(&rules), &value).unwrap();
        let mut expected = value.clone();
        // A number padded with zeros reads back without them; 0 reads back empty.
        for r in expected["records"].as_array_mut().unwrap() {
            let n = r["n"].as_str().unwrap().trim_start_matches('0').to_owned();
            r["n"] = json!(n);
        }
        prop_assert_eq!(back("fixed_width", Some(&rules), &body), expected);
    }

    #[test]
    fn xml_round_trip(values in proptest::collection::btree_map("[a-z][a-z0-9_]{0,6}", "[^\u{0}-\u{8}\u{B}\u{C}\u{E}-\u{1F}\u{FFFE}\u{FFFF}]{0,20}", 1..8)) {
        let value: Map<String, Value> = values.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let body = render("xml", Some("root = \"r\""), &Value::Object(value)).unwrap();
        let expected: Map<String, Value> = values.iter().map(|(k, v)| (format!("r/{k}"), json!(v))).collect();
        prop_assert_eq!(back("xml", None, &body), Value::Object(expected));
    }
}

use std::sync::Arc;

use eventyard_converter::{
    Body, BodyFormat, CompiledReceive, ConvertError, Fields, ReceiveConverter, Registry,
    SendContext, SendConverter,
};
use serde_json::{json, Value};

#[derive(Debug)]
struct Shout;

impl SendConverter for Shout {
    fn to_body(&self, _ctx: &SendContext<'_>, value: &Value) -> Result<Body, ConvertError> {
        Ok(Body::text(value.to_string().to_uppercase()))
    }
}

/// Rules are a list of required keys; `a=1;b=2` bodies.
#[derive(Debug)]
struct Pairs;

#[derive(Debug)]
struct CompiledPairs(String, Vec<String>);

impl ReceiveConverter for Pairs {
    fn compile(
        &self,
        id: &str,
        rules: Option<&str>,
    ) -> Result<Arc<dyn CompiledReceive>, ConvertError> {
        let keys: Vec<String> = rules
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if keys.iter().any(|k| k.contains('=')) {
            return Err(ConvertError::invalid_rules(id, "keys must not contain `=`"));
        }
        Ok(Arc::new(CompiledPairs(id.to_owned(), keys)))
    }
}

impl CompiledReceive for CompiledPairs {
    fn convert(&self, _format: BodyFormat, body: &str) -> Result<Fields, ConvertError> {
        let fields: Fields = body.split(';').filter_map(|p| p.split_once('=')).collect();
        match self.1.iter().find(|k| fields.get(k).is_none()) {
            Some(k) => Err(ConvertError::custom(&self.0, format!("missing key `{k}`"))),
            None => Ok(fields),
        }
    }
}

#[test]
fn builtin_ids() {
    let r = Registry::with_builtins();
    assert_eq!(r.send_ids().collect::<Vec<_>>(), ["xml"]);
    assert_eq!(
        r.receive_ids().collect::<Vec<_>>(),
        ["delimited", "fixed_width", "multi_delimited", "xml"]
    );
    assert!(Registry::new().receive_ids().next().is_none());
    assert!(format!("{r:?}").contains("fixed_width"));
}

#[test]
fn custom_converters_by_id() {
    let mut r = Registry::with_builtins();
    assert!(r.register_send("shout", Arc::new(Shout)).is_none());
    assert!(r.register_receive("pairs", Arc::new(Pairs)).is_none());
    assert!(r.send_ids().any(|id| id == "shout"));
    assert!(r.receive_ids().any(|id| id == "pairs"));

    let body = r
        .send_for("shout", None)
        .unwrap()
        .to_body(&SendContext::new("E", "shout"), &json!({"a": "b"}))
        .unwrap();
    assert_eq!(body, Body::text(r#"{"A":"B"}"#));

    r.validate("pairs", Some("a, b")).unwrap();
    let err = r.validate("pairs", Some("a=")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `pairs`: invalid rules: keys must not contain `=`"
    );
    let conv = r.receive_for("pairs", Some("a")).unwrap();
    let f = conv.convert(BodyFormat::Text, "a=1;b=2").unwrap();
    assert_eq!(f.get_str("b"), Some("2"));
    let err = conv.convert(BodyFormat::Text, "b=2").unwrap_err();
    assert_eq!(err.to_string(), "converter `pairs`: missing key `a`");
    assert!(!err.is_rules_error());
}

#[test]
fn registering_again_replaces() {
    let mut r = Registry::with_builtins();
    assert!(r.register_send("xml", Arc::new(Shout)).is_some());
    let body = r
        .send_for("xml", None)
        .unwrap()
        .to_body(&SendContext::new("E", "xml"), &json!("x"))
        .unwrap();
    assert_eq!(body.content, "\"X\"");
}

#[test]
fn send_for_with_rules() {
    let r = Registry::with_builtins();
    let conv = r
        .send_for("delimited", Some("fields = [\"a\", \"b\"]"))
        .unwrap();
    let body = conv
        .to_body(
            &SendContext::new("E", "delimited"),
            &json!({"a": 1, "b": true}),
        )
        .unwrap();
    assert_eq!(body, Body::text("1|true"));

    let xml = r.send_for("xml", Some("root = \"order\"")).unwrap();
    let body = xml
        .to_body(&SendContext::new("E", "xml"), &json!({"id": 7}))
        .unwrap();
    assert_eq!(body, Body::xml("<order><id>7</id></order>"));

    let err = r.send_for("csv", None).unwrap_err();
    assert_eq!(err.to_string(), "unknown send converter `csv` (known: xml)");

    let mut r = r;
    r.register_send("shout", Arc::new(Shout));
    let err = r.send_for("shout", Some("x = 1")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `shout`: invalid rules: this send converter is an application's own and takes no rules"
    );
}

#[test]
fn fields_round_trip_through_json() {
    let f = crate::support::text("multi_delimited", "fields = [\"a\", \"b\"]", "1|2@@3|4").unwrap();
    let text = serde_json::to_string(&f).unwrap();
    let back: Fields = serde_json::from_str(&text).unwrap();
    assert_eq!(back, f);
    assert_eq!(
        f.to_json(),
        json!({"records": [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]})
    );
    assert!(serde_json::from_str::<Fields>(r#"{"a": 1}"#).is_err());
}

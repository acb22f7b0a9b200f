//! The output of a receive converter: an ordered map of named fields.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One extracted value: text, a list (repeated XML elements), or a record
/// (one line of a multi-record body, one repeated XML group).
///
/// Serializes to JSON as a string, an array or an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    /// A single text value.
    Text(String),
    /// Repeated values, in body order.
    List(Vec<FieldValue>),
    /// A nested record of named fields.
    Record(Fields),
}

impl FieldValue {
    /// The text, if this is [`FieldValue::Text`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The items, if this is [`FieldValue::List`].
    pub fn as_list(&self) -> Option<&[FieldValue]> {
        match self {
            FieldValue::List(items) => Some(items),
            _ => None,
        }
    }

    /// The fields, if this is [`FieldValue::Record`].
    pub fn as_record(&self) -> Option<&Fields> {
        match self {
            FieldValue::Record(fields) => Some(fields),
            _ => None,
        }
    }

    /// This value as a `serde_json::Value`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            FieldValue::Text(s) => serde_json::Value::String(s.clone()),
            FieldValue::List(items) => {
                serde_json::Value::Array(items.iter().map(FieldValue::to_json).collect())
            }
            FieldValue::Record(fields) => fields.to_json(),
        }
    }
}

impl From<String> for FieldValue {
    fn from(s: String) -> Self {
        FieldValue::Text(s)
    }
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> Self {
        FieldValue::Text(s.to_owned())
    }
}

impl From<Fields> for FieldValue {
    fn from(fields: Fields) -> Self {
        FieldValue::Record(fields)
    }
}

impl From<Vec<FieldValue>> for FieldValue {
    fn from(items: Vec<FieldValue>) -> Self {
        FieldValue::List(items)
    }
}

/// An ordered map of field name → [`FieldValue`], in the order the rules
/// define them. Serializes to a JSON object with keys in that order.
///
/// ```
/// use eventyard_converter::{Fields, FieldValue};
///
/// let mut fields = Fields::new();
/// fields.insert("account", "6222001");
/// fields.insert("name", "张三");
/// assert_eq!(fields.get_str("name"), Some("张三"));
/// assert_eq!(
///     serde_json::to_string(&fields).unwrap(),
///     r#"{"account":"6222001","name":"张三"}"#
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    entries: Vec<(String, FieldValue)>,
}

impl Fields {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map with room for `n` fields.
    pub fn with_capacity(n: usize) -> Self {
        Fields {
            entries: Vec::with_capacity(n),
        }
    }

    /// Builds from entries whose names are known to be unique.
    pub(crate) fn from_unique(entries: Vec<(String, FieldValue)>) -> Self {
        Fields { entries }
    }

    /// Sets `name` to `value`, replacing (in place) and returning any previous value.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: impl Into<FieldValue>,
    ) -> Option<FieldValue> {
        let name = name.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some((_, old)) => Some(std::mem::replace(old, value)),
            None => {
                self.entries.push((name, value));
                None
            }
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&FieldValue> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Mutable access to the value of `name`.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut FieldValue> {
        self.entries
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The text of `name`, if it is a text field.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(FieldValue::as_str)
    }

    /// The records of `name`, if it is a list (e.g. the `records` of a
    /// multi-delimited body); non-record items are skipped.
    pub fn records(&self, name: &str) -> impl Iterator<Item = &Fields> {
        self.get(name)
            .and_then(FieldValue::as_list)
            .unwrap_or(&[])
            .iter()
            .filter_map(FieldValue::as_record)
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldValue)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// The field names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// These fields as a JSON object (keys in order only if serde_json keeps order;
    /// serialize the `Fields` itself to be sure of the order).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.entries
                .iter()
                .map(|(n, v)| (n.clone(), v.to_json()))
                .collect(),
        )
    }
}

impl IntoIterator for Fields {
    type Item = (String, FieldValue);
    type IntoIter = std::vec::IntoIter<(String, FieldValue)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<K: Into<String>, V: Into<FieldValue>> FromIterator<(K, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut fields = Fields::new();
        for (k, v) in iter {
            fields.insert(k, v);
        }
        fields
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, value) in &self.entries {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl Serialize for FieldValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldValue::Text(s) => serializer.serialize_str(s),
            FieldValue::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            FieldValue::Record(fields) => fields.serialize(serializer),
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = FieldValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an array or an object")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldValue, E> {
        Ok(FieldValue::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<FieldValue, E> {
        Ok(FieldValue::Text(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FieldValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(FieldValue::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldValue, A::Error> {
        FieldsVisitor.visit_map(map).map(FieldValue::Record)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some((name, value)) = map.next_entry::<String, FieldValue>()? {
            fields.insert(name, value);
        }
        Ok(fields)
    }
}

impl<'de> Deserialize<'de> for FieldValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

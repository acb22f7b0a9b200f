//! `xml` (receive): element and attribute paths, or every leaf by default.

use std::collections::HashMap;

use serde::Deserialize;

use super::{check_kind, check_names, parse_toml, Kind, Trim};
use crate::xml::dom::{self, local, Element};
use crate::xml::{is_xml_name, XmlSend};
use crate::{ConvertError, FieldValue, Fields};

/// `xml` rules as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct XmlToml {
    kind: Option<String>,
    root: Option<String>,
    item: Option<String>,
    fields: Option<Vec<FieldToml>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldToml {
    name: String,
    path: String,
    #[serde(default)]
    repeated: bool,
    #[serde(default)]
    optional: bool,
    default: Option<String>,
    trim: Option<Trim>,
    fields: Option<Vec<FieldToml>>,
}

/// One step of a path: an element or attribute name, or `*`.
#[derive(Debug, Clone)]
enum Step {
    Any,
    /// With a prefix (`ns:order`) it matches the qualified name; without, the local name.
    Name(String),
}

impl Step {
    fn matches(&self, name: &str) -> bool {
        match self {
            Step::Any => true,
            Step::Name(n) if n.contains(':') => n == name,
            Step::Name(n) => n == local(name),
        }
    }
}

#[derive(Debug, Clone)]
struct Path {
    text: String,
    elements: Vec<Step>,
    attribute: Option<Step>,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    path: Path,
    repeated: bool,
    optional: bool,
    default: Option<String>,
    trim: Trim,
    fields: Option<Vec<Field>>,
}

/// Compiled `xml` rules.
#[derive(Debug, Clone)]
pub(crate) struct XmlRules {
    pub(crate) converter: String,
    pub(crate) send: XmlSend,
    /// `None`: every leaf element and attribute becomes a field named by its path.
    fields: Option<Vec<Field>>,
}

fn step(converter: &str, what: &str, path: &str, seg: &str) -> Result<Step, ConvertError> {
    if seg == "*" {
        return Ok(Step::Any);
    }
    let valid = match seg.split_once(':') {
        Some((prefix, name)) => is_xml_name(prefix) && is_xml_name(name),
        None => is_xml_name(seg),
    };
    if valid {
        Ok(Step::Name(seg.to_owned()))
    } else {
        Err(ConvertError::invalid_rules(
            converter,
            format!("{what}: path `{path}`: `{seg}` is not a valid element or attribute name"),
        ))
    }
}

fn compile_path(
    converter: &str,
    what: &str,
    text: &str,
    nested: bool,
) -> Result<Path, ConvertError> {
    let invalid = |p: String| ConvertError::invalid_rules(converter, format!("{what}: {p}"));
    let t = text.trim();
    if t.is_empty() {
        return Err(invalid("path must not be empty".into()));
    }
    if nested && t == "." {
        return Ok(Path {
            text: t.to_owned(),
            elements: Vec::new(),
            attribute: None,
        });
    }
    let rest = match t.strip_prefix('/') {
        Some(_) if nested => {
            return Err(invalid(format!(
                "path `{t}` is inside `fields`, so it must be relative to the parent element (no leading `/`)"
            )))
        }
        Some(rest) => rest,
        None => t,
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let mut elements = Vec::with_capacity(segments.len());
    let mut attribute = None;
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() {
            return Err(invalid(format!("path `{t}` has an empty step")));
        }
        if *seg == "." || *seg == ".." {
            return Err(invalid(format!(
                "path `{t}`: steps `.` and `..` are not supported (a nested field may use `.` alone for its parent element)"
            )));
        }
        if let Some(name) = seg.strip_prefix('@') {
            if i + 1 != segments.len() {
                return Err(invalid(format!(
                    "path `{t}`: the attribute step `{seg}` must be the last step"
                )));
            }
            attribute = Some(step(converter, what, t, name)?);
        } else {
            elements.push(step(converter, what, t, seg)?);
        }
    }
    if !nested && elements.is_empty() {
        return Err(invalid(format!(
            "path `{t}` must start at the root element, e.g. `order/{t}`"
        )));
    }
    Ok(Path {
        text: t.to_owned(),
        elements,
        attribute,
    })
}

fn compile_fields(
    converter: &str,
    parent: Option<&str>,
    fields: Vec<FieldToml>,
) -> Result<Vec<Field>, ConvertError> {
    check_names(converter, fields.iter().map(|f| f.name.as_str()))?;
    let nested = parent.is_some();
    fields
        .into_iter()
        .map(|f| {
            let label = match parent {
                Some(p) => format!("{p}.{}", f.name),
                None => f.name.clone(),
            };
            let what = format!("field `{label}`");
            let invalid = |p: &str| ConvertError::invalid_rules(converter, format!("{what}: {p}"));
            if f.name == super::SKIP {
                return Err(invalid("`_` (skip) is for delimited and fixed-width columns; leave the field out instead"));
            }
            let path = compile_path(converter, &what, &f.path, nested)?;
            if f.repeated && (f.default.is_some() || f.optional) {
                return Err(invalid(
                    "`default` and `optional` do not apply to repeated fields (no match gives an empty list)",
                ));
            }
            let fields = match f.fields {
                Some(_) if path.attribute.is_some() => {
                    return Err(invalid(
                        "a field with `fields` must select elements, not an attribute",
                    ))
                }
                Some(_) if f.default.is_some() => {
                    return Err(invalid("`default` does not apply to a field with `fields`"))
                }
                Some(_) if f.trim.is_some() => {
                    return Err(invalid("`trim` does not apply to a field with `fields`"))
                }
                Some(sub) => Some(compile_fields(converter, Some(&label), sub)?),
                None => None,
            };
            Ok(Field {
                name: f.name,
                path,
                repeated: f.repeated,
                optional: f.optional,
                default: f.default,
                trim: f.trim.unwrap_or(Trim::None),
                fields,
            })
        })
        .collect()
}

impl XmlRules {
    /// No rules: every leaf becomes a field.
    pub(crate) fn leaves() -> Self {
        XmlRules {
            converter: Kind::Xml.id().to_owned(),
            send: XmlSend::new(),
            fields: None,
        }
    }

    pub(crate) fn parse(kind: Kind, converter: &str, text: &str) -> Result<Self, ConvertError> {
        let t: XmlToml = parse_toml(converter, text)?;
        check_kind(kind, converter, t.kind.as_deref())?;
        let mut send = XmlSend::new();
        if let Some(root) = t.root {
            send = send.root(root);
        }
        if let Some(item) = t.item {
            send = send.item(item);
        }
        send.check(converter)?;
        let fields = t
            .fields
            .map(|f| compile_fields(converter, None, f))
            .transpose()?;
        Ok(XmlRules {
            converter: converter.to_owned(),
            send,
            fields,
        })
    }

    pub(crate) fn convert(&self, body: &str) -> Result<Fields, ConvertError> {
        let root = dom::parse(&self.converter, body)?;
        match &self.fields {
            None => Ok(leaves(&root)),
            Some(fields) => self.extract(fields, &root, None),
        }
    }

    /// Extracts `fields` from the document (`parent` None, `at` the root) or
    /// relative to one matched element (`parent` names it for errors).
    fn extract(
        &self,
        fields: &[Field],
        at: &Element,
        parent: Option<&str>,
    ) -> Result<Fields, ConvertError> {
        let mut out = Fields::with_capacity(fields.len());
        for f in fields {
            let label = || match parent {
                Some(p) => format!("{p}.{}", f.name),
                None => f.name.clone(),
            };
            let elements = select(&f.path, at, parent.is_none());
            let mut values = Vec::with_capacity(elements.len());
            match &f.fields {
                Some(sub) => {
                    for (i, element) in elements.iter().enumerate() {
                        let name = format!("{}[{}]", label(), i + 1);
                        values.push(FieldValue::Record(self.extract(
                            sub,
                            element,
                            Some(&name),
                        )?));
                    }
                }
                None => {
                    for element in &elements {
                        let text = match &f.path.attribute {
                            Some(attr) => {
                                match element.attributes.iter().find(|(k, _)| attr.matches(k)) {
                                    Some((_, v)) => v.as_str(),
                                    None => continue,
                                }
                            }
                            None => element.text.as_str(),
                        };
                        values.push(FieldValue::Text(
                            f.trim.apply(text, char::is_whitespace).to_owned(),
                        ));
                    }
                }
            }
            if f.repeated {
                out.insert(f.name.as_str(), FieldValue::List(values));
                continue;
            }
            let problem = match values.len() {
                1 => {
                    if let Some(value) = values.pop() {
                        out.insert(f.name.as_str(), value);
                    }
                    continue;
                }
                0 => match &f.default {
                    Some(default) => {
                        out.insert(f.name.as_str(), default.as_str());
                        continue;
                    }
                    None if f.optional => continue,
                    None => "nothing in the body matches (set `optional = true` or a `default` if it may be absent)".to_owned(),
                },
                n => format!("{n} matches, but the field is not repeated (set `repeated = true` to get a list)"),
            };
            return Err(ConvertError::Path {
                converter: self.converter.clone(),
                field: label(),
                path: f.path.text.clone(),
                problem,
            });
        }
        Ok(out)
    }
}

/// The elements `path` selects: from the root when `absolute` (the first step
/// must match the root itself), else from `at`'s children.
fn select<'d>(path: &Path, at: &'d Element, absolute: bool) -> Vec<&'d Element> {
    let mut steps = path.elements.iter();
    let mut current: Vec<&Element> = vec![at];
    if absolute {
        match steps.next() {
            Some(first) if first.matches(&at.name) => {}
            _ => return Vec::new(),
        }
    }
    for step in steps {
        current = current
            .iter()
            .flat_map(|e| e.children.iter().filter(|c| step.matches(&c.name)))
            .collect();
        if current.is_empty() {
            break;
        }
    }
    current
}

/// Default mapping: each leaf element's path → its text, each attribute's
/// `path/@name` → its value; a path seen more than once becomes a list.
fn leaves(root: &Element) -> Fields {
    struct Builder {
        entries: Vec<(String, FieldValue)>,
        index: HashMap<String, usize>,
    }
    impl Builder {
        fn add(&mut self, key: String, value: &str) {
            let value = FieldValue::Text(value.to_owned());
            match self.index.get(&key) {
                Some(&i) => match &mut self.entries[i].1 {
                    FieldValue::List(items) => items.push(value),
                    other => {
                        let first = std::mem::replace(other, FieldValue::List(Vec::new()));
                        *other = FieldValue::List(vec![first, value]);
                    }
                },
                None => {
                    self.index.insert(key.clone(), self.entries.len());
                    self.entries.push((key, value));
                }
            }
        }
    }
    fn walk(e: &Element, path: &mut String, b: &mut Builder) {
        let len = path.len();
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(&e.name);
        for (k, v) in &e.attributes {
            if k == "xmlns" || k.starts_with("xmlns:") {
                continue;
            }
            b.add(format!("{path}/@{k}"), v);
        }
        if e.children.is_empty() {
            b.add(path.clone(), &e.text);
        } else {
            for c in &e.children {
                walk(c, path, b);
            }
        }
        path.truncate(len);
    }
    let mut b = Builder {
        entries: Vec::new(),
        index: HashMap::new(),
    };
    walk(root, &mut String::new(), &mut b);
    Fields::from_unique(b.entries)
}

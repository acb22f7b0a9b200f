//! `delimited` (`a|b|c`) and `multi_delimited` (`a|b|c@@d|e|f`).

use serde::Deserialize;

use super::{
    check_kind, check_names, parse_toml, record_object, records_of, scalar_text, ExtraFields, Kind,
    ShortRecords, Trim, SKIP,
};
use crate::{ConvertError, FieldValue, Fields};

/// `delimited` rules as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DelimitedToml {
    kind: Option<String>,
    #[serde(default = "default_delimiter")]
    delimiter: String,
    fields: Vec<String>,
    trim: Option<Trim>,
    #[serde(default)]
    trailing_delimiter: bool,
    #[serde(default)]
    short_records: ShortRecords,
    #[serde(default)]
    extra_fields: ExtraFields,
}

/// `multi_delimited` rules as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MultiDelimitedToml {
    kind: Option<String>,
    #[serde(default = "default_record_delimiter")]
    record_delimiter: String,
    #[serde(default = "default_delimiter")]
    delimiter: String,
    fields: Vec<String>,
    records: Option<String>,
    #[serde(default = "yes")]
    skip_empty_records: bool,
    trim: Option<Trim>,
    #[serde(default)]
    trailing_delimiter: bool,
    #[serde(default)]
    short_records: ShortRecords,
    #[serde(default)]
    extra_fields: ExtraFields,
}

fn default_delimiter() -> String {
    "|".into()
}

fn default_record_delimiter() -> String {
    "@@".into()
}

fn yes() -> bool {
    true
}

/// What both delimited kinds share: how one record splits into fields.
#[derive(Debug, Clone)]
pub(crate) struct RecordRules {
    pub(crate) converter: String,
    delimiter: String,
    fields: Vec<String>,
    trim: Trim,
    trailing_delimiter: bool,
    short_records: ShortRecords,
    extra_fields: ExtraFields,
}

impl RecordRules {
    #[allow(clippy::too_many_arguments)]
    fn new(
        converter: &str,
        delimiter: String,
        fields: Vec<String>,
        trim: Option<Trim>,
        trailing_delimiter: bool,
        short_records: ShortRecords,
        extra_fields: ExtraFields,
    ) -> Result<Self, ConvertError> {
        if delimiter.is_empty() {
            return Err(ConvertError::invalid_rules(
                converter,
                "`delimiter` must not be empty",
            ));
        }
        check_names(converter, fields.iter().map(String::as_str))?;
        Ok(RecordRules {
            converter: converter.to_owned(),
            delimiter,
            fields,
            trim: trim.unwrap_or(Trim::None),
            trailing_delimiter,
            short_records,
            extra_fields,
        })
    }

    /// Splits one record (numbered from 1) into its named fields.
    fn record(&self, record: usize, text: &str) -> Result<Fields, ConvertError> {
        let text = if self.trailing_delimiter {
            text.strip_suffix(self.delimiter.as_str()).unwrap_or(text)
        } else {
            text
        };
        let mut fields = Fields::with_capacity(self.fields.len());
        let mut parts = text.split(self.delimiter.as_str());
        for name in &self.fields {
            let value = parts.next();
            if value.is_none() && self.short_records == ShortRecords::Error {
                let found = text.split(self.delimiter.as_str()).count();
                return Err(self.count_error(record, found));
            }
            if name != SKIP {
                let value = self.trim.apply(value.unwrap_or(""), char::is_whitespace);
                fields.insert(name.as_str(), value);
            }
        }
        if parts.next().is_some() && self.extra_fields == ExtraFields::Error {
            let found = text.split(self.delimiter.as_str()).count();
            return Err(self.count_error(record, found));
        }
        Ok(fields)
    }

    fn count_error(&self, record: usize, found: usize) -> ConvertError {
        ConvertError::FieldCount {
            converter: self.converter.clone(),
            record,
            expected: self.fields.len(),
            found,
        }
    }

    /// Renders one record from an object (send side). `forbidden` are the
    /// separators a value must not contain.
    fn render_into(
        &self,
        out: &mut String,
        record: Option<usize>,
        value: &serde_json::Value,
        forbidden: &[&str],
    ) -> Result<(), ConvertError> {
        let at = |field: &str| match record {
            Some(r) => format!("record {r}, field `{field}`"),
            None => format!("field `{field}`"),
        };
        let object = record_object(
            &self.converter,
            || match record {
                Some(r) => format!("record {r}"),
                None => "value".into(),
            },
            value,
        )?;
        for (i, name) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.delimiter);
            }
            if name == SKIP {
                continue;
            }
            let text = scalar_text(&self.converter, || at(name), object.get(name))?;
            if let Some(sep) = forbidden.iter().find(|sep| text.contains(**sep)) {
                return Err(ConvertError::Value {
                    converter: self.converter.clone(),
                    location: at(name),
                    problem: format!(
                        "the value contains the separator `{sep}`, which this format cannot escape"
                    ),
                });
            }
            out.push_str(&text);
        }
        if self.trailing_delimiter {
            out.push_str(&self.delimiter);
        }
        Ok(())
    }
}

/// Compiled `delimited` rules.
#[derive(Debug, Clone)]
pub(crate) struct DelimitedRules {
    pub(crate) common: RecordRules,
}

impl DelimitedRules {
    pub(crate) fn parse(kind: Kind, converter: &str, text: &str) -> Result<Self, ConvertError> {
        let t: DelimitedToml = parse_toml(converter, text)?;
        check_kind(kind, converter, t.kind.as_deref())?;
        Ok(DelimitedRules {
            common: RecordRules::new(
                converter,
                t.delimiter,
                t.fields,
                t.trim,
                t.trailing_delimiter,
                t.short_records,
                t.extra_fields,
            )?,
        })
    }

    pub(crate) fn convert(&self, body: &str) -> Result<Fields, ConvertError> {
        self.common.record(1, body)
    }

    pub(crate) fn render(&self, value: &serde_json::Value) -> Result<String, ConvertError> {
        let mut out = String::new();
        self.common
            .render_into(&mut out, None, value, &[&self.common.delimiter])?;
        Ok(out)
    }
}

/// Compiled `multi_delimited` rules.
#[derive(Debug, Clone)]
pub(crate) struct MultiDelimitedRules {
    pub(crate) common: RecordRules,
    record_delimiter: String,
    records: String,
    skip_empty_records: bool,
}

impl MultiDelimitedRules {
    pub(crate) fn parse(kind: Kind, converter: &str, text: &str) -> Result<Self, ConvertError> {
        let t: MultiDelimitedToml = parse_toml(converter, text)?;
        check_kind(kind, converter, t.kind.as_deref())?;
        let common = RecordRules::new(
            converter,
            t.delimiter,
            t.fields,
            t.trim,
            t.trailing_delimiter,
            t.short_records,
            t.extra_fields,
        )?;
        let rd = t.record_delimiter;
        if rd.is_empty() {
            return Err(ConvertError::invalid_rules(
                converter,
                "`record_delimiter` must not be empty",
            ));
        }
        if rd.contains(common.delimiter.as_str()) || common.delimiter.contains(rd.as_str()) {
            return Err(ConvertError::invalid_rules(
                converter,
                format!(
                    "`record_delimiter` `{rd}` and `delimiter` `{}` must differ and neither may contain the other",
                    common.delimiter
                ),
            ));
        }
        let records = t.records.unwrap_or_else(|| "records".into());
        if records.trim().is_empty() {
            return Err(ConvertError::invalid_rules(
                converter,
                "`records` (the name of the list of records) must not be empty",
            ));
        }
        Ok(MultiDelimitedRules {
            common,
            record_delimiter: rd,
            records,
            skip_empty_records: t.skip_empty_records,
        })
    }

    pub(crate) fn convert(&self, body: &str) -> Result<Fields, ConvertError> {
        let mut records = Vec::new();
        for (i, text) in body.split(self.record_delimiter.as_str()).enumerate() {
            if self.skip_empty_records && text.is_empty() {
                continue;
            }
            records.push(FieldValue::Record(self.common.record(i + 1, text)?));
        }
        let mut fields = Fields::with_capacity(1);
        fields.insert(self.records.as_str(), FieldValue::List(records));
        Ok(fields)
    }

    pub(crate) fn render(&self, value: &serde_json::Value) -> Result<String, ConvertError> {
        let records = records_of(&self.common.converter, &self.records, value)?;
        let forbidden = [
            self.common.delimiter.as_str(),
            self.record_delimiter.as_str(),
        ];
        let mut out = String::new();
        for (i, record) in records.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.record_delimiter);
            }
            self.common
                .render_into(&mut out, Some(i + 1), record, &forbidden)?;
        }
        Ok(out)
    }
}

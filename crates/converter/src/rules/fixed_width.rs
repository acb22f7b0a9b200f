//! `fixed_width`: fields at fixed offsets, counted in characters or in the
//! bytes of a declared encoding (GBK, Shift_JIS, ...).

use std::borrow::Cow;

use encoding_rs::{EncoderResult, Encoding};
use serde::Deserialize;

use super::{
    check_kind, check_names, parse_toml, record_object, records_of, scalar_text, Kind,
    ShortRecords, Trim, SKIP,
};
use crate::{ConvertError, FieldValue, Fields};

/// `fixed_width` rules as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixedWidthToml {
    kind: Option<String>,
    #[serde(default)]
    unit: Unit,
    encoding: Option<String>,
    pad: Option<String>,
    align: Option<Align>,
    trim: Option<Trim>,
    #[serde(default)]
    short_records: ShortRecords,
    record_separator: Option<String>,
    record_length: Option<usize>,
    records: Option<String>,
    #[serde(default = "yes")]
    skip_empty_records: bool,
    fields: Vec<FieldToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldToml {
    name: String,
    offset: Option<usize>,
    length: Option<usize>,
    pad: Option<String>,
    align: Option<Align>,
    trim: Option<Trim>,
}

fn yes() -> bool {
    true
}

/// What offsets and lengths count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Unit {
    /// Unicode characters.
    #[default]
    Char,
    /// Bytes of the text encoded in the declared encoding.
    Byte,
}

impl Unit {
    fn plural(self) -> &'static str {
        match self {
            Unit::Char => "chars",
            Unit::Byte => "bytes",
        }
    }
}

/// Which side of its field a value sits on (the padding goes on the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    start: usize,
    end: usize,
    pad: char,
    align: Align,
    trim: Trim,
}

#[derive(Debug, Clone)]
enum Split {
    /// The body is one record.
    Single,
    /// Records end with this separator (usually `"\n"`).
    Separator(String),
    /// Records follow each other, each this many units long.
    Length(usize),
}

/// Compiled `fixed_width` rules.
#[derive(Debug, Clone)]
pub(crate) struct FixedWidthRules {
    pub(crate) converter: String,
    unit: Unit,
    encoding: &'static Encoding,
    pad: char,
    short_records: ShortRecords,
    split: Split,
    records: String,
    skip_empty_records: bool,
    /// In rules order (the output order).
    fields: Vec<Field>,
    /// Indices into `fields`, by offset (the rendering order).
    by_offset: Vec<usize>,
}

fn one_char(converter: &str, what: &str, s: &str, unit: Unit) -> Result<char, ConvertError> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if unit == Unit::Char || c.is_ascii() => Ok(c),
        (Some(_), None) => Err(ConvertError::invalid_rules(
            converter,
            format!("{what}: pad must be an ASCII character when unit = \"byte\""),
        )),
        _ => Err(ConvertError::invalid_rules(
            converter,
            format!("{what}: pad must be exactly one character, got {s:?}"),
        )),
    }
}

fn default_trim(align: Align) -> Trim {
    match align {
        Align::Left => Trim::Right,
        Align::Right => Trim::Left,
    }
}

impl FixedWidthRules {
    pub(crate) fn parse(kind: Kind, converter: &str, text: &str) -> Result<Self, ConvertError> {
        let t: FixedWidthToml = parse_toml(converter, text)?;
        check_kind(kind, converter, t.kind.as_deref())?;
        let invalid = |p: String| ConvertError::invalid_rules(converter, p);

        let encoding = match (t.unit, t.encoding.as_deref()) {
            (Unit::Char, Some(_)) => {
                return Err(invalid(
                    "`encoding` applies only with unit = \"byte\" (offsets in characters need no encoding)".into(),
                ))
            }
            (Unit::Char, None) | (Unit::Byte, None) => encoding_rs::UTF_8,
            (Unit::Byte, Some(label)) => {
                let enc = Encoding::for_label(label.trim().as_bytes())
                    .ok_or_else(|| invalid(format!("unknown encoding `{label}`")))?;
                if enc.output_encoding() != enc || enc == encoding_rs::ISO_2022_JP {
                    return Err(invalid(format!(
                        "encoding `{label}` cannot be used with byte offsets (UTF-16 and stateful encodings are not supported)"
                    )));
                }
                enc
            }
        };
        let pad = one_char(converter, "rules", t.pad.as_deref().unwrap_or(" "), t.unit)?;
        let align = t.align.unwrap_or(Align::Left);

        check_names(converter, t.fields.iter().map(|f| f.name.as_str()))?;
        let mut fields = Vec::with_capacity(t.fields.len());
        let mut next = 0usize;
        for f in t.fields {
            let what = format!("field `{}`", f.name);
            let length = f
                .length
                .ok_or_else(|| invalid(format!("{what}: `length` is required")))?;
            if length == 0 {
                return Err(invalid(format!("{what}: length must be > 0")));
            }
            let start = f.offset.unwrap_or(next);
            let end = start
                .checked_add(length)
                .ok_or_else(|| invalid(format!("{what}: offset + length is too large")))?;
            next = end;
            let field_pad = match f.pad.as_deref() {
                Some(p) => one_char(converter, &what, p, t.unit)?,
                None => pad,
            };
            let field_align = f.align.unwrap_or(align);
            fields.push(Field {
                name: f.name,
                start,
                end,
                pad: field_pad,
                align: field_align,
                trim: f.trim.or(t.trim).unwrap_or(default_trim(field_align)),
            });
        }

        let mut by_offset: Vec<usize> = (0..fields.len()).collect();
        by_offset.sort_by_key(|&i| (fields[i].start, fields[i].end));
        let unit = t.unit.plural();
        for pair in by_offset.windows(2) {
            let (a, b) = (&fields[pair[0]], &fields[pair[1]]);
            if b.start < a.end {
                return Err(invalid(format!(
                    "fields `{}` ({unit} {}..{}) and `{}` ({unit} {}..{}) overlap",
                    a.name, a.start, a.end, b.name, b.start, b.end
                )));
            }
        }
        let width = fields.iter().map(|f| f.end).max().unwrap_or(0);

        let split = match (t.record_separator, t.record_length) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "set `record_separator` or `record_length`, not both".into(),
                ))
            }
            (Some(sep), None) if sep.is_empty() => {
                return Err(invalid("`record_separator` must not be empty".into()))
            }
            (Some(sep), None) => Split::Separator(sep),
            (None, Some(0)) => return Err(invalid("`record_length` must be > 0".into())),
            (None, Some(len)) if len < width => {
                return Err(invalid(format!(
                    "`record_length` {len} is shorter than the fields, which end at {unit} {width}"
                )))
            }
            (None, Some(len)) => Split::Length(len),
            (None, None) => Split::Single,
        };
        let records = t.records.unwrap_or_else(|| "records".into());
        if records.trim().is_empty() {
            return Err(invalid(
                "`records` (the name of the list of records) must not be empty".into(),
            ));
        }
        Ok(FixedWidthRules {
            converter: converter.to_owned(),
            unit: t.unit,
            encoding,
            pad,
            short_records: t.short_records,
            split,
            records,
            skip_empty_records: t.skip_empty_records,
            fields,
            by_offset,
        })
    }

    pub(crate) fn convert(&self, body: &str) -> Result<Fields, ConvertError> {
        match &self.split {
            Split::Single => {
                let view = self.view(1, body)?;
                self.record(1, &view, 0, view.len())
            }
            Split::Separator(sep) => {
                let mut list = Vec::new();
                for (i, text) in body.split(sep.as_str()).enumerate() {
                    if self.skip_empty_records && text.is_empty() {
                        continue;
                    }
                    let view = self.view(i + 1, text)?;
                    list.push(FieldValue::Record(self.record(
                        i + 1,
                        &view,
                        0,
                        view.len(),
                    )?));
                }
                Ok(self.wrap(list))
            }
            Split::Length(len) => {
                let view = self.view(1, body)?;
                let total = view.len();
                let mut list = Vec::with_capacity(total / len + 1);
                let mut base = 0;
                while base < total {
                    let end = (base + len).min(total);
                    let record = base / len + 1;
                    list.push(FieldValue::Record(self.record(record, &view, base, end)?));
                    base = end;
                }
                Ok(self.wrap(list))
            }
        }
    }

    fn wrap(&self, list: Vec<FieldValue>) -> Fields {
        let mut fields = Fields::with_capacity(1);
        fields.insert(self.records.as_str(), FieldValue::List(list));
        fields
    }

    fn view<'a>(&self, record: usize, text: &'a str) -> Result<View<'a>, ConvertError> {
        match self.unit {
            Unit::Char => Ok(View::chars(text)),
            Unit::Byte => {
                View::bytes(text, self.encoding).map_err(|(offset, ch)| ConvertError::Unencodable {
                    converter: self.converter.clone(),
                    record,
                    offset,
                    ch,
                    encoding: self.encoding.name(),
                })
            }
        }
    }

    /// Extracts the fields of the record at units `base..end` of `view`.
    fn record(
        &self,
        record: usize,
        view: &View<'_>,
        base: usize,
        end: usize,
    ) -> Result<Fields, ConvertError> {
        let len = end - base;
        let mut fields = Fields::with_capacity(self.fields.len());
        for f in &self.fields {
            if f.end > len && self.short_records == ShortRecords::Error {
                return Err(ConvertError::ShortRecord {
                    converter: self.converter.clone(),
                    record,
                    field: f.name.clone(),
                    start: f.start,
                    end: f.end,
                    len,
                    unit: self.unit.plural(),
                });
            }
            if f.name == SKIP {
                continue;
            }
            let (s, e) = (base + f.start.min(len), base + f.end.min(len));
            let raw = view
                .slice(s, e)
                .ok_or_else(|| ConvertError::SplitCharacter {
                    converter: self.converter.clone(),
                    record,
                    field: f.name.clone(),
                    start: f.start,
                    end: f.end,
                    encoding: self.encoding.name(),
                })?;
            let pad = f.pad;
            let value = f.trim.apply(&raw, |c| c == pad);
            fields.insert(f.name.as_str(), value);
        }
        Ok(fields)
    }

    pub(crate) fn render(&self, value: &serde_json::Value) -> Result<String, ConvertError> {
        let mut out = String::new();
        match &self.split {
            Split::Single => self.render_record(&mut out, None, value)?,
            Split::Separator(sep) => {
                for (i, record) in records_of(&self.converter, &self.records, value)?
                    .iter()
                    .enumerate()
                {
                    if i > 0 {
                        out.push_str(sep);
                    }
                    self.render_record(&mut out, Some(i + 1), record)?;
                }
            }
            Split::Length(_) => {
                for (i, record) in records_of(&self.converter, &self.records, value)?
                    .iter()
                    .enumerate()
                {
                    self.render_record(&mut out, Some(i + 1), record)?;
                }
            }
        }
        Ok(out)
    }

    fn render_record(
        &self,
        out: &mut String,
        record: Option<usize>,
        value: &serde_json::Value,
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
        let unit = self.unit.plural();
        let mut pos = 0;
        for &i in &self.by_offset {
            let f = &self.fields[i];
            push_pad(out, self.pad, f.start - pos);
            let text = if f.name == SKIP {
                String::new()
            } else {
                scalar_text(&self.converter, || at(&f.name), object.get(&f.name))?
            };
            if let Split::Separator(sep) = &self.split {
                if text.contains(sep.as_str()) {
                    return Err(ConvertError::Value {
                        converter: self.converter.clone(),
                        location: at(&f.name),
                        problem: format!("the value contains the record separator {sep:?}"),
                    });
                }
            }
            let width = self.width(&text).map_err(|ch| ConvertError::Value {
                converter: self.converter.clone(),
                location: at(&f.name),
                problem: format!(
                    "character {ch:?} cannot be represented in {}",
                    self.encoding.name()
                ),
            })?;
            let length = f.end - f.start;
            if width > length {
                return Err(ConvertError::Value {
                    converter: self.converter.clone(),
                    location: at(&f.name),
                    problem: format!(
                        "the value is {width} {unit} long, longer than the field's length {length}"
                    ),
                });
            }
            match f.align {
                Align::Left => {
                    out.push_str(&text);
                    push_pad(out, f.pad, length - width);
                }
                Align::Right => {
                    push_pad(out, f.pad, length - width);
                    out.push_str(&text);
                }
            }
            pos = f.end;
        }
        if let Split::Length(len) = self.split {
            push_pad(out, self.pad, len - pos);
        }
        Ok(())
    }

    /// The width of `text` in units; `Err(ch)` if `ch` cannot be encoded.
    fn width(&self, text: &str) -> Result<usize, char> {
        match self.unit {
            Unit::Char => Ok(text.chars().count()),
            Unit::Byte if text.is_ascii() && self.encoding.is_ascii_compatible() => Ok(text.len()),
            Unit::Byte => {
                let (bytes, _, unmappable) = self.encoding.encode(text);
                if unmappable {
                    let bad = text
                        .chars()
                        .find(|c| self.encoding.encode(c.encode_utf8(&mut [0; 4])).2)
                        .unwrap_or(char::REPLACEMENT_CHARACTER);
                    return Err(bad);
                }
                Ok(bytes.len())
            }
        }
    }
}

fn push_pad(out: &mut String, pad: char, n: usize) {
    out.extend(std::iter::repeat_n(pad, n));
}

/// A record's text, indexable by the rules' units.
enum View<'a> {
    /// ASCII text (in an ASCII-compatible encoding): units are bytes are chars.
    Ascii(&'a str),
    /// Char offsets: `starts[i]` is the byte index of char `i`, plus one final entry.
    Chars { text: &'a str, starts: Vec<usize> },
    /// Encoded bytes: `boundary[i]` is true where a character starts (and at the end).
    Bytes {
        bytes: Vec<u8>,
        boundary: Vec<bool>,
        encoding: &'static Encoding,
    },
}

impl<'a> View<'a> {
    fn chars(text: &'a str) -> Self {
        if text.is_ascii() {
            return View::Ascii(text);
        }
        let mut starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        starts.push(text.len());
        View::Chars { text, starts }
    }

    /// Encodes `text`; `Err((char offset, char))` for the first character the
    /// encoding cannot represent.
    fn bytes(text: &'a str, encoding: &'static Encoding) -> Result<Self, (usize, char)> {
        if text.is_ascii() && encoding.is_ascii_compatible() {
            return Ok(View::Ascii(text));
        }
        let mut encoder = encoding.new_encoder();
        let mut bytes = Vec::with_capacity(text.len());
        let mut boundary = Vec::with_capacity(text.len() + 1);
        let mut buf = [0u8; 16];
        let ascii = encoding.is_ascii_compatible();
        for (offset, (at, ch)) in text.char_indices().enumerate() {
            if ascii && ch.is_ascii() {
                // ASCII-compatible encodings keep ASCII as is: skip the encoder.
                boundary.push(true);
                bytes.push(ch as u8);
                continue;
            }
            let one = &text[at..at + ch.len_utf8()];
            let (result, _, written) =
                encoder.encode_from_utf8_without_replacement(one, &mut buf, false);
            if result != EncoderResult::InputEmpty || written == 0 {
                return Err((offset, ch));
            }
            boundary.push(true);
            boundary.extend(std::iter::repeat_n(false, written - 1));
            bytes.extend_from_slice(&buf[..written]);
        }
        boundary.push(true);
        Ok(View::Bytes {
            bytes,
            boundary,
            encoding,
        })
    }

    fn len(&self) -> usize {
        match self {
            View::Ascii(text) => text.len(),
            View::Chars { starts, .. } => starts.len() - 1,
            View::Bytes { bytes, .. } => bytes.len(),
        }
    }

    /// Units `s..e` as text; `None` when a byte boundary splits a character.
    fn slice(&self, s: usize, e: usize) -> Option<Cow<'a, str>> {
        match self {
            View::Ascii(text) => text.get(s..e).map(Cow::Borrowed),
            View::Chars { text, starts } => text.get(starts[s]..starts[e]).map(Cow::Borrowed),
            View::Bytes {
                bytes,
                boundary,
                encoding,
            } => {
                if !boundary[s] || !boundary[e] {
                    return None;
                }
                encoding
                    .decode_without_bom_handling_and_without_replacement(&bytes[s..e])
                    .map(|text| Cow::Owned(text.into_owned()))
            }
        }
    }
}

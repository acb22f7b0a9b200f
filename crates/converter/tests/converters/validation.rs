//! Every rules check, with the exact message an operator sees.

use eventyard_converter::{ConvertError, Registry};

use crate::support::invalid;

fn check(id: &str, rules: &str, expected: &str) {
    assert_eq!(invalid(id, rules), expected, "rules:\n{rules}");
}

#[test]
fn unknown_converter_lists_known_ids() {
    let err = Registry::with_builtins().validate("csv", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown receive converter `csv` (known: delimited, fixed_width, multi_delimited, xml)"
    );
    assert!(err.is_rules_error());
}

#[test]
fn text_kinds_need_rules() {
    for id in ["delimited", "multi_delimited", "fixed_width"] {
        for rules in [None, Some(""), Some("  \n")] {
            let err = Registry::with_builtins().validate(id, rules).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "converter `{id}` needs rules (ey_receive_config.converter_rules is empty)"
                )
            );
        }
    }
    assert!(Registry::with_builtins().validate("xml", Some(" ")).is_ok());
}

#[test]
fn toml_syntax_error_names_line_and_column() {
    check(
        "delimited",
        "fields = [\"a\"]\ndelimiter = ",
        "converter `delimited`: rules are not valid: line 2, column 13: the rules end where a value was expected",
    );
}

#[test]
fn toml_errors_are_one_line() {
    check(
        "delimited",
        "fields = [\"a\"\n",
        "converter `delimited`: rules are not valid: line 2, column 1: invalid array; expected `]`",
    );
    check(
        "delimited",
        "fields = [\"a\"]\nfields = [\"b\"]",
        "converter `delimited`: rules are not valid: line 2, column 1: duplicate key `fields` in document root",
    );
}

#[test]
fn unknown_key_is_refused() {
    let msg = invalid("fixed_width", "fields = [{ name = \"a\", lenght = 3 }]");
    assert!(
        msg.starts_with("converter `fixed_width`: rules are not valid: line 1, column 25: unknown field `lenght`"),
        "{msg}"
    );
    let msg = invalid("delimited", "fields = [\"a\"]\nseparator = \",\"");
    assert!(
        msg.starts_with("converter `delimited`: rules are not valid: line 2, column 1: unknown field `separator`"),
        "{msg}"
    );
}

#[test]
fn wrong_value_types_are_refused() {
    let msg = invalid("fixed_width", "fields = [{ name = \"a\", length = -1 }]");
    assert!(msg.contains("line 1, column 34"), "{msg}");
    let msg = invalid(
        "fixed_width",
        "unit = \"word\"\nfields = [{ name = \"a\", length = 1 }]",
    );
    assert!(
        msg.contains("unknown variant `word`, expected `char` or `byte`"),
        "{msg}"
    );
    let msg = invalid("delimited", "fields = \"a|b\"");
    assert!(
        msg.contains("invalid type: string \"a|b\", expected a sequence"),
        "{msg}"
    );
    let msg = invalid("delimited", "delimiter = \"|\"");
    assert!(msg.contains("missing field `fields`"), "{msg}");
}

#[test]
fn kind_must_match_the_converter() {
    check(
        "fixed_width",
        "kind = \"delimited\"\nfields = [\"a\"]",
        "converter `fixed_width`: invalid rules: the rules are for kind `delimited`, but converter `fixed_width` is of kind `fixed_width`",
    );
}

#[test]
fn field_names() {
    check(
        "delimited",
        "fields = []",
        "converter `delimited`: invalid rules: at least one field is required (`fields` is empty or only skips)",
    );
    check(
        "delimited",
        "fields = [\"_\", \"_\"]",
        "converter `delimited`: invalid rules: at least one field is required (`fields` is empty or only skips)",
    );
    check(
        "delimited",
        "fields = [\"a\", \" \"]",
        "converter `delimited`: invalid rules: field 2: name must not be empty",
    );
    check(
        "multi_delimited",
        "fields = [\"a\", \"b\", \"a\"]",
        "converter `multi_delimited`: invalid rules: field `a` is defined twice",
    );
    check(
        "fixed_width",
        "fields = [{ name = \"a\", length = 1 }, { name = \"a\", length = 1 }]",
        "converter `fixed_width`: invalid rules: field `a` is defined twice",
    );
    check(
        "xml",
        "fields = [{ name = \"a\", path = \"r/a\" }, { name = \"a\", path = \"r/b\" }]",
        "converter `xml`: invalid rules: field `a` is defined twice",
    );
}

#[test]
fn delimiters() {
    check(
        "delimited",
        "delimiter = \"\"\nfields = [\"a\"]",
        "converter `delimited`: invalid rules: `delimiter` must not be empty",
    );
    check(
        "multi_delimited",
        "record_delimiter = \"\"\nfields = [\"a\"]",
        "converter `multi_delimited`: invalid rules: `record_delimiter` must not be empty",
    );
    check(
        "multi_delimited",
        "record_delimiter = \"||\"\ndelimiter = \"|\"\nfields = [\"a\"]",
        "converter `multi_delimited`: invalid rules: `record_delimiter` `||` and `delimiter` `|` must differ and neither may contain the other",
    );
    check(
        "multi_delimited",
        "records = \"\"\nfields = [\"a\"]",
        "converter `multi_delimited`: invalid rules: `records` (the name of the list of records) must not be empty",
    );
}

#[test]
fn fixed_width_lengths_and_overlaps() {
    check(
        "fixed_width",
        "fields = [{ name = \"amount\", offset = 0, length = 0 }]",
        "converter `fixed_width`: invalid rules: field `amount`: length must be > 0",
    );
    check(
        "fixed_width",
        "fields = [{ name = \"amount\", offset = 3 }]",
        "converter `fixed_width`: invalid rules: field `amount`: `length` is required",
    );
    check(
        "fixed_width",
        "fields = [{ name = \"a\", offset = 0, length = 10 }, { name = \"b\", offset = 5, length = 10 }]",
        "converter `fixed_width`: invalid rules: fields `a` (chars 0..10) and `b` (chars 5..15) overlap",
    );
    check(
        "fixed_width",
        "unit = \"byte\"\nfields = [{ name = \"b\", offset = 8, length = 4 }, { name = \"a\", offset = 0, length = 9 }]",
        "converter `fixed_width`: invalid rules: fields `a` (bytes 0..9) and `b` (bytes 8..12) overlap",
    );
}

#[test]
fn fixed_width_encoding_and_pad() {
    check(
        "fixed_width",
        "unit = \"byte\"\nencoding = \"GBKK\"\nfields = [{ name = \"a\", length = 1 }]",
        "converter `fixed_width`: invalid rules: unknown encoding `GBKK`",
    );
    check(
        "fixed_width",
        "unit = \"byte\"\nencoding = \"UTF-16LE\"\nfields = [{ name = \"a\", length = 1 }]",
        "converter `fixed_width`: invalid rules: encoding `UTF-16LE` cannot be used with byte offsets (UTF-16 and stateful encodings are not supported)",
    );
    check(
        "fixed_width",
        "encoding = \"GBK\"\nfields = [{ name = \"a\", length = 1 }]",
        "converter `fixed_width`: invalid rules: `encoding` applies only with unit = \"byte\" (offsets in characters need no encoding)",
    );
    check(
        "fixed_width",
        "pad = \"ab\"\nfields = [{ name = \"a\", length = 1 }]",
        "converter `fixed_width`: invalid rules: rules: pad must be exactly one character, got \"ab\"",
    );
    check(
        "fixed_width",
        "unit = \"byte\"\nencoding = \"GBK\"\nfields = [{ name = \"a\", length = 2, pad = \"　\" }]",
        "converter `fixed_width`: invalid rules: field `a`: pad must be an ASCII character when unit = \"byte\"",
    );
}

#[test]
fn fixed_width_records() {
    check(
        "fixed_width",
        "record_separator = \"\\n\"\nrecord_length = 4\nfields = [{ name = \"a\", length = 1 }]",
        "converter `fixed_width`: invalid rules: set `record_separator` or `record_length`, not both",
    );
    check(
        "fixed_width",
        "record_separator = \"\"\nfields = [{ name = \"a\", length = 1 }]",
        "converter `fixed_width`: invalid rules: `record_separator` must not be empty",
    );
    check(
        "fixed_width",
        "record_length = 0\nfields = [{ name = \"a\", length = 1 }]",
        "converter `fixed_width`: invalid rules: `record_length` must be > 0",
    );
    check(
        "fixed_width",
        "record_length = 5\nfields = [{ name = \"a\", length = 4 }, { name = \"b\", length = 4 }]",
        "converter `fixed_width`: invalid rules: `record_length` 5 is shorter than the fields, which end at chars 8",
    );
}

#[test]
fn xml_paths() {
    let cases = [
        ("r/", "field `a`: path `r/` has an empty step"),
        ("", "field `a`: path must not be empty"),
        ("r//b", "field `a`: path `r//b` has an empty step"),
        ("r/@id/b", "field `a`: path `r/@id/b`: the attribute step `@id` must be the last step"),
        ("@id", "field `a`: path `@id` must start at the root element, e.g. `order/@id`"),
        ("r/1b", "field `a`: path `r/1b`: `1b` is not a valid element or attribute name"),
        ("r/a b", "field `a`: path `r/a b`: `a b` is not a valid element or attribute name"),
        ("r/../b", "field `a`: path `r/../b`: steps `.` and `..` are not supported (a nested field may use `.` alone for its parent element)"),
    ];
    for (path, problem) in cases {
        check(
            "xml",
            &format!("fields = [{{ name = \"a\", path = \"{path}\" }}]"),
            &format!("converter `xml`: invalid rules: {problem}"),
        );
    }
}

#[test]
fn xml_field_options() {
    check(
        "xml",
        "fields = [{ name = \"a\", path = \"r/a\", repeated = true, default = \"x\" }]",
        "converter `xml`: invalid rules: field `a`: `default` and `optional` do not apply to repeated fields (no match gives an empty list)",
    );
    check(
        "xml",
        "fields = [{ name = \"a\", path = \"r/@a\", fields = [{ name = \"b\", path = \"b\" }] }]",
        "converter `xml`: invalid rules: field `a`: a field with `fields` must select elements, not an attribute",
    );
    check(
        "xml",
        "fields = [{ name = \"l\", path = \"r/l\", fields = [{ name = \"b\", path = \"/r/b\" }] }]",
        "converter `xml`: invalid rules: field `l.b`: path `/r/b` is inside `fields`, so it must be relative to the parent element (no leading `/`)",
    );
    check(
        "xml",
        "fields = [{ name = \"l\", path = \"r/l\", fields = [] }]",
        "converter `xml`: invalid rules: at least one field is required (`fields` is empty or only skips)",
    );
    check(
        "xml",
        "root = \"1x\"",
        "converter `xml`: invalid rules: `root` = \"1x\" is not a valid XML element name",
    );
}

#[test]
fn errors_name_the_registered_alias() {
    let mut registry = Registry::with_builtins();
    registry.register_receive(
        "acct_feed",
        std::sync::Arc::new(eventyard_converter::Builtin(
            eventyard_converter::Kind::FixedWidth,
        )),
    );
    let err = registry
        .validate("acct_feed", Some("fields = [{ name = \"x\", length = 0 }]"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "converter `acct_feed`: invalid rules: field `x`: length must be > 0"
    );
    assert!(matches!(err, ConvertError::InvalidRules { .. }));
}

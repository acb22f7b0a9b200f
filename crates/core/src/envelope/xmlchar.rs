//! Characters XML 1.0 cannot carry, and escaping for the writer.

/// Byte offset of the first character XML 1.0 cannot carry: a C0 control
/// other than TAB, LF and CR, or U+FFFE / U+FFFF (UTF-8 `EF BF BE` / `EF BF BF`).
pub(crate) fn find_illegal(bytes: &[u8]) -> Option<usize> {
    // Fast path: a branch-free scan of 64-byte blocks (vectorized by the
    // compiler) finds the blocks that could hold a suspect byte at all.
    let suspect = |b: u8| (b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r') | (b == 0xEF);
    let mut block_start = 0;
    for block in bytes.chunks(64) {
        if block.iter().fold(false, |hit, &b| hit | suspect(b)) {
            break;
        }
        block_start += block.len();
    }
    if block_start == bytes.len() {
        return None;
    }
    // A U+FFFE/U+FFFF sequence split across blocks is caught: its lead byte
    // 0xEF marks the earlier block.
    let mut i = block_start;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x20 {
            if b != b'\t' && b != b'\n' && b != b'\r' {
                return Some(i);
            }
        } else if b == 0xEF && is_nonchar_at(bytes, i) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn is_nonchar_at(bytes: &[u8], i: usize) -> bool {
    matches!(bytes.get(i + 1..i + 3), Some([0xBF, 0xBE | 0xBF]))
}

/// The code point starting at byte `offset` of `s` (for error messages).
pub(crate) fn code_at(s: &str, offset: usize) -> u32 {
    s.get(offset..)
        .and_then(|rest| rest.chars().next())
        .map_or(0, u32::from)
}

/// Appends `s` escaped for element content (`attr == false`) or a
/// double-quoted attribute value (`attr == true`).
///
/// `&`, `<` and `>` always become entity references (`>` so that `]]>` can
/// never appear); CR becomes `&#13;` so parsers do not normalize it to LF. In
/// attribute values `"` becomes `&quot;` and TAB and LF become `&#9;` and
/// `&#10;`, which attribute-value normalization would otherwise turn into
/// spaces. Returns the byte offset of the first character XML 1.0 cannot
/// carry, if any; `out` then holds a partial value.
pub(crate) fn escape_into(out: &mut Vec<u8>, s: &str, attr: bool) -> Result<(), usize> {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let replacement: &[u8] = match b {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'\r' => b"&#13;",
            b'"' if attr => b"&quot;",
            b'\n' if attr => b"&#10;",
            b'\t' if attr => b"&#9;",
            b'\n' | b'\t' => continue,
            0x00..=0x1F => return Err(i),
            0xEF if is_nonchar_at(bytes, i) => return Err(i),
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(replacement);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_controls_and_nonchars() {
        assert_eq!(find_illegal(b"ok\t\n\r"), None);
        assert_eq!(find_illegal(b"a\x01"), Some(1));
        assert_eq!(find_illegal("x\u{FFFE}".as_bytes()), Some(1));
        assert_eq!(find_illegal("x\u{FFFF}".as_bytes()), Some(1));
        assert_eq!(find_illegal("\u{FFFD}\u{EFFF}".as_bytes()), None);
        for at in [0, 63, 64, 65, 127, 200] {
            let mut long = "é".repeat(150).into_bytes();
            long.splice(at..at, "\u{FFFF}".bytes());
            assert_eq!(find_illegal(&long), Some(at), "at {at}");
            let mut long = vec![b'a'; 300];
            long[at] = 0x1B;
            assert_eq!(find_illegal(&long), Some(at));
        }
    }

    #[test]
    fn escapes_text_and_attributes() {
        let mut out = Vec::new();
        escape_into(&mut out, "a<b>&]]>\r\n\t\"", false).unwrap();
        assert_eq!(out, b"a&lt;b&gt;&amp;]]&gt;&#13;\n\t\"");
        out.clear();
        escape_into(&mut out, "\"\t\n\r", true).unwrap();
        assert_eq!(out, b"&quot;&#9;&#10;&#13;");
        assert_eq!(escape_into(&mut out, "ab\x0b", false), Err(2));
    }
}

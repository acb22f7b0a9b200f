//! Named-parameter SQL for the built-in `sql` handler.
//!
//! The text is one or more statements separated by `;`, with parameters
//! written `:name`. Each `:name` becomes a bound placeholder (`$N`, or `?` on
//! MySQL) — values are never spliced into the SQL text. Quoted strings
//! (`'…'`), quoted identifiers (`"…"`, `` `…` ``), comments (`-- …`,
//! `/* … */`) and PostgreSQL casts (`::int`) are left alone.

use std::fmt;

use eventyard_core::db::Backend;

/// One statement with its parameter names in placeholder order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedStatement {
    /// The statement with `$N` placeholders (PostgreSQL, SQLite) or `?` (MySQL).
    pub sql: String,
    /// The parameter name of each placeholder, in order.
    pub params: Vec<String>,
}

/// A parsed `handler_config` for the `sql` handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlTemplate {
    /// The statements, in order.
    pub statements: Vec<NamedStatement>,
}

/// Why a `sql` handler statement did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sql handler statement: {0}")]
pub struct SqlTemplateError(String);

impl SqlTemplate {
    /// Parses `text` for `backend`.
    pub fn parse(text: &str, backend: Backend) -> Result<SqlTemplate, SqlTemplateError> {
        let mut statements = Vec::new();
        let mut sql = String::new();
        let mut params = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        let flush = |sql: &mut String, params: &mut Vec<String>, out: &mut Vec<NamedStatement>| {
            if !sql.trim().is_empty() {
                out.push(NamedStatement {
                    sql: sql.trim().to_string(),
                    params: std::mem::take(params),
                });
            }
            sql.clear();
            params.clear();
        };
        while i < chars.len() {
            let c = chars[i];
            match c {
                '\'' | '"' | '`' => {
                    let end = quoted_end(&chars, i, c).ok_or_else(|| {
                        SqlTemplateError(format!("unterminated {c}…{c} starting at character {i}"))
                    })?;
                    sql.extend(&chars[i..end]);
                    i = end;
                }
                '-' if chars.get(i + 1) == Some(&'-') => {
                    let end = chars[i..]
                        .iter()
                        .position(|&c| c == '\n')
                        .map_or(chars.len(), |p| i + p);
                    sql.extend(&chars[i..end]);
                    i = end;
                }
                '/' if chars.get(i + 1) == Some(&'*') => {
                    let end = find_seq(&chars, i + 2, &['*', '/']).ok_or_else(|| {
                        SqlTemplateError(format!(
                            "unterminated /* comment starting at character {i}"
                        ))
                    })? + 2;
                    sql.extend(&chars[i..end]);
                    i = end;
                }
                ':' if chars.get(i + 1) == Some(&':') => {
                    sql.push_str("::");
                    i += 2;
                }
                ':' if chars
                    .get(i + 1)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') =>
                {
                    let start = i + 1;
                    let mut end = start;
                    while chars
                        .get(end)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                    {
                        end += 1;
                    }
                    params.push(chars[start..end].iter().collect());
                    match backend {
                        Backend::MySql => sql.push('?'),
                        _ => {
                            sql.push('$');
                            sql.push_str(&params.len().to_string());
                        }
                    }
                    i = end;
                }
                ';' => {
                    flush(&mut sql, &mut params, &mut statements);
                    i += 1;
                }
                _ => {
                    sql.push(c);
                    i += 1;
                }
            }
        }
        flush(&mut sql, &mut params, &mut statements);
        if statements.is_empty() {
            return Err(SqlTemplateError(
                "handler_config holds no statement; write e.g. \
                 INSERT INTO t (a, b) VALUES (:a, :b)"
                    .into(),
            ));
        }
        Ok(SqlTemplate { statements })
    }
}

impl fmt::Display for SqlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.statements.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&s.sql)?;
        }
        Ok(())
    }
}

/// The index just past the closing quote of a quoted run starting at `start`
/// (a doubled quote is an escaped quote).
fn quoted_end(chars: &[char], start: usize, quote: char) -> Option<usize> {
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        if chars[i] == '\\' && quote == '\'' {
            // MySQL-style backslash escapes: skip the escaped character.
            i += 2;
            continue;
        }
        i += 1;
    }
    None
}

fn find_seq(chars: &[char], from: usize, seq: &[char]) -> Option<usize> {
    (from..chars.len().saturating_sub(seq.len() - 1)).find(|&i| chars[i..].starts_with(seq))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn named_parameters_become_placeholders() {
        let t = SqlTemplate::parse(
            "INSERT INTO acct (id, name) VALUES (:account, :name) \
             ON CONFLICT (id) DO UPDATE SET name = :name",
            Backend::Postgres,
        )
        .unwrap();
        assert_eq!(t.statements.len(), 1);
        assert_eq!(
            t.statements[0].sql,
            "INSERT INTO acct (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = $3"
        );
        assert_eq!(t.statements[0].params, ["account", "name", "name"]);
        let m = SqlTemplate::parse("UPDATE t SET a = :a WHERE b = :b", Backend::MySql).unwrap();
        assert_eq!(m.statements[0].sql, "UPDATE t SET a = ? WHERE b = ?");
    }

    #[test]
    fn literals_comments_and_casts_are_left_alone() {
        let t = SqlTemplate::parse(
            "INSERT INTO t (a, b, c) VALUES (':not', 'it''s :x', :amount::int) -- :nope\n; \
             /* :no; */ DELETE FROM \"x:y\" WHERE id = :id;",
            Backend::Postgres,
        )
        .unwrap();
        assert_eq!(t.statements.len(), 2);
        assert_eq!(t.statements[0].params, ["amount"]);
        assert!(t.statements[0].sql.contains("$1::int"), "{t}");
        assert!(t.statements[0].sql.contains("'it''s :x'"));
        assert_eq!(t.statements[1].params, ["id"]);
        assert!(t.statements[1].sql.ends_with("WHERE id = $1"));
    }

    #[test]
    fn bad_text_is_refused() {
        assert!(SqlTemplate::parse("INSERT INTO t VALUES ('oops)", Backend::Sqlite).is_err());
        assert!(SqlTemplate::parse("  ;  ", Backend::Sqlite).is_err());
        assert!(SqlTemplate::parse("/* never closed", Backend::Sqlite).is_err());
    }
}

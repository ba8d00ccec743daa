//! SQL identifiers and literals, quoted the way PostgreSQL and SQLite both read them.

use std::fmt;

/// Quotes an identifier: always in double quotes, embedded quotes doubled, so
/// mixed case, spaces and non-ASCII names survive unchanged.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quotes a string literal for servers with `standard_conforming_strings = on`
/// (the default since PostgreSQL 9.1): single quotes doubled, nothing else escaped.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A schema-qualified table name, unquoted. `Display` prints the quoted form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName { schema: schema.into(), name: name.into() }
    }

    /// `"schema"."name"`, ready to put into SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// `schema.name` without quotes, for people (logs, status, errors).
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_keep_case_spaces_and_quotes() {
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("søn"), "\"søn\"");
        assert_eq!(TableName::new("public", "My Table").quoted(), "\"public\".\"My Table\"");
    }

    #[test]
    fn literals_double_single_quotes_only() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("back\\slash"), "'back\\slash'");
    }
}

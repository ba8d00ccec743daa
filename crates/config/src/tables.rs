//! `tables`: `"all"` or a comma-separated list of tables, each optionally
//! schema-qualified, with PostgreSQL's double quotes for names that need them.

use std::fmt;

use dugong_core::quote_ident;

/// The schema the replicator keeps site-local tables in and never replicates.
const LOCAL_SCHEMA: &str = "dugong_local";

/// Which tables a sync replicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableSelection {
    /// Every table with a primary key (the replicator lists the ones it skips).
    All,
    /// These tables, in the order written.
    List(Vec<TableRef>),
}

/// A table as the configuration names it, not yet matched against a catalog.
///
/// Unquoted parts keep their text as written (`Client` stays `Client`); the
/// replicator matches them case-insensitively, the way PostgreSQL folds
/// unquoted names. Quoted parts (`"My Table"`) have their quotes removed and
/// match exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    /// The schema, when written (`public.client`); otherwise the replicator
    /// looks the table up by name.
    pub schema: Option<String>,
    /// The table's name.
    pub name: String,
    /// `name` was written in double quotes: match it exactly.
    pub quoted: bool,
    /// `schema` was written in double quotes: match it exactly.
    pub schema_quoted: bool,
}

impl fmt::Display for TableRef {
    /// Prints the table as it was written, quotes included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |text: &str, quoted: bool| {
            if quoted {
                quote_ident(text)
            } else {
                text.to_owned()
            }
        };
        if let Some(schema) = &self.schema {
            write!(f, "{}.", part(schema, self.schema_quoted))?;
        }
        f.write_str(&part(&self.name, self.quoted))
    }
}

/// Parses the `tables` field. The error is the reason, for the field `tables`.
pub(crate) fn parse(text: &str) -> Result<TableSelection, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty; write \"all\" or a comma-separated list such as \"client,public.product\"".into());
    }
    if text.eq_ignore_ascii_case("all") {
        return Ok(TableSelection::All);
    }
    let mut tables: Vec<TableRef> = Vec::new();
    for (i, entry) in split_outside_quotes(text, ',')?.into_iter().enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(format!("entry {} of the list is empty (a stray comma?)", i + 1));
        }
        let table = table(entry)?;
        if tables.contains(&table) {
            return Err(format!("`{entry}` is listed twice"));
        }
        tables.push(table);
    }
    Ok(TableSelection::List(tables))
}

fn table(entry: &str) -> Result<TableRef, String> {
    let parts = split_outside_quotes(entry, '.')?;
    let (schema, name) = match parts.as_slice() {
        [name] => (None, ident(entry, name)?),
        [schema, name] => (Some(ident(entry, schema)?), ident(entry, name)?),
        _ => return Err(format!("`{entry}` has too many dots; write table or schema.table")),
    };
    if !name.1 && name.0.eq_ignore_ascii_case("all") && schema.is_none() {
        return Err("\"all\" cannot be part of a list; write \"all\" alone, or only table names".into());
    }
    if let Some((schema, quoted)) = &schema {
        let local = if *quoted { schema == LOCAL_SCHEMA } else { schema.eq_ignore_ascii_case(LOCAL_SCHEMA) };
        if local {
            return Err(format!(
                "`{entry}`: the schema {LOCAL_SCHEMA} holds site-local tables, which are never replicated"
            ));
        }
    }
    Ok(TableRef {
        schema_quoted: schema.as_ref().is_some_and(|s| s.1),
        schema: schema.map(|s| s.0),
        name: name.0,
        quoted: name.1,
    })
}

/// One part of a name: its text, and whether it was quoted.
fn ident(entry: &str, part: &str) -> Result<(String, bool), String> {
    let part = part.trim();
    if part.is_empty() {
        return Err(format!("`{entry}` has an empty name; write table or schema.table"));
    }
    let Some(inner) = part.strip_prefix('"') else {
        if part.contains(|c: char| c.is_whitespace() || c == '"') {
            return Err(format!("`{part}`: write a name with spaces or quotes in double quotes, like \"My Table\""));
        }
        return Ok((part.to_owned(), false));
    };
    let text = inner
        .strip_suffix('"')
        .filter(|text| !text.replace("\"\"", "").contains('"'))
        .ok_or_else(|| format!("`{part}`: a quoted name must be one \"...\", with quotes inside doubled"))?;
    if text.is_empty() {
        return Err(format!("`{entry}` has an empty quoted name"));
    }
    Ok((text.replace("\"\"", "\""), true))
}

/// Splits at `sep` where it is not inside double quotes.
fn split_outside_quotes(text: &str, sep: char) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    if quoted {
        return Err(format!("`{text}` has a double quote that is not closed"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Vec<TableRef> {
        match parse(text).unwrap() {
            TableSelection::List(tables) => tables,
            TableSelection::All => panic!("expected a list"),
        }
    }

    fn plain(schema: Option<&str>, name: &str) -> TableRef {
        TableRef { schema: schema.map(str::to_owned), name: name.into(), quoted: false, schema_quoted: false }
    }

    #[test]
    fn all_in_any_case() {
        assert_eq!(parse("all").unwrap(), TableSelection::All);
        assert_eq!(parse(" ALL ").unwrap(), TableSelection::All);
    }

    #[test]
    fn lists_keep_unquoted_text_as_written() {
        assert_eq!(
            list(" client , public.Product,app.flow"),
            vec![plain(None, "client"), plain(Some("public"), "Product"), plain(Some("app"), "flow")]
        );
    }

    #[test]
    fn quoted_names_lose_their_quotes_and_keep_case_commas_and_dots() {
        let tables = list(r#""My T", "Odd.Schema"."a,b", public."say ""hi""""#);
        assert_eq!(tables[0], TableRef { schema: None, name: "My T".into(), quoted: true, schema_quoted: false });
        assert_eq!(
            tables[1],
            TableRef { schema: Some("Odd.Schema".into()), name: "a,b".into(), quoted: true, schema_quoted: true }
        );
        assert_eq!(tables[2].name, "say \"hi\"");
        assert!(tables[2].quoted && !tables[2].schema_quoted);
        assert_eq!(tables[2].to_string(), r#"public."say ""hi""""#);
    }

    #[test]
    fn malformed_lists_are_refused_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("client,,product", "entry 2 of the list is empty"),
            ("client,", "entry 2 of the list is empty"),
            ("a.b.c", "too many dots"),
            ("public.", "empty name"),
            ("my table", "double quotes"),
            ("\"open", "not closed"),
            ("\"\"", "empty quoted name"),
            ("\"a\"b\"", "not closed"),
            ("client, Client2, client", "`client` is listed twice"),
            ("all, client", "\"all\" cannot be part of a list"),
            ("dugong_local.positions", "site-local"),
            ("DUGONG_LOCAL.positions", "site-local"),
        ];
        for (text, reason) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(reason), "{text:?}: {err:?} lacks {reason:?}");
        }
    }

    #[test]
    fn a_quoted_all_or_other_schema_is_a_table() {
        assert_eq!(list("\"all\"")[0].name, "all");
        assert_eq!(list("\"Dugong_Local\".x")[0].schema.as_deref(), Some("Dugong_Local"));
    }
}

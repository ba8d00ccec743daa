//! `conflict_strategy`: Bucardo's names for it, Dugong's shorter ones, and
//! priority lists of databases (a JSON array of ids, or a string of names).

use dugong_core::{ConflictStrategy, DbId};

use crate::error::Invalid;
use crate::raw::RawStrategy;
use crate::span::Spans;

/// Reads a sync's `conflict_strategy` (at `field`). Whether the databases of a
/// priority list are sources of the sync is checked by `Config::validate`.
pub(crate) fn parse(field: &str, raw: RawStrategy, spans: &mut Spans) -> Result<ConflictStrategy, Invalid> {
    match raw {
        RawStrategy::List(ids) => {
            for (i, id) in ids.iter().enumerate() {
                spans.note(&format!("{field}[{i}]"), id);
            }
            Ok(ConflictStrategy::Priority(ids.into_iter().map(|id| id.value).collect()))
        }
        RawStrategy::Text(text) => parse_text(&text).map_err(|reason| Invalid::new(field, reason)),
    }
}

fn parse_text(text: &str) -> Result<ConflictStrategy, String> {
    let word = text.trim().to_ascii_lowercase();
    let unsupported = |what: &str| {
        format!(
            "`{word}` is a Bucardo 4 strategy ({what}) that Bucardo 5 never implemented (it pauses the sync) \
             and Dugong does not offer"
        )
    };
    match word.as_str() {
        // Dugong's latest is per row, so Bucardo's per-table and all-tables
        // variants both become it.
        "latest" | "default" | "bucardo_latest" | "latest_all" | "bucardo_latest_all_tables" => {
            Ok(ConflictStrategy::Latest)
        }
        "abort" | "bucardo_abort" => Ok(ConflictStrategy::Abort),
        "" => Err("empty; write \"latest\" (the default), \"abort\", or the sources in priority order".into()),
        "bucardo_source" | "bucardo_target" => Err(format!(
            "{}; to make some databases win, list them in priority order, e.g. [0, 1] or \"db0 db1\"",
            unsupported(if word == "bucardo_source" { "the source wins" } else { "the target wins" })
        )),
        "bucardo_skip" => Err(format!(
            "{}; Dugong never drops a change silently: use \"abort\" to stop the sync on a conflict",
            unsupported("conflicting rows are not replicated")
        )),
        "bucardo_random" => Err(format!("{}; use \"latest\" (the default)", unsupported("a random source wins"))),
        "bucardo_custom" => {
            Err("custom conflict code is not supported; use \"latest\", \"abort\" or a priority list of databases"
                .into())
        }
        other if other.starts_with("bucardo_") => Err(format!(
            "`{other}` is not a conflict strategy; use \"latest\", \"abort\" or a priority list of databases"
        )),
        _ => priority_list(&word).map(ConflictStrategy::Priority),
    }
}

/// `"db1 db0"` or `"1,0"`: databases by Bucardo name (`db<id>`) or by id.
fn priority_list(text: &str) -> Result<Vec<DbId>, String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|token| !token.is_empty())
        .map(|token| {
            token.strip_prefix("db").unwrap_or(token).parse::<u32>().map(DbId).map_err(|_| {
                format!(
                    "`{token}` is neither a strategy (\"latest\", \"abort\") nor a database \
                     (db<id> or <id>, as in \"db1 db0\")"
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<ConflictStrategy, String> {
        parse_text(s)
    }

    #[test]
    fn names_of_latest_and_abort() {
        for word in
            ["latest", "default", "bucardo_latest", "Bucardo_Latest", " latest_all ", "bucardo_latest_all_tables"]
        {
            assert_eq!(text(word).unwrap(), ConflictStrategy::Latest, "{word}");
        }
        for word in ["abort", "bucardo_abort", "ABORT"] {
            assert_eq!(text(word).unwrap(), ConflictStrategy::Abort, "{word}");
        }
    }

    #[test]
    fn priority_lists_by_name_or_id() {
        let expected = ConflictStrategy::Priority(vec![DbId(1), DbId(0)]);
        assert_eq!(text("db1 db0").unwrap(), expected);
        assert_eq!(text("1,0").unwrap(), expected);
        assert_eq!(text(" DB1 , 0 ").unwrap(), expected);
    }

    #[test]
    fn bucardo_4_strategies_are_refused_with_what_to_use() {
        let cases = [
            ("bucardo_source", "priority order"),
            ("bucardo_target", "priority order"),
            ("bucardo_skip", "\"abort\""),
            ("bucardo_random", "\"latest\""),
            ("bucardo_custom", "custom conflict code is not supported"),
            ("bucardo_whatever", "not a conflict strategy"),
            ("newest", "`newest` is neither a strategy"),
            ("db1 dbx", "`dbx` is neither"),
            ("", "empty"),
        ];
        for (word, reason) in cases {
            let err = text(word).expect_err(word);
            assert!(err.contains(reason), "{word}: {err:?} lacks {reason:?}");
        }
        assert!(text("bucardo_source").unwrap_err().contains("Bucardo 4"));
    }
}

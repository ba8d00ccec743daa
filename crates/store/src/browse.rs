//! Lists for people (the console): one page of a kind at a time, in a stable
//! order by name or by last change, narrowed by a search, with the total
//! that matches — without reading the rest. Pages are found by position in
//! the order (keyset paging: the last row shown on one side of the page), so
//! a record written meanwhile never makes a row show twice or not at all.
//!
//! The API's lists (`Store::list`) stay in key order with key page tokens.

use crate::error::StoreError;
use crate::model::{Kind, Micros, Record};

/// Most rows one page shows.
pub const MAX_BROWSE_ROWS: u32 = 500;

/// The order of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// By name, A to Z, ignoring case (apps, flows); by key for settings and
    /// contexts. Ties by key.
    #[default]
    Name,
    /// Last changed first. Ties by key.
    Changed,
}

impl Sort {
    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::Changed => "changed",
        }
    }

    pub fn parse(text: &str) -> Option<Sort> {
        [Sort::Name, Sort::Changed].into_iter().find(|s| s.as_str() == text)
    }
}

/// A place in a list: the sort value and key of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    Name { name: String, key: String },
    Changed { at: Micros, key: String },
}

impl Cursor {
    /// Where `record` stands in `sort`.
    pub fn of(record: &Record, sort: Sort) -> Cursor {
        let key = record.key().to_string();
        match sort {
            Sort::Name => Cursor::Name { name: record.title().to_string(), key },
            Sort::Changed => Cursor::Changed { at: record.updated_at(), key },
        }
    }

    /// The text of a cursor for a link: `n<name>\n<key>` or `c<micros>\n<key>`
    /// (names and keys hold no line breaks).
    pub fn token(&self) -> String {
        match self {
            Cursor::Name { name, key } => format!("n{name}\n{key}"),
            Cursor::Changed { at, key } => format!("c{}\n{key}", at.0),
        }
    }

    /// A token read back for a list in `sort`; anything else is refused
    /// naming `field`.
    pub fn parse(field: &str, token: &str, sort: Sort) -> Result<Cursor, StoreError> {
        let bad = || StoreError::invalid(field, "not a position in this list (follow the page links)");
        let (head, key) = token.split_once('\n').ok_or_else(bad)?;
        if key.is_empty() {
            return Err(bad());
        }
        let key = key.to_string();
        match (sort, head.split_at_checked(1)) {
            (Sort::Name, Some(("n", name))) => Ok(Cursor::Name { name: name.to_string(), key }),
            (Sort::Changed, Some(("c", at))) => Ok(Cursor::Changed { at: Micros(at.parse().map_err(|_| bad())?), key }),
            _ => Err(bad()),
        }
    }

    pub(crate) fn key(&self) -> &str {
        match self {
            Cursor::Name { key, .. } | Cursor::Changed { key, .. } => key,
        }
    }
}

/// Which side of a cursor a page lies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    /// The first page.
    Start,
    /// The page after this row.
    After(Cursor),
    /// The page before this row.
    Before(Cursor),
}

/// What a page of a list shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Browse {
    /// Only records whose name (settings: key or value; contexts: user)
    /// contains this, ignoring case.
    pub search: Option<String>,
    pub sort: Sort,
    pub from: From,
    /// Rows per page, 1 to [`MAX_BROWSE_ROWS`].
    pub limit: u32,
    /// Flows only: those of this app.
    pub app_id: Option<String>,
}

impl Browse {
    /// Checks the limit and the search's length.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if self.limit == 0 || self.limit > MAX_BROWSE_ROWS {
            return Err(StoreError::invalid("page_size", format!("1 to {MAX_BROWSE_ROWS}")));
        }
        if self.search.as_ref().is_some_and(|s| s.chars().count() > crate::validate::MAX_NAME_CHARS) {
            return Err(StoreError::invalid("search", "longer than 200 characters"));
        }
        Ok(())
    }

    /// The search text to match, `None` when there is none.
    pub(crate) fn needle(&self) -> Option<String> {
        self.search.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
    }

    /// Whether the rows come in the list's own order (`false`: reversed,
    /// for a page before a cursor).
    pub(crate) fn forward(&self) -> bool {
        !matches!(self.from, From::Before(_))
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowsePage {
    pub items: Vec<Record>,
    /// The page after this one, when there is one.
    pub next: Option<Cursor>,
    /// The page before this one, when there is one.
    pub previous: Option<Cursor>,
    /// How many records match the search in all.
    pub total: i64,
}

impl BrowsePage {
    /// The page from rows fetched one beyond the limit in the direction of
    /// `browse` (reversed when it reads backwards).
    pub(crate) fn from_rows(browse: &Browse, mut rows: Vec<Record>, total: i64) -> BrowsePage {
        let more = rows.len() > browse.limit as usize;
        rows.truncate(browse.limit as usize);
        if !browse.forward() {
            rows.reverse();
        }
        let first = rows.first().map(|r| Cursor::of(r, browse.sort));
        let last = rows.last().map(|r| Cursor::of(r, browse.sort));
        let (next, previous) = match &browse.from {
            From::Start => (last.filter(|_| more), None),
            // Came forward from a row: there are rows before this page.
            From::After(_) => (last.filter(|_| more), first),
            // Came back from a row: there are rows after this page.
            From::Before(_) => (last, first.filter(|_| more)),
        };
        BrowsePage { items: rows, next, previous, total }
    }
}

/// The condition of a cursor and the order of rows, in SQL common to both
/// engines: `name_expr` sorts by name, `changed_expr` by last change, `key`
/// is the key column; `p_value` and `p_key` are the cursor's parameters.
pub(crate) struct Order {
    /// `(x, key) > (p, k)` or the like; empty for the first page.
    pub condition: String,
    pub order_by: String,
}

impl Order {
    pub(crate) fn new(browse: &Browse, sort_expr: &str, key: &str, p_value: &str, p_key: &str) -> Order {
        // The list's own direction, and whether this page reads it backwards.
        let ascending = browse.sort == Sort::Name;
        let reading_up = ascending == browse.forward();
        let (cmp, dir) = if reading_up { (">", "ASC") } else { ("<", "DESC") };
        let condition = match browse.from {
            From::Start => String::new(),
            _ => format!("({sort_expr}, {key}) {cmp} ({p_value}, {p_key})"),
        };
        Order { condition, order_by: format!("{sort_expr} {dir}, {key} {dir}") }
    }
}

/// The sort expression of `kind` in `sort`: the name lowered (apps, flows),
/// the key (settings, contexts: compared as stored), or the change time.
pub(crate) fn sort_column(kind: Kind, sort: Sort, changed: &str) -> String {
    match (sort, kind.title_field()) {
        (Sort::Name, Some(title)) => format!("lower({title})"),
        (Sort::Name, None) => kind.table().key.name.to_string(),
        (Sort::Changed, _) => changed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_named() {
        let name = Cursor::Name { name: "Billing: desk 2".into(), key: "k.1".into() };
        assert_eq!(Cursor::parse("after", &name.token(), Sort::Name).unwrap(), name);
        let changed = Cursor::Changed { at: Micros(1_700_000_000_123_456), key: "0b3e".into() };
        assert_eq!(Cursor::parse("after", &changed.token(), Sort::Changed).unwrap(), changed);
        for bad in ["", "x", "nname", "nname\n", "cnot\nk"] {
            let err = Cursor::parse("after", bad, Sort::Name).unwrap_err().to_string();
            assert!(err.starts_with("after: "), "{err}");
        }
        assert!(Cursor::parse("after", &changed.token(), Sort::Name).is_err(), "a cursor of another order");
    }

    #[test]
    fn pages_read_backwards_are_put_in_order() {
        let app = |n: u32| {
            Record::App(crate::model::App {
                id: format!("{n}"),
                name: format!("app {n}"),
                description: String::new(),
                version: 1,
                updated_at: Micros(i64::from(n)),
            })
        };
        let at = |n: u32| Cursor::of(&app(n), Sort::Name);
        let browse = |from| Browse { search: None, sort: Sort::Name, from, limit: 2, app_id: None };
        // Forward from the start, three rows fetched: more follow.
        let page = BrowsePage::from_rows(&browse(From::Start), vec![app(1), app(2), app(3)], 5);
        assert_eq!((page.next, page.previous), (Some(at(2)), None));
        // Backwards from row 5: rows 4, 3 (and 2 beyond), shown as 3, 4.
        let page = BrowsePage::from_rows(&browse(From::Before(at(5))), vec![app(4), app(3), app(2)], 5);
        assert_eq!(page.items, vec![app(3), app(4)]);
        assert_eq!((page.next, page.previous), (Some(at(4)), Some(at(3))));
        // Backwards to the start: no page before.
        let page = BrowsePage::from_rows(&browse(From::Before(at(3))), vec![app(2), app(1)], 5);
        assert_eq!(page.previous, None);
        let order = Order::new(&browse(From::Before(at(3))), "lower(name)", "id", "$1", "$2");
        assert_eq!(order.condition, "(lower(name), id) < ($1, $2)");
        assert_eq!(order.order_by, "lower(name) DESC, id DESC");
    }
}

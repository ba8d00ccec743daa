//! What every list page shares: its query (`q`, `sort`, `after` or
//! `before`, `size`), the search form (a field labelled "Search" and the
//! order), and the pager ("Previous", "Next" and how many match). The store
//! reads one page at a time in a stable order (`dugong_store::browse`).

use std::collections::HashMap;

use dugong_store::browse::From;
use dugong_store::{Browse, BrowsePage, Cursor, Sort};
use maud::{html, Markup};

use super::html::with_query;

/// Rows per page unless `size` says otherwise.
pub const PAGE_SIZE: u32 = 50;

/// A list page's query, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    pub q: String,
    pub sort: Sort,
    pub from: From,
    pub size: u32,
}

impl ListParams {
    /// Reads the query of a list page; a bad value is named.
    pub fn parse(query: &HashMap<String, String>) -> Result<ListParams, String> {
        let get = |k: &str| query.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let sort = match get("sort") {
            None => Sort::Name,
            Some(s) => Sort::parse(s).ok_or_else(|| format!("sort: {s:?} is not an order; use name or changed"))?,
        };
        let size = match get("size") {
            None => PAGE_SIZE,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=dugong_store::browse::MAX_BROWSE_ROWS).contains(&n) => n,
                _ => return Err(format!("size: {s:?} is not a page size from 1 to 500")),
            },
        };
        // Cursors hold line breaks: read them untrimmed.
        let cursor = |k: &str| query.get(k).filter(|v| !v.is_empty());
        let from = match (cursor("after"), cursor("before")) {
            (Some(a), _) => From::After(Cursor::parse("after", a, sort).map_err(|e| e.to_string())?),
            (None, Some(b)) => From::Before(Cursor::parse("before", b, sort).map_err(|e| e.to_string())?),
            (None, None) => From::Start,
        };
        Ok(ListParams { q: get("q").unwrap_or("").to_string(), sort, from, size })
    }

    /// What to ask the store for.
    pub fn browse(&self, app_id: Option<String>) -> Browse {
        Browse {
            search: Some(self.q.clone()).filter(|q| !q.is_empty()),
            sort: self.sort,
            from: self.from.clone(),
            limit: self.size,
            app_id,
        }
    }

    /// This list at another position.
    fn link(&self, path: &str, position: (&str, &str)) -> String {
        let size = if self.size == PAGE_SIZE { String::new() } else { self.size.to_string() };
        let sort = if self.sort == Sort::Name { "" } else { self.sort.as_str() };
        with_query(path, &[("q", &self.q), ("sort", sort), ("size", &size), position])
    }
}

/// The search form of a list at `path`: `hint` says what the search looks at.
pub fn search_form(path: &str, p: &ListParams, hint: &str, extra: Markup) -> Markup {
    html! {
        form.search method="get" action=(path) role="search" {
            (extra)
            p {
                label for="q" { "Search" }
                input #q type="search" name="q" value=(p.q) placeholder=(hint) maxlength="200";
            }
            p {
                label for="sort" { "Sort by" }
                select #sort name="sort" {
                    option value="name" selected[p.sort == Sort::Name] { "Name" }
                    option value="changed" selected[p.sort == Sort::Changed] { "Last change" }
                }
            }
            @if p.size != PAGE_SIZE { input type="hidden" name="size" value=(p.size); }
            p.go { button type="submit" { "Search" } @if !p.q.is_empty() { " " a href=(path) { "Clear" } } }
        }
    }
}

/// How many match, and the links to the pages before and after: below the
/// list (with the ids scripts and tests use).
pub fn pager(path: &str, p: &ListParams, page: &BrowsePage, noun: &str) -> Markup {
    pager_nav(path, p, page, noun, true)
}

/// [`pager`] above the list too, so a long page need not be scrolled to see
/// how many match or to move on.
pub fn pager_above(path: &str, p: &ListParams, page: &BrowsePage, noun: &str) -> Markup {
    pager_nav(path, p, page, noun, false)
}

fn pager_nav(path: &str, p: &ListParams, page: &BrowsePage, noun: &str, ids: bool) -> Markup {
    let matching = if p.q.is_empty() { String::new() } else { format!(" matching “{}”", p.q) };
    let id = |name: &'static str| ids.then_some(name);
    html! {
        nav.pager aria-label=(if ids { "Pages" } else { "Pages (top)" }) {
            span.count id=[id("count")] { (page.items.len()) " shown of " (page.total) " " (noun) (matching) }
            @if let Some(c) = &page.previous {
                a id=[id("previous")] rel="prev" href=(p.link(path, ("before", &c.token()))) { "← Previous" }
            }
            @if let Some(c) = &page.next {
                a id=[id("next")] rel="next" href=(p.link(path, ("after", &c.token()))) { "Next →" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn list_queries_are_read_and_bad_ones_named() {
        let p = ListParams::parse(&query(&[])).unwrap();
        assert_eq!((p.sort, p.size, &p.from), (Sort::Name, PAGE_SIZE, &From::Start));
        let p = ListParams::parse(&query(&[("q", " bill "), ("sort", "changed"), ("after", "c12\nk")])).unwrap();
        assert_eq!(p.q, "bill");
        assert!(matches!(p.from, From::After(Cursor::Changed { .. })));
        assert!(ListParams::parse(&query(&[("sort", "size")])).unwrap_err().starts_with("sort:"));
        assert!(ListParams::parse(&query(&[("size", "0")])).unwrap_err().starts_with("size:"));
        assert!(ListParams::parse(&query(&[("after", "garbage")])).unwrap_err().starts_with("after:"));
        let link = p.link("/apps", ("before", "c5\nk"));
        assert_eq!(link, "/apps?q=bill&sort=changed&before=c5%0Ak");
    }
}

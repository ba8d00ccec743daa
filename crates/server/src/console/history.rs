//! The history of apps, flows and settings in the console: the latest
//! versions on each record's page, every version a page at a time, one
//! version with its content beside the current one, and restoring a version
//! as a new change (a new version, audited and replicated like any save).
//! Also how the console shows a record's content, which the conflicts pages
//! share.

use std::collections::HashMap;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use dugong_store::{AuditCursor, HistoryEntry, HistoryQuery, Kind, Record, StoreError};
use maud::{html, Markup};

use super::html::{self, url_component, when, with_query, Notice, Section};
use super::session::Change;
use super::view::{failure, message_page, Ctx};
use crate::error::ApiError;
use crate::ops;

/// Versions shown on a record's own page.
const ON_RECORD_PAGE: u32 = 10;
/// Versions on one page of a record's history.
const PAGE: u32 = 50;

/// Where a record's page is.
pub fn record_path(kind: Kind, key: &str) -> String {
    format!("/{}/{}", kind.as_str(), url_component(key))
}

/// The navigation entry of a kind's pages.
pub fn section_of(kind: Kind) -> Section {
    match kind {
        Kind::App => Section::Apps,
        Kind::Flow => Section::Flows,
        Kind::Setting => Section::Settings,
        Kind::Context => Section::Contexts,
    }
}

/// A record's content as the console shows it (read-only).
pub fn content(record: &Record) -> Markup {
    match record {
        Record::App(a) => html! {
            dl.content {
                dt { "Name" } dd.name { (a.name) }
                dt { "Description" } dd { pre.text { (a.description) } }
            }
        },
        Record::Flow(f) => html! {
            dl.content {
                dt { "Name" } dd.name { (f.name) }
                dt { "App" } dd { a href=(record_path(Kind::App, &f.app_id)) { span.key { (f.app_id) } } }
            }
            pre.code.saved.script tabindex="0" aria-label="Script" { (f.script) }
        },
        Record::Setting(s) => html! {
            pre.code.saved.value tabindex="0" aria-label="Value" {
                (serde_json::to_string_pretty(&s.value).unwrap_or_default())
            }
        },
        Record::Context(c) => html! {
            table.entries {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } } }
                tbody { @for (k, v) in &c.values { tr { td { (k) } td { (v) } } } }
            }
        },
    }
}

/// Who wrote a version, and where.
fn origin(e: &HistoryEntry) -> Markup {
    html! {
        @if e.action == dugong_store::history::RECORDED {
            span.hint { "as it was when history began" }
        } @else {
            (e.actor) " " span.hint { (e.actor_kind) } " on site " strong.site { (e.site) }
        }
    }
}

/// A table of versions.
fn versions(entries: &[HistoryEntry]) -> Markup {
    html! {
        div.scroll {
            table #history {
                thead { tr {
                    th scope="col" { "Version" } th scope="col" { "Saved" } th scope="col" { "By" }
                    th scope="col" { "Change" } th scope="col" { "Note" }
                } }
                tbody {
                    @for e in entries {
                        tr {
                            td { a href=(format!("/history/{}", e.id)) { "version " (e.version) } }
                            td { (when(e.at)) }
                            td { (origin(e)) }
                            td class=[(e.is_deletion()).then_some("bad")] { (e.action) }
                            td { (e.detail) }
                        }
                    }
                }
            }
        }
    }
}

/// The history section of a record's page: its latest versions, a link to
/// all of them, and to the record's conflicts.
pub async fn section(ctx: &Ctx, kind: Kind, key: &str) -> Markup {
    let query = HistoryQuery { kind, key: key.to_string(), after: None, limit: ON_RECORD_PAGE };
    let all = with_query("/history", &[("kind", kind.as_str()), ("key", key)]);
    let conflicts = with_query("/conflicts", &[("kind", kind.as_str()), ("key", key)]);
    html! {
        section.history aria-labelledby="history-h" {
            h2 #history-h { "History" }
            @match ctx.state.store.history(&query).await {
                Ok(page) if page.items.is_empty() => p.empty { "No versions recorded yet: the next save starts the history." },
                Ok(page) => {
                    (versions(&page.items))
                    @if page.next.is_some() { p { a #all-versions href=(all) { "All versions" } } }
                }
                Err(e) => p.notice.error { "The history cannot be read: " (e.to_string()) },
            }
            p { a #record-conflicts href=(conflicts) { "Cross-site conflicts of this " (kind.singular()) } }
        }
    }
}

/// `/history?kind=&key=`: every version of a record, newest first.
pub async fn list(ctx: Ctx, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let Some(kind) = Kind::parse(get("kind")).filter(|k| k.keeps_history()) else {
        return message_page(&ctx, StatusCode::BAD_REQUEST, "Not accepted", "kind: one of apps, flows, settings");
    };
    let key = match ops::parse_key(kind, "key", get("key")) {
        Ok(k) => k,
        Err(e) => return failure(&ctx, &e.into()),
    };
    let after = match get("after") {
        "" => None,
        token => match AuditCursor::parse("after", token) {
            Ok(c) => Some(c),
            Err(e) => return failure(&ctx, &e.into()),
        },
    };
    let page = match ctx.state.store.history(&HistoryQuery { kind, key: key.clone(), after, limit: PAGE }).await {
        Ok(p) => p,
        Err(e) => return failure(&ctx, &e.into()),
    };
    let body = html! {
        p.meta { a href=(record_path(kind, &key)) { "Back to the " (kind.singular()) } }
        @if page.items.is_empty() { p.empty { "No versions recorded." } } @else { (versions(&page.items)) }
        @if let Some(next) = &page.next {
            p { a #older href=(with_query("/history", &[("kind", kind.as_str()), ("key", &key), ("after", next)])) { "Older versions" } }
        }
    };
    ctx.page(section_of(kind), &format!("History of {} {key}", kind.singular()), &Notice::None, body)
}

/// `/history/{id}`: one version, beside the record as it is now, with a
/// button that restores it.
pub async fn version(ctx: Ctx, Path(id): Path<String>) -> Response {
    let entry = match ctx.state.store.history_entry(&id).await {
        Ok(Some(e)) => e,
        Ok(None) => return message_page(&ctx, StatusCode::NOT_FOUND, "Not found", "no such version"),
        Err(e) => return failure(&ctx, &e.into()),
    };
    let current = match ctx.state.store.get(entry.kind, &entry.key).await {
        Ok(r) => r,
        Err(e) => return failure(&ctx, &e.into()),
    };
    let kind = entry.kind;
    let same = current.as_ref().zip(entry.record.as_ref()).is_some_and(|(c, v)| same_content(c, v));
    let body = html! {
        p.meta {
            a href=(record_path(kind, &entry.key)) { "The " (kind.singular()) " now" } " · "
            a href=(with_query("/history", &[("kind", kind.as_str()), ("key", &entry.key)])) { "All versions" }
        }
        p.meta { "Version " strong #version { (entry.version) } ", " (entry.action) " " (when(entry.at)) " by " (origin(&entry))
            @if !entry.detail.is_empty() { " (" (entry.detail) ")" } }
        div.conflict {
            section aria-labelledby="this-h" {
                h2 #this-h { "This version" }
                @match &entry.record { Some(r) => (content(r)), None => p { "The " (kind.singular()) " was deleted." } }
            }
            section #theirs aria-labelledby="now-h" {
                h2 #now-h { @match &current { Some(c) => { "Now: version " (c.version()) }, None => "Now: deleted" } }
                @if let Some(c) = &current { (content(c)) }
            }
        }
        @if let Some(record) = &entry.record {
            @if same {
                p.hint { "The " (kind.singular()) " holds this content now." }
            } @else {
                form.record method="post" action=(format!("/history/{}/restore", entry.id)) {
                    (ctx.csrf())
                    input type="hidden" name="version" value=(current.as_ref().map_or(0, Record::version));
                    p { button #restore type="submit" { "Restore this version" } }
                    p.hint { "Saves this content as a new version of " (record.title()) ", on this site; it replicates like any save." }
                }
            }
        }
    };
    ctx.page(
        section_of(kind),
        &format!("{} {}: version {}", kind.singular(), entry.key, entry.version),
        &Notice::None,
        body,
    )
}

/// Whether two versions hold the same content (versions and times aside).
fn same_content(a: &Record, b: &Record) -> bool {
    dugong_store::history::content(a) == dugong_store::history::content(b)
}

/// `POST /history/{id}/restore`: writes the version's content as a new
/// version, if the record is still at the version the page showed.
pub async fn restore(ctx: Ctx, Path(id): Path<String>, change: Change) -> Response {
    let entry = match ctx.state.store.history_entry(&id).await {
        Ok(Some(e)) => e,
        Ok(None) => return message_page(&ctx, StatusCode::NOT_FOUND, "Not found", "no such version"),
        Err(e) => return failure(&ctx, &e.into()),
    };
    let Some(record) = &entry.record else {
        return message_page(&ctx, StatusCode::BAD_REQUEST, "Not accepted", "a deletion cannot be restored");
    };
    let expected = change.fields.get("version").trim().parse::<i64>().unwrap_or(0);
    let note = format!("restored version {} of {}", entry.version, html::utc(entry.at));
    match ops::put_noted(&ctx.state, &change.who, record.to_input(), Some(expected), &note).await {
        Ok(r) => {
            let to = with_query(&record_path(r.kind(), r.key()), &[("saved", &r.version().to_string())]);
            Redirect::to(&to).into_response()
        }
        Err(ApiError::Store(StoreError::Conflict { current, .. })) => message_page(
            &ctx,
            StatusCode::CONFLICT,
            "Not restored",
            &format!(
                "The {} changed (now version {current}) after you opened this page. Nothing was written: look at it again.",
                entry.kind.singular()
            ),
        ),
        Err(e) => failure(&ctx, &e),
    }
}

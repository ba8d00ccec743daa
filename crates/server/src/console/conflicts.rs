//! Cross-site conflicts, from the replicator's conflict log in this site's
//! database (every database of a sync holds the same log): a list, newest
//! first (all, or one record's), and one conflict with both versions side by
//! side — which database and site wrote each, when it committed, which won
//! and why — and a button that restores the losing version.
//!
//! Restoring writes the losing version as a new change of the record through
//! the store (a new version, with its audit entry and history row noting the
//! conflict), so it replicates to every site like any save; this database's
//! log marks the conflict restored, and the note in the history (which
//! replicates) tells every other site's console. Rows of tables that are not
//! the server's own are restored with `dugong conflicts restore ID`.

use std::collections::HashMap;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use dugong_store::{
    ConflictCursor, ConflictQuery, ConflictSide, Expect, HistoryEntry, HistoryQuery, Kind, LoggedConflict, Record,
    StoreError,
};
use maud::{html, Markup};

use super::history::{self, record_path};
use super::html::{when, with_query, Notice, Section};
use super::session::Change;
use super::view::{failure, message_page, Ctx};
use crate::error::ApiError;
use crate::ops;

/// Conflicts on one page.
const PAGE: u32 = 50;
/// Versions of a record searched for the sites of a conflict's versions.
const HISTORY_SEARCHED: u32 = 200;

/// The record a conflict is about, when it is one of the server's.
fn record_of(c: &LoggedConflict) -> Option<(Kind, &str)> {
    match (c.kind, c.key.as_slice()) {
        (Some(kind), [key]) => Some((kind, key.as_str())),
        _ => None,
    }
}

/// Why a conflict cannot be restored from here, if it cannot.
fn not_restorable(c: &LoggedConflict) -> Option<String> {
    if c.id.is_empty() || !c.versions {
        return Some("an earlier replicator logged it without its versions".into());
    }
    match c.conflict.as_str() {
        "delete/delete" => return Some("both sides deleted the row: there is no losing version".into()),
        "foreign key" => return Some("a foreign-key conflict names two rows: repair them by hand".into()),
        _ => {}
    }
    match record_of(c) {
        Some(_) => None,
        None => Some(format!(
            "{} is not one of the server's tables: restore it with `dugong conflicts restore {}`",
            c.table, c.id
        )),
    }
}

fn key_text(c: &LoggedConflict) -> String {
    c.key.join(", ")
}

/// `/conflicts`: every conflict of the log, or one record's (`kind`, `key`).
pub async fn list(ctx: Ctx, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let record = match (get("kind").map(Kind::parse), get("key")) {
        (None, _) => None,
        (Some(Some(kind)), Some(key)) => match ops::parse_key(kind, "key", key) {
            Ok(key) => Some((kind, key)),
            Err(e) => return failure(&ctx, &e.into()),
        },
        _ => {
            return message_page(
                &ctx,
                StatusCode::BAD_REQUEST,
                "Not accepted",
                "kind and key: one of apps, flows, settings, contexts, and a record's key",
            )
        }
    };
    let before = match get("before").map(|t| ConflictCursor::parse("before", t)).transpose() {
        Ok(b) => b,
        Err(e) => return failure(&ctx, &e.into()),
    };
    let query = ConflictQuery { record: record.clone(), before, limit: PAGE };
    let page = match ctx.state.store.conflicts(&query).await {
        Ok(p) => p,
        Err(e) => return failure(&ctx, &e.into()),
    };
    let (kind_q, key_q) = record.as_ref().map_or(("", ""), |(k, key)| (k.as_str(), key.as_str()));
    let body = html! {
        p.hint {
            "Rows that two sites changed before either change reached the other. The replicator kept one version "
            "everywhere (" em { "the winner" } ") and logged the other; restore it to write it back as a new change."
        }
        @if let Some((kind, key)) = &record {
            p.meta { "Conflicts of " (kind.singular()) " " a href=(record_path(*kind, key)) { span.key { (key) } } " · " a href="/conflicts" { "All conflicts" } }
        }
        @if page.items.is_empty() {
            p.empty #no-conflicts { "No conflicts logged." }
        } @else {
            div.scroll { table #conflicts {
                thead { tr {
                    th scope="col" { "Logged" } th scope="col" { "Record" } th scope="col" { "Kind" }
                    th scope="col" { "Won" } th scope="col" { "Lost" } th scope="col" { "Why" } th scope="col" { "" }
                } }
                tbody { @for c in &page.items { tr {
                    td { (when(c.at)) }
                    td {
                        (c.table) " "
                        @match record_of(c) {
                            Some((kind, key)) => a href=(record_path(kind, key)) { span.key { (key) } },
                            None => span.key { (key_text(c)) },
                        }
                    }
                    td { (c.conflict) }
                    td.good { (c.winner.database) }
                    td { (c.loser.database) }
                    td { (c.reason) }
                    td {
                        @if !c.id.is_empty() { a.both href=(format!("/conflicts/{}", c.id)) { "Both versions" } }
                        @if c.restored_at.is_some() { " " span.good { "restored" } }
                    }
                } } }
            } }
        }
        @if let Some(next) = &page.next {
            p { a #older href=(with_query("/conflicts", &[("kind", kind_q), ("key", key_q), ("before", next)])) { "Older conflicts" } }
        }
    };
    ctx.page(Section::Conflicts, "Conflicts", &Notice::None, body)
}

/// The history entry of `record`'s site for `side`'s version: the same
/// version number and content.
fn site_of<'a>(versions: &'a [HistoryEntry], record: Option<&Record>) -> Option<&'a HistoryEntry> {
    let record = record?;
    let content = dugong_store::history::content(record);
    versions.iter().find(|e| {
        e.version == record.version()
            && e.record.as_ref().is_some_and(|r| dugong_store::history::content(r) == content)
            && !e.site.is_empty()
    })
}

/// One side of a conflict: its database, site (when the history knows),
/// commit time and version.
fn side(ctx: &Ctx, c: &LoggedConflict, s: &ConflictSide, versions: &[HistoryEntry], won: bool) -> Markup {
    let record = ctx.state.store.logged_record(c, s).ok().flatten();
    let site = site_of(versions, record.as_ref());
    let id = if won { "winner" } else { "loser" };
    html! {
        section id=(id) aria-labelledby=(format!("{id}-h")) {
            h2 id=(format!("{id}-h")) {
                @if won { "Won: " } @else { "Lost: " }
                (s.database)
                @if let Some(e) = site { " (site " (e.site) ")" }
            }
            p.meta {
                "Committed " @match s.committed { Some(t) => (when(t)), None => "at an unknown time" }
                @if let Some(e) = site { ", by " (e.actor) }
                @if let Some(r) = &record { ", version " (r.version()) }
            }
            @match (&record, &s.row) {
                (Some(r), _) => (history::content(r)),
                (None, Some(row)) => pre.code.saved tabindex="0" { (serde_json::to_string_pretty(row).unwrap_or_default()) },
                (None, None) => p.deleted { "Deleted the row." },
            }
        }
    }
}

/// Versions of the conflict's record in the history (for sites and for
/// whether it was restored).
async fn versions_of(ctx: &Ctx, c: &LoggedConflict) -> Vec<HistoryEntry> {
    match record_of(c) {
        Some((kind, key)) if kind.keeps_history() => {
            let q = HistoryQuery { kind, key: key.to_string(), after: None, limit: HISTORY_SEARCHED };
            ctx.state.store.history(&q).await.map(|p| p.items).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// The note a restore leaves in the audit entry and history row.
fn restore_note(c: &LoggedConflict) -> String {
    format!("restored the losing version of conflict {} (from {})", c.id, c.loser.database)
}

async fn find(ctx: &Ctx, id: &str) -> Result<LoggedConflict, Response> {
    let id = id.trim().to_ascii_lowercase();
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(message_page(ctx, StatusCode::BAD_REQUEST, "Not accepted", "not a conflict id"));
    }
    match ctx.state.store.conflict(&id).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(message_page(ctx, StatusCode::NOT_FOUND, "Not found", "no such conflict in this site's log")),
        Err(e) => Err(failure(ctx, &e.into())),
    }
}

/// `/conflicts/{id}`: both versions, and the restore button.
pub async fn conflict(ctx: Ctx, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let c = match find(&ctx, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let versions = versions_of(&ctx, &c).await;
    let note = restore_note(&c);
    let restored_here = versions.iter().find(|e| e.detail == note);
    let current = match record_of(&c) {
        Some((kind, key)) => ctx.state.store.get(kind, key).await.ok().flatten(),
        None => None,
    };
    let blocked = not_restorable(&c);
    let body = html! {
        p.meta {
            "Sync " (c.sync) ", table " (c.table) ", key " span.key { (key_text(&c)) } " · logged " (when(c.at))
            @if let Some((kind, key)) = record_of(&c) { " · " a href=(record_path(kind, key)) { "The " (kind.singular()) " now" } }
        }
        p #conflict-kind { strong { (c.conflict) } ": " (c.winner.database) " won because of " em #reason { (c.reason) } "." }
        div.conflict #both {
            (side(&ctx, &c, &c.winner, &versions, true))
            (side(&ctx, &c, &c.loser, &versions, false))
        }
        @if let Some(e) = restored_here {
            p.notice.ok #restored { "The losing version was restored as version " (e.version) " " (when(e.at)) " on site " (e.site) " by " (e.actor) "." }
        } @else if let Some(at) = c.restored_at {
            p.notice.ok #restored { "Restored " (when(at)) " (with dugong conflicts restore)." }
        } @else if let Some(why) = &blocked {
            p.hint #not-restorable { "Not restorable here: " (why) "." }
        } @else {
            form.record method="post" action=(format!("/conflicts/{}/restore", c.id)) {
                (ctx.csrf())
                input type="hidden" name="version" value=(current.as_ref().map_or(0, Record::version));
                @if q.contains_key("changed") { input type="hidden" name="force" value="1"; }
                p { button #restore type="submit" {
                    @if q.contains_key("changed") { "Restore the losing version anyway" } @else { "Restore the losing version" }
                } }
                p.hint { "Writes the losing version as a new change on this site; it replicates to every site." }
            }
        }
    };
    let notice = match (q.get("restored"), q.contains_key("changed")) {
        (Some(v), _) if v == "deleted" => {
            Notice::Ok("Restored: the record is deleted again, as the losing side had it.".into())
        }
        (Some(v), _) => Notice::Ok(format!("Restored: the record is now at version {v}.")),
        (_, true) => Notice::Error(
            "The record changed since the conflict: restoring would overwrite that change too. Look at it first; \
             the button below restores anyway."
                .into(),
        ),
        _ => Notice::None,
    };
    ctx.page(Section::Conflicts, &format!("Conflict {}", c.id), &notice, body)
}

/// `POST /conflicts/{id}/restore`: the losing version written back as a
/// new change, if the record still holds what won (unless `force`).
pub async fn restore(ctx: Ctx, Path(id): Path<String>, change: Change) -> Response {
    let c = match find(&ctx, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(why) = not_restorable(&c) {
        return message_page(&ctx, StatusCode::BAD_REQUEST, "Not restorable", &why);
    }
    let Some((kind, key)) = record_of(&c) else {
        return message_page(&ctx, StatusCode::BAD_REQUEST, "Not restorable", "not one of the server's records");
    };
    let (winner, loser) = match (ctx.state.store.logged_record(&c, &c.winner), ctx.state.store.losing_record(&c)) {
        (Ok(w), Ok(l)) => (w, l),
        (Err(e), _) | (_, Err(e)) => return failure(&ctx, &e.into()),
    };
    let current = match ctx.state.store.get(kind, key).await {
        Ok(r) => r,
        Err(e) => return failure(&ctx, &e.into()),
    };
    let content = |r: &Option<Record>| r.as_ref().map(dugong_store::history::content);
    let force = change.fields.get("force") == "1";
    if content(&current) != content(&winner) && !force {
        return Redirect::to(&format!("/conflicts/{}?changed=1", c.id)).into_response();
    }
    let expected = change.fields.get("version").trim().parse::<i64>().unwrap_or(0);
    let note = restore_note(&c);
    // The version the record is at after the restore ("deleted" when the loser had deleted it).
    let written: Result<String, ApiError> = match (&loser, &current) {
        (Some(record), _) => ops::put_noted(&ctx.state, &change.who, record.to_input(), Some(expected), &note)
            .await
            .map(|r| r.version().to_string()),
        (None, None) => Ok("deleted".to_string()),
        (None, Some(_)) => ctx
            .state
            .store
            .delete_noted(&change.who, kind, key, Expect::from_option(Some(expected)).unwrap_or(Expect::Any), &note)
            .await
            .map(|_| "deleted".to_string())
            .map_err(ApiError::from),
    };
    match written {
        Ok(version) => {
            if let Err(e) = ctx.state.store.mark_conflict_restored(&c.id).await {
                // The history's note says it on every site; this log's mark is a convenience.
                tracing::warn!(error = %e, conflict = %c.id, "could not mark the conflict restored in this site's log");
            }
            Redirect::to(&with_query(&format!("/conflicts/{}", c.id), &[("restored", &version)])).into_response()
        }
        Err(ApiError::Store(StoreError::Conflict { .. } | StoreError::NotFound { .. })) => {
            Redirect::to(&format!("/conflicts/{}?changed=1", c.id)).into_response()
        }
        Err(e) => failure(&ctx, &e),
    }
}

//! The audit log page: every change made through the API or the console, and
//! every login, failed login, logout and lockout, from every site (the log
//! replicates), newest first, filtered by actor, action, resource, record and
//! time.

use std::collections::HashMap;

use axum::extract::Query;
use axum::response::Response;
use dugong_store::Action;
use maud::html;

use super::html::{when, with_query, Notice, Section};
use super::view::{failure, Ctx};
use crate::ops::{self, AuditFilter};

/// Entries on one page.
const PAGE: u32 = 100;

pub async fn audit(ctx: Ctx, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let filter = AuditFilter {
        actor: get("actor"),
        action: get("action"),
        resource: get("resource"),
        key: get("key"),
        site: get("site"),
        since: get("since"),
        until: get("until"),
    };
    let token = get("page_token").unwrap_or_default();
    let page = match ops::audit(&ctx.state, &filter, PAGE, &token).await {
        Ok(p) => p,
        Err(e) => return failure(&ctx, &e),
    };
    let field = |name: &str, label: &str, value: &Option<String>, hint: &str| {
        html! {
            p { label for=(name) { (label) } input id=(name) name=(name) value=(value.as_deref().unwrap_or("")) placeholder=(hint); }
        }
    };
    let older = page.next.as_ref().map(|next| {
        let mut params: Vec<(&str, &str)> = q
            .iter()
            .filter(|(k, v)| k.as_str() != "page_token" && !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        params.sort();
        params.push(("page_token", next));
        with_query("/audit", &params)
    });
    let body = html! {
        form.filters #audit-filters method="get" action="/audit" {
            (field("actor", "Actor", &filter.actor, "token or user name"))
            p { label for="action" { "Action" } select #action name="action" {
                option value="" { "any" }
                @for a in Action::ALL { option selected[filter.action.as_deref() == Some(a.as_str())] { (a.as_str()) } }
            } }
            (field("resource", "Resource", &filter.resource, "apps, flows, settings, contexts, users, console"))
            (field("key", "Record", &filter.key, "key, id or user"))
            (field("site", "Site", &filter.site, "any"))
            (field("since", "Since", &filter.since, "2024-05-01T00:00:00Z"))
            (field("until", "Until", &filter.until, ""))
            p { button type="submit" { "Filter" } " " a href="/audit" { "Clear" } }
        }
        @if page.items.is_empty() {
            p.empty { "No entries." }
        } @else {
            div.scroll { table #audit {
                thead { tr { @for c in ["Time", "Site", "Actor", "From", "Action", "Resource", "Record", "Version", "Detail"] {
                    th scope="col" { (c) }
                } } }
                tbody { @for e in &page.items { tr {
                    td { (when(e.at)) }
                    td { (e.site) }
                    td { (e.actor) " " span.hint { (e.actor_kind) } }
                    td { (e.peer) }
                    td class=(match e.action.as_str() { "login_failed" | "lockout" | "delete" | "disable" => "bad", _ => "good" }) { (e.action) }
                    td { (e.resource) }
                    td { (e.key) }
                    td { @if let Some(v) = e.version { (v) } }
                    td { (e.detail) }
                } } }
            } }
        }
        @if let Some(href) = &older { p { a #older href=(href) { "Older entries" } } }
    };
    ctx.page(Section::Audit, "Audit log", &Notice::None, body)
}

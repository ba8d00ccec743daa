//! The audit log page: every change made through the API or the console, and
//! every login, failed login, logout and lockout, from every site (the log
//! replicates), newest first, filtered by actor, action, resource, record and
//! time.

use std::collections::HashMap;

use axum::extract::Query;
use axum::response::Response;
use dugong_store::Action;

use super::html::{self, esc, Cell, Notice, Section};
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
        format!(
            "<p><label for=\"{name}\">{label}</label><input id=\"{name}\" name=\"{name}\" value=\"{}\" placeholder=\"{hint}\"></p>",
            esc(value.as_deref().unwrap_or(""))
        )
    };
    let actions: String = std::iter::once(String::from("<option value=\"\">any</option>"))
        .chain(Action::ALL.iter().map(|a| {
            let selected = if filter.action.as_deref() == Some(a.as_str()) { " selected" } else { "" };
            format!("<option{selected}>{}</option>", a.as_str())
        }))
        .collect();
    let mut body = format!(
        "<form method=\"get\" action=\"/audit\" class=\"filters\" id=\"audit-filters\">{}\
         <p><label for=\"action\">Action</label><select id=\"action\" name=\"action\">{actions}</select></p>{}{}{}{}{}\
         <p><button type=\"submit\">Filter</button> <a href=\"/audit\">Clear</a></p></form>",
        field("actor", "Actor", &filter.actor, "token or user name"),
        field("resource", "Resource", &filter.resource, "apps, flows, settings, contexts, users, console"),
        field("key", "Record", &filter.key, "key, id or user"),
        field("site", "Site", &filter.site, "any"),
        field("since", "Since", &filter.since, "2024-05-01T00:00:00Z"),
        field("until", "Until", &filter.until, ""),
    );
    if page.items.is_empty() {
        body.push_str("<p class=\"empty\">No entries.</p>");
    } else {
        let rows = page.items.iter().map(|e| {
            let class = match e.action.as_str() {
                "login_failed" | "lockout" | "delete" | "disable" => "bad",
                _ => "good",
            };
            vec![
                html::time(e.at).into(),
                esc(&e.site).into(),
                format!("{} <span class=\"hint\">{}</span>", esc(&e.actor), esc(&e.actor_kind)).into(),
                esc(&e.peer).into(),
                Cell::classed(class, esc(&e.action)),
                esc(&e.resource).into(),
                esc(&e.key).into(),
                e.version.map_or(String::new(), |v| v.to_string()).into(),
                esc(&e.detail).into(),
            ]
        });
        let columns = ["Time", "Site", "Actor", "From", "Action", "Resource", "Record", "Version", "Detail"];
        body.push_str(&html::table("audit", &columns, rows));
    }
    if let Some(next) = &page.next {
        let mut params: Vec<(String, String)> = q
            .iter()
            .filter(|(k, v)| k.as_str() != "page_token" && !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        params.sort();
        params.push(("page_token".into(), next.clone()));
        let query: Vec<String> =
            params.iter().map(|(k, v)| format!("{}={}", html::url_component(k), html::url_component(v))).collect();
        body.push_str(&format!("<p><a id=\"older\" href=\"/audit?{}\">Older entries</a></p>", esc(&query.join("&"))));
    }
    ctx.page(Section::Audit, "Audit log", &Notice::None, &body)
}

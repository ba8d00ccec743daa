//! Apps and their flows: lists that page, sort and search, forms, the script
//! editor, and each record's history. Every save sends the version the form
//! was made from; when someone saved first (here or on another site,
//! replicated), the page says so and shows both texts, and nothing typed is
//! lost. Names are unique (apps; the flows of one app): a taken one is
//! refused on the form, with what was typed kept.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use dugong_store::{App, Flow, Input, Kind, Record, StoreError};
use maud::{html, Markup};

use super::history;
use super::html::{url_component, when, with_query, Notice, Section};
use super::list::{pager, pager_above, search_form, ListParams};
use super::session::Change;
use super::view::{conflict_page, failure, message_page, Ctx};
use crate::error::ApiError;
use crate::ops;

/// Longest description shown in a list before it is cut.
const PREVIEW_CHARS: usize = 120;

/// The `expected_version` a form carried.
pub(super) fn form_version(change: &Change) -> Option<i64> {
    change.fields.get("version").trim().parse().ok()
}

/// `text` cut to `PREVIEW_CHARS` characters.
pub(super) fn preview(text: &str) -> String {
    if text.chars().count() > PREVIEW_CHARS {
        text.chars().take(PREVIEW_CHARS).chain("…".chars()).collect()
    } else {
        text.to_string()
    }
}

pub(super) fn notice_from(query: &HashMap<String, String>) -> Notice {
    if let Some(v) = query.get("saved") {
        Notice::Ok(format!("Saved: version {v}."))
    } else if let Some(name) = query.get("deleted") {
        Notice::Ok(format!("Deleted {name}."))
    } else {
        Notice::None
    }
}

/// The refusal of a write the store found wrong (a field, a taken name), on
/// the form that was sent.
fn refused(ctx: &Ctx, section: Section, title: &str, e: &StoreError, form: Markup) -> Response {
    let status = match e {
        StoreError::Duplicate { .. } => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, ctx.page(section, title, &Notice::Error(e.to_string()), form)).into_response()
}

pub async fn apps(ctx: Ctx, Query(q): Query<HashMap<String, String>>) -> Response {
    let params = match ListParams::parse(&q) {
        Ok(p) => p,
        Err(m) => return message_page(&ctx, StatusCode::BAD_REQUEST, "Not accepted", &m),
    };
    let page = match ctx.state.store.browse(Kind::App, &params.browse(None)).await {
        Ok(p) => p,
        Err(e) => return failure(&ctx, &e.into()),
    };
    let body = html! {
        p.actions { a.button #new-app href="/apps/new" { "New app" } }
        (search_form("/apps", &params, "part of a name", html! {}))
        @if page.items.is_empty() {
            p.empty { @if params.q.is_empty() { "No apps yet." } @else { "No app matches." } }
        } @else {
            (pager_above("/apps", &params, &page, "apps"))
            div.scroll { table #apps {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Description" }
                    th scope="col" { "Version" } th scope="col" { "Updated" }
                } }
                tbody { @for r in &page.items { @if let Record::App(a) = r { tr {
                    td { a href=(format!("/apps/{}", a.id)) { (a.name) } }
                    td { (preview(&a.description)) }
                    td { (a.version) }
                    td { (when(a.updated_at)) }
                } } } }
            } }
        }
        (pager("/apps", &params, &page, "apps"))
    };
    ctx.page(Section::Apps, "Apps", &notice_from(&q), body)
}

fn app_form(ctx: &Ctx, action: &str, name: &str, description: &str, version: Option<i64>, button: &str) -> Markup {
    html! {
        form.record method="post" action=(action) {
            (ctx.csrf())
            @if let Some(v) = version { input type="hidden" name="version" value=(v); }
            p { label for="name" { "Name" } input #name name="name" required maxlength="200" value=(name); }
            p { label for="description" { "Description" } textarea #description name="description" rows="3" { "\n" (description) } }
            p { button #save type="submit" { (button) } }
        }
    }
}

pub async fn new_app(ctx: Ctx) -> Response {
    let body = app_form(&ctx, "/apps", "", "", None, "Create app");
    ctx.page(Section::Apps, "New app", &Notice::None, body)
}

pub async fn create_app(ctx: Ctx, change: Change) -> Response {
    let (name, description) = (change.fields.get("name"), change.fields.text("description"));
    let id = uuid::Uuid::new_v4().to_string();
    match ops::put(&ctx.state, &change.who, Input::app(&id, name, &description), Some(0)).await {
        Ok(r) => Redirect::to(&format!("/apps/{}?saved={}", r.key(), r.version())).into_response(),
        Err(ApiError::Store(e @ (StoreError::Invalid { .. } | StoreError::Duplicate { .. }))) => {
            let form = app_form(&ctx, "/apps", name, &description, None, "Create app");
            refused(&ctx, Section::Apps, "New app", &e, form)
        }
        Err(e) => failure(&ctx, &e),
    }
}

async fn get_app(ctx: &Ctx, id: &str) -> Result<App, Response> {
    match ops::get(&ctx.state, Kind::App, id).await {
        Ok(Record::App(a)) => Ok(a),
        Ok(_) => Err(message_page(ctx, StatusCode::NOT_FOUND, "Not found", "no such app")),
        Err(ApiError::Store(StoreError::NotFound { .. })) => Err(gone(ctx, Kind::App, id).await),
        Err(e) => Err(failure(ctx, &e)),
    }
}

/// A record that is not there (any more): its history, if it had one, so a
/// deletion can be undone.
async fn gone(ctx: &Ctx, kind: Kind, key: &str) -> Response {
    let body = html! {
        p { "There is no " (kind.singular()) " " span.key { (key) } " (any more)." }
        (history::section(ctx, kind, key).await)
    };
    let notice = Notice::Error(format!("no such {}", kind.singular()));
    (StatusCode::NOT_FOUND, ctx.page(history::section_of(kind), "Not found", &notice, body)).into_response()
}

pub async fn app(ctx: Ctx, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let app = match get_app(&ctx, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let params = match ListParams::parse(&q) {
        Ok(p) => p,
        Err(m) => return message_page(&ctx, StatusCode::BAD_REQUEST, "Not accepted", &m),
    };
    let flows = match ctx.state.store.browse(Kind::Flow, &params.browse(Some(app.id.clone()))).await {
        Ok(f) => f,
        Err(e) => return failure(&ctx, &e.into()),
    };
    let here = format!("/apps/{}", app.id);
    let body = html! {
        p.meta { "Version " strong #version { (app.version) } ", updated " (when(app.updated_at)) ". " span.key { "id " (app.id) } }
        (app_form(&ctx, &here, &app.name, &app.description, Some(app.version), "Save app"))
        h2 { "Flows" }
        p.actions { a.button #new-flow href=(format!("/apps/{}/flows/new", app.id)) { "New flow" } }
        @if flows.total > 0 || !params.q.is_empty() { (search_form(&here, &params, "part of a flow's name", html! {})) }
        @if flows.items.is_empty() {
            p.empty { @if params.q.is_empty() { "No flows yet." } @else { "No flow matches." } }
        } @else {
            (pager_above(&here, &params, &flows, "flows"))
            div.scroll { table #flows {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Version" } th scope="col" { "Updated" } } }
                tbody { @for r in &flows.items { @if let Record::Flow(f) = r { tr {
                    td { a href=(format!("/flows/{}", f.id)) { (f.name) } }
                    td { (f.version) }
                    td { (when(f.updated_at)) }
                } } } }
            } }
            (pager(&here, &params, &flows, "flows"))
        }
        (history::section(&ctx, Kind::App, &app.id).await)
        (delete_form(&ctx, &format!("/apps/{}/delete", app.id), app.version, "Delete app and its flows"))
    };
    ctx.page(Section::Apps, &format!("App {}", app.name), &notice_from(&q), body)
}

pub(super) fn delete_form(ctx: &Ctx, action: &str, version: i64, label: &str) -> Markup {
    html! {
        form.danger method="post" action=(action) data-confirm={ (label) "?" } {
            (ctx.csrf())
            input type="hidden" name="version" value=(version);
            button.delete type="submit" { (label) }
        }
    }
}

pub async fn save_app(ctx: Ctx, Path(id): Path<String>, change: Change) -> Response {
    let (name, description) = (change.fields.get("name").to_string(), change.fields.text("description"));
    let input = Input::app(&id, &name, &description);
    match ops::put(&ctx.state, &change.who, input, form_version(&change)).await {
        Ok(r) => Redirect::to(&format!("/apps/{}?saved={}", r.key(), r.version())).into_response(),
        Err(ApiError::Store(StoreError::Conflict { .. } | StoreError::NotFound { .. })) => {
            let current = ops::get(&ctx.state, Kind::App, &id).await.ok();
            let (version, theirs) = match &current {
                Some(Record::App(a)) => (
                    Some(a.version),
                    html! { dl { dt { "Name" } dd #their-name { (a.name) } dt { "Description" } dd { pre { (a.description) } } } },
                ),
                _ => (None, html! { p { "The app was deleted." } }),
            };
            let action = format!("/apps/{id}");
            let mine = app_form(&ctx, &action, &name, &description, version.or(Some(0)), "Save mine over theirs");
            conflict_page(&ctx, "app", version, mine, theirs)
        }
        Err(ApiError::Store(e @ (StoreError::Invalid { .. } | StoreError::Duplicate { .. }))) => {
            let form = app_form(&ctx, &format!("/apps/{id}"), &name, &description, form_version(&change), "Save app");
            refused(&ctx, Section::Apps, "Edit app", &e, form)
        }
        Err(e) => failure(&ctx, &e),
    }
}

pub async fn delete_app(ctx: Ctx, Path(id): Path<String>, change: Change) -> Response {
    let name = match get_app(&ctx, &id).await {
        Ok(a) => a.name,
        Err(r) => return r,
    };
    match ops::delete(&ctx.state, &change.who, Kind::App, &id, form_version(&change)).await {
        Ok(_) => Redirect::to(&format!("/apps?deleted={}", url_component(&name))).into_response(),
        Err(ApiError::Store(StoreError::Conflict { current, .. })) => message_page(
            &ctx,
            StatusCode::CONFLICT,
            "Not deleted",
            &format!("Someone else changed this app (now version {current}) after you opened it. Look at it again before deleting."),
        ),
        Err(e) => failure(&ctx, &e),
    }
}

/// `/flows`: every flow of every app, with its app's name.
pub async fn flows(ctx: Ctx, Query(q): Query<HashMap<String, String>>) -> Response {
    let params = match ListParams::parse(&q) {
        Ok(p) => p,
        Err(m) => return message_page(&ctx, StatusCode::BAD_REQUEST, "Not accepted", &m),
    };
    let page = match ctx.state.store.browse(Kind::Flow, &params.browse(None)).await {
        Ok(p) => p,
        Err(e) => return failure(&ctx, &e.into()),
    };
    let app_ids: Vec<String> = page
        .items
        .iter()
        .filter_map(|r| match r {
            Record::Flow(f) => Some(f.app_id.clone()),
            _ => None,
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let apps: HashMap<String, String> = match ctx.state.store.get_many(Kind::App, &app_ids).await {
        Ok(apps) => apps.into_iter().map(|r| (r.key().to_string(), r.title().to_string())).collect(),
        Err(e) => return failure(&ctx, &e.into()),
    };
    let body = html! {
        (search_form("/flows", &params, "part of a name", html! {}))
        @if page.items.is_empty() {
            p.empty { @if params.q.is_empty() { "No flows yet: open an app to make one." } @else { "No flow matches." } }
        } @else {
            (pager_above("/flows", &params, &page, "flows"))
            div.scroll { table #flows {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "App" }
                    th scope="col" { "Version" } th scope="col" { "Updated" }
                } }
                tbody { @for r in &page.items { @if let Record::Flow(f) = r { tr {
                    td { a href=(format!("/flows/{}", f.id)) { (f.name) } }
                    td { a href=(format!("/apps/{}", f.app_id)) { (apps.get(&f.app_id).map_or(f.app_id.as_str(), String::as_str)) } }
                    td { (f.version) }
                    td { (when(f.updated_at)) }
                } } } }
            } }
        }
        (pager("/flows", &params, &page, "flows"))
    };
    ctx.page(Section::Flows, "Flows", &notice_from(&q), body)
}

/// The script editor and the flow's fields. (Every `<textarea>` opens with a
/// newline: the HTML parser drops one right after the tag, so a text's own
/// leading newline survives.)
fn flow_form(ctx: &Ctx, action: &str, f: (&str, &str, &str), version: Option<i64>, button: &str) -> Markup {
    let (app_id, name, script) = f;
    html! {
        form.record.flow method="post" action=(action) {
            (ctx.csrf())
            @if let Some(v) = version { input type="hidden" name="version" value=(v); }
            input type="hidden" name="app_id" value=(app_id);
            p { label for="name" { "Name" } input #name name="name" required maxlength="200" value=(name); }
            p {
                label for="script" { "Script" }
                span.hint #script-help { "Tab indents; press Esc, then Tab, to leave the editor." }
            }
            div.editor {
                pre.gutter aria-hidden="true" {}
                textarea #script name="script" class="code" rows="20" spellcheck="false" autocapitalize="off"
                    autocomplete="off" wrap="off" aria-describedby="script-help" { "\n" (script) }
            }
            p { button #save type="submit" { (button) } }
        }
    }
}

pub async fn new_flow(ctx: Ctx, Path(app_id): Path<String>) -> Response {
    let app = match get_app(&ctx, &app_id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body = flow_form(&ctx, &format!("/apps/{}/flows", app.id), (&app.id, "", ""), None, "Create flow");
    ctx.page(Section::Apps, &format!("New flow of {}", app.name), &Notice::None, body)
}

pub async fn create_flow(ctx: Ctx, Path(app_id): Path<String>, change: Change) -> Response {
    let (name, script) = (change.fields.get("name").to_string(), change.fields.text("script"));
    let id = uuid::Uuid::new_v4().to_string();
    match ops::put(&ctx.state, &change.who, Input::flow(&id, &app_id, &name, &script), Some(0)).await {
        Ok(r) => Redirect::to(&format!("/flows/{}?saved={}", r.key(), r.version())).into_response(),
        Err(ApiError::Store(e @ (StoreError::Invalid { .. } | StoreError::Duplicate { .. }))) => {
            let action = format!("/apps/{app_id}/flows");
            let form = flow_form(&ctx, &action, (&app_id, &name, &script), None, "Create flow");
            refused(&ctx, Section::Apps, "New flow", &e, form)
        }
        Err(e) => failure(&ctx, &e),
    }
}

async fn get_flow(ctx: &Ctx, id: &str) -> Result<Flow, Response> {
    match ops::get(&ctx.state, Kind::Flow, id).await {
        Ok(Record::Flow(f)) => Ok(f),
        Ok(_) => Err(message_page(ctx, StatusCode::NOT_FOUND, "Not found", "no such flow")),
        Err(ApiError::Store(StoreError::NotFound { .. })) => Err(gone(ctx, Kind::Flow, id).await),
        Err(e) => Err(failure(ctx, &e)),
    }
}

pub async fn flow(ctx: Ctx, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let f = match get_flow(&ctx, &id).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let body = html! {
        p.meta {
            a href=(format!("/apps/{}", f.app_id)) { "Back to the app" } " · Version " strong #version { (f.version) }
            ", saved " (when(f.updated_at)) ". " span.key { "id " (f.id) }
        }
        (flow_form(&ctx, &format!("/flows/{}", f.id), (&f.app_id, &f.name, &f.script), Some(f.version), "Save flow"))
        (history::section(&ctx, Kind::Flow, &f.id).await)
        (delete_form(&ctx, &format!("/flows/{}/delete", f.id), f.version, "Delete flow"))
    };
    ctx.page(Section::Flows, &format!("Flow {}", f.name), &notice_from(&q), body)
}

pub async fn save_flow(ctx: Ctx, Path(id): Path<String>, change: Change) -> Response {
    let (name, script) = (change.fields.get("name").to_string(), change.fields.text("script"));
    let app_id = change.fields.get("app_id").to_string();
    let action = format!("/flows/{id}");
    match ops::put(&ctx.state, &change.who, Input::flow(&id, &app_id, &name, &script), form_version(&change)).await {
        Ok(r) => Redirect::to(&format!("/flows/{}?saved={}", r.key(), r.version())).into_response(),
        Err(ApiError::Store(StoreError::Conflict { .. } | StoreError::NotFound { .. })) => {
            let current = ops::get(&ctx.state, Kind::Flow, &id).await.ok();
            let (version, theirs) = match &current {
                Some(Record::Flow(f)) => (
                    Some(f.version),
                    html! {
                        p.meta { "Name " strong #their-name { (f.name) } ", saved " (when(f.updated_at)) "." }
                        pre.code.saved #their-script tabindex="0" aria-label="Saved script" { (f.script) }
                    },
                ),
                _ => (None, html! { p { "The flow was deleted." } }),
            };
            let mine =
                flow_form(&ctx, &action, (&app_id, &name, &script), version.or(Some(0)), "Save mine over theirs");
            conflict_page(&ctx, "flow", version, mine, theirs)
        }
        Err(ApiError::Store(e @ (StoreError::Invalid { .. } | StoreError::Duplicate { .. }))) => {
            let form = flow_form(&ctx, &action, (&app_id, &name, &script), form_version(&change), "Save flow");
            refused(&ctx, Section::Flows, "Edit flow", &e, form)
        }
        Err(e) => failure(&ctx, &e),
    }
}

pub async fn delete_flow(ctx: Ctx, Path(id): Path<String>, change: Change) -> Response {
    let f = match get_flow(&ctx, &id).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match ops::delete(&ctx.state, &change.who, Kind::Flow, &id, form_version(&change)).await {
        Ok(_) => {
            Redirect::to(&with_query(&format!("/apps/{}", f.app_id), &[("deleted", &f.name)])).into_response()
        }
        Err(ApiError::Store(StoreError::Conflict { current, .. })) => message_page(
            &ctx,
            StatusCode::CONFLICT,
            "Not deleted",
            &format!("Someone else changed this flow (now version {current}) after you opened it. Look at it again before deleting."),
        ),
        Err(e) => failure(&ctx, &e),
    }
}

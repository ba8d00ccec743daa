//! Apps and their flows: lists, forms, and the script editor. Every save
//! sends the version the form was made from; when someone saved first (here
//! or on another site, replicated), the page says so and shows both texts,
//! and nothing typed is lost.

use std::collections::HashMap;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use dugong_store::{App, Flow, Input, Kind, Record, StoreError};

use super::html::{self, esc, Notice, Section};
use super::session::Change;
use super::view::{all, conflict_page, failure, message_page, Ctx};
use crate::error::ApiError;
use crate::ops;

/// The `expected_version` a form carried.
fn form_version(change: &Change) -> Option<i64> {
    change.fields.get("version").trim().parse().ok()
}

fn notice_from(query: &HashMap<String, String>) -> Notice {
    if let Some(v) = query.get("saved") {
        Notice::Ok(format!("Saved: version {}.", v))
    } else if let Some(name) = query.get("deleted") {
        Notice::Ok(format!("Deleted {name}."))
    } else {
        Notice::None
    }
}

pub async fn apps(ctx: Ctx, Query(q): Query<HashMap<String, String>>) -> Response {
    let apps = match all(&ctx.state, Kind::App, None).await {
        Ok(a) => a,
        Err(e) => return failure(&ctx, &e),
    };
    let mut body =
        String::from("<p class=\"actions\"><a class=\"button\" id=\"new-app\" href=\"/apps/new\">New app</a></p>");
    if apps.is_empty() {
        body.push_str("<p class=\"empty\">No apps yet.</p>");
    } else {
        let rows = apps.iter().filter_map(|r| match r {
            Record::App(a) => Some(vec![
                html::link(&format!("/apps/{}", a.id), &a.name).into(),
                esc(&a.description).into(),
                a.version.to_string().into(),
                html::time(a.updated_at).into(),
            ]),
            _ => None,
        });
        body.push_str(&html::table("apps", &["Name", "Description", "Version", "Updated"], rows));
    }
    ctx.page(Section::Apps, "Apps", &notice_from(&q), &body)
}

fn app_form(ctx: &Ctx, action: &str, name: &str, description: &str, version: Option<i64>, button: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{action}\" class=\"record\">{csrf}{version}\
         <p><label for=\"name\">Name</label><input id=\"name\" name=\"name\" required maxlength=\"200\" value=\"{name}\"></p>\
         <p><label for=\"description\">Description</label><textarea id=\"description\" name=\"description\" rows=\"3\">\n{desc}</textarea></p>\
         <p><button type=\"submit\" id=\"save\">{button}</button></p></form>",
        action = esc(action),
        csrf = ctx.csrf(),
        version = version.map_or(String::new(), |v| html::hidden("version", &v.to_string())),
        name = esc(name),
        desc = esc(description),
        button = esc(button),
    )
}

pub async fn new_app(ctx: Ctx) -> Response {
    let body = app_form(&ctx, "/apps", "", "", None, "Create app");
    ctx.page(Section::Apps, "New app", &Notice::None, &body)
}

pub async fn create_app(ctx: Ctx, change: Change) -> Response {
    let (name, description) = (change.fields.get("name"), change.fields.text("description"));
    let id = uuid::Uuid::new_v4().to_string();
    match ops::put(&ctx.state, &change.who, Input::app(&id, name, &description), Some(0)).await {
        Ok(r) => Redirect::to(&format!("/apps/{}?saved={}", r.key(), r.version())).into_response(),
        Err(ApiError::Store(StoreError::Invalid { field, reason })) => {
            let body = app_form(&ctx, "/apps", name, &description, None, "Create app");
            let notice = Notice::Error(format!("{field}: {reason}"));
            (StatusCode::BAD_REQUEST, ctx.page(Section::Apps, "New app", &notice, &body)).into_response()
        }
        Err(e) => failure(&ctx, &e),
    }
}

async fn get_app(ctx: &Ctx, id: &str) -> Result<App, Response> {
    match ops::get(&ctx.state, Kind::App, id).await {
        Ok(Record::App(a)) => Ok(a),
        Ok(_) => Err(message_page(ctx, StatusCode::NOT_FOUND, "Not found", "no such app")),
        Err(e) => Err(failure(ctx, &e)),
    }
}

pub async fn app(ctx: Ctx, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let app = match get_app(&ctx, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let flows = match all(&ctx.state, Kind::Flow, Some(&app.id)).await {
        Ok(f) => f,
        Err(e) => return failure(&ctx, &e),
    };
    let mut body = format!(
        "<p class=\"meta\">Version <strong id=\"version\">{v}</strong>, updated {t}. <span class=\"key\">id {id}</span></p>",
        v = app.version,
        t = html::time(app.updated_at),
        id = esc(&app.id)
    );
    body.push_str(&app_form(
        &ctx,
        &format!("/apps/{}", app.id),
        &app.name,
        &app.description,
        Some(app.version),
        "Save app",
    ));
    body.push_str(&format!(
        "<h2>Flows</h2><p class=\"actions\"><a class=\"button\" id=\"new-flow\" href=\"/apps/{}/flows/new\">New flow</a></p>",
        esc(&app.id)
    ));
    if flows.is_empty() {
        body.push_str("<p class=\"empty\">No flows yet.</p>");
    } else {
        let rows = flows.iter().filter_map(|r| match r {
            Record::Flow(f) => Some(vec![
                html::link(&format!("/flows/{}", f.id), &f.name).into(),
                f.version.to_string().into(),
                html::time(f.updated_at).into(),
            ]),
            _ => None,
        });
        body.push_str(&html::table("flows", &["Name", "Version", "Updated"], rows));
    }
    body.push_str(&delete_form(&ctx, &format!("/apps/{}/delete", app.id), app.version, "Delete app and its flows"));
    ctx.page(Section::Apps, &format!("App {}", app.name), &notice_from(&q), &body)
}

fn delete_form(ctx: &Ctx, action: &str, version: i64, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"danger\" data-confirm=\"{}?\">{}{}\
         <button type=\"submit\" class=\"delete\">{}</button></form>",
        esc(action),
        esc(label),
        ctx.csrf(),
        html::hidden("version", &version.to_string()),
        esc(label)
    )
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
                    format!(
                        "<dl><dt>Name</dt><dd id=\"their-name\">{}</dd><dt>Description</dt><dd><pre>{}</pre></dd></dl>",
                        esc(&a.name),
                        esc(&a.description)
                    ),
                ),
                _ => (None, "<p>The app was deleted.</p>".to_string()),
            };
            let mine = app_form(
                &ctx,
                &format!("/apps/{id}"),
                &name,
                &description,
                version.or(Some(0)),
                "Save mine over theirs",
            );
            conflict_page(&ctx, "app", version, &mine, &theirs)
        }
        Err(ApiError::Store(StoreError::Invalid { field, reason })) => {
            let mine = app_form(&ctx, &format!("/apps/{id}"), &name, &description, form_version(&change), "Save app");
            let notice = Notice::Error(format!("{field}: {reason}"));
            (StatusCode::BAD_REQUEST, ctx.page(Section::Apps, "Edit app", &notice, &mine)).into_response()
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
        Ok(_) => Redirect::to(&format!("/apps?deleted={}", html::url_component(&name))).into_response(),
        Err(ApiError::Store(StoreError::Conflict { current, .. })) => message_page(
            &ctx,
            StatusCode::CONFLICT,
            "Not deleted",
            &format!("Someone else changed this app (now version {current}) after you opened it. Look at it again before deleting."),
        ),
        Err(e) => failure(&ctx, &e),
    }
}

/// The script editor and the flow's fields. (Every `<textarea>` opens with a
/// newline: the HTML parser drops one right after the tag, so a text's own
/// leading newline survives.)
fn flow_form(
    ctx: &Ctx,
    action: &str,
    app_id: &str,
    name: &str,
    script: &str,
    version: Option<i64>,
    button: &str,
) -> String {
    format!(
        "<form method=\"post\" action=\"{action}\" class=\"record flow\">{csrf}{version}{app}\
         <p><label for=\"name\">Name</label><input id=\"name\" name=\"name\" required maxlength=\"200\" value=\"{name}\"></p>\
         <p><label for=\"script\">Script</label>\
         <span class=\"hint\" id=\"script-help\">Tab indents; press Esc, then Tab, to leave the editor.</span></p>\
         <div class=\"editor\"><pre class=\"gutter\" aria-hidden=\"true\"></pre>\
         <textarea id=\"script\" name=\"script\" class=\"code\" rows=\"20\" spellcheck=\"false\" autocapitalize=\"off\" \
         autocomplete=\"off\" wrap=\"off\" aria-describedby=\"script-help\">\n{script}</textarea></div>\
         <p><button type=\"submit\" id=\"save\">{button}</button></p></form>",
        action = esc(action),
        csrf = ctx.csrf(),
        version = version.map_or(String::new(), |v| html::hidden("version", &v.to_string())),
        app = html::hidden("app_id", app_id),
        name = esc(name),
        script = esc(script),
        button = esc(button),
    )
}

pub async fn new_flow(ctx: Ctx, Path(app_id): Path<String>) -> Response {
    let app = match get_app(&ctx, &app_id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body = flow_form(&ctx, &format!("/apps/{}/flows", app.id), &app.id, "", "", None, "Create flow");
    ctx.page(Section::Apps, &format!("New flow of {}", app.name), &Notice::None, &body)
}

pub async fn create_flow(ctx: Ctx, Path(app_id): Path<String>, change: Change) -> Response {
    let (name, script) = (change.fields.get("name").to_string(), change.fields.text("script"));
    let id = uuid::Uuid::new_v4().to_string();
    match ops::put(&ctx.state, &change.who, Input::flow(&id, &app_id, &name, &script), Some(0)).await {
        Ok(r) => Redirect::to(&format!("/flows/{}?saved={}", r.key(), r.version())).into_response(),
        Err(ApiError::Store(StoreError::Invalid { field, reason })) => {
            let body = flow_form(&ctx, &format!("/apps/{app_id}/flows"), &app_id, &name, &script, None, "Create flow");
            let notice = Notice::Error(format!("{field}: {reason}"));
            (StatusCode::BAD_REQUEST, ctx.page(Section::Apps, "New flow", &notice, &body)).into_response()
        }
        Err(e) => failure(&ctx, &e),
    }
}

async fn get_flow(ctx: &Ctx, id: &str) -> Result<Flow, Response> {
    match ops::get(&ctx.state, Kind::Flow, id).await {
        Ok(Record::Flow(f)) => Ok(f),
        Ok(_) => Err(message_page(ctx, StatusCode::NOT_FOUND, "Not found", "no such flow")),
        Err(e) => Err(failure(ctx, &e)),
    }
}

fn flow_meta(f: &Flow) -> String {
    format!(
        "<p class=\"meta\"><a href=\"/apps/{app}\">Back to the app</a> · Version <strong id=\"version\">{v}</strong>, saved {t}. \
         <span class=\"key\">id {id}</span></p>",
        app = esc(&f.app_id),
        v = f.version,
        t = html::time(f.updated_at),
        id = esc(&f.id)
    )
}

pub async fn flow(ctx: Ctx, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let f = match get_flow(&ctx, &id).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut body = flow_meta(&f);
    body.push_str(&flow_form(
        &ctx,
        &format!("/flows/{}", f.id),
        &f.app_id,
        &f.name,
        &f.script,
        Some(f.version),
        "Save flow",
    ));
    body.push_str(&delete_form(&ctx, &format!("/flows/{}/delete", f.id), f.version, "Delete flow"));
    ctx.page(Section::Apps, &format!("Flow {}", f.name), &notice_from(&q), &body)
}

pub async fn save_flow(ctx: Ctx, Path(id): Path<String>, change: Change) -> Response {
    let (name, script) = (change.fields.get("name").to_string(), change.fields.text("script"));
    let app_id = change.fields.get("app_id").to_string();
    match ops::put(&ctx.state, &change.who, Input::flow(&id, &app_id, &name, &script), form_version(&change)).await {
        Ok(r) => Redirect::to(&format!("/flows/{}?saved={}", r.key(), r.version())).into_response(),
        Err(ApiError::Store(StoreError::Conflict { .. } | StoreError::NotFound { .. })) => {
            let current = ops::get(&ctx.state, Kind::Flow, &id).await.ok();
            let (version, theirs) = match &current {
                Some(Record::Flow(f)) => (
                    Some(f.version),
                    format!(
                        "<p class=\"meta\">Name <strong id=\"their-name\">{}</strong>, saved {}.</p>\
                         <pre class=\"code saved\" id=\"their-script\" tabindex=\"0\" aria-label=\"Saved script\">{}</pre>",
                        esc(&f.name),
                        html::time(f.updated_at),
                        esc(&f.script)
                    ),
                ),
                _ => (None, "<p>The flow was deleted.</p>".to_string()),
            };
            let mine = flow_form(
                &ctx,
                &format!("/flows/{id}"),
                &app_id,
                &name,
                &script,
                version.or(Some(0)),
                "Save mine over theirs",
            );
            conflict_page(&ctx, "flow", version, &mine, &theirs)
        }
        Err(ApiError::Store(StoreError::Invalid { field, reason })) => {
            let body =
                flow_form(&ctx, &format!("/flows/{id}"), &app_id, &name, &script, form_version(&change), "Save flow");
            let notice = Notice::Error(format!("{field}: {reason}"));
            (StatusCode::BAD_REQUEST, ctx.page(Section::Apps, "Edit flow", &notice, &body)).into_response()
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
        Ok(_) => Redirect::to(&format!("/apps/{}?deleted={}", f.app_id, html::url_component(&f.name))).into_response(),
        Err(ApiError::Store(StoreError::Conflict { current, .. })) => message_page(
            &ctx,
            StatusCode::CONFLICT,
            "Not deleted",
            &format!("Someone else changed this flow (now version {current}) after you opened it. Look at it again before deleting."),
        ),
        Err(e) => failure(&ctx, &e),
    }
}

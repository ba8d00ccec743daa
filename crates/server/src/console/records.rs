//! Settings (JSON values, checked before they are saved; searched by key and
//! value; with their history) and contexts (each user's shared desktop
//! context, read-only here).

use std::collections::HashMap;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use dugong_store::{Input, Kind, Record, StoreError};
use maud::{html, Markup};

use super::history;
use super::html::{url_component, when, with_query, Notice, Section};
use super::list::{pager, pager_above, search_form, ListParams};
use super::pages::{delete_form, notice_from, preview};
use super::session::Change;
use super::view::{conflict_page, failure, message_page, Ctx};
use crate::error::ApiError;
use crate::ops;

/// A setting's key in its form: typed in for a new setting, fixed for one that exists.
enum KeyField<'a> {
    /// An input, holding what was typed so far.
    New(&'a str),
    Fixed(&'a str),
}

fn setting_form(ctx: &Ctx, action: &str, key: KeyField, value: &str, version: Option<i64>, button: &str) -> Markup {
    html! {
        form.record.setting method="post" action=(action) {
            (ctx.csrf())
            @if let Some(v) = version { input type="hidden" name="version" value=(v); }
            @match key {
                KeyField::New(typed) => {
                    p {
                        label for="key" { "Key" }
                        input #key name="key" value=(typed) required maxlength="200"
                            pattern="[\\p{L}\\p{N}._:@\\-]+" aria-describedby="key-help";
                        span.hint #key-help { "Letters, digits and . _ - : @" }
                    }
                }
                KeyField::Fixed(k) => { input type="hidden" name="key" value=(k); }
            }
            p {
                label for="value" { "Value (JSON)" }
                span.hint #value-help { "Any JSON: a string needs its quotes, like \"on\"." }
            }
            textarea #value name="value" class="code json" rows="8" spellcheck="false"
                aria-describedby="value-help value-check" { "\n" (value) }
            p.json-check #value-check aria-live="polite" {}
            p { button #save type="submit" { (button) } }
        }
    }
}

pub async fn settings(ctx: Ctx, Query(q): Query<HashMap<String, String>>) -> Response {
    let params = match ListParams::parse(&q) {
        Ok(p) => p,
        Err(m) => return message_page(&ctx, StatusCode::BAD_REQUEST, "Not accepted", &m),
    };
    let page = match ctx.state.store.browse(Kind::Setting, &params.browse(None)).await {
        Ok(p) => p,
        Err(e) => return failure(&ctx, &e.into()),
    };
    let body = html! {
        (search_form("/settings", &params, "part of a key or value", html! {}))
        @if page.items.is_empty() {
            p.empty { @if params.q.is_empty() { "No settings yet." } @else { "No setting matches." } }
        } @else {
            (pager_above("/settings", &params, &page, "settings"))
            div.scroll { table #settings {
                thead { tr {
                    th scope="col" { "Key" } th scope="col" { "Value" }
                    th scope="col" { "Version" } th scope="col" { "Updated" }
                } }
                tbody { @for r in &page.items { @if let Record::Setting(s) = r { tr {
                    td { a href=(format!("/settings/{}", url_component(&s.key))) { (s.key) } }
                    td { code { (preview(&s.value.to_string())) } }
                    td { (s.version) }
                    td { (when(s.updated_at)) }
                } } } }
            } }
        }
        (pager("/settings", &params, &page, "settings"))
        h2 { "New setting" }
        (setting_form(&ctx, "/settings", KeyField::New(""), "", None, "Create setting"))
    };
    let notice = match q.get("deleted") {
        Some(k) => Notice::Ok(format!("Deleted {k}.")),
        None => Notice::None,
    };
    ctx.page(Section::Settings, "Settings", &notice, body)
}

/// The JSON of a form's `value`, or what is wrong with it.
fn parse_value(text: &str) -> Result<serde_json::Value, String> {
    // Integers beyond 64 bits are refused rather than saved as approximate floats.
    dugong_store::validate::exact_integers(text.as_bytes())
        .map_err(|reason| format!("value: {reason}; nothing was saved"))?;
    serde_json::from_str(text.trim()).map_err(|e| format!("value: not valid JSON ({e}); nothing was saved"))
}

pub async fn create_setting(ctx: Ctx, change: Change) -> Response {
    let (key, text) = (change.fields.get("key").to_string(), change.fields.text("value"));
    let refuse = |message: String| {
        let body = setting_form(&ctx, "/settings", KeyField::New(&key), &text, None, "Create setting");
        (StatusCode::BAD_REQUEST, ctx.page(Section::Settings, "New setting", &Notice::Error(message), body))
            .into_response()
    };
    let value = match parse_value(&text) {
        Ok(v) => v,
        Err(m) => return refuse(m),
    };
    match ops::put(&ctx.state, &change.who, Input::setting(&key, &value), Some(0)).await {
        Ok(r) => Redirect::to(&format!("/settings/{}?saved={}", url_component(r.key()), r.version())).into_response(),
        Err(ApiError::Store(StoreError::Invalid { field, reason })) => refuse(format!("{field}: {reason}")),
        Err(ApiError::Store(StoreError::Conflict { .. })) => {
            refuse(format!("A setting {key:?} exists already: open it from the list to change it."))
        }
        Err(e) => failure(&ctx, &e),
    }
}

pub async fn setting(ctx: Ctx, Path(key): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let s = match ops::get(&ctx.state, Kind::Setting, &key).await {
        Ok(Record::Setting(s)) => s,
        Ok(_) => return message_page(&ctx, StatusCode::NOT_FOUND, "Not found", "no such setting"),
        Err(ApiError::Store(StoreError::NotFound { .. })) => {
            let body = html! {
                p { a href="/settings" { "All settings" } }
                (history::section(&ctx, Kind::Setting, &key).await)
            };
            let notice = Notice::Error("no such setting".into());
            return (StatusCode::NOT_FOUND, ctx.page(Section::Settings, "Not found", &notice, body)).into_response();
        }
        Err(e) => return failure(&ctx, &e),
    };
    let pretty = serde_json::to_string_pretty(&s.value).unwrap_or_default();
    let action = format!("/settings/{}", url_component(&s.key));
    let body = html! {
        p.meta { a href="/settings" { "All settings" } " · Version " strong #version { (s.version) } ", saved " (when(s.updated_at)) "." }
        (setting_form(&ctx, &action, KeyField::Fixed(&s.key), &pretty, Some(s.version), "Save setting"))
        (history::section(&ctx, Kind::Setting, &s.key).await)
        (delete_form(&ctx, &format!("{action}/delete"), s.version, "Delete setting"))
    };
    ctx.page(Section::Settings, &format!("Setting {}", s.key), &notice_from(&q), body)
}

pub async fn save_setting(ctx: Ctx, Path(key): Path<String>, change: Change) -> Response {
    let text = change.fields.text("value");
    let expected = change.fields.get("version").trim().parse().ok();
    let action = format!("/settings/{}", url_component(&key));
    let value = match parse_value(&text) {
        Ok(v) => v,
        Err(m) => {
            let body = setting_form(&ctx, &action, KeyField::Fixed(&key), &text, expected, "Save setting");
            let page = ctx.page(Section::Settings, &format!("Setting {key}"), &Notice::Error(m), body);
            return (StatusCode::BAD_REQUEST, page).into_response();
        }
    };
    match ops::put(&ctx.state, &change.who, Input::setting(&key, &value), expected).await {
        Ok(r) => Redirect::to(&format!("/settings/{}?saved={}", url_component(r.key()), r.version())).into_response(),
        Err(ApiError::Store(StoreError::Conflict { .. } | StoreError::NotFound { .. })) => {
            let (version, theirs) = match ops::get(&ctx.state, Kind::Setting, &key).await {
                Ok(Record::Setting(s)) => (
                    Some(s.version),
                    html! { pre.code.saved tabindex="0" { (serde_json::to_string_pretty(&s.value).unwrap_or_default()) } },
                ),
                _ => (None, html! { p { "The setting was deleted." } }),
            };
            let mine =
                setting_form(&ctx, &action, KeyField::Fixed(&key), &text, version.or(Some(0)), "Save mine over theirs");
            conflict_page(&ctx, "setting", version, mine, theirs)
        }
        Err(e) => failure(&ctx, &e),
    }
}

pub async fn delete_setting(ctx: Ctx, Path(key): Path<String>, change: Change) -> Response {
    let expected = change.fields.get("version").trim().parse().ok();
    match ops::delete(&ctx.state, &change.who, Kind::Setting, &key, expected).await {
        Ok(_) => Redirect::to(&with_query("/settings", &[("deleted", &key)])).into_response(),
        Err(ApiError::Store(StoreError::Conflict { current, .. })) => message_page(
            &ctx,
            StatusCode::CONFLICT,
            "Not deleted",
            &format!("Someone else changed this setting (now version {current}) after you opened it."),
        ),
        Err(e) => failure(&ctx, &e),
    }
}

pub async fn contexts(ctx: Ctx, Query(q): Query<HashMap<String, String>>) -> Response {
    let params = match ListParams::parse(&q) {
        Ok(p) => p,
        Err(m) => return message_page(&ctx, StatusCode::BAD_REQUEST, "Not accepted", &m),
    };
    let page = match ctx.state.store.browse(Kind::Context, &params.browse(None)).await {
        Ok(p) => p,
        Err(e) => return failure(&ctx, &e.into()),
    };
    let body = html! {
        p.hint { "Each user's shared desktop context, as clients set it. Read-only here." }
        (search_form("/contexts", &params, "part of a user name", html! {}))
        @if page.items.is_empty() {
            p.empty { @if params.q.is_empty() { "No contexts yet." } @else { "No context matches." } }
        } @else {
            (pager_above("/contexts", &params, &page, "contexts"))
            div.scroll { table #contexts {
                thead { tr {
                    th scope="col" { "User" } th scope="col" { "Entries" }
                    th scope="col" { "Version" } th scope="col" { "Updated" }
                } }
                tbody { @for r in &page.items { @if let Record::Context(c) = r { tr {
                    td { a href=(format!("/contexts/{}", url_component(&c.user))) { (c.user) } }
                    td { (c.values.len()) }
                    td { (c.version) }
                    td { (when(c.updated_at)) }
                } } } }
            } }
        }
        (pager("/contexts", &params, &page, "contexts"))
    };
    ctx.page(Section::Contexts, "Contexts", &Notice::None, body)
}

pub async fn context(ctx: Ctx, Path(user): Path<String>) -> Response {
    let c = match ops::get(&ctx.state, Kind::Context, &user).await {
        Ok(Record::Context(c)) => c,
        Ok(_) => return message_page(&ctx, StatusCode::NOT_FOUND, "Not found", "no such context"),
        Err(e) => return failure(&ctx, &e),
    };
    let record = Record::Context(c.clone());
    let conflicts = with_query("/conflicts", &[("kind", "contexts"), ("key", &c.user)]);
    let body = html! {
        p.meta { a href="/contexts" { "All contexts" } " · Version " strong #version { (c.version) } ", updated " (when(c.updated_at)) "." }
        @if c.values.is_empty() { p.empty { "No entries." } } @else { (history::content(&record)) }
        p { a #record-conflicts href=(conflicts) { "Cross-site conflicts of this context" } }
    };
    ctx.page(Section::Contexts, &format!("Context of {}", c.user), &Notice::None, body)
}

//! Settings (JSON values, checked before they are saved) and contexts (each
//! user's shared desktop context, read-only here).

use std::collections::HashMap;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use dugong_store::{Input, Kind, Record, StoreError};

use super::html::{self, esc, Notice, Section};
use super::session::Change;
use super::view::{all, conflict_page, failure, message_page, Ctx};
use crate::error::ApiError;
use crate::ops;

/// Longest value shown in the settings list before it is cut.
const PREVIEW_CHARS: usize = 120;

/// A setting's key in its form: typed in for a new setting, fixed for one that exists.
enum KeyField<'a> {
    /// An input, holding what was typed so far.
    New(&'a str),
    Fixed(&'a str),
}

fn setting_form(ctx: &Ctx, action: &str, key: KeyField, value: &str, version: Option<i64>, button: &str) -> String {
    let key_field = match key {
        KeyField::New(typed) => format!(
            "<p><label for=\"key\">Key</label><input id=\"key\" name=\"key\" value=\"{typed}\" required maxlength=\"200\" \
             pattern=\"[\\p{{L}}\\p{{N}}._:@\\-]+\" aria-describedby=\"key-help\">\
             <span class=\"hint\" id=\"key-help\">Letters, digits and . _ - : @</span></p>",
            typed = esc(typed),
        ),
        KeyField::Fixed(k) => html::hidden("key", k),
    };
    format!(
        "<form method=\"post\" action=\"{action}\" class=\"record setting\">{csrf}{version}{key_field}\
         <p><label for=\"value\">Value (JSON)</label>\
         <span class=\"hint\" id=\"value-help\">Any JSON: a string needs its quotes, like \"on\".</span></p>\
         <textarea id=\"value\" name=\"value\" class=\"code json\" rows=\"8\" spellcheck=\"false\" \
         aria-describedby=\"value-help value-check\">\n{value}</textarea>\
         <p class=\"json-check\" id=\"value-check\" aria-live=\"polite\"></p>\
         <p><button type=\"submit\" id=\"save\">{button}</button></p></form>",
        action = esc(action),
        csrf = ctx.csrf(),
        version = version.map_or(String::new(), |v| html::hidden("version", &v.to_string())),
        value = esc(value),
        button = esc(button),
    )
}

pub async fn settings(ctx: Ctx, Query(q): Query<HashMap<String, String>>) -> Response {
    let settings = match all(&ctx.state, Kind::Setting, None).await {
        Ok(s) => s,
        Err(e) => return failure(&ctx, &e),
    };
    let mut body = String::new();
    if settings.is_empty() {
        body.push_str("<p class=\"empty\">No settings yet.</p>");
    } else {
        let rows = settings.iter().filter_map(|r| match r {
            Record::Setting(s) => {
                let mut value = s.value.to_string();
                if value.chars().count() > PREVIEW_CHARS {
                    value = value.chars().take(PREVIEW_CHARS).chain("…".chars()).collect();
                }
                Some(vec![
                    html::link(&format!("/settings/{}", html::url_component(&s.key)), &s.key).into(),
                    format!("<code>{}</code>", esc(&value)).into(),
                    s.version.to_string().into(),
                    html::time(s.updated_at).into(),
                ])
            }
            _ => None,
        });
        body.push_str(&html::table("settings", &["Key", "Value", "Version", "Updated"], rows));
    }
    body.push_str("<h2>New setting</h2>");
    body.push_str(&setting_form(&ctx, "/settings", KeyField::New(""), "", None, "Create setting"));
    let notice = match q.get("deleted") {
        Some(k) => Notice::Ok(format!("Deleted {k}.")),
        None => Notice::None,
    };
    ctx.page(Section::Settings, "Settings", &notice, &body)
}

/// The JSON of a form's `value`, or the page that says what is wrong with it.
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
        (StatusCode::BAD_REQUEST, ctx.page(Section::Settings, "New setting", &Notice::Error(message), &body))
            .into_response()
    };
    let value = match parse_value(&text) {
        Ok(v) => v,
        Err(m) => return refuse(m),
    };
    match ops::put(&ctx.state, &change.who, Input::setting(&key, &value), Some(0)).await {
        Ok(r) => {
            Redirect::to(&format!("/settings/{}?saved={}", html::url_component(r.key()), r.version())).into_response()
        }
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
        Err(e) => return failure(&ctx, &e),
    };
    let pretty = serde_json::to_string_pretty(&s.value).unwrap_or_default();
    let mut body = format!(
        "<p class=\"meta\"><a href=\"/settings\">All settings</a> · Version <strong id=\"version\">{}</strong>, saved {}.</p>",
        s.version,
        html::time(s.updated_at)
    );
    let action = format!("/settings/{}", html::url_component(&s.key));
    body.push_str(&setting_form(&ctx, &action, KeyField::Fixed(&s.key), &pretty, Some(s.version), "Save setting"));
    body.push_str(&format!(
        "<form method=\"post\" action=\"{}/delete\" class=\"danger\" data-confirm=\"Delete this setting?\">{}{}\
         <button type=\"submit\" class=\"delete\">Delete setting</button></form>",
        esc(&action),
        ctx.csrf(),
        html::hidden("version", &s.version.to_string())
    ));
    let notice = match q.get("saved") {
        Some(v) => Notice::Ok(format!("Saved: version {v}.")),
        None => Notice::None,
    };
    ctx.page(Section::Settings, &format!("Setting {}", s.key), &notice, &body)
}

pub async fn save_setting(ctx: Ctx, Path(key): Path<String>, change: Change) -> Response {
    let text = change.fields.text("value");
    let expected = change.fields.get("version").trim().parse().ok();
    let action = format!("/settings/{}", html::url_component(&key));
    let value = match parse_value(&text) {
        Ok(v) => v,
        Err(m) => {
            let body = setting_form(&ctx, &action, KeyField::Fixed(&key), &text, expected, "Save setting");
            return (
                StatusCode::BAD_REQUEST,
                ctx.page(Section::Settings, &format!("Setting {key}"), &Notice::Error(m), &body),
            )
                .into_response();
        }
    };
    match ops::put(&ctx.state, &change.who, Input::setting(&key, &value), expected).await {
        Ok(r) => {
            Redirect::to(&format!("/settings/{}?saved={}", html::url_component(r.key()), r.version())).into_response()
        }
        Err(ApiError::Store(StoreError::Conflict { .. } | StoreError::NotFound { .. })) => {
            let (version, theirs) = match ops::get(&ctx.state, Kind::Setting, &key).await {
                Ok(Record::Setting(s)) => (
                    Some(s.version),
                    format!(
                        "<pre class=\"code saved\" tabindex=\"0\">{}</pre>",
                        esc(&serde_json::to_string_pretty(&s.value).unwrap_or_default())
                    ),
                ),
                _ => (None, "<p>The setting was deleted.</p>".to_string()),
            };
            let mine =
                setting_form(&ctx, &action, KeyField::Fixed(&key), &text, version.or(Some(0)), "Save mine over theirs");
            conflict_page(&ctx, "setting", version, &mine, &theirs)
        }
        Err(e) => failure(&ctx, &e),
    }
}

pub async fn delete_setting(ctx: Ctx, Path(key): Path<String>, change: Change) -> Response {
    let expected = change.fields.get("version").trim().parse().ok();
    match ops::delete(&ctx.state, &change.who, Kind::Setting, &key, expected).await {
        Ok(_) => Redirect::to(&format!("/settings?deleted={}", html::url_component(&key))).into_response(),
        Err(ApiError::Store(StoreError::Conflict { current, .. })) => message_page(
            &ctx,
            StatusCode::CONFLICT,
            "Not deleted",
            &format!("Someone else changed this setting (now version {current}) after you opened it."),
        ),
        Err(e) => failure(&ctx, &e),
    }
}

pub async fn contexts(ctx: Ctx) -> Response {
    let contexts = match all(&ctx.state, Kind::Context, None).await {
        Ok(c) => c,
        Err(e) => return failure(&ctx, &e),
    };
    let mut body =
        String::from("<p class=\"hint\">Each user's shared desktop context, as clients set it. Read-only here.</p>");
    if contexts.is_empty() {
        body.push_str("<p class=\"empty\">No contexts yet.</p>");
    } else {
        let rows = contexts.iter().filter_map(|r| match r {
            Record::Context(c) => Some(vec![
                html::link(&format!("/contexts/{}", html::url_component(&c.user)), &c.user).into(),
                c.values.len().to_string().into(),
                c.version.to_string().into(),
                html::time(c.updated_at).into(),
            ]),
            _ => None,
        });
        body.push_str(&html::table("contexts", &["User", "Entries", "Version", "Updated"], rows));
    }
    ctx.page(Section::Contexts, "Contexts", &Notice::None, &body)
}

pub async fn context(ctx: Ctx, Path(user): Path<String>) -> Response {
    let c = match ops::get(&ctx.state, Kind::Context, &user).await {
        Ok(Record::Context(c)) => c,
        Ok(_) => return message_page(&ctx, StatusCode::NOT_FOUND, "Not found", "no such context"),
        Err(e) => return failure(&ctx, &e),
    };
    let mut body = format!(
        "<p class=\"meta\"><a href=\"/contexts\">All contexts</a> · Version <strong id=\"version\">{}</strong>, updated {}.</p>",
        c.version,
        html::time(c.updated_at)
    );
    if c.values.is_empty() {
        body.push_str("<p class=\"empty\">No entries.</p>");
    } else {
        let rows = c.values.iter().map(|(k, v)| vec![esc(k).into(), esc(v).into()]);
        body.push_str(&html::table("entries", &["Name", "Value"], rows));
    }
    ctx.page(Section::Contexts, &format!("Context of {}", c.user), &Notice::None, &body)
}

//! Console users and sessions: list, create, reset a password, disable or
//! enable, end every session of a user, delete; this site's live sessions
//! with a button to revoke each; and `/account`, where users change their own
//! password. Every change is in the audit log (written with the change), and
//! every change but enabling ends the user's sessions on every site (the
//! user row's session epoch, which replicates).
//!
//! Nobody disables or deletes their own account here: that is how the last
//! administrator locks everyone out. Another user, or `dugong users` at the
//! command line, can.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use dugong_store::{Action, ConsoleUser, StoreError, UserUpdate};
use maud::{html, Markup};

use super::html::{self, url_component, when, Notice, Section};
use super::password;
use super::session::Change;
use super::view::{message_page, Ctx};

/// The form fields of a new password, checked alike everywhere.
fn new_password(change: &Change) -> Result<String, String> {
    let (first, second) = (change.fields.get("password"), change.fields.get("password2"));
    if first != second {
        return Err("The two passwords differ.".into());
    }
    if first.chars().count() < password::MIN_PASSWORD_CHARS {
        return Err(format!("A password needs at least {} characters.", password::MIN_PASSWORD_CHARS));
    }
    Ok(first.to_string())
}

/// The argon2id hash of `password`, made on the blocking pool.
async fn hash(password: String) -> Result<String, String> {
    match tokio::task::spawn_blocking(move || password::hash(&password)).await {
        Ok(Ok(hash)) => Ok(hash),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("hashing failed: {e}")),
    }
}

fn password_fields() -> Markup {
    html! {
        p { label for="password" { "New password" }
            input #password name="password" type="password" autocomplete="new-password" required minlength="10"; }
        p { label for="password2" { "Again" }
            input #password2 name="password2" type="password" autocomplete="new-password" required minlength="10"; }
    }
}

pub async fn users(ctx: Ctx, notice: Option<Notice>) -> Response {
    let (users, sessions) = match (ctx.state.store.console_users().await, ctx.state.store.console_sessions().await) {
        (Ok(u), Ok(s)) => (u, s),
        (Err(e), _) | (_, Err(e)) => return html::store_failure(&e),
    };
    let body = html! {
        div.scroll { table #users {
            thead { tr { th scope="col" { "User" } th scope="col" { "State" } th scope="col" { "Changed" } } }
            tbody { @for u in &users { tr {
                td { a href=(format!("/users/{}", url_component(&u.name))) { (u.name) } }
                @if u.disabled { td.bad { "disabled" } } @else { td { "active" } }
                td { (when(u.updated_at)) }
            } } }
        } }
        h2 { "New user" }
        form.record method="post" action="/users" {
            (ctx.csrf())
            p { label for="name" { "User name" } input #name name="name" required maxlength="64" autocomplete="off"; }
            (password_fields())
            p { button #create-user type="submit" { "Create user" } }
        }
        h2 { "Sessions on this site" }
        @if sessions.is_empty() {
            p.empty { "No live sessions." }
        } @else {
            div.scroll { table #sessions {
                thead { tr {
                    th scope="col" { "User" } th scope="col" { "From" } th scope="col" { "Since" }
                    th scope="col" { "Until" } th scope="col" { "" }
                } }
                tbody { @for s in &sessions { tr {
                    td { (s.user) @if s.token_hash == ctx.authed.token_hash { " (this one)" } }
                    td { (s.peer) }
                    td { (when(s.created_at)) }
                    td { (when(s.expires_at)) }
                    td { form.inline method="post" action=(format!("/sessions/{}/revoke", s.token_hash)) {
                        (ctx.csrf())
                        input type="hidden" name="user" value=(s.user);
                        button.delete type="submit" { "Revoke" }
                    } }
                } } }
            } }
        }
        p.hint {
            "Users are shared by every site (replicated); a session holds on the site where it was made. "
            "A new password, disabling a user or ending its sessions ends them on every site."
        }
    };
    ctx.page(Section::Users, "Users", &notice.unwrap_or(Notice::None), body)
}

pub async fn list(ctx: Ctx) -> Response {
    users(ctx, None).await
}

pub async fn create(ctx: Ctx, change: Change) -> Response {
    let name = change.fields.get("name").trim().to_string();
    let refuse = |ctx: Ctx, message: String| async move {
        let page = users(ctx, Some(Notice::Error(message))).await;
        (StatusCode::BAD_REQUEST, page).into_response()
    };
    if let Err(e) = dugong_store::console::user_name(&name) {
        return refuse(ctx, e.to_string()).await;
    }
    let hash = match new_password(&change) {
        Ok(p) => match hash(p).await {
            Ok(h) => h,
            Err(m) => return refuse(ctx, m).await,
        },
        Err(m) => return refuse(ctx, m).await,
    };
    match ctx.state.store.create_console_user(&name, &hash, &change.who).await {
        Ok(u) => {
            crate::audit::changed(&change.who, Action::Create, dugong_store::audit::USERS, &u.name, u.version);
            Redirect::to(&format!("/users/{}?done=created", url_component(&name))).into_response()
        }
        Err(StoreError::Conflict { .. }) => refuse(ctx, format!("A user {name:?} exists already.")).await,
        Err(e) => html::store_failure(&e),
    }
}

async fn find(ctx: &Ctx, name: &str) -> Result<ConsoleUser, Response> {
    match ctx.state.store.console_user(name).await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(message_page(ctx, StatusCode::NOT_FOUND, "Not found", "no such user")),
        Err(e) => Err(html::store_failure(&e)),
    }
}

pub async fn user(
    ctx: Ctx,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let u = match find(&ctx, &name).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let action = |path: &str| format!("/users/{}/{path}", url_component(&u.name));
    let button = |path: &str, id: &str, label: &str, danger: bool| {
        html! {
            form method="post" action=(action(path)) class=(if danger { "danger" } else { "inline" })
                data-confirm=[danger.then(|| format!("{label}?"))] {
                (ctx.csrf())
                button type="submit" id=(id) class=[danger.then_some("delete")] { (label) }
            }
        }
    };
    let body = html! {
        p.meta {
            a href="/users" { "All users" } " · "
            @if u.disabled { strong.bad { "disabled" } } @else { "active" }
            ", changed " (when(u.updated_at)) "."
        }
        h2 { "Reset the password" }
        form.record method="post" action=(action("password")) {
            (ctx.csrf())
            (password_fields())
            p { button #reset type="submit" { "Set password" } }
        }
        h2 { "Access" }
        (button("sessions/end", "end-sessions", "End every session (all sites)", false))
        @if u.name != ctx.authed.user {
            @if u.disabled { (button("enable", "enable", "Enable", false)) }
            @else { (button("disable", "disable", "Disable (ends every session)", false)) }
            (button("delete", "delete", &format!("Delete user {}", u.name), true))
        } @else {
            p.hint { "This is you: another user disables or deletes this account." }
        }
    };
    let notice = match q.get("done").map(String::as_str) {
        Some("created") => Notice::Ok("User created.".into()),
        Some("password") => Notice::Ok("Password set; the user's sessions have ended on every site.".into()),
        Some("disabled") => Notice::Ok("Disabled; the user's sessions have ended on every site.".into()),
        Some("enabled") => Notice::Ok("Enabled.".into()),
        Some("ended") => Notice::Ok("Every session of the user has ended, on every site.".into()),
        _ => Notice::None,
    };
    ctx.page(Section::Users, &format!("User {}", u.name), &notice, body)
}

/// Runs `update` on user `name` and goes back to its page saying `done`.
async fn apply(ctx: &Ctx, change: &Change, name: &str, update: UserUpdate, done: &str) -> Response {
    let action = match &update {
        UserUpdate::Password { action, .. } => *action,
        UserUpdate::Disabled(true) => Action::Disable,
        UserUpdate::Disabled(false) => Action::Enable,
        UserUpdate::EndSessions => Action::EndSessions,
    };
    match ctx.state.store.update_console_user(name, &update, &change.who).await {
        Ok(u) => {
            crate::audit::changed(&change.who, action, dugong_store::audit::USERS, &u.name, u.version);
            Redirect::to(&format!("/users/{}?done={done}", url_component(name))).into_response()
        }
        Err(StoreError::NotFound { .. }) => message_page(ctx, StatusCode::NOT_FOUND, "Not found", "no such user"),
        Err(e) => html::store_failure(&e),
    }
}

pub async fn reset_password(ctx: Ctx, Path(name): Path<String>, change: Change) -> Response {
    let hash = match new_password(&change) {
        Ok(p) => hash(p).await,
        Err(m) => Err(m),
    };
    match hash {
        Ok(hash) => {
            let action = if name == change.authed.user { Action::PasswordChange } else { Action::PasswordReset };
            apply(&ctx, &change, &name, UserUpdate::Password { hash, action }, "password").await
        }
        Err(m) => message_page(&ctx, StatusCode::BAD_REQUEST, "Not accepted", &m),
    }
}

pub async fn disable(ctx: Ctx, Path(name): Path<String>, change: Change) -> Response {
    if name == change.authed.user {
        return message_page(&ctx, StatusCode::BAD_REQUEST, "Not accepted", "You cannot disable your own account.");
    }
    apply(&ctx, &change, &name, UserUpdate::Disabled(true), "disabled").await
}

pub async fn enable(ctx: Ctx, Path(name): Path<String>, change: Change) -> Response {
    apply(&ctx, &change, &name, UserUpdate::Disabled(false), "enabled").await
}

pub async fn end_sessions(ctx: Ctx, Path(name): Path<String>, change: Change) -> Response {
    apply(&ctx, &change, &name, UserUpdate::EndSessions, "ended").await
}

pub async fn delete(ctx: Ctx, Path(name): Path<String>, change: Change) -> Response {
    if name == change.authed.user {
        return message_page(&ctx, StatusCode::BAD_REQUEST, "Not accepted", "You cannot delete your own account.");
    }
    match ctx.state.store.delete_console_user(&name, &change.who).await {
        Ok(u) => {
            crate::audit::changed(&change.who, Action::Delete, dugong_store::audit::USERS, &u.name, u.version);
            Redirect::to("/users").into_response()
        }
        Err(StoreError::NotFound { .. }) => message_page(&ctx, StatusCode::NOT_FOUND, "Not found", "no such user"),
        Err(e) => html::store_failure(&e),
    }
}

pub async fn revoke(ctx: Ctx, Path(hash): Path<String>, change: Change) -> Response {
    let user = change.fields.get("user").to_string();
    match ctx.state.store.revoke_session(&hash, &user, &change.who).await {
        Ok(_) => Redirect::to("/users").into_response(),
        Err(e) => html::store_failure(&e),
    }
}

pub async fn account(ctx: Ctx) -> Response {
    let body = html! {
        form.record method="post" action="/account/password" {
            (ctx.csrf())
            p { label for="current" { "Current password" }
                input #current name="current" type="password" autocomplete="current-password" required; }
            (password_fields())
            p { button #change type="submit" { "Change password" } }
        }
        p.hint { "Changing it ends your sessions on every site, this one included." }
    };
    ctx.page(Section::None, "Your password", &Notice::None, body)
}

pub async fn change_password(ctx: Ctx, change: Change) -> Response {
    let me = change.authed.user.clone();
    let current = match find(&ctx, &me).await {
        Ok(u) => u.password_hash,
        Err(r) => return r,
    };
    let typed = change.fields.get("current").to_string();
    let matched = tokio::task::spawn_blocking(move || password::verify(&typed, &current)).await.unwrap_or(false);
    if !matched {
        return message_page(&ctx, StatusCode::BAD_REQUEST, "Not accepted", "The current password is wrong.");
    }
    let hash = match new_password(&change) {
        Ok(p) => hash(p).await,
        Err(m) => Err(m),
    };
    let hash = match hash {
        Ok(h) => h,
        Err(m) => return message_page(&ctx, StatusCode::BAD_REQUEST, "Not accepted", &m),
    };
    let update = UserUpdate::Password { hash, action: Action::PasswordChange };
    match ctx.state.store.update_console_user(&me, &update, &change.who).await {
        Ok(u) => {
            crate::audit::changed(&change.who, Action::PasswordChange, dugong_store::audit::USERS, &u.name, u.version);
            // This session ended with the others: log in with the new password.
            Redirect::to("/login").into_response()
        }
        Err(e) => html::store_failure(&e),
    }
}

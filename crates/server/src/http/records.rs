//! Apps, flows, settings and contexts as JSON: one set of handlers, generic
//! over [`Resource`], each kind saying only what its body looks like.
//!
//! ```text
//! GET    /api/v1/<kind>?page_size=&page_token=[&app_id=]   {"<kind>": [...], "next_page_token": "..."}
//! GET    /api/v1/<kind>/<key>                              the record
//! PUT    /api/v1/<kind>/<key>   {..fields, "expected_version"?: n}   201 created / 200 replaced
//! DELETE /api/v1/<kind>/<key>?expected_version=n           {"version": n}
//! ```

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use dugong_store::{Input, Kind, Page, Record, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{JsonBody, Key, Params, Who};
use super::openapi::{Caller, Spec};
use super::schema::{
    AppBody, AppJson, AppPage, ContextBody, ContextJson, ContextPage, Deleted, FlowBody, FlowJson, FlowPage,
    SettingBody, SettingJson, SettingPage,
};
use crate::error::ApiError;
use crate::ops;
use crate::state::AppState;

/// A kind served over REST: the body a PUT takes, the record it returns, and
/// a page of a list.
pub trait Resource: Send + Sync + 'static {
    const KIND: Kind;
    /// The path parameter naming a record (`id`, `key`, `user`).
    const KEY: &'static str;
    type Body: DeserializeOwned + ToSchema + Send + 'static;
    type Json: Serialize + ToSchema + Send + 'static;
    type Page: Serialize + ToSchema + Send + 'static;
    fn input(key: &str, body: &Self::Body) -> Result<Input, StoreError>;
    fn expected(body: &Self::Body) -> Option<i64>;
    /// The record as JSON; `None` for a record of another kind.
    fn json(record: &Record) -> Option<Self::Json>;
    fn page(items: Vec<Self::Json>, next_page_token: String) -> Self::Page;
}

pub struct Apps;
pub struct Flows;
pub struct Settings;
pub struct Contexts;

impl Resource for Apps {
    const KIND: Kind = Kind::App;
    const KEY: &'static str = "id";
    type Body = AppBody;
    type Json = AppJson;
    type Page = AppPage;
    fn input(key: &str, b: &AppBody) -> Result<Input, StoreError> {
        Input::app(key, &b.name, &b.description)
    }
    fn expected(b: &AppBody) -> Option<i64> {
        b.expected_version
    }
    fn json(record: &Record) -> Option<AppJson> {
        match record {
            Record::App(a) => Some(a.into()),
            _ => None,
        }
    }
    fn page(apps: Vec<AppJson>, next_page_token: String) -> AppPage {
        AppPage { apps, next_page_token }
    }
}

impl Resource for Flows {
    const KIND: Kind = Kind::Flow;
    const KEY: &'static str = "id";
    type Body = FlowBody;
    type Json = FlowJson;
    type Page = FlowPage;
    fn input(key: &str, b: &FlowBody) -> Result<Input, StoreError> {
        Input::flow(key, &b.app_id, &b.name, &b.script)
    }
    fn expected(b: &FlowBody) -> Option<i64> {
        b.expected_version
    }
    fn json(record: &Record) -> Option<FlowJson> {
        match record {
            Record::Flow(f) => Some(f.into()),
            _ => None,
        }
    }
    fn page(flows: Vec<FlowJson>, next_page_token: String) -> FlowPage {
        FlowPage { flows, next_page_token }
    }
}

impl Resource for Settings {
    const KIND: Kind = Kind::Setting;
    const KEY: &'static str = "key";
    type Body = SettingBody;
    type Json = SettingJson;
    type Page = SettingPage;
    fn input(key: &str, b: &SettingBody) -> Result<Input, StoreError> {
        Input::setting(key, &b.value)
    }
    fn expected(b: &SettingBody) -> Option<i64> {
        b.expected_version
    }
    fn json(record: &Record) -> Option<SettingJson> {
        match record {
            Record::Setting(s) => Some(s.into()),
            _ => None,
        }
    }
    fn page(settings: Vec<SettingJson>, next_page_token: String) -> SettingPage {
        SettingPage { settings, next_page_token }
    }
}

impl Resource for Contexts {
    const KIND: Kind = Kind::Context;
    const KEY: &'static str = "user";
    type Body = ContextBody;
    type Json = ContextJson;
    type Page = ContextPage;
    fn input(key: &str, b: &ContextBody) -> Result<Input, StoreError> {
        Input::context(key, &b.values)
    }
    fn expected(b: &ContextBody) -> Option<i64> {
        b.expected_version
    }
    fn json(record: &Record) -> Option<ContextJson> {
        match record {
            Record::Context(c) => Some(c.into()),
            _ => None,
        }
    }
    fn page(contexts: Vec<ContextJson>, next_page_token: String) -> ContextPage {
        ContextPage { contexts, next_page_token }
    }
}

/// A record of the wrong kind from the store: a damaged database, never the client's fault.
fn wrong_kind<R: Resource>(record: &Record) -> ApiError {
    ApiError::Store(StoreError::Corrupt {
        kind: R::KIND.as_str(),
        key: record.key().to_string(),
        reason: "read back as another kind".into(),
    })
}

fn page_json<R: Resource>(page: Page<Record>) -> Result<R::Page, ApiError> {
    let items = page.items.iter().map(|r| R::json(r).ok_or_else(|| wrong_kind::<R>(r))).collect::<Result<_, _>>()?;
    Ok(R::page(items, page.next.unwrap_or_default()))
}

/// `?page_size=&page_token=[&app_id=]` of a list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1 to 1000; 0 or absent: 100.
    #[serde(default)]
    #[param(maximum = 1000)]
    page_size: u32,
    /// The previous page's next_page_token; empty or absent: the first page.
    #[serde(default)]
    page_token: String,
    /// Flows only: those of this app.
    #[param(format = Uuid)]
    app_id: Option<String>,
}

/// `?expected_version=` of a delete.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Delete only at this version.
    #[param(minimum = 1)]
    expected_version: Option<i64>,
}

pub async fn list<R: Resource>(
    State(state): State<AppState>,
    Params(p): Params<ListParams>,
) -> Result<Json<R::Page>, ApiError> {
    let page = ops::list(&state, R::KIND, p.page_size, &p.page_token, p.app_id.as_deref()).await?;
    Ok(Json(page_json::<R>(page)?))
}

pub async fn get_one<R: Resource>(State(state): State<AppState>, Key(key): Key) -> Result<Json<R::Json>, ApiError> {
    let record = ops::get(&state, R::KIND, &key).await?;
    Ok(Json(R::json(&record).ok_or_else(|| wrong_kind::<R>(&record))?))
}

pub async fn put<R: Resource>(
    State(state): State<AppState>,
    Who(who): Who,
    Key(key): Key,
    JsonBody(body): JsonBody<R::Body>,
) -> Result<(StatusCode, Json<R::Json>), ApiError> {
    let record = ops::put(&state, &who, R::input(&key, &body), R::expected(&body)).await?;
    let status = if record.version() == 1 { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(R::json(&record).ok_or_else(|| wrong_kind::<R>(&record))?)))
}

pub async fn remove<R: Resource>(
    State(state): State<AppState>,
    Who(who): Who,
    Key(key): Key,
    Params(p): Params<DeleteParams>,
) -> Result<Json<Deleted>, ApiError> {
    let version = ops::delete(&state, &who, R::KIND, &key, p.expected_version).await?;
    Ok(Json(Deleted { version }))
}

/// The list operation of `R`.
pub fn list_spec<R: Resource>() -> Spec {
    let kind = R::KIND.as_str();
    Spec::new(&format!("list_{kind}"), kind, &format!("List {kind}, in key order, a page at a time"), Caller::Reader)
        .query::<ListParams>()
        .answer::<R::Page>(200, "A page")
        .database()
}

fn one<R: Resource>(id: &str, summary: &str, caller: Caller) -> Spec {
    let uuid = matches!(R::KIND, Kind::App | Kind::Flow);
    let spec = Spec::new(&format!("{id}_{}", R::KIND.singular()), R::KIND.as_str(), summary, caller);
    spec.path(R::KEY, &format!("The {}'s {}", R::KIND.singular(), R::KEY), uuid)
}

pub fn get_spec<R: Resource>() -> Spec {
    one::<R>("get", &format!("Read one {}", R::KIND.singular()), Caller::Reader)
        .answer::<R::Json>(200, "The record")
        .error(404, "No such record")
        .database()
}

pub fn put_spec<R: Resource>() -> Spec {
    let summary = format!("Create or replace a {}, optionally only at an expected version", R::KIND.singular());
    one::<R>("put", &summary, Caller::Writer)
        .body::<R::Body>()
        .answer::<R::Json>(200, "Replaced")
        .answer::<R::Json>(201, "Created")
        .error(404, "An expected version (1 or more) was given and there is no such record")
        .error(
            409,
            "The record is not at the expected version (current_version says where it is), or the name is taken",
        )
        .database()
}

pub fn delete_spec<R: Resource>() -> Spec {
    one::<R>("delete", &format!("Delete a {}", R::KIND.singular()), Caller::Writer)
        .query::<DeleteParams>()
        .answer::<Deleted>(200, "Deleted")
        .error(404, "No such record")
        .error(409, "The record is not at the expected version")
        .database()
}

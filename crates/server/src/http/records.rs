//! Apps, flows, settings and contexts as JSON: one set of handlers, generic
//! over [`Resource`], each kind saying only what its body looks like.
//!
//! ```text
//! GET    /api/v1/<kind>?page_size=&page_token=[&app_id=]   {"<kind>": [...], "next_page_token": "..."}
//! GET    /api/v1/<kind>/<key>                              the record
//! PUT    /api/v1/<kind>/<key>   {..fields, "expected_version"?: n}   201 created / 200 replaced
//! DELETE /api/v1/<kind>/<key>?expected_version=n           {"version": n}
//! ```

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use dugong_store::{Input, Kind, Record, StoreError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{JsonBody, Key, Params, Who};
use crate::error::ApiError;
use crate::ops;
use crate::state::AppState;

/// A kind served over REST, and the body a PUT takes.
pub trait Resource: Send + Sync + 'static {
    const KIND: Kind;
    type Body: DeserializeOwned + Send + 'static;
    fn input(key: &str, body: &Self::Body) -> Result<Input, StoreError>;
    fn expected(body: &Self::Body) -> Option<i64>;
}

pub struct Apps;
pub struct Flows;
pub struct Settings;
pub struct Contexts;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppBody {
    name: String,
    #[serde(default)]
    description: String,
    expected_version: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowBody {
    app_id: String,
    name: String,
    #[serde(default)]
    script: String,
    expected_version: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingBody {
    value: Value,
    expected_version: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextBody {
    values: BTreeMap<String, String>,
    expected_version: Option<i64>,
}

impl Resource for Apps {
    const KIND: Kind = Kind::App;
    type Body = AppBody;
    fn input(key: &str, b: &AppBody) -> Result<Input, StoreError> {
        Input::app(key, &b.name, &b.description)
    }
    fn expected(b: &AppBody) -> Option<i64> {
        b.expected_version
    }
}

impl Resource for Flows {
    const KIND: Kind = Kind::Flow;
    type Body = FlowBody;
    fn input(key: &str, b: &FlowBody) -> Result<Input, StoreError> {
        Input::flow(key, &b.app_id, &b.name, &b.script)
    }
    fn expected(b: &FlowBody) -> Option<i64> {
        b.expected_version
    }
}

impl Resource for Settings {
    const KIND: Kind = Kind::Setting;
    type Body = SettingBody;
    fn input(key: &str, b: &SettingBody) -> Result<Input, StoreError> {
        Input::setting(key, &b.value)
    }
    fn expected(b: &SettingBody) -> Option<i64> {
        b.expected_version
    }
}

impl Resource for Contexts {
    const KIND: Kind = Kind::Context;
    type Body = ContextBody;
    fn input(key: &str, b: &ContextBody) -> Result<Input, StoreError> {
        Input::context(key, &b.values)
    }
    fn expected(b: &ContextBody) -> Option<i64> {
        b.expected_version
    }
}

/// A record as JSON, times in RFC 3339.
pub fn record_json(record: &Record) -> Value {
    match record {
        Record::App(a) => json!({
            "id": a.id, "name": a.name, "description": a.description,
            "version": a.version, "updated_at": a.updated_at.to_rfc3339(),
        }),
        Record::Flow(f) => json!({
            "id": f.id, "app_id": f.app_id, "name": f.name, "script": f.script,
            "version": f.version, "updated_at": f.updated_at.to_rfc3339(),
        }),
        Record::Setting(s) => json!({
            "key": s.key, "value": s.value, "version": s.version, "updated_at": s.updated_at.to_rfc3339(),
        }),
        Record::Context(c) => json!({
            "user": c.user, "values": c.values, "version": c.version, "updated_at": c.updated_at.to_rfc3339(),
        }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(default)]
    page_size: u32,
    #[serde(default)]
    page_token: String,
    app_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    expected_version: Option<i64>,
}

pub async fn list<R: Resource>(
    State(state): State<AppState>,
    Params(p): Params<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let page = ops::list(&state, R::KIND, p.page_size, &p.page_token, p.app_id.as_deref()).await?;
    let items: Vec<Value> = page.items.iter().map(record_json).collect();
    Ok(Json(json!({ R::KIND.as_str(): items, "next_page_token": page.next.unwrap_or_default() })))
}

pub async fn get_one<R: Resource>(State(state): State<AppState>, Key(key): Key) -> Result<Json<Value>, ApiError> {
    let record = ops::get(&state, R::KIND, &key).await?;
    Ok(Json(record_json(&record)))
}

pub async fn put<R: Resource>(
    State(state): State<AppState>,
    Who(who): Who,
    Key(key): Key,
    JsonBody(body): JsonBody<R::Body>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let record = ops::put(&state, &who, R::input(&key, &body), R::expected(&body)).await?;
    let status = if record.version() == 1 { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(record_json(&record))))
}

pub async fn remove<R: Resource>(
    State(state): State<AppState>,
    Who(who): Who,
    Key(key): Key,
    Params(p): Params<DeleteParams>,
) -> Result<Json<Value>, ApiError> {
    let version = ops::delete(&state, &who, R::KIND, &key, p.expected_version).await?;
    Ok(Json(json!({ "version": version })))
}

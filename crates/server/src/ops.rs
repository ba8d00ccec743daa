//! The operations both front ends offer, over the store: keys and page tokens
//! are checked here, so gRPC and REST accept and refuse exactly the same.

use std::time::Duration;

use dugong_store::validate::{self, page_size};
use dugong_store::{
    Action, Actor, EventInput, Expect, Input, Kind, ListQuery, Page, Posted, Record, StoreError, SyncHealth,
};

use crate::audit;
use crate::error::ApiError;
use crate::state::{AppState, PROBE_TIMEOUT};

/// The name of a kind's key, for messages: `id`, `key` or `user`.
pub fn key_field(kind: Kind) -> &'static str {
    match kind {
        Kind::App | Kind::Flow => "id",
        Kind::Setting => "key",
        Kind::Context => "user",
    }
}

/// Checks (and normalizes) a key of `kind` given as `field`.
pub fn parse_key(kind: Kind, field: &str, text: &str) -> Result<String, StoreError> {
    match kind {
        Kind::App | Kind::Flow => validate::uuid(field, text),
        Kind::Setting | Kind::Context => validate::key(field, text),
    }
}

pub async fn get(state: &AppState, kind: Kind, key: &str) -> Result<Record, ApiError> {
    let key = parse_key(kind, key_field(kind), key)?;
    state.store.get(kind, &key).await?.ok_or_else(|| StoreError::NotFound { kind: kind.as_str(), key }.into())
}

/// A page of `kind`; an empty `page_token` is the first page. `app_id`
/// filters flows and is refused for other kinds.
pub async fn list(
    state: &AppState,
    kind: Kind,
    size: u32,
    page_token: &str,
    app_id: Option<&str>,
) -> Result<Page<Record>, ApiError> {
    let limit = page_size(size)?;
    let after = match page_token {
        "" => None,
        token => Some(parse_key(kind, "page_token", token)?),
    };
    let app_id = match app_id.filter(|a| !a.is_empty()) {
        None => None,
        Some(_) if kind != Kind::Flow => {
            return Err(StoreError::invalid("app_id", "only flows can be listed by app").into())
        }
        Some(a) => Some(validate::uuid("app_id", a)?),
    };
    Ok(state.store.list(kind, &ListQuery { after, limit, app_id }).await?)
}

/// Writes a record for `who`; the audit entry is written with it.
pub async fn put(
    state: &AppState,
    who: &Actor,
    input: Result<Input, StoreError>,
    expected: Option<i64>,
) -> Result<Record, ApiError> {
    let input = input?;
    let expect = Expect::from_option(expected)?;
    let record = state.store.put_as(who, &input, expect).await?;
    let action = if record.version() == 1 { Action::Create } else { Action::Update };
    audit::changed(who, action, input.kind().as_str(), record.key(), record.version());
    Ok(record)
}

/// [`put`] with a note in the audit entry and history row ("restored
/// version 3").
pub async fn put_noted(
    state: &AppState,
    who: &Actor,
    input: Result<Input, StoreError>,
    expected: Option<i64>,
    note: &str,
) -> Result<Record, ApiError> {
    let input = input?;
    let expect = Expect::from_option(expected)?;
    let record = state.store.put_noted(who, &input, expect, note).await?;
    let action = if record.version() == 1 { Action::Create } else { Action::Update };
    audit::changed(who, action, input.kind().as_str(), record.key(), record.version());
    Ok(record)
}

/// Deletes a record for `who`; the audit entry is written with it.
pub async fn delete(
    state: &AppState,
    who: &Actor,
    kind: Kind,
    key: &str,
    expected: Option<i64>,
) -> Result<i64, ApiError> {
    let key = parse_key(kind, key_field(kind), key)?;
    let expect = Expect::from_option(expected)?;
    let version = state.store.delete_as(who, kind, &key, expect).await?;
    audit::changed(who, Action::Delete, kind.as_str(), &key, version);
    Ok(version)
}

/// Stores a post (already validated event by event).
pub async fn post_events(state: &AppState, events: Vec<EventInput>) -> Result<Posted, ApiError> {
    validate::event_count(events.len())?;
    Ok(state.store.post_events(&events).await?)
}

pub async fn list_events(state: &AppState, size: u32, page_token: &str) -> Result<Page<dugong_store::Event>, ApiError> {
    let limit = page_size(size)?;
    let after = match page_token {
        "" => None,
        token => Some(validate::uuid("page_token", token)?),
    };
    Ok(state.store.list_events(after.as_deref(), limit).await?)
}

/// The audit log's filters as a client writes them (empty means none).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub resource: Option<String>,
    pub key: Option<String>,
    pub site: Option<String>,
    /// RFC 3339 times.
    pub since: Option<String>,
    pub until: Option<String>,
}

/// A page of the audit log, newest first; every filter is checked and a bad
/// one named.
pub async fn audit(
    state: &AppState,
    filter: &AuditFilter,
    size: u32,
    page_token: &str,
) -> Result<Page<dugong_store::AuditEntry>, ApiError> {
    let given = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let action = match given(&filter.action) {
        None => None,
        Some(a) => Some(Action::parse(&a).ok_or_else(|| {
            let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
            StoreError::invalid("action", format!("`{a}` is not an action; one of {}", known.join(", ")))
        })?),
    };
    let time = |field: &str, v: &Option<String>| -> Result<Option<dugong_store::Micros>, StoreError> {
        given(v)
            .map(|t| {
                humantime::parse_rfc3339_weak(&t)
                    .map(dugong_store::Micros::from)
                    .map_err(|_| StoreError::invalid(field, "not a time; write 2024-05-01T12:00:00Z"))
            })
            .transpose()
    };
    let query = dugong_store::AuditQuery {
        actor: given(&filter.actor),
        action,
        resource: given(&filter.resource),
        key: given(&filter.key),
        site: given(&filter.site),
        since: time("since", &filter.since)?,
        until: time("until", &filter.until)?,
        after: match page_token {
            "" => None,
            token => Some(dugong_store::AuditCursor::parse("page_token", token)?),
        },
        limit: page_size(size)?,
    };
    Ok(state.store.audit(&query).await?)
}

/// What server info reports.
#[derive(Debug, Clone)]
pub struct Info {
    pub site: String,
    pub version: &'static str,
    pub engine: &'static str,
    pub database_reachable: bool,
    /// Why the database did not answer.
    pub database_error: Option<String>,
    pub schema_version: i64,
    pub replication: Vec<SyncHealth>,
    /// Why the replication state could not be read although the database
    /// answered (privileges, a replicator upgrading its tables).
    pub replication_error: Option<String>,
}

/// Who this server is and how its site looks now. Never fails: what can't be
/// read is reported as such. What it learns goes into the replication
/// monitor, which keeps the last state through an outage.
pub async fn info(state: &AppState) -> Info {
    let probe = state.probe().await;
    let mut replication = Vec::new();
    let mut replication_error = None;
    match &probe {
        Ok(()) => match tokio::time::timeout(PROBE_TIMEOUT, state.store.replication()).await {
            Ok(Ok(r)) => {
                state.replication.seen(&r);
                replication = r;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "replication state unreadable");
                state.replication.reachable();
                replication_error = Some(e.to_string());
            }
            Err(_) => replication_error = Some(format!("no answer within {PROBE_TIMEOUT:?}")),
        },
        Err(e) => state.replication.unreachable(&e.to_string()),
    }
    Info {
        site: state.config.site.clone(),
        version: env!("CARGO_PKG_VERSION"),
        engine: state.store.engine(),
        database_reachable: probe.is_ok(),
        database_error: probe.err().map(|e| e.to_string()),
        schema_version: state.schema_version,
        replication,
        replication_error,
    }
}

/// Seconds as a float, for JSON and protobuf.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

//! The JSON the REST API reads and writes, as types: the handlers take and
//! return exactly these, and the OpenAPI document (`openapi`) is generated
//! from them (`utoipa::ToSchema`), so the two cannot drift. Limits are the
//! store's own rules (`dugong_store::validate`), checked against the
//! generated schemas by a test.

use std::collections::BTreeMap;

use dugong_store::{AuditEntry, Event, Micros, Record};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// An application that clients automate.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = App)]
pub struct AppJson {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
    pub description: String,
    /// Bumped by every write; send it back as `expected_version`.
    pub version: i64,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// An automation script of an app.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Flow)]
pub struct FlowJson {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub app_id: String,
    pub name: String,
    pub script: String,
    pub version: i64,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// A key and any JSON value.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Setting)]
pub struct SettingJson {
    pub key: String,
    /// Any JSON value.
    #[schema(value_type = Value)]
    pub value: Value,
    pub version: i64,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// A user's shared desktop context.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Context)]
pub struct ContextJson {
    pub user: String,
    pub values: BTreeMap<String, String>,
    pub version: i64,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&dugong_store::App> for AppJson {
    fn from(a: &dugong_store::App) -> AppJson {
        AppJson {
            id: a.id.clone(),
            name: a.name.clone(),
            description: a.description.clone(),
            version: a.version,
            updated_at: a.updated_at.to_rfc3339(),
        }
    }
}

impl From<&dugong_store::Flow> for FlowJson {
    fn from(f: &dugong_store::Flow) -> FlowJson {
        FlowJson {
            id: f.id.clone(),
            app_id: f.app_id.clone(),
            name: f.name.clone(),
            script: f.script.clone(),
            version: f.version,
            updated_at: f.updated_at.to_rfc3339(),
        }
    }
}

impl From<&dugong_store::Setting> for SettingJson {
    fn from(s: &dugong_store::Setting) -> SettingJson {
        SettingJson {
            key: s.key.clone(),
            value: s.value.clone(),
            version: s.version,
            updated_at: s.updated_at.to_rfc3339(),
        }
    }
}

impl From<&dugong_store::Context> for ContextJson {
    fn from(c: &dugong_store::Context) -> ContextJson {
        ContextJson {
            user: c.user.clone(),
            values: c.values.clone(),
            version: c.version,
            updated_at: c.updated_at.to_rfc3339(),
        }
    }
}

/// A record of any kind as JSON (Watch's change events carry these).
pub fn record_json(record: &Record) -> Value {
    let value = match record {
        Record::App(a) => serde_json::to_value(AppJson::from(a)),
        Record::Flow(f) => serde_json::to_value(FlowJson::from(f)),
        Record::Setting(s) => serde_json::to_value(SettingJson::from(s)),
        Record::Context(c) => serde_json::to_value(ContextJson::from(c)),
    };
    value.unwrap_or(Value::Null)
}

/// `PUT /api/v1/apps/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PutApp)]
pub struct AppBody {
    /// One line, unique among apps (ignoring case).
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub description: String,
    /// 0: must not exist yet; n: must be at version n; absent: any.
    #[schema(minimum = 0)]
    pub expected_version: Option<i64>,
}

/// `PUT /api/v1/flows/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PutFlow)]
pub struct FlowBody {
    #[schema(format = Uuid)]
    pub app_id: String,
    /// One line, unique among the flows of its app (ignoring case).
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// At most 262144 bytes of UTF-8.
    #[serde(default)]
    pub script: String,
    #[schema(minimum = 0)]
    pub expected_version: Option<i64>,
}

/// `PUT /api/v1/settings/{key}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PutSetting)]
pub struct SettingBody {
    /// Any JSON value, at most 65536 bytes as compact JSON.
    #[schema(value_type = Value)]
    pub value: Value,
    #[schema(minimum = 0)]
    pub expected_version: Option<i64>,
}

/// `PUT /api/v1/contexts/{user}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PutContext)]
pub struct ContextBody {
    /// At most 64 entries; names like keys, values one line of at most 4096 characters.
    #[schema(schema_with = context_values)]
    pub values: BTreeMap<String, String>,
    #[schema(minimum = 0)]
    pub expected_version: Option<i64>,
}

/// A context's entries: names to one-line texts, as many as the store takes.
fn context_values() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(dugong_store::validate::MAX_CONTEXT_VALUE_CHARS));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(value))
        .max_properties(Some(dugong_store::validate::MAX_CONTEXT_ENTRIES))
        .build()
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AppPage)]
pub struct AppPage {
    pub apps: Vec<AppJson>,
    /// Pass as page_token for the next page; empty on the last.
    pub next_page_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FlowPage)]
pub struct FlowPage {
    pub flows: Vec<FlowJson>,
    pub next_page_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SettingPage)]
pub struct SettingPage {
    pub settings: Vec<SettingJson>,
    pub next_page_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ContextPage)]
pub struct ContextPage {
    pub contexts: Vec<ContextJson>,
    pub next_page_token: String,
}

/// What a delete removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    /// The version the record had.
    pub version: i64,
}

/// Every error: what went wrong, and a stable code.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorJson {
    pub error: String,
    /// `invalid_argument`, `not_found`, `conflict`, `already_exists`, `unavailable`, `outcome_unknown`,
    /// `unauthenticated`, `permission_denied`, `too_large`, `unsupported_media_type`, `no_route`,
    /// `method_not_allowed`, `internal`.
    pub code: String,
    /// On a version conflict: the record's version now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

/// One replicated sync as this site's database records it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncJson {
    pub sync: String,
    pub state: String,
    /// Age of the oldest change made on this site and not yet delivered.
    pub lag_seconds: Option<f64>,
    pub last_good_age_seconds: Option<f64>,
    /// Whether a replicator's heartbeat is recent (three intervals).
    pub replicator_running: bool,
    /// Changes made on this site not yet delivered to every other database.
    pub pending_rows: i64,
}

/// Who the server is and how its site looks.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Info)]
pub struct InfoJson {
    pub site: String,
    pub version: String,
    /// `postgres` or `sqlite`.
    pub engine: String,
    pub database_reachable: bool,
    pub schema_version: i64,
    pub replication: Vec<SyncJson>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Healthz {
    /// Always `ok`: the process answers.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readyz {
    pub ready: bool,
    /// Why not, when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /api/v1/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostEvents {
    /// 1 to 1000 events.
    #[schema(min_items = 1, max_items = 1000)]
    pub events: Vec<NewEvent>,
}

/// An event as a client posts it; its id makes a repeated post harmless.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(min_length = 1, max_length = 100)]
    pub kind: String,
    pub user: Option<String>,
    #[schema(format = Uuid)]
    pub app_id: Option<String>,
    /// RFC 3339 in UTC.
    #[schema(format = DateTime)]
    pub occurred_at: Option<String>,
    /// Any JSON, at most 16384 bytes as compact JSON.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub payload: Value,
}

/// How a post went.
#[derive(Debug, Serialize, ToSchema)]
pub struct Posted {
    pub accepted: u32,
    /// Events whose ids were stored before.
    pub duplicates: u32,
}

/// An event as stored.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Event)]
pub struct EventJson {
    #[schema(format = Uuid)]
    pub id: String,
    pub kind: String,
    pub user: Option<String>,
    pub app_id: Option<String>,
    #[schema(format = DateTime)]
    pub occurred_at: Option<String>,
    #[schema(value_type = Value)]
    pub payload: Value,
    /// The site that received it.
    pub site: String,
    #[schema(format = DateTime)]
    pub received_at: String,
}

impl From<&Event> for EventJson {
    fn from(e: &Event) -> EventJson {
        EventJson {
            id: e.id.clone(),
            kind: e.kind.clone(),
            user: e.user.clone(),
            app_id: e.app_id.clone(),
            occurred_at: e.occurred_at.map(Micros::to_rfc3339),
            payload: e.payload.clone(),
            site: e.site.clone(),
            received_at: e.received_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventJson>,
    pub next_page_token: String,
}

/// An entry of the audit log.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub struct AuditJson {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = DateTime)]
    pub at: String,
    pub site: String,
    pub actor: String,
    /// `token`, `anonymous`, `user` or `cli`.
    pub actor_kind: String,
    pub peer: String,
    pub action: String,
    pub resource: String,
    pub key: String,
    pub version: Option<i64>,
    pub detail: String,
}

impl From<&AuditEntry> for AuditJson {
    fn from(e: &AuditEntry) -> AuditJson {
        AuditJson {
            id: e.id.clone(),
            at: e.at.to_rfc3339(),
            site: e.site.clone(),
            actor: e.actor.clone(),
            actor_kind: e.actor_kind.clone(),
            peer: e.peer.clone(),
            action: e.action.clone(),
            resource: e.resource.clone(),
            key: e.key.clone(),
            version: e.version,
            detail: e.detail.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditJson>,
    pub next_page_token: String,
}

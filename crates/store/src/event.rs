//! Events: what clients report happened, append-only. The id is made by the
//! client, so a post retried after a failover (to this site or another) stores
//! each event once.

use crate::model::Micros;

/// A validated event to store; build it with `EventInput::new` (in
/// `validate.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct EventInput {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) user: Option<String>,
    pub(crate) app_id: Option<String>,
    pub(crate) occurred_at: Option<Micros>,
    /// Compact JSON text.
    pub(crate) payload: String,
}

impl EventInput {
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub user: Option<String>,
    pub app_id: Option<String>,
    pub occurred_at: Option<Micros>,
    pub payload: serde_json::Value,
    /// The site whose server received it.
    pub site: String,
    pub received_at: Micros,
}

/// What a post stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Posted {
    /// Events stored now.
    pub accepted: u32,
    /// Events whose id was already stored: nothing was written for them.
    pub duplicates: u32,
}

//! The server's side of the audit log: who a call came from, as the log names
//! them, and the structured log line every entry also becomes (target
//! `dugong::audit`, at INFO). Changes write their entry in the store together
//! with the change (`Store::put_as` and the like); logins, failed logins,
//! logouts and lockouts write one of their own here.

use std::net::IpAddr;

use dugong_store::{Action, Actor, ActorKind, NewAudit};

use crate::auth::Caller;
use crate::metrics;
use crate::net::Peer;
use crate::state::AppState;

/// The actor of an API call.
pub fn actor(caller: &Caller, peer: Option<&Peer>) -> Actor {
    let peer = peer.map(|p| p.addr.ip().to_canonical().to_string()).unwrap_or_default();
    match caller {
        Caller::Token { name, .. } => Actor::new(name.clone(), ActorKind::Token, peer),
        Caller::Anonymous => Actor::new("anonymous", ActorKind::Anonymous, peer),
    }
}

/// A console user at `ip`.
pub fn user(name: &str, ip: IpAddr) -> Actor {
    Actor::new(name, ActorKind::User, ip.to_canonical().to_string())
}

/// The log line of an entry. Names the actor (a token's name or a user's,
/// never a secret), the record and its version; never a value.
pub fn log(entry: &NewAudit) {
    metrics::audit_entry(entry.action.as_str());
    tracing::info!(
        target: "dugong::audit",
        actor = %entry.actor.name,
        actor_kind = entry.actor.kind.as_str(),
        peer = %entry.actor.peer,
        action = entry.action.as_str(),
        resource = %entry.resource,
        key = %entry.key,
        version = entry.version,
        detail = %entry.detail,
        "audit"
    );
}

/// The log line of a change the store recorded with itself.
pub fn changed(who: &Actor, action: Action, resource: &str, key: &str, version: i64) {
    log(&NewAudit {
        actor: who.clone(),
        action,
        resource: resource.to_string(),
        key: key.to_string(),
        version: Some(version),
        detail: String::new(),
    });
}

/// Records an entry that goes with no change of data (a login and the
/// like). A failure to record is logged as an error, not passed on: the
/// login itself already happened or was refused.
pub async fn record(state: &AppState, entry: NewAudit) {
    log(&entry);
    if let Err(e) = state.store.append_audit(&entry).await {
        tracing::error!(error = %e, action = entry.action.as_str(), "audit entry not written to the database");
    }
}

//! The server's side of the audit log: who a call came from, as the log names
//! them, and the structured log line every entry also becomes (target
//! `dugong::audit`, at INFO). Changes write their entry in the store together
//! with the change (`Store::put_as` and the like); logins, failed logins,
//! logouts and lockouts write one of their own here.

use std::net::IpAddr;

use dugong_store::audit::{CONSOLE, SESSIONS, USERS};
use dugong_store::{Action, Actor, ActorKind, NewAudit};
use sha2::{Digest, Sha256};

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

/// The log line of an entry: the actor, the record and its version; never a
/// value. Console user names appear only as a pseudonym (`user-1a2b3c4d`,
/// the start of their SHA-256): a name typed into a login form may be a
/// password typed into the wrong field, and log files travel further than
/// the database. The entry in the database names them.
pub fn log(entry: &NewAudit) {
    metrics::audit_entry(entry.action.as_str());
    let personal = matches!(entry.resource.as_str(), CONSOLE | USERS | SESSIONS);
    let actor = match entry.actor.kind {
        ActorKind::User => pseudonym(&entry.actor.name),
        _ => entry.actor.name.clone(),
    };
    let key = if personal { pseudonym(&entry.key) } else { entry.key.clone() };
    tracing::info!(
        target: "dugong::audit",
        actor = %actor,
        actor_kind = entry.actor.kind.as_str(),
        peer = %entry.actor.peer,
        action = entry.action.as_str(),
        resource = %entry.resource,
        key = %key,
        version = entry.version,
        detail = %entry.detail,
        "audit"
    );
}

/// `user-` and the first 8 hex digits of the name's SHA-256; empty for none.
pub fn pseudonym(name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    let digest = Sha256::digest(name.as_bytes());
    format!("user-{}", digest.iter().take(4).map(|b| format!("{b:02x}")).collect::<String>())
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

//! The status page: is the site's database there, how replication stands —
//! each sync's state, its replicator (running, stopped, standing by), this
//! site's changes not yet delivered to each other database and how old the
//! oldest is, the last good and bad runs — a chart of lag and pending rows
//! over the last hour, and the latest events.
//!
//! It works while the site's database is down, when an operator needs it
//! most: it says so, with the error and since when, and shows the
//! replication state this server last read, with its age. Nobody can log in
//! then (sessions live in the database), so the page is shown without a
//! login while the database does not answer.

use std::time::{Duration, SystemTime};

use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use dugong_store::SyncHealth;
use maud::{html, Markup};

use super::chart::chart;
use super::html::{self, duration, when, Notice, Section};
use super::session::Authed;
use super::view::frame_of;
use crate::ops;
use crate::replication::Seen;
use crate::state::AppState;

/// Events listed.
const RECENT_EVENTS: u32 = 20;

/// How long ago `at` was.
fn ago(at: SystemTime) -> Duration {
    SystemTime::now().duration_since(at).unwrap_or_default()
}

/// The replicator of a sync, in words; `late` is added to the heartbeat's
/// age (state read a while ago).
fn replicator(s: &SyncHealth, late: Duration) -> Markup {
    html! {
        @match &s.replicator {
            Some(beat) if s.running() && late.is_zero() => span.good.running {
                "running: pid " (beat.pid) " on " (beat.host) " (heartbeat " (duration(beat.age)) " ago)"
            },
            Some(beat) if beat.stopped => span.bad.stopped {
                "STOPPED: it stopped " (duration(beat.age + late)) " ago (on " (beat.host) ")"
            },
            Some(beat) => span.bad.stopped {
                "STOPPED or unreachable: last heartbeat " (duration(beat.age + late)) " ago (pid " (beat.pid) " on " (beat.host) ")"
            },
            None => span.bad.stopped { "no replicator has run this sync" },
        }
        @if let Some(standby) = &s.standby {
            br; span.hint { "standing by: pid " (standby.pid) " on " (standby.host) ", seen " (duration(standby.age + late)) " ago" }
        }
    }
}

/// The syncs as read (`late`: how long ago).
fn syncs(syncs: &[SyncHealth], late: Duration) -> Markup {
    let age = |d: Option<Duration>| d.map_or("never".to_string(), |a| format!("{} ago", duration(a + late)));
    html! {
        div.scroll { table #syncs {
            thead { tr {
                th scope="col" { "Sync" } th scope="col" { "State" } th scope="col" { "Replicator" }
                th scope="col" { "Lag" } th scope="col" { "Pending here" } th scope="col" { "Last good run" }
                th scope="col" { "Last bad run" } th scope="col" { "Conflicts" }
            } }
            tbody { @for s in syncs { tr {
                td { (s.sync) }
                td class=(if s.state == "Good" { "good" } else { "bad" }) { (s.state) }
                td { (replicator(s, late)) }
                td { @match s.lag { Some(l) => (duration(l)), None => "unknown (track_commit_timestamp off?)" } }
                td { (s.pending()) }
                td { (age(s.last_good_age)) }
                td { (age(s.last_bad_age)) }
                td { a href="/conflicts" { (s.conflicts_total) } }
            } } }
        } }
        @for s in syncs {
            @if let Some(error) = &s.last_error {
                @if s.state != "Good" { p.notice.error.last-error { (s.sync) ", last error: " (error) } }
            }
        }
        @if syncs.iter().any(|s| !s.backlog.is_empty()) {
            h3 { "This site's changes not yet delivered" }
            div.scroll { table #backlog {
                thead { tr { th scope="col" { "Sync" } th scope="col" { "To database" } th scope="col" { "Rows waiting" } th scope="col" { "Oldest" } } }
                tbody { @for s in syncs { @for b in &s.backlog { tr {
                    td { (s.sync) }
                    td { @if b.target == "*" { "every other database" } @else { (b.target) } }
                    td class=[(b.rows > 0).then_some("bad")] { (b.rows) }
                    td { @match b.lag { Some(l) => (duration(l)), None => "unknown" } }
                } } } }
            } }
            p.hint { "Each database knows only its own changes: the other sites' backlogs are on their status pages." }
        }
    }
}

/// The replication section: fresh when the database answered, else what
/// this server last read.
fn replication(info: &ops::Info, last: Option<&Seen>) -> Markup {
    html! {
        h2 { "Replication" }
        @if info.database_reachable {
            @if let Some(e) = &info.replication_error {
                p.notice.error { "The replication state cannot be read: " (e) }
            } @else if info.replication.is_empty() {
                p.empty #replication-none {
                    "No replication recorded in this database: " code { "dugong replicate" } " has not run against it. "
                    "Changes made here stay here."
                }
            } @else {
                (syncs(&info.replication, Duration::ZERO))
            }
        } @else {
            @match last {
                Some(seen) => {
                    p.notice.error #stale-state {
                        "What the replicator last reported, as this server read it " (duration(ago(seen.at))) " ago, "
                        "before the database stopped answering (ages below are counted to now):"
                    }
                    @if seen.syncs.is_empty() { p.empty { "No replication was recorded then." } }
                    @else { (syncs(&seen.syncs, ago(seen.at))) }
                }
                None => p.empty #stale-state { "This server has not read the replication state since it started." },
            }
        }
    }
}

pub async fn status(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let info = ops::info(&state).await;
    // Sessions are in the database: while it is down nobody can be checked,
    // and this page is shown to whoever reaches the console.
    let authed = if info.database_reachable {
        match Authed::from_request_parts(&mut parts, &state).await {
            Ok(a) => Some(a),
            Err(to_login) => return to_login,
        }
    } else {
        None
    };
    let frame = frame_of(&info, &parts.headers, authed.as_ref());
    let outage = state.replication.outage();
    let last = state.replication.last_seen();
    let notice = match (&outage, info.database_reachable) {
        (Some(o), false) => Notice::Error(format!(
            "This site's database is unreachable (for {}): {}. Nothing can be read or changed here and nobody can log \
             in until it is back; the other site's console still works. This page shows what this server last saw.",
            duration(ago(o.since)),
            o.error
        )),
        _ => Notice::None,
    };
    let events = match (&authed, info.database_reachable) {
        (Some(_), true) => Some(state.store.recent_events(RECENT_EVENTS).await),
        _ => None,
    };
    let db_state = match (&info.database_error, &outage) {
        (None, _) => "reachable".to_string(),
        (Some(e), Some(o)) => format!("UNREACHABLE since {}: {e}", html::utc(o.since.into())),
        (Some(e), None) => format!("UNREACHABLE: {e}"),
    };
    let body = html! {
        table #server .facts { tbody {
            tr { th scope="row" { "Site" } td { (info.site) } }
            tr { th scope="row" { "Server version" } td { "dugong " (info.version) } }
            tr { th scope="row" { "Database" } td #database class=(if info.database_reachable { "good" } else { "bad" }) { (info.engine) ", " (db_state) } }
            tr { th scope="row" { "Schema version" } td { (info.schema_version) } }
        } }
        (replication(&info, last.as_ref()))
        h2 { "Lag and pending rows, last hour" }
        (chart(&state.replication.samples(), SystemTime::now()))
        @if let Some(events) = events {
            h2 { "Recent events" }
            @match events {
                Ok(events) if events.is_empty() => p.empty { "No events yet." },
                Ok(events) => div.scroll { table #events {
                    thead { tr { th scope="col" { "Received" } th scope="col" { "Kind" } th scope="col" { "User" } th scope="col" { "Site" } } }
                    tbody { @for e in &events { tr {
                        td { (when(e.received_at)) } td { (e.kind) } td { (e.user.as_deref().unwrap_or("")) } td { (e.site) }
                    } } }
                } },
                Err(e) => p.notice.error { "Events cannot be read: " (e.to_string()) },
            }
        }
        @if authed.is_none() {
            p.hint { "Not logged in: while this site's database is down, the console shows this page to anyone who reaches it." }
        }
    };
    html::page(&frame, Section::Status, "Status", &notice, body).into_response()
}

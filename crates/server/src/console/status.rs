//! The status page: is the database there, how replication stands (state, lag
//! and the last good run of each sync `dugong replicate` records here), and
//! the latest events received.

use axum::response::Response;

use super::html::{self, esc, Cell, Notice, Section};
use super::view::Ctx;

/// Events listed.
const RECENT_EVENTS: u32 = 20;

pub async fn status(ctx: Ctx) -> Response {
    let info = &ctx.info;
    let mut body = format!(
        "<table id=\"server\" class=\"facts\"><tbody>\
         <tr><th scope=\"row\">Site</th><td>{site}</td></tr>\
         <tr><th scope=\"row\">Server version</th><td>dugong {version}</td></tr>\
         <tr><th scope=\"row\">Database</th><td id=\"database\" class=\"{class}\">{engine}, {reach}</td></tr>\
         <tr><th scope=\"row\">Schema version</th><td>{schema}</td></tr></tbody></table>",
        site = esc(&info.site),
        version = esc(info.version),
        class = if info.database_reachable { "good" } else { "bad" },
        engine = esc(info.engine),
        reach = if info.database_reachable { "reachable" } else { "UNREACHABLE" },
        schema = info.schema_version,
    );
    body.push_str("<h2>Replication</h2>");
    if info.replication.is_empty() {
        body.push_str(
            "<p class=\"empty\" id=\"replication-none\">No replication recorded in this database: <code>dugong replicate</code> \
             has not run against it (or this is an embedded SQLite site). Changes made here stay here.</p>",
        );
    } else {
        let rows = info.replication.iter().map(|s| {
            let class = if s.state == "Good" { "good" } else { "bad" };
            let lag = s
                .lag
                .map_or("unknown (track_commit_timestamp off?)".to_string(), |l| format!("{:.1} s", l.as_secs_f64()));
            let last = s.last_good_age.map_or("never".to_string(), |a| format!("{:.0} s ago", a.as_secs_f64()));
            vec![esc(&s.sync).into(), Cell::classed(class, esc(&s.state)), esc(&lag).into(), esc(&last).into()]
        });
        body.push_str(&html::table("syncs", &["Sync", "State", "Lag", "Last good run"], rows));
    }
    body.push_str("<h2>Recent events</h2>");
    match ctx.state.store.recent_events(RECENT_EVENTS).await {
        Ok(events) if events.is_empty() => body.push_str("<p class=\"empty\">No events yet.</p>"),
        Ok(events) => {
            let rows = events.iter().map(|e| {
                vec![
                    html::time(e.received_at).into(),
                    esc(&e.kind).into(),
                    esc(e.user.as_deref().unwrap_or("")).into(),
                    esc(&e.site).into(),
                ]
            });
            body.push_str(&html::table("events", &["Received", "Kind", "User", "Site"], rows));
        }
        Err(e) => {
            body.push_str(&format!("<p class=\"notice error\">Events cannot be read: {}</p>", esc(&e.to_string())))
        }
    }
    ctx.page(Section::Status, "Status", &Notice::None, &body)
}

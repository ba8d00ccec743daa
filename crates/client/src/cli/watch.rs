//! `dugong client watch`: changes as they come, through failovers. The position of every
//! `Started`, `Change` and `Reset` is kept; when the server fails or says `GoingAway`, the watch
//! opens again on another server from that position (see [`crate::watch::resume_marked`]), so no
//! change is missed. A `Reset` (the position cannot be resumed there) is shown, and the watch
//! follows from the position it gives.

use std::io::Write;
use std::net::SocketAddr;

use dugong_proto::v1 as pb;
use futures_util::StreamExt;
use pb::watch_client::WatchClient;
use pb::watch_event::Event;
use serde_json::{json, Value};

use super::json;
use crate::watch::{resume_marked, Mark, Resumable};
use crate::Client;

/// The watch events from `from` (empty: from now) on, for `resources` (empty: all), resumed on
/// another server whenever the current one fails or goes away.
pub fn events(client: &Client, from: String, resources: Vec<pb::Resource>) -> Resumable<pb::WatchEvent> {
    let resources: Vec<i32> = resources.into_iter().map(|r| r as i32).collect();
    let open = move |channel, position: String| {
        let message = pb::WatchRequest { position, resources: resources.clone() };
        async move { WatchClient::new(channel).watch(message).await.map(tonic::Response::into_inner) }
    };
    resume_marked(client, from, open, mark)
}

/// Where a watch event leaves the position.
pub fn mark(event: &pb::WatchEvent) -> Mark<String> {
    match &event.event {
        Some(Event::Started(s)) if !s.position.is_empty() => Mark::Position(s.position.clone()),
        Some(Event::Change(c)) => Mark::Position(c.position.clone()),
        Some(Event::Reset(r)) => Mark::Position(r.position.clone()),
        Some(Event::GoingAway(g)) => Mark::Leave(g.reason.clone()),
        _ => Mark::Keep,
    }
}

/// An event as a JSON line: `{"event": "started"|"change"|"reset"|"going_away", …}`; `server` is
/// the server the watch is on.
pub fn render(event: &pb::WatchEvent, server: Option<SocketAddr>) -> Value {
    let server = server.map(|s| s.to_string());
    match &event.event {
        Some(Event::Started(s)) => json!({ "event": "started", "position": s.position, "server": server }),
        Some(Event::Change(c)) => json!({
            "event": "change", "position": c.position, "resource": json::resource_name(c.resource()),
            "key": c.key, "deleted": c.deleted, "record": json::record(c.record.as_ref()),
        }),
        Some(Event::Reset(r)) => json!({ "event": "reset", "reason": r.reason, "position": r.position }),
        Some(Event::GoingAway(g)) => json!({ "event": "going_away", "reason": g.reason, "server": server }),
        None => json!({ "event": "unknown" }),
    }
}

/// A rendered event for people.
pub fn human(event: &Value) -> String {
    let s = |key: &str| event[key].as_str().unwrap_or_default().to_string();
    match event["event"].as_str() {
        Some("started") => format!("watching on {} from position {}", s("server"), s("position")),
        Some("change") if event["deleted"] == json!(true) => format!("{} {} deleted", s("resource"), s("key")),
        Some("change") => format!("{} {} = {}", s("resource"), s("key"), event["record"]),
        Some("reset") => format!(
            "RESET: {} — re-read everything; changes from here on follow (position {})",
            s("reason"),
            s("position")
        ),
        Some("going_away") => {
            format!("server {} is going away ({}): moving to another server", s("server"), s("reason"))
        }
        _ => event.to_string(),
    }
}

/// Prints events to `out` until `limit` changes were printed (never, without one) or the watch
/// fails for good (no server left, or the server refused it).
pub async fn run(
    client: &Client,
    from: String,
    resources: Vec<pb::Resource>,
    limit: Option<usize>,
    as_json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let mut stream = events(client, from, resources);
    let mut server = None;
    let mut changes = 0;
    while limit.is_none_or(|limit| changes < limit) {
        let Some(event) = stream.next().await else { break };
        let event = event?;
        match &event.event {
            Some(Event::Started(_)) => server = client.current_server(),
            Some(Event::Change(_)) => changes += 1,
            _ => {}
        }
        let rendered = render(&event, server);
        if as_json {
            writeln!(out, "{rendered}")?;
        } else {
            writeln!(out, "{}", human(&rendered))?;
        }
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(e: Event) -> pb::WatchEvent {
        pb::WatchEvent { event: Some(e) }
    }

    #[test]
    fn positions_follow_started_changes_and_resets_and_going_away_leaves() {
        let started = event(Event::Started(pb::Started { position: "f:1".into() }));
        assert_eq!(mark(&started), Mark::Position("f:1".to_string()));
        assert_eq!(mark(&event(Event::Started(pb::Started::default()))), Mark::Keep);
        let reset = event(Event::Reset(pb::Reset { reason: "too old".into(), position: "f:9".into() }));
        assert_eq!(mark(&reset), Mark::Position("f:9".to_string()));
        let away = event(Event::GoingAway(pb::GoingAway { reason: "shutting down".into() }));
        assert_eq!(mark(&away), Mark::Leave("shutting down".to_string()));
    }

    #[test]
    fn events_read_well_as_json_and_as_text() {
        let server = Some(SocketAddr::from(([127, 0, 0, 1], 8001)));
        let setting = pb::Setting { key: "k".into(), value_json: r#"{"a":1}"#.into(), version: 2, updated_at: None };
        let change = event(Event::Change(pb::Change {
            position: "f:3".into(),
            resource: pb::Resource::Settings as i32,
            key: "k".into(),
            deleted: false,
            record: Some(pb::change::Record::Setting(setting)),
        }));
        let rendered = render(&change, server);
        assert_eq!(rendered["record"]["value"], json!({"a": 1}));
        assert_eq!(human(&rendered), r#"settings k = {"key":"k","updated_at":null,"value":{"a":1},"version":2}"#);
        let started = render(&event(Event::Started(pb::Started { position: "f:1".into() })), server);
        assert_eq!(human(&started), "watching on 127.0.0.1:8001 from position f:1");
        let away = render(&event(Event::GoingAway(pb::GoingAway { reason: "bye".into() })), server);
        assert_eq!(human(&away), "server 127.0.0.1:8001 is going away (bye): moving to another server");
        let reset = render(&event(Event::Reset(pb::Reset { reason: "too old".into(), position: "f:9".into() })), None);
        assert!(human(&reset).starts_with("RESET: too old — re-read everything"));
    }
}

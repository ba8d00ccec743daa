//! `dugong client info`: one `Info.ServerInfo` call, and which server and site answered it.

use dugong_proto::v1 as pb;
use pb::info_client::InfoClient;
use serde_json::{json, Value};

use crate::{Client, Idempotency};

/// A site id as JSON: a number when it is one (`--site 0`), else the string.
pub fn site_json(site: &str) -> Value {
    match site.parse::<u64>() {
        Ok(n) if n.to_string() == site => json!(n),
        _ => json!(site),
    }
}

/// Asks `Info.ServerInfo` through the HA client: `{"server": "IP:PORT", "names": [...], "site": …,
/// "version", "engine", "database_reachable", "schema_version", "replication": [...]}`.
pub async fn server_info(client: &Client) -> anyhow::Result<Value> {
    let reply = client
        .call(Idempotency::Idempotent, |channel| async move {
            InfoClient::new(channel).server_info(pb::ServerInfoRequest {}).await
        })
        .await?
        .into_inner();
    let server = client.current_server();
    let mut names: Vec<String> =
        client.servers().into_iter().filter(|s| Some(s.addr) == server).flat_map(|s| s.names).collect();
    names.dedup();
    let replication: Vec<Value> = reply
        .replication
        .iter()
        .map(|s| {
            json!({
                "sync": s.sync, "state": s.state, "lag_seconds": s.lag_seconds,
                "last_good_age_seconds": s.last_good_age_seconds,
            })
        })
        .collect();
    Ok(json!({
        "server": server.map(|s| s.to_string()),
        "names": names,
        "site": site_json(&reply.site),
        "version": reply.version,
        "engine": reply.engine,
        "database_reachable": reply.database_reachable,
        "schema_version": reply.schema_version,
        "replication": replication,
    }))
}

/// `info` for people: `site 0 answered from 127.0.0.1:8001 (0.ha.test): …`.
pub fn human(info: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let names: Vec<String> = info["names"].as_array().into_iter().flatten().map(text).collect();
    let mut line = format!("site {} answered from {}", text(&info["site"]), text(&info["server"]));
    if !names.is_empty() {
        line.push_str(&format!(" ({})", names.join(", ")));
    }
    let reachable = if info["database_reachable"] == json!(true) { "reachable" } else { "UNREACHABLE" };
    line.push_str(&format!(
        ": dugong {}, {} database {reachable}, schema {}",
        text(&info["version"]),
        text(&info["engine"]),
        text(&info["schema_version"])
    ));
    for sync in info["replication"].as_array().into_iter().flatten() {
        line.push_str(&format!("\n  sync {}: {}", text(&sync["sync"]), text(&sync["state"])));
        if let Some(lag) = sync["lag_seconds"].as_f64() {
            line.push_str(&format!(", lag {lag:.1}s"));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_sites_are_numbers() {
        assert_eq!(site_json("0"), json!(0));
        assert_eq!(site_json("12"), json!(12));
        assert_eq!(site_json("07"), json!("07"));
        assert_eq!(site_json("site-a"), json!("site-a"));
    }

    #[test]
    fn people_read_which_server_and_site_answered() {
        let info = json!({
            "server": "127.0.0.1:8001", "names": ["0.ha.test"], "site": 0, "version": "0.1.0",
            "engine": "postgres", "database_reachable": true, "schema_version": 1,
            "replication": [{"sync": "s", "state": "Good", "lag_seconds": 0.25}],
        });
        assert_eq!(
            human(&info),
            "site 0 answered from 127.0.0.1:8001 (0.ha.test): dugong 0.1.0, postgres database reachable, schema 1\n  \
             sync s: Good, lag 0.2s"
        );
    }
}

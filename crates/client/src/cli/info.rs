//! `dugong client info`: one call, and who answered it.

use std::process::ExitCode;

use serde_json::json;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::{Client, Idempotency};

/// Asks the health service through the HA client and prints the server that answered.
pub(super) async fn run(client: &Client, as_json: bool) -> anyhow::Result<ExitCode> {
    let reply = client
        .call(Idempotency::Idempotent, |channel| async move {
            HealthClient::new(channel).check(HealthCheckRequest::default()).await
        })
        .await?;
    let health = reply.into_inner().status().as_str_name();
    let server = client.current_server().map(|s| s.to_string()).unwrap_or_default();
    let mut names: Vec<String> = client
        .servers()
        .into_iter()
        .filter(|s| Some(s.addr) == client.current_server())
        .flat_map(|s| s.names)
        .collect();
    names.dedup();
    if as_json {
        // "site" is filled from the server's own report once its API offers one.
        println!("{}", json!({ "server": server, "names": names, "site": null, "health": health }));
    } else {
        println!("server {server} ({}): {health}", names.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

//! `dugong client sessions`: how sessions spread over the servers.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::{Client, Idempotency};

/// Where sessions landed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Sessions per resolved server `IP:PORT`.
    pub servers: BTreeMap<String, usize>,
    /// Sessions whose call failed.
    pub failures: usize,
    /// Those failures by message.
    pub errors: BTreeMap<String, usize>,
}

impl Tally {
    /// The share of successful sessions that landed on `server` (`IP:PORT`).
    pub fn share(&self, server: &str) -> f64 {
        let total: usize = self.servers.values().sum();
        self.servers.get(server).copied().unwrap_or(0) as f64 / total.max(1) as f64
    }
}

/// Opens `count` sessions of `client` (sharing its resolved servers and connections), makes one
/// health call in each, at most `concurrency` at a time, and counts the server each landed on.
pub async fn count_sessions(client: &Client, count: usize, concurrency: usize) -> Tally {
    let results = stream::iter(0..count)
        .map(|_| {
            let session = client.new_session();
            async move {
                let call = session
                    .call(Idempotency::Idempotent, |channel| async move {
                        HealthClient::new(channel).check(HealthCheckRequest::default()).await
                    })
                    .await;
                call.map(|_| session.current_server())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut tally = Tally::default();
    for result in results {
        match result {
            Ok(Some(server)) => *tally.servers.entry(server.to_string()).or_default() += 1,
            Ok(None) => *tally.errors.entry("answered, but by no known server".into()).or_default() += 1,
            Err(e) => *tally.errors.entry(e.to_string()).or_default() += 1,
        }
    }
    tally.failures = tally.errors.values().sum();
    tally
}

pub(super) async fn run(
    client: &Client,
    count: usize,
    concurrency: usize,
    as_json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let tally = count_sessions(client, count, concurrency).await;
    if as_json {
        writeln!(out, "{}", serde_json::to_string(&tally)?)?;
    } else {
        let total: usize = tally.servers.values().sum();
        for (server, n) in &tally.servers {
            writeln!(out, "{server}\t{n}\t{:.1}%", 100.0 * *n as f64 / total.max(1) as f64)?;
        }
        writeln!(out, "failures\t{}", tally.failures)?;
        for (error, n) in &tally.errors {
            writeln!(out, "  {n} × {error}")?;
        }
    }
    Ok(if tally.failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

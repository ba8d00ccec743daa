//! The deployment guide's six HA checks, each through the application
//! servers' public gRPC API with the HA client library, each measured.
//!
//! The changes are settings under a key of their own
//! (`dugong-verify:<run>:<site>`), deleted again before the failover check,
//! and waited for until the deletions show on every site: nothing is left
//! behind.

use dugong_client::{CallError, Client, ClientConfig, Idempotency, Token};
use dugong_proto::v1 as pb;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not run (the failover check without `--kill-cmd`).
    Skip,
}

/// One check's line.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub number: u8,
    pub name: String,
    pub outcome: Outcome,
    /// The measured figure, or why it failed.
    pub detail: String,
    /// The measured time, when there is one.
    pub seconds: Option<f64>,
    /// What to look at, on FAIL.
    pub hint: Option<String>,
    /// A replication check (1, 2): on FAIL, `dugong status` gives the hint.
    #[serde(skip)]
    pub replication: bool,
}

impl Check {
    pub(super) fn pass(number: u8, name: &str, detail: String, seconds: Option<f64>) -> Check {
        Check { number, name: name.into(), outcome: Outcome::Pass, detail, seconds, hint: None, replication: false }
    }

    pub(super) fn fail(number: u8, name: &str, detail: String, hint: String) -> Check {
        Check {
            number,
            name: name.into(),
            outcome: Outcome::Fail,
            detail,
            seconds: None,
            hint: Some(hint),
            replication: false,
        }
    }
}

/// What the checks need: where the sites are and how to reach them.
pub struct Setting {
    /// Site 0's server, site 1's server (gRPC URLs or HOST:PORT).
    pub servers: Vec<String>,
    pub token: Token,
    pub ca: Option<std::path::PathBuf>,
    /// How long a change may take to show on the other site, and a failover.
    pub deadline: Duration,
    /// Run with `{site}` replaced by the site the HA client uses.
    pub kill_cmd: Option<String>,
}

impl Setting {
    /// A client for `servers`, failing fast so checks report quickly.
    pub(super) async fn client(&self, servers: &[String]) -> Result<Client, String> {
        let mut config = ClientConfig::servers(servers)
            .map_err(|e| e.to_string())?
            .with_token(self.token.clone())
            .with_connect_timeout(Duration::from_secs(3))
            .with_request_timeout(Duration::from_secs(5))
            .with_deadline(Duration::from_secs(8))
            .with_reconnect_delay(Duration::from_secs(5));
        if let Some(ca) = &self.ca {
            config = config.with_ca(ca.clone());
        }
        Client::new(config).await.map_err(|e| e.to_string())
    }
}

/// The answer of `ServerInfo` and how long it took.
pub(super) async fn info(client: &Client) -> Result<(pb::ServerInfoResponse, Duration), CallError> {
    let clock = Instant::now();
    let reply = client
        .call(Idempotency::Idempotent, |channel| async move {
            pb::info_client::InfoClient::new(channel).server_info(pb::ServerInfoRequest {}).await
        })
        .await?;
    Ok((reply.into_inner(), clock.elapsed()))
}

async fn put(client: &Client, key: &str, value: &str) -> Result<(), CallError> {
    let request = pb::PutSettingRequest { key: key.into(), value_json: value.into(), expected_version: None };
    client
        .call(Idempotency::NotIdempotent, |channel| {
            let request = request.clone();
            async move { pb::settings_client::SettingsClient::new(channel).put_setting(request).await }
        })
        .await
        .map(drop)
}

/// The setting's value on the site `client` reaches; `None` when it has none.
async fn get(client: &Client, key: &str) -> Result<Option<String>, CallError> {
    let request = pb::GetSettingRequest { key: key.into() };
    let result = client
        .call(Idempotency::Idempotent, |channel| {
            let request = request.clone();
            async move { pb::settings_client::SettingsClient::new(channel).get_setting(request).await }
        })
        .await;
    match result {
        Ok(r) => Ok(Some(r.into_inner().value_json)),
        Err(CallError::Status { status, .. }) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn delete(client: &Client, key: &str) -> Result<(), CallError> {
    let request = pb::DeleteSettingRequest { key: key.into(), expected_version: None };
    let result = client
        .call(Idempotency::Idempotent, |channel| {
            let request = request.clone();
            async move { pb::settings_client::SettingsClient::new(channel).delete_setting(request).await }
        })
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(CallError::Status { status, .. }) if status.code() == tonic::Code::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Polls `client` until the setting reads `want` (`None`: gone), within `deadline`.
async fn wait_for_value(
    client: &Client,
    key: &str,
    want: Option<&str>,
    deadline: Duration,
) -> Result<Duration, String> {
    let clock = Instant::now();
    let mut last = String::from("no answer yet");
    while clock.elapsed() < deadline {
        match get(client, key).await {
            Ok(v) if v.as_deref() == want => return Ok(clock.elapsed()),
            Ok(_) => last = "not there yet".into(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last)
}

/// Checks 1 and 2: a setting written through site `from` shows on site `to`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn replicates(
    s: &Setting,
    direct: &[Result<Client, String>],
    number: u8,
    name: &str,
    from: usize,
    to: usize,
    key: &str,
    written: &mut Vec<(usize, String)>,
) -> Check {
    let (Ok(writer), Ok(reader)) = (&direct[from], &direct[to]) else {
        let e = direct[from].as_ref().err().or(direct[to].as_ref().err()).cloned().unwrap_or_default();
        return Check::fail(number, name, e, "check the --server values".into());
    };
    let value = format!("{{\"written_through\": \"site {from}\", \"at_ms\": {}}}", unix_ms());
    let clock = Instant::now();
    if let Err(e) = put(writer, key, &value).await {
        return Check::fail(
            number,
            name,
            format!("the write through site {from} failed: {e}"),
            format!("is site {from}'s server up, and DUGONG_TOKEN one of its API tokens?"),
        );
    }
    written.push((from, key.to_string()));
    let normalized = get(writer, key).await.ok().flatten().unwrap_or(value);
    match wait_for_value(reader, key, Some(&normalized), s.deadline).await {
        Ok(_) => {
            let took = clock.elapsed();
            Check::pass(number, name, format!("in {:.2} s", took.as_secs_f64()), Some(took.as_secs_f64()))
        }
        Err(last) => Check {
            replication: true,
            hint: None,
            ..Check::fail(
                number,
                name,
                format!("not on site {to} within {} ({last})", humantime::format_duration(s.deadline)),
                String::new(),
            )
        },
    }
}

/// Checks 3 and 4: a client for one site reaches it.
pub(super) async fn reaches(client: &Result<Client, String>, number: u8, name: &str, server: &str) -> Check {
    let client = match client {
        Ok(c) => c,
        Err(e) => return Check::fail(number, name, e.clone(), "check the --server values".into()),
    };
    match info(client).await {
        Ok((i, took)) if i.database_reachable => Check::pass(
            number,
            name,
            format!(
                "site {} answered in {} ms ({server}, dugong {}, {})",
                i.site,
                took.as_millis(),
                i.version,
                i.engine
            ),
            Some(took.as_secs_f64()),
        ),
        Ok((i, _)) => Check::fail(
            number,
            name,
            format!("site {} answered, but its database is unreachable", i.site),
            "look at that site's PostgreSQL (dugong status)".into(),
        ),
        Err(e) => Check::fail(number, name, e.to_string(), format!("is the server at {server} running?")),
    }
}

/// Deletes the settings the checks wrote and waits until the deletions show
/// everywhere they can.
pub(super) async fn clean_up(s: &Setting, direct: &[Result<Client, String>], written: &[(usize, String)]) {
    for (site, key) in written {
        let Ok(client) = &direct[*site] else { continue };
        if let Err(e) = delete(client, key).await {
            tracing::warn!(key = %key, error = %e, "could not delete verify's setting; delete it by hand");
            continue;
        }
        for other in direct.iter().flatten() {
            if wait_for_value(other, key, None, s.deadline).await.is_err() {
                tracing::warn!(key = %key, "verify's setting is still on a site; the replicator deletes it when it runs");
            }
        }
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

pub(super) fn rand_u32() -> u32 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

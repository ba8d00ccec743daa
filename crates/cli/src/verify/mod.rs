//! `dugong verify`: the deployment guide's "Testing HA" checklist as one
//! command against live sites, through the application servers' public API
//! (`checks`, `failover`): one PASS/FAIL line per check with its measured
//! figure, and on FAIL the reason and a hint. Exit 0 only when no check
//! failed; 7 when one did (`crate::exit`).

mod checks;
mod failover;

use crate::exit::Exit;
use crate::stdout;
use checks::{clean_up, info, rand_u32, reaches, replicates, Check, Outcome, Setting};
use dugong_client::Token;
use dugong_config::Config;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The Bucardo-style JSON configuration of the sites' databases: a failed
    /// replication check then says what `dugong status` sees.
    #[arg(long, env = "DUGONG_CONFIG")]
    config: Option<PathBuf>,
    /// A site's application server (`grpc://HOST:PORT` or `HOST:PORT`): first
    /// site 0's, then site 1's.
    #[arg(long = "server", required = true, num_args = 1)]
    servers: Vec<String>,
    /// Kill the site the HA client uses, for the failover check: run through
    /// `sh -c` with `{site}` replaced by that site's id.
    #[arg(long, env = "DUGONG_VERIFY_KILL_CMD")]
    kill_cmd: Option<String>,
    /// How long a change may take to reach the other site, and the HA client
    /// to fail over.
    #[arg(long, env = "DUGONG_VERIFY_DEADLINE", default_value = "30s", value_parser = humantime::parse_duration)]
    deadline: Duration,
    /// A PEM file of CAs for servers on grpcs://.
    #[arg(long, env = "DUGONG_CA")]
    ca: Option<PathBuf>,
    /// Print the checks as JSON.
    #[arg(long, env = "DUGONG_JSON")]
    json: bool,
}

/// The checks as `--json` prints them.
#[derive(Serialize)]
struct Report<'a> {
    /// No check failed.
    passed: bool,
    checks: &'a [Check],
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.servers.len() != 2 {
        eprintln!(
            "dugong: verify checks two sites: give --server twice (site 0's server, then site 1's), not {}",
            args.servers.len()
        );
        return Ok(Exit::Config.into());
    }
    let token = match std::env::var("DUGONG_TOKEN") {
        Ok(t) => Token::new(&t).map_err(|e| anyhow::anyhow!("DUGONG_TOKEN: {e}"))?,
        Err(_) => {
            eprintln!("dugong: verify writes a test setting through each site: set DUGONG_TOKEN to an API token of the servers");
            return Ok(Exit::Config.into());
        }
    };
    let setting =
        Setting { servers: args.servers, token, ca: args.ca, deadline: args.deadline, kill_cmd: args.kill_cmd };
    let mut results = run_all(&setting).await;
    // A change that did not cross: what status sees now, after the wait.
    if results.iter().any(|c| c.replication && c.outcome == Outcome::Fail) {
        let hint = match &args.config {
            Some(path) => replication_hint(path).await,
            None => {
                "is the replicator running? (dugong status --config FILE; pass --config to have it checked here)".into()
            }
        };
        for c in results.iter_mut().filter(|c| c.replication && c.outcome == Outcome::Fail && c.hint.is_none()) {
            c.hint = Some(hint.clone());
        }
    }
    let passed = results.iter().all(|c| c.outcome != Outcome::Fail);
    let text = if args.json {
        serde_json::to_string_pretty(&Report { passed, checks: &results })? + "\n"
    } else {
        render(&results)
    };
    stdout::write(&text)?;
    Ok(if passed { Exit::Ok } else { Exit::CheckFailed }.into())
}

/// Runs the six checks in order.
async fn run_all(s: &Setting) -> Vec<Check> {
    let run = format!("{}-{:08x}", std::process::id(), rand_u32());
    let mut direct = Vec::with_capacity(2);
    for server in &s.servers[..2] {
        direct.push(s.client(std::slice::from_ref(server)).await);
    }
    let mut out = Vec::with_capacity(6);
    let mut written: Vec<(usize, String)> = Vec::new();
    for (number, from, to) in [(1u8, 0usize, 1usize), (2, 1, 0)] {
        let name = format!("a change made through site {from} shows on site {to}");
        let key = format!("dugong-verify:{run}:site{from}");
        out.push(replicates(s, &direct, number, &name, from, to, &key, &mut written).await);
    }
    clean_up(s, &direct, &written).await;
    for (number, site) in [(3u8, 0usize), (4, 1)] {
        let name = format!("a client configured for site {site} only reaches site {site}");
        out.push(reaches(&direct[site], number, &name, &s.servers[site]).await);
    }
    let ha = s.client(&s.servers).await;
    out.push(match &ha {
        Ok(client) => match info(client).await {
            Ok((i, took)) => Check::pass(
                5,
                "a client configured for HA reaches one of the sites",
                format!("site {} answered in {} ms", i.site, took.as_millis()),
                Some(took.as_secs_f64()),
            ),
            Err(e) => Check::fail(
                5,
                "a client configured for HA reaches one of the sites",
                e.to_string(),
                "are the servers running and reachable from here? (dugong client --server … info)".into(),
            ),
        },
        Err(e) => Check::fail(
            5,
            "a client configured for HA reaches one of the sites",
            e.clone(),
            "check the --server values".into(),
        ),
    });
    out.push(match (&s.kill_cmd, ha) {
        (None, _) => Check {
            number: 6,
            name: "the HA client fails over when its site is killed".into(),
            outcome: Outcome::Skip,
            detail: "not run: give --kill-cmd to kill the HA client's site (e.g. --kill-cmd 'ssh {site}.ha.test docker stop deploy_kwanza_1')".into(),
            seconds: None,
            hint: None,
            replication: false,
        },
        (Some(cmd), Ok(client)) => failover::check(6, &client, cmd, s.deadline).await,
        (Some(_), Err(e)) => Check::fail(6, "the HA client fails over when its site is killed", e, "check the --server values".into()),
    });
    out
}

/// What `dugong status` says of the syncs, for a replication check that failed.
async fn replication_hint(path: &std::path::Path) -> String {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return format!("the configuration cannot be read: {e}"),
    };
    match dugong_replica::status::gather(&config, None).await {
        Ok(report) => {
            let states: Vec<String> = report
                .syncs
                .iter()
                .map(|s| {
                    let replicator = match &s.replicator {
                        Some(r) => format!(
                            "{} replicator running (last heartbeat {})",
                            if r.running { "a" } else { "no" },
                            r.heartbeat_seconds_ago.map_or("never".to_string(), |a| format!("{a:.0}s ago"))
                        ),
                        None => "no replicator has run it".to_string(),
                    };
                    format!(
                        "{} is {}, {replicator}{}",
                        s.name,
                        s.state,
                        s.last_error.as_deref().map(|e| format!(", last error: {e}")).unwrap_or_default()
                    )
                })
                .collect();
            format!("{}; start dugong replicate --config {} if none runs", states.join("; "), path.display())
        }
        Err(e) => format!("dugong status cannot tell: {e}"),
    }
}

/// One line per check: `PASS  1  name: figure`, and the hint under a FAIL.
fn render(results: &[Check]) -> String {
    let mut out = String::new();
    for c in results {
        let word = match c.outcome {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        };
        out.push_str(&format!("{word}  {}  {}: {}\n", c.number, c.name, c.detail));
        if let Some(hint) = &c.hint {
            out.push_str(&format!("         hint: {hint}\n"));
        }
    }
    let failed = results.iter().filter(|c| c.outcome == Outcome::Fail).count();
    if failed == 0 {
        out.push_str("HA verified: every check passed\n");
    } else {
        out.push_str(&format!("{failed} of {} checks failed\n", results.len()));
    }
    out
}

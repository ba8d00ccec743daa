//! `dugong verify`: the deployment guide's "Testing HA" checklist as one
//! command against live sites, through the application servers' public API
//! (`checks`, `failover`): one PASS/FAIL line per check with its measured
//! figure, and on FAIL the reason and a hint. Exit 0 only when no check
//! failed; 7 when one did (`crate::exit`).

mod checks;
mod failover;

use crate::exit::Exit;
use crate::stdout;
use checks::{Check, Outcome, Setting};
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
    let mut results = checks::run_all(&setting).await;
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

//! Check 6: the HA client carries on through the other site when the one it
//! uses is killed. The kill is the operator's command (`--kill-cmd`, with
//! `{site}` replaced by the site id the client's server reports), run
//! through `sh -c`; the check then keeps calling until another site answers.

use super::checks::{info, Check, Outcome};
use dugong_client::Client;
use std::time::{Duration, Instant};

const NAME: &str = "the HA client fails over when its site is killed";

pub(super) async fn check(number: u8, client: &Client, kill_cmd: &str, deadline: Duration) -> Check {
    let fail = |detail: String, hint: &str| Check {
        number,
        name: NAME.into(),
        outcome: Outcome::Fail,
        detail,
        seconds: None,
        hint: Some(hint.into()),
        replication: false,
    };
    let before = match info(client).await {
        Ok((i, _)) => i.site,
        Err(e) => return fail(e.to_string(), "no site answered the HA client before the kill"),
    };
    let command = kill_cmd.replace("{site}", &before);
    let ran = tokio::process::Command::new("sh").arg("-c").arg(&command).output().await;
    match ran {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return fail(
                format!(
                    "the kill command for site {before} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                "run the --kill-cmd by hand to see what it does",
            )
        }
        Err(e) => return fail(format!("cannot run sh -c for the kill command: {e}"), "is /bin/sh installed?"),
    }
    let clock = Instant::now();
    let mut failed_calls = 0u32;
    let mut last = String::new();
    while clock.elapsed() < deadline {
        match info(client).await {
            Ok((i, _)) if i.site != before => {
                let took = clock.elapsed();
                return Check {
                    number,
                    name: NAME.into(),
                    outcome: Outcome::Pass,
                    detail: format!(
                        "site {before} killed; site {} answered after {:.2} s, {failed_calls} failed calls",
                        i.site,
                        took.as_secs_f64()
                    ),
                    seconds: Some(took.as_secs_f64()),
                    hint: None,
                    replication: false,
                };
            }
            Ok(_) => last = format!("site {before} still answers: did the kill command stop its server?"),
            Err(e) => {
                failed_calls += 1;
                last = e.to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fail(
        format!("no other site answered within {} ({last})", humantime::format_duration(deadline)),
        "is the other site's server up (check 3/4), and does the client list it?",
    )
}

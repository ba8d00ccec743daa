//! `dugong demo`: the whole HA story on one machine, on embedded SQLite — two sites, replication
//! both ways, a conflict, an HA client that rides through the loss of a site, and the sites
//! identical afterwards. Every process it starts is its child and every file it makes is in one
//! temporary directory; both go away when it ends, after the story (`--exit`) or on Ctrl-C.

mod say;
mod sites;
mod story;

use std::process::ExitCode;

use say::{ms, Say};
use sites::Sites;
use story::Summary;

#[derive(clap::Args)]
pub struct Args {
    /// End after the story instead of running until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let say = Say::new();
    say.plain(&say.bold("Dugong demo: two sites, master-master replication, an HA client, a site lost and back"));
    let mut sites = Sites::prepare()?;
    let told = tokio::select! {
        told = story::tell(&mut sites, &say) => Some(told),
        _ = tokio::signal::ctrl_c() => None,
    };
    let code = match told {
        None => {
            say.info("Ctrl-C: stopping");
            ExitCode::from(130)
        }
        Some(Err(e)) => {
            say.fail(&format!("the demo stopped: {e:#}"));
            ExitCode::FAILURE
        }
        Some(Ok(summary)) => {
            let kept = summary.kept_promises();
            show_summary(&say, &sites, &summary);
            if !args.exit {
                say.plain("\nThe sites keep running: open the consoles above, or run dugong client against them.");
                say.plain(&format!(
                    "  console login: user {}, password in {} (the same on both sites: the user replicated)",
                    sites::CONSOLE_USER,
                    sites.console_password_file().display()
                ));
                say.plain(&format!(
                    "  DUGONG_TOKEN=$(cat {}) dugong client --server {},{} apps list",
                    sites.token_file().display(),
                    sites.sites[0].grpc,
                    sites.sites[1].grpc,
                ));
                say.plain("Ctrl-C stops everything and removes every file the demo made.");
                let _ = tokio::signal::ctrl_c().await;
            }
            if kept {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    };
    let dir = sites.dir().to_path_buf();
    sites.stop().await;
    say.info(&format!("stopped every process and removed {}", dir.display()));
    Ok(code)
}

fn show_summary(say: &Say, sites: &Sites, s: &Summary) {
    say.plain(&format!("\n{}", say.bold("What was shown")));
    let [(p50_01, max_01), (p50_10, max_10)] = s.lag;
    say.plain(&format!("  replication site 0 → site 1   lag p50 {}, max {}", ms(p50_01), ms(max_01)));
    say.plain(&format!("  replication site 1 → site 0   lag p50 {}, max {}", ms(p50_10), ms(max_10)));
    say.plain(&format!("  one record edited on both     {}", s.conflict));
    let failover = s.failover.map(ms).unwrap_or_else(|| "never".into());
    say.plain(&format!(
        "  site 0 killed under a client  {} calls, {} failed; failover in {failover}",
        s.calls, s.failed_calls
    ));
    say.plain(&format!(
        "  site 0 back                   restarted in {}, all {} writes made meanwhile there",
        ms(s.restart),
        s.outage_writes
    ));
    say.plain(&format!("  compare                       {}", if s.identical { "identical" } else { "DIFFERENT" }));
    say.plain(&format!("  consoles                      {}  {}", sites.sites[0].console(), sites.sites[1].console()));
}

impl Summary {
    /// Whether every promise of the story held.
    fn kept_promises(&self) -> bool {
        self.identical && self.failed_calls == 0 && self.failover.is_some()
    }
}

//! A WAN between the replicator and the sites: one delay link per site, run by
//! `dugong-bench delay-link` inside the replicator's namespace. The replicator connects to
//! the link on its namespace's loopback; the link's own connection to the site crosses the
//! site's veth, so a cut of the site's (or the replicator's) link still cuts the replicator
//! off the site, now with the delay on top.
//!
//! The link runs as a process of its own because a socket belongs to the namespace of the
//! thread that made it, and the link's upstream connections are made by the runtime's
//! threads, which live in the campaign's namespace, where no site is reachable.

use anyhow::{bail, Context};
use dugong_testkit::{DelayLink, Namespace, Probe};
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

/// How the link probes its connections to a site: as the replicator probes its own (its
/// keepalives now reach only the link, which always answers). Without this, a cut longer
/// than the server's patience would leave the replicator waiting forever for an answer
/// the server gave up sending, where a direct connection fails within 10 s.
const PROBE: Probe = Probe {
    idle: Duration::from_secs(3),
    interval: Duration::from_secs(1),
    count: 3,
    user_timeout: Duration::from_secs(10),
};

/// `dugong-bench delay-link`: the command line of one link.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The server every connection is forwarded to.
    #[arg(long)]
    upstream: SocketAddr,
    /// The delay of every chunk, each way, in milliseconds.
    #[arg(long)]
    delay_ms: u64,
}

/// Runs a delay link on a free port of `127.0.0.1`, prints its address on a line of its own,
/// and forwards until killed or until its standard input closes (the campaign gone).
pub async fn serve(args: Args) -> anyhow::Result<()> {
    let link = DelayLink::start_probing(args.upstream, Duration::from_millis(args.delay_ms), Some(PROBE))
        .await
        .with_context(|| format!("starting a delay link to {}", args.upstream))?;
    println!("{}", link.addr());
    // The runtime's threads carry the link meanwhile.
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await
        .context("the task watching standard input failed")?
        .context("reading standard input")?;
    Ok(())
}

/// A `dugong-bench delay-link` process in a namespace; killed when dropped.
pub struct SiteLink {
    child: Child,
    addr: SocketAddr,
}

impl SiteLink {
    /// Starts a link in `ns` to `upstream`, delaying by `one_way`, and waits for its address.
    pub async fn start(ns: &Namespace, upstream: SocketAddr, one_way: Duration) -> anyhow::Result<SiteLink> {
        let bench = std::env::current_exe().context("finding the dugong-bench binary")?;
        let mut cmd = ns.command(&bench);
        cmd.args(["delay-link", "--upstream", &upstream.to_string(), "--delay-ms"])
            .arg(one_way.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().with_context(|| format!("starting {} delay-link", bench.display()))?;
        let Some(stdout) = child.stdout.take() else { bail!("the delay link's standard output is not ours") };
        let mut link = SiteLink { child, addr: upstream };
        // The link prints its address once listening; a link that failed closes its output.
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .context("the task reading the delay link's address failed")?
        .context("reading the delay link's address")?;
        link.addr = line
            .trim()
            .parse()
            .with_context(|| format!("the delay link to {upstream} printed {line:?}, not its address"))?;
        Ok(link)
    }

    /// Where the replicator connects, inside the link's namespace.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SiteLink {
    fn drop(&mut self) {
        // Our own child, by its pid (`ip netns exec` execs the link).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The replicators of the systems measured, behind one interface: start, stop
//! (so a backlog builds), finish (after a system's block of workloads) and
//! wait until ready.
//!
//! Each replicator reaches the sites by a [`Route`]: their own ports, or a
//! delay link in front of the remote site (`--delay-ms`, `dugong-bench wan`).

use crate::bucardo::{self, Bucardo};
use crate::cluster::{Route, Sites};
use crate::dugong::DugongReplicator;
use crate::native::Native;
use crate::system::System;
use crate::workloads::arrival;
use anyhow::{bail, Context};
use dugong_testkit::DelayLink;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// The site `system`'s replicator reaches across the WAN: Bucardo runs at
/// site 0 and writes to site 1; Dugong runs at site `dugong_at` (0: beside the
/// writes, 1: beside the target, like native) and reaches the other; native's
/// subscriber runs at site 1 and pulls from site 0.
pub fn remote_site(system: System, dugong_at: usize) -> usize {
    match system {
        System::Native => 0,
        System::Dugong => 1 - dugong_at.min(1),
        System::Bucardo => 1,
    }
}

/// Starts a delay link of `one_way` in front of `system`'s remote site, and
/// returns it with the route through it. The link runs on this runtime and
/// closes its connections when dropped.
pub async fn wan_route(
    sites: &Sites,
    system: System,
    one_way: Duration,
    dugong_at: usize,
) -> anyhow::Result<(DelayLink, Route)> {
    let remote = remote_site(system, dugong_at);
    let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, sites.port(remote)));
    let link = DelayLink::start(upstream, one_way)
        .await
        .with_context(|| format!("starting a delay link to site {remote} for {}", system.label()))?;
    let mut route = Route::direct(sites);
    route.ports[remote] = link.addr().port();
    Ok((link, route))
}

/// The replicators of the selected systems, configured.
pub struct Replicators {
    dugong: Option<DugongReplicator>,
    bucardo: Option<Bucardo>,
    native: Option<Native>,
}

impl Replicators {
    /// Configures every system in `systems`: Dugong's capture (by a `--once`
    /// run), Bucardo's control database, dbs and sync (which installs its
    /// triggers), the publication. Each reaches the sites by `route(system)`.
    /// Nothing is left running.
    pub async fn setup(
        sites: &Sites,
        systems: &[System],
        route: impl Fn(System) -> Route,
        dugong_bin: &Path,
        workdir: &Path,
    ) -> anyhow::Result<Replicators> {
        let mut r = Replicators { dugong: None, bucardo: None, native: None };
        for system in systems {
            match system {
                System::Dugong => {
                    let d = DugongReplicator::new(dugong_bin, workdir, route(*system))?;
                    d.install().await.context("installing Dugong's capture")?;
                    r.dugong = Some(d);
                }
                System::Bucardo => {
                    bucardo::ensure_installed().await?;
                    r.bucardo =
                        Some(Bucardo::setup(sites, route(*system), workdir).await.context("setting up Bucardo")?);
                }
                System::Native => r.native = Some(Native::setup(sites, route(*system)).await?),
            }
        }
        Ok(r)
    }

    /// Changes the route of a stopped (Dugong) or finished (native) system for
    /// its next start. Bucardo keeps the route it was set up with.
    pub fn reroute(&mut self, system: System, route: Route) -> anyhow::Result<()> {
        match system {
            System::Dugong => self.dugong.as_ref().context("Dugong is not set up")?.write_config(route),
            System::Native => self.native.as_mut().context("native LR is not set up")?.reroute(route),
            System::Bucardo => bail!("Bucardo keeps the route it was set up with"),
        }
    }

    /// The process id of the running Dugong replicator.
    pub fn dugong_pid(&self) -> Option<u32> {
        self.dugong.as_ref().and_then(DugongReplicator::pid)
    }

    /// `bucardo --version`, when Bucardo is set up.
    pub fn bucardo_version(&self) -> Option<String> {
        self.bucardo.as_ref().map(|b| b.version().to_string())
    }

    /// Starts (or resumes) the system's replication.
    pub async fn start(&mut self, sites: &Sites, system: System) -> anyhow::Result<()> {
        match system {
            System::Dugong => self.dugong.as_mut().context("Dugong is not set up")?.start(),
            System::Bucardo => self.bucardo.as_ref().context("Bucardo is not set up")?.start().await,
            System::Native => self.native.as_mut().context("native LR is not set up")?.start(sites).await,
        }
    }

    /// Stops the system's replication; its capture keeps recording.
    pub async fn stop(&mut self, sites: &Sites, system: System) -> anyhow::Result<()> {
        match system {
            System::Dugong => self.dugong.as_mut().context("Dugong is not set up")?.stop().await,
            System::Bucardo => self.bucardo.as_ref().context("Bucardo is not set up")?.stop(sites).await,
            System::Native => self.native.as_mut().context("native LR is not set up")?.stop(sites).await,
        }
    }

    /// After a system's block of workloads: stopped, and nothing of it holds
    /// resources the other systems would pay for.
    pub async fn finish(&mut self, sites: &Sites, system: System) -> anyhow::Result<()> {
        match system {
            System::Native => self.native.as_mut().context("native LR is not set up")?.finish(sites).await,
            _ => self.stop(sites, system).await,
        }
    }

    /// Starts the system and waits until a probe row written on each source
    /// arrives on the other site: replication is running end to end.
    pub async fn start_and_wait(&mut self, sites: &Sites, system: System, timeout: Duration) -> anyhow::Result<()> {
        self.start(sites, system).await?;
        arrival::probe(sites, system.db(), 0, 1, timeout).await?;
        if system.two_way() {
            arrival::probe(sites, system.db(), 1, 0, timeout).await?;
        }
        Ok(())
    }
}

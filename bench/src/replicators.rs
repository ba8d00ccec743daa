//! The replicators of the systems measured, behind one interface: start, stop
//! (so a backlog builds), finish (after a system's block of workloads) and
//! wait until ready.

use crate::bucardo::{self, Bucardo};
use crate::cluster::Sites;
use crate::dugong::DugongReplicator;
use crate::native::Native;
use crate::system::System;
use crate::workloads::arrival;
use anyhow::Context;
use std::path::Path;
use std::time::Duration;

/// The replicators of the selected systems, configured.
pub struct Replicators {
    dugong: Option<DugongReplicator>,
    bucardo: Option<Bucardo>,
    native: Option<Native>,
}

impl Replicators {
    /// Configures every system in `systems`: Dugong's capture (by a `--once`
    /// run), Bucardo's control database, dbs and sync (which installs its
    /// triggers), the publication. Nothing is left running.
    pub async fn setup(
        sites: &Sites,
        systems: &[System],
        dugong_bin: &Path,
        workdir: &Path,
    ) -> anyhow::Result<Replicators> {
        let mut r = Replicators { dugong: None, bucardo: None, native: None };
        for system in systems {
            match system {
                System::Dugong => {
                    let d = DugongReplicator::new(dugong_bin, workdir, sites)?;
                    d.install().await.context("installing Dugong's capture")?;
                    r.dugong = Some(d);
                }
                System::Bucardo => {
                    bucardo::ensure_installed().await?;
                    r.bucardo = Some(Bucardo::setup(sites, workdir).await.context("setting up Bucardo")?);
                }
                System::Native => r.native = Some(Native::setup(sites).await?),
            }
        }
        Ok(r)
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

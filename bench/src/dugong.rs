//! Dugong as the benchmark runs it: the release `dugong` binary with a generated
//! Bucardo-style `bucardo.json` (the deployment guide's master-master sync) and
//! default options, started and stopped as a child process.

use crate::cluster::Route;
use crate::system::System;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long a replicator may take to finish its run after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `dugong replicate` daemon of the benchmark.
pub struct DugongReplicator {
    bin: PathBuf,
    config: PathBuf,
    workdir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl DugongReplicator {
    /// Writes the configuration for `kwanza_dugong` on both sites, reached by `route`.
    pub fn new(bin: &Path, workdir: &Path, route: Route) -> anyhow::Result<DugongReplicator> {
        let replicator = DugongReplicator {
            bin: bin.to_path_buf(),
            config: workdir.join("bucardo.json"),
            workdir: workdir.to_path_buf(),
            child: None,
            starts: 0,
        };
        replicator.write_config(route)?;
        Ok(replicator)
    }

    /// Rewrites the configuration so the next start reaches the sites by `route`
    /// (the replicator's state lives in the databases, not in the addresses).
    pub fn write_config(&self, route: Route) -> anyhow::Result<()> {
        let db = |id: usize| {
            serde_json::json!({
                "id": id, "dbname": System::Dugong.db(), "host": format!("127.0.0.1 port={}", route.ports[id]),
                "user": "postgres",
            })
        };
        let config = serde_json::json!({
            "databases": [db(0), db(1)],
            "syncs": [{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}],
        });
        let text = serde_json::to_string_pretty(&config).context("rendering bucardo.json")?;
        std::fs::write(&self.config, text).with_context(|| format!("writing {}", self.config.display()))
    }

    /// The running replicator's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Installs capture on both sites (`replicate --once` prepares the sync, finds
    /// nothing pending and exits Good).
    pub async fn install(&self) -> anyhow::Result<()> {
        let log = self.log_file("install")?;
        let status = Command::new(&self.bin)
            .args(["replicate", "--once", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file")?)
            .stderr(log)
            .status()
            .await
            .with_context(|| format!("running {}", self.bin.display()))?;
        if !status.success() {
            bail!(
                "dugong replicate --once failed ({status}); see {}",
                self.workdir.join("dugong-install.log").display()
            );
        }
        Ok(())
    }

    /// Starts `dugong replicate --config bucardo.json`, logging to the work directory.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("the replicator is already running");
        }
        self.starts += 1;
        let log = self.log_file(&format!("run-{}", self.starts))?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(["replicate", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file")?)
            .stderr(log)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours. The
        // replicator dies with us even when we are killed without cleaning up.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().with_context(|| format!("starting {}", self.bin.display()))?);
        Ok(())
    }

    /// Stops the replicator with SIGTERM (it finishes the run in progress), or
    /// SIGKILL when it does not exit in time.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        if let Some(pid) = child.id() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our
            // child's, not yet reaped.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(status) => {
                let status = status.context("waiting for the replicator")?;
                if !status.success() {
                    eprintln!("[bench] dugong replicate exited with {status}; see {}", self.workdir.display());
                }
                Ok(())
            }
            Err(_) => {
                child.kill().await.context("killing the replicator")?;
                bail!("dugong replicate did not stop within {STOP_TIMEOUT:?} of SIGTERM")
            }
        }
    }

    fn log_file(&self, what: &str) -> anyhow::Result<std::fs::File> {
        let path = self.workdir.join(format!("dugong-{what}.log"));
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))
    }
}

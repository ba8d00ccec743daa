//! The campaign's lab: a private test network with one namespace per site, each running a
//! durable PostgreSQL, and one for the replicator, whose every connection to a site crosses
//! that site's link. Cutting a site's link cuts the replicator off it; cutting the
//! replicator's own link cuts it off all of them. The writers reach their databases over Unix
//! sockets, as applications beside the database would, so no cut stops them.
//!
//! With a delay (`--delay-ms`), the replicator reaches each site through a delay link of its
//! own, running in the replicator's namespace ([`super::link`]); the links serve every run.
//!
//! The network and the clusters serve every run; each run gets fresh databases and its own
//! replicator process.

use super::link::SiteLink;
use super::writer::SCHEMA;
use anyhow::{bail, Context};
use dugong_testkit::{wait_for, Cluster, ClusterOptions, Namespace, TestNetwork};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Durable settings, as the benchmark's: a crash (`pg_ctl -m immediate stop`) keeps exactly
/// what was committed. `wal_level = logical`: the replicator's doorbells ring (and are cut,
/// crashed and killed with everything else), as in the compose deployment.
const SETTINGS: &[(&str, &str)] = &[
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    ("max_connections", "100"),
    ("wal_level", "logical"),
];

/// Drops database `db` of a site. A replicator's doorbell keeps a logical
/// slot there, and PostgreSQL refuses to drop a database with an active one
/// even WITH (FORCE): its walsender ends when it sees the replicator gone,
/// at once on a clean stop, within `wal_sender_timeout` after a kill across a
/// cut link. It is ended first.
async fn drop_database(cluster: &Cluster, db: &str) -> anyhow::Result<()> {
    let client = cluster.connect("postgres").await?;
    wait_for(&format!("the logical slots in {db} to end"), Duration::from_secs(20), || async {
        let left: i64 = client
            .query_one(
                "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots WHERE database = $1 AND active",
                &[&db],
            )
            .await
            .ok()?
            .get(0);
        let slots: i64 = client
            .query_one("SELECT count(*) FROM pg_replication_slots WHERE database = $1", &[&db])
            .await
            .ok()?
            .get(0);
        (left == 0 && slots == 0).then_some(())
    })
    .await;
    cluster.psql("postgres", &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await?;
    Ok(())
}

/// How long the replicator may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The network, the sites' servers and the replicator's namespace.
pub struct Lab {
    pub sites: Vec<Site>,
    pub replicator_ns: Namespace,
    dugong: PathBuf,
    pub workdir: PathBuf,
    _net: TestNetwork,
}

/// One site: its namespace, its PostgreSQL, and the delay link the replicator reaches it
/// through, if any.
pub struct Site {
    pub ns: Namespace,
    pub cluster: Arc<Cluster>,
    link: Option<SiteLink>,
}

impl Site {
    /// Where the replicator connects to the site: its link, or its server.
    fn endpoint(&self) -> (String, u16) {
        match &self.link {
            Some(link) => (link.addr().ip().to_string(), link.addr().port()),
            None => (self.cluster.host().to_owned(), self.cluster.port()),
        }
    }
}

impl Lab {
    /// Makes the network and starts `sites` servers, one per site namespace; with a non-zero
    /// `delay`, a delay link of `delay` each way to every site in the replicator's namespace.
    pub async fn start(dugong: &Path, workdir: &Path, sites: usize, delay: Duration) -> anyhow::Result<Lab> {
        let net = TestNetwork::new().context("the campaign cuts links between network namespaces")?;
        let replicator_ns = net.add("replicator")?;
        let mut list = Vec::new();
        for i in 0..sites {
            let ns = net.add(&format!("site{i}"))?;
            let options = ClusterOptions {
                extra_settings: SETTINGS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..ClusterOptions::default()
            };
            let inside = ns.clone();
            let cluster = tokio::task::spawn_blocking(move || Cluster::start_in(&inside, options))
                .await
                .context("the cluster start task failed")?
                .with_context(|| format!("starting PostgreSQL for site {i}"))?;
            eprintln!("[campaign] site {i}: PostgreSQL on {}:{} in {}", cluster.host(), cluster.port(), ns.name());
            let link = if delay.is_zero() {
                None
            } else {
                let upstream = format!("{}:{}", cluster.host(), cluster.port())
                    .parse()
                    .with_context(|| format!("site {i}'s server is not at an IP address: {}", cluster.host()))?;
                let link = SiteLink::start(&replicator_ns, upstream, delay).await?;
                eprintln!(
                    "[campaign] site {i}: the replicator reaches it through {} in {}, {} ms each way",
                    link.addr(),
                    replicator_ns.name(),
                    delay.as_millis()
                );
                Some(link)
            };
            list.push(Site { ns, cluster: Arc::new(cluster), link });
        }
        Ok(Lab { sites: list, replicator_ns, dugong: dugong.to_path_buf(), workdir: workdir.to_path_buf(), _net: net })
    }
}

/// One run's databases, configuration and replicator.
pub struct Run<'a> {
    pub lab: &'a Lab,
    /// How many of the lab's sites this run uses.
    pub sites: usize,
    pub db: String,
    config: PathBuf,
    log: PathBuf,
    replicator: Mutex<Option<Child>>,
    /// How the replicator ended each time it exited by itself (no signal of ours).
    exits: Mutex<Vec<String>>,
}

impl<'a> Run<'a> {
    /// Creates database `db` with the schema on the first `sites` sites, and the
    /// configuration of one master-master sync over them.
    pub async fn create(lab: &'a Lab, sites: usize, db: &str) -> anyhow::Result<Run<'a>> {
        let mut databases = Vec::new();
        for (i, site) in lab.sites.iter().take(sites).enumerate() {
            drop_database(&site.cluster, db).await?;
            site.cluster.psql("postgres", &format!("CREATE DATABASE {db}")).await?;
            site.cluster.psql(db, SCHEMA).await?;
            let (host, port) = site.endpoint();
            databases.push(serde_json::json!({
                "id": i, "dbname": db, "host": format!("{host} port={port}"),
                "user": "postgres",
            }));
        }
        let config = serde_json::json!({
            "databases": databases,
            "syncs": [{"sources": (0..sites).collect::<Vec<_>>(), "targets": [], "tables": "all", "onetimecopy": 0}],
        });
        let path = lab.workdir.join(format!("{db}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&config)?)
            .with_context(|| format!("writing {}", path.display()))?;
        let log = lab.workdir.join(format!("{db}.log"));
        Ok(Run {
            lab,
            sites,
            db: db.to_owned(),
            config: path,
            log,
            replicator: Mutex::new(None),
            exits: Mutex::new(Vec::new()),
        })
    }

    /// The replicator's log (every start of this run appends to it).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Takes a replicator that exited by itself out of `slot`, noting how it ended: a
    /// replicator must run through every fault, so the run fails (its supervisor — systemd
    /// in the guide's layout — starts it again, as the next start here does).
    fn reap_exited(&self, slot: &mut Option<Child>) -> anyhow::Result<()> {
        if let Some(status) = slot.as_mut().map(Child::try_wait).transpose()?.flatten() {
            *slot = None;
            self.exits.lock().unwrap_or_else(|e| e.into_inner()).push(status.to_string());
        }
        Ok(())
    }

    /// How the replicator ended each time it exited by itself.
    pub fn exits(&self) -> Vec<String> {
        self.exits.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts `dugong replicate` in the replicator's namespace, unless it runs.
    pub fn start_replicator(&self) -> anyhow::Result<()> {
        let mut slot = self.replicator.lock().unwrap_or_else(|e| e.into_inner());
        self.reap_exited(&mut slot)?;
        if slot.is_some() {
            return Ok(());
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut cmd = self.lab.replicator_ns.command(&self.lab.dugong);
        cmd.args(["replicate", "--config"])
            .arg(&self.config)
            .env("DUGONG_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        // Should the campaign die without cleaning up, the network's watchdog kills what runs
        // in its namespaces, this replicator included.
        *slot = Some(cmd.spawn().with_context(|| format!("starting {}", self.lab.dugong.display()))?);
        Ok(())
    }

    /// Kills the replicator with SIGKILL, if it runs, and reaps it.
    pub fn kill_replicator(&self) -> anyhow::Result<()> {
        let mut slot = self.replicator.lock().unwrap_or_else(|e| e.into_inner());
        self.reap_exited(&mut slot)?;
        let child = slot.take();
        drop(slot);
        if let Some(mut child) = child {
            child.kill().context("killing the replicator")?;
            child.wait().context("reaping the replicator")?;
        }
        Ok(())
    }

    /// Stops the replicator with SIGTERM, or SIGKILL when it does not exit in time.
    pub async fn stop_replicator(&self) -> anyhow::Result<()> {
        let child = self.replicator.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut child) = child else { return Ok(()) };
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child's.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let waited = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + STOP_TIMEOUT;
            loop {
                if let Some(status) = child.try_wait()? {
                    return Ok::<_, std::io::Error>(Some(status));
                }
                if std::time::Instant::now() > deadline {
                    child.kill()?;
                    child.wait()?;
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await??;
        if waited.is_none() {
            bail!("dugong replicate did not stop within {STOP_TIMEOUT:?} of SIGTERM; see {}", self.log.display());
        }
        Ok(())
    }

    /// Waits until capture is installed on every site of the run.
    pub async fn wait_capture(&self) -> anyhow::Result<()> {
        for site in self.lab.sites.iter().take(self.sites) {
            let c = site.cluster.connect(&self.db).await?;
            wait_for("capture installed", Duration::from_secs(120), || async {
                let sql = "SELECT count(*) FROM pg_trigger WHERE tgname = 'dugong_capture_insert'";
                let n: i64 = c.query_one(sql, &[]).await.ok()?.get(0);
                (n == 1).then_some(())
            })
            .await;
        }
        Ok(())
    }

    /// `dugong compare` from the replicator's namespace: whether it found the sites
    /// identical, and what it printed.
    pub async fn compare(&self) -> anyhow::Result<(bool, String)> {
        let mut cmd = self.lab.replicator_ns.command(&self.lab.dugong);
        cmd.args(["compare", "--config"]).arg(&self.config).stdin(Stdio::null());
        let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Ok((out.status.code() == Some(0), text))
    }

    /// Stops the replicator and drops the run's databases.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.stop_replicator().await?;
        for site in self.lab.sites.iter().take(self.sites) {
            drop_database(&site.cluster, &self.db).await?;
        }
        Ok(())
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        let _ = self.kill_replicator();
    }
}

//! The demo's machinery: two `dugong serve` processes on 127.0.0.10 and 127.0.0.11, each with
//! its own SQLite file, and `dugong replicate` between the files — all children of this process,
//! in one temporary directory that goes away with them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dugong_client::api::{request, Token};
use dugong_proto::v1 as pb;
use pb::apps_client::AppsClient;
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// The console user the demo makes.
pub const CONSOLE_USER: &str = "demo";
/// How long a server or the replicator may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process may take to stop after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a paused replicator goes on before it is stopped again, when the first stop caught
/// it inside a write.
const PAUSE_AGAIN: Duration = Duration::from_millis(5);
/// How long the pause waits for a write on a site's file before it counts the file as held.
const WRITE_CHECK: Duration = Duration::from_millis(100);

/// Both sites, the replicator, and the directory they live in.
pub struct Sites {
    dir: tempfile::TempDir,
    exe: PathBuf,
    token: String,
    pub sites: [Site; 2],
    replicator: Option<Child>,
    /// The replicator's Bucardo-style configuration.
    pub config: PathBuf,
}

/// One site: its addresses, database file and server process.
pub struct Site {
    pub id: usize,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub metrics: SocketAddr,
    pub db: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    channel: Channel,
}

impl Sites {
    /// Makes the directory, picks the addresses and writes the replicator's configuration;
    /// starts nothing yet.
    pub fn prepare() -> anyhow::Result<Sites> {
        let exe = std::env::current_exe().context("cannot find the dugong executable to start the sites with")?;
        let dir =
            tempfile::Builder::new().prefix("dugong-demo.").tempdir().context("cannot make a temporary directory")?;
        let token = dugong_client::api::new_id();
        let sites = [Site::plan(0, dir.path())?, Site::plan(1, dir.path())?];
        let config = dir.path().join("bucardo.json");
        let json = serde_json::json!({
            "databases": sites.iter().map(|s| serde_json::json!({
                "id": s.id,
                "url": format!("sqlite:{}", s.db.display()),
            })).collect::<Vec<_>>(),
            "syncs": [{
                "name": "demo",
                "sources": [0, 1],
                "targets": [],
                "tables": "all",
                "onetimecopy": 0,
            }],
        });
        std::fs::write(&config, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("cannot write {}", config.display()))?;
        write_private(&dir.path().join("token"), &token)?;
        Ok(Sites { dir, exe, token, sites, replicator: None, config })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API token both servers accept (made for this run).
    pub fn token(&self) -> Token {
        Token::new(&self.token).expect("a UUID is a valid token")
    }

    /// A file holding the token (owner-only), to reach the sites by hand without printing it.
    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    /// Starts site `id`'s server and waits until it answers.
    pub async fn start_site(&mut self, id: usize) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let site = &mut self.sites[id];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&site.log)
            .with_context(|| format!("cannot open {}", site.log.display()))?;
        let child = dugong(&self.exe, &["serve"])
            .args(["--site", &site.id.to_string()])
            .args(["--db", &format!("sqlite:{}", site.db.display())])
            .args(["--grpc", &site.grpc.to_string()])
            .args(["--http", &site.http.to_string()])
            .args(["--metrics", &site.metrics.to_string()])
            .args(["--drain-timeout", "2s"])
            .env("DUGONG_API_TOKENS", &self.token)
            .env_remove("DUGONG_API_TOKENS_FILE")
            .env_remove("DUGONG_DB")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start dugong serve")?;
        site.child = Some(child);
        site.wait_ready(&self.token).await?;
        Ok(started.elapsed())
    }

    /// Kills site `id`'s server with SIGKILL, as a crash would: no drain, no goodbye.
    pub async fn kill_site(&mut self, id: usize) -> anyhow::Result<()> {
        let site = &mut self.sites[id];
        if let Some(mut child) = site.child.take() {
            child.start_kill().context("cannot kill the server")?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Starts `dugong replicate` between the two files.
    pub fn start_replicator(&mut self) -> anyhow::Result<()> {
        let log_path = self.dir.path().join("replicate.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot open {}", log_path.display()))?;
        let child = dugong(&self.exe, &["replicate", "--config", &self.config.display().to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start dugong replicate")?;
        self.replicator = Some(child);
        Ok(())
    }

    /// Holds the replicator still (SIGSTOP), as a slow link between the sites would hold their
    /// changes up: writes on both sites then meet as a conflict when it goes on.
    ///
    /// A stop can catch the replicator inside a write transaction on one of the files, which
    /// would then refuse the sites' own writes until it goes on. So the pause holds only once
    /// both files take a write; otherwise the replicator goes on for a moment and is stopped
    /// again.
    pub async fn pause_replicator(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.signal_replicator(libc::SIGSTOP)?;
            let files: Vec<PathBuf> = self.sites.iter().map(|s| s.db.clone()).collect();
            let busy = tokio::task::spawn_blocking(move || files.iter().find(|f| !takes_a_write(f)).cloned())
                .await
                .context("checking the sites' files")?;
            let Some(file) = busy else { return Ok(()) };
            self.signal_replicator(libc::SIGCONT)?;
            if Instant::now() >= deadline {
                bail!("the replicator held a write on {} at every pause for {START_TIMEOUT:?}", file.display());
            }
            tokio::time::sleep(PAUSE_AGAIN).await;
        }
    }

    /// Lets a paused replicator go on (SIGCONT).
    pub fn resume_replicator(&mut self) -> anyhow::Result<()> {
        self.signal_replicator(libc::SIGCONT)
    }

    fn signal_replicator(&mut self, signal: libc::c_int) -> anyhow::Result<()> {
        let Some(id) = self.replicator.as_ref().and_then(|child| child.id()) else {
            bail!("the replicator is not running")
        };
        let pid = libc::pid_t::try_from(id).context("the replicator's pid")?;
        // SAFETY: kill(2) with the pid of our own child, which we have not yet waited for.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!("cannot signal the replicator: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Fails, with the end of its log, if the replicator has exited.
    pub fn check_replicator(&mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.replicator {
            if let Some(status) = child.try_wait()? {
                self.replicator = None;
                let log = tail(&self.dir.path().join("replicate.log"));
                bail!("dugong replicate exited ({status}):\n{log}");
            }
        }
        Ok(())
    }

    /// Waits until `dugong status` says the sync is Good: capture is installed on both files,
    /// so every write from now on replicates.
    pub async fn wait_replicating(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_replicator()?;
            let (good, text, _) = self.on_config("status", &["--json"]).await?;
            if good {
                let status: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if status["syncs"][0]["state"] == "Good" {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!("the sync was not Good within {START_TIMEOUT:?}; dugong status said:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates the console user `demo` on site 0 (with the replicator running, so it replicates
    /// to site 1 like any other row) with a new random password kept in an owner-only file.
    pub async fn create_console_user(&self) -> anyhow::Result<()> {
        let password = self.console_password_file();
        write_private(&password, &dugong_client::api::new_id())?;
        let site = &self.sites[0];
        let output = dugong(&self.exe, &["serve"])
            .args(["--site", &site.id.to_string()])
            .args(["--db", &format!("sqlite:{}", site.db.display())])
            .args(["--create-admin", CONSOLE_USER])
            .args(["--password-file", &password.display().to_string()])
            .output()
            .await
            .context("cannot run dugong serve --create-admin")?;
        if !output.status.success() {
            bail!("dugong serve --create-admin failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(())
    }

    /// Logs the console user in on site `id`'s console, as a browser's form would; the page it
    /// is sent to.
    pub async fn console_login(&self, id: usize) -> anyhow::Result<String> {
        let password = std::fs::read_to_string(self.console_password_file())?;
        let base = format!("http://{}", self.sites[id].http);
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        let reply = http
            .post(format!("{base}/login"))
            .header("origin", &base)
            .form(&[("name", CONSOLE_USER), ("password", password.trim())])
            .send()
            .await
            .with_context(|| format!("cannot reach site {id}'s console"))?;
        let to = reply.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or("").to_string();
        if !reply.status().is_redirection() || reply.headers().get("set-cookie").is_none() {
            bail!("site {id}'s console refused the login ({})", reply.status());
        }
        Ok(to)
    }

    /// The file holding the console user's password.
    pub fn console_password_file(&self) -> PathBuf {
        self.dir.path().join("console-password")
    }

    /// Runs `dugong COMMAND --config bucardo.json EXTRA…` (`status`, `compare`): its exit status,
    /// standard output and errors.
    pub async fn on_config(&self, command: &str, extra: &[&str]) -> anyhow::Result<(bool, String, String)> {
        let output = dugong(&self.exe, &[command, "--config", &self.config.display().to_string()])
            .args(extra)
            .output()
            .await
            .with_context(|| format!("cannot run dugong {command}"))?;
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        Ok((output.status.success(), text(&output.stdout), text(&output.stderr)))
    }

    /// Stops every process (SIGTERM, then SIGKILL after a while) and removes the directory.
    pub async fn stop(mut self) {
        let mut children: Vec<Child> = self.replicator.take().into_iter().collect();
        children.extend(self.sites.iter_mut().filter_map(|s| s.child.take()));
        for child in &children {
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) on the PID of a child we started and have not reaped.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
        }
        for mut child in children {
            if tokio::time::timeout(STOP_TIMEOUT, child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        let path = self.dir.path().to_path_buf();
        if let Err(e) = self.dir.close() {
            eprintln!("dugong demo: cannot remove {}: {e}", path.display());
        }
    }
}

impl Site {
    /// Site `id` on 127.0.0.1`id`, on the usual ports when they are free.
    fn plan(id: usize, dir: &Path) -> anyhow::Result<Site> {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + id as u8));
        let grpc = pick(ip, 8001)?;
        let channel = Endpoint::from_shared(format!("http://{grpc}"))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(Site {
            id,
            grpc,
            http: pick(ip, 8000)?,
            metrics: pick(ip, 6060)?,
            db: dir.join(format!("site{id}.sqlite")),
            log: dir.join(format!("site{id}.log")),
            child: None,
            channel,
        })
    }

    /// The console's address.
    pub fn console(&self) -> String {
        format!("http://{}/", self.http)
    }

    /// This site's server alone (no failover): for watching what each site shows.
    pub fn apps(&self) -> AppsClient<Channel> {
        AppsClient::new(self.channel.clone())
    }

    /// The app with `id` as this site shows it, or `None` if it has none.
    pub async fn get_app(&self, token: &Token, id: &str) -> anyhow::Result<Option<pb::App>> {
        match self.apps().get_app(request(pb::GetAppRequest { id: id.into() }, Some(token))).await {
            Ok(reply) => Ok(Some(reply.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(anyhow::anyhow!("site {}: {}", self.id, status.message())),
        }
    }

    /// Waits until the server answers a call, failing early (with its log) if it exits.
    async fn wait_ready(&mut self, token: &str) -> anyhow::Result<()> {
        let token = Token::new(token).expect("a UUID is a valid token");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!("site {}'s server exited ({status}):\n{}", self.id, tail(&self.log));
                }
            }
            let probe = pb::ListAppsRequest { page_size: 1, page_token: String::new() };
            if self.apps().list_apps(request(probe, Some(&token))).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("site {}'s server did not answer within {START_TIMEOUT:?}:\n{}", self.id, tail(&self.log));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `dugong ARGS…` as a child of the demo: logs only warnings, no input, killed if the demo drops it.
fn dugong(exe: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(exe);
    command.args(args).env("DUGONG_LOG", "warn").stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// `ip:usual` when that can be listened on now, else a free port on `ip`.
fn pick(ip: IpAddr, usual: u16) -> anyhow::Result<SocketAddr> {
    let want = SocketAddr::new(ip, usual);
    if TcpListener::bind(want).is_ok() {
        return Ok(want);
    }
    let free = TcpListener::bind(SocketAddr::new(ip, 0)).with_context(|| format!("cannot listen on {ip}"))?;
    Ok(free.local_addr()?)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The last lines of a log, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Whether the SQLite file `path` can start a write transaction now (waiting at most
/// [`WRITE_CHECK`]); nothing is written.
fn takes_a_write(path: &Path) -> bool {
    let check = || -> rusqlite::Result<()> {
        let db = rusqlite::Connection::open(path)?;
        db.busy_timeout(WRITE_CHECK)?;
        db.execute_batch("BEGIN IMMEDIATE; ROLLBACK")
    };
    check().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_held_in_a_write_transaction_does_not_take_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.db");
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x int)").unwrap();
        assert!(takes_a_write(&path), "a file nobody writes takes a write");
        holder.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)").unwrap();
        assert!(!takes_a_write(&path), "a file held in a write transaction took a write");
        holder.execute_batch("COMMIT").unwrap();
        assert!(takes_a_write(&path), "the file takes a write once the holder commits");
        let rows: i64 = holder.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 1, "the check wrote nothing");
    }
}

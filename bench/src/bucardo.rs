//! Bucardo 5.6 as the baseline ran it: Debian's package, a control database on
//! its own cluster, `sync0` over both sites with `tables=all onetimecopy=0`, and
//! the defaults it installs with.
//!
//! The set-up steps work around the pitfalls the baseline hit: the package's
//! postinst misfires on a fresh machine (harmless here), every command runs from
//! a directory holding our `.bucardorc` (the rc file is looked up in the current
//! directory first), `install` needs `--batch --dbuser postgres --dbname
//! postgres`, `piddir` and `logdest` (spelled exactly so) are set before install,
//! and the paths kept in the control database are set with `bucardo set`.
//!
//! The daemon forks away from us (setsid), so it is stopped explicitly: by
//! [`Bucardo::stop`], by `Drop`, and by a small watchdog process when we are
//! killed.

use crate::cluster::Route;
use crate::cluster::Sites;
use crate::system::System;
use anyhow::{bail, Context};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long the daemon's processes get to exit after `bucardo stop`.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Stops Bucardo once our process is gone, unless told "done" first.
/// `$1` is the Bucardo directory.
const WATCHDOG: &str = r#"
read -r line
[ "$line" = done ] && exit 0
cd "$1" || exit 0
bucardo stop >/dev/null 2>&1
i=0
while [ $i -lt 30 ] && ls run/bucardo*.pid >/dev/null 2>&1; do sleep 1; i=$((i + 1)); done
for f in run/bucardo*.pid; do
    [ -f "$f" ] || continue
    pid=$(head -n 1 "$f")
    grep -qa ucardo "/proc/$pid/cmdline" 2>/dev/null && kill -9 "$pid"
done
"#;

/// Bucardo installed and configured for the benchmark.
pub struct Bucardo {
    dir: PathBuf,
    watchdog: Option<std::process::Child>,
    version: String,
}

/// Installs the `bucardo` package when its command is missing.
pub async fn ensure_installed() -> anyhow::Result<()> {
    if which("bucardo").is_some() {
        return Ok(());
    }
    eprintln!("[bench] installing Bucardo from Debian's packages (apt-get install -y bucardo)");
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "bucardo"][..]] {
        let out = tokio::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .await
            .context("running apt-get (root is needed to install bucardo)")?;
        // The package's postinst fails to reach a server on the default socket and
        // prints a bogus "cannot be upgraded" notice, but the package is installed.
        if !out.status.success() {
            bail!("apt-get {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
    }
    if which("bucardo").is_none() {
        bail!("apt-get installed bucardo, but there is still no `bucardo` command on PATH");
    }
    Ok(())
}

impl Bucardo {
    /// Installs Bucardo's control database on the control cluster, and adds
    /// both sites' `kwanza_bucardo`, reached by `route`, and the sync (which
    /// installs its triggers).
    pub async fn setup(sites: &Sites, route: Route, workdir: &Path) -> anyhow::Result<Bucardo> {
        let ctl = sites.ctl().context("Bucardo needs its control cluster")?;
        let dir = workdir.join("bucardo");
        for sub in ["run", "log"] {
            std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let rc = format!(
            "dbhost = 127.0.0.1\ndbport = {}\ndbname = bucardo\ndbuser = bucardo\npiddir = {}\nlogdest = {}\n",
            ctl.port(),
            dir.join("run").display(),
            dir.join("log").display()
        );
        std::fs::write(dir.join(".bucardorc"), rc).context("writing .bucardorc")?;
        let mut bucardo = Bucardo { dir, watchdog: None, version: String::new() };
        bucardo.watchdog = Some(bucardo.spawn_watchdog()?);
        bucardo.version = bucardo.run(&["--version"]).await?.trim().to_string();
        bucardo.run(&["install", "--batch", "--dbuser", "postgres", "--dbname", "postgres"]).await?;
        let log = bucardo.dir.join("log");
        bucardo.run(&["set", &format!("reason_file={}", log.join("restart.reason").display())]).await?;
        bucardo.run(&["set", &format!("log_conflict_file={}", log.join("conflict.log").display())]).await?;
        for site in 0..2 {
            bucardo
                .run(&[
                    "add",
                    "db",
                    &format!("db{site}"),
                    &format!("dbname={}", System::Bucardo.db()),
                    "host=127.0.0.1",
                    &format!("port={}", route.ports[site]),
                    "user=postgres",
                ])
                .await?;
        }
        bucardo.run(&["add", "sync", "sync0", "dbs=db0:source,db1:source", "tables=all", "onetimecopy=0"]).await?;
        Ok(bucardo)
    }

    /// `bucardo --version`, e.g. "bucardo version 5.6.0".
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `bucardo start`: returns once the daemon has forked; it kicks the sync at
    /// startup by itself.
    pub async fn start(&self) -> anyhow::Result<()> {
        self.run(&["start", "dugong-bench"]).await.map(|_| ())
    }

    /// `bucardo stop`, then waits for every Bucardo process to exit. A kid stuck
    /// in a long query ignores the stop file (baseline pitfall 14): its backends
    /// are terminated, then it is killed.
    pub async fn stop(&self, sites: &Sites) -> anyhow::Result<()> {
        self.run(&["stop"]).await?;
        if self.wait_for_exit(STOP_TIMEOUT).await {
            return Ok(());
        }
        eprintln!("[bench] Bucardo did not stop within {STOP_TIMEOUT:?}; terminating its queries");
        for site in 0..2 {
            sites
                .exec(
                    site,
                    "postgres",
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'bucardo%'",
                )
                .await?;
        }
        if !self.wait_for_exit(Duration::from_secs(10)).await {
            self.kill_leftovers();
        }
        Ok(())
    }

    async fn wait_for_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.live_pids().is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.live_pids().is_empty()
    }

    /// Live Bucardo processes named in the pid directory.
    fn live_pids(&self) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("run")) else { return Vec::new() };
        entries
            .filter_map(|e| {
                let path = e.ok()?.path();
                let name = path.file_name()?.to_str()?;
                if !(name.starts_with("bucardo") && name.ends_with(".pid")) {
                    return None;
                }
                std::fs::read_to_string(&path).ok()?.lines().next()?.trim().parse::<i32>().ok()
            })
            .filter(|pid| is_bucardo(*pid))
            .collect()
    }

    fn kill_leftovers(&self) {
        for pid in self.live_pids() {
            eprintln!("[bench] killing Bucardo process {pid}");
            // SAFETY: kill has no memory-safety preconditions; is_bucardo checked
            // that the pid is one of the daemon's processes.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    /// Runs a `bucardo` command from our directory (so it reads our rc file);
    /// its output, or an error carrying it.
    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new("bucardo")
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running bucardo {}", args.join(" ")))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("bucardo {} failed ({}):\n{text}", args.join(" "), out.status);
        }
        Ok(text)
    }

    fn spawn_watchdog(&self) -> anyhow::Result<std::process::Child> {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("dugong-bench-bucardo-watchdog")
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: setsid is async-signal-safe; a Ctrl-C on our terminal must not
        // take the watchdog down with us.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().context("starting the Bucardo watchdog (sh)")
    }
}

impl Drop for Bucardo {
    fn drop(&mut self) {
        // Best effort: Bucardo must not outlive the benchmark.
        if !self.live_pids().is_empty() {
            let _ = std::process::Command::new("bucardo")
                .arg("stop")
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while !self.live_pids().is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            self.kill_leftovers();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            if let Some(mut stdin) = watchdog.stdin.take() {
                let _ = stdin.write_all(b"done\n");
            }
            let _ = watchdog.wait();
        }
    }
}

/// Whether `pid` is a live Bucardo process (its command line says so; a
/// recycled pid of something else is left alone).
fn is_bucardo(pid: i32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').and_then(|end| s[end + 1..].split_whitespace().next().map(|st| st != "Z")))
        .unwrap_or(false);
    alive && String::from_utf8_lossy(&cmdline).contains("ucardo")
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

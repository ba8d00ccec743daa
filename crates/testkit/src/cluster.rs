//! A real PostgreSQL server for tests: create, start, stop, crash, restart, remove.
//!
//! A cluster lives in its own directory, `$TMPDIR/dugong-test-<pid>-<n>`, holding the data
//! directory (`data/`), the server log (`postgres.log`) and the Unix socket. Its settings are
//! written to `data/dugong_testkit.conf`, included from `postgresql.conf`, rather than passed
//! as `-c` options: that way `restart()` brings the server back exactly as it was without
//! remembering a command line, and values need no shell quoting.
//!
//! A cluster started in a test network's namespace ([`Cluster::start_in`]) listens on the
//! namespace's address instead of `127.0.0.1`, and the test process talks to it over its Unix
//! socket, which cutting the namespace's link leaves alone.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::error::TestkitError;
use crate::install::PgBinaries;
use crate::network::{Namespace, TEST_NETWORK};
use crate::port::free_port;
use crate::process::{self, RunAs};
use crate::server_log;
use crate::settings::{self, ClusterOptions, HOST, SETTINGS_FILE};
use crate::tls::{self, ServerCerts};
use crate::watchdog::Watchdog;

/// How many ports `start()` tries before giving up, when others keep taking them.
const START_ATTEMPTS: usize = 5;

/// How long `restart()` keeps retrying while its port is still taken, and how often.
const RESTART_PORT_WAIT: Duration = Duration::from_secs(15);
const PORT_RETRY_EVERY: Duration = Duration::from_millis(50);

/// How long pg_ctl may wait for a start or stop, and we for processes to exit.
const PG_CTL_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Numbers the cluster directories of this process.
static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A running PostgreSQL server on `127.0.0.1:<port>` (or a test network namespace's address),
/// superuser `postgres`, trust auth.
///
/// Dropping it stops the server at once and removes its directory. A detached watchdog does
/// the same if the test process dies first, so no server or directory outlives the tests.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    data_dir: PathBuf,
    /// The address it listens on.
    host: String,
    port: u16,
    /// The namespace it runs in, if any; held so the network outlives the server.
    netns: Option<Namespace>,
    bins: PgBinaries,
    run_as: RunAs,
    watchdog: Option<Watchdog>,
    /// The certificates it serves TLS with, when started with `tls`.
    tls: Option<ServerCerts>,
    /// Serialises stop, restart and kill9 called from different threads.
    lifecycle: Mutex<()>,
}

impl Cluster {
    /// Creates a new cluster (initdb) and starts it on a free port, waiting until it accepts
    /// connections. If another process takes the port first, tries again on another.
    ///
    /// Blocking: takes about a second.
    pub fn start(opts: ClusterOptions) -> Result<Cluster, TestkitError> {
        Cluster::start_somewhere(opts, None)
    }

    /// Like [`Cluster::start`], but the server runs inside `netns` and listens on its address
    /// (TCP from the other namespaces of the network: [`Cluster::url`]); this process reaches
    /// it over its Unix socket ([`Cluster::connect`]), whatever happens to the links.
    ///
    /// TLS (`ClusterOptions::tls`) is not offered there: the certificate names `127.0.0.1`.
    pub fn start_in(netns: &Namespace, opts: ClusterOptions) -> Result<Cluster, TestkitError> {
        Cluster::start_somewhere(opts, Some(netns.clone()))
    }

    fn start_somewhere(opts: ClusterOptions, netns: Option<Namespace>) -> Result<Cluster, TestkitError> {
        let bins = PgBinaries::find()?;
        let run_as = RunAs::detect()?;
        let dir = create_cluster_dir(run_as)?;
        let data_dir = dir.join("data");
        // The watchdog starts before anything can fail, and from here on an early return
        // drops `cluster`, which cleans up.
        let watchdog = Watchdog::spawn(&dir, &data_dir, &bins.program("pg_ctl"), run_as);
        let host = netns.as_ref().map_or_else(|| HOST.to_owned(), |ns| ns.address().to_string());
        let mut cluster = Cluster {
            dir,
            data_dir,
            host,
            port: free_port(),
            netns,
            bins,
            run_as,
            watchdog: None,
            tls: None,
            lifecycle: Mutex::new(()),
        };
        cluster.watchdog = Some(watchdog?);
        cluster.initdb()?;
        if opts.tls && cluster.netns.is_some() {
            return Err(TestkitError::Unsupported("TLS for a cluster in a network namespace".into()));
        }
        if opts.tls {
            cluster.tls = Some(tls::make(&cluster.dir, run_as)?);
        }
        let mut attempt = 1;
        loop {
            cluster.write_settings(&opts)?;
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(cluster),
                Err(failed) if failed.port_taken && attempt < START_ATTEMPTS => {
                    attempt += 1;
                    cluster.port = free_port();
                }
                Err(failed) => return Err(failed.error),
            }
        }
    }

    /// The cluster shared by every test of this test binary, started with default options
    /// on first use. Safe to call from many tests and threads at once.
    ///
    /// Give each test its own database ([`Cluster::create_database`]); never stop or kill
    /// the shared cluster, other tests are using it. If it cannot start, every caller
    /// panics with the reason.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
        let shared = SHARED.get_or_init(|| Cluster::start(ClusterOptions::default()).map_err(|e| e.to_string()));
        match shared {
            Ok(cluster) => cluster,
            Err(reason) => panic!("could not start the shared test cluster: {reason}"),
        }
    }

    /// The TCP port the server listens on; the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host the server listens on: `127.0.0.1`, or the address of its namespace.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The namespace the server runs in, when started with [`Cluster::start_in`].
    pub fn namespace(&self) -> Option<&Namespace> {
        self.netns.as_ref()
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The PEM certificate of the CA that signed the server's certificate, for clients'
    /// `sslrootcert`; `None` unless started with [`ClusterOptions::tls`]. The certificate
    /// names `127.0.0.1` and `localhost`.
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|certs| certs.ca_cert.as_path())
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log; worth printing when a test fails mysteriously.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// Stops the server with `pg_ctl -m immediate` — no checkpoint, so the next start
    /// recovers as after a crash — and waits until every server process has exited.
    /// Stopping a stopped server does nothing. Blocking, about 0.1 s.
    pub fn stop(&self) -> Result<(), TestkitError> {
        let _lifecycle = self.lock();
        self.stop_now()
    }

    /// Starts the stopped server again on the same port and data directory, waiting until it
    /// accepts connections; then it has replayed its WAL, after `stop()` or `kill9()` alike.
    /// Blocking, about 0.1 s plus recovery.
    pub fn restart(&self) -> Result<(), TestkitError> {
        let _lifecycle = self.lock();
        // Until the server binds its port, someone else may take it; wait for it rather
        // than move the server, which clients know by port.
        let deadline = Instant::now() + RESTART_PORT_WAIT;
        loop {
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(failed) if failed.port_taken && Instant::now() < deadline => {
                    std::thread::sleep(PORT_RETRY_EVERY);
                }
                Err(failed) => return Err(failed.error),
            }
        }
    }

    /// Crashes the server: SIGKILL to the postmaster (its pid read from `postmaster.pid`),
    /// and to the backends it leaves behind, as a power cut would. Waits until all are gone
    /// and removes the stale lock files, so that [`Cluster::restart`] works. Committed data
    /// survives (only the processes die, not the machine), but nothing is checkpointed.
    /// Blocking.
    pub fn kill9(&self) -> Result<(), TestkitError> {
        let _lifecycle = self.lock();
        let pid_file = self.data_dir.join("postmaster.pid");
        let postmaster = read_pid_file(&pid_file).ok_or_else(|| TestkitError::NotRunning {
            data_dir: self.data_dir.clone(),
            detail: format!("no pid in {}", pid_file.display()),
        })?;
        process::kill9(postmaster)?;
        process::wait_until("the killed postmaster to exit", EXIT_TIMEOUT, || !process::is_alive(postmaster))?;
        self.kill_leftovers()?;
        // Stale, they would make the next postmaster check whether their pid is alive; a
        // killed postmaster may stay a zombie forever under a container init that does not
        // reap, and the check would say yes.
        for stale in [pid_file, self.dir.join(format!(".s.PGSQL.{}.lock", self.port))] {
            match std::fs::remove_file(&stale) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(TestkitError::io(format!("removing {}", stale.display()), err));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The guard protects no data, only ordering: a panic while held changes nothing.
        self.lifecycle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn initdb(&self) -> Result<(), TestkitError> {
        let mut cmd = self.run_as.command(&self.bins.program("initdb"), &self.dir);
        cmd.arg("-D").arg(&self.data_dir);
        cmd.args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
        process::run(cmd, "initdb")?;
        let conf = self.data_dir.join("postgresql.conf");
        let include = format!("\n# Added by dugong-testkit.\ninclude '{SETTINGS_FILE}'\n");
        append(&conf, &include).map_err(|err| TestkitError::io(format!("appending to {}", conf.display()), err))?;
        if self.netns.is_some() {
            // initdb trusts loopback only; in a test network the clients are its namespaces.
            let hba = self.data_dir.join("pg_hba.conf");
            let rule = format!("\n# Added by dugong-testkit: the test network.\nhost all all {TEST_NETWORK} trust\n");
            append(&hba, &rule).map_err(|err| TestkitError::io(format!("appending to {}", hba.display()), err))?;
        }
        Ok(())
    }

    /// Writes the settings file, for the current port.
    fn write_settings(&self, opts: &ClusterOptions) -> Result<(), TestkitError> {
        let path = self.data_dir.join(SETTINGS_FILE);
        std::fs::write(&path, settings::render(opts, &self.host, self.port, &self.dir, self.tls.as_ref()))
            .map_err(|err| TestkitError::io(format!("writing {}", path.display()), err))?;
        self.run_as.chown(&path)
    }

    fn pg_ctl_start(&self) -> Result<(), StartFailure> {
        let log = self.log_path();
        let mark = server_log::mark(&log);
        // Only the start runs in the namespace: the postmaster and its backends stay there,
        // and stopping is by signal, from anywhere.
        let netns = self.netns.as_ref().map(Namespace::name);
        let mut cmd = self.run_as.command_in(netns, &self.bins.program("pg_ctl"), &self.dir);
        cmd.arg("-D").arg(&self.data_dir).arg("-l").arg(&log);
        cmd.args(["-w", "-t", &PG_CTL_TIMEOUT.as_secs().to_string(), "start"]);
        let reason = match process::run(cmd, "pg_ctl start") {
            Ok(_) => return Ok(()),
            Err(err) => err.to_string(),
        };
        let written = server_log::since(&log, mark);
        Err(StartFailure {
            port_taken: server_log::port_was_taken(&written),
            error: TestkitError::Start {
                port: self.port,
                reason,
                log_tail: server_log::tail(&written, server_log::TAIL_LINES),
                log,
            },
        })
    }

    /// Stops the server if its pid file says it runs, and waits for all its processes.
    fn stop_now(&self) -> Result<(), TestkitError> {
        if self.data_dir.join("postmaster.pid").exists() {
            let mut cmd = self.run_as.command(&self.bins.program("pg_ctl"), &self.dir);
            cmd.arg("-D").arg(&self.data_dir);
            cmd.args(["-m", "immediate", "-w", "-t", &PG_CTL_TIMEOUT.as_secs().to_string()]);
            cmd.arg("stop");
            process::run(cmd, "pg_ctl stop")?;
        }
        process::wait_until("the server processes to exit", EXIT_TIMEOUT, || {
            process::processes_working_in(&self.data_dir).is_empty()
        })
    }

    /// Kills whatever server processes are left (backends of a killed postmaster) and waits
    /// until they are gone.
    fn kill_leftovers(&self) -> Result<(), TestkitError> {
        process::wait_until("the server processes to exit", EXIT_TIMEOUT, || {
            let left = process::processes_working_in(&self.data_dir);
            for pid in &left {
                // One that exits meanwhile is fine; one we may not kill shows as a timeout.
                let _ = process::kill9(*pid);
            }
            left.is_empty()
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Best effort throughout: a drop must not panic, and the watchdog is the backstop.
        if let Err(err) = self.stop_now() {
            eprintln!("dugong-testkit: stopping {}: {err}", self.data_dir.display());
        }
        if let Err(err) = self.kill_leftovers() {
            eprintln!("dugong-testkit: {err}");
        }
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("dugong-testkit: removing {}: {err}", self.dir.display());
        }
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.dismiss();
        }
    }
}

/// A failed `pg_ctl start`, and whether another process holding the port was why.
struct StartFailure {
    port_taken: bool,
    error: TestkitError,
}

/// Creates `$TMPDIR/dugong-test-<pid>-<n>`, owned by the server user, private to it.
fn create_cluster_dir(run_as: RunAs) -> Result<PathBuf, TestkitError> {
    loop {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dugong-test-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                run_as.chown(&dir)?;
                return Ok(dir);
            }
            // Left over from an earlier process with the same pid: not ours to touch.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(TestkitError::io(format!("creating {}", dir.display()), err)),
        }
    }
}

/// The postmaster's pid: the first line of `postmaster.pid`.
fn read_pid_file(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.lines().next()?.trim().parse().ok()
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).open(path)?.write_all(text.as_bytes())
}

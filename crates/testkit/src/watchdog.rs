//! Detached processes that clean up after a cluster or a test network whose test process is
//! gone.
//!
//! The shared cluster lives in a `static` and is never dropped, and a test binary may panic
//! or be killed: in all those cases nothing in the test process gets to stop the server or
//! delete the network namespaces. So each cluster and each test network gets a small `sh`
//! script, in its own session (a Ctrl-C on the test's terminal must not take it down with the
//! tests), that waits for the test process to go and then stops the server and removes its
//! directory, or ends the processes left in the network's namespaces and deletes them.
//!
//! It learns that the test process is gone from its stdin: a pipe whose only writer is the
//! test process, so the kernel closes it when that process ends, however it ends. Unlike
//! polling `kill -0 PID`, this reacts at once and cannot be fooled by a reused pid. `Drop`
//! cleans up itself and then closes the pipe; the script finds the directory (or the
//! namespaces) gone and exits quietly.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::error::TestkitError;
use crate::process::RunAs;

/// `$1` cluster dir, `$2` pg_ctl, `$3` data dir, `$4` 1 to run pg_ctl as postgres.
const SCRIPT: &str = r#"
dir="$1"; pg_ctl="$2"; data="$3"; as_postgres="$4"
while read -r _; do :; done
[ -d "$dir" ] || exit 0
cd "$dir" || exit 0
if [ "$as_postgres" = 1 ]; then
    runuser -u postgres -- "$pg_ctl" -D "$data" -m immediate -w -t 30 stop </dev/null
else
    "$pg_ctl" -D "$data" -m immediate -w -t 30 stop </dev/null
fi
# A postmaster killed with SIGKILL leaves no one for pg_ctl to stop; make sure.
if [ -f "$data/postmaster.pid" ]; then kill -9 "$(head -n 1 "$data/postmaster.pid")"; fi
cd / && rm -rf "$dir"
"#;

/// `$1` the network's name prefix: every namespace named `$1-…` is the network's. The
/// processes still in them were started there by the test (servers, replicators); they go
/// first, since a namespace with processes in it outlives its name.
const NETWORK_SCRIPT: &str = r#"
prefix="$1"
PATH="$PATH:/usr/sbin:/sbin"
while read -r _; do :; done
for ns in $(ip netns list | cut -d' ' -f1); do
    case "$ns" in
        "$prefix"-*)
            for pid in $(ip netns pids "$ns"); do kill -9 "$pid"; done
            ip netns delete "$ns"
            ;;
    esac
done
"#;

/// A running watchdog; [`Watchdog::dismiss`] ends it once the cluster is cleaned up.
/// Holds the write end of the watchdog's stdin in `child.stdin`.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Starts the watchdog for the cluster in `dir` with data directory `data_dir`.
    pub(crate) fn spawn(dir: &Path, data_dir: &Path, pg_ctl: &Path, run_as: RunAs) -> Result<Watchdog, TestkitError> {
        let as_postgres = if run_as.is_root() { "1" } else { "0" };
        let args = [dir.as_os_str(), pg_ctl.as_os_str(), data_dir.as_os_str(), OsStr::new(as_postgres)];
        Watchdog::spawn_script(SCRIPT, &args, dir, "the cluster watchdog")
    }

    /// Starts the watchdog for the test network whose namespaces are named `<prefix>-…`.
    pub(crate) fn spawn_for_network(prefix: &str) -> Result<Watchdog, TestkitError> {
        Watchdog::spawn_script(NETWORK_SCRIPT, &[OsStr::new(prefix)], Path::new("/"), "the network watchdog")
    }

    /// Runs `script` with `args` in `cwd`, in a session of its own, reading our pipe.
    fn spawn_script(script: &str, args: &[&OsStr], cwd: &Path, what: &str) -> Result<Watchdog, TestkitError> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("dugong-testkit-watchdog")
            .args(args)
            .current_dir(cwd)
            // Our end of the pipe is close-on-exec, so no other child inherits it.
            .stdin(Stdio::piped())
            // Holding the test's stdout open would make `cargo test | tee` wait for us.
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: setsid is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|err| TestkitError::io(format!("starting {what} (sh)"), err))?;
        Ok(Watchdog { child })
    }

    /// Ends the watchdog, once what it guards is cleaned up, and reaps it.
    pub(crate) fn dismiss(mut self) {
        // Closing the pipe wakes it; with the directory gone it exits at once.
        drop(self.child.stdin.take());
        if let Err(err) = self.child.wait() {
            eprintln!("dugong-testkit: waiting for a watchdog: {err}");
        }
    }
}

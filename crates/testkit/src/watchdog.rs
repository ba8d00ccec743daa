//! A detached process that cleans up after a cluster whose test process is gone.
//!
//! The shared cluster lives in a `static` and is never dropped, and a test binary may panic
//! or be killed: in all those cases nothing in the test process gets to stop the server. So
//! each cluster gets a small `sh` script, in its own session (a Ctrl-C on the test's terminal
//! must not take it down with the tests), that waits for the test process to go and then
//! stops the server and removes its directory.
//!
//! It learns that the test process is gone from its stdin: a pipe whose only writer is the
//! test process, so the kernel closes it when that process ends, however it ends. Unlike
//! polling `kill -0 PID`, this reacts at once and cannot be fooled by a reused pid. `Drop`
//! cleans up itself and then closes the pipe; the script finds the directory gone and exits
//! quietly.

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

/// A running watchdog; [`Watchdog::dismiss`] ends it once the cluster is cleaned up.
/// Holds the write end of the watchdog's stdin in `child.stdin`.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Starts the watchdog for the cluster in `dir` with data directory `data_dir`.
    pub(crate) fn spawn(dir: &Path, data_dir: &Path, pg_ctl: &Path, run_as: RunAs) -> Result<Watchdog, TestkitError> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg("dugong-testkit-watchdog")
            .arg(dir)
            .arg(pg_ctl)
            .arg(data_dir)
            .arg(if run_as.is_root() { "1" } else { "0" })
            .current_dir(dir)
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
        let child = cmd.spawn().map_err(|err| TestkitError::io("starting the cluster watchdog (sh)", err))?;
        Ok(Watchdog { child })
    }

    /// Ends the watchdog, once the cluster it guards is stopped and removed, and reaps it.
    pub(crate) fn dismiss(mut self) {
        // Closing the pipe wakes it; with the directory gone it exits at once.
        drop(self.child.stdin.take());
        if let Err(err) = self.child.wait() {
            eprintln!("dugong-testkit: waiting for the cluster watchdog: {err}");
        }
    }
}

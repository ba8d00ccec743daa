//! Running the server programs, and watching server processes come and go.
//!
//! PostgreSQL refuses to run as root, and tests here run as root, so [`RunAs`] wraps every
//! server command in `runuser -u postgres --` when needed. Process liveness is read from
//! `/proc`, treating zombies as dead: a SIGKILLed postmaster is reparented to PID 1, and the
//! init of a container may never reap it.

use std::ffi::{CString, OsStr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::TestkitError;

/// The OS user the server programs run as when the tests run as root.
const SERVER_USER: &str = "postgres";

/// How often blocking waits look again.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Who runs the server programs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RunAs {
    /// We are not root: run them directly, as ourselves.
    CurrentUser,
    /// We are root: run them as `postgres`, through `runuser`.
    Postgres {
        /// The `postgres` user's id.
        uid: u32,
        /// Its primary group.
        gid: u32,
    },
}

impl RunAs {
    /// Runs as `postgres` if we are root, else as ourselves.
    pub(crate) fn detect() -> Result<RunAs, TestkitError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(RunAs::CurrentUser);
        }
        let (uid, gid) = lookup_user(SERVER_USER).ok_or(TestkitError::NoPostgresUser)?;
        Ok(RunAs::Postgres { uid, gid })
    }

    /// Whether commands go through `runuser`.
    pub(crate) fn is_root(&self) -> bool {
        matches!(self, RunAs::Postgres { .. })
    }

    /// A command running `program` as the server user, in `cwd` (which the server user can
    /// enter: the test's own working directory may not be), with no standard input.
    pub(crate) fn command(&self, program: &Path, cwd: &Path) -> Command {
        self.command_in(None, program, cwd)
    }

    /// Like [`RunAs::command`], inside network namespace `netns` when given (`ip netns exec`,
    /// which needs root: namespaces are only made by root).
    pub(crate) fn command_in(&self, netns: Option<&str>, program: &Path, cwd: &Path) -> Command {
        let mut words: Vec<&OsStr> = Vec::new();
        if let Some(netns) = netns {
            words.push(ip_program().as_os_str());
            words.extend(["netns", "exec", netns].map(OsStr::new));
        }
        if self.is_root() {
            words.extend(["runuser", "-u", SERVER_USER, "--"].map(OsStr::new));
        }
        words.push(program.as_os_str());
        let mut cmd = Command::new(words[0]);
        cmd.args(&words[1..]).current_dir(cwd).stdin(Stdio::null());
        cmd
    }

    /// Gives `path` to the server user, so it can write there.
    pub(crate) fn chown(&self, path: &Path) -> Result<(), TestkitError> {
        match *self {
            RunAs::CurrentUser => Ok(()),
            RunAs::Postgres { uid, gid } => std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|err| TestkitError::io(format!("giving {} to {SERVER_USER}", path.display()), err)),
        }
    }
}

/// Looks up a user's uid and primary gid in the password database.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    // SAFETY: passwd is plain old data; all-zero is a valid (empty) value.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call, and buf's length is given;
    // getpwnam_r (unlike getpwnam) uses only the buffers we pass, so it is thread-safe.
    let rc = unsafe { libc::getpwnam_r(name.as_ptr(), &mut entry, buf.as_mut_ptr(), buf.len(), &mut result) };
    (rc == 0 && !result.is_null()).then_some((entry.pw_uid, entry.pw_gid))
}

/// Runs `cmd` to completion; its output (stdout then stderr) on success, else an error naming
/// `what` and carrying that output.
pub(crate) fn run(mut cmd: Command, what: &str) -> Result<String, TestkitError> {
    let out = cmd.output().map_err(|err| TestkitError::io(format!("could not run {what}: {cmd:?}"), err))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(TestkitError::Command { what: format!("{what} ({cmd:?})"), status: out.status, output: text })
    }
}

/// Whether a process exists and has not exited (a zombie counts as exited).
pub(crate) fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the command name, which is in parentheses and may itself
        // contain spaces or parentheses: look after the last ')'.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Sends SIGKILL to `pid`; a process already gone is not an error.
pub(crate) fn kill9(pid: i32) -> Result<(), TestkitError> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(TestkitError::io(format!("sending SIGKILL to {pid}"), err))
    }
}

/// The live processes whose working directory is `dir`. Every process of a PostgreSQL server
/// (postmaster, backends, background workers) works in its data directory, which makes this
/// the list of the server's processes, including backends orphaned by a killed postmaster.
pub(crate) fn processes_working_in(dir: &Path) -> Vec<i32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd: PathBuf| cwd == dir))
        .filter(|pid| is_alive(*pid))
        .collect()
}

/// Blocks until `done()` is true, looking every 10 ms; a timeout error naming `what` after
/// `timeout`.
pub(crate) fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Result<(), TestkitError> {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(TestkitError::Timeout { what: what.to_owned(), after: timeout });
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// iproute2's `ip`: from `PATH`, or where Debian puts it (`/usr/sbin` is not on every
/// user's `PATH`).
pub(crate) fn ip_program() -> &'static Path {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|dir| dir.join("ip"))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| PathBuf::from("ip"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn we_are_alive_and_a_reaped_child_is_not() {
        assert!(is_alive(std::process::id() as i32));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!is_alive(pid));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: once it exits it stays a zombie until wait().
        wait_until("child to exit", Duration::from_secs(10), || !is_alive(pid)).unwrap();
        assert!(std::fs::metadata(format!("/proc/{pid}")).is_ok());
        child.wait().unwrap();
    }

    #[test]
    fn finds_processes_by_working_directory() {
        let dir = std::env::temp_dir();
        let mut child = Command::new("sleep").arg("30").current_dir(&dir).spawn().unwrap();
        let pid = child.id() as i32;
        assert!(processes_working_in(&dir).contains(&pid));
        kill9(pid).unwrap();
        child.wait().unwrap();
        assert!(!processes_working_in(&dir).contains(&pid));
    }
}

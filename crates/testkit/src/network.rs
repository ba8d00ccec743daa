//! Private test networks of Linux network namespaces, whose links tests cut and heal.
//!
//! A [`TestNetwork`] is a hub namespace holding a bridge, and any number of member
//! [`Namespace`]s, each joined to the bridge by a veth pair: `eth0` inside the member, with an
//! address from 198.18.0.0/15 (reserved for benchmarking, so never a real network's), and
//! `l<n>` on the bridge. A member stands for a data center: start PostgreSQL in it
//! ([`Cluster::start_in`](crate::Cluster::start_in)) and programs ([`Namespace::command`]).
//! [`Namespace::cut`] takes its end on the bridge down, as if the data center's uplink were
//! cut: packets in both directions vanish — no reset, no error, only timeouts — as they do
//! when a site goes dark; [`Namespace::heal`] brings it back. `tc`/netem is not needed.
//!
//! Traffic stays among the namespaces a test made: the root namespace has no link to them.
//! The test process itself reaches PostgreSQL servers in namespaces over their Unix sockets
//! (which no cut touches: the test plays the applications that run beside each database), and
//! anything else over TCP from a thread that entered the namespace ([`Namespace::connect`],
//! [`Namespace::http_get`]).
//!
//! Names are `dg<pid>n<k>-<label>`, unique per test process. Everything is deleted when the
//! last handle (network, namespace, or a cluster started in one) is dropped, the processes
//! left in its namespaces killed first; and by a watchdog if the test process dies.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::TestkitError;
use crate::process;
use crate::watchdog::Watchdog;

/// Where `ip netns` keeps the namespaces' names (bind mounts of their handles).
const NETNS_DIR: &str = "/var/run/netns";

/// The addresses every test network's members get theirs from (reserved for benchmarking).
pub(crate) const TEST_NETWORK: &str = "198.18.0.0/15";

/// Members get `198.18.0.<n>/24`, n from 1: room for this many in one network.
const MAX_MEMBERS: usize = 250;

/// The first three octets of every member's address.
const SUBNET: [u8; 3] = [198, 18, 0];

/// How long the processes left in a namespace get to die once killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Numbers the networks of this process.
static NEXT_NETWORK: AtomicU64 = AtomicU64::new(0);

/// A private network: a hub with a bridge, and the member namespaces joined to it.
///
/// Needs root and iproute2's `ip`. Dropping the last handle to it (this, a [`Namespace`], or
/// a cluster started in one) kills the processes left in its namespaces and deletes them.
#[derive(Debug, Clone)]
pub struct TestNetwork {
    shared: Arc<Shared>,
}

/// One member of a [`TestNetwork`]: a network namespace with one link to the hub.
#[derive(Debug, Clone)]
pub struct Namespace {
    name: String,
    address: Ipv4Addr,
    /// Its veth end on the hub's bridge, the one `cut` takes down.
    link: String,
    shared: Arc<Shared>,
}

/// What every handle of one network shares; its drop deletes the network.
#[derive(Debug)]
struct Shared {
    prefix: String,
    hub: String,
    /// Every namespace made, the hub first.
    made: Mutex<Vec<String>>,
    watchdog: Mutex<Option<Watchdog>>,
}

impl TestNetwork {
    /// Creates the hub namespace and its bridge. Fails, saying what to install or how to run,
    /// when namespaces cannot be made here (not root, no `ip`).
    pub fn new() -> Result<TestNetwork, TestkitError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(TestkitError::Network {
                what: "creating a network namespace".into(),
                output: "not running as root: network namespaces and links need root".into(),
            });
        }
        let existing = namespaces()?;
        // A name left by an earlier process with our pid is not ours: take the next number.
        let prefix = loop {
            let prefix = format!("dg{}n{}", std::process::id(), NEXT_NETWORK.fetch_add(1, Ordering::Relaxed));
            if !existing.iter().any(|name| name.starts_with(&format!("{prefix}-"))) {
                break prefix;
            }
        };
        let watchdog = Watchdog::spawn_for_network(&prefix)?;
        let shared = Arc::new(Shared {
            hub: format!("{prefix}-hub"),
            prefix,
            made: Mutex::new(Vec::new()),
            watchdog: Mutex::new(Some(watchdog)),
        });
        // From here an early return drops `shared`, which deletes what was made.
        let hub = shared.hub.clone();
        shared.add_namespace(&hub)?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        Ok(TestNetwork { shared })
    }

    /// Adds a member namespace named after `label` (lowercase letters and digits kept), with
    /// loopback up and `eth0` on the hub's bridge at the next address `198.18.0.<n>/24`.
    pub fn add(&self, label: &str) -> Result<Namespace, TestkitError> {
        let label: String = label.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_lowercase();
        let name = format!("{}-{label}", self.shared.prefix);
        let n = {
            let made = self.shared.made();
            if made.contains(&name) || label.is_empty() || label == "hub" {
                return Err(TestkitError::Network {
                    what: format!("adding namespace {name:?}"),
                    output: "each member needs a label of its own (letters and digits, not \"hub\")".into(),
                });
            }
            if made.len() > MAX_MEMBERS {
                return Err(TestkitError::Network {
                    what: format!("adding namespace {name}"),
                    output: format!("a test network has room for {MAX_MEMBERS} members"),
                });
            }
            // The hub is the first made, so members count from 1.
            made.len()
        };
        self.shared.add_namespace(&name)?;
        let hub = &self.shared.hub;
        let link = format!("l{n}");
        let address = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], n as u8);
        // Made inside the member, so no name is ever taken in the root namespace.
        ip(&["-n", &name, "link", "add", "eth0", "type", "veth", "peer", "name", &link, "netns", hub])?;
        ip(&["-n", hub, "link", "set", &link, "master", "br0"])?;
        ip(&["-n", hub, "link", "set", &link, "up"])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        ip(&["-n", &name, "address", "add", &format!("{address}/24"), "dev", "eth0"])?;
        ip(&["-n", &name, "link", "set", "eth0", "up"])?;
        Ok(Namespace { name, address, link, shared: self.shared.clone() })
    }

    /// The names of the network's namespaces, the hub first.
    pub fn namespaces(&self) -> Vec<String> {
        self.shared.made().clone()
    }
}

impl Namespace {
    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its address on the test network, `198.18.0.<n>`.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// A command running `program` inside the namespace (`ip netns exec NAME program`): add
    /// arguments and environment as usual. `ip` execs the program, so the child's pid is the
    /// program's own, for `kill -9`.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new(process::ip_program());
        cmd.args(["netns", "exec", &self.name]).arg(program.as_ref());
        cmd
    }

    /// Cuts the namespace off the network: its link to the hub goes down, and every packet
    /// to or from it is dropped until [`Namespace::heal`]. Its own loopback, Unix sockets and
    /// processes go on as before.
    pub fn cut(&self) -> Result<(), TestkitError> {
        ip(&["-n", &self.shared.hub, "link", "set", &self.link, "down"]).map(drop)
    }

    /// Brings the link back after [`Namespace::cut`].
    pub fn heal(&self) -> Result<(), TestkitError> {
        ip(&["-n", &self.shared.hub, "link", "set", &self.link, "up"]).map(drop)
    }

    /// Runs `f` on a thread of its own that entered the namespace, so every socket `f` opens
    /// is the namespace's (sockets keep their namespace when used from other threads later).
    pub fn run_inside<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        let handle = Path::new(NETNS_DIR).join(&self.name);
        std::thread::scope(|scope| {
            let inside = scope.spawn(|| {
                let file = File::open(&handle)?;
                // SAFETY: a valid descriptor of a network namespace; setns changes only the
                // calling thread, which ends after `f`.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                f()
            });
            inside.join().unwrap_or_else(|_| Err(io::Error::other(format!("a thread inside {} panicked", self.name))))
        })
    }

    /// A TCP connection to `addr` made from inside the namespace, within `timeout`.
    pub fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        self.run_inside(|| TcpStream::connect_timeout(&addr, timeout))
    }

    /// `GET path` over HTTP/1.0 from inside the namespace: the body of a `200` answer, else an
    /// error naming the address and the status line. Blocking, bounded by `timeout` per step.
    pub fn http_get(&self, addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<String> {
        let mut stream = self.connect(addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| io::Error::other(format!("http://{addr}{path}: not an HTTP answer")))?;
        let status = head.lines().next().unwrap_or_default();
        if status.split_whitespace().nth(1) != Some("200") {
            return Err(io::Error::other(format!("http://{addr}{path} answered {status:?}")));
        }
        Ok(body.to_owned())
    }
}

impl Shared {
    fn made(&self) -> MutexGuard<'_, Vec<String>> {
        self.made.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `ip netns add NAME`, remembered for deletion.
    fn add_namespace(&self, name: &str) -> Result<(), TestkitError> {
        ip(&["netns", "add", name])?;
        self.made().push(name.to_owned());
        Ok(())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Best effort throughout: a drop must not panic, and the watchdog is the backstop.
        let made = std::mem::take(&mut *self.made());
        // Members before the hub: deleting a member takes its veth pair with it.
        for name in made.iter().rev() {
            if let Err(err) = end_processes_in(name) {
                eprintln!("dugong-testkit: {err}");
            }
            if let Err(err) = ip(&["netns", "delete", name]) {
                eprintln!("dugong-testkit: {err}");
            }
        }
        if let Some(watchdog) = self.watchdog.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            watchdog.dismiss();
        }
    }
}

/// Kills what still runs in namespace `name` — only this test started processes there — and
/// waits until it is gone.
fn end_processes_in(name: &str) -> Result<(), TestkitError> {
    let pids: Vec<i32> =
        ip(&["netns", "pids", name]).map(|out| out.split_whitespace().filter_map(|p| p.parse().ok()).collect())?;
    for pid in &pids {
        process::kill9(*pid)?;
    }
    process::wait_until(&format!("the processes left in namespace {name} to exit"), EXIT_TIMEOUT, || {
        pids.iter().all(|pid| !process::is_alive(*pid))
    })
}

/// The names of every network namespace on the machine.
fn namespaces() -> Result<Vec<String>, TestkitError> {
    let out = ip(&["netns", "list"])?;
    Ok(out.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect())
}

/// Runs `ip ARGS`; its output, or an error saying what failed and why.
fn ip(args: &[&str]) -> Result<String, TestkitError> {
    let what = format!("ip {}", args.join(" "));
    let out = Command::new(process::ip_program()).args(args).output().map_err(|err| TestkitError::Network {
        what: what.clone(),
        output: format!("{err} (is iproute2 installed? `apt-get install -y iproute2`)"),
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let mut output = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if output.is_empty() {
        output = out.status.to_string();
    }
    Err(TestkitError::Network { what, output })
}

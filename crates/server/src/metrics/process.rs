//! Metrics of the `dugong` process itself, whatever it runs (`serve` or
//! `replicate`): what it is (`dugong_build_info`) and what it uses — memory,
//! CPU, file descriptors, threads — under the names every Prometheus client
//! library exports, so dashboards and alerts written for any service work.
//!
//! The resource figures are read from `/proc` when `/metrics` is scraped
//! ([`render`]), not sampled in the background: a scrape always sees the
//! present, and an idle process does no work for them. Where `/proc` cannot
//! be read (not Linux, or hidden by a sandbox) the figure is left out rather
//! than shown as 0.

use std::fmt::Write;
use std::path::Path;

/// `1`, labelled with the `version` and the git `commit` the binary was built from.
pub const BUILD_INFO: &str = "dugong_build_info";
/// Resident set size.
pub const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
/// Virtual memory size.
pub const VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
/// User and system CPU time spent.
pub const CPU_SECONDS: &str = "process_cpu_seconds_total";
/// File descriptors open now.
pub const OPEN_FDS: &str = "process_open_fds";
/// The soft limit on open file descriptors.
pub const MAX_FDS: &str = "process_max_fds";
/// When the process started, in seconds since the Unix epoch.
pub const START_TIME: &str = "process_start_time_seconds";
/// Threads of the process.
pub const THREADS: &str = "process_threads";

/// Sets [`BUILD_INFO`] in the installed recorder. Call it after the recorder
/// is installed (for `serve`, after [`super::handle`]).
pub fn record_build_info(version: &str, commit: &str) {
    metrics::describe_gauge!(BUILD_INFO, "1, labelled with the version and git commit of the running binary");
    metrics::gauge!(BUILD_INFO, "version" => version.to_string(), "commit" => commit.to_string()).set(1.0);
}

/// The process metrics as Prometheus text, to append to a `/metrics` page.
pub fn render() -> String {
    let mut out = String::new();
    let Some(sample) = Sample::read(Path::new("/proc")) else {
        return out;
    };
    let mut metric = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
        }
    };
    metric(RESIDENT_MEMORY, "gauge", "Resident memory size in bytes.", Some(sample.resident_bytes));
    metric(VIRTUAL_MEMORY, "gauge", "Virtual memory size in bytes.", Some(sample.virtual_bytes));
    metric(CPU_SECONDS, "counter", "Total user and system CPU time spent in seconds.", Some(sample.cpu_seconds));
    metric(OPEN_FDS, "gauge", "Number of open file descriptors.", sample.open_fds);
    metric(MAX_FDS, "gauge", "Maximum number of open file descriptors.", sample.max_fds);
    metric(START_TIME, "gauge", "Start time of the process since unix epoch in seconds.", sample.start_time);
    metric(THREADS, "gauge", "Number of OS threads in the process.", Some(sample.threads));
    out
}

/// One reading of the process's resources.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    resident_bytes: f64,
    virtual_bytes: f64,
    cpu_seconds: f64,
    threads: f64,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
    start_time: Option<f64>,
}

impl Sample {
    /// Reads this process's figures under `proc` (normally `/proc`).
    fn read(proc: &Path) -> Option<Sample> {
        let stat = Stat::parse(&std::fs::read_to_string(proc.join("self/stat")).ok()?)?;
        let clock = Clock::of_system()?;
        // The boot time (`/proc/stat`) may be hidden by a sandbox; the rest
        // stands without it.
        let boot = std::fs::read_to_string(proc.join("stat")).ok().and_then(|s| boot_time(&s));
        let open_fds = std::fs::read_dir(proc.join("self/fd")).ok().map(|d| d.count() as f64);
        let max_fds = std::fs::read_to_string(proc.join("self/limits")).ok().and_then(|s| max_open_files(&s));
        Some(Sample {
            resident_bytes: (stat.rss_pages * clock.page_size) as f64,
            virtual_bytes: stat.vsize_bytes as f64,
            cpu_seconds: (stat.utime_ticks + stat.stime_ticks) as f64 / clock.ticks_per_second as f64,
            threads: stat.threads as f64,
            open_fds,
            max_fds,
            start_time: boot.map(|b| b as f64 + stat.start_ticks as f64 / clock.ticks_per_second as f64),
        })
    }
}

/// The fields of `/proc/self/stat` that the metrics need (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    utime_ticks: u64,
    stime_ticks: u64,
    threads: u64,
    start_ticks: u64,
    vsize_bytes: u64,
    rss_pages: u64,
}

impl Stat {
    /// Parses the one line of `/proc/<pid>/stat`. The command name (field 2)
    /// is in parentheses and may itself hold spaces and parentheses, so the
    /// fields are counted from after the last `)`.
    fn parse(text: &str) -> Option<Stat> {
        let rest = &text[text.rfind(')')? + 1..];
        // Field 3 (state) is the first after the name.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        Some(Stat {
            utime_ticks: field(14)?,
            stime_ticks: field(15)?,
            threads: field(20)?,
            start_ticks: field(22)?,
            vsize_bytes: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

/// The system's clock tick rate and page size, which `/proc` counts in.
struct Clock {
    ticks_per_second: u64,
    page_size: u64,
}

impl Clock {
    fn of_system() -> Option<Clock> {
        // SAFETY: sysconf only reads a system constant.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        (ticks > 0 && page > 0).then_some(Clock { ticks_per_second: ticks as u64, page_size: page as u64 })
    }
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// The soft limit of "Max open files" from `/proc/self/limits`; `None` when unlimited.
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse::<u64>().ok().map(|v| v as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // A command name with a space and a parenthesis, as a thread may be named.
        let line = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 75 0 0 20 0 9 0 \
                    123456 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 4096 17926 0 0 0 17 1 0 0 0 0 0";
        let stat = Stat::parse(line).unwrap();
        assert_eq!(
            stat,
            Stat {
                utime_ticks: 250,
                stime_ticks: 75,
                threads: 9,
                start_ticks: 123456,
                vsize_bytes: 987654321,
                rss_pages: 2048
            }
        );
        assert_eq!(Stat::parse("4242 (cut short) S 1 2"), None);
        assert_eq!(Stat::parse("no name at all"), None);
    }

    #[test]
    fn boot_time_and_the_open_files_limit() {
        assert_eq!(boot_time("cpu  1 2 3\nintr 5\nbtime 1764000000\nprocesses 9\n"), Some(1_764_000_000));
        assert_eq!(boot_time("cpu  1 2 3\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            10080                524288               files     \n";
        assert_eq!(max_open_files(limits), Some(10080.0));
        assert_eq!(max_open_files(&limits.replace("10080 ", "unlimited")), None);
    }

    #[test]
    fn this_process_reads_as_alive_and_using_resources() {
        let text = render();
        let value = |name: &str| -> f64 {
            let line =
                text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}: {text}"));
            line[name.len() + 1..].parse().unwrap()
        };
        assert!(value(RESIDENT_MEMORY) > 1_000_000.0, "{text}");
        assert!(value(VIRTUAL_MEMORY) >= value(RESIDENT_MEMORY), "{text}");
        assert!(value(OPEN_FDS) >= 3.0, "stdin, stdout and stderr at least: {text}");
        assert!(value(MAX_FDS) >= value(OPEN_FDS), "{text}");
        assert!(value(THREADS) >= 1.0, "{text}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let started = value(START_TIME);
        assert!(started <= now + 1.0 && started > now - 86_400.0, "a test started within the day: {started} vs {now}");
        value(CPU_SECONDS);
        assert!(text.contains(&format!("# TYPE {CPU_SECONDS} counter")), "{text}");
    }
}

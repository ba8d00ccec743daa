//! The campaign's records: one per run (what was written, which faults, how long convergence
//! took, what the checks found), the totals, the table printed at the end and the JSON.

use super::check::{Expected, Verdict};
use super::faults::{FaultKind, Injected};
use super::writer::{Outcome, Written};
use crate::stats::{median, percentile};
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// One run.
#[derive(Debug, Serialize)]
pub struct RunRecord {
    pub run: usize,
    pub seed: u64,
    pub sites: usize,
    pub window_seconds: f64,
    /// Transactions that committed (settled ones included), over all sites.
    pub committed_txns: usize,
    /// Transactions whose COMMIT got no answer, settled afterwards: (committed, aborted).
    pub settled_committed: usize,
    pub settled_aborted: usize,
    /// Of the settled aborted: ids the crash lost and the recovered server gave to another
    /// transaction (`txid_status` said committed; the commit came after the failure).
    pub settled_id_reused: usize,
    /// Rows inserted by committed transactions.
    pub rows_inserted: usize,
    /// Rows deleted by committed transactions (hot keys not included).
    pub rows_deleted: usize,
    /// Committed writes to hot keys (upserts and deletes).
    pub hot_writes: usize,
    /// Rows every site must hold at the end.
    pub rows_expected: usize,
    pub faults: BTreeMap<FaultKind, u32>,
    pub fault_events: Vec<String>,
    /// From the last fault's repair until every site held the expected rows, identical;
    /// `None` when that did not happen before the deadline.
    pub convergence_seconds: Option<f64>,
    pub verdict: Verdict,
    /// The replicator's log of the run (kept when the run failed).
    pub replicator_log: String,
}

impl RunRecord {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run: usize,
        seed: u64,
        sites: usize,
        window: Duration,
        written: &[Written],
        expected: &Expected,
        injected: Injected,
        convergence: Option<Duration>,
        verdict: Verdict,
        replicator_log: &Path,
    ) -> RunRecord {
        let committed = || written.iter().flat_map(|w| &w.txns).filter(|t| t.outcome == Outcome::Committed);
        let settled =
            |outcome| written.iter().flat_map(|w| &w.txns).filter(|t| t.settled && t.outcome == outcome).count();
        RunRecord {
            run,
            seed,
            sites,
            window_seconds: window.as_secs_f64(),
            committed_txns: committed().count(),
            settled_committed: settled(Outcome::Committed),
            settled_aborted: settled(Outcome::Aborted),
            settled_id_reused: written.iter().flat_map(|w| &w.txns).filter(|t| t.id_reused).count(),
            rows_inserted: committed().count(),
            rows_deleted: committed().filter(|t| t.delete.is_some()).count(),
            hot_writes: committed().filter(|t| t.hot.is_some()).count(),
            rows_expected: expected.rows.len(),
            faults: injected.counts,
            fault_events: injected.events,
            convergence_seconds: convergence.map(|d| d.as_secs_f64()),
            verdict,
            replicator_log: replicator_log.display().to_string(),
        }
    }

    pub fn passed(&self) -> bool {
        self.convergence_seconds.is_some() && self.verdict.passed()
    }

    /// The run's line in the progress output.
    pub fn line(&self) -> String {
        let faults: Vec<String> = self.faults.iter().map(|(k, n)| format!("{n} {}", k.label())).collect();
        let converged = match self.convergence_seconds {
            Some(s) => format!("converged {s:.2}s after the last fault"),
            None => "NOT CONVERGED".into(),
        };
        let v = &self.verdict;
        let mut line = format!(
            "[campaign] run {:2} seed {} ({} sites, {:.0}s): {} txns, {} rows; {}; {converged}; lost {} phantom {} resurrected {} hot-not-latest {} identical {} compare {} — {}",
            self.run,
            self.seed,
            self.sites,
            self.window_seconds,
            self.committed_txns,
            self.rows_expected,
            faults.join(", "),
            v.lost,
            v.phantom,
            v.resurrected,
            v.hot_not_latest,
            v.identical,
            v.compare_identical,
            if self.passed() { "ok" } else { "FAILED" }
        );
        for exit in &v.replicator_exits {
            let _ = write!(line, "\n    the replicator exited by itself: {exit}");
        }
        for example in &v.examples {
            let _ = write!(line, "\n    {example}");
        }
        if !self.passed() {
            let _ = write!(line, "\n    replicator log: {}", self.replicator_log);
        }
        line
    }
}

/// The whole campaign.
#[derive(Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    /// The delay each way between the replicator and every site (0: none).
    pub one_way_delay_ms: u64,
    pub dugong: String,
    pub runs: Vec<RunRecord>,
    pub totals: Totals,
}

/// Sums over the runs, and the convergence figures.
#[derive(Debug, Serialize)]
pub struct Totals {
    pub runs: usize,
    pub runs_with_three_sites: usize,
    pub failed: usize,
    pub faults: BTreeMap<FaultKind, u32>,
    pub committed_txns: usize,
    pub settled_committed: usize,
    pub settled_aborted: usize,
    pub settled_id_reused: usize,
    pub rows_inserted: usize,
    pub rows_deleted: usize,
    pub hot_writes: usize,
    pub lost: usize,
    pub phantom: usize,
    pub resurrected: usize,
    pub hot_not_latest: usize,
    pub not_identical: usize,
    pub not_converged: usize,
    /// Times the replicator exited by itself (each fails its run).
    pub replicator_exits: usize,
    pub convergence_median_seconds: f64,
    pub convergence_p95_seconds: f64,
    pub convergence_max_seconds: f64,
}

impl Report {
    pub fn new(seed: u64, delay: Duration, dugong: &Path, runs: Vec<RunRecord>) -> Report {
        let mut faults = BTreeMap::new();
        for r in &runs {
            for (kind, n) in &r.faults {
                *faults.entry(*kind).or_default() += n;
            }
        }
        let sum = |f: fn(&RunRecord) -> usize| runs.iter().map(f).sum::<usize>();
        let mut times: Vec<f64> = runs.iter().filter_map(|r| r.convergence_seconds).collect();
        times.sort_by(f64::total_cmp);
        let totals = Totals {
            runs: runs.len(),
            runs_with_three_sites: runs.iter().filter(|r| r.sites == 3).count(),
            failed: runs.iter().filter(|r| !r.passed()).count(),
            faults,
            committed_txns: sum(|r| r.committed_txns),
            settled_committed: sum(|r| r.settled_committed),
            settled_aborted: sum(|r| r.settled_aborted),
            settled_id_reused: sum(|r| r.settled_id_reused),
            rows_inserted: sum(|r| r.rows_inserted),
            rows_deleted: sum(|r| r.rows_deleted),
            hot_writes: sum(|r| r.hot_writes),
            lost: sum(|r| r.verdict.lost),
            phantom: sum(|r| r.verdict.phantom),
            resurrected: sum(|r| r.verdict.resurrected),
            hot_not_latest: sum(|r| r.verdict.hot_not_latest),
            not_identical: runs.iter().filter(|r| !r.verdict.identical || !r.verdict.compare_identical).count(),
            not_converged: runs.iter().filter(|r| r.convergence_seconds.is_none()).count(),
            replicator_exits: sum(|r| r.verdict.replicator_exits.len()),
            convergence_median_seconds: median(&times),
            convergence_p95_seconds: percentile(&times, 95.0),
            convergence_max_seconds: times.last().copied().unwrap_or(f64::NAN),
        };
        let one_way_delay_ms = delay.as_millis().try_into().unwrap_or(u64::MAX);
        Report { seed, one_way_delay_ms, dugong: dugong.display().to_string(), runs, totals }
    }

    pub fn failed(&self) -> usize {
        self.totals.failed
    }

    /// The summary printed at the end.
    pub fn render(&self) -> String {
        let t = &self.totals;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nPartition campaign, seed {} ({} runs, {} with three sites), one-way delay {} ms between the replicator and every site",
            self.seed, t.runs, t.runs_with_three_sites, self.one_way_delay_ms
        );
        let _ = writeln!(out, "faults injected:");
        for kind in FaultKind::ALL {
            let _ = writeln!(out, "  {:<24} {}", kind.label(), t.faults.get(&kind).copied().unwrap_or(0));
        }
        let _ = writeln!(
            out,
            "written: {} committed transactions ({} of them settled after a crash took the answer to COMMIT; {} such turned out aborted, {} of those by an id the server gave again after recovery), {} rows inserted, {} deleted, {} hot-key writes",
            t.committed_txns, t.settled_committed, t.settled_aborted, t.settled_id_reused, t.rows_inserted, t.rows_deleted, t.hot_writes
        );
        let _ = writeln!(
            out,
            "checks: lost {}, phantom {}, resurrected {}, hot key not the latest write {}, runs not identical {}, runs not converged {}, replicator exits {}",
            t.lost, t.phantom, t.resurrected, t.hot_not_latest, t.not_identical, t.not_converged, t.replicator_exits
        );
        let _ = writeln!(
            out,
            "convergence after the last fault: median {:.2} s, p95 {:.2} s, max {:.2} s",
            t.convergence_median_seconds, t.convergence_p95_seconds, t.convergence_max_seconds
        );
        let _ = writeln!(out, "runs failed: {}", t.failed);
        for r in self.runs.iter().filter(|r| !r.passed()) {
            let _ = writeln!(out, "  run {} (--seed {} --runs 1)", r.run, r.seed);
        }
        out
    }

    /// Writes the JSON, then hands the runs back to `runs` for the next report.
    pub fn write_keeping(self, path: &Path, runs: &mut Vec<RunRecord>) -> anyhow::Result<()> {
        let written = self.write(path);
        *runs = self.runs;
        written
    }

    /// Writes the JSON, creating its directory.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self).context("rendering the campaign's JSON")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

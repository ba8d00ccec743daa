//! What a WAN run measured, per delay, metric and system; the table with one
//! row per delay (issue 17's layout), a detail table of every figure, issue
//! 17's targets and the JSON written to `bench/results/wan/`.

use crate::report::render::{cell, number, target_line, Machine, Versions};
use crate::stats::{summarize, Sample, Summary};
use crate::system::System;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// A figure of the WAN profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WanMetric {
    CatchUp,
    CatchUpRoundTrips,
    LagP50,
    LagP95,
    LagP99,
    LagMax,
    LagWriterRate,
    RoundTripsPerTx,
    LagRoundTripsPerS,
    FirstRowMs,
    FirstRowRoundTrips,
    IdleRoundTripsPerS,
    IdleCpu,
}

impl WanMetric {
    pub const ALL: [WanMetric; 13] = [
        WanMetric::CatchUp,
        WanMetric::CatchUpRoundTrips,
        WanMetric::LagP50,
        WanMetric::LagP95,
        WanMetric::LagP99,
        WanMetric::LagMax,
        WanMetric::LagWriterRate,
        WanMetric::RoundTripsPerTx,
        WanMetric::LagRoundTripsPerS,
        WanMetric::FirstRowMs,
        WanMetric::FirstRowRoundTrips,
        WanMetric::IdleRoundTripsPerS,
        WanMetric::IdleCpu,
    ];

    /// Stable name in the JSON.
    pub fn key(self) -> &'static str {
        match self {
            WanMetric::CatchUp => "catch_up_rows_per_s",
            WanMetric::CatchUpRoundTrips => "catch_up_round_trips_per_1000_rows",
            WanMetric::LagP50 => "lag_p50_ms",
            WanMetric::LagP95 => "lag_p95_ms",
            WanMetric::LagP99 => "lag_p99_ms",
            WanMetric::LagMax => "lag_max_ms",
            WanMetric::LagWriterRate => "lag_writer_tps",
            WanMetric::RoundTripsPerTx => "round_trips_per_tx",
            WanMetric::LagRoundTripsPerS => "round_trips_per_s_at_200_tx_per_s",
            WanMetric::FirstRowMs => "first_row_after_start_ms",
            WanMetric::FirstRowRoundTrips => "first_row_round_trips",
            WanMetric::IdleRoundTripsPerS => "idle_round_trips_per_s",
            WanMetric::IdleCpu => "idle_cpu_percent_of_core",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            WanMetric::CatchUp => "backlog catch-up (rows/s)",
            WanMetric::CatchUpRoundTrips => "  round trips per 1000 rows of catch-up",
            WanMetric::LagP50 => "lag p50 (ms)",
            WanMetric::LagP95 => "lag p95 (ms)",
            WanMetric::LagP99 => "lag p99 (ms)",
            WanMetric::LagMax => "lag max (ms)",
            WanMetric::LagWriterRate => "  lag writer's rate (tx/s)",
            WanMetric::RoundTripsPerTx => "round trips per transaction at 200 tx/s",
            WanMetric::LagRoundTripsPerS => "  round trips per second meanwhile",
            WanMetric::FirstRowMs => "first row after start (ms)",
            WanMetric::FirstRowRoundTrips => "  round trips until the first row",
            WanMetric::IdleRoundTripsPerS => "idle round trips per second",
            WanMetric::IdleCpu => "idle CPU (% of one core)",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(self, WanMetric::CatchUp | WanMetric::LagWriterRate)
    }
}

/// Every sample of a WAN run, by delay, and the errors met.
#[derive(Debug, Default)]
pub struct WanResults {
    samples: BTreeMap<(Duration, WanMetric, System), Vec<(usize, Sample)>>,
    pub errors: Vec<String>,
}

impl WanResults {
    pub fn add(&mut self, delay: Duration, metric: WanMetric, system: System, rep: usize, sample: Sample) {
        self.samples.entry((delay, metric, system)).or_default().push((rep, sample));
    }

    pub fn error(&mut self, what: String) {
        eprintln!("[wan] ERROR {what}");
        self.errors.push(what);
    }

    pub fn summary(&self, delay: Duration, metric: WanMetric, system: System) -> Option<Summary> {
        let samples: Vec<Sample> = self.samples.get(&(delay, metric, system))?.iter().map(|(_, s)| *s).collect();
        summarize(&samples)
    }

    fn median(&self, delay: Duration, metric: WanMetric, system: System) -> Option<f64> {
        self.summary(delay, metric, system).map(|s| s.median)
    }

    /// Dugong's median divided by native's at the same delay.
    pub fn ratio(&self, delay: Duration, metric: WanMetric) -> Option<f64> {
        let d = self.median(delay, metric, System::Dugong)?;
        let n = self.median(delay, metric, System::Native)?;
        (n != 0.0).then(|| d / n)
    }

    /// Issue 17's targets at the delays measured, judged on medians. The issue
    /// names RTT 0, 10 and 50 ms; first row ≤ 10 round trips applies at every
    /// delay above zero, the others only at the RTT the issue gives them.
    pub fn targets(&self, delays: &[Duration]) -> Vec<Target> {
        let mut targets = Vec::new();
        for &delay in delays {
            let ms = delay.as_millis() as u64;
            let rtt = 2 * ms;
            let dugong = |m| self.median(delay, m, System::Dugong);
            let native = |m| self.median(delay, m, System::Native);
            if ms == 0 {
                let bound = native(WanMetric::LagP99).map_or(3.0, |n| n.max(3.0));
                targets.push(Target::at_most(
                    ms,
                    format!("RTT 0: lag p99 ≤ max(3 ms, native p99) = {} ms", number(bound)),
                    dugong(WanMetric::LagP99),
                    bound,
                ));
                targets.push(Target::at_most(ms, "RTT 0: lag p50 ≤ 2 ms".into(), dugong(WanMetric::LagP50), 2.0));
            }
            if ms == 25 {
                targets.push(Target::at_least(
                    ms,
                    "RTT 50: catch-up ≥ 0.9 × native".into(),
                    self.ratio(delay, WanMetric::CatchUp),
                    0.9,
                ));
                targets.push(Target::at_most(ms, "RTT 50: lag p99 ≤ 60 ms".into(), dugong(WanMetric::LagP99), 60.0));
            }
            if ms > 0 {
                let bound = 10.0 * rtt as f64;
                targets.push(Target::at_most(
                    ms,
                    format!("RTT {rtt}: first row after start ≤ 10 round trips = {} ms", number(bound)),
                    dugong(WanMetric::FirstRowMs),
                    bound,
                ));
            }
            targets.push(Target::below(
                ms,
                format!("RTT {rtt}: idle CPU < 1% of a core"),
                dugong(WanMetric::IdleCpu),
                1.0,
            ));
        }
        targets
    }
}

/// One of issue 17's targets at one delay, and whether Dugong met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub delay_ms: u64,
    pub target: String,
    pub value: Option<f64>,
    pub threshold: f64,
    /// None when the figure was not measured.
    pub met: Option<bool>,
}

impl Target {
    fn at_least(delay_ms: u64, target: String, value: Option<f64>, threshold: f64) -> Target {
        Target { delay_ms, target, value, threshold, met: value.map(|v| v >= threshold) }
    }

    fn at_most(delay_ms: u64, target: String, value: Option<f64>, threshold: f64) -> Target {
        Target { delay_ms, target, value, threshold, met: value.map(|v| v <= threshold) }
    }

    fn below(delay_ms: u64, target: String, value: Option<f64>, threshold: f64) -> Target {
        Target { delay_ms, target, value, threshold, met: value.map(|v| v < threshold) }
    }
}

/// What the run was.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub command: String,
    pub quick: bool,
    pub reps: usize,
    pub delays_ms: Vec<u64>,
    pub systems: Vec<System>,
    pub started_at: String,
    pub duration_s: f64,
    pub machine: Machine,
    pub versions: Versions,
    pub sizes: Sizes,
    pub extra_pg_settings: Vec<String>,
    pub method: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    pub backlog_rows: u64,
    pub txn_rows: u64,
    pub writers: usize,
    pub lag_tx_per_s: u32,
    pub lag_seconds: u64,
    pub idle_seconds: u64,
    pub deadline_s: u64,
}

/// Issue 17's table: one row per delay, Dugong / native side by side (medians).
pub fn table(results: &WanResults, delays: &[Duration]) -> String {
    let header = [
        "one-way delay",
        "catch-up rows/s Dugong / native (ratio)",
        "lag p50 ms Dugong / native",
        "lag p99 ms Dugong / native",
        "first row after start ms Dugong / native",
        "round trips per tx Dugong / native",
        "idle round trips/s Dugong / native",
        "Dugong idle CPU",
    ];
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for &delay in delays {
        let ms = delay.as_millis();
        let pair = |metric| {
            let m = |s| results.median(delay, metric, s).map_or("–".to_string(), number);
            format!("{} / {}", m(System::Dugong), m(System::Native))
        };
        let catch_up = match results.ratio(delay, WanMetric::CatchUp) {
            Some(r) => format!("{} ({})", pair(WanMetric::CatchUp), number(r)),
            None => pair(WanMetric::CatchUp),
        };
        let cpu =
            results.median(delay, WanMetric::IdleCpu, System::Dugong).map_or("–".into(), |c| format!("{c:.2}%"));
        let rtt = if ms == 0 { "0 ms".to_string() } else { format!("{ms} ms (RTT {})", 2 * ms) };
        let cells = [
            rtt,
            catch_up,
            pair(WanMetric::LagP50),
            pair(WanMetric::LagP99),
            pair(WanMetric::FirstRowMs),
            pair(WanMetric::RoundTripsPerTx),
            pair(WanMetric::IdleRoundTripsPerS),
            cpu,
        ];
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// Every figure per delay: medians with [min–max] over the repetitions, and
/// Dugong's ratio to native.
pub fn details(results: &WanResults, delays: &[Duration], systems: &[System]) -> String {
    let mut header = vec!["delay".to_string(), "measurement".to_string()];
    header.extend(systems.iter().map(|s| s.label().to_string()));
    let both = systems.contains(&System::Dugong) && systems.contains(&System::Native);
    if both {
        header.push("Dugong ÷ native LR".into());
    }
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for &delay in delays {
        for metric in WanMetric::ALL {
            let summaries: Vec<Option<Summary>> = systems.iter().map(|s| results.summary(delay, metric, *s)).collect();
            if summaries.iter().all(Option::is_none) {
                continue;
            }
            let arrow = if metric.higher_is_better() { "↑" } else { "↓" };
            let mut cells = vec![format!("{} ms", delay.as_millis()), format!("{} {arrow}", metric.label())];
            cells.extend(summaries.iter().map(|s| s.as_ref().map_or("–".into(), cell)));
            if both {
                cells.push(results.ratio(delay, metric).map_or("–".into(), |r| format!("{}×", number(r))));
            }
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
    out
}

/// The targets, one per line.
pub fn render_targets(targets: &[Target]) -> String {
    let mut out = String::from("Targets of issue 17 (Dugong's medians):\n");
    for t in targets {
        out.push_str(&target_line(&t.target, t.value, t.met));
    }
    out
}

/// The JSON document: per delay, every figure with its summary per system and
/// Dugong's ratio to native.
pub fn json(results: &WanResults, meta: &Meta) -> serde_json::Value {
    let delays: Vec<Duration> = meta.delays_ms.iter().map(|ms| Duration::from_millis(*ms)).collect();
    let per_delay: Vec<serde_json::Value> = delays
        .iter()
        .map(|&delay| {
            let measurements: Vec<serde_json::Value> = WanMetric::ALL
                .iter()
                .filter_map(|metric| {
                    let mut values = serde_json::Map::new();
                    for system in [System::Dugong, System::Native] {
                        if let Some(s) = results.summary(delay, *metric, system) {
                            values.insert(system_key(system).into(), serde_json::to_value(s).ok()?);
                        }
                    }
                    if values.is_empty() {
                        return None;
                    }
                    Some(serde_json::json!({
                        "metric": metric.key(),
                        "label": metric.label().trim(),
                        "better": if metric.higher_is_better() { "higher" } else { "lower" },
                        "values": values,
                        "dugong_ratio_to_native": results.ratio(delay, *metric),
                    }))
                })
                .collect();
            let ms = delay.as_millis() as u64;
            serde_json::json!({ "one_way_delay_ms": ms, "rtt_ms": 2 * ms, "measurements": measurements })
        })
        .collect();
    serde_json::json!({
        "benchmark": "dugong-bench wan (issue 17)",
        "meta": meta,
        "delays": per_delay,
        "targets": results.targets(&delays),
        "errors": results.errors,
    })
}

fn system_key(system: System) -> &'static str {
    match system {
        System::Dugong => "dugong",
        System::Bucardo => "bucardo",
        System::Native => "native",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(delay_ms: u64, figures: &[(WanMetric, System, f64)]) -> WanResults {
        let mut r = WanResults::default();
        for (metric, system, value) in figures {
            r.add(Duration::from_millis(delay_ms), *metric, *system, 0, Sample::complete(*value));
        }
        r
    }

    fn verdicts(r: &WanResults, delay_ms: u64) -> Vec<(String, Option<bool>)> {
        r.targets(&[Duration::from_millis(delay_ms)]).into_iter().map(|t| (t.target, t.met)).collect()
    }

    #[test]
    fn rtt_50_targets_use_the_ratio_to_native_and_twenty_delays_for_the_first_row() {
        let r = results(
            25,
            &[
                (WanMetric::CatchUp, System::Dugong, 31_000.0),
                (WanMetric::CatchUp, System::Native, 85_000.0),
                (WanMetric::LagP99, System::Dugong, 59.0),
                (WanMetric::FirstRowMs, System::Dugong, 501.0),
                (WanMetric::IdleCpu, System::Dugong, 0.4),
            ],
        );
        let v = verdicts(&r, 25);
        assert_eq!(v[0], ("RTT 50: catch-up ≥ 0.9 × native".into(), Some(false)));
        assert_eq!(v[1], ("RTT 50: lag p99 ≤ 60 ms".into(), Some(true)));
        assert_eq!(v[2], ("RTT 50: first row after start ≤ 10 round trips = 500 ms".into(), Some(false)));
        assert_eq!(v[3], ("RTT 50: idle CPU < 1% of a core".into(), Some(true)));
    }

    #[test]
    fn rtt_0_lag_bound_is_native_p99_when_above_three_ms() {
        let r = results(
            0,
            &[
                (WanMetric::LagP99, System::Dugong, 4.0),
                (WanMetric::LagP99, System::Native, 4.5),
                (WanMetric::LagP50, System::Dugong, 2.5),
            ],
        );
        let v = verdicts(&r, 0);
        assert_eq!(v[0], ("RTT 0: lag p99 ≤ max(3 ms, native p99) = 4.50 ms".into(), Some(true)));
        assert_eq!(v[1], ("RTT 0: lag p50 ≤ 2 ms".into(), Some(false)));
        assert_eq!(v[2].1, None, "idle CPU was not measured");
    }

    #[test]
    fn the_table_has_a_row_per_delay_with_the_catch_up_ratio() {
        let r = results(
            5,
            &[(WanMetric::CatchUp, System::Dugong, 45_000.0), (WanMetric::CatchUp, System::Native, 90_000.0)],
        );
        let t = table(&r, &[Duration::from_millis(5)]);
        assert!(t.contains("| 5 ms (RTT 10) | 45,000 / 90,000 (0.50) |"), "{t}");
    }
}

//! What a run measured: every sample by metric, subject and repetition, the
//! ratios derived from them (paired within a repetition), and the targets of
//! issue 3. [`render`] turns it into the table and the JSON.

pub mod render;

use crate::stats::{summarize, Sample, Summary};
use crate::system::System;
use serde::Serialize;
use std::collections::BTreeMap;

/// Who a figure belongs to: a system, or the reference the systems are held
/// against (the COPY ceiling, pgbench without capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    System(System),
    Reference,
}

impl Subject {
    pub fn key(self) -> &'static str {
        match self {
            Subject::System(System::Dugong) => "dugong",
            Subject::System(System::Bucardo) => "bucardo",
            Subject::System(System::Native) => "native",
            Subject::Reference => "reference",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Subject::System(s) => s.label(),
            Subject::Reference => "reference",
        }
    }
}

/// A figure the benchmark reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    CatchUp,
    Ceiling,
    CeilingPerRow,
    CatchUpOfCeiling,
    Sustained,
    SustainedWriter,
    SustainedTail,
    TwoWay,
    LagP50,
    LagP95,
    LagP99,
    LagMax,
    LagWriterRate,
    BurstAfterBacklog,
    BurstAfterOfFresh,
    InsertTps,
    InsertOfPlain,
    UpdateTps,
    UpdateOfPlain,
}

impl Metric {
    pub const ALL: [Metric; 19] = [
        Metric::CatchUp,
        Metric::Ceiling,
        Metric::CeilingPerRow,
        Metric::CatchUpOfCeiling,
        Metric::Sustained,
        Metric::SustainedWriter,
        Metric::SustainedTail,
        Metric::TwoWay,
        Metric::LagP50,
        Metric::LagP95,
        Metric::LagP99,
        Metric::LagMax,
        Metric::LagWriterRate,
        Metric::BurstAfterBacklog,
        Metric::BurstAfterOfFresh,
        Metric::InsertTps,
        Metric::InsertOfPlain,
        Metric::UpdateTps,
        Metric::UpdateOfPlain,
    ];

    /// Stable name in the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Metric::CatchUp => "catch_up_rows_per_s",
            Metric::Ceiling => "copy_ceiling_rows_per_s",
            Metric::CeilingPerRow => "copy_one_message_per_row_rows_per_s",
            Metric::CatchUpOfCeiling => "catch_up_of_ceiling",
            Metric::Sustained => "sustained_one_way_rows_per_s",
            Metric::SustainedWriter => "sustained_writer_rows_per_s",
            Metric::SustainedTail => "sustained_tail_s",
            Metric::TwoWay => "two_way_rows_per_s",
            Metric::LagP50 => "lag_p50_ms",
            Metric::LagP95 => "lag_p95_ms",
            Metric::LagP99 => "lag_p99_ms",
            Metric::LagMax => "lag_max_ms",
            Metric::LagWriterRate => "lag_writer_tps",
            Metric::BurstAfterBacklog => "burst_after_backlog_rows_per_s",
            Metric::BurstAfterOfFresh => "burst_after_backlog_of_fresh",
            Metric::InsertTps => "insert_tps",
            Metric::InsertOfPlain => "insert_tps_of_plain",
            Metric::UpdateTps => "update_tps",
            Metric::UpdateOfPlain => "update_tps_of_plain",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::CatchUp => "backlog catch-up (rows/s)",
            Metric::Ceiling => "COPY ceiling, fresh table (rows/s)",
            Metric::CeilingPerRow => "  same COPY, one message per row (rows/s)",
            Metric::CatchUpOfCeiling => "catch-up ÷ ceiling",
            Metric::Sustained => "sustained one-way (rows/s)",
            Metric::SustainedWriter => "  writers' rate meanwhile (rows/s)",
            Metric::SustainedTail => "  tail after the writers (s)",
            Metric::TwoWay => "two-way, both sites at once (rows/s)",
            Metric::LagP50 => "lag p50 (ms)",
            Metric::LagP95 => "lag p95 (ms)",
            Metric::LagP99 => "lag p99 (ms)",
            Metric::LagMax => "lag max (ms)",
            Metric::LagWriterRate => "  lag writer's rate (tx/s)",
            Metric::BurstAfterBacklog => "burst after the backlog (rows/s)",
            Metric::BurstAfterOfFresh => "burst after ÷ fresh burst",
            Metric::InsertTps => "single-row INSERT (TPS)",
            Metric::InsertOfPlain => "INSERT TPS ÷ without capture",
            Metric::UpdateTps => "single-row UPDATE by key (TPS)",
            Metric::UpdateOfPlain => "UPDATE TPS ÷ without capture",
        }
    }

    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::SustainedTail | Metric::LagP50 | Metric::LagP95 | Metric::LagP99 | Metric::LagMax)
    }
}

/// Every sample of a run, and the errors met.
#[derive(Debug, Default)]
pub struct Results {
    samples: BTreeMap<(Metric, Subject), Vec<(usize, Sample)>>,
    pub errors: Vec<String>,
}

impl Results {
    pub fn add(&mut self, metric: Metric, subject: Subject, rep: usize, sample: Sample) {
        self.samples.entry((metric, subject)).or_default().push((rep, sample));
    }

    pub fn error(&mut self, what: String) {
        eprintln!("[bench] ERROR {what}");
        self.errors.push(what);
    }

    /// Adds the ratios paired within each repetition.
    pub fn derive(&mut self) {
        let pairs = [
            (Metric::CatchUpOfCeiling, Metric::CatchUp, Metric::Ceiling, true),
            (Metric::BurstAfterOfFresh, Metric::BurstAfterBacklog, Metric::Sustained, false),
            (Metric::InsertOfPlain, Metric::InsertTps, Metric::InsertTps, true),
            (Metric::UpdateOfPlain, Metric::UpdateTps, Metric::UpdateTps, true),
        ];
        for (ratio, top, bottom, against_reference) in pairs {
            for system in [System::Dugong, System::Bucardo, System::Native] {
                let subject = Subject::System(system);
                let denominator = if against_reference { Subject::Reference } else { subject };
                let (Some(tops), Some(bottoms)) =
                    (self.samples.get(&(top, subject)), self.samples.get(&(bottom, denominator)))
                else {
                    continue;
                };
                let derived: Vec<(usize, Sample)> = tops
                    .iter()
                    .filter_map(|(rep, t)| {
                        let (_, b) = bottoms.iter().find(|(r, _)| r == rep)?;
                        Some((*rep, Sample { value: t.value / b.value, complete: t.complete && b.complete }))
                    })
                    .collect();
                if !derived.is_empty() {
                    self.samples.insert((ratio, subject), derived);
                }
            }
        }
    }

    /// Median, min and max of a figure.
    pub fn summary(&self, metric: Metric, subject: Subject) -> Option<Summary> {
        let samples: Vec<Sample> = self.samples.get(&(metric, subject))?.iter().map(|(_, s)| *s).collect();
        summarize(&samples)
    }

    /// Dugong's median divided by `other`'s.
    pub fn dugong_ratio(&self, metric: Metric, other: System) -> Option<f64> {
        let d = self.summary(metric, Subject::System(System::Dugong))?;
        let o = self.summary(metric, Subject::System(other))?;
        (o.median != 0.0).then(|| d.median / o.median)
    }

    /// Issue 3's targets, judged on Dugong's medians.
    pub fn targets(&self) -> Vec<Target> {
        let dugong = |m| self.summary(m, Subject::System(System::Dugong)).map(|s| s.median);
        vec![
            Target::at_least("backlog catch-up ≥ 0.6 × the COPY ceiling", dugong(Metric::CatchUpOfCeiling), 0.6),
            Target::at_least(
                "backlog catch-up ≥ 3 × Bucardo",
                self.dugong_ratio(Metric::CatchUp, System::Bucardo),
                3.0,
            ),
            Target::at_most("lag p99 ≤ 20 ms at 200 tx/s", dugong(Metric::LagP99), 20.0),
            Target::at_least("INSERT TPS with capture ≥ 0.75 × without", dugong(Metric::InsertOfPlain), 0.75),
            Target::at_least("UPDATE TPS with capture ≥ 0.75 × without", dugong(Metric::UpdateOfPlain), 0.75),
            Target::at_least("burst after a backlog within 20% of a fresh one", dugong(Metric::BurstAfterOfFresh), 0.8),
        ]
    }
}

/// One of issue 3's targets and whether Dugong met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub target: &'static str,
    pub value: Option<f64>,
    pub threshold: f64,
    /// None when the figure was not measured.
    pub met: Option<bool>,
}

impl Target {
    fn at_least(target: &'static str, value: Option<f64>, threshold: f64) -> Target {
        Target { target, value, threshold, met: value.map(|v| v >= threshold) }
    }

    fn at_most(target: &'static str, value: Option<f64>, threshold: f64) -> Target {
        Target { target, value, threshold, met: value.map(|v| v <= threshold) }
    }
}

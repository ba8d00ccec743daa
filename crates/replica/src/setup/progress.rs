//! How a long copy shows its progress: a bar on a terminal (rows, rows/s,
//! ETA), or a log line every few seconds when the output goes to a file or
//! a journal.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// How often a copy without a terminal logs its progress.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// The progress of copying `total` rows.
pub struct CopyProgress {
    bar: Option<ProgressBar>,
    total: u64,
    rows: u64,
    started: Instant,
    last_log: Instant,
}

impl CopyProgress {
    /// A bar when `bar` (stderr is a terminal), log lines otherwise.
    pub fn new(total: u64, bar: bool) -> CopyProgress {
        let bar = bar.then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} rows, {per_sec}, ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        let now = Instant::now();
        CopyProgress { bar, total, rows: 0, started: now, last_log: now }
    }

    /// The table being copied now.
    pub fn table(&mut self, name: &str) {
        if let Some(b) = &self.bar {
            b.set_message(format!("copying {name}"));
        }
    }

    /// `rows` more rows copied.
    pub fn add(&mut self, rows: u64) {
        self.rows += rows;
        if let Some(b) = &self.bar {
            b.set_position(self.rows);
        } else if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            let (rate, eta) = self.rate_and_eta();
            tracing::info!(rows = self.rows, of = self.total, rows_per_s = rate as u64, eta_s = eta, "copying");
        }
    }

    /// Rows per second so far, and the seconds left at that rate.
    pub fn rate_and_eta(&self) -> (f64, u64) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.rows as f64 / secs;
        let left = self.total.saturating_sub(self.rows) as f64;
        (rate, if rate > 0.0 { (left / rate).ceil() as u64 } else { 0 })
    }

    /// Rows copied.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

//! Capture overhead: what a system's triggers cost the application's own writes.
//!
//! pgbench (PostgreSQL 15's) runs single-row INSERTs into `events` and
//! single-row UPDATEs by primary key of `flows` on site 0, with several clients,
//! against the database of each system (its triggers installed, its daemon
//! stopped, so only capture is measured) and against `kwanza_plain` (same
//! schema, no triggers). Before every run: `events` and the change logs are
//! emptied, `flows` vacuumed, a CHECKPOINT taken. Each repetition runs every
//! variant once per workload in a rotated order, and ratios are paired within a
//! repetition, so drift of the machine's speed cancels out.

use crate::cluster::{Sites, PG15_BIN};
use crate::options::Scale;
use crate::report::{Metric, Results, Subject};
use crate::schema::{self, PLAIN_DB};
use crate::stats::Sample;
use crate::system::System;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

const INSERT_SCRIPT: &str = r#"\set c random(1, 100)
INSERT INTO events (client, kind, payload) VALUES ('client-' || :c::text, 'order.created', '{"order": "o-00000000deadbeef", "sku": "SKU-00042", "qty": 3, "price": 12.50, "currency": "EUR", "customer": {"id": "c-0000beef", "tier": "gold", "country": "DE"}, "shipping": {"method": "express", "zip": "10115", "street": "Hauptstrasse 7"}, "tags": ["web", "promo-7", "b2c"], "note": "please deliver between nine and five"}');
"#;

const UPDATE_SCRIPT: &str = r#"\set n random(1, 10000)
UPDATE flows SET version = version + 1, updated_at = clock_timestamp() WHERE id = md5('flow-' || :n::text)::uuid;
"#;

/// Runs the overhead workloads for the capture of `systems` (native logical
/// replication has no triggers and is left out), recording TPS per repetition.
pub async fn run(
    sites: &Sites,
    systems: &[System],
    scale: &Scale,
    workdir: &Path,
    results: &mut Results,
) -> anyhow::Result<()> {
    let insert = workdir.join("insert.sql");
    let update = workdir.join("update.sql");
    std::fs::write(&insert, INSERT_SCRIPT).context("writing the pgbench insert script")?;
    std::fs::write(&update, UPDATE_SCRIPT).context("writing the pgbench update script")?;
    let mut variants: Vec<(Subject, &str)> = vec![(Subject::Reference, PLAIN_DB)];
    for s in systems.iter().filter(|s| **s != System::Native) {
        variants.push((Subject::System(*s), s.db()));
    }
    let workloads: [(Metric, &PathBuf); 2] = [(Metric::InsertTps, &insert), (Metric::UpdateTps, &update)];
    for rep in 0..scale.reps {
        for (metric, script) in workloads {
            let mut order = variants.clone();
            let n = order.len();
            order.rotate_left(rep % n);
            for (subject, db) in order {
                schema::reset(sites, 0, db).await?;
                sites.exec(0, db, "VACUUM ANALYZE flows").await?;
                sites.exec(0, "postgres", "CHECKPOINT").await?;
                let tps = pgbench(sites.port(0), db, script, scale).await?;
                eprintln!("[bench] overhead rep {rep}: {} {}: {tps:.0} TPS", metric.label(), subject.label());
                results.add(metric, subject, rep, Sample::complete(tps));
            }
        }
    }
    for (_, db) in &variants {
        schema::reset(sites, 0, db).await?;
    }
    Ok(())
}

async fn pgbench(port: u16, db: &str, script: &Path, scale: &Scale) -> anyhow::Result<f64> {
    let out = tokio::process::Command::new(Path::new(PG15_BIN).join("pgbench"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-n", "-M", "prepared"])
        .args(["-c", &scale.pgbench_clients.to_string(), "-j", "2", "-T", &scale.pgbench_seconds.to_string(), "-f"])
        .arg(script)
        .arg(db)
        .kill_on_drop(true)
        .output()
        .await
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("pgbench failed ({}): {text}{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    parse_tps(&text).with_context(|| format!("no tps line in pgbench's output:\n{text}"))
}

/// The `tps = N (without initial connection time)` figure of pgbench's report.
fn parse_tps(output: &str) -> Option<f64> {
    output
        .lines()
        .find(|l| l.starts_with("tps = ") && l.contains("without initial connection time"))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tps_without_connection_time() {
        let out = "number of failed transactions: 0 (0.000%)\nlatency average = 0.386 ms\n\
                   initial connection time = 5.046 ms\ntps = 10356.123456 (without initial connection time)\n";
        assert_eq!(parse_tps(out), Some(10356.123456));
        assert_eq!(parse_tps("tps = x"), None);
    }
}

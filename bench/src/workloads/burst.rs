//! Sustained writes with the replicator running: a one-way burst on site 0
//! (fresh, and again right after a backlog), and both sites at once.
//!
//! The figure is rows divided by the time from the writers' start until the
//! last row is visible everywhere; the writers' own rate is kept alongside, to
//! show whether the writer or the replicator was the bottleneck.

use crate::cluster::Sites;
use crate::options::Scale;
use crate::stats::Sample;
use crate::system::System;
use crate::workloads::arrival::{self, Arrival, Expected};
use crate::workloads::rows;
use std::time::Instant;

/// A burst's figures.
#[derive(Debug, Clone)]
pub struct Burst {
    /// Rows per second until everything was everywhere.
    pub replicated: Sample,
    /// Rows per second the writers committed.
    pub writer: f64,
    /// Seconds from the writers' end until everything was everywhere.
    pub tail_s: f64,
}

/// `rows` rows on site 0 in transactions of `scale.txn_rows` from
/// `scale.writers` connections; done when site 1 has them all.
pub async fn one_way(
    sites: &Sites,
    system: System,
    scale: &Scale,
    rep: usize,
    what: &str,
    rows: u64,
) -> anyhow::Result<Burst> {
    let db = system.db();
    let tag = rows::tag(system, rep, what, 0);
    let written = rows::write(sites, 0, db, &tag, rows, scale.txn_rows, scale.writers).await?;
    let expected = Expected { site: 1, tag, rows: written.rows, last_ids: written.last_ids.clone() };
    let deadline = Instant::now() + scale.deadline;
    let arrival = arrival::wait(sites, db, &[expected], deadline).await?;
    Ok(figures(written.rows, written.started, written.finished, written.rate(), arrival))
}

/// `scale.two_way_rows_per_site` rows on each site at once, half the writers on
/// each; done when both sites have all rows.
pub async fn two_way(sites: &Sites, system: System, scale: &Scale, rep: usize) -> anyhow::Result<Burst> {
    let db = system.db();
    let per_site = scale.two_way_rows_per_site;
    let writers = (scale.writers / 2).max(1);
    let tags = [rows::tag(system, rep, "two-way", 0), rows::tag(system, rep, "two-way", 1)];
    let (w0, w1) = tokio::join!(
        rows::write(sites, 0, db, &tags[0], per_site, scale.txn_rows, writers),
        rows::write(sites, 1, db, &tags[1], per_site, scale.txn_rows, writers),
    );
    let (w0, w1) = (w0?, w1?);
    let expected = [
        Expected { site: 1, tag: tags[0].clone(), rows: w0.rows, last_ids: w0.last_ids.clone() },
        Expected { site: 0, tag: tags[1].clone(), rows: w1.rows, last_ids: w1.last_ids.clone() },
    ];
    let deadline = Instant::now() + scale.deadline;
    let arrival = arrival::wait(sites, db, &expected, deadline).await?;
    let started = w0.started.min(w1.started);
    let finished = w0.finished.max(w1.finished);
    let rows = w0.rows + w1.rows;
    let writer = rows as f64 / (finished - started).as_secs_f64().max(1e-9);
    Ok(figures(rows, started, finished, writer, arrival))
}

fn figures(rows: u64, started: Instant, finished: Instant, writer: f64, arrival: Arrival) -> Burst {
    match arrival {
        Arrival::Complete(at) => {
            let at = at.max(finished);
            Burst {
                replicated: Sample::complete(rows as f64 / (at - started).as_secs_f64().max(1e-9)),
                writer,
                tail_s: (at - finished).as_secs_f64(),
            }
        }
        Arrival::TimedOut { seen } => {
            let now = Instant::now();
            Burst {
                replicated: Sample::incomplete(seen as f64 / (now - started).as_secs_f64().max(1e-9)),
                writer,
                tail_s: (now - finished).as_secs_f64(),
            }
        }
    }
}

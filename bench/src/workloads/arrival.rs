//! Deciding when a workload's rows have all arrived on the other site, cheaply
//! enough not to slow the replicator down.
//!
//! Counting a growing table every few milliseconds would compete with the
//! replicator for the two CPUs. Instead the waiter polls, every 2 ms, for one row
//! of each writer's last transaction (primary-key lookups, prepared once, so the
//! server does not parse and plan 500 statements a second beside the system
//! measured): once those are visible, it confirms with one count of the
//! workload's tag (indexed). Should a system deliver the last transactions
//! before earlier ones, the count says so and the waiter keeps counting every
//! 20 ms until it is complete.

use crate::cluster::Sites;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, Statement};

const LAST_ROWS_EVERY: Duration = Duration::from_millis(2);
const COUNT_EVERY: Duration = Duration::from_millis(20);

/// Rows that must arrive on `site`.
#[derive(Debug, Clone)]
pub struct Expected {
    pub site: usize,
    pub tag: String,
    pub rows: u64,
    pub last_ids: Vec<String>,
}

/// When the rows were all there, or how many were when the deadline passed.
#[derive(Debug, Clone, Copy)]
pub enum Arrival {
    Complete(Instant),
    TimedOut { seen: u64 },
}

struct Watch<'a> {
    expected: &'a Expected,
    client: Client,
    queries: Queries,
    last_seen: bool,
    last_count: Instant,
    done: Option<Instant>,
}

/// Waits until every `expected` set is complete, or `deadline`.
pub async fn wait(sites: &Sites, db: &str, expected: &[Expected], deadline: Instant) -> anyhow::Result<Arrival> {
    let mut watches = Vec::with_capacity(expected.len());
    for e in expected {
        let client = sites.connect(e.site, db).await?;
        let queries = Queries::prepare(&client).await?;
        let far_past = Instant::now().checked_sub(COUNT_EVERY).unwrap_or_else(Instant::now);
        watches.push(Watch { expected: e, client, queries, last_seen: false, last_count: far_past, done: None });
    }
    let mut tick = tokio::time::interval(LAST_ROWS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for w in watches.iter_mut().filter(|w| w.done.is_none()) {
            let polled = Instant::now();
            if !w.last_seen {
                w.last_seen =
                    w.queries.count_ids(&w.client, &w.expected.last_ids).await? == w.expected.last_ids.len() as i64;
                if w.last_seen {
                    w.last_count = polled - COUNT_EVERY;
                }
            }
            if w.last_seen && polled - w.last_count >= COUNT_EVERY {
                w.last_count = polled;
                if w.queries.count_tag(&w.client, &w.expected.tag).await? >= w.expected.rows as i64 {
                    w.done = Some(polled);
                }
            }
        }
        if watches.iter().all(|w| w.done.is_some()) {
            let last = watches.iter().filter_map(|w| w.done).max().unwrap_or_else(Instant::now);
            return Ok(Arrival::Complete(last));
        }
        if Instant::now() >= deadline {
            let mut seen = 0;
            for w in &watches {
                seen += w.queries.count_tag(&w.client, &w.expected.tag).await?.max(0) as u64;
            }
            return Ok(Arrival::TimedOut { seen });
        }
    }
}

const COUNT_IDS: &str = "SELECT count(*) FROM events WHERE id = ANY($1::text[]::uuid[])";
const COUNT_TAG: &str = "SELECT count(*) FROM events WHERE client = $1";

/// The waiter's two queries, prepared on its connection.
struct Queries {
    ids: Statement,
    tag: Statement,
}

impl Queries {
    async fn prepare(client: &Client) -> anyhow::Result<Queries> {
        Ok(Queries {
            ids: client.prepare(COUNT_IDS).await.context("preparing the last-rows lookup")?,
            tag: client.prepare(COUNT_TAG).await.context("preparing the workload's count")?,
        })
    }

    async fn count_ids(&self, client: &Client, ids: &[String]) -> anyhow::Result<i64> {
        let row = client.query_one(&self.ids, &[&ids]).await.context("looking for the last rows written")?;
        Ok(row.get(0))
    }

    async fn count_tag(&self, client: &Client, tag: &str) -> anyhow::Result<i64> {
        let row = client.query_one(&self.tag, &[&tag]).await.context("counting a workload's rows")?;
        Ok(row.get(0))
    }
}

/// Writes one row on site `from` and waits until it is visible on site `to`:
/// replication runs end to end.
pub async fn probe(sites: &Sites, db: &str, from: usize, to: usize, timeout: Duration) -> anyhow::Result<()> {
    let writer = sites.connect(from, db).await?;
    let reader = sites.connect(to, db).await?;
    let id: String = writer
        .query_one("INSERT INTO events (client, kind, payload) VALUES ('probe', 'probe', '{}') RETURNING id::text", &[])
        .await
        .context("writing a probe row")?
        .get(0);
    let queries = Queries::prepare(&reader).await?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if queries.count_ids(&reader, std::slice::from_ref(&id)).await? == 1 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("a probe row written on site {from} did not reach site {to} within {timeout:?}")
}

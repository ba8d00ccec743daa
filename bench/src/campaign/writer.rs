//! The applications of a campaign run: one writer per site, over the site's Unix socket (no
//! cut link stops it; only its database's crash does), recording every transaction it tried
//! and how it ended.
//!
//! Each transaction inserts a new row (ids are the site's own), sometimes deletes one of the
//! site's earlier committed rows, and mostly writes one of the hot keys every site shares:
//! an upsert of a new value, or a delete. It reads its transaction id before `COMMIT`, so a
//! commit whose answer was lost to a crash is settled afterwards with `txid_status` on the
//! recovered server, not guessed — minding that a transaction none of whose WAL reached the
//! disk leaves no trace, so after recovery the server may hand its id to a new transaction:
//! a "committed" whose commit time is later than the failure is that other transaction's.

use dugong_testkit::Cluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Client;

/// The replicated table of every run.
pub const SCHEMA: &str = "CREATE TABLE items (id bigint PRIMARY KEY, site int NOT NULL, v text NOT NULL)";

/// How many hot keys (ids 1..=HOT_KEYS) the sites fight over.
pub const HOT_KEYS: i64 = 16;

/// Ids of site `s`'s own rows start here.
const SITE_ID_BASE: i64 = 1_000_000_000;

/// What one write to a hot key did: a new value, or `None` for a delete.
pub type HotWrite = (i64, Option<String>);

/// How a transaction ended, as far as its writer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    /// Never committed: failed before `COMMIT` was sent, or `txid_status` says aborted.
    Aborted,
    /// `COMMIT` was sent and no answer came: settled later by [`settle`].
    Unknown,
}

/// One transaction of a writer.
#[derive(Debug, Clone)]
pub struct Txn {
    /// Its transaction id, when read before the failure.
    pub xid: Option<i64>,
    /// The row it inserted.
    pub insert: i64,
    /// One of the site's earlier rows it deleted.
    pub delete: Option<i64>,
    /// The hot key it changed (a delete that found no row changed nothing).
    pub hot: Option<HotWrite>,
    pub outcome: Outcome,
    /// Its outcome was [`Outcome::Unknown`], settled by asking the server.
    pub settled: bool,
    /// When its `COMMIT` failed without an answer (µs since the epoch).
    pub failed_at_us: Option<i64>,
    /// Settled as aborted because its id, lost in the crash, was given to a transaction
    /// that committed after the failure.
    pub id_reused: bool,
}

/// Everything one writer tried.
#[derive(Debug, Default)]
pub struct Written {
    pub site: usize,
    pub txns: Vec<Txn>,
}

/// The value an inserted row holds.
pub fn row_value(id: i64) -> String {
    format!("row-{id}")
}

/// Writes on `site` until `stop`, pacing itself, reconnecting while its database is down.
pub async fn write(site: usize, cluster: Arc<Cluster>, db: String, seed: u64, stop: Arc<AtomicBool>) -> Written {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut written = Written { site, txns: Vec::new() };
    let mut own_rows: Vec<i64> = Vec::new();
    let mut next = SITE_ID_BASE * (site as i64 + 1);
    let mut client: Option<Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = client.as_ref().filter(|c| !c.is_closed()) else {
            client = cluster.connect(&db).await.ok();
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        next += 1;
        let delete = (!own_rows.is_empty() && rng.random_bool(0.15))
            .then(|| own_rows.swap_remove(rng.random_range(0..own_rows.len())));
        let hot = rng.random_bool(0.8).then(|| {
            let key = rng.random_range(1..=HOT_KEYS);
            let value = rng.random_bool(0.8).then(|| format!("s{site}-{next}"));
            (key, value)
        });
        let txn = one(c, site, next, delete, hot).await;
        // A row whose insert is not surely committed is never chosen for deleting; nor is one
        // whose delete was tried (it is gone if that transaction committed, kept otherwise).
        if txn.outcome == Outcome::Committed {
            own_rows.push(txn.insert);
        }
        written.txns.push(txn);
        tokio::time::sleep(Duration::from_millis(rng.random_range(1..8))).await;
    }
    written
}

/// Runs one transaction and says how it ended.
async fn one(c: &Client, site: usize, id: i64, delete: Option<i64>, hot: Option<HotWrite>) -> Txn {
    let mut txn = Txn {
        xid: None,
        insert: id,
        delete: None,
        hot: None,
        outcome: Outcome::Aborted,
        settled: false,
        failed_at_us: None,
        id_reused: false,
    };
    let body = async {
        c.batch_execute("BEGIN").await?;
        let site = site as i32;
        c.execute("INSERT INTO items (id, site, v) VALUES ($1, $2, $3)", &[&id, &site, &row_value(id)]).await?;
        if let Some(old) = delete {
            if c.execute("DELETE FROM items WHERE id = $1", &[&old]).await? == 1 {
                txn.delete = Some(old);
            }
        }
        if let Some((key, value)) = &hot {
            let changed = match value {
                Some(v) => {
                    let upsert = "INSERT INTO items (id, site, v) VALUES ($1, $2, $3)
                                  ON CONFLICT (id) DO UPDATE SET site = excluded.site, v = excluded.v";
                    c.execute(upsert, &[key, &site, v]).await?
                }
                None => c.execute("DELETE FROM items WHERE id = $1", &[key]).await?,
            };
            if changed == 1 {
                txn.hot = Some((*key, value.clone()));
            }
        }
        txn.xid = Some(c.query_one("SELECT txid_current()", &[]).await?.get(0));
        Ok::<_, tokio_postgres::Error>(())
    };
    if body.await.is_err() {
        // Nothing was committed; a live connection must leave the failed transaction.
        let _ = c.batch_execute("ROLLBACK").await;
        return txn;
    }
    // Any failure of COMMIT leaves the outcome open: a server stopped with `-m immediate`
    // answers a COMMIT it may already have made durable with a FATAL error.
    match c.batch_execute("COMMIT").await {
        Ok(()) => txn.outcome = Outcome::Committed,
        Err(_) => {
            txn.outcome = Outcome::Unknown;
            txn.failed_at_us = Some(now_us());
        }
    }
    txn
}

/// Settles the transactions whose `COMMIT` got no answer, asking the recovered server.
pub async fn settle(c: &Client, written: &mut Written) -> anyhow::Result<()> {
    for txn in written.txns.iter_mut().filter(|t| t.outcome == Outcome::Unknown) {
        let xid = txn.xid.ok_or_else(|| anyhow::anyhow!("a commit without a transaction id"))?;
        let sql = "SELECT txid_status($1),
                          (extract(epoch from pg_xact_commit_timestamp(($1 % 4294967296)::text::xid)) * 1000000)::int8";
        let row = c.query_one(sql, &[&xid]).await?;
        let (status, committed_at): (Option<String>, Option<i64>) = (row.get(0), row.get(1));
        txn.settled = true;
        let failed_at = txn.failed_at_us.ok_or_else(|| anyhow::anyhow!("an open commit without its failure time"))?;
        // Commit times and the failure time are read from the one clock of this machine.
        let reused = committed_at.is_some_and(|at| at > failed_at);
        txn.id_reused = status.as_deref() == Some("committed") && reused;
        txn.outcome = match status.as_deref() {
            Some("committed") if reused => Outcome::Aborted,
            Some("committed") => Outcome::Committed,
            Some("aborted") => Outcome::Aborted,
            other => anyhow::bail!("transaction {xid} on site {}: txid_status says {other:?}", written.site),
        };
    }
    Ok(())
}

/// The commit time (µs since the epoch) of each committed transaction that wrote a hot key,
/// read from the site's commit timestamps: which write is the latest decides the key.
pub async fn hot_commit_times(c: &Client, written: &Written) -> anyhow::Result<Vec<(i64, i64, Option<String>)>> {
    let hot: Vec<(&Txn, &HotWrite)> = written
        .txns
        .iter()
        .filter(|t| t.outcome == Outcome::Committed)
        .filter_map(|t| t.hot.as_ref().map(|h| (t, h)))
        .collect();
    let xids: Vec<i64> = hot.iter().filter_map(|(t, _)| t.xid).collect();
    let rows = c
        .query(
            "SELECT (extract(epoch from pg_xact_commit_timestamp((x % 4294967296)::text::xid)) * 1000000)::int8
             FROM unnest($1::int8[]) WITH ORDINALITY AS u(x, n) ORDER BY n",
            &[&xids],
        )
        .await?;
    anyhow::ensure!(rows.len() == hot.len(), "commit times for {} of {} hot writes", rows.len(), hot.len());
    hot.iter()
        .zip(rows)
        .map(|((_, (key, value)), row)| {
            let at: Option<i64> = row.get(0);
            let at =
                at.ok_or_else(|| anyhow::anyhow!("no commit timestamp for a hot write on site {}", written.site))?;
            Ok((*key, at, value.clone()))
        })
        .collect()
}

/// Now, in µs since the epoch.
fn now_us() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

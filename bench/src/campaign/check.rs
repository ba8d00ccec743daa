//! What a run must end with, worked out from what the writers committed, and the checks
//! against what the sites hold: nothing committed lost, nothing phantom (a row never
//! committed, or a deleted one back), sites identical, and each hot key as its latest
//! committed write left it — the later commit wins; at the same microsecond, the site listed
//! first (the replicator's tie rule).

use super::lab::Run;
use super::writer::{row_value, Outcome, Written};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A row as the check sees it: the site that wrote it last, and its value.
pub type Row = (i32, String);

/// What every site must hold at the end.
#[derive(Debug, Default)]
pub struct Expected {
    pub rows: BTreeMap<i64, Row>,
    /// Rows (and hot keys) whose last committed write deleted them.
    pub deleted: BTreeSet<i64>,
    /// Rows inserted by transactions that never committed.
    pub aborted: BTreeSet<i64>,
    /// The hot keys' expected rows (`None`: deleted or never written).
    pub hot: BTreeMap<i64, Option<Row>>,
}

/// A hot key's committed writes: (site, commit time µs, key, value).
pub type HotWrites = Vec<(usize, i64, i64, Option<String>)>;

/// Works out the end state from the writers' settled transactions and the commit times of
/// their hot writes.
pub fn expected(written: &[Written], hot_writes: &HotWrites) -> Expected {
    let mut e = Expected::default();
    for w in written {
        for t in &w.txns {
            match t.outcome {
                Outcome::Committed => {
                    e.rows.insert(t.insert, (w.site as i32, row_value(t.insert)));
                }
                Outcome::Aborted => {
                    e.aborted.insert(t.insert);
                }
                Outcome::Unknown => unreachable!("settled before the check"),
            }
        }
    }
    // Only a row's own site deletes it, after its insert committed: every delete applies.
    for w in written {
        for t in w.txns.iter().filter(|t| t.outcome == Outcome::Committed) {
            if let Some(old) = t.delete {
                e.rows.remove(&old);
                e.deleted.insert(old);
            }
        }
    }
    let mut latest: BTreeMap<i64, (i64, i64, usize, Option<String>)> = BTreeMap::new();
    for (site, at, key, value) in hot_writes {
        // Later commit first; at the same time the lower site id, as the replicator decides.
        let rank = (*at, -(*site as i64));
        if latest.get(key).is_none_or(|(a, s, _, _)| rank > (*a, *s)) {
            latest.insert(*key, (rank.0, rank.1, *site, value.clone()));
        }
    }
    for (key, (_, _, site, value)) in latest {
        let row = value.map(|v| (site as i32, v));
        match &row {
            Some(row) => {
                e.rows.insert(key, row.clone());
            }
            None => {
                e.deleted.insert(key);
            }
        }
        e.hot.insert(key, row);
    }
    e
}

/// Waits until every site of the run holds as many rows as expected and all of them hold the
/// same rows (by a digest of every row). How long that took, or `None` past `deadline`.
pub async fn wait_converged(run: &Run<'_>, want: usize, deadline: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut clients = Vec::new();
    while started.elapsed() < deadline {
        if clients.len() < run.sites {
            clients.clear();
            for site in run.lab.sites.iter().take(run.sites) {
                match site.cluster.connect(&run.db).await {
                    Ok(c) => clients.push(c),
                    Err(_) => break,
                }
            }
        }
        let mut digests = BTreeSet::new();
        let mut complete = clients.len() == run.sites;
        for c in &clients {
            let sql = "SELECT count(*), coalesce(sum(hashtextextended(id::text || '/' || site || '/' || v, 0)), 0)::text FROM items";
            match c.query_one(sql, &[]).await {
                Ok(row) => {
                    complete &= row.get::<_, i64>(0) == want as i64;
                    digests.insert(row.get::<_, String>(1));
                }
                Err(_) => {
                    complete = false;
                    clients.clear();
                    break;
                }
            }
        }
        if complete && digests.len() == 1 {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// What the checks found on one run.
#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    /// Committed rows missing, summed over sites.
    pub lost: usize,
    /// Rows no committed transaction wrote, summed over sites.
    pub phantom: usize,
    /// Rows whose last committed write deleted them, present again, summed over sites.
    pub resurrected: usize,
    /// Hot keys whose row is not the latest committed write, summed over sites.
    pub hot_not_latest: usize,
    /// Other rows holding another value than written, summed over sites.
    pub wrong_value: usize,
    /// Every site holds the same rows.
    pub identical: bool,
    /// `dugong compare` said identical.
    pub compare_identical: bool,
    /// How the replicator ended each time it exited by itself during the run.
    pub replicator_exits: Vec<String>,
    /// A few examples of what was wrong.
    pub examples: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.lost + self.phantom + self.resurrected + self.hot_not_latest + self.wrong_value == 0
            && self.identical
            && self.compare_identical
            && self.replicator_exits.is_empty()
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 10 {
            self.examples.push(text);
        }
    }
}

/// Reads every site's rows and checks them against `e`.
pub async fn check(run: &Run<'_>, e: &Expected) -> anyhow::Result<Verdict> {
    let mut v = Verdict::default();
    let mut holdings = Vec::new();
    for (i, site) in run.lab.sites.iter().take(run.sites).enumerate() {
        let c = site.cluster.connect(&run.db).await?;
        let rows: BTreeMap<i64, Row> = c
            .query("SELECT id, site, v FROM items", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        for (id, want) in &e.rows {
            match rows.get(id) {
                None => {
                    v.lost += 1;
                    v.example(format!("site {i}: committed row {id} missing"));
                }
                Some(got) if got != want && e.hot.contains_key(id) => {
                    v.hot_not_latest += 1;
                    v.example(format!("site {i}: hot key {id} is {got:?}, its latest committed write {want:?}"));
                }
                Some(got) if got != want => {
                    v.wrong_value += 1;
                    v.example(format!("site {i}: row {id} is {got:?}, written {want:?}"));
                }
                Some(_) => {}
            }
        }
        for (id, got) in rows.iter().filter(|(id, _)| !e.rows.contains_key(id)) {
            if e.deleted.contains(id) {
                v.resurrected += 1;
                v.example(format!("site {i}: row {id} {got:?} back after its delete committed"));
            } else {
                v.phantom += 1;
                let why = if e.aborted.contains(id) { "its transaction never committed" } else { "never written" };
                v.example(format!("site {i}: row {id} {got:?} present, {why}"));
            }
        }
        holdings.push(rows);
    }
    v.identical = holdings.windows(2).all(|w| w[0] == w[1]);
    let (same, text) = run.compare().await?;
    v.compare_identical = same;
    if !same {
        v.example(format!("dugong compare: {}", text.trim()));
    }
    Ok(v)
}

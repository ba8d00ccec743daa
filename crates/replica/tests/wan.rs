//! Replication across a WAN: site 1 is reached through a delay link
//! (`DelayLink`, 10 ms each way), as when the replicator runs in site 0's data
//! center. The link counts the round trips each step of a sync costs, so these
//! tests pin how many times a run waits for the remote site — the figure that
//! decides lag over a real WAN — and check that nothing is reordered or lost
//! when runs cross the link.

mod common;

use common::Sites;
use dugong_config::Config;
use dugong_replica::daemon::{self, DaemonOptions};
use dugong_replica::engine::postgres::{self, Postgres};
use dugong_replica::engine::Prepared;
use dugong_replica::record::RunOutcome;
use dugong_replica::run::{self, RunLimits};
use dugong_replica::ErrorPolicy;
use dugong_testkit::{DelayLink, LinkCounts};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const ONE_WAY: Duration = Duration::from_millis(10);

/// Two sites, the second behind a delay link.
struct Wan {
    sites: Sites,
    link: DelayLink,
    config: Config,
}

impl Wan {
    async fn new(prefix: &str, schema: &str) -> Wan {
        let sites = Sites::new(prefix, 2, schema).await;
        let upstream = format!("127.0.0.1:{}", sites.cluster.port()).parse().unwrap();
        let link = DelayLink::start(upstream, ONE_WAY).await.unwrap();
        let db = |i: usize, port: u16| {
            format!(
                r#"{{"id": {i}, "dbname": "{}", "host": "127.0.0.1 port={port}", "user": "postgres", "pass": ""}}"#,
                sites.dbs[i]
            )
        };
        let json = format!(
            r#"{{"databases": [{}, {}], "syncs": [{{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#,
            db(0, sites.cluster.port()),
            db(1, link.addr().port())
        );
        let config = Config::from_str(&json, Path::new("wan.json")).expect("valid config");
        Wan { sites, link, config }
    }

    /// Waits until the replicator's sessions before are gone: its claim goes
    /// with them, and their goodbyes are not what comes next.
    async fn sessions_ended(&self) {
        let site0 = self.sites.client(0);
        dugong_testkit::wait_for("the replicator's sessions to end", Duration::from_secs(10), || async {
            let left: i64 = site0
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'dugong replicate%'", &[])
                .await
                .unwrap()
                .get(0);
            (left == 0).then_some(())
        })
        .await;
    }

    /// Runs `f` and returns what it returned with the round trips it cost on the link.
    async fn counted<T>(&self, f: impl std::future::Future<Output = T>) -> (T, LinkCounts) {
        let before = self.link.counts();
        let out = f.await;
        (out, self.link.counts().since(&before))
    }
}

async fn prepare(config: &Config) -> Prepared<Postgres> {
    postgres::prepare(config, &config.syncs[0]).await.expect("prepare")
}

/// Runs until a run moves rows, polling every millisecond and retrying runs
/// that clash, as the daemon does; returns what it did. (A change at the
/// remote site is found once the answer of the last commit sent there
/// arrives.)
async fn run_until_moved(p: &mut Prepared<Postgres>) -> RunOutcome {
    run_until(p, |outcome| !outcome.empty).await
}

/// Runs until a run does what `done` looks for (see [`run_until_moved`]).
async fn run_until(p: &mut Prepared<Postgres>, done: impl Fn(&RunOutcome) -> bool) -> RunOutcome {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match run::run_once(p, RunLimits::default()).await {
            Ok(outcome) if done(&outcome) => return outcome,
            Ok(_) => {}
            Err(e) if e.policy() == ErrorPolicy::RetrySoon => eprintln!("retried: {e}"),
            Err(e) => panic!("run: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("no run did what was expected within 10 s")
}

#[tokio::test]
async fn a_run_waits_for_the_remote_site_only_a_few_times() {
    let wan = Wan::new("wan_trips", "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    let (mut p, start) = wan.counted(prepare(&wan.config)).await;
    eprintln!("start-up: {start:?}");
    // The connection (two: sslmode prefer offers TLS first), the claim with
    // the catalog (and the settings and the role check) behind it, the check
    // that finds capture missing (with the positions and the shape), the
    // install's begin, reads, DDL (with the positions it started) and commit,
    // and the poll's prepare with the first poll (and the upkeep, stale
    // positions and the sync's state).
    assert!(start.round_trips <= START_UP_FIRST, "the first start-up: {start:?}");

    let (idle, trips) = wan.counted(run::run_once(&mut p, RunLimits::default())).await;
    assert!(idle.unwrap().empty);
    eprintln!("idle poll: {trips:?}");
    // An idle sync asks the remote site one cheap question per poll.
    assert_eq!(trips.round_trips, 1, "an idle poll: {trips:?}");

    // A change at the replicator's own site, applied across the link, twice.
    // (Under load the local site can look far too, and trust the answer that
    // came back with its last commit: the change is then found by the next
    // poll.)
    wan.sites.client(0).batch_execute("INSERT INTO t VALUES (1, 'near')").await.unwrap();
    let (run, first) = wan.counted(run_until_moved(&mut p)).await;
    assert_eq!(run.inserts, 1);
    wan.sites.client(0).batch_execute("INSERT INTO t VALUES (3, 'near')").await.unwrap();
    let (run, near) = wan.counted(run_until_moved(&mut p)).await;
    assert_eq!(run.inserts, 1);
    eprintln!("near change: {first:?}, then {near:?}");
    // The poll, then the run transaction's opening, the row and the commit in
    // one message. The remote site's position advance rides with the next poll.
    assert!(first.round_trips <= 2 && near.round_trips <= 2, "a change applied across the link: {first:?}, {near:?}");

    // A change at the remote site, read across the link, once the last run
    // committed there. (Runs do not wait for their commits across the link:
    // one that finds a change there it did not read starts again.) The
    // poll's answer that came back with that commit (nothing new) spares the
    // next poll a round trip, so the change is found by the one after.
    let site1 = wan.sites.client(1);
    dugong_testkit::wait_for("the last run to commit on site 1", Duration::from_secs(10), || async {
        let rows: i64 = site1.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
        (rows == 2).then_some(())
    })
    .await;
    wan.sites.client(1).batch_execute("INSERT INTO t VALUES (2, 'far')").await.unwrap();
    let (run, far) = wan.counted(run_until_moved(&mut p)).await;
    assert_eq!(run.inserts, 1);
    eprintln!("far change: {far:?}");
    // The poll, the snapshot with the counts and the row read ahead (the
    // last run there was small), the commit.
    assert!(far.round_trips <= 3, "a change read across the link: {far:?}");
    // An update there too, once the runs before settled: the key its target
    // deletes first is read ahead with the row.
    common::sync_all(&mut p).await;
    wan.sites.client(1).batch_execute("UPDATE t SET v = 'far, updated' WHERE id = 2").await.unwrap();
    let (run, update) = wan.counted(run_until_moved(&mut p)).await;
    assert_eq!((run.inserts, run.deletes), (1, 1));
    eprintln!("far update: {update:?}");
    assert!(update.round_trips <= 3, "an update read across the link: {update:?}");

    // Both sites change the same row: conflict resolution reads keys too.
    wan.sites.client(0).batch_execute("UPDATE t SET v = 'a' WHERE id = 1").await.unwrap();
    wan.sites.client(1).batch_execute("UPDATE t SET v = 'b' WHERE id = 1").await.unwrap();
    let (run, both) = wan.counted(run_until(&mut p, |o| !o.conflicts.is_empty())).await;
    assert_eq!(run.conflicts.len(), 1, "the later update wins, as a conflict");
    eprintln!("conflict: {both:?}");
    // Site 1's last answer (nothing new) is stale: the run that trusts it
    // finds the change in its snapshot there and starts again (the flight),
    // then reads both sites: poll, counts, keys, both versions, the rows, and
    // the commit with the deletes and inserts.
    assert!(both.round_trips <= 9, "a conflict across the link: {both:?}");
    assert_eq!(wan.sites.assert_same("SELECT v FROM t WHERE id = 1").await, vec!["b"]);

    // A restart finds capture in place: no install, only the connection's
    // two, the claim with the catalog (and the positions and change logs
    // found), and the check with the shape, the positions and the first poll
    // from them (with the poll's prepare). The replicator before is gone
    // first: its claim goes with its sessions, and their goodbyes are not
    // the restart's.
    drop(p);
    wan.sessions_ended().await;
    let (mut p, again) = wan.counted(prepare(&wan.config)).await;
    eprintln!("restart: {again:?}");
    assert!(again.round_trips <= START_UP_AGAIN, "a restart: {again:?}");
    wan.sites.client(1).batch_execute("INSERT INTO t VALUES (4, 'after restart')").await.unwrap();
    // (The last run's change at the remote site may ship again: its
    // position advance was to ride with the next poll.)
    common::sync_all(&mut p).await;
    let arrived = wan.sites.assert_same("SELECT v FROM t WHERE id = 4").await;
    assert_eq!(arrived, vec!["after restart"]);
}

#[tokio::test]
async fn a_backlog_crosses_the_link_in_runs_that_fly() {
    let wan = Wan::new("wan_backlog", "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    let mut p = prepare(&wan.config).await;
    common::sync_all(&mut p).await;
    drop(p);
    wan.sessions_ended().await;
    // A backlog of twelve transactions waits when the replicator starts, and
    // ships in bounded runs, one transaction each: runs that follow one
    // another without polls in between, as in a catch-up after an outage.
    const BATCHES: i32 = 12;
    for b in 0..BATCHES {
        let sql =
            format!("INSERT INTO t SELECT g, 'backlog' FROM generate_series({} * 100 + 1, {} * 100 + 100) g", b, b);
        wan.sites.client(0).batch_execute(&sql).await.unwrap();
    }
    let mut p = prepare(&wan.config).await;
    let limits = RunLimits { batch_rows: 100, ..RunLimits::default() };
    let mut trips = Vec::new();
    let mut flew = 0;
    for _ in 0..BATCHES {
        let (run, counts) = wan.counted(run::run_once(&mut p, limits)).await;
        let run = run.expect("run");
        assert_eq!(run.inserts, 100, "one transaction per run");
        flew += usize::from(run.in_flight);
        trips.push(counts.round_trips);
    }
    eprintln!("round trips per run: {trips:?}, {flew} runs left commits in flight");
    // The first runs wait for their commits there, and read the remote site
    // (which has nothing new) as well: their round trips tell how far it is.
    // From the third on, each run sends its commit and goes on: the remote
    // site is neither read nor waited for (a commit's answer arrives during
    // a later run).
    assert!(trips[3..].iter().all(|t| *t <= 1), "runs once the link is known: {trips:?}");
    assert!(flew >= BATCHES as usize - 3, "runs left in flight: {flew} of {BATCHES}");
    common::sync_all(&mut p).await;
    let rows = wan.sites.assert_same("SELECT count(*)::text FROM t").await;
    assert_eq!(rows, vec![(BATCHES * 100).to_string()]);
}

/// Round trips to the remote site of the first start-up, which installs
/// capture there, and of a restart, which finds it in place.
const START_UP_FIRST: u64 = 9;
const START_UP_AGAIN: u64 = 4;

/// Round trips to the remote site from starting the daemon until a row that
/// waited at its own site is there: the restart's, then the first run's one
/// flight (its poll of the remote site came with the start-up's, which found
/// the row waiting). Conflicts are purged, and orphans looked for, only after
/// that first run.
const FIRST_ROW: u64 = START_UP_AGAIN + 1;

/// How often the first-row test looks for the row on the remote site: well
/// within the link's one-way delay, so what it counts is the row's.
const FIRST_ROW_LOOK: Duration = Duration::from_millis(1);

#[tokio::test]
async fn a_restarted_daemon_ships_a_waiting_row_in_a_few_round_trips() {
    let wan = Wan::new("wan_first_row", "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    let config = Arc::new(wan.config.clone());
    // The first start installs capture, then stops.
    let options = DaemonOptions { once: true, ..Default::default() };
    let reports = daemon::run(config.clone(), options, Default::default()).await;
    assert!(reports.iter().all(|r| r.good), "the installing run: {reports:?}");
    wan.sessions_ended().await;

    wan.sites.client(0).batch_execute("INSERT INTO t VALUES (1, 'waited')").await.unwrap();
    let before = wan.link.counts();
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run(config, DaemonOptions::default(), shutdown.clone()));
    let site1 = wan.sites.client(1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut look = tokio::time::interval(FIRST_ROW_LOOK);
    let counts = loop {
        look.tick().await;
        let there: i64 = site1.query_one("SELECT count(*) FROM t WHERE id = 1", &[]).await.unwrap().get(0);
        if there == 1 {
            break wan.link.counts().since(&before);
        }
        assert!(tokio::time::Instant::now() < deadline, "the waiting row did not arrive within 30 s");
    };
    shutdown.cancel();
    let reports = daemon.await.unwrap();
    assert!(reports.iter().all(|r| r.good), "the daemon: {reports:?}");
    eprintln!("first row after start: {counts:?}");
    // The health watch waits a moment before it opens its own connections:
    // by then the row is there.
    assert_eq!(counts.connections, 1, "only the replicator's connection: {counts:?}");
    assert!(counts.round_trips <= FIRST_ROW, "first row after a restart: {counts:?}");
}

/// Writes on one site until told to stop: each transaction inserts a key of
/// its own and rewrites the one before (a row with several versions in one
/// run's window), and every fifth deletes a recent key. Returns the rows it
/// left, as `id|v`.
async fn write(client: tokio_postgres::Client, site: i32, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut rows: std::collections::BTreeMap<i32, String> = Default::default();
    for i in 0.. {
        if i % 5 == 0 && stop.load(Ordering::Relaxed) {
            break;
        }
        let id = site * 1_000_000 + i;
        let mut sql = format!("BEGIN; INSERT INTO t VALUES ({id}, 'new {i}');");
        rows.insert(id, format!("new {i}"));
        if i > 0 {
            sql.push_str(&format!("UPDATE t SET v = 'rewritten {i}' WHERE id = {};", id - 1));
            rows.insert(id - 1, format!("rewritten {i}"));
        }
        if i % 5 == 4 {
            sql.push_str(&format!("DELETE FROM t WHERE id = {};", id - 3));
            rows.remove(&(id - 3));
        }
        client.batch_execute(&format!("{sql} COMMIT")).await.unwrap();
    }
    rows.into_iter().map(|(id, v)| format!("{id}|{v}")).collect()
}

#[tokio::test]
async fn runs_across_the_link_lose_and_reorder_nothing_while_both_sites_write() {
    let wan = Wan::new("wan_writes", "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
    let mut p = prepare(&wan.config).await;
    wan.sites.client(0).batch_execute("INSERT INTO t SELECT g, 'hot' FROM generate_series(0, 4) g").await.unwrap();
    common::sync_all(&mut p).await;

    let cluster = wan.sites.cluster;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = [0usize, 1]
        .into_iter()
        .map(|site| {
            let db = wan.sites.dbs[site].clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = cluster.connect(&db).await.unwrap();
                write(client, site as i32 + 1, stop).await
            })
        })
        .collect();
    // Runs go on across the link while both sites write, in small batches:
    // a row's versions are split across runs.
    let (mut runs, mut retried) = (0, 0);
    while writers.iter().any(|w| !w.is_finished()) {
        if runs >= 30 {
            stop.store(true, Ordering::Relaxed);
        }
        match run::run_once(&mut p, RunLimits { batch_rows: 20, ..Default::default() }).await {
            Ok(outcome) => runs += usize::from(!outcome.empty),
            // A site written after its poll said nothing new: the daemon runs
            // again at once, and so does this loop.
            Err(e) if e.policy() == ErrorPolicy::RetrySoon => retried += 1,
            Err(e) => panic!("run: {e}"),
        }
    }
    eprintln!("{runs} runs moved rows, {retried} ran again");
    let mut expected = Vec::new();
    for w in writers {
        expected.extend(w.await.unwrap());
    }
    common::sync_all(&mut p).await;

    // Every site has exactly the rows the writers left, each in its last version.
    expected.sort();
    assert!(expected.len() > 50, "the writers wrote only {} rows", expected.len());
    assert_eq!(wan.sites.assert_same("SELECT id, v FROM t WHERE id >= 1000000").await, expected);

    // Both sites rewrite the same rows: the conflicts are decided the same way everywhere.
    for site in 0..2 {
        wan.sites.client(site).batch_execute(&format!("UPDATE t SET v = 'site {site}' WHERE id < 5")).await.unwrap();
    }
    let outcomes = common::sync_all(&mut p).await;
    assert_eq!(outcomes.iter().map(|o| o.conflicts.len()).sum::<usize>(), 5);
    assert_eq!(wan.sites.assert_same("SELECT DISTINCT v FROM t WHERE id < 5").await, vec!["site 1"]);

    // Nothing is left to ship, and the positions reached the databases.
    assert!(common::run_until_idle(&mut p, RunLimits::default()).await.is_empty());
    let site1 = wan.sites.client(1);
    let delta: String = site1
        .query_one(
            "SELECT 'dugong.' || quote_ident(relname) FROM pg_class WHERE relname LIKE 'delta\\_%' AND relkind = 'r'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let pending: i64 = site1
        .query_one(
            &format!(
                "SELECT count(*) FROM {delta} d, dugong.cursor c
                 WHERE c.target = 'db0' AND d.dugong_txid >= pg_snapshot_xmin(c.snapshot)
                   AND NOT pg_visible_in_snapshot(d.dugong_txid, c.snapshot)"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0, "site 1's position for site 0 was not written back");
}

/// Runs fly across the link without waiting for their commits there, and
/// some fail on the way: site 1 is written while runs that took it to have
/// nothing new are in flight. Watched from site 1, a row's versions only ever
/// move forward; site 0's durable position for site 1 never covers a version
/// site 1 does not have yet; and in the end both sites have every row (what
/// a failed run carried was shipped again).
#[tokio::test]
async fn runs_in_flight_never_reorder_a_row_nor_promise_what_did_not_commit() {
    let wan = Wan::new("wan_flight", "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)").await;
    let mut p = prepare(&wan.config).await;
    wan.sites.client(0).batch_execute("INSERT INTO t VALUES (1, 0)").await.unwrap();
    common::sync_all(&mut p).await;

    // Site 1's view of row 1, as often as it can ask, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (cluster, db, stop) = (wan.sites.cluster, wan.sites.dbs[1].clone(), stop.clone());
        tokio::spawn(async move {
            let client = cluster.connect(&db).await.unwrap();
            let mut seen: Vec<i32> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let v: i32 = client.query_one("SELECT v FROM t WHERE id = 1", &[]).await.unwrap().get(0);
                if seen.last() != Some(&v) {
                    seen.push(v);
                }
            }
            seen
        })
    };

    let (site0, site1) = (wan.sites.client(0), wan.sites.client(1));
    let mut versions: Vec<(i64, String)> = Vec::new();
    let last = 60;
    for v in 1..=last {
        let txid: String = site0
            .query_one(
                "WITH u AS (UPDATE t SET v = $1 WHERE id = 1), i AS (INSERT INTO t VALUES (100 + $1, $1))
                 SELECT txid_current()::text",
                &[&v],
            )
            .await
            .unwrap()
            .get(0);
        versions.push((i64::from(v), txid));
        if v % 7 == 0 {
            // Site 1 changes another row while runs are on their way there.
            site1.batch_execute(&format!("INSERT INTO t VALUES ({}, {v})", 1000 + v)).await.unwrap();
        }
        match run::run_once(&mut p, RunLimits::default()).await {
            Ok(_) => {}
            Err(e) if e.policy() == ErrorPolicy::RetrySoon => {}
            Err(e) => panic!("run: {e}"),
        }
        // The version site 0's durable position for site 1 covers, against
        // what site 1 has now.
        let (ks, txids): (Vec<i64>, Vec<String>) = versions.iter().cloned().unzip();
        let covered: i64 = site0
            .query_one(
                "SELECT coalesce(max(u.k), 0) FROM unnest($1::int8[], $2::text[]) AS u(k, x), dugong.cursor c
                 WHERE c.target = 'db1' AND pg_visible_in_snapshot(u.x::xid8, c.snapshot)",
                &[&ks, &txids],
            )
            .await
            .unwrap()
            .get(0);
        let there: i32 = site1.query_one("SELECT v FROM t WHERE id = 1", &[]).await.unwrap().get(0);
        assert!(i64::from(there) >= covered, "site 0's position covers version {covered}, site 1 has {there}");
    }
    common::sync_all(&mut p).await;
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.await.unwrap();
    let counts = dugong_replica::engine::Engine::flight_counts(&p.engine);
    eprintln!("site 1 saw {} versions of row 1; {counts:?}", seen.len());
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "a version went back on site 1: {seen:?}");
    assert_eq!(seen.last(), Some(&last));
    assert!(counts.sent > 10, "runs did not fly: {counts:?}");
    assert!(counts.rewound > 0, "no run in flight failed: the test did not test the rewind ({counts:?})");
    // Row 1, one row per version from site 0, one per write on site 1.
    let rows = wan.sites.assert_same("SELECT id, v FROM t ORDER BY id").await;
    assert_eq!(rows.len(), 1 + last as usize + last as usize / 7);
}

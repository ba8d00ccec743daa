//! A replicator in each of two data centers, on one configuration: when the active one's
//! whole data center goes dark (its link cut: hosts and database together), the standby in
//! the other takes over within seconds and keeps the surviving site's changes waiting, status
//! says so from the surviving side, and when the link returns everything converges. And when
//! both replicators live but are cut apart, never two of them apply to one database.

mod dc;

use dc::{claim_holders, database, heartbeats, ids, insert, text, with_logs, DataCenters};
use dugong_testkit::wait_for;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// Waits until `c` holds the heartbeat `(role, pid)`.
async fn wait_heartbeat(c: &Client, role: &str, pid: i32, what: &str, timeout: Duration) {
    wait_for(what, timeout, || async { heartbeats(c).await.contains(&(role.to_owned(), pid)).then_some(()) }).await;
}

#[tokio::test]
async fn when_the_active_replicators_data_center_goes_dark_the_standby_in_the_other_takes_over() {
    let dcs = DataCenters::new("dark", 2).await;
    let (c0, c1) = (dcs.client(0).await, dcs.client(1).await);
    let first = dcs.replicator(0, "dc0-replicator", &[]);
    dcs.wait_capture().await;
    wait_heartbeat(&c1, "active", first.pid, "dc0's replicator to run the sync", Duration::from_secs(30)).await;
    let second = dcs.replicator(1, "dc1-replicator", &[]);
    with_logs(&[&first, &second], async {
        wait_heartbeat(&c0, "standby", second.pid, "dc1's replicator to stand by", Duration::from_secs(30)).await;
        let mut want = insert(&c0, 0, 1..=100).await;
        want.extend(insert(&c1, 1, 1001..=1100).await);
        dcs.wait_converged(&want, 1, Duration::from_secs(30)).await;
        // Before the outage, status names both: who runs the sync and who stands by.
        let (code, report) = dcs.status_json(1);
        assert_eq!(code, Some(0), "{report}");
        let replicator = &report["syncs"][0]["replicator"];
        assert_eq!(replicator["pid"], first.pid, "{report}");
        assert_eq!(replicator["running"], true, "{report}");
        assert_eq!(replicator["standby"]["pid"], second.pid, "{report}");

        // Data center 0 goes dark: its replicator and its database leave the network together.
        let cut = Instant::now();
        dcs.sites[0].ns.cut().unwrap();
        let dc1 = dcs.sites[1].ns.address().to_string();
        wait_for("the standby to claim the sync on db1", Duration::from_secs(60), || async {
            (claim_holders(&c1).await == [dc1.clone()]).then_some(())
        })
        .await;
        let claimed = cut.elapsed();
        wait_heartbeat(&c1, "active", second.pid, "the standby's heartbeat as active", Duration::from_secs(60)).await;
        let reported = cut.elapsed();
        println!(
            "takeover: dc1's replicator claimed the sync {:.1} s after dc0 went dark, and wrote its heartbeat as the active one after {:.1} s",
            claimed.as_secs_f64(),
            reported.as_secs_f64()
        );
        assert!(second.log().contains("took over the sync"));

        // The surviving site goes on working; its changes wait for the missing one.
        want.extend(insert(&c1, 1, 2001..=2050).await);
        let report = wait_for("status from dc1 to show what waits for db0", Duration::from_secs(30), || async {
            let (code, report) = dcs.status_json(1);
            let db0 = database(&report, "db0");
            (code == Some(3) && db0["reachable"] == false && db0["pending"] == 50).then_some(report)
        })
        .await;
        let sync = &report["syncs"][0];
        assert_eq!(sync["replicator"]["pid"], second.pid, "the replicator that took over runs the sync: {report}");
        assert_eq!(sync["replicator"]["running"], true, "{report}");
        assert!(database(&report, "db0")["error"].as_str().is_some_and(|e| !e.is_empty()), "{report}");
        assert!(database(&report, "db0")["lag_seconds"].as_f64().is_some_and(|l| l > 0.0), "{report}");
        assert_eq!(database(&report, "db1")["reachable"], true, "{report}");
        let out = dcs.run(1, &["status", "sync0"]);
        let detail = text(&out);
        assert_eq!(out.status.code(), Some(3), "{detail}");
        assert!(detail.contains("db0 unreachable ("), "{detail}");
        assert!(detail.contains("(db0 50, "), "what waits for db0: {detail}");
        assert!(detail.contains(&format!("Replicator               : {}@", second.pid)), "{detail}");

        // The link returns: everything converges, nothing lost, and the two replicators sort
        // out again which one runs the sync and which one stands by.
        dcs.sites[0].ns.heal().unwrap();
        dcs.wait_converged(&want, 0, Duration::from_secs(120)).await;
        let report = wait_for("status to name an active and a standby replicator", Duration::from_secs(60), || async {
            let (code, report) = dcs.status_json(0);
            let r = &report["syncs"][0]["replicator"];
            let both = [r["pid"].as_i64(), r["standby"]["pid"].as_i64()];
            let named = both.contains(&Some(first.pid.into())) && both.contains(&Some(second.pid.into()));
            // The positions trail the rows by the last commits' flush.
            let nothing = ["db0", "db1"].iter().all(|db| database(&report, db)["pending"] == 0);
            (code == Some(0) && r["running"] == true && named && nothing).then_some(report)
        })
        .await;
        assert_eq!(database(&report, "db0")["pending"], 0, "{report}");
        assert_eq!(database(&report, "db1")["pending"], 0, "{report}");
    })
    .await;
}

/// One look at a database: the replicator sessions there, by the address they came from,
/// whether each holds the sync's claim and whether it is applying rows to `items`.
#[derive(Debug)]
struct Session {
    addr: String,
    claims: bool,
    applying: bool,
}

/// The replicator sessions of one database, from one snapshot of its locks and activity.
async fn sessions(c: &Client) -> Vec<Session> {
    let sql = "SELECT coalesce(host(a.client_addr), 'local'),
                      EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
                                AND l.objid = (hashtext('dugong sync sync0')::int8 & 4294967295)::oid),
                      EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.granted
                                AND l.relation = 'items'::regclass AND l.mode = 'RowExclusiveLock')
               FROM pg_stat_activity a
               WHERE a.application_name LIKE 'dugong replicate%' AND a.datname = current_database()";
    match c.query(sql, &[]).await {
        Ok(rows) => rows.iter().map(|r| Session { addr: r.get(0), claims: r.get(1), applying: r.get(2) }).collect(),
        Err(_) => Vec::new(),
    }
}

/// What one site's applications wrote: the rows they inserted and, per hot key, every write
/// that changed it, as (commit time in µs, value; `None` for a delete).
#[derive(Default)]
struct Written {
    rows: Vec<i64>,
    hot: BTreeMap<i64, Vec<(i64, i32, Option<String>)>>,
}

/// Writes on site `site` until `stop`, numbering from `first`: a new row each time and, when
/// `hot`, an upsert or a delete of one of ten hot keys shared with the other site, in one
/// transaction.
async fn write_until(c: Client, site: i32, first: i64, hot: bool, stop: Arc<AtomicBool>) -> Written {
    let mut written = Written::default();
    let mut i = first;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let id = 1_000_000 * i64::from(site + 1) + i;
        let key = i % 10 + 1;
        let value = format!("site{site}-{i}");
        let delete = i % 7 == 0;
        let tx = async {
            c.batch_execute("BEGIN").await?;
            c.execute("INSERT INTO items (id, site, v) VALUES ($1, $2, 'row')", &[&id, &site]).await?;
            let changed = if !hot {
                0
            } else if delete {
                c.execute("DELETE FROM items WHERE id = $1", &[&key]).await?
            } else {
                let upsert =
                    "INSERT INTO items (id, site, v) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET v = excluded.v";
                c.execute(upsert, &[&key, &site, &value]).await?
            };
            let xid: i64 = c.query_one("SELECT txid_current()", &[]).await?.get(0);
            c.batch_execute("COMMIT").await?;
            let at: i64 = c
                .query_one(
                    "SELECT (extract(epoch from pg_xact_commit_timestamp($1::text::xid)) * 1000000)::int8",
                    &[&xid.to_string()],
                )
                .await?
                .get(0);
            Ok::<_, tokio_postgres::Error>((changed, at))
        };
        let (changed, at) = tx.await.expect("a site's own database answers its applications");
        written.rows.push(id);
        if changed == 1 {
            written.hot.entry(key).or_default().push((at, site, (!delete).then_some(value)));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    written
}

/// The ids every site must hold after `written` (the ten seeded rows are the hot keys), and
/// each hot key's value: its latest committed write's (`None`: deleted).
fn expected(written: &[Written]) -> (Vec<i64>, BTreeMap<i64, Option<String>>) {
    let mut want: Vec<i64> = written.iter().flat_map(|w| w.rows.iter().copied()).collect();
    let mut values = BTreeMap::new();
    for key in 1..=10i64 {
        let writes = written.iter().flat_map(|w| w.hot.get(&key).into_iter().flatten());
        // The later commit wins; at the same microsecond, the database listed first.
        let value = match writes.max_by_key(|(at, site, _)| (*at, -site)) {
            Some((_, _, value)) => value.clone(),
            None => Some("written".to_owned()),
        };
        if value.is_some() {
            want.push(key);
        }
        values.insert(key, value);
    }
    (want, values)
}

/// Waits until each database is claimed by the replicator of its own data center.
async fn wait_split(dcs: &DataCenters, what: &str) {
    for i in 0..2 {
        let c = dcs.client(i).await;
        let own = dcs.sites[i].ns.address().to_string();
        wait_for(what, Duration::from_secs(60), || async { (claim_holders(&c).await == [own.clone()]).then_some(()) })
            .await;
    }
}

/// How many rows site `from` wrote so far.
async fn written_by(c: &Client, from: i32) -> i64 {
    c.query_one("SELECT count(*) FROM items WHERE site = $1 AND v = 'row'", &[&from]).await.unwrap().get(0)
}

#[tokio::test]
async fn replicators_cut_apart_never_both_apply_to_one_database_and_converge_when_joined() {
    let dcs = DataCenters::new("split", 2).await;
    let (c0, c1) = (dcs.client(0).await, dcs.client(1).await);
    let first = dcs.replicator(0, "dc0-replicator", &[]);
    dcs.wait_capture().await;
    wait_heartbeat(&c1, "active", first.pid, "dc0's replicator to run the sync", Duration::from_secs(30)).await;
    let second = dcs.replicator(1, "dc1-replicator", &[]);
    with_logs(&[&first, &second], async {
        wait_heartbeat(&c0, "standby", second.pid, "dc1's replicator to stand by", Duration::from_secs(30)).await;
        let seeded = insert(&c0, 0, 1..=10).await;
        dcs.wait_converged(&seeded, 0, Duration::from_secs(30)).await;

        // Watch both databases throughout: who holds the claim, who applies rows.
        let stop_watch = Arc::new(AtomicBool::new(false));
        let watch = {
            let clients = [dcs.client(0).await, dcs.client(1).await];
            let stop = stop_watch.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut looks = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for (db, c) in clients.iter().enumerate() {
                        looks.push((started.elapsed(), db, sessions(c).await));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                looks
            })
        };
        // Cut apart twice. Each time both sides write alone while each data center's
        // replicator claims its own database; then the writers pause, the link returns and
        // everything converges. (They pause because catching up under a steady stream of
        // writes to the same few rows stalls whether or not there was a partition: the
        // `hot_rows` test.)
        let mut written = Vec::new();
        // Rows keep coming on both sites all along, so there is always something to apply.
        let stop_inserts = Arc::new(AtomicBool::new(false));
        let mut inserting = Vec::new();
        for site in 0..2 {
            let c = dcs.client(site as usize).await;
            inserting.push(tokio::spawn(write_until(c, site, 500_000, false, stop_inserts.clone())));
        }
        for round in 0..2i64 {
            let stop = Arc::new(AtomicBool::new(false));
            let mut writers = Vec::new();
            for site in 0..2 {
                let c = dcs.client(site as usize).await;
                writers.push(tokio::spawn(write_until(c, site, round * 100_000, true, stop.clone())));
            }
            dcs.sites[0].ns.cut().unwrap();
            wait_split(&dcs, &format!("round {round}: each data center's replicator to claim its own database")).await;
            let (before0, before1) = (written_by(&c0, 0).await, written_by(&c1, 1).await);
            wait_for("both sites to keep writing meanwhile", Duration::from_secs(30), || async {
                (written_by(&c0, 0).await >= before0 + 100 && written_by(&c1, 1).await >= before1 + 100).then_some(())
            })
            .await;
            stop.store(true, Ordering::Relaxed);
            for w in writers {
                written.push(w.await.unwrap());
            }
            dcs.sites[0].ns.heal().unwrap();
            // Every committed row, and each hot key as its latest committed write left it.
            let (want, final_values) = expected(&written);
            for c in [&c0, &c1] {
                wait_for("the rows of the partition on both sites", Duration::from_secs(180), || async {
                    let ids: BTreeSet<i64> = ids(c).await.into_iter().collect();
                    want.iter().all(|id| ids.contains(id)).then_some(())
                })
                .await;
            }
            for c in [&c0, &c1] {
                for (key, value) in &final_values {
                    let got: Option<String> =
                        c.query_opt("SELECT v FROM items WHERE id = $1", &[key]).await.unwrap().map(|r| r.get(0));
                    assert_eq!(&got, value, "round {round}, hot key {key}: the latest committed write wins");
                }
            }
        }

        stop_inserts.store(true, Ordering::Relaxed);
        for w in inserting {
            written.push(w.await.unwrap());
        }
        dcs.wait_converged(&expected(&written).0, 1, Duration::from_secs(120)).await;
        stop_watch.store(true, Ordering::Relaxed);
        let looks = watch.await.unwrap();
        let mut applying_seen = 0;
        for (at, db, sessions) in &looks {
            let claimants: Vec<&str> = sessions.iter().filter(|s| s.claims).map(|s| s.addr.as_str()).collect();
            assert!(claimants.len() <= 1, "db{db} claimed twice at {at:?}: {sessions:?}");
            for s in sessions.iter().filter(|s| s.applying) {
                applying_seen += 1;
                assert!(s.claims, "db{db} at {at:?}: {} applies rows without the claim: {sessions:?}", s.addr);
            }
        }
        assert!(applying_seen > 0, "the watch saw replicators apply rows ({} looks)", looks.len());
        // dc1's replicator ran its side alone. dc0's did in most runs, but not always: after
        // a run that the cut aborted, it can find the claim on db0 still held by a session of
        // its own from that run and stand by behind it (a known replicator bug, reported with
        // issue 15), which the checks above do not mind: nothing applied twice, all converged.
        assert!(second.log().contains("running without an unreachable database"), "dc1's replicator ran alone");
        assert!(second.log().contains("took over the sync"));
        println!("partition: {} looks at the databases, {applying_seen} of a replicator applying rows", looks.len());
    })
    .await;
}

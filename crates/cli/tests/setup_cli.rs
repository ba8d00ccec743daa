//! `dugong setup` as an operator runs it: the real binary, real PostgreSQL,
//! an application writing on site 0 throughout, then `replicate --once` and
//! `compare`. Also: running it again, a third site joining, sequences that
//! status warns about, and each refusal with its message.

mod operator;

use dugong_testkit::{Cluster, ClusterOptions};
use operator::{show, stdout, ConfigFile};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_postgres::Client;

const SCHEMA: &str = "
CREATE TABLE customer (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customer (id),
    amount numeric(10, 2) NOT NULL,
    note text
);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE TABLE tag (code text PRIMARY KEY, label text);";

async fn count(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.expect(sql).get(0)
}

/// The application on site 0: a customer and two orders per transaction,
/// through the sequences, until told to stop. Returns the committed ids.
async fn application(client: Client, stop: Arc<AtomicBool>) -> (Vec<i32>, Vec<i64>) {
    let (mut customers, mut orders) = (Vec::new(), Vec::new());
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let row = client
            .query_one(
                "WITH c AS (INSERT INTO customer (name) VALUES ($1) RETURNING id),
                      o AS (INSERT INTO orders (customer_id, amount) SELECT id, 9.99 FROM c, generate_series(1, 2) RETURNING id)
                 SELECT (SELECT id FROM c), array_agg(o.id) FROM o",
                &[&format!("live {n}")],
            )
            .await
            .expect("the application's write");
        customers.push(row.get(0));
        orders.extend(row.get::<_, Vec<i64>>(1));
        if n.is_multiple_of(10) {
            // Updates too, of rows the copy may already have taken.
            client
                .execute("UPDATE customer SET name = name || '+' WHERE id = $1", &[&customers[customers.len() / 2]])
                .await
                .expect("update");
        }
    }
    (customers, orders)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_online_under_writes_then_again_then_a_third_site() {
    let cluster = Cluster::shared();
    let mut dbs = Vec::new();
    for i in 0..3 {
        dbs.push(cluster.create_database(&format!("setup_live{i}")).await.expect("database"));
    }
    let site0 = cluster.connect(&dbs[0]).await.unwrap();
    site0.batch_execute(SCHEMA).await.unwrap();
    site0
        .batch_execute(
            "INSERT INTO customer (name) SELECT 'c' || g FROM generate_series(1, 20000) g;
             INSERT INTO orders (customer_id, amount, note) SELECT 1 + g % 20000, g / 100.0, 'o' || g FROM generate_series(1, 60000) g;
             INSERT INTO tag VALUES ('a', 'first'), ('b', NULL);",
        )
        .await
        .unwrap();
    let config = ConfigFile::new("live", cluster, &dbs[..2], "postgres");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(application(cluster.connect(&dbs[0]).await.unwrap(), stop.clone()));
    let (path, dir) = (config.path.to_str().unwrap().to_string(), config.dir.clone());
    let out = tokio::task::spawn_blocking(move || operator::dugong(&["setup", "--yes", "--config", &path], &dir))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    for step in [
        "==> checking 2 sites of sync0: db0, db1",
        "==> copying the schema of db0 to db1",
        "==> installing capture on every site before copying",
        "==> interleaving sequences",
        "db1: set up from db0 (schema, 3 tables",
        "next:\n  dugong replicate --config",
    ] {
        assert!(text.contains(step), "{step:?} missing:\n{text}");
    }
    // The application wrote throughout; stop it after the setup finished.
    stop.store(true, Ordering::Relaxed);
    let (customers, orders) = writer.await.unwrap();
    assert!(!customers.is_empty(), "the application wrote during setup");
    let out = config.dugong(&["replicate", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = config.dugong(&["compare"]);
    assert_eq!(out.status.code(), Some(0), "every committed row is on both sites:\n{}", show(&out));
    let site1 = cluster.connect(&dbs[1]).await.unwrap();
    let max_customer = *customers.iter().max().unwrap();
    assert_eq!(
        count(&site1, &format!("SELECT count(*) FROM customer WHERE id > 20000 AND id <= {max_customer}")).await,
        customers.len() as i64
    );
    assert_eq!(count(&site1, "SELECT count(*) FROM orders").await, 60000 + orders.len() as i64);
    // Interleaved: new rows on either site never collide.
    let steps: Vec<i64> = {
        let mut v = Vec::new();
        for c in [&site0, &site1] {
            v.push(count(c, "SELECT increment_by FROM pg_sequences WHERE sequencename = 'orders_id_seq'").await);
        }
        v
    };
    assert_eq!(steps, vec![2, 2]);
    for c in [&site0, &site1] {
        c.batch_execute("INSERT INTO customer (name) VALUES ('after'); INSERT INTO orders (customer_id, amount) SELECT max(id), 1 FROM customer")
            .await
            .expect("inserts on both sites after setup");
    }
    let out = config.dugong(&["replicate", "--once"]);
    assert_eq!(out.status.code(), Some(0), "no key collides: {}", show(&out));
    assert_eq!(config.dugong(&["compare"]).status.code(), Some(0));

    // Again: nothing changes, and it says so.
    let out = config.dugong(&["setup", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sync0 is set up already: nothing changed."),
        "{}",
        show(&out)
    );

    // A third site joins the running pair the same way.
    site1.batch_execute("INSERT INTO tag VALUES ('c', 'written on site 1')").await.unwrap();
    let out = config.dugong(&["replicate", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    site1.batch_execute("INSERT INTO tag VALUES ('d', 'on site 1, not yet shipped')").await.unwrap();
    config.write(cluster, &dbs, "postgres");
    let out = config.dugong(&["setup", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("db2: set up from db0"), "{text}");
    let out = config.dugong(&["replicate", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = config.dugong(&["compare"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "three identical sites, site 1's unshipped change included:\n{}",
        show(&out)
    );
    let site2 = cluster.connect(&dbs[2]).await.unwrap();
    assert_eq!(count(&site2, "SELECT count(*) FROM tag WHERE code = 'd'").await, 1);
    assert_eq!(count(&site2, "SELECT increment_by FROM pg_sequences WHERE sequencename = 'customer_id_seq'").await, 3);
}

#[tokio::test]
async fn status_warns_about_sequences_until_setup_interleaves_them() {
    let cluster = Cluster::shared();
    let mut dbs = Vec::new();
    for i in 0..2 {
        let db = cluster.create_database(&format!("setup_seq{i}")).await.unwrap();
        cluster.psql(&db, SCHEMA).await.unwrap();
        dbs.push(db);
    }
    cluster.psql(&dbs[0], "INSERT INTO customer (name) VALUES ('one'), ('two')").await.unwrap();
    let config = ConfigFile::new("seq", cluster, &dbs, "postgres");
    let out = config.dugong(&["replicate", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = config.dugong(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("sequence(s) not interleaved"), "{text}");
    assert!(text.contains("public.customer_id_seq (db0 step 1 next 3, db1 step 1 next 1)"), "{text}");
    // db1 has the schema and no rows: setup copies the rows and interleaves.
    let out = config.dugong(&["setup", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("db1: set up from db0 (3 tables"), "{}", show(&out));
    let out = config.dugong(&["status"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("not interleaved"), "{}", show(&out));
}

#[tokio::test]
async fn a_target_with_rows_is_refused_by_name_unless_forced() {
    let cluster = Cluster::shared();
    let mut dbs = Vec::new();
    for i in 0..2 {
        let db = cluster.create_database(&format!("setup_full{i}")).await.unwrap();
        cluster.psql(&db, SCHEMA).await.unwrap();
        dbs.push(db);
    }
    cluster.psql(&dbs[0], "INSERT INTO tag VALUES ('a', 'live')").await.unwrap();
    cluster.psql(&dbs[1], "INSERT INTO tag VALUES ('x', 'stale'), ('y', 'stale')").await.unwrap();
    let config = ConfigFile::new("full", cluster, &dbs, "postgres");
    let out = config.dugong(&["setup", "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("setup refused (1 problem); nothing was changed:"), "{err}");
    assert!(
        err.contains("db1: is not empty: public.tag (2 rows); setup copies db0's rows into empty sites only"),
        "{err}"
    );
    assert!(err.contains("fix: empty those tables, or run setup with --force"), "{err}");
    let site1 = cluster.connect(&dbs[1]).await.unwrap();
    assert_eq!(
        count(&site1, "SELECT count(*) FROM pg_namespace WHERE nspname = 'dugong'").await,
        0,
        "nothing installed"
    );
    // Without --yes and without a terminal, it does not start.
    let out = config.dugong(&["setup"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run it with --yes"), "{}", show(&out));

    let out = config.dugong(&["setup", "--yes", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let tags: Vec<String> =
        site1.query("SELECT code FROM tag ORDER BY 1", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(tags, vec!["a"], "--force replaced the stale rows with db0's");
}

#[tokio::test]
async fn a_role_without_privileges_is_told_each_grant() {
    let cluster = Cluster::shared();
    let mut dbs = Vec::new();
    for i in 0..2 {
        dbs.push(cluster.create_database(&format!("setup_weak{i}")).await.unwrap());
    }
    cluster.psql(&dbs[0], SCHEMA).await.unwrap();
    let role = format!("setup_weak_{}", std::process::id());
    cluster
        .psql(
            &dbs[0],
            &format!("DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"),
        )
        .await
        .unwrap();
    let config = ConfigFile::new("weak", cluster, &dbs, &role);
    let out = config.dugong(&["setup", "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        format!("db0: role {role} may not set session_replication_role"),
        format!("fix: GRANT SET ON PARAMETER session_replication_role TO \"{role}\";"),
        format!("may not create schemas in database {}", dbs[1]),
        format!("fix: GRANT CREATE ON DATABASE \"{}\" TO \"{role}\";", dbs[1]),
        "lacks privileges on 3 table(s): public.customer (SELECT, TRIGGER)".to_string(),
        format!("GRANT SELECT, INSERT, DELETE, TRIGGER ON ALL TABLES IN SCHEMA \"public\" TO \"{role}\";"),
    ] {
        assert!(err.contains(&expected), "{expected:?} missing:\n{err}");
    }
}

#[tokio::test]
async fn track_commit_timestamp_off_is_refused_with_the_fix() {
    let cluster = Cluster::start(ClusterOptions { track_commit_timestamp: false, ..Default::default() }).unwrap();
    let mut dbs = Vec::new();
    for i in 0..2 {
        dbs.push(cluster.create_database(&format!("setup_nots{i}")).await.unwrap());
    }
    cluster.psql(&dbs[0], SCHEMA).await.unwrap();
    let config = ConfigFile::new("nots", &cluster, &dbs, "postgres");
    let out = config.dugong(&["setup", "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("setup refused (2 problems)"), "one per site:\n{err}");
    assert!(err.contains("db0: track_commit_timestamp is off"), "{err}");
    assert!(err.contains("fix: run ALTER SYSTEM SET track_commit_timestamp = on; on db1 as a superuser, then restart PostgreSQL there"), "{err}");
}

/// The runbook's "restoring a site": a site lost after it was set up and
/// recreated as an empty database is set up again from the live one, with
/// what the live site wrote while it was gone, and changes that reached it
/// before it was lost come back with the copy.
#[tokio::test]
async fn a_lost_site_recreated_empty_is_set_up_again() {
    let cluster = Cluster::shared();
    let mut dbs = Vec::new();
    for i in 0..2 {
        dbs.push(cluster.create_database(&format!("setup_lost{i}")).await.unwrap());
    }
    let site0 = cluster.connect(&dbs[0]).await.unwrap();
    site0.batch_execute(SCHEMA).await.unwrap();
    site0.batch_execute("INSERT INTO customer (name) SELECT 'c' || g FROM generate_series(1, 500) g").await.unwrap();
    let config = ConfigFile::new("lost", cluster, &dbs, "postgres");
    let out = config.dugong(&["setup", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let site1 = cluster.connect(&dbs[1]).await.unwrap();
    site1.batch_execute("INSERT INTO customer (name) VALUES ('written on site 1')").await.unwrap();
    let out = config.dugong(&["replicate", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    drop(site1);

    // Site 1 is lost; site 0 goes on meanwhile.
    site0.batch_execute("INSERT INTO customer (name) VALUES ('while site 1 was gone')").await.unwrap();
    site0.batch_execute("UPDATE customer SET name = 'changed while gone' WHERE id = 7").await.unwrap();
    // One statement each: neither may run in a transaction block.
    cluster.psql("postgres", &format!("DROP DATABASE \"{}\" WITH (FORCE)", dbs[1])).await.unwrap();
    cluster.psql("postgres", &format!("CREATE DATABASE \"{}\"", dbs[1])).await.unwrap();
    let out = config.dugong(&["setup", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stdout(&out).contains("db1: set up from db0 (schema, 3 tables"), "{}", show(&out));

    site0.batch_execute("INSERT INTO customer (name) VALUES ('after the restore')").await.unwrap();
    let out = config.dugong(&["replicate", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = config.dugong(&["compare"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let site1 = cluster.connect(&dbs[1]).await.unwrap();
    assert_eq!(count(&site1, "SELECT count(*) FROM customer").await, 503);
    assert_eq!(count(&site1, "SELECT count(*) FROM customer WHERE name = 'changed while gone'").await, 1);
    // Inserts on the rebuilt site do not collide with the live site's.
    site1.batch_execute("INSERT INTO customer (name) VALUES ('new on site 1')").await.unwrap();
    let out = config.dugong(&["replicate", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(config.dugong(&["compare"]).status.code(), Some(0));
}

/// A site added while a replicator runs the sync: setup names the replicator
/// and how to go on, and changes nothing (not even the new site's schema)
/// until it is stopped.
#[tokio::test]
async fn a_running_replicator_is_named_and_nothing_changes_until_it_stops() {
    let cluster = Cluster::shared();
    let mut dbs = Vec::new();
    for i in 0..3 {
        dbs.push(cluster.create_database(&format!("setup_busy{i}")).await.unwrap());
    }
    let site0 = cluster.connect(&dbs[0]).await.unwrap();
    site0.batch_execute(SCHEMA).await.unwrap();
    site0.batch_execute("INSERT INTO tag VALUES ('a', 'live')").await.unwrap();
    let config = ConfigFile::new("busy", cluster, &dbs[..2], "postgres");
    let out = config.dugong(&["setup", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let replicator = config.spawn(&["replicate"]);
    let claimed = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE l.locktype = 'advisory' AND l.granted AND d.datname = '{}'",
        dbs[0]
    );
    dugong_testkit::wait_for("the replicator's claim", std::time::Duration::from_secs(30), || async {
        (count(&site0, &claimed).await > 0).then_some(())
    })
    .await;

    config.write(cluster, &dbs, "postgres");
    let out = config.dugong(&["setup", "--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is running sync0; setup copies only while none does"), "{err}");
    assert!(err.contains("fix: stop the replicators of this sync"), "{err}");
    let site2 = cluster.connect(&dbs[2]).await.unwrap();
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'dugong')";
    assert_eq!(count(&site2, tables).await, 0, "nothing was changed on the new site");

    drop(replicator);
    let out = config.dugong(&["setup", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stdout(&out).contains("db2: set up from db0"), "{}", show(&out));
}

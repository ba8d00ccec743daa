//! The doorbell against real servers: one with `wal_level = logical`, shared
//! by these tests, and the testkit's shared one with the default `replica`.
//! A commit that wrote a change log rings within milliseconds, other commits
//! do not, the temporary slot confirms what it heard and goes with the bell,
//! a walsender ended by the server is replaced, and password logins work.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dugong_config::Config;
use dugong_core::DbId;
use dugong_replica::engine::postgres::{self, BellState, Doorbell};
use dugong_testkit::{wait_for, Cluster, ClusterOptions};
use futures_util::FutureExt;
use tokio::sync::Notify;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// Long enough for a slot to be created behind other tests' transactions.
const START_DEADLINE: Duration = Duration::from_secs(30);
const RING_DEADLINE: Duration = Duration::from_secs(5);

/// A new server with `wal_level = logical`, serving TLS when asked.
fn logical(tls: bool) -> Cluster {
    let opts = ClusterOptions {
        extra_settings: vec![("wal_level".into(), "logical".into())],
        tls,
        ..ClusterOptions::default()
    };
    Cluster::start(opts).expect("a cluster with wal_level = logical")
}

/// The server with `wal_level = logical` this test binary shares.
fn logical_cluster() -> &'static Cluster {
    static LOGICAL: OnceLock<Cluster> = OnceLock::new();
    LOGICAL.get_or_init(|| logical(false))
}

/// A source database with dugong installed and table `captured` captured
/// (through a sync with a second, empty database), and table `plain`
/// created afterwards, which is not.
struct Site {
    cluster: &'static Cluster,
    dbname: String,
    client: Client,
    config: Arc<Config>,
}

impl Site {
    async fn new(cluster: &'static Cluster, prefix: &str) -> Site {
        let schema = "CREATE TABLE captured (id int PRIMARY KEY, v text)";
        let mut dbnames = Vec::new();
        for i in 0..2 {
            let dbname = cluster.create_database(&format!("{prefix}_{i}")).await.expect("create database");
            cluster.psql(&dbname, schema).await.expect("schema");
            dbnames.push(dbname);
        }
        let config = Arc::new(config(cluster, &dbnames, "postgres", "", ""));
        drop(postgres::prepare(&config, &config.syncs[0]).await.expect("dugong installs"));
        let dbname = dbnames.swap_remove(0);
        let client = cluster.connect(&dbname).await.expect("connect");
        client.batch_execute("CREATE TABLE plain (id int PRIMARY KEY)").await.expect("plain table");
        Site { cluster, dbname, client, config }
    }

    fn bell(&self, config: &Arc<Config>) -> (Doorbell, Arc<Notify>, CancellationToken) {
        let ring = Arc::new(Notify::new());
        let cancel = CancellationToken::new();
        (Doorbell::start(config.clone(), DbId(0), ring.clone(), cancel.clone()), ring, cancel)
    }

    /// The bell's slot on this database: name, walsender pid, confirmed_flush_lsn.
    async fn slot(&self) -> Option<(String, Option<i32>, Option<String>)> {
        let row = self
            .client
            .query_opt(
                "SELECT slot_name::text, active_pid, confirmed_flush_lsn::text FROM pg_replication_slots
                 WHERE database = current_database() AND slot_name LIKE 'dugong_bell_%' AND temporary",
                &[],
            )
            .await
            .expect("reading the slots");
        row.map(|r| (r.get(0), r.get(1), r.get(2)))
    }
}

/// A config of `dbnames` on `cluster`, logging in as `user`, one sync;
/// `extra` is added to each database's entry (`, "sslmode": ...`).
fn config(cluster: &Cluster, dbnames: &[String], user: &str, pass: &str, extra: &str) -> Config {
    let port = cluster.port();
    let dbs: Vec<String> = dbnames
        .iter()
        .enumerate()
        .map(|(i, db)| {
            format!(r#"{{"id": {i}, "dbname": "{db}", "host": "127.0.0.1 port={port}", "user": "{user}", "pass": "{pass}"{extra}}}"#)
        })
        .collect();
    let json = format!(
        r#"{{"databases": [{}], "syncs": [{{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#,
        dbs.join(", ")
    );
    Config::from_str(&json, Path::new("doorbell.json")).expect("valid config")
}

async fn ringing(bell: &Doorbell) {
    rings("the doorbell to ring", || bell.state()).await;
}

/// Waits until `state` says the bell rings.
async fn rings(what: &str, state: impl Fn() -> BellState) {
    wait_for(what, START_DEADLINE, || async { (state() == BellState::Ringing).then_some(()) }).await;
}

/// Waits until `state` says the bell rests and `site` has no bell slot left.
async fn rests(what: &str, site: &Site, state: impl Fn() -> BellState) {
    wait_for(what, START_DEADLINE, || async {
        (state() == BellState::Resting && site.slot().await.is_none()).then_some(())
    })
    .await;
}

/// Waits until the bell is off, and returns why.
async fn off(bell: &Doorbell) -> String {
    wait_for("the doorbell to give up", START_DEADLINE, || async {
        match bell.state() {
            BellState::Off(reason) => Some(reason),
            _ => None,
        }
    })
    .await
}

/// Inserts into `captured` and returns how long until the bell rang, from
/// before the statement was sent (so the figure includes its round trip).
async fn insert_and_hear(site: &Site, ring: &Notify, id: i32) -> Duration {
    // A ring left over from an earlier commit must not count.
    let _ = ring.notified().now_or_never();
    let sent = Instant::now();
    site.client.execute("INSERT INTO captured VALUES ($1, 'x')", &[&id]).await.expect("insert");
    tokio::time::timeout(RING_DEADLINE, ring.notified())
        .await
        .expect("the bell rings after an insert into a change log");
    sent.elapsed()
}

#[tokio::test]
async fn a_commit_that_wrote_a_change_log_rings_and_others_do_not() {
    let site = Site::new(logical_cluster(), "bell_rings").await;
    let (bell, ring, cancel) = site.bell(&site.config);
    ringing(&bell).await;

    let mut delays = Vec::new();
    for id in 0..50 {
        delays.push(insert_and_hear(&site, &ring, id).await);
    }
    delays.sort();
    println!(
        "doorbell: insert sent → ring, over {} commits: median {:?}, p90 {:?}, max {:?}",
        delays.len(),
        delays[delays.len() / 2],
        delays[delays.len() * 9 / 10],
        delays[delays.len() - 1]
    );

    // A commit that wrote only the application's other tables: a negative
    // check can only wait, briefly; the bell rang within milliseconds above.
    let _ = ring.notified().now_or_never();
    site.client.execute("INSERT INTO plain VALUES (1)", &[]).await.expect("insert");
    let rang = tokio::time::timeout(Duration::from_millis(300), ring.notified()).await;
    assert!(rang.is_err(), "an insert into a table that is not captured rang the bell");

    let (_, pid, _) = site.slot().await.expect("the bell's slot while it rings");
    assert!(pid.is_some(), "the slot is in use");
    cancel.cancel();
    wait_for("the temporary slot to go with the bell", Duration::from_secs(10), || async {
        site.slot().await.is_none().then_some(())
    })
    .await;
    assert_eq!(bell.state(), BellState::Off("stopped".into()));

    // `dugong uninstall` leaves no publication behind.
    let mut client = site.cluster.connect(&site.dbname).await.expect("connect");
    postgres::uninstall(&mut client, DbId(0)).await.expect("uninstall");
    let left: i64 = client.query_one("SELECT count(*) FROM pg_publication", &[]).await.expect("publications").get(0);
    assert_eq!(left, 0);
}

#[tokio::test]
async fn the_slot_holds_no_wal_back() {
    let site = Site::new(logical_cluster(), "bell_confirms").await;
    let (bell, ring, _cancel) = site.bell(&site.config);
    ringing(&bell).await;
    insert_and_hear(&site, &ring, 1).await;
    let written: String =
        site.client.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.expect("wal position").get(0);
    // Confirmed at the server's next keepalive that asks (every 5 s) or the
    // bell's own update (every 10 s).
    wait_for("the slot to confirm the WAL written", Duration::from_secs(30), || async {
        let row = site
            .client
            .query_one(
                "SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots
                 WHERE database = current_database() AND slot_name LIKE 'dugong_bell_%'",
                &[&written],
            )
            .await
            .ok()?;
        row.get::<_, Option<bool>>(0).unwrap_or(false).then_some(())
    })
    .await;
    bell.stop().await;
    // The server drops the slot as soon as it sees the connection end.
    wait_for("the temporary slot to go with the bell", Duration::from_secs(10), || async {
        site.slot().await.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_walsender_ended_by_the_server_is_replaced() {
    let site = Site::new(logical_cluster(), "bell_reconnects").await;
    let (bell, ring, _cancel) = site.bell(&site.config);
    ringing(&bell).await;
    let (first, pid, _) = site.slot().await.expect("the bell's slot");
    let ended: bool = site
        .client
        .query_one("SELECT pg_terminate_backend($1)", &[&pid.expect("an active slot")])
        .await
        .expect("terminate")
        .get(0);
    assert!(ended);
    wait_for("a new slot, ringing", START_DEADLINE, || async {
        let (name, pid, _) = site.slot().await?;
        (name != first && pid.is_some() && bell.state() == BellState::Ringing).then_some(())
    })
    .await;
    insert_and_hear(&site, &ring, 1).await;
    bell.stop().await;
}

#[tokio::test]
async fn a_resting_bell_gives_its_slot_back_and_rings_at_once_when_woken() {
    let site = Site::new(logical_cluster(), "bell_rests").await;
    let (bell, ring, _cancel) = site.bell(&site.config);
    ringing(&bell).await;
    let (first, _, _) = site.slot().await.expect("the bell's slot");
    bell.rest(true);
    rests("the bell to rest, its slot gone", &site, || bell.state()).await;
    // No walsender nor any other connection: the server decodes nothing
    // for a resting bell.
    wait_for("the bell's connections to end", START_DEADLINE, || async {
        let row = site
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'dugong doorbell' AND datname = current_database()",
                &[],
            )
            .await
            .ok()?;
        (row.get::<_, i64>(0) == 0).then_some(())
    })
    .await;
    assert_eq!(bell.state(), BellState::Resting);
    // A commit while it rests: when woken, the bell rings once at once, so
    // the replicator looks for what it did not hear.
    site.client.execute("INSERT INTO captured VALUES (1, 'while resting')", &[]).await.expect("insert");
    let _ = ring.notified().now_or_never();
    bell.rest(false);
    tokio::time::timeout(START_DEADLINE, ring.notified()).await.expect("a woken bell rings once it listens");
    ringing(&bell).await;
    let (second, _, _) = site.slot().await.expect("a new slot");
    assert_ne!(first, second, "a woken bell opens a new temporary slot");
    insert_and_hear(&site, &ring, 2).await;
    bell.stop().await;
}

/// A bell waits before it connects, so that its connections and slot do not
/// stand in the way of the replicator's first run; told that run is done, it
/// connects at once. Here it would otherwise wait an hour.
#[tokio::test]
async fn a_settling_bell_told_the_first_run_is_done_connects_at_once() {
    let site = Site::new(logical_cluster(), "bell_settles").await;
    let ring = Arc::new(Notify::new());
    let cancel = CancellationToken::new();
    let hour = Duration::from_secs(3600);
    let bell = Doorbell::start_settling(site.config.clone(), DbId(0), ring.clone(), cancel.clone(), hour);
    assert_eq!(bell.state(), BellState::Starting);
    bell.settled();
    ringing(&bell).await;
    insert_and_hear(&site, &ring, 1).await;
    bell.stop().await;
}

#[tokio::test]
async fn syncs_reading_one_database_share_its_bell_which_rests_only_when_all_ask() {
    let site = Site::new(logical_cluster(), "bell_shared").await;
    let (one, two) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let first = postgres::subscribe(&site.config, DbId(0), &one);
    let second = postgres::subscribe(&site.config, DbId(0), &two);
    rings("the shared bell to ring", || first.state()).await;
    assert_eq!(second.state(), BellState::Ringing, "one bell for both");
    let slots = "SELECT count(*) FROM pg_replication_slots WHERE database = current_database() AND slot_name LIKE 'dugong_bell_%'";
    let count = |sql: &'static str| {
        let client = &site.client;
        async move { client.query_one(sql, &[]).await.expect("count").get::<_, i64>(0) }
    };
    assert_eq!(count(slots).await, 1, "one slot for both syncs");
    // A commit rings every sync listening.
    let _ = (one.notified().now_or_never(), two.notified().now_or_never());
    site.client.execute("INSERT INTO captured VALUES (1, 'x')", &[]).await.expect("insert");
    for ring in [&one, &two] {
        tokio::time::timeout(RING_DEADLINE, ring.notified()).await.expect("both syncs hear the ring");
    }
    // One sync busy, the other not: the bell rings on.
    first.rest(true);
    let _ = two.notified().now_or_never();
    site.client.execute("INSERT INTO captured VALUES (2, 'x')", &[]).await.expect("insert");
    tokio::time::timeout(RING_DEADLINE, two.notified()).await.expect("the idle sync still hears rings");
    assert_eq!(first.state(), BellState::Ringing);
    // Both busy: it rests, and its slot goes.
    second.rest(true);
    rests("the shared bell to rest", &site, || first.state()).await;
    first.rest(false);
    rings("the bell to ring again for the sync that waits", || second.state()).await;
    // The sync that waited leaves; the one left is busy: the bell rests.
    first.stop().await;
    rests("the bell to rest for the busy sync left", &site, || second.state()).await;
    second.rest(false);
    rings("the bell to ring again", || second.state()).await;
    assert_eq!(count(slots).await, 1, "the bell stays while a sync listens");
    // The last one to leave stops it.
    second.stop().await;
    wait_for("the slot to go with the last sync", Duration::from_secs(10), || async {
        site.slot().await.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn without_wal_level_logical_the_bell_is_off_and_says_why() {
    let cluster = Cluster::shared();
    let dbname = cluster.create_database("bell_replica_wal").await.expect("create database");
    let config = Arc::new(config(cluster, &[dbname.clone(), dbname], "postgres", "", ""));
    let ring = Arc::new(Notify::new());
    let bell = Doorbell::start(config, DbId(0), ring, CancellationToken::new());
    let reason = off(&bell).await;
    assert!(reason.contains("wal_level"), "{reason}");
    bell.stop().await;
}

#[tokio::test]
async fn logins_with_scram_and_md5_passwords_ring() {
    let site = Site::new(logical_cluster(), "bell_passwords").await;
    // The publication exists once a bell of the owner of the change logs
    // has run: a replication role that does not own them cannot create it.
    let (owner, _, _) = site.bell(&site.config);
    ringing(&owner).await;
    owner.stop().await;

    let roles = [("bell_scram", "scram-sha-256"), ("bell_md5", "md5")];
    allow_passwords(site.cluster, &site.client, &roles).await;
    for (role, method) in roles {
        let config = Arc::new(config(site.cluster, &[site.dbname.clone(), site.dbname.clone()], role, "s3cret", ""));
        let (bell, ring, _cancel) = site.bell(&config);
        ringing(&bell).await;
        insert_and_hear(&site, &ring, if method == "md5" { 10 } else { 11 }).await;
        bell.stop().await;
    }

    // A wrong password: off, and the reason says so.
    let config = Arc::new(config(site.cluster, &[site.dbname.clone(), site.dbname.clone()], "bell_scram", "wrong", ""));
    let (bell, _, _cancel) = site.bell(&config);
    let reason = off(&bell).await;
    assert!(reason.contains("password authentication failed"), "{reason}");
}

#[tokio::test]
async fn the_bell_rings_over_tls() {
    static TLS: OnceLock<Cluster> = OnceLock::new();
    let cluster = TLS.get_or_init(|| logical(true));
    let site = Site::new(cluster, "bell_tls").await;
    let ca = cluster.ca_cert_path().expect("a TLS cluster has a CA").display().to_string();
    let tls = format!(r#", "sslmode": "verify-full", "sslrootcert": "{ca}""#);
    let config = Arc::new(config(cluster, &[site.dbname.clone(), site.dbname.clone()], "postgres", "", &tls));
    let (bell, ring, _cancel) = site.bell(&config);
    ringing(&bell).await;
    let (_, pid, _) = site.slot().await.expect("the bell's slot");
    let ssl: bool = site
        .client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&pid.expect("an active slot")])
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(ssl, "the walsender's connection uses TLS");
    insert_and_hear(&site, &ring, 1).await;
    bell.stop().await;
}

/// Creates `roles` (LOGIN REPLICATION, password "s3cret" stored for the
/// method) and puts a `pg_hba.conf` line for each above the testkit's trust
/// lines.
async fn allow_passwords(cluster: &Cluster, client: &Client, roles: &[(&str, &str)]) {
    for (role, method) in roles {
        let encryption = if *method == "md5" { "md5" } else { "scram-sha-256" };
        client
            .batch_execute(&format!(
                "SET password_encryption = '{encryption}';
                 DO $$ BEGIN
                   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                     CREATE ROLE {role} LOGIN REPLICATION PASSWORD 's3cret';
                   END IF;
                 END $$;
                 RESET password_encryption;"
            ))
            .await
            .expect("create role");
    }
    let hba = cluster.data_dir().join("pg_hba.conf");
    let before = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    let ours: String = roles.iter().map(|(role, method)| format!("host all {role} 127.0.0.1/32 {method}\n")).collect();
    if !before.starts_with(&ours) {
        std::fs::write(&hba, format!("{ours}{before}")).expect("write pg_hba.conf");
    }
    client.batch_execute("SELECT pg_reload_conf()").await.expect("reload");
    // Once the server has read the file, a login without a password fails.
    wait_for("the server to read pg_hba.conf", Duration::from_secs(10), || async {
        let mut login = cluster.pg_config("postgres");
        login.user("bell_md5");
        login.connect(tokio_postgres::NoTls).await.is_err().then_some(())
    })
    .await;
}

//! TLS on the replicator's connections, against real servers: one serving TLS
//! with a certificate from a test CA, and the shared one without TLS. Each
//! sslmode does what libpq's does, and a sync replicates over TLS.

use std::path::Path;
use std::sync::OnceLock;

use dugong_config::{Config, Database};
use dugong_replica::engine::postgres;
use dugong_replica::run::{self, RunLimits};
use dugong_replica::ReplicaError;
use dugong_testkit::{Cluster, ClusterOptions};

/// The TLS server this test binary shares.
fn tls_cluster() -> &'static Cluster {
    static TLS: OnceLock<Cluster> = OnceLock::new();
    TLS.get_or_init(|| Cluster::start(ClusterOptions { tls: true, ..ClusterOptions::default() }).expect("TLS cluster"))
}

fn ca_of(cluster: &Cluster) -> String {
    let path = cluster.ca_cert_path().expect("a TLS cluster has a CA");
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Database 0 of a config: `dbname` on `cluster`, with the TLS fields `tls`
/// (`"sslmode": "require"`, …) added to the entry.
fn database(cluster: &Cluster, dbname: &str, tls: &str) -> Database {
    let port = cluster.port();
    let json = format!(
        r#"{{"databases": [
             {{"id": 0, "dbname": "{dbname}", "host": "127.0.0.1 port={port}", "user": "postgres" {tls}}},
             {{"id": 1, "dbname": "{dbname}", "host": "127.0.0.1 port={port}", "user": "postgres"}}],
            "syncs": [{{"sources": [0, 1], "tables": "all"}}]}}"#
    );
    let mut config = Config::from_str(&json, Path::new("tls.json")).unwrap_or_else(|err| panic!("{tls}: {err}"));
    config.databases.remove(0)
}

/// Whether the replicator's connection to `db` runs over TLS, as the server sees it.
async fn uses_tls(db: &Database) -> Result<bool, ReplicaError> {
    let client = postgres::connect(db, "dugong tls test").await?;
    let row = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap();
    Ok(row.get(0))
}

async fn connect_error(db: &Database) -> String {
    match postgres::connect(db, "dugong tls test").await {
        Ok(_) => panic!("connected, expected an error"),
        Err(err) => err.to_string(),
    }
}

#[tokio::test]
async fn require_and_prefer_use_tls_when_the_server_offers_it() {
    let cluster = tls_cluster();
    let dbname = cluster.create_database("tls_modes").await.unwrap();
    // No CA given: the certificate is not checked, as libpq.
    assert!(uses_tls(&database(cluster, &dbname, r#", "sslmode": "require""#)).await.unwrap());
    assert!(uses_tls(&database(cluster, &dbname, r#", "sslmode": "prefer""#)).await.unwrap());
    assert!(uses_tls(&database(cluster, &dbname, "")).await.unwrap(), "prefer is the default");
    assert!(!uses_tls(&database(cluster, &dbname, r#", "sslmode": "disable""#)).await.unwrap());
}

#[tokio::test]
async fn verify_full_and_verify_ca_trust_the_given_ca() {
    let cluster = tls_cluster();
    let dbname = cluster.create_database("tls_verify").await.unwrap();
    let ca = ca_of(cluster);
    for mode in ["verify-full", "verify-ca", "require"] {
        let db = database(cluster, &dbname, &format!(r#", "sslmode": "{mode}", "sslrootcert": "{ca}""#));
        assert!(uses_tls(&db).await.unwrap(), "{mode}");
    }
    // The host keyword works the same way.
    let port = cluster.port();
    let json = format!(
        r#"{{"databases": [
             {{"id": 0, "dbname": "{dbname}", "host": "127.0.0.1 port={port} sslmode=verify-full sslrootcert={ca}", "user": "postgres"}},
             {{"id": 1, "dbname": "{dbname}", "host": "127.0.0.1 port={port}", "user": "postgres"}}],
            "syncs": [{{"sources": [0, 1], "tables": "all"}}]}}"#
    );
    let config = Config::from_str(&json, Path::new("tls.json")).unwrap();
    assert!(uses_tls(&config.databases[0]).await.unwrap());
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let cluster = tls_cluster();
    let dbname = cluster.create_database("tls_names").await.unwrap();
    let ca = ca_of(cluster);
    let port = cluster.port();
    // Reach the server at 127.0.0.1 under a name its certificate does not carry.
    let entry = |mode: &str| {
        let json = format!(
            r#"{{"databases": [
                 {{"id": 0, "url": "postgres://postgres@wrong.test:{port}/{dbname}?hostaddr=127.0.0.1&sslmode={mode}", "sslrootcert": "{ca}"}},
                 {{"id": 1, "dbname": "{dbname}", "host": "127.0.0.1 port={port}", "user": "postgres"}}],
                "syncs": [{{"sources": [0, 1], "tables": "all"}}]}}"#
        );
        Config::from_str(&json, Path::new("tls.json")).unwrap().databases.remove(0)
    };
    assert!(uses_tls(&entry("verify-ca")).await.unwrap());
    let err = connect_error(&entry("verify-full")).await;
    assert!(err.starts_with("db0 is unreachable"), "{err}");
    assert!(err.contains("sslmode=verify-full"), "{err}");
    assert!(err.contains("not valid for name") && err.contains("wrong.test"), "{err}");
}

#[tokio::test]
async fn verify_full_refuses_a_server_signed_by_another_ca() {
    let cluster = tls_cluster();
    let dbname = cluster.create_database("tls_wrong_ca").await.unwrap();
    // Another site's CA: a real certificate authority, just not this server's.
    let other = Cluster::start(ClusterOptions { tls: true, ..ClusterOptions::default() }).expect("second TLS cluster");
    for mode in ["verify-full", "verify-ca", "require"] {
        let db = database(cluster, &dbname, &format!(r#", "sslmode": "{mode}", "sslrootcert": "{}""#, ca_of(&other)));
        let err = connect_error(&db).await;
        assert!(err.starts_with("db0 is unreachable"), "{mode}: {err}");
        assert!(err.contains(&format!("sslmode={mode}")), "{mode}: {err}");
        assert!(err.contains("invalid peer certificate: UnknownIssuer"), "{mode}: {err}");
    }
    // Without sslrootcert, the system's CAs are trusted, and none signed the test CA.
    let err = connect_error(&database(cluster, &dbname, r#", "sslmode": "verify-full""#)).await;
    assert!(err.starts_with("db0"), "{err}");
    assert!(err.contains("UnknownIssuer") || err.contains("system's CAs"), "{err}");
}

#[tokio::test]
async fn without_tls_on_the_server_prefer_is_plain_and_require_fails() {
    let cluster = Cluster::shared();
    let dbname = cluster.create_database("tls_none").await.unwrap();
    assert!(!uses_tls(&database(cluster, &dbname, r#", "sslmode": "prefer""#)).await.unwrap());
    for mode in ["require", "verify-ca", "verify-full"] {
        let err = connect_error(&database(cluster, &dbname, &format!(r#", "sslmode": "{mode}""#))).await;
        assert!(err.starts_with("db0 is unreachable"), "{mode}: {err}");
        assert!(err.contains(&format!("sslmode={mode}")), "{mode}: {err}");
        assert!(err.contains("server does not support TLS"), "{mode}: {err}");
    }
}

#[tokio::test]
async fn a_sync_replicates_over_tls() {
    let cluster = tls_cluster();
    let mut dbs = Vec::new();
    for site in 0..2 {
        let db = cluster.create_database(&format!("tls_sync_s{site}")).await.unwrap();
        cluster.psql(&db, "CREATE TABLE item (id int PRIMARY KEY, name text)").await.unwrap();
        dbs.push(db);
    }
    let port = cluster.port();
    let json = format!(
        r#"{{"databases": [
             {{"id": 0, "dbname": "{}", "host": "127.0.0.1 port={port} sslmode=require", "user": "postgres"}},
             {{"id": 1, "dbname": "{}", "host": "127.0.0.1 port={port}", "sslmode": "require", "user": "postgres"}}],
            "syncs": [{{"name": "over_tls", "sources": [0, 1], "targets": [], "tables": "all"}}]}}"#,
        dbs[0], dbs[1]
    );
    let config = Config::from_str(&json, Path::new("tls.json")).unwrap();
    let mut prepared = postgres::prepare(&config, &config.syncs[0]).await.expect("prepare over TLS");
    cluster.psql(&dbs[0], "INSERT INTO item VALUES (1, 'sent over TLS')").await.unwrap();
    let outcome = run::run_once(&mut prepared, RunLimits::default()).await.expect("run over TLS");
    assert_eq!(outcome.inserts, 1, "{outcome:?}");

    let site1 = cluster.connect(&dbs[1]).await.unwrap();
    let row = site1.query_one("SELECT name FROM item WHERE id = 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "sent over TLS");
    // Every connection the replicator holds runs over TLS.
    let row = site1
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
               FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE a.datname = ANY($1) AND a.application_name LIKE 'dugong%'",
            &[&dbs],
        )
        .await
        .unwrap();
    let (over_tls, plain): (i64, i64) = (row.get(0), row.get(1));
    assert!(over_tls >= 2, "{over_tls} replicator connections over TLS");
    assert_eq!(plain, 0, "replicator connections without TLS");
}

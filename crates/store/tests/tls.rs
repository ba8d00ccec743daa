//! The server's own PostgreSQL connections over TLS, with libpq's sslmode
//! meanings: verify-full checks the chain and the host name, verify-ca the
//! chain only, require anything; require never falls back to a plain
//! connection, and the sessions really are encrypted.

use dugong_store::{DbUrl, Store, StoreOptions};
use dugong_testkit::{Cluster, ClusterOptions, TestCa};

/// Opens a store on `url` and migrates it; the error text when it fails.
async fn open(url: &str) -> Result<Store, String> {
    let url: DbUrl = url.parse().map_err(|e: dugong_store::StoreError| e.to_string())?;
    let store = Store::open(&url, StoreOptions::default()).await.map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    Ok(store)
}

#[tokio::test]
async fn every_sslmode_against_a_tls_server() {
    let cluster = Cluster::start(ClusterOptions { tls: true, ..Default::default() }).expect("TLS cluster");
    let db = cluster.create_database("tls_modes").await.unwrap();
    let ca = cluster.ca_cert_path().expect("the cluster's CA").display().to_string();
    let port = cluster.port();
    let dir = tempfile::tempdir().unwrap();
    let stranger = TestCa::new(dir.path(), "stranger").unwrap().cert_path().display().to_string();
    let url = |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/{db}?{query}");
    // hostaddr connects to 127.0.0.1 while TLS checks the name `wrong.example`.
    let misnamed = |mode: &str, rootcert: &str| {
        format!(
            "host=wrong.example hostaddr=127.0.0.1 port={port} user=postgres dbname={db} sslmode={mode} \
             sslrootcert={rootcert} application_name=tlscheck"
        )
    };

    for (what, target) in [
        (
            "verify-full by name",
            url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}&application_name=tlscheck")),
        ),
        (
            "verify-full by address",
            url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}&application_name=tlscheck")),
        ),
        ("verify-ca ignores the name", misnamed("verify-ca", &ca)),
        ("require checks nothing", url("127.0.0.1", "sslmode=require&application_name=tlscheck")),
    ] {
        let store = open(&target).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        store.ping().await.unwrap();
        let admin = cluster.connect(&db).await.unwrap();
        let row = admin
            .query_one(
                "SELECT count(*), bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name = 'tlscheck'",
                &[],
            )
            .await
            .unwrap();
        let (sessions, all_tls): (i64, Option<bool>) = (row.get(0), row.get(1));
        assert!(sessions > 0 && all_tls == Some(true), "{what}: {sessions} sessions, TLS {all_tls:?}");
        drop(store);
    }

    for (what, target, reason) in [
        ("the wrong name", misnamed("verify-full", &ca), "certificate"),
        ("a stranger CA", url("localhost", &format!("sslmode=verify-full&sslrootcert={stranger}")), "certificate"),
        (
            "a stranger CA, chain only",
            url("localhost", &format!("sslmode=verify-ca&sslrootcert={stranger}")),
            "certificate",
        ),
    ] {
        let err = open(&target).await.err().unwrap_or_else(|| panic!("{what} was accepted"));
        assert!(err.contains(reason), "{what}: {err}");
    }
}

#[tokio::test]
async fn tls_required_never_falls_back_to_plain() {
    let plain = Cluster::shared();
    let db = plain.create_database("tls_downgrade").await.unwrap();
    let url = |mode: &str| format!("postgres://postgres@127.0.0.1:{}/{db}?sslmode={mode}", plain.port());
    for mode in ["require", "verify-ca", "verify-full"] {
        let err = open(&url(mode)).await.err().unwrap_or_else(|| panic!("sslmode={mode} connected in plain"));
        assert!(err.contains("TLS") || err.contains("SSL") || err.contains("certificate"), "{mode}: {err}");
    }
    // prefer takes what the server offers; disable never asks.
    for mode in ["prefer", "disable"] {
        open(&url(mode)).await.unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
    }
}

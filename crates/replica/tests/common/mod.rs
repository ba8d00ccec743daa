//! Shared set-up for the replicator's integration tests: two or three "sites"
//! as databases of the test binary's shared PostgreSQL cluster, a config file
//! for them, and helpers to run syncs and read tables.

#![allow(dead_code)]

use dugong_config::Config;
use dugong_replica::engine::postgres::{self, Postgres};
use dugong_replica::engine::{Engine, Prepared};
use dugong_replica::record::RunOutcome;
use dugong_replica::run::{self, RunLimits};
use dugong_replica::{ErrorPolicy, ReplicaError};
use dugong_testkit::Cluster;
use std::path::Path;
use std::time::Duration;
use tokio_postgres::Client;

pub struct Sites {
    pub cluster: &'static Cluster,
    pub dbs: Vec<String>,
    pub clients: Vec<Client>,
}

impl Sites {
    /// `n` fresh databases on the shared cluster, each set up with `schema`.
    pub async fn new(prefix: &str, n: usize, schema: &str) -> Sites {
        let cluster = Cluster::shared();
        let mut dbs = Vec::new();
        let mut clients = Vec::new();
        for i in 0..n {
            let db = cluster.create_database(&format!("{prefix}_s{i}")).await.expect("create database");
            let client = cluster.connect(&db).await.expect("connect");
            client.batch_execute(schema).await.expect("schema");
            dbs.push(db);
            clients.push(client);
        }
        Sites { cluster, dbs, clients }
    }

    /// The Bucardo-style JSON for these sites; `sync` is the body of one sync.
    pub fn json(&self, sync: &str) -> String {
        let dbs: Vec<String> = self
            .dbs
            .iter()
            .enumerate()
            .map(|(i, db)| {
                format!(
                    r#"{{"id": {i}, "dbname": "{db}", "host": "127.0.0.1 port={}", "user": "postgres", "pass": ""}}"#,
                    self.cluster.port()
                )
            })
            .collect();
        format!(r#"{{"databases": [{}], "syncs": [{sync}]}}"#, dbs.join(", "))
    }

    pub fn config(&self, sync: &str) -> Config {
        Config::from_str(&self.json(sync), Path::new("test.json")).expect("valid config")
    }

    /// A master-master sync of every site, tables "all".
    pub fn master_master(&self) -> Config {
        Config::from_str(&self.master_master_json(), Path::new("test.json")).expect("valid config")
    }

    /// [`Sites::master_master`] as the JSON file says it.
    pub fn master_master_json(&self) -> String {
        let ids: Vec<String> = (0..self.dbs.len()).map(|i| i.to_string()).collect();
        self.json(&format!(r#"{{"sources": [{}], "targets": [], "tables": "all", "onetimecopy": 0}}"#, ids.join(",")))
    }

    pub fn client(&self, site: usize) -> &Client {
        &self.clients[site]
    }

    /// Every row of a query, each as text columns joined with `|`, sorted.
    pub async fn rows(&self, site: usize, sql: &str) -> Vec<String> {
        let rows = self.clients[site].simple_query(sql).await.expect("query");
        let mut out: Vec<String> = rows
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).unwrap_or("NULL").to_string()).collect::<Vec<_>>().join("|"))
                }
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    /// Asserts every site returns the same rows for `sql`, and returns them.
    pub async fn assert_same(&self, sql: &str) -> Vec<String> {
        let first = self.rows(0, sql).await;
        for i in 1..self.dbs.len() {
            assert_eq!(self.rows(i, sql).await, first, "site {i} differs from site 0 for {sql}");
        }
        first
    }
}

/// Prepares the first sync. A test that dropped a prepared sync just before
/// may find its claim still held for a moment (the server ends the dropped
/// sessions on its own time): that answer is asked again, with a deadline.
pub async fn prepare(config: &Config) -> Prepared<Postgres> {
    dugong_testkit::wait_for("the previous replicator's claim to end", Duration::from_secs(10), || async {
        match postgres::prepare(config, &config.syncs[0]).await {
            Ok(p) => Some(p),
            Err(ReplicaError::Standby { .. }) => None,
            Err(e) => panic!("prepare: {e}"),
        }
    })
    .await
}

/// Runs until nothing is pending; returns the outcomes of runs that did work.
/// A run that clashed with a write is run again, as the daemon does: the
/// first run after `prepare` trusts the polls prepare made, and one that a
/// test's write made stale fails the run's check in its snapshot.
pub async fn run_until_idle(p: &mut Prepared<Postgres>, limits: RunLimits) -> Vec<RunOutcome> {
    let mut outcomes = Vec::new();
    let mut clashes = 0;
    for _ in 0..10_000 {
        let o = match run::run_once(p, limits).await {
            Ok(o) => o,
            Err(e) if e.policy() == ErrorPolicy::RetrySoon && clashes < 50 => {
                clashes += 1;
                continue;
            }
            Err(e) => panic!("run: {e}"),
        };
        if o.caught_up() {
            return outcomes;
        }
        if o.empty {
            // Runs in flight across a WAN: their answers are on their way.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            continue;
        }
        outcomes.push(o);
    }
    panic!("still not idle after 10000 runs");
}

pub async fn sync_all(p: &mut Prepared<Postgres>) -> Vec<RunOutcome> {
    run_until_idle(p, RunLimits::default()).await
}

/// The sync's initial copy (`onetimecopy`), as the daemon does it at start.
pub async fn initial_copy(p: &mut Prepared<Postgres>) -> Result<(), ReplicaError> {
    p.engine.initial_copy(&p.plan, false, &Default::default(), &[]).await
}

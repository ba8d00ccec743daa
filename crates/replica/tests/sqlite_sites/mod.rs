//! SQLite sites for the replicator's tests: files in a temp directory, made
//! with a schema, a configuration naming them, and helpers to read them back.

#![allow(dead_code)]

use dugong_config::Config;
use dugong_replica::engine::sqlite::{self, Sqlite};
use dugong_replica::engine::{Engine, Prepared};
use dugong_replica::record::{Replicator, RunOutcome};
use dugong_replica::run::{self, RunLimits};
use rusqlite::Connection;
use std::path::PathBuf;
use std::time::Duration;

pub struct Sites {
    pub dir: tempfile::TempDir,
    pub paths: Vec<PathBuf>,
}

impl Sites {
    /// `n` files, each created with `schema`.
    pub fn new(n: usize, schema: &str) -> Sites {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..n).map(|i| dir.path().join(format!("site{i}.db"))).collect();
        for p in &paths {
            Connection::open(p).unwrap().execute_batch(schema).unwrap();
        }
        Sites { dir, paths }
    }

    /// A configuration with every file as a source of one sync, plus `sync_extra`
    /// JSON fields (e.g. `, "conflict_strategy": "abort"`).
    pub fn config(&self, sync_extra: &str) -> Config {
        self.config_with_tables("all", sync_extra)
    }

    /// [`Sites::config`] with a `tables` list.
    pub fn config_with_tables(&self, tables: &str, sync_extra: &str) -> Config {
        let dbs: Vec<String> = self
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| format!(r#"{{"id": {i}, "url": "sqlite:{}"}}"#, p.display()))
            .collect();
        let sources: Vec<String> = (0..self.paths.len()).map(|i| i.to_string()).collect();
        let copy = if sync_extra.contains("onetimecopy") { "" } else { r#", "onetimecopy": 0"# };
        let text = format!(
            r#"{{"databases": [{}], "syncs": [{{"sources": [{}], "targets": [], "tables": "{tables}"{copy}{sync_extra}}}]}}"#,
            dbs.join(", "),
            sources.join(", ")
        );
        Config::from_str(&text, &self.dir.path().join("bucardo.json")).unwrap()
    }

    /// A connection as an application opens one: foreign keys on, waiting for locks.
    pub fn conn(&self, i: usize) -> Connection {
        let c = Connection::open(&self.paths[i]).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        c
    }

    pub fn exec(&self, i: usize, sql: &str) {
        self.conn(i).execute_batch(sql).unwrap();
    }

    /// Each row of `sql` as `typeof:value|…`, so storage classes are compared too.
    pub fn rows(&self, i: usize, sql: &str) -> Vec<String> {
        let c = self.conn(i);
        let mut stmt = c.prepare(sql).unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let cells: Vec<String> = (0..n)
                    .map(|k| {
                        use rusqlite::types::ValueRef;
                        match r.get_ref(k).unwrap() {
                            ValueRef::Null => "Null".to_string(),
                            ValueRef::Integer(i) => format!("Integer({i})"),
                            ValueRef::Real(f) => format!("Real({f:?})"),
                            ValueRef::Text(t) => format!("Text({:?})", String::from_utf8_lossy(t)),
                            ValueRef::Blob(b) => format!("Blob({b:?})"),
                        }
                    })
                    .collect();
                Ok(cells.join("|"))
            })
            .unwrap();
        rows.map(|r| r.unwrap()).collect()
    }

    /// Asserts every site returns the same rows for `sql`; returns them.
    pub fn assert_same(&self, sql: &str) -> Vec<String> {
        let first = self.rows(0, sql);
        for i in 1..self.paths.len() {
            assert_eq!(self.rows(i, sql), first, "site {i} differs from site 0 for {sql}");
        }
        first
    }

    pub fn count(&self, i: usize, sql: &str) -> i64 {
        self.conn(i).query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Change rows left in every change log of site `i`.
    pub fn change_rows(&self, i: usize) -> i64 {
        let c = self.conn(i);
        let names: Vec<String> = c
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'dugong_delta_%'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        names
            .iter()
            .map(|n| c.query_row(&format!("SELECT count(*) FROM \"{n}\""), [], |r| r.get::<_, i64>(0)).unwrap())
            .sum()
    }
}

/// A runtime for the replicator's async steps; the tests themselves are
/// plain threads driving SQLite files.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

pub fn prepare(config: &Config) -> Prepared<Sqlite> {
    block_on(sqlite::prepare(config, &config.syncs[0])).unwrap()
}

/// Prepares the first sync as the replicator `who`.
pub fn prepare_as(config: &Config, who: &Replicator) -> Result<Prepared<Sqlite>, dugong_replica::ReplicaError> {
    block_on(Sqlite::prepare(&std::sync::Arc::new(config.clone()), &config.syncs[0], who))
}

/// One run of the sync.
pub fn run_once(p: &mut Prepared<Sqlite>, limits: RunLimits) -> Result<RunOutcome, dugong_replica::ReplicaError> {
    block_on(run::run_once(p, limits))
}

/// Runs until a run finds nothing pending; returns the runs that moved data.
pub fn sync_all(p: &mut Prepared<Sqlite>) -> Vec<RunOutcome> {
    sync_all_with(p, RunLimits::default())
}

pub fn sync_all_with(p: &mut Prepared<Sqlite>, limits: RunLimits) -> Vec<RunOutcome> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        let o = run_once(p, limits).unwrap();
        if o.empty {
            return out;
        }
        out.push(o);
    }
    panic!("the sync never caught up");
}

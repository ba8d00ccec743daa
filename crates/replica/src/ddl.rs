//! `dugong ddl`: a schema change on every database of a sync while the
//! applications keep writing on all of them.
//!
//! The statement is applied everywhere or nowhere (the engine's part,
//! `engine::postgres::ddl`): a site that refuses it leaves every site as it
//! was and names itself. Tables it creates that a sync replicates are
//! captured in the same transaction. The replicator needs no restart: each
//! run checks the tables' shape in its own snapshot, so rows written into a
//! new column wait until the sync has prepared again and then ship; a table
//! alike nowhere yet is held (see `plan`). [`wait`] then watches the sync
//! until what waited has shipped.

use crate::engine::postgres::ddl::Applied;
use crate::engine::{self, postgres, EngineKind};
use crate::error::ReplicaError;
use crate::plan;
use crate::status::{self, SyncStatus};
use dugong_config::{Config, Sync};
use dugong_core::DbId;
use serde::Serialize;
use std::time::{Duration, Instant};

pub use crate::engine::postgres::ddl::{DdlError, DdlOptions};

/// What applying the statement did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DdlReport {
    /// The syncs whose databases the statement ran on.
    pub syncs: Vec<String>,
    /// Each database, in order, with how long the statement took there.
    pub sites: Vec<SiteApplied>,
    /// Tables the statement created that a sync replicates: captured on
    /// these databases in the same transaction.
    pub new_tables: Vec<NewTable>,
    /// Tables not alike on every database after the statement (held by the
    /// replicator until they are), with why.
    pub held: Vec<String>,
    /// Attempts it took (busy locks roll back and try again).
    pub attempts: u32,
}

impl DdlReport {
    fn new(syncs: Vec<String>, applied: Applied) -> DdlReport {
        let mut new_tables: Vec<NewTable> = Vec::new();
        for (table, db) in applied.captured {
            let name = table.display_name();
            match new_tables.iter_mut().find(|t| t.table == name) {
                Some(t) => t.captured_on.push(db.to_string()),
                None => new_tables.push(NewTable { table: name, captured_on: vec![db.to_string()] }),
            }
        }
        DdlReport {
            syncs,
            sites: applied
                .sites
                .into_iter()
                .map(|(db, took)| SiteApplied { db: db.to_string(), ms: took.as_secs_f64() * 1000.0 })
                .collect(),
            new_tables,
            held: applied.held,
            attempts: applied.attempts,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteApplied {
    pub db: String,
    pub ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewTable {
    pub table: String,
    pub captured_on: Vec<String>,
}

/// Applies `sql` on every database of the chosen syncs (`only`, or all), or
/// only on `databases` when given (to finish a change that committed on some
/// sites only).
pub async fn apply(
    config: &Config,
    only: Option<&str>,
    databases: &[DbId],
    sql: &str,
    options: &DdlOptions,
) -> Result<DdlReport, DdlError> {
    if sql.trim().is_empty() {
        return Err(DdlError::Config("--sql is empty: give the schema statement to run on every site".into()));
    }
    let syncs = plan::chosen_syncs(config, only)?;
    for sync in &syncs {
        if engine::kind_of(config, sync)? == EngineKind::Sqlite {
            return Err(DdlError::Config(format!(
                "{} replicates SQLite files: dugong ddl changes PostgreSQL sites; change each file's schema while the replicator runs (it holds the table until every file has the change)",
                sync.name
            )));
        }
    }
    let narrowed: Vec<Sync>;
    let chosen: Vec<&Sync> = if databases.is_empty() {
        syncs
    } else {
        for db in databases {
            if !syncs.iter().any(|s| s.databases().contains(db)) {
                return Err(DdlError::Config(format!(
                    "--database {}: {db} is not a database of the chosen syncs",
                    db.0
                )));
            }
        }
        narrowed = syncs.iter().map(|s| only_on(s, databases)).collect();
        narrowed.iter().collect()
    };
    let applied = postgres::ddl::apply(config, &chosen, sql, options).await?;
    let report = DdlReport::new(chosen.iter().map(|s| s.name.to_string()).collect(), applied);
    tracing::info!(syncs = %report.syncs.join(","), sites = report.sites.len(), attempts = report.attempts, "schema statement applied");
    Ok(report)
}

/// `sync` with only the databases of `keep`.
fn only_on(sync: &Sync, keep: &[DbId]) -> Sync {
    let mut s = sync.clone();
    s.sources.retain(|d| keep.contains(d));
    s.targets.retain(|d| keep.contains(d));
    s
}

/// How each sync stood once [`wait`] returned.
#[derive(Debug, Clone, Serialize)]
pub struct Settled {
    pub sync: String,
    /// Good, with nothing waiting anywhere.
    pub shipped: bool,
    /// A replicator runs the sync (else the changes wait for one to start).
    pub replicator_running: bool,
    pub state: String,
    pub pending: Option<i64>,
    pub seconds: f64,
}

/// Watches each of `syncs` until it is Good with nothing waiting (what was
/// written around the change has shipped), or `deadline` passes. A sync no
/// replicator runs is reported at once.
pub async fn wait(config: &Config, syncs: &[String], deadline: Duration) -> Result<Vec<Settled>, ReplicaError> {
    let clock = Instant::now();
    let mut out = Vec::new();
    for name in syncs {
        loop {
            let report = status::gather(config, Some(name)).await?;
            let s: &SyncStatus = &report.syncs[0];
            let running = s.replicator.as_ref().is_some_and(|r| r.running);
            let shipped = s.state == "Good" && s.healthy && s.pending == Some(0);
            if shipped || !running || clock.elapsed() >= deadline {
                out.push(Settled {
                    sync: name.clone(),
                    shipped,
                    replicator_running: running,
                    state: s.state.clone(),
                    pending: s.pending,
                    seconds: clock.elapsed().as_secs_f64(),
                });
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(out)
}

/// The report as text, for the terminal.
pub fn render(report: &DdlReport, settled: &[Settled]) -> String {
    let mut out = String::new();
    for site in &report.sites {
        out.push_str(&format!("{}: applied ({:.0} ms)\n", site.db, site.ms));
    }
    if report.attempts > 1 {
        out.push_str(&format!("applied on attempt {} (busy locks rolled back the earlier ones)\n", report.attempts));
    }
    for t in &report.new_tables {
        out.push_str(&format!("{}: new table, captured on {} from its first row\n", t.table, t.captured_on.join(", ")));
    }
    for h in &report.held {
        out.push_str(&format!("held by the replicator until alike everywhere: {h}\n"));
    }
    for s in settled {
        let line = match (s.shipped, s.replicator_running) {
            (true, _) => format!("{}: Good, nothing waiting ({:.1} s after the change)\n", s.sync, s.seconds),
            (false, false) => format!(
                "{}: no replicator is running; what was written since waits in the change logs until one starts\n",
                s.sync
            ),
            (false, true) => format!(
                "{}: still {} with {} rows waiting after {:.0} s; see dugong status\n",
                s.sync,
                s.state,
                s.pending.map_or("an unknown number of".into(), |p| p.to_string()),
                s.seconds
            ),
        };
        out.push_str(&line);
    }
    out
}

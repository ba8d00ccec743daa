//! `dugong setup`: from "site 0 live with schema and data, the other sites
//! empty databases" to master-master, online — the application keeps writing
//! on site 0 throughout and nothing it writes is lost.
//!
//! The steps, in the only order that loses nothing:
//! 1. check every site: reachable, PostgreSQL 13 or newer,
//!    `track_commit_timestamp` on, the role's privileges, targets empty
//!    ([`checks`] judges what the engine read, naming each problem and its fix);
//! 2. copy the schema (`pg_dump --schema-only | pg_restore`) into the sites
//!    that have none, and check every site now describes the sync's tables alike;
//! 3. install capture on every site — from here on, every write on the live
//!    site is logged for the new sites —, then copy each table's rows in one
//!    consistent snapshot (REPEATABLE READ); writes made during the copy are
//!    shipped afterwards (shipping a row a site already has is idempotent);
//! 4. interleave sequences ([`sequences`]: site k of N starts above the
//!    current maximum, steps N, offset k) so inserts on several sites never
//!    collide;
//! 5. ship what was written meanwhile (one catch-up run) and `compare`.
//!
//! A site that was set up keeps a record (`dugong.setup`), so running setup
//! again changes nothing and says so, and a site added to the configuration
//! later is set up the same way. The PostgreSQL work is in
//! `engine::postgres::setup`; [`progress`] shows the copy, [`report`] holds
//! what was asked and what was done.

pub mod checks;
pub mod progress;
pub mod report;
pub mod sequences;

use crate::engine::{self, postgres, EngineKind};
use crate::error::ReplicaError;
use crate::plan;
use dugong_config::Config;

pub use checks::Problem;
pub use report::{SetupError, SetupOptions, SetupReport, SiteCopy};

/// Sets up the sync `options.sync` (or the configuration's only one),
/// reporting each step through `say` as it starts. Once the checks passed
/// and before anything is changed, `ask` is asked whether to go on (it is
/// told what will be done); refused, setup ends with [`SetupError::Declined`].
pub async fn setup(
    config: &Config,
    options: &SetupOptions,
    say: &(dyn Fn(&str) + Sync),
    ask: &(dyn Fn(&str) -> bool + Sync),
) -> Result<SetupReport, SetupError> {
    let syncs = plan::chosen_syncs(config, options.sync.as_deref())?;
    if syncs.len() > 1 {
        let names: Vec<&str> = syncs.iter().map(|s| s.name.as_str()).collect();
        return Err(ReplicaError::Config(format!(
            "{} has {} syncs ({}); name the one to set up with --sync",
            config.path.display(),
            names.len(),
            names.join(", ")
        ))
        .into());
    }
    let sync = syncs[0];
    match engine::kind_of(config, sync)? {
        EngineKind::Postgres => postgres::setup::run(config, sync, options, say, ask).await,
        EngineKind::Sqlite => Err(ReplicaError::Config(format!(
            "{} replicates SQLite files: setup copies PostgreSQL sites; a new SQLite site starts as an empty file and `\"onetimecopy\": 2` fills it",
            sync.name
        ))
        .into()),
    }
}

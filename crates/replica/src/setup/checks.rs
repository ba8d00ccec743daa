//! What setup checks before it changes anything, judged from what the engine
//! read of each site ([`Facts`]): each problem names the site and what is
//! wrong, and says exactly how to fix it. Setup refuses while any remains.

use crate::plan::tables::CatalogRow;
use crate::plan::{self};
use dugong_config::Sync;
use dugong_core::{DbId, TableName};
use serde::Serialize;

/// The oldest PostgreSQL the replicator runs on (`xid8`, `pg_snapshot`).
pub const MIN_VERSION_NUM: i32 = 130_000;

/// One reason setup cannot go on.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// `db<id>`, or empty for a problem of this machine (a missing tool).
    pub database: String,
    pub what: String,
    pub fix: String,
    /// The site could not be reached.
    #[serde(skip)]
    pub unreachable: bool,
}

impl Problem {
    pub fn new(db: Option<DbId>, what: impl Into<String>, fix: impl Into<String>) -> Problem {
        Problem {
            database: db.map(|d| d.to_string()).unwrap_or_default(),
            what: what.into(),
            fix: fix.into(),
            unreachable: false,
        }
    }
}

/// Every problem, one paragraph each: what, then the fix.
pub fn describe(problems: &[Problem]) -> String {
    let mut out = format!(
        "setup refused ({}); nothing was changed:",
        if problems.len() == 1 { "1 problem".to_string() } else { format!("{} problems", problems.len()) }
    );
    for p in problems {
        let on = if p.database.is_empty() { String::new() } else { format!("{}: ", p.database) };
        out.push_str(&format!("\n  - {on}{}\n    fix: {}", p.what, p.fix));
    }
    out
}

/// A table's privileges for the connecting role.
#[derive(Debug, Clone)]
pub struct TableAccess {
    pub name: TableName,
    pub select: bool,
    pub trigger: bool,
    pub insert: bool,
    pub delete: bool,
}

/// What the engine read of one site.
#[derive(Debug, Clone)]
pub struct Facts {
    pub id: DbId,
    /// `server_version`, for messages, and `server_version_num`.
    pub version: String,
    pub version_num: i32,
    pub commit_timestamps: bool,
    /// The connecting role and the database name, for the fixes.
    pub role: String,
    pub database: String,
    pub superuser: bool,
    pub can_create: bool,
    /// May `SET session_replication_role`.
    pub replica_role: bool,
    pub(crate) catalog: Vec<CatalogRow>,
    pub access: Vec<TableAccess>,
    /// Tables with rows, each with its count (counted up to a bound).
    pub with_rows: Vec<(TableName, i64)>,
    /// The site was set up for the sync before: the site it was copied from.
    pub set_up_from: Option<String>,
}

/// How setup treats each site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    /// The live site the others are copied from.
    pub origin: DbId,
    /// Sites to copy into, each with whether it needs the schema.
    pub targets: Vec<(DbId, bool)>,
    /// Sites set up before (the origin among them when it was).
    pub ready: Vec<DbId>,
}

/// The row count setup counts up to when naming a non-empty table.
pub const ROWS_SHOWN: i64 = 1000;

/// Decides each site's role and lists every problem. `facts` are in the
/// sync's order; sites missing from it were unreachable (their problems are
/// the caller's).
pub fn judge(sync: &Sync, facts: &[Facts], force: bool) -> (Option<Roles>, Vec<Problem>) {
    let mut problems = Vec::new();
    for f in facts {
        site_problems(f, &mut problems);
    }
    let Some(first) = facts.first() else { return (None, problems) };
    let origin = facts.iter().find(|f| f.set_up_from.is_some()).unwrap_or(first);
    if origin.catalog.is_empty() {
        problems.push(Problem::new(
            Some(origin.id),
            format!("has no tables: setup copies the live site's schema and rows from {} to the others", origin.id),
            format!("list the live site first in the sync ({}) or create its schema", sync.name),
        ));
    }
    let mut roles = Roles { origin: origin.id, targets: Vec::new(), ready: Vec::new() };
    for f in facts {
        if f.set_up_from.is_some() {
            roles.ready.push(f.id);
            continue;
        }
        if f.id == origin.id {
            continue;
        }
        if f.catalog.is_empty() {
            roles.targets.push((f.id, true));
            continue;
        }
        let catalogs = vec![(origin.id, origin.catalog.clone()), (f.id, f.catalog.clone())];
        match plan::select(&catalogs, sync) {
            Ok(selection) if !selection.held.is_empty() => problems.push(Problem::new(
                Some(f.id),
                format!(
                    "already has tables, and they differ from {}'s: {}",
                    origin.id,
                    selection.problems().join("; ")
                ),
                format!("drop them (or recreate the database empty) so setup can copy {}'s schema", origin.id),
            )),
            Ok(_) => {}
            Err(e) => problems.push(Problem::new(Some(f.id), e.to_string(), "correct the sync's tables")),
        }
        if !f.with_rows.is_empty() && !force {
            let named: Vec<String> = f
                .with_rows
                .iter()
                .take(5)
                .map(|(t, n)| format!("{} ({}{} rows)", t.display_name(), n, if *n >= ROWS_SHOWN { "+" } else { "" }))
                .collect();
            let more = f.with_rows.len().saturating_sub(5);
            problems.push(Problem::new(
                Some(f.id),
                format!(
                    "is not empty: {}{}; setup copies {}'s rows into empty sites only",
                    named.join(", "),
                    if more > 0 { format!(" and {more} more tables") } else { String::new() },
                    origin.id
                ),
                format!("empty those tables, or run setup with --force to replace their rows with {}'s", origin.id),
            ));
        }
        roles.targets.push((f.id, false));
    }
    access_problems(origin, &roles, facts, &mut problems);
    (Some(roles), problems)
}

fn site_problems(f: &Facts, problems: &mut Vec<Problem>) {
    if f.version_num < MIN_VERSION_NUM {
        problems.push(Problem::new(
            Some(f.id),
            format!("runs PostgreSQL {}; Dugong needs 13 or newer", f.version),
            "upgrade the server (pg_upgrade) to PostgreSQL 13 or newer",
        ));
    }
    if !f.commit_timestamps {
        problems.push(Problem::new(
            Some(f.id),
            "track_commit_timestamp is off: conflicts between sites are decided by the time each change committed, which PostgreSQL records only with it on",
            format!("run ALTER SYSTEM SET track_commit_timestamp = on; on {} as a superuser, then restart PostgreSQL there", f.id),
        ));
    }
    if !f.superuser && !f.can_create {
        problems.push(Problem::new(
            Some(f.id),
            format!(
                "role {} may not create schemas in database {} (the replicator keeps its change logs in schema dugong)",
                f.role, f.database
            ),
            format!(
                "GRANT CREATE ON DATABASE {} TO {};",
                dugong_core::quote_ident(&f.database),
                dugong_core::quote_ident(&f.role)
            ),
        ));
    }
    if !f.replica_role {
        let fix = if f.version_num >= 150_000 {
            format!(
                "GRANT SET ON PARAMETER session_replication_role TO {}; (as a superuser)",
                dugong_core::quote_ident(&f.role)
            )
        } else {
            "connect as a superuser: before PostgreSQL 15 only superusers may set session_replication_role".to_string()
        };
        problems.push(Problem::new(
            Some(f.id),
            format!(
                "role {} may not set session_replication_role, which copies and applies rows without echoing them back",
                f.role
            ),
            fix,
        ));
    }
}

/// The privileges each site needs on the tables it has now: the origin
/// reads every table and installs triggers on them; a target that has its
/// tables already is written and gets triggers too.
fn access_problems(origin: &Facts, roles: &Roles, facts: &[Facts], problems: &mut Vec<Problem>) {
    for f in facts {
        let is_target = roles.targets.iter().any(|(id, _)| *id == f.id);
        if f.id != origin.id && !is_target {
            continue;
        }
        let lacking: Vec<(&TableAccess, Vec<&str>)> = f
            .access
            .iter()
            .map(|a| {
                let mut need = Vec::new();
                if !a.select {
                    need.push("SELECT");
                }
                if !a.trigger {
                    need.push("TRIGGER");
                }
                if is_target && !a.insert {
                    need.push("INSERT");
                }
                if is_target && !a.delete {
                    need.push("DELETE");
                }
                (a, need)
            })
            .filter(|(_, need)| !need.is_empty())
            .collect();
        if lacking.is_empty() {
            continue;
        }
        let named: Vec<String> = lacking
            .iter()
            .take(5)
            .map(|(a, need)| format!("{} ({})", a.name.display_name(), need.join(", ")))
            .collect();
        let schemas: std::collections::BTreeSet<&str> = lacking.iter().map(|(a, _)| a.name.schema.as_str()).collect();
        let grants: Vec<String> = schemas
            .iter()
            .map(|s| {
                format!(
                    "GRANT SELECT, INSERT, DELETE, TRIGGER ON ALL TABLES IN SCHEMA {} TO {};",
                    dugong_core::quote_ident(s),
                    dugong_core::quote_ident(&f.role)
                )
            })
            .collect();
        problems.push(Problem::new(
            Some(f.id),
            format!(
                "role {} lacks privileges on {} table(s): {}{}",
                f.role,
                lacking.len(),
                named.join(", "),
                if lacking.len() > 5 { ", …" } else { "" }
            ),
            format!("{} (or connect as the tables' owner)", grants.join(" ")),
        ));
    }
}

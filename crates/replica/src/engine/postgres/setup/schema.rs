//! Copying the schema of the live site into a new one with PostgreSQL's own
//! tools: `pg_dump --schema-only` (tables, keys, indexes, constraints,
//! sequences, types, functions, triggers, owners and grants) and
//! `pg_restore` in one transaction. Left out: the replicator's own schema and
//! its capture triggers (each site installs its own), and Bucardo's schema.
//!
//! The tools take the connection from `PG*` environment variables, so the
//! password never appears on a command line.

use crate::setup::checks::Problem;
use crate::setup::report::SetupError;
use dugong_config::{Database, Location, PgTarget};
use dugong_core::DbId;
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// Where `dugong setup` looks for `pg_dump` and `pg_restore` first (a
/// directory), before PostgreSQL's installed versions and `PATH`.
pub const PG_BIN_ENV: &str = "DUGONG_PG_BIN";

/// `pg_dump` and `pg_restore` of one PostgreSQL version.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pg_dump: PathBuf,
    pg_restore: PathBuf,
    pub major: u32,
}

/// Finds `pg_dump` and `pg_restore` able to dump a server of major version
/// `server_major`: `$DUGONG_PG_BIN`, else the newest under
/// `/usr/lib/postgresql/*/bin`, else `PATH`. A problem with the fix when
/// there are none, or only older ones.
pub(crate) async fn find_tools(server_major: u32, origin: DbId) -> Result<Tools, Problem> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
        dirs.push(PathBuf::from(dir));
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .collect();
    installed.sort();
    dirs.extend(installed.into_iter().rev().map(|(_, dir)| dir));
    let mut candidates: Vec<(PathBuf, PathBuf)> = dirs
        .iter()
        .map(|d| (d.join("pg_dump"), d.join("pg_restore")))
        .filter(|(d, r)| d.exists() && r.exists())
        .collect();
    candidates.push((PathBuf::from("pg_dump"), PathBuf::from("pg_restore")));
    let mut found_older = None;
    for (pg_dump, pg_restore) in candidates {
        let Some(major) = major_version(&pg_dump).await else { continue };
        if major >= server_major {
            return Ok(Tools { pg_dump, pg_restore, major });
        }
        found_older.get_or_insert(major);
    }
    let what = match found_older {
        Some(v) => format!("pg_dump {v} is installed, which cannot dump {origin}'s PostgreSQL {server_major}"),
        None => "pg_dump and pg_restore are not installed; setup copies the schema with them".to_string(),
    };
    Err(Problem::new(
        None,
        what,
        format!(
            "install PostgreSQL's client programs of version {server_major} or newer (Debian: apt-get install postgresql-client-{server_major}), or set {PG_BIN_ENV} to the directory holding them"
        ),
    ))
}

/// The major version `pg_dump --version` prints (`pg_dump (PostgreSQL) 15.8`).
async fn major_version(pg_dump: &Path) -> Option<u32> {
    let out = Command::new(pg_dump).arg("--version").output().await.ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().last()?;
    version.split(['.', ' ']).next()?.parse().ok()
}

/// The `PG*` variables that point `pg_dump`/`pg_restore` at `db`.
fn environment(db: &Database) -> Result<Vec<(&'static str, String)>, SetupError> {
    let Location::Postgres(target) = &db.location else {
        return Err(SetupError::Tool(format!("{} is not a PostgreSQL database", db.id)));
    };
    Ok(libpq_env(target))
}

fn libpq_env(target: &PgTarget) -> Vec<(&'static str, String)> {
    let c = &target.config;
    let mut env = Vec::new();
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if !hosts.is_empty() {
        env.push(("PGHOST", hosts.join(",")));
    }
    let ports: Vec<String> = c.get_ports().iter().map(|p| p.to_string()).collect();
    if !ports.is_empty() {
        env.push(("PGPORT", ports.join(",")));
    }
    if let Some(db) = c.get_dbname() {
        env.push(("PGDATABASE", db.to_string()));
    }
    if let Some(user) = c.get_user() {
        env.push(("PGUSER", user.to_string()));
    }
    if let Some(p) = &target.password {
        env.push(("PGPASSWORD", p.expose().to_string()));
    }
    env.push(("PGSSLMODE", target.sslmode.as_str().to_string()));
    if let Some(ca) = &target.sslrootcert {
        env.push(("PGSSLROOTCERT", ca.display().to_string()));
    }
    env.push(("PGCONNECT_TIMEOUT", "10".to_string()));
    env.push(("PGAPPNAME", "dugong setup".to_string()));
    env
}

/// Copies `origin`'s schema into `target` through a dump file in `dir`.
pub(crate) async fn copy(tools: &Tools, origin: &Database, target: &Database, dir: &Path) -> Result<(), SetupError> {
    let dump = dir.join(format!("schema-{}.dump", origin.id));
    if !dump.exists() {
        let out = Command::new(&tools.pg_dump)
            .args(["--schema-only", "--format=custom", "--no-password"])
            .args(["--exclude-schema=dugong", "--exclude-schema=bucardo"])
            .arg(format!("--file={}", dump.display()))
            .envs(environment(origin)?)
            .output()
            .await
            .map_err(|e| SetupError::Tool(format!("cannot run {}: {e}", tools.pg_dump.display())))?;
        if !out.status.success() {
            return Err(tool_failed("pg_dump", origin.id, &out.stderr));
        }
    }
    let list = Command::new(&tools.pg_restore)
        .arg("--list")
        .arg(&dump)
        .output()
        .await
        .map_err(|e| SetupError::Tool(format!("cannot run {}: {e}", tools.pg_restore.display())))?;
    if !list.status.success() {
        return Err(tool_failed("pg_restore --list", origin.id, &list.stderr));
    }
    let toc = String::from_utf8_lossy(&list.stdout);
    let list_file = dir.join(format!("schema-{}-{}.list", origin.id, target.id));
    std::fs::write(&list_file, without_capture(&toc))
        .map_err(|e| SetupError::Tool(format!("cannot write {}: {e}", list_file.display())))?;
    let out = Command::new(&tools.pg_restore)
        .args(["--no-password", "--exit-on-error", "--single-transaction"])
        .arg(format!("--use-list={}", list_file.display()))
        .envs(environment(target)?)
        .arg(format!("--dbname={}", database_name(target)))
        .arg(&dump)
        .output()
        .await
        .map_err(|e| SetupError::Tool(format!("cannot run {}: {e}", tools.pg_restore.display())))?;
    if !out.status.success() {
        return Err(tool_failed("pg_restore", target.id, &out.stderr));
    }
    Ok(())
}

fn database_name(db: &Database) -> String {
    match &db.location {
        Location::Postgres(t) => t.config.get_dbname().unwrap_or_default().to_string(),
        Location::Sqlite(_) => String::new(),
    }
}

/// The dump's table of contents without the replicator's capture triggers
/// (another site's change logs; each site installs its own).
fn without_capture(toc: &str) -> String {
    toc.lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let trigger = fields.iter().position(|f| *f == "TRIGGER");
            !matches!(trigger, Some(i) if fields.get(i + 3).is_some_and(|name| name.starts_with("dugong_capture_")))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

fn tool_failed(tool: &str, db: DbId, stderr: &[u8]) -> SetupError {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let hint = if text.contains("does not exist") && text.contains("role") {
        "; create the missing role on that site first (setup keeps owners and grants as they are on the live site)"
    } else {
        ""
    };
    SetupError::Tool(format!("{tool} failed on {db}: {text}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::without_capture;

    #[test]
    fn capture_triggers_are_left_out_of_the_restore() {
        let toc = "; Archive created at 2026-01-01\n\
                   215; 1259 16390 TABLE public t postgres\n\
                   3350; 2620 16400 TRIGGER public t dugong_capture_insert postgres\n\
                   3351; 2620 16401 TRIGGER public t audit_trigger postgres\n";
        let kept = without_capture(toc);
        assert!(kept.contains("TABLE public t postgres"));
        assert!(kept.contains("audit_trigger"));
        assert!(!kept.contains("dugong_capture_insert"));
    }
}

//! The exit codes of `dugong replicate --once`, `status`, `compare`,
//! `conflicts`, `setup`, `repair`, `verify` and `ddl`, defined once, so
//! scripts and monitoring can act on them. Each command's `--help` lists the
//! ones it uses, and README.md the table.

use dugong_config::ConfigError;
use dugong_replica::conflicts::ConflictsError;
use dugong_replica::record::conflict::RestoreError;
use dugong_replica::{ErrorClass, ReplicaError};
use std::process::ExitCode;

/// Why a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done: every sync Good, every table identical, conflicts listed or restored.
    Ok,
    /// An error none of the others describes.
    Failed,
    /// The configuration file or the command line is wrong (an unknown sync
    /// or conflict id included); clap's usage errors exit 2 as well.
    Config,
    /// A database could not be reached.
    Unreachable,
    /// A sync is not Good: Bad, or never replicated.
    SyncBad,
    /// The databases of a sync differ (`compare`).
    Differ,
    /// A restore was refused: the row changed since the conflict (or there is
    /// no losing version to write back).
    Refused,
    /// A check of `verify` failed.
    CheckFailed,
    /// Interrupted (SIGINT or SIGTERM) before the command finished.
    Interrupted,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Config => 2,
            Exit::Unreachable => 3,
            Exit::SyncBad => 4,
            Exit::Differ => 5,
            Exit::Refused => 6,
            Exit::CheckFailed => 7,
            Exit::Interrupted => 130,
        }
    }

    fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "done",
            Exit::Failed => "an error not listed here (see the message)",
            Exit::Config => "configuration or usage error (the file, a flag, an unknown sync or conflict id)",
            Exit::Unreachable => "a database could not be reached",
            Exit::SyncBad => "a sync is not Good (Bad, or never replicated)",
            Exit::Differ => "the databases of a sync differ",
            Exit::Refused => "refused (the message says why and what to do)",
            Exit::CheckFailed => "a check failed (its line says which, with a hint)",
            Exit::Interrupted => "interrupted (SIGINT or SIGTERM) before finishing",
        }
    }

    /// The exit code of an error a command returned.
    pub fn of_error(err: &anyhow::Error) -> Exit {
        if err.downcast_ref::<ConfigError>().is_some() {
            return Exit::Config;
        }
        if let Some(e) = err.downcast_ref::<ReplicaError>() {
            return Exit::of_class(e.class());
        }
        if let Some(e) = err.downcast_ref::<ConflictsError>() {
            return Exit::of_conflicts(e);
        }
        if let Some(e) = err.downcast_ref::<dugong_replica::ddl::DdlError>() {
            return Exit::of_ddl(e);
        }
        Exit::Failed
    }

    pub fn of_class(class: ErrorClass) -> Exit {
        match class {
            ErrorClass::Configuration => Exit::Config,
            ErrorClass::Unreachable => Exit::Unreachable,
            ErrorClass::Bad => Exit::SyncBad,
        }
    }

    fn of_conflicts(e: &ConflictsError) -> Exit {
        match e {
            _ if e.is_unreachable() => Exit::Unreachable,
            ConflictsError::Replica(e) => Exit::of_class(e.class()),
            ConflictsError::BadId(_) | ConflictsError::UnknownId { .. } | ConflictsError::AmbiguousId { .. } => {
                Exit::Config
            }
            ConflictsError::NotRestorable { .. } => Exit::Refused,
            ConflictsError::Restore { source: RestoreError::ChangedSince { .. }, .. } => Exit::Refused,
            _ => Exit::Failed,
        }
    }

    /// The exit code of a refused or failed `ddl` (kept here, not in
    /// `ddl.rs`, so the command imports its codes and not the other way).
    fn of_ddl(e: &dugong_replica::ddl::DdlError) -> Exit {
        use dugong_replica::ddl::DdlError;
        match e {
            DdlError::Config(_) => Exit::Config,
            DdlError::Unreachable(_) => Exit::Unreachable,
            DdlError::Statement { .. } => Exit::Refused,
            DdlError::Busy { .. } | DdlError::Partial { .. } => Exit::Failed,
            DdlError::Replica(e) => Exit::of_class(e.class()),
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// The `--help` paragraph listing `codes`.
pub fn help(codes: &[Exit]) -> String {
    help_with(codes, &[])
}

/// [`help`], with what some codes mean for this command in its own words.
fn help_with(codes: &[Exit], own: &[(Exit, &str)]) -> String {
    let mut out = String::from("Exit codes:\n");
    for c in codes {
        let meaning = own.iter().find(|(e, _)| e == c).map_or_else(|| c.meaning(), |(_, m)| m);
        out.push_str(&format!("  {:<4} {meaning}\n", c.code()));
    }
    out
}

/// The codes of `replicate --once`.
pub fn replicate_help() -> String {
    help(&[Exit::Ok, Exit::Failed, Exit::Config, Exit::Unreachable, Exit::SyncBad, Exit::Interrupted])
}

/// The codes of `status`.
pub fn status_help() -> String {
    help(&[Exit::Ok, Exit::Failed, Exit::Config, Exit::Unreachable, Exit::SyncBad, Exit::Interrupted])
}

/// The codes of `compare`.
pub fn compare_help() -> String {
    help(&[Exit::Ok, Exit::Failed, Exit::Config, Exit::Unreachable, Exit::Differ, Exit::Interrupted])
}

/// The codes of `conflicts`.
pub fn conflicts_help() -> String {
    help_with(
        &[Exit::Ok, Exit::Failed, Exit::Config, Exit::Unreachable, Exit::Refused, Exit::Interrupted],
        &[(Exit::Refused, "refused: the row changed since the conflict (restore --force writes it anyway), or there is no losing version to write back")],
    )
}

/// The codes of `setup`.
pub fn setup_help() -> String {
    help_with(
        &[Exit::Ok, Exit::Failed, Exit::Config, Exit::Unreachable, Exit::Refused, Exit::Interrupted],
        &[
            (Exit::Ok, "done: set up, or set up already (nothing changed)"),
            (Exit::Config, "configuration or usage error (the file, a flag, --sync; without a terminal, --yes is needed)"),
            (Exit::Unreachable, "a database could not be reached (the message names the site and what to check)"),
            (Exit::Refused, "refused: a site is not ready, each problem printed with its exact fix (or the question was answered no)"),
        ],
    )
}

/// The codes of `verify`.
pub fn verify_help() -> String {
    help_with(
        &[Exit::Ok, Exit::Config, Exit::CheckFailed, Exit::Interrupted],
        &[
            (Exit::Ok, "done: every check passed (the failover check is skipped without --kill-cmd)"),
            (Exit::Config, "configuration or usage error (--server twice, DUGONG_TOKEN, --config)"),
            (Exit::CheckFailed, "a check failed: its FAIL line says which, why, and a hint"),
        ],
    )
}

/// The codes of `repair` (5: a dry run found keys to repair).
pub fn repair_help() -> String {
    help_with(
        &[Exit::Ok, Exit::Failed, Exit::Config, Exit::Unreachable, Exit::Differ, Exit::Interrupted],
        &[
            (Exit::Ok, "done: repaired, or nothing to repair (a dry run: nothing would change)"),
            (Exit::Failed, "a table could not be repaired (its line says why, e.g. its schema differs between sites), or another error"),
            (Exit::Differ, "a dry run found keys to repair"),
        ],
    )
}

/// The codes of `ddl`.
pub fn ddl_help() -> String {
    help_with(
        &[Exit::Ok, Exit::Failed, Exit::Config, Exit::Unreachable, Exit::SyncBad, Exit::Refused],
        &[
            (Exit::SyncBad, "applied on every site, but what was written around it had not shipped within --wait"),
            (Exit::Refused, "refused: a site rejected the schema statement, so no site changed (the message names the site and why)"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_listed() {
        let all = [
            Exit::Ok,
            Exit::Failed,
            Exit::Config,
            Exit::Unreachable,
            Exit::SyncBad,
            Exit::Differ,
            Exit::Refused,
            Exit::CheckFailed,
            Exit::Interrupted,
        ];
        let mut codes: Vec<u8> = all.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        let text = help(&all);
        assert!(text.contains("  3    a database could not be reached\n"), "{text}");
        assert!(text.contains("  130  interrupted"), "{text}");
    }

    #[test]
    fn errors_map_to_their_codes() {
        let config = anyhow::Error::new(ReplicaError::Config("no sync named x".into()));
        assert_eq!(Exit::of_error(&config), Exit::Config);
        let bad = anyhow::Error::new(ReplicaError::SchemaMismatch("t".into()));
        assert_eq!(Exit::of_error(&bad), Exit::SyncBad);
        let id = anyhow::Error::new(ConflictsError::BadId("zz".into()));
        assert_eq!(Exit::of_error(&id), Exit::Config);
        assert_eq!(Exit::of_error(&anyhow::anyhow!("disk full")), Exit::Failed);
    }
}

//! The exit codes of `dugong replicate --once`, `status`, `compare` and
//! `conflicts`, defined once, so scripts and monitoring can act on them. Each
//! command's `--help` lists the ones it uses, and README.md the table.

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
            Exit::Refused => {
                "refused: setup found a site not ready (each problem printed with its fix); conflicts restore: the row changed since the conflict (use --force); ddl: a site refused the schema statement"
            }
            Exit::CheckFailed => "a check failed (verify: its line says which, with a hint)",
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
            return crate::ddl::exit_of(e);
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
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// The `--help` paragraph listing `codes`.
pub fn help(codes: &[Exit]) -> String {
    let mut out = String::from("Exit codes:\n");
    for c in codes {
        out.push_str(&format!("  {:<4} {}\n", c.code(), c.meaning()));
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
    help(&[Exit::Ok, Exit::Failed, Exit::Config, Exit::Unreachable, Exit::Refused, Exit::Interrupted])
}

/// The codes of `setup`.
pub fn setup_help() -> String {
    help(&[Exit::Ok, Exit::Failed, Exit::Config, Exit::Unreachable, Exit::Refused, Exit::Interrupted])
}

/// The codes of `verify`.
pub fn verify_help() -> String {
    help(&[Exit::Ok, Exit::Config, Exit::CheckFailed, Exit::Interrupted])
}

/// The codes of `repair` (5: a dry run found keys to repair).
pub fn repair_help() -> String {
    help(&[Exit::Ok, Exit::Failed, Exit::Config, Exit::Unreachable, Exit::Differ, Exit::Interrupted])
}

/// The codes of `ddl`.
pub fn ddl_help() -> String {
    help(&[Exit::Ok, Exit::Failed, Exit::Config, Exit::Unreachable, Exit::SyncBad, Exit::Refused])
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

//! Finding the installed PostgreSQL server binaries.
//!
//! Debian's `postgresql` package puts them under `/usr/lib/postgresql/<major>/bin`; with
//! several majors installed we take the newest. `DUGONG_TEST_PG_BIN` overrides the search, for
//! machines that keep PostgreSQL elsewhere.

use std::path::{Path, PathBuf};

use crate::error::TestkitError;

/// Where Debian installs PostgreSQL server binaries, one directory per major version.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// Environment variable naming a directory holding `initdb` and `pg_ctl`, used instead of the
/// Debian search when set.
pub const PG_BIN_ENV: &str = "DUGONG_TEST_PG_BIN";

/// The PostgreSQL server programs the testkit runs.
#[derive(Debug, Clone)]
pub(crate) struct PgBinaries {
    bin_dir: PathBuf,
}

impl PgBinaries {
    /// Finds the binaries: `$DUGONG_TEST_PG_BIN`, else the highest version under
    /// `/usr/lib/postgresql`.
    pub(crate) fn find() -> Result<PgBinaries, TestkitError> {
        if let Some(dir) = std::env::var_os(PG_BIN_ENV) {
            let bin_dir = PathBuf::from(dir);
            return if is_bin_dir(&bin_dir) {
                Ok(PgBinaries { bin_dir })
            } else {
                Err(TestkitError::NoPostgres { searched: bin_dir })
            };
        }
        let root = Path::new(DEBIAN_ROOT);
        let not_found = || TestkitError::NoPostgres { searched: root.to_path_buf() };
        let entries = std::fs::read_dir(root).map_err(|_| not_found())?;
        entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let version = parse_version(entry.file_name().to_str()?)?;
                let bin_dir = entry.path().join("bin");
                is_bin_dir(&bin_dir).then_some((version, bin_dir))
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, bin_dir)| PgBinaries { bin_dir })
            .ok_or_else(not_found)
    }

    /// The path of one program in the bin directory, e.g. `pg_ctl`.
    pub(crate) fn program(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

fn is_bin_dir(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"].iter().all(|program| dir.join(program).is_file())
}

/// Parses a version directory name: "15" → [15], "9.6" → [9, 6]; anything else is ignored.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        let mut versions: Vec<_> = ["9.6", "15", "10", "16"].iter().map(|v| parse_version(v).unwrap()).collect();
        versions.sort();
        assert_eq!(versions.last().unwrap(), &vec![16]);
        assert_eq!(versions.first().unwrap(), &vec![9, 6]);
        assert!(parse_version("common").is_none());
    }

    #[test]
    fn finds_installed_binaries() {
        let found = PgBinaries::find().expect("PostgreSQL installed on this machine");
        assert!(found.program("pg_ctl").is_file());
    }
}

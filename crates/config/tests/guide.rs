//! The bucardo.json files of the deployment guide, byte for byte.

use std::path::{Path, PathBuf};

use dugong_config::{Config, Location, OneTimeCopy, SslMode, TableSelection};
use dugong_core::{ConflictStrategy, DbId, SyncName};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn assert_guide_databases(config: &Config) {
    assert_eq!(config.databases.len(), 2);
    for (i, database) in config.databases.iter().enumerate() {
        assert_eq!(database.id, DbId(i as u32));
        let Location::Postgres(target) = &database.location else { panic!("expected PostgreSQL") };
        assert_eq!(target.display, format!("{i}.ha.test:5444/kwanza user=postgres"));
        assert_eq!(target.config.get_ports(), &[5444]);
        assert_eq!(target.config.get_dbname(), Some("kwanza"));
        assert_eq!(target.config.get_user(), Some("postgres"));
        assert_eq!(target.config.get_password(), Some(&b"postgres"[..]));
        assert_eq!(target.sslmode, SslMode::Prefer);
        assert!(target.has_default_login());
    }
}

#[test]
fn master_master_example_loads() {
    let path = fixture("guide-master-master.json");
    let config = Config::load(&path).unwrap();
    assert_eq!(config.path, path);
    assert_guide_databases(&config);
    assert_eq!(config.syncs.len(), 1);
    let sync = &config.syncs[0];
    assert_eq!(sync.name, SyncName("sync0".into()));
    assert_eq!(sync.index, 0);
    assert_eq!(sync.sources, vec![DbId(0), DbId(1)]);
    assert!(sync.targets.is_empty());
    assert_eq!(sync.tables, TableSelection::All);
    assert_eq!(sync.onetimecopy, OneTimeCopy::None);
    assert_eq!(sync.conflict_strategy, ConflictStrategy::Latest);
    assert_eq!(sync.databases(), vec![DbId(0), DbId(1)]);
    assert!(config.ignored.is_empty());
    assert!(config.sync("sync0").is_some());
    assert!(config.sync("sync1").is_none());
    assert_eq!(config.database(DbId(1)).map(|d| d.id), Some(DbId(1)));
    assert!(config.database(DbId(2)).is_none());
    assert_eq!(config.databases_in_syncs(), vec![DbId(0), DbId(1)]);
}

#[test]
fn initial_load_example_loads_once_its_opening_brace_is_restored() {
    let config = Config::load(&fixture("guide-initial-load-with-brace.json")).unwrap();
    assert_guide_databases(&config);
    let sync = &config.syncs[0];
    assert_eq!(sync.sources, vec![DbId(0)]);
    assert_eq!(sync.targets, vec![DbId(1)]);
    assert_eq!(sync.onetimecopy, OneTimeCopy::Full);
    assert_eq!(sync.databases(), vec![DbId(0), DbId(1)]);
}

/// The guide prints the first file without its opening brace; copied as is, it
/// must fail with a message that shows where and why.
#[test]
fn initial_load_example_as_printed_is_missing_its_brace() {
    let path = fixture("guide-initial-load.json");
    let err = Config::load(&path).unwrap_err();
    assert_eq!((err.line, err.column), (Some(1), Some(2)));
    assert_eq!(err.field, None);
    assert!(err.reason.contains("must be one JSON object"), "{err}");
    assert!(err.reason.contains("starts with `\"`"), "{err}");
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("config file {}, line 1 column 2: ", path.display())), "{shown}");
}

#[test]
fn a_missing_file_names_the_file() {
    let path = fixture("no-such-file.json");
    let err = Config::load(&path).unwrap_err();
    assert_eq!(err.path, path);
    assert!(err.reason.starts_with("cannot be read: "), "{err}");
}

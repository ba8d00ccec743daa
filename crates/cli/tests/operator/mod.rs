//! What the operator-tool tests (`setup_cli`, `repair_cli`, `verify_cli`)
//! share: a configuration file of a master-master sync in a directory of its
//! own, and running the real `dugong` binary against it.

#![allow(dead_code)]

use dugong_testkit::Cluster;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The API token the tests' application servers accept.
pub const TOKEN: &str = "operator-test-token-0123456789";

/// A `bucardo.json` in its own directory, removed at the end of the test.
pub struct ConfigFile {
    pub dir: PathBuf,
    pub path: PathBuf,
}

impl ConfigFile {
    /// A master-master sync of `dbs` on `cluster`, logging in as `user`.
    pub fn new(name: &str, cluster: &Cluster, dbs: &[String], user: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!("dugong-operator-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("bucardo.json");
        let file = ConfigFile { dir, path };
        file.write(cluster, dbs, user);
        file
    }

    /// Rewrites the file for `dbs` (a site added, say).
    pub fn write(&self, cluster: &Cluster, dbs: &[String], user: &str) {
        let entries: Vec<String> = dbs
            .iter()
            .enumerate()
            .map(|(i, db)| {
                format!(
                    r#"{{"id": {i}, "dbname": "{db}", "host": "127.0.0.1 port={}", "user": "{user}", "pass": ""}}"#,
                    cluster.port()
                )
            })
            .collect();
        let ids: Vec<String> = (0..dbs.len()).map(|i| i.to_string()).collect();
        let json = format!(
            r#"{{"databases": [{}], "syncs": [{{"sources": [{}], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#,
            entries.join(", "),
            ids.join(", ")
        );
        std::fs::write(&self.path, json).expect("write config");
    }

    /// `dugong ARGS --config FILE` in the background (a replicator), killed
    /// when the returned value is dropped.
    pub fn spawn(&self, args: &[&str]) -> Background {
        let child = Command::new(env!("CARGO_BIN_EXE_dugong"))
            .args(args)
            .arg("--config")
            .arg(&self.path)
            .env("DUGONG_LOG", "warn")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .spawn()
            .expect("start dugong");
        Background(child)
    }

    /// `dugong ARGS --config FILE`.
    pub fn dugong(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let path = self.path.to_str().expect("a UTF-8 path");
        all.extend(["--config", path]);
        dugong(&all, &self.dir)
    }
}

/// A `dugong` process started by [`ConfigFile::spawn`].
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `dugong ARGS` in `dir`, with the tests' API token, no terminal, and
/// none of the environment variables that would change its flags.
pub fn dugong(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dugong"))
        .args(args)
        .env("DUGONG_TOKEN", TOKEN)
        .env("DUGONG_LOG", "warn")
        .env_remove("DUGONG_SYNC")
        .env_remove("DUGONG_JSON")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run dugong")
}

/// The exit code and both outputs, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

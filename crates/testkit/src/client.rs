//! Talking to a test cluster: connection settings, clients, per-test databases.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_postgres::NoTls;

use crate::cluster::Cluster;
use crate::error::TestkitError;

/// The superuser every test cluster is created with.
const SUPERUSER: &str = "postgres";

/// The database `create_database` connects to.
const MAINTENANCE_DB: &str = "postgres";

/// A server that is up answers at once; this only bounds a test that would otherwise hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest prefix kept, so that names stay under PostgreSQL's 63-byte identifier limit.
const MAX_PREFIX: usize = 30;

/// Numbers the databases this process creates.
static NEXT_DB: AtomicU64 = AtomicU64::new(0);

impl Cluster {
    /// Connection settings for `dbname` as the superuser, without TLS, for this process: over
    /// TCP to `127.0.0.1`, or for a cluster in a network namespace over its Unix socket, which
    /// no cut link touches.
    pub fn pg_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        if self.namespace().is_some() {
            config.host_path(self.socket_dir());
        } else {
            config.host(self.host());
        }
        config.port(self.port()).user(SUPERUSER).dbname(dbname).connect_timeout(CONNECT_TIMEOUT);
        config
    }

    /// The server as a URL over TCP: `postgres://postgres@HOST:PORT/dbname`, where `HOST` is
    /// `127.0.0.1`, or the namespace's address for a cluster in a test network (reachable
    /// from the network's namespaces, not from this process).
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://{SUPERUSER}@{}:{}/{dbname}", self.host(), self.port())
    }

    /// Connects to `dbname` as the superuser. The connection runs as a task on the current
    /// tokio runtime, and ends when the client is dropped.
    pub async fn connect(&self, dbname: &str) -> Result<tokio_postgres::Client, TestkitError> {
        let (client, connection) = self
            .pg_config(dbname)
            .connect(NoTls)
            .await
            .map_err(|err| TestkitError::postgres(format!("connecting to {}", self.url(dbname)), err))?;
        // Its error, if any, also fails the client's next call, which is where a test sees it.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Creates an empty database named `<prefix>_<pid>_<n>`, unique in this cluster, and
    /// returns its name. The prefix is lowercased, with anything other than ASCII letters,
    /// digits and `_` replaced by `_`, and cut to 30 characters; the name needs no quoting.
    pub async fn create_database(&self, prefix: &str) -> Result<String, TestkitError> {
        let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}_{}_{n}", sanitize(prefix), std::process::id());
        let client = self.connect(MAINTENANCE_DB).await?;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|err| TestkitError::postgres(format!("creating database {name}"), err))?;
        Ok(name)
    }

    /// Runs `sql` (any number of statements, no parameters) in `dbname` on a fresh
    /// connection.
    pub async fn psql(&self, dbname: &str, sql: &str) -> Result<(), TestkitError> {
        let client = self.connect(dbname).await?;
        client
            .batch_execute(sql)
            .await
            .map_err(|err| TestkitError::postgres(format!("running SQL in {dbname}: {sql}"), err))
    }
}

/// A prefix safe as an unquoted identifier start: lowercase ASCII, digits, `_`.
fn sanitize(prefix: &str) -> String {
    let mut clean: String = prefix
        .chars()
        .take(MAX_PREFIX)
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    if !clean.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        clean.insert_str(0, "db_");
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn prefixes_become_plain_identifiers() {
        assert_eq!(sanitize("Conflict-Test"), "conflict_test");
        assert_eq!(sanitize("naïve db"), "na_ve_db");
        assert_eq!(sanitize(""), "db_");
        assert_eq!(sanitize("1st"), "db_1st");
        assert_eq!(sanitize(&"x".repeat(100)).len(), 30);
    }
}

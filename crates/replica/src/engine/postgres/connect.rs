//! Connections to PostgreSQL databases of a sync, with TLS as the database's
//! `sslmode` asks (`tls.rs`).

use std::time::Duration;

use dugong_config::{Config, Database, Location, PgTarget, SslMode};
use dugong_core::DbId;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Client, NoTls, Socket};

use super::tls;
use crate::error::ReplicaError;

/// Connects the replicator to a database of the configuration, by id.
pub async fn connect_to(config: &Config, id: DbId) -> Result<Client, ReplicaError> {
    connect_as(config, id, "dugong replicate").await
}

/// Connects to a database of the configuration under `application_name`, so
/// each tool shows up under its own name on the server.
pub async fn connect_as(config: &Config, id: DbId, application_name: &str) -> Result<Client, ReplicaError> {
    let db = config.database(id).ok_or_else(|| ReplicaError::Config(format!("database id {} is not defined", id.0)))?;
    connect(db, application_name).await
}

/// Session settings every replicator connection uses, so values written as text
/// by one server read back identically on another. No JIT and no parallel plans:
/// after a backlog the change logs look huge to the planner, and its JIT and
/// parallel workers cost tens of milliseconds for queries that take one.
const SESSION_SETTINGS: &str = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex -c jit=off -c max_parallel_workers_per_gather=0";

/// The server probes every replicator connection (the doorbell's too) after
/// 3 s of silence (every second, three times), and gives up on data the
/// replicator has not acknowledged within 10 s: when a replicator's whole data
/// center goes dark, its sessions on the other sites — and the claim on the
/// sync they hold — end within seconds, not the two hours of the kernel's
/// defaults, so the standby there takes over.
pub(super) const SERVER_PROBES: &str =
    "-c tcp_keepalives_idle=3 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3 -c tcp_user_timeout=10000";

/// The same on this side: a query sent to a site whose link went down fails
/// within [`USER_TIMEOUT`] instead of waiting out the kernel's retransmissions
/// (about 15 minutes), so one lost site never stalls a run for the others.
pub(super) const KEEPALIVE_IDLE: Duration = Duration::from_secs(3);
pub(super) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
pub(super) const KEEPALIVE_RETRIES: u32 = 3;
pub(super) const USER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may take when the configuration gives no
/// `connect_timeout`.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The configuration's own `options` followed by `ours`.
pub(super) fn with_options(config: &tokio_postgres::Config, ours: &str) -> String {
    match config.get_options() {
        Some(existing) if !existing.is_empty() => format!("{existing} {ours}"),
        _ => ours.to_string(),
    }
}

/// Opens a connection to `db`, driving it on a task of the current runtime.
pub async fn connect(db: &Database, application_name: &str) -> Result<Client, ReplicaError> {
    let target = match &db.location {
        Location::Postgres(t) => t,
        Location::Sqlite(path) => {
            // SQLite files go through engine::sqlite; reaching here is a caller's mistake.
            return Err(ReplicaError::Config(format!(
                "{} is a SQLite database (sqlite:{}), not a PostgreSQL server",
                db.id,
                path.display()
            )));
        }
    };
    let mut config = target.config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name(application_name);
    config.options(with_options(&config, &format!("{SESSION_SETTINGS} {SERVER_PROBES}")));
    config.keepalives(true);
    config.keepalives_idle(KEEPALIVE_IDLE);
    config.keepalives_interval(KEEPALIVE_INTERVAL);
    config.keepalives_retries(KEEPALIVE_RETRIES);
    config.tcp_user_timeout(USER_TIMEOUT);
    match tls::connector(db.id, target)? {
        Some(tls) => open(db.id, target, &config, tls).await,
        None => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            open(db.id, target, &config, NoTls).await
        }
    }
}

/// Connects with `tls` and spawns the connection's task.
async fn open<T>(db: DbId, target: &PgTarget, config: &tokio_postgres::Config, tls: T) -> Result<Client, ReplicaError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await.map_err(|source| {
        let target = describe(target);
        if source.as_db_error().is_some_and(|e| !turned_away_for_now(e.code())) {
            ReplicaError::Refused { db, target, source }
        } else {
            ReplicaError::Unreachable { db, target, source }
        }
    })?;
    tokio::spawn(drive(db, connection));
    Ok(client)
}

/// Whether a server that answered a connection with this error turns
/// everyone away for a while — starting up or recovering after a crash,
/// shutting down, out of connection slots — rather than refusing this
/// login: the database is unreachable for now (retried, never fatal at
/// start), not misconfigured.
fn turned_away_for_now(code: &SqlState) -> bool {
    [SqlState::CANNOT_CONNECT_NOW, SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::TOO_MANY_CONNECTIONS]
        .contains(code)
}

/// Drives a connection until it closes. The server's notices ("relation …
/// already exists, skipping" at every start) go to DEBUG: driven as a plain
/// future, the driver would log each one at INFO.
async fn drive<S, T>(db: DbId, mut connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notice(notice))) => tracing::debug!(
                db = %db, severity = notice.severity(), code = notice.code().code(), notice = notice.message(),
                "server notice"
            ),
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                tracing::debug!(db = %db, error = %err, "connection closed");
                return;
            }
            None => return,
        }
    }
}

/// The target for messages, with the sslmode when it insists on TLS: a
/// handshake that fails then reads as what it is.
fn describe(target: &PgTarget) -> String {
    match target.sslmode {
        SslMode::Disable | SslMode::Prefer => target.display.clone(),
        mode => format!("{} sslmode={}", target.display, mode.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starting_up_or_full_is_away_for_now_and_a_refused_login_is_not() {
        for code in ["57P03", "57P01", "57P02", "53300"] {
            assert!(turned_away_for_now(&SqlState::from_code(code)), "{code}");
        }
        for code in ["28P01", "28000", "3D000", "42501"] {
            assert!(!turned_away_for_now(&SqlState::from_code(code)), "{code}");
        }
    }
}

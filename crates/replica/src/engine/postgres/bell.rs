//! The doorbell: a logical-decoding stream from a source database that says,
//! within a fraction of a millisecond of the commit, that a transaction which
//! wrote the change logs committed, so the replicator polls at once instead
//! of at its next tick. Nothing is added to the application's transactions
//! (a NOTIFY there halves write throughput): the walsender reads the WAL.
//!
//! - Publication `dugong_doorbell` publishes inserts into the change logs
//!   (every `dugong."delta_<id>"` and `dugong.truncate_log`), kept in step
//!   with them by whoever rings.
//! - One bell per database in a replicator process, whichever syncs read it
//!   ([`subscribe`]): one wal sender and one slot, not one per sync.
//! - A temporary `pgoutput` slot per connection, so a replicator that dies
//!   never keeps WAL; the bell confirms everything it heard, at every
//!   keepalive that asks and every 10 s, so a live one does not either.
//! - While the replicator is busy — its syncs move more than 5,000 rows a
//!   second, polling every millisecond — a ring saves it next to nothing, yet
//!   the walsender would decode every write of the database beside the
//!   application on the same server: the bell rests (ends its stream and
//!   slot) until the rate falls, then rings once at once for what committed
//!   meanwhile.
//! - When the bell cannot ring (`wal_level` is not `logical`, no REPLICATION
//!   privilege, no free slot or wal sender, a lost link) the replicator polls
//!   as before; [`Doorbell::state`], the log and `dugong_replica_doorbell`
//!   say why.
//!
//! `wire` speaks the replication protocol, which tokio-postgres does not.

mod shared;
mod wire;

pub use shared::{subscribe, Subscription};

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dugong_config::{Config, Location};
use dugong_core::DbId;
use postgres_protocol::message::backend::Message;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::connect::connect;
use crate::error::ReplicaError;
use crate::metrics as m;
use wire::{Frame, Wire};

/// The publication the bell's slot decodes.
pub const PUBLICATION: &str = "dugong_doorbell";

/// How the bell's connections show up in `pg_stat_activity`.
const APPLICATION_NAME: &str = "dugong doorbell";

/// Serialises the publication's upkeep between replicators ("dugong" + 1).
const PUBLISH_LOCK: i64 = 0x6475_676f_6e68;

/// How long after starting the bell connects at the latest: its connections
/// and the slot's creation go after the replicator's first run, which ships
/// what waited while no replicator ran, not in its way (across a WAN every
/// round trip before that run counts). The daemon polls meanwhile, and lets
/// the bell go as soon as that run is done and confirmed
/// ([`Doorbell::settled`]), so a bell nearby rings within milliseconds of the
/// start rather than this long after.
const SETTLE: Duration = Duration::from_millis(500);

/// How often the bell confirms what it heard when the server does not ask.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// Silence after which the link counts as lost: the server asks for a reply
/// every 5 s (`wal_sender_timeout` is 10 s on the bell's session).
const SILENCE: Duration = Duration::from_secs(15);

/// How often a ringing bell brings the publication in step with the change
/// logs, for tables captured since it started.
const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// The wait before trying again after a failure that may pass, and after one
/// an operator must fix (`wal_level`, a privilege).
const RETRY_AFTER: Duration = Duration::from_secs(10);
const RETRY_AFTER_UNFIT: Duration = Duration::from_secs(60);

/// The wait before connecting again when the bell rang until it failed.
const RETRY_AFTER_RINGING: Duration = Duration::from_secs(1);

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: u64 = 946_684_800_000_000;

/// What a bell does when it rings: wake the replicators listening.
type Ring = Arc<dyn Fn() + Send + Sync>;

/// Whether the bell rings, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BellState {
    /// Connecting, or waiting for the transactions running at that moment to
    /// end (creating a slot does): the replicator polls meanwhile.
    Starting,
    /// Commits that wrote the change logs ring.
    Ringing,
    /// The replicator is busy and asked the bell to rest: no stream, no slot,
    /// until it waits again ([`Doorbell::rest`]).
    Resting,
    /// Not ringing, for this reason; the replicator polls.
    Off(String),
}

/// The doorbell of one source database: a background task, which ends on
/// the cancellation token given to [`Doorbell::start`] or when dropped.
pub struct Doorbell {
    db: DbId,
    state: Arc<Mutex<BellState>>,
    cancel: CancellationToken,
    rest: watch::Sender<bool>,
    /// Lets the bell connect before [`SETTLE`] is over.
    settled: Arc<Notify>,
    task: Option<JoinHandle<()>>,
}

impl Doorbell {
    /// Starts ringing `ring` (`notify_one`, so a ring while nobody waits is
    /// kept) whenever a transaction that wrote the change logs of `db`
    /// commits. Retries after failures, every 10 s, or every 60 s when an
    /// operator must change something (logged once at WARN).
    pub fn start(config: Arc<Config>, db: DbId, ring: Arc<Notify>, cancel: CancellationToken) -> Doorbell {
        Doorbell::start_settling(config, db, ring, cancel, SETTLE)
    }

    /// [`Doorbell::start`], connecting `settle` after starting at the latest
    /// (or once [`Doorbell::settled`]); the daemon's bells settle half a
    /// second.
    pub fn start_settling(
        config: Arc<Config>,
        db: DbId,
        ring: Arc<Notify>,
        cancel: CancellationToken,
        settle: Duration,
    ) -> Doorbell {
        Doorbell::ringing_with(config, db, Arc::new(move || ring.notify_one()), cancel, settle)
    }

    /// Starts the bell with `ring` called on every ring.
    fn ringing_with(
        config: Arc<Config>,
        db: DbId,
        ring: Ring,
        cancel: CancellationToken,
        settle: Duration,
    ) -> Doorbell {
        let state = Arc::new(Mutex::new(BellState::Starting));
        let cancel = cancel.child_token();
        let (rest, resting) = watch::channel(false);
        let settled = Arc::new(Notify::new());
        let bell = Bell {
            config,
            db,
            ring,
            state: state.clone(),
            cancel: cancel.clone(),
            resting,
            settle,
            settled: settled.clone(),
        };
        let task = tokio::spawn(bell.run());
        Doorbell { db, state, cancel, rest, settled, task: Some(task) }
    }

    /// Asks the bell to rest — end its stream and slot, so the server stops
    /// decoding WAL for it — or, with `false`, to ring again; it then rings
    /// once as soon as it listens, for what committed while it rested.
    pub fn rest(&self, resting: bool) {
        self.rest.send_if_modified(|r| std::mem::replace(r, resting) != resting);
    }

    /// Lets a bell still settling connect now: the replicator's first run is
    /// done and confirmed, so its connections are in nobody's way.
    pub fn settled(&self) {
        // A permit `notify_one` keeps: the bell takes it when it gets there.
        self.settled.notify_one();
    }

    /// Whether it rings now.
    pub fn state(&self) -> BellState {
        self.state.lock().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The database it listens to.
    pub fn db(&self) -> DbId {
        self.db
    }

    /// Stops the bell and waits until its connection has ended (and with it
    /// the temporary slot).
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Doorbell {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Why a bell does not ring.
#[derive(Debug, thiserror::Error)]
enum BellError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{message} (SQLSTATE {code})")]
    Server { code: String, message: String },
    #[error(transparent)]
    Database(#[from] ReplicaError),
    #[error("unexpected message from the server: {0}")]
    Protocol(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Config(String),
    #[error("the server asks for a password and none is configured")]
    NoPassword,
    #[error("{0} is not supported by the doorbell")]
    Unsupported(String),
    /// The server or the role cannot serve a doorbell until an operator acts.
    #[error("{0}")]
    Unfit(String),
    /// Change logs to publish do not exist (yet).
    #[error("{0}")]
    NotInstalled(String),
    #[error("nothing arrived from the server for {0:?}; the link is taken as lost")]
    Silent(Duration),
    #[error("the server ended the stream")]
    Ended,
}

impl BellError {
    /// Whether only an operator can change the outcome: the bell then tries
    /// again rarely, and says so once.
    fn needs_operator(&self) -> bool {
        match self {
            BellError::Unfit(_)
            | BellError::Config(_)
            | BellError::NoPassword
            | BellError::Unsupported(_)
            | BellError::Tls(_) => true,
            BellError::Server { code, .. } => {
                // wal_level, privileges, logins, a missing database.
                ["55000", "42501", "28000", "28P01", "3D000"].contains(&code.as_str())
            }
            BellError::Database(err) => {
                matches!(err, ReplicaError::Refused { .. } | ReplicaError::Config(_) | ReplicaError::Privilege { .. })
                    || sqlstate(err) == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
            }
            _ => false,
        }
    }
}

fn sqlstate(err: &ReplicaError) -> Option<&SqlState> {
    match err {
        ReplicaError::Statement { source, .. }
        | ReplicaError::Refused { source, .. }
        | ReplicaError::Unreachable { source, .. } => source.code(),
        _ => None,
    }
}

/// The bell's task.
struct Bell {
    config: Arc<Config>,
    db: DbId,
    ring: Ring,
    state: Arc<Mutex<BellState>>,
    cancel: CancellationToken,
    /// Whether the replicator asks the bell to rest.
    resting: watch::Receiver<bool>,
    /// How long after starting it connects at the latest ([`SETTLE`]).
    settle: Duration,
    /// The replicator's first run is done: connect without settling longer.
    settled: Arc<Notify>,
}

/// How a session ended without failing.
enum Ended {
    Cancelled,
    Resting,
}

impl Bell {
    async fn run(mut self) {
        tokio::select! {
            _ = self.cancel.cancelled() => return self.set(BellState::Off("stopped".into())),
            _ = tokio::time::sleep(self.settle) => {}
            _ = self.settled.notified() => {}
        }
        let mut said: Option<String> = None;
        // A bell that cannot ring keeps saying so (Off, with its reason)
        // rather than showing as resting while the replicator is busy.
        let mut failing = false;
        loop {
            let woken = *self.resting.borrow() && !failing;
            if woken {
                self.set(BellState::Resting);
                tokio::select! {
                    _ = self.cancel.cancelled() => break,
                    Ok(_) = self.resting.wait_for(|r| !*r) => {}
                }
                self.set(BellState::Starting);
            }
            let mut rang = false;
            let outcome = tokio::select! {
                _ = self.cancel.cancelled() => Ok(Ended::Cancelled),
                outcome = self.session(&mut rang, woken) => outcome,
            };
            let err = match outcome {
                Ok(Ended::Cancelled) => break,
                Ok(Ended::Resting) => {
                    failing = false;
                    continue;
                }
                Err(err) => err,
            };
            failing = true;
            let reason = err.to_string();
            if rang {
                tracing::warn!(db = %self.db, reason = %reason, "doorbell stopped; polling the change logs");
                said = Some(reason.clone());
            } else if said.as_deref() != Some(reason.as_str()) {
                tracing::warn!(db = %self.db, reason = %reason, "doorbell off; polling the change logs");
                said = Some(reason.clone());
            } else {
                tracing::debug!(db = %self.db, reason = %reason, "doorbell still off");
            }
            let wait = match (rang, err.needs_operator()) {
                // It rang until now: most likely a dropped connection, so
                // ring again soon (not at once: a server that keeps
                // dropping it should not be hammered).
                (true, _) => RETRY_AFTER_RINGING,
                (false, true) => RETRY_AFTER_UNFIT,
                (false, false) => RETRY_AFTER,
            };
            self.set(BellState::Off(reason));
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            self.set(BellState::Starting);
        }
        self.set(BellState::Off("stopped".into()));
    }

    fn set(&self, state: BellState) {
        let up = match state {
            BellState::Ringing => 1.0,
            BellState::Resting => 2.0,
            BellState::Starting | BellState::Off(_) => 0.0,
        };
        metrics::gauge!(m::DOORBELL, "db" => self.db.to_string()).set(up);
        match self.state.lock() {
            Ok(mut s) => *s = state,
            Err(poisoned) => *poisoned.into_inner() = state,
        }
    }

    /// One connection: checks, the publication, the slot, then rings until
    /// something fails. `rang` tells the caller that it got that far.
    async fn session(&self, rang: &mut bool, woken: bool) -> Result<Ended, BellError> {
        let database = self
            .config
            .database(self.db)
            .ok_or_else(|| BellError::Config(format!("database id {} is not defined", self.db.0)))?;
        let Location::Postgres(target) = &database.location else {
            return Err(BellError::Unsupported("a SQLite database".into()));
        };
        let client = connect(database, APPLICATION_NAME).await?;
        check(&client, self.db).await?;
        publish(&client, self.db).await?;
        let mut wire = Wire::open(self.db, target, APPLICATION_NAME).await?;
        let slot = format!("dugong_bell_{:016x}", rand::random::<u64>());
        // Waits for the transactions running now to end: the replicator
        // polls meanwhile (state Starting).
        wire.command(&format!("CREATE_REPLICATION_SLOT {slot} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT")).await?;
        wire.stream(&format!(
            "START_REPLICATION SLOT {slot} LOGICAL 0/0 (proto_version '1', publication_names '\"{PUBLICATION}\"')"
        ))
        .await?;
        if woken {
            tracing::debug!(db = %self.db, slot = %slot, walsender = wire.pid, "doorbell ringing again");
        } else {
            tracing::info!(db = %self.db, slot = %slot, walsender = wire.pid, "doorbell ringing");
        }
        // What committed before the slot's start rings nothing: one ring
        // now, so the replicator looks at once rather than at its next tick.
        (self.ring)();
        self.set(BellState::Ringing);
        *rang = true;
        let outcome = self.listen(&mut wire, &client).await;
        if outcome.is_ok() {
            // The server drops the temporary slot with the connection.
            wire.terminate().await;
        }
        outcome
    }

    /// Rings on every commit that wrote the change logs, confirms what it
    /// heard, and keeps the publication in step, until cancelled or asked
    /// to rest.
    async fn listen(&self, wire: &mut Wire, client: &Client) -> Result<Ended, BellError> {
        enum Event {
            Cancelled,
            Rest,
            Confirm,
            Refresh,
            Heard(Result<Frame, BellError>),
        }
        let mut ear = Ear::default();
        let mut confirm = tokio::time::interval(STATUS_EVERY);
        let mut refresh = tokio::time::interval(REFRESH_EVERY);
        refresh.reset();
        let mut resting = self.resting.clone();
        loop {
            let event = tokio::select! {
                _ = self.cancel.cancelled() => Event::Cancelled,
                Ok(_) = resting.wait_for(|r| *r) => Event::Rest,
                _ = confirm.tick() => Event::Confirm,
                _ = refresh.tick() => Event::Refresh,
                frame = tokio::time::timeout(SILENCE, wire.read()) => {
                    Event::Heard(frame.unwrap_or(Err(BellError::Silent(SILENCE))))
                }
            };
            match event {
                Event::Cancelled => return Ok(Ended::Cancelled),
                Event::Rest => return Ok(Ended::Resting),
                Event::Confirm => wire.copy_data(&status_update(ear.end)).await?,
                Event::Refresh => publish(client, self.db).await?,
                Event::Heard(frame) => match frame? {
                    Frame::Message(Message::CopyData(body)) => {
                        let heard = ear.hear(body.data())?;
                        if heard.ring {
                            (self.ring)();
                        }
                        if heard.reply {
                            wire.copy_data(&status_update(ear.end)).await?;
                            confirm.reset();
                        }
                    }
                    Frame::Message(Message::ErrorResponse(body)) => return Err(wire::server_error(&body)?),
                    Frame::Message(Message::CopyDone | Message::CommandComplete(_) | Message::ReadyForQuery(_)) => {
                        return Err(BellError::Ended)
                    }
                    _ => {}
                },
            }
        }
    }
}

/// What one CopyData message of the stream means.
#[derive(Debug, Default, PartialEq, Eq)]
struct Heard {
    /// A transaction that wrote the change logs committed.
    ring: bool,
    /// The server asks for a status update now.
    reply: bool,
}

/// Follows the stream: transactions, and the WAL position to confirm.
#[derive(Debug, Default)]
struct Ear {
    /// The current transaction inserted into a change log.
    wrote: bool,
    /// The furthest WAL end the server reported.
    end: u64,
}

impl Ear {
    /// Reads one CopyData payload: 'w' XLogData carrying a pgoutput
    /// message, or 'k' a primary keepalive.
    fn hear(&mut self, data: &[u8]) -> Result<Heard, BellError> {
        let short = || BellError::Protocol("a replication message cut short".into());
        match data.first() {
            Some(b'w') => {
                let wal_end = be_u64(data.get(9..17).ok_or_else(short)?);
                self.end = self.end.max(wal_end);
                let ring = match data.get(25) {
                    Some(b'B') => {
                        self.wrote = false;
                        false
                    }
                    Some(b'I') => {
                        self.wrote = true;
                        false
                    }
                    // Before PostgreSQL 15 every commit comes, empty or not:
                    // only those that inserted ring.
                    Some(b'C') => std::mem::take(&mut self.wrote),
                    Some(_) => false,
                    None => return Err(short()),
                };
                Ok(Heard { ring, reply: false })
            }
            Some(b'k') => {
                let wal_end = be_u64(data.get(1..9).ok_or_else(short)?);
                self.end = self.end.max(wal_end);
                Ok(Heard { ring: false, reply: *data.get(17).ok_or_else(short)? == 1 })
            }
            Some(_) => Ok(Heard::default()),
            None => Err(short()),
        }
    }
}

fn be_u64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |n, b| (n << 8) | u64::from(*b))
}

/// A Standby Status Update confirming `end` as written, flushed and applied:
/// the slot keeps no WAL for the bell.
fn status_update(end: u64) -> Vec<u8> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    let mut message = Vec::with_capacity(34);
    message.push(b'r');
    for lsn in [end, end, end] {
        message.extend_from_slice(&lsn.to_be_bytes());
    }
    message.extend_from_slice(&now.saturating_sub(PG_EPOCH_MICROS).to_be_bytes());
    message.push(0);
    message
}

/// What an operator must change before a bell can ring, asked on an
/// ordinary connection so the reason reads plainly.
async fn check(client: &Client, db: DbId) -> Result<(), BellError> {
    let row = client
        .query_one(
            "SELECT current_setting('wal_level'),
                    (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
                    current_user::text",
            &[],
        )
        .await
        .map_err(|source| ReplicaError::Statement { db, context: "reading wal_level".into(), source })?;
    let wal_level: String = row.get(0);
    if wal_level != "logical" {
        return Err(BellError::Unfit(format!(
            "wal_level is {wal_level}; the doorbell needs wal_level = logical (set on the server, then restart it)"
        )));
    }
    if !row.get::<_, Option<bool>>(1).unwrap_or(false) {
        let user: String = row.get(2);
        return Err(BellError::Unfit(format!("role {user} lacks REPLICATION (ALTER ROLE ... REPLICATION)")));
    }
    Ok(())
}

/// Makes publication `dugong_doorbell` publish inserts into exactly the
/// change logs that exist. Replicators take turns (an advisory lock), and a
/// conflict with one that does not take it is retried once.
async fn publish(client: &Client, db: DbId) -> Result<(), BellError> {
    match publish_once(client, db).await {
        Err(BellError::Database(err)) if concurrent(&err) => publish_once(client, db).await,
        outcome => outcome,
    }
}

fn concurrent(err: &ReplicaError) -> bool {
    sqlstate(err).is_some_and(|code| {
        [SqlState::DUPLICATE_OBJECT, SqlState::UNIQUE_VIOLATION, SqlState::T_R_SERIALIZATION_FAILURE].contains(code)
            || (code == &SqlState::INTERNAL_ERROR && err.to_string().contains("concurrently"))
    })
}

async fn publish_once(client: &Client, db: DbId) -> Result<(), BellError> {
    let statement =
        |context: &'static str| move |source| ReplicaError::Statement { db, context: context.into(), source };
    client
        .batch_execute("BEGIN; SET LOCAL lock_timeout = '5s'")
        .await
        .map_err(statement("starting the publication's transaction"))?;
    let outcome = async {
        client.execute("SELECT pg_advisory_xact_lock($1)", &[&PUBLISH_LOCK]).await.map_err(statement("waiting for the publication lock"))?;
        let logs: Vec<String> = client
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'dugong' AND c.relkind = 'r' AND (c.relname ~ '^delta_[0-9]+$' OR c.relname = 'truncate_log')
                 ORDER BY 1",
                &[],
            )
            .await
            .map_err(statement("listing the change logs"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if logs.is_empty() {
            return Err(BellError::NotInstalled("no change logs on this database yet (dugong is not installed)".into()));
        }
        let existing = client
            .query_opt(
                "SELECT pubinsert AND NOT pubupdate AND NOT pubdelete AND NOT pubtruncate,
                        ARRAY(SELECT format('%I.%I', schemaname, tablename) FROM pg_publication_tables
                              WHERE pubname = p.pubname ORDER BY 1)
                 FROM pg_publication p WHERE pubname = $1",
                &[&PUBLICATION],
            )
            .await
            .map_err(statement("reading the publication"))?;
        let tables = logs.join(", ");
        let sql = match existing {
            None => format!("CREATE PUBLICATION {PUBLICATION} FOR TABLE {tables} WITH (publish = 'insert')"),
            Some(row) if row.get::<_, bool>(0) && row.get::<_, Vec<String>>(1) == logs => String::new(),
            Some(_) => format!(
                "ALTER PUBLICATION {PUBLICATION} SET TABLE {tables}; ALTER PUBLICATION {PUBLICATION} SET (publish = 'insert')"
            ),
        };
        if !sql.is_empty() {
            client.batch_execute(&sql).await.map_err(statement("creating or updating the publication"))?;
            tracing::debug!(db = %db, tables = logs.len(), "doorbell publication updated");
        }
        Ok(())
    }
    .await;
    let end = if outcome.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = client.batch_execute(end).await.map_err(statement("ending the publication's transaction"));
    outcome?;
    ended?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xlog(message: &[u8]) -> Vec<u8> {
        let mut data = vec![b'w'];
        data.extend_from_slice(&1u64.to_be_bytes());
        data.extend_from_slice(&0x1234u64.to_be_bytes());
        data.extend_from_slice(&0u64.to_be_bytes());
        data.extend_from_slice(message);
        data
    }

    #[test]
    fn only_commits_of_transactions_that_inserted_ring() {
        let mut ear = Ear::default();
        for (message, ring) in [
            (&b"B..."[..], false),
            (b"C...", false),
            (b"B", false),
            (b"R", false),
            (b"I", false),
            (b"C", true),
            (b"C", false),
        ] {
            assert_eq!(ear.hear(&xlog(message)).unwrap(), Heard { ring, reply: false }, "{message:?}");
        }
        assert_eq!(ear.end, 0x1234);
    }

    #[test]
    fn keepalives_move_the_end_and_may_ask_for_a_reply() {
        let mut ear = Ear::default();
        let mut k = vec![b'k'];
        k.extend_from_slice(&0x2000u64.to_be_bytes());
        k.extend_from_slice(&0u64.to_be_bytes());
        k.push(1);
        assert_eq!(ear.hear(&k).unwrap(), Heard { ring: false, reply: true });
        assert_eq!(ear.end, 0x2000);
        assert!(ear.hear(&k[..10]).is_err(), "cut short");
        let update = status_update(ear.end);
        assert_eq!(update.len(), 34);
        assert_eq!(&update[1..9], &0x2000u64.to_be_bytes());
        assert_eq!(&update[17..25], &0x2000u64.to_be_bytes());
    }
}

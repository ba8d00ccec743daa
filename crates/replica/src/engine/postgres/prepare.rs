//! Preparing a sync on PostgreSQL: connect to every database, claim the sync,
//! choose and check its tables, install capture, load cursors.

use super::capture::{self, Capture};
use super::catalog;
use super::connect::{self, connect_to};
use super::node::{window_start_among, Node, Postgres, Shape};
use super::read;
use super::record;
use super::snapshot::Snapshot;
use super::upkeep;
use crate::capture::Install;
use crate::engine::Prepared;
use crate::error::{ReplicaError, StatementContext};
use crate::plan::tables::CatalogRow;
use crate::plan::{self, SyncPlan, TableInfo};
use crate::record::{Missing, Replicator};
use crate::upkeep::Upkeep;
use dugong_config::{Config, Sync};
use dugong_core::TableName;
use dugong_core::{DbId, SyncName};
use futures_util::future::{join_all, try_join_all};
use std::collections::{BTreeMap, HashMap};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

/// The advice printed whenever commit timestamps are off.
pub const COMMIT_TIMESTAMP_ADVICE: &str = "track_commit_timestamp is off, so conflicts cannot be decided by commit time and go to the database listed first; turn it on with ALTER SYSTEM SET track_commit_timestamp = on (or in postgresql.conf) and restart PostgreSQL";

/// Connects, checks and installs everything a sync needs on its databases.
/// Databases that cannot be reached are left out, named in `missing`: the
/// others replicate among themselves meanwhile, and their positions for the
/// missing ones keep those changes waiting.
pub async fn prepare(config: &Config, sync: &Sync, who: &Replicator) -> Result<Prepared<Postgres>, ReplicaError> {
    // Every database is connected, claimed, checked and installed at once: a
    // restart waits for the slowest database, not for their sum.
    let ids = sync.databases();
    let connected = join_all(ids.iter().map(|id| async move { (*id, connect_to(config, *id).await) })).await;
    let mut clients = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    let mut unreachable = None;
    for (id, result) in connected {
        match result {
            Ok(client) => clients.push((id, client)),
            Err(e) if e.is_unreachable() => {
                missing.push(Missing { db: id, reason: e.to_string() });
                unreachable.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    if let (true, Some(e)) = (clients.is_empty(), unreachable) {
        return Err(e);
    }
    // Claimed one after the other, in the sync's order: of two replicators
    // starting at once, the one that claims the first database wins, instead
    // of each holding one claim and both standing by. Once the first claim
    // is held, the first looks go at once, beside the other claims: they only
    // read (and clear this process's own standby heartbeat, which a failed
    // claim writes again after them), so a remote database's look shares its
    // claim's round trip, and a claim that fails after all just throws them
    // away. A standby, turned away by the first claim, reads no catalogs at
    // each retry.
    let Some(((first, client), others)) = clients.split_first() else {
        return Err(ReplicaError::Config(format!("sync {} has no databases", sync.name)));
    };
    claim(client, *first, &sync.name, who).await?;
    let claims = async {
        for (id, client) in others {
            claim(client, *id, &sync.name, who).await?;
        }
        Ok::<(), ReplicaError>(())
    };
    let looks = join_all(clients.iter().map(|(id, client)| first_look(client, *id, sync, who)));
    let (claimed, looks) = futures_util::join!(claims, looks);
    claimed?;
    let mut looks = looks.into_iter().collect::<Result<Vec<FirstLook>, ReplicaError>>()?;
    let catalogs: Vec<(DbId, Vec<CatalogRow>)> =
        clients.iter().zip(&mut looks).map(|((id, _), look)| (*id, std::mem::take(&mut look.catalog))).collect();
    let plan = SyncPlan::new(config, sync, plan::select(&catalogs, sync)?)?;
    let reached: Vec<DbId> = clients.iter().map(|(id, _)| *id).collect();
    let configured = configured_positions(config);
    let set_up = clients
        .into_iter()
        .zip(looks)
        .map(|((id, client), look)| set_up_node(config, &plan, id, client, look, (&reached, &configured)));
    let (mut nodes, due): (Vec<Node>, Vec<(bool, Option<Snapshot>)>) =
        try_join_all(set_up).await?.into_iter().map(|(node, state_due, polled)| (node, (state_due, polled))).unzip();
    for i in 0..nodes.len() {
        if nodes[i].source {
            let (cursor, _) = nodes[i].window_start(&nodes);
            nodes[i].cursor = cursor;
        }
    }
    let (tables, name, configured) = (&plan.tables, &plan.sync.name, &configured);
    try_join_all(nodes.iter_mut().zip(due).map(|(n, (state_due, polled))| async move {
        // Polled early from the very cursor it starts at: ready.
        if polled.as_ref() == Some(&n.cursor) {
            Ok(())
        } else if n.source {
            prepare_source(n, tables, configured, state_due.then_some(name)).await
        } else if state_due {
            create_sync_state(&n.client, n.id, name).await
        } else {
            Ok(())
        }
    }))
    .await?;
    // The first polls' answers spare the first run asking again only when
    // there is something to ship at once: the run that starts right away,
    // trusting the sources that said nothing new (it checks them in its
    // snapshot). When none has anything, the first run asks afresh: whatever
    // is written before it must not wait for the poll after an empty run.
    // Their times go too then: one sample on a new session tells a remote
    // site from one nearby less surely than the polls to come.
    if !nodes.iter().any(|n| n.started == Some(true)) {
        for n in &mut nodes {
            n.started = None;
            n.poll_time = None;
            n.polls = 0;
        }
    }
    let same_major_version = nodes.iter().all(|n| n.major_version == nodes[0].major_version);
    // A table whose hold was lifted ships whole in the first run, due at once.
    let sweep = nodes.iter().any(|n| !n.sweep.is_empty());
    let engine = Postgres {
        sync: name.clone(),
        nodes,
        missing,
        same_major_version,
        windows: Vec::new(),
        one_flight_rows: 0,
        flights: Default::default(),
        parked: Vec::new(),
    };
    let mut prepared = Prepared::new(plan, who.clone(), engine);
    prepared.more_pending = sweep;
    Ok(prepared)
}

/// What one database of a sync is read for before its tables are chosen.
struct FirstLook {
    catalog: Vec<CatalogRow>,
    oids: HashMap<TableName, u32>,
    commit_timestamps: bool,
    major_version: i32,
    /// What an earlier start left where Dugong is installed (`None` on a
    /// first start): the sync's positions and the change logs' ids by table,
    /// so the first poll can go with the install check ([`EarlyPoll`]).
    positions: Option<BTreeMap<DbId, Snapshot>>,
    captured: Option<HashMap<TableName, i32>>,
}

/// Reads the catalog of a claimed database with everything else that needs
/// no choice of tables, in one round trip: the statements are sent together
/// (pipelined) and answered in order. Also checks the replication role and
/// clears this replicator's standby heartbeat.
async fn first_look(client: &Client, id: DbId, sync: &Sync, who: &Replicator) -> Result<FirstLook, ReplicaError> {
    let (role, _, settings, catalog, oids, positions, captured) = futures_util::join!(
        check_replication_role(client, id),
        // Standing by no more, if it did. Best effort: a first start has no
        // schema yet.
        async {
            client
                .query_typed(
                    "DELETE FROM dugong.heartbeat WHERE sync = $1 AND role = 'standby' AND pid = $2 AND host = $3",
                    &[(&sync.name.as_str(), Type::TEXT), (&who.pid, Type::INT4), (&who.host, Type::TEXT)],
                )
                .await
        },
        client.query_typed(
            "SELECT current_setting('track_commit_timestamp')::bool, current_setting('server_version_num')::int / 10000",
            &[],
        ),
        catalog::read_catalog(client, id),
        catalog::read_oids(client, id),
        capture::read_positions(client, id, &sync.name),
        client.query_typed("SELECT table_schema, table_name, id FROM dugong.captured", &[]),
    );
    // The role's failure first: it leaves the session in a failed
    // transaction, which the statements after it then report.
    role?;
    let settings = settings.on_db(id, || "reading track_commit_timestamp and the server version".into())?;
    let settings = settings.first().ok_or_else(|| ReplicaError::Protocol {
        db: id,
        message: "no answer reading track_commit_timestamp and the server version".into(),
    })?;
    let captured = captured.ok().map(|rows| {
        rows.iter()
            .map(|r| (TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)), r.get::<_, i32>(2)))
            .collect()
    });
    Ok(FirstLook {
        catalog: catalog?,
        oids: oids?,
        commit_timestamps: settings.get(0),
        major_version: settings.get(1),
        positions: positions.ok(),
        captured,
    })
}

/// Checks and installs what one database of the sync needs, and reads where
/// its changes were delivered up to. On a restart with capture in place and
/// unchanged, that is one round trip: the check that nothing is to be
/// installed goes with the positions, the shape and the sync's state — and
/// on a source with the first poll from the positions and change logs the
/// first look found ([`EarlyPoll`]), whose cursor is returned when the check
/// confirms them: the source is ready then. When the install is due after
/// all, it reads the positions it started itself, and the sync's state is
/// left to the caller's next round trip (the returned `true`).
async fn set_up_node(
    config: &Config,
    plan: &SyncPlan,
    id: DbId,
    mut client: Client,
    look: FirstLook,
    (reached, configured): (&[DbId], &[(String, String)]),
) -> Result<(Node, bool, Option<Snapshot>), ReplicaError> {
    let sync = &plan.sync;
    let what = Install::for_database(plan, id);
    for (table, reason) in &what.held {
        tracing::warn!(db = %id, table = %table.name, reason = %reason, "table held: its changes wait until it matches on every database");
    }
    let shape = shape_sql(id, &plan.tables, &look.oids)?;
    let early = EarlyPoll::of(&look, &what, id, reached);
    // The early poll goes first: the time its answer takes is its own.
    let (polled, found, positions, expected, state) = futures_util::join!(
        async {
            match &early {
                Some(e) => Some(first_poll(&client, id, &e.sql, &e.captures, &e.cursor, configured).await),
                None => None,
            }
        },
        capture::installed(&client, id, &what),
        read_positions_of(&client, id, &sync.name, what.source),
        client.query_typed(&shape, &[]),
        create_sync_state(&client, id, &sync.name),
    );
    let (installed, positions, state_due) = match found {
        Some(installed) => {
            state?;
            (installed, positions?, false)
        }
        None => {
            // The install read the positions it started (in its DDL's round
            // trip); the sync's state is made in the next round trip.
            let mut installed = capture::install(&mut client, id, &what).await?;
            let positions = std::mem::take(&mut installed.positions);
            (installed, positions, true)
        }
    };
    let expected: String =
        expected.on_db(id, || "reading the replicated tables' columns".into())?.first().map(|r| r.get(0)).ok_or_else(
            || ReplicaError::Protocol { db: id, message: "no answer reading the tables' columns".into() },
        )?;
    let shape = Shape { sql: shape, expected };
    let database = config.database(id).expect("every database of a sync is configured").clone();
    if !installed.unindexed.is_empty() {
        build_txid_indexes(database.clone(), id, installed.unindexed);
    }
    // The early poll counts only where the check found capture as the first
    // look did, and the positions unchanged since.
    let early = match (early, polled) {
        (Some(e), Some(polled)) if !state_due && e.captures == installed.captures && e.positions == positions => {
            Some((e, polled))
        }
        (_, Some(Ok(thrown))) => {
            thrown.log_stale(id);
            None
        }
        _ => None,
    };
    let FirstLook { commit_timestamps, major_version, .. } = look;
    let mut node = Node {
        id,
        database,
        client: std::sync::Arc::new(client),
        source: what.source,
        captures: installed.captures,
        held: installed.held,
        sweep: installed.released,
        positions,
        cursor: Snapshot { xmin: 0, xmax: 0, xip: vec![] },
        commit_timestamps,
        major_version,
        poll: None,
        poll_sql: String::new(),
        answered: None,
        poll_time: None,
        polls: 0,
        started: None,
        batch_bounds: Default::default(),
        shape,
        upkeep: Upkeep::default(),
        upkeep_task: None,
        polled: None,
        deferred: None,
        unflushed: None,
        opening: Default::default(),
        staged: String::new(),
        copy_in: Default::default(),
        prepared: false,
        read_ahead: true,
    };
    let ready = match early {
        Some((e, polled)) => {
            polled?.take_into(&mut node, e.sql);
            Some(e.cursor)
        }
        None => None,
    };
    Ok((node, state_due, ready))
}

/// The query of the fingerprint of `tables`' columns on this database, for
/// every run to check, with the tables' OIDs read beside the catalog.
fn shape_sql(id: DbId, tables: &[TableInfo], oids: &HashMap<TableName, u32>) -> Result<String, ReplicaError> {
    let oids = tables
        .iter()
        .map(|t| {
            oids.get(&t.name).copied().ok_or_else(|| {
                ReplicaError::SchemaChanged(format!("table {} disappeared from {id} while the sync started", t.name))
            })
        })
        .collect::<Result<Vec<u32>, _>>()?;
    Ok(Shape::of(&oids))
}

/// Makes the sync's state row, if it has none yet.
async fn create_sync_state(client: &Client, id: DbId, sync: &SyncName) -> Result<(), ReplicaError> {
    client
        .query_typed(
            "INSERT INTO dugong.sync_state (sync) VALUES ($1) ON CONFLICT (sync) DO NOTHING",
            &[(&sync.as_str(), Type::TEXT)],
        )
        .await
        .on_db(id, || "creating the sync's state".into())?;
    Ok(())
}

/// [`super::capture::read_positions`] on a source; a target keeps none.
async fn read_positions_of(
    client: &Client,
    id: DbId,
    sync: &SyncName,
    source: bool,
) -> Result<BTreeMap<DbId, Snapshot>, ReplicaError> {
    if source {
        capture::read_positions(client, id, sync).await
    } else {
        Ok(BTreeMap::new())
    }
}

/// The first poll of a source sent early, with its install check, from the
/// positions and change logs its first look found: the cursor they give and
/// the poll's statement for them.
struct EarlyPoll {
    positions: BTreeMap<DbId, Snapshot>,
    captures: HashMap<TableName, Capture>,
    cursor: Snapshot,
    sql: String,
}

impl EarlyPoll {
    /// On a source with no held tables where the first look found positions
    /// and a change log for each of its tables, among the databases
    /// `reached`; else there is nothing to poll early from.
    fn of(look: &FirstLook, what: &Install<'_>, id: DbId, reached: &[DbId]) -> Option<EarlyPoll> {
        if !what.source || !what.held.is_empty() {
            return None;
        }
        let (positions, captured) = (look.positions.as_ref()?, look.captured.as_ref()?);
        let captures = what
            .tables
            .iter()
            .map(|t| {
                let table_id = *captured.get(&t.name)?;
                Some((t.name.clone(), Capture { table_id, delta: capture::delta_name(table_id) }))
            })
            .collect::<Option<HashMap<TableName, Capture>>>()?;
        let (cursor, _) = window_start_among(id, positions, reached);
        let sql = read::pending_sql(what.tables, &captures);
        Some(EarlyPoll { positions: positions.clone(), captures, cursor, sql })
    }
}

/// A source's first poll and what goes with it.
struct FirstPoll {
    found: bool,
    /// How long the poll's answer took, less the server's time on it: it
    /// is sent first, so this is the link's, not that of the statements
    /// behind it or of a new session's cold caches.
    took: std::time::Duration,
    waiting: u64,
    statement: Statement,
    stale: Vec<String>,
}

/// Sends a source's first poll (`sql` from `cursor`), with the upkeep left by
/// an earlier replicator, the poll's prepare, and the removal of positions of
/// syncs or targets no longer configured: one round trip.
async fn first_poll(
    client: &Client,
    id: DbId,
    sql: &str,
    captures: &HashMap<TableName, Capture>,
    cursor: &Snapshot,
    configured: &[(String, String)],
) -> Result<FirstPoll, ReplicaError> {
    let text = cursor.to_string();
    // With the time the server spent on it since the statement arrived
    // (parsed, planned and run, on a new session's cold caches): what is
    // left of the wait is the link's, which tells a remote site from one
    // nearby.
    let timed = format!("SELECT ({sql}), (extract(epoch from clock_timestamp() - now()) * 1000000)::int8");
    let poll = async {
        let asked = std::time::Instant::now();
        let rows = client.query_typed(&timed, &[(&text, Type::TEXT)]).await;
        (rows, asked.elapsed())
    };
    let ((polled, took), waiting, statement, stale) = futures_util::join!(
        poll,
        upkeep::shipped_waiting(client, id, captures, cursor),
        client.prepare(sql),
        forget_stale_cursors(client, id, configured),
    );
    let (found, server_us): (bool, i64) = polled
        .on_db(id, || "polling the change logs".into())?
        .first()
        .map(|r| (r.get(0), r.get(1)))
        .ok_or_else(|| ReplicaError::Protocol { db: id, message: "no answer polling the change logs".into() })?;
    Ok(FirstPoll {
        found,
        took: took.saturating_sub(std::time::Duration::from_micros(server_us.max(0) as u64)),
        waiting: waiting?,
        statement: statement.on_db(id, || "preparing the poll".into())?,
        stale: stale?,
    })
}

impl FirstPoll {
    /// The source polls with `sql` from now on; its first run uses this
    /// poll's answer instead of asking a remote site again, as it does the
    /// answer that comes back with a run's commit (a source the run then
    /// does not read is checked in the run's snapshot to still have nothing
    /// new).
    fn take_into(self, node: &mut Node, sql: String) {
        self.log_stale(node.id);
        node.started = Some(self.found);
        node.poll_time = Some(self.took);
        node.polls = 1;
        node.upkeep = Upkeep::resumed(self.waiting);
        node.poll = Some(self.statement);
        node.poll_sql = sql;
    }

    fn log_stale(&self, id: DbId) {
        for stale in &self.stale {
            tracing::warn!(db = %id, removed = %stale, "removed the position of a sync or target that is no longer configured, so it cannot block purging");
        }
    }
}

/// What a source needs once its window start is known, when it was not
/// polled early (a first start, or capture or positions changed since the
/// first look): its first poll, and the sync's state is made if `state_due`
/// (after an install). One round trip: all are sent together.
async fn prepare_source(
    node: &mut Node,
    tables: &[TableInfo],
    configured: &[(String, String)],
    state_due: Option<&SyncName>,
) -> Result<(), ReplicaError> {
    let sql = read::pending_sql(tables, &node.captures);
    let (polled, state) =
        futures_util::join!(first_poll(&node.client, node.id, &sql, &node.captures, &node.cursor, configured), async {
            match state_due {
                Some(sync) => create_sync_state(&node.client, node.id, sync).await,
                None => Ok(()),
            }
        },);
    state?;
    polled?.take_into(node, sql);
    Ok(())
}

/// Every (sync, target) position the configuration can keep, as
/// `(sync, db<id>)` pairs.
fn configured_positions(config: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for sync in &config.syncs {
        for target in sync.databases() {
            out.push((sync.name.to_string(), target.to_string()));
        }
    }
    out
}

/// Builds the missing transaction-id indexes of change logs an earlier version
/// made, beside the replicator: the build waits for the transactions open on
/// the database, and replication goes on without the index meanwhile. If the
/// process exits first, the server finishes the build on its own.
fn build_txid_indexes(database: dugong_config::Database, id: DbId, unindexed: Vec<Capture>) {
    tokio::spawn(async move {
        let built = async {
            let client = connect::connect(&database, "dugong replicate (index build)").await?;
            capture::build_txid_indexes(&client, id, &unindexed).await
        };
        if let Err(e) = built.await {
            tracing::warn!(db = %id, error = %e, "could not build a change log's transaction-id index; runs read the change log without it, and the next start tries again");
        }
    });
}

/// Applying changes without echo needs `session_replication_role = replica`:
/// superuser, or on PostgreSQL 15+ `GRANT SET ON PARAMETER`. It is set for
/// the whole session of the run connection, not in each run transaction:
/// every change of the setting empties the session's plan cache, and set
/// and reset by every run it cost each run's statements (the poll among
/// them) their plans — the poll took 0.16 ms instead of 0.07. Nothing on
/// this connection writes what should be captured: `dugong conflicts
/// restore`, the one writer that must be, has a session of its own.
async fn check_replication_role(client: &Client, id: DbId) -> Result<(), ReplicaError> {
    let result = client.batch_execute("SET session_replication_role = replica").await;
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.code().map(|c| c.code()) == Some("42501") => {
            Err(ReplicaError::Privilege {
                db: id,
                message: "the replicator's role may not set session_replication_role, which applies changes without echoing them back; on PostgreSQL 15+ run GRANT SET ON PARAMETER session_replication_role TO <role>, on older versions connect as a superuser".into(),
            })
        }
        Err(source) => {
            Err(ReplicaError::Statement { db: id, context: "checking session_replication_role".into(), source })
        }
    }
}

/// Removes positions of syncs that are not in the configuration any more, and
/// of databases that are no longer in their sync, so a removed or renamed
/// sync or target never keeps change logs from being purged. `configured`
/// holds every `(sync, db<id>)` pair of the configuration.
pub async fn forget_stale_cursors(
    client: &Client,
    id: DbId,
    configured: &[(String, String)],
) -> Result<Vec<String>, ReplicaError> {
    let syncs: Vec<&str> = configured.iter().map(|(s, _)| s.as_str()).collect();
    let targets: Vec<&str> = configured.iter().map(|(_, t)| t.as_str()).collect();
    let rows = client
        .query_typed(
            "DELETE FROM dugong.cursor c
             WHERE c.sync <> ALL($1::text[])
                OR (c.target <> '*' AND NOT EXISTS (
                      SELECT 1 FROM unnest($1::text[], $2::text[]) AS k(sync, target)
                      WHERE k.sync = c.sync AND k.target = c.target))
             RETURNING c.sync || CASE WHEN c.target = '*' THEN '' ELSE ' to ' || c.target END",
            &[(&syncs, Type::TEXT_ARRAY), (&targets, Type::TEXT_ARRAY)],
        )
        .await
        .on_db(id, || "removing positions of removed syncs and targets".into())?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Checks that the tables of a running sync still look as they did when it was
/// prepared, on every database. Cheap: one catalog query per database.
pub async fn check_unchanged(plan: &SyncPlan, pg: &Postgres) -> Result<(), ReplicaError> {
    let refs: Vec<(DbId, &Client)> = pg.nodes.iter().map(|n| (n.id, &*n.client)).collect();
    plan.check_unchanged(catalog::select(&refs, &plan.sync).await?, pg.nodes[0].id)
}

/// Claims the sync on one database: a session-level advisory lock, held as long
/// as the replicator's connection lives (a killed replicator's lock goes with
/// its connection). Exactly one replicator runs a sync; another one started on
/// the same configuration — a standby on the other site — waits until the
/// lock is free on every database, then takes over.
async fn claim(client: &Client, id: DbId, sync: &SyncName, who: &Replicator) -> Result<(), ReplicaError> {
    let got: bool = client
        .query_typed_one(
            "SELECT pg_try_advisory_lock(hashtext('dugong sync ' || $1)::int8)",
            &[(&sync.as_str(), Type::TEXT)],
        )
        .await
        .on_db(id, || format!("claiming {sync}"))?
        .get(0);
    if got {
        return Ok(());
    }
    let holder = client
        .query_opt(
            "SELECT coalesce(replicator_pid::text, '?') || ' on ' || coalesce(replicator_host, '?')
             FROM dugong.sync_state WHERE sync = $1",
            &[&sync.as_str()],
        )
        .await
        .ok()
        .flatten()
        .map(|r| r.get::<_, String>(0))
        .unwrap_or_else(|| "another replicator".into());
    // Status shows who stands by. Best effort: a first start (no schema yet)
    // or a lost connection only leaves it out.
    let _ = record::heartbeat(client, sync, "standby", who).await;
    Err(ReplicaError::Standby { db: id, holder })
}

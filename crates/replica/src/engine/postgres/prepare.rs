//! Preparing a sync on PostgreSQL: connect to every database, claim the sync,
//! choose and check its tables, install capture, load cursors.

use super::capture::{self, Capture};
use super::catalog;
use super::connect::{self, connect_to};
use super::node::{Node, Postgres, Shape};
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
use tokio_postgres::Client;

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
    // of each holding one claim and both standing by.
    for (id, client) in &clients {
        claim(client, *id, &sync.name, who).await?;
    }
    let mut looks = try_join_all(clients.iter().map(|(id, client)| first_look(client, *id, sync, who))).await?;
    let catalogs: Vec<(DbId, Vec<CatalogRow>)> =
        clients.iter().zip(&mut looks).map(|((id, _), look)| (*id, std::mem::take(&mut look.catalog))).collect();
    let plan = SyncPlan::new(config, sync, plan::select(&catalogs, sync)?)?;
    let (mut nodes, state_due): (Vec<Node>, Vec<bool>) = try_join_all(
        clients.into_iter().zip(looks).map(|((id, client), look)| set_up_node(config, &plan, id, client, look)),
    )
    .await?
    .into_iter()
    .unzip();
    for i in 0..nodes.len() {
        if nodes[i].source {
            let (cursor, _) = nodes[i].window_start(&nodes);
            nodes[i].cursor = cursor;
        }
    }
    let configured = configured_positions(config);
    let (tables, name, configured) = (&plan.tables, &plan.sync.name, &configured);
    try_join_all(nodes.iter_mut().zip(state_due).map(|(n, state_due)| async move {
        if n.source {
            prepare_source(n, tables, configured, state_due.then_some(name)).await
        } else if state_due {
            create_sync_state(&n.client, n.id, name).await
        } else {
            Ok(())
        }
    }))
    .await?;
    let same_major_version = nodes.iter().all(|n| n.major_version == nodes[0].major_version);
    // A table whose hold was lifted ships whole in the first run, due at once.
    let sweep = nodes.iter().any(|n| !n.sweep.is_empty());
    let engine = Postgres {
        nodes,
        missing,
        same_major_version,
        windows: Vec::new(),
        one_flight_rows: 0,
        flights: Default::default(),
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
}

/// Reads the catalog of a claimed database with everything else that needs
/// no choice of tables, in one round trip: the statements are sent together
/// (pipelined) and answered in order. Also checks the replication role and
/// clears this replicator's standby heartbeat.
async fn first_look(client: &Client, id: DbId, sync: &Sync, who: &Replicator) -> Result<FirstLook, ReplicaError> {
    let (role, _, settings, catalog, oids) = futures_util::join!(
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
    );
    // The role's failure first: it leaves the session in a failed
    // transaction, which the statements after it then report.
    role?;
    let settings = settings.on_db(id, || "reading track_commit_timestamp and the server version".into())?;
    let settings = settings.first().ok_or_else(|| ReplicaError::Protocol {
        db: id,
        message: "no answer reading track_commit_timestamp and the server version".into(),
    })?;
    Ok(FirstLook { catalog: catalog?, oids: oids?, commit_timestamps: settings.get(0), major_version: settings.get(1) })
}

/// Checks and installs what one database of the sync needs, and reads where
/// its changes were delivered up to. On a restart with capture in place and
/// unchanged, that is one round trip: the check that nothing is to be
/// installed goes with the positions, the shape and the sync's state. When
/// the install is due after all, it reads the positions it started itself,
/// and the sync's state is left to the caller's next round trip (the
/// returned `true`).
async fn set_up_node(
    config: &Config,
    plan: &SyncPlan,
    id: DbId,
    mut client: Client,
    look: FirstLook,
) -> Result<(Node, bool), ReplicaError> {
    let sync = &plan.sync;
    let what = Install::for_database(plan, id);
    for (table, reason) in &what.held {
        tracing::warn!(db = %id, table = %table.name, reason = %reason, "table held: its changes wait until it matches on every database");
    }
    let shape = shape_sql(id, &plan.tables, &look.oids)?;
    let (found, positions, expected, state) = futures_util::join!(
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
    let FirstLook { commit_timestamps, major_version, .. } = look;
    let node = Node {
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
        batch_bounds: Default::default(),
        shape,
        upkeep: Upkeep::default(),
        upkeep_task: None,
        polled: None,
        deferred: None,
        opening: Default::default(),
        staged: String::new(),
        copy_in: Default::default(),
    };
    Ok((node, state_due))
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

/// [`read_positions`] on a source; a target keeps none.
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

/// What a source needs once its window start is known: the upkeep left by
/// an earlier replicator, and its poll statement; and positions of syncs or
/// targets no longer configured go, and the sync's state is made if
/// `state_due` (after an install). One round trip: all are sent together.
async fn prepare_source(
    node: &mut Node,
    tables: &[TableInfo],
    configured: &[(String, String)],
    state_due: Option<&SyncName>,
) -> Result<(), ReplicaError> {
    let sql = read::pending_sql(tables, node);
    let (waiting, poll, stale, state) = futures_util::join!(
        upkeep::shipped_waiting(&node.client, node.id, &node.captures, &node.cursor),
        node.client.prepare(&sql),
        forget_stale_cursors(&node.client, node.id, configured),
        async {
            match state_due {
                Some(sync) => create_sync_state(&node.client, node.id, sync).await,
                None => Ok(()),
            }
        },
    );
    state?;
    node.upkeep = Upkeep::resumed(waiting?);
    node.poll = Some(poll.on_db(node.id, || "preparing the poll".into())?);
    node.poll_sql = sql;
    for stale in stale? {
        tracing::warn!(db = %node.id, removed = %stale, "removed the position of a sync or target that is no longer configured, so it cannot block purging");
    }
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
/// superuser, or on PostgreSQL 15+ `GRANT SET ON PARAMETER`.
async fn check_replication_role(client: &Client, id: DbId) -> Result<(), ReplicaError> {
    let result = client.batch_execute("BEGIN; SET LOCAL session_replication_role = replica; ROLLBACK").await;
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.code().map(|c| c.code()) == Some("42501") => {
            let _ = client.batch_execute("ROLLBACK").await;
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

//! Preparing a sync: connect to every database, choose and check its tables,
//! install capture, load cursors. A prepared sync is what a run works on.

use crate::capture::{self, Capture};
use crate::catalog::{self, Excluded, TableInfo};
use crate::engine::postgres;
use crate::error::{ReplicaError, StatementContext};
use crate::resolve::DbOrder;
use crate::snapshot::Snapshot;
use dugong_config::{Config, Sync};
use dugong_core::{DbId, SyncName, TableName};
use futures_util::future::try_join_all;
use std::collections::HashMap;
use tokio_postgres::Client;

/// One database of a prepared sync.
pub struct Node {
    pub id: DbId,
    /// Its entry in the configuration, for connections beside `client`.
    pub database: dugong_config::Database,
    pub client: Client,
    /// Sources capture changes; targets only receive.
    pub source: bool,
    /// Change logs of the sync's tables (sources only).
    pub captures: HashMap<TableName, Capture>,
    /// What this sync has shipped of this database's changes (sources only).
    pub cursor: Snapshot,
    /// `track_commit_timestamp = on`: real commit times for conflicts.
    pub commit_timestamps: bool,
    /// The server's major version (`server_version_num / 10000`).
    pub major_version: i32,
    /// The prepared poll statement (sources only): it runs every few ms.
    pub poll: Option<tokio_postgres::Statement>,
    /// Where the next batches of a backlog end (sources only).
    pub batch_bounds: crate::run::BatchBounds,
    /// Purging and vacuuming the change logs in the background (sources only).
    pub upkeep: crate::upkeep::Upkeep,
}

/// A sync ready to run.
pub struct Prepared {
    pub sync: Sync,
    pub tables: Vec<TableInfo>,
    pub excluded: Vec<Excluded>,
    pub nodes: Vec<Node>,
    pub order: DbOrder,
    /// This replicator, as status shows it.
    pub who: crate::state::Replicator,
    /// The last run was bounded: changes are known to be waiting, so the next
    /// run needs no poll first.
    pub more_pending: bool,
    /// Every database runs the same major version of PostgreSQL, so the tables
    /// whose types allow it travel in COPY's binary format: PostgreSQL does not
    /// promise that format across major versions.
    pub same_major_version: bool,
}

impl Prepared {
    pub fn name(&self) -> &SyncName {
        &self.sync.name
    }

    /// Finishes the change logs' upkeep: what waits for a lull starts now, and
    /// this returns when it is done (before exiting after `--once`, and in tests).
    pub async fn finish_upkeep(&mut self) {
        for node in self.nodes.iter_mut().filter(|n| n.source) {
            crate::upkeep::finish(node).await;
        }
    }

    /// The format the rows of `table` travel in from source to targets: binary
    /// when the types and the servers allow it, which spares both ends
    /// printing and parsing every value as text.
    pub fn copy_format(&self, table: &TableInfo) -> crate::apply::CopyFormat {
        if self.same_major_version && table.binary_copy {
            crate::apply::CopyFormat::Binary
        } else {
            crate::apply::CopyFormat::Text
        }
    }

    /// The databases whose `track_commit_timestamp` is off.
    pub fn without_commit_timestamps(&self) -> Vec<DbId> {
        self.nodes.iter().filter(|n| n.source && !n.commit_timestamps).map(|n| n.id).collect()
    }
}

/// The advice printed whenever commit timestamps are off.
pub const COMMIT_TIMESTAMP_ADVICE: &str = "track_commit_timestamp is off, so conflicts cannot be decided by commit time and go to the database listed first; turn it on with ALTER SYSTEM SET track_commit_timestamp = on (or in postgresql.conf) and restart PostgreSQL";

/// Connects the replicator to a database of the configuration, by id.
pub async fn connect(config: &Config, id: DbId) -> Result<Client, ReplicaError> {
    connect_as(config, id, "dugong replicate").await
}

/// Connects to a database of the configuration under `application_name`, so
/// each tool shows up under its own name on the server.
pub async fn connect_as(config: &Config, id: DbId, application_name: &str) -> Result<Client, ReplicaError> {
    let db = config.database(id).ok_or_else(|| ReplicaError::Config(format!("database id {} is not defined", id.0)))?;
    postgres::connect(db, application_name).await
}

/// Connects, checks and installs everything a sync needs on its databases.
pub async fn prepare(config: &Config, sync: &Sync) -> Result<Prepared, ReplicaError> {
    // Every database is connected, claimed, checked and installed at once: a
    // restart waits for the slowest database, not for their sum.
    let ids = sync.databases();
    let clients = try_join_all(ids.iter().map(|id| async move { Ok((*id, connect(config, *id).await?)) })).await?;
    // Claimed one after the other, in the sync's order: of two replicators
    // starting at once, the one that claims the first database wins, instead
    // of each holding one claim and both standing by.
    for (id, client) in &clients {
        claim(client, *id, &sync.name).await?;
    }
    let field = format!("syncs[{}].tables", sync.index);
    let reference = ids[0];
    let (tables, excluded) = catalog::select_tables(&clients[0].1, reference, &sync.tables, &field).await?;
    let checks = clients[1..].iter().map(|(id, client)| catalog::check_same_schema(client, *id, reference, &tables));
    let problems: Vec<String> = try_join_all(checks).await?.into_iter().flatten().collect();
    if !problems.is_empty() {
        return Err(ReplicaError::SchemaMismatch(problems.join("; ")));
    }
    let nodes =
        try_join_all(clients.into_iter().map(|(id, client)| set_up_node(config, sync, &tables, id, client))).await?;
    let order = DbOrder::new(config.databases.iter().map(|d| d.id).collect());
    let same_major_version = nodes.iter().all(|n| n.major_version == nodes[0].major_version);
    Ok(Prepared {
        sync: sync.clone(),
        tables,
        excluded,
        nodes,
        order,
        who: crate::state::Replicator::this_process(),
        more_pending: false,
        same_major_version,
    })
}

/// Checks and installs what one database of the sync needs, and reads where
/// its changes were shipped up to.
async fn set_up_node(
    config: &Config,
    sync: &Sync,
    tables: &[TableInfo],
    id: DbId,
    mut client: Client,
) -> Result<Node, ReplicaError> {
    check_replication_role(&client, id).await?;
    let source = sync.sources.contains(&id);
    let (capture_tables, cursor_syncs) = if source { (tables, vec![sync.name.clone()]) } else { (&[][..], vec![]) };
    let installed = capture::install(&mut client, id, capture_tables, &cursor_syncs).await?;
    let database = config.database(id).expect("every database of a sync is configured").clone();
    if !installed.unindexed.is_empty() {
        build_txid_indexes(database.clone(), id, installed.unindexed);
    }
    let settings = client
        .query_one(
            "SELECT current_setting('track_commit_timestamp')::bool, current_setting('server_version_num')::int / 10000",
            &[],
        )
        .await
        .on_db(id, || "reading track_commit_timestamp and the server version".into())?;
    let (commit_timestamps, major_version): (bool, i32) = (settings.get(0), settings.get(1));
    let cursor =
        if source { read_cursor(&client, id, &sync.name).await? } else { Snapshot { xmin: 0, xmax: 0, xip: vec![] } };
    client
        .execute(
            "INSERT INTO dugong.sync_state (sync) VALUES ($1) ON CONFLICT (sync) DO NOTHING",
            &[&sync.name.as_str()],
        )
        .await
        .on_db(id, || "creating the sync's state".into())?;
    let mut node = Node {
        id,
        database,
        client,
        source,
        captures: installed.captures,
        cursor,
        commit_timestamps,
        major_version,
        poll: None,
        batch_bounds: Default::default(),
        upkeep: Default::default(),
    };
    if source {
        let waiting = crate::upkeep::shipped_waiting(&node.client, id, &node.captures, &node.cursor).await?;
        node.upkeep = crate::upkeep::Upkeep::resumed(waiting);
        let sql = crate::run::pending_sql(tables, &node);
        node.poll = Some(node.client.prepare(&sql).await.on_db(id, || "preparing the poll".into())?);
    }
    Ok(node)
}

/// Builds the missing transaction-id indexes of change logs an earlier version
/// made, beside the replicator: the build waits for the transactions open on
/// the database, and replication goes on without the index meanwhile. If the
/// process exits first, the server finishes the build on its own.
fn build_txid_indexes(database: dugong_config::Database, id: DbId, unindexed: Vec<Capture>) {
    tokio::spawn(async move {
        let built = async {
            let client = postgres::connect(&database, "dugong replicate (index build)").await?;
            capture::build_txid_indexes(&client, id, &unindexed).await
        };
        if let Err(e) = built.await {
            tracing::warn!(db = %id, error = %e, "could not build a change log's transaction-id index; runs read the change log without it, and the next start tries again");
        }
    });
}

/// Reads the sync's cursor on a source database.
pub async fn read_cursor(client: &Client, id: DbId, sync: &SyncName) -> Result<Snapshot, ReplicaError> {
    let text: String = client
        .query_one("SELECT snapshot::text FROM dugong.cursor WHERE sync = $1", &[&sync.as_str()])
        .await
        .on_db(id, || format!("reading the cursor of {sync}"))?
        .get(0);
    text.parse().map_err(|e| ReplicaError::Protocol { db: id, message: format!("{e}") })
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

/// Removes cursors of syncs that are not in the configuration any more, so a
/// removed or renamed sync never keeps change logs from being purged.
pub async fn forget_stale_cursors(
    client: &Client,
    id: DbId,
    configured: &[SyncName],
) -> Result<Vec<String>, ReplicaError> {
    let names: Vec<&str> = configured.iter().map(|s| s.as_str()).collect();
    let rows = client
        .query("DELETE FROM dugong.cursor WHERE sync <> ALL($1::text[]) RETURNING sync", &[&names])
        .await
        .on_db(id, || "removing cursors of removed syncs".into())?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Checks that the tables of a running sync still look as they did when it was
/// prepared, on every database. Cheap: one catalog query per database.
pub async fn check_unchanged(p: &Prepared) -> Result<(), ReplicaError> {
    let reference = &p.nodes[0];
    let field = format!("syncs[{}].tables", p.sync.index);
    let (tables, excluded) = catalog::select_tables(&reference.client, reference.id, &p.sync.tables, &field).await?;
    if tables != p.tables || excluded != p.excluded {
        return Err(catalog::schema_changed(&p.tables, &tables, reference.id));
    }
    for node in &p.nodes[1..] {
        let problems = catalog::check_same_schema(&node.client, node.id, reference.id, &p.tables).await?;
        if !problems.is_empty() {
            return Err(ReplicaError::SchemaMismatch(problems.join("; ")));
        }
    }
    Ok(())
}

/// Claims the sync on one database: a session-level advisory lock, held as long
/// as the replicator's connection lives (a killed replicator's lock goes with
/// its connection). Exactly one replicator runs a sync; another one started on
/// the same configuration — a standby on the other site — waits until the
/// lock is free on every database, then takes over.
async fn claim(client: &Client, id: DbId, sync: &SyncName) -> Result<(), ReplicaError> {
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock(hashtext('dugong sync ' || $1)::int8)", &[&sync.as_str()])
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
    Err(ReplicaError::Standby { db: id, holder })
}

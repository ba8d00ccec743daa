//! Change capture on PostgreSQL: Dugong's schema, a change log per table filled
//! by statement-level triggers, and removing all of it again.
//!
//! Each captured table gets `dugong.delta_<id>(k0.., dugong_txid xid8)`: the
//! changed keys and the writing transaction, in a heap with one index (on the
//! transaction id, so runs read their window only) and no sequence, filled by
//! `AFTER … FOR EACH STATEMENT` triggers reading transition tables. This is
//! the cheapest trigger design measured (reference capture-cost.md, V5): no
//! NOTIFY in the application's transaction, no per-row trigger calls. Updates
//! log their new keys; a row trigger restricted to `UPDATE OF <key columns>`
//! also logs the old key when a primary key changes, so that ships as a delete
//! of the old key and an insert of the new one.
//! Keys logged by the INSERT trigger carry `dugong_inserted = true`: a key that
//! was only ever inserted needs no delete on the targets first (`apply.rs`).
//! Change logs made before the index existed get it from a concurrent build
//! beside the replicator ([`build_txid_indexes`]), never inside the install.

use super::snapshot::Snapshot;
use crate::capture::{Install, Uninstalled};
use crate::error::{ReplicaError, StatementContext};
use crate::plan::TableInfo;
use dugong_core::{quote_ident, quote_literal, DbId, TableName};
use std::collections::{BTreeMap, HashMap};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

const SCHEMA_SQL: &str = include_str!("schema.sql");

/// Serializes installs by concurrent replicators on one database.
pub(crate) const INSTALL_LOCK: i64 = 0x6475_676f_6e67; // "dugong"

/// A table's change log on one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub table_id: i32,
    /// `dugong."delta_<id>"`, quoted.
    pub delta: String,
}

/// What `install` set up on one database.
#[derive(Debug, Default)]
pub struct Installed {
    pub captures: HashMap<TableName, Capture>,
    /// Change logs of the held tables: not shipped, never purged while held.
    pub held: HashMap<TableName, Capture>,
    /// Replicated tables a hold was written down for earlier: their change
    /// logs are shipped whole by the next run, which lifts the hold.
    pub released: Vec<TableName>,
    /// Change logs made by an earlier version, without their transaction-id
    /// index (or with one a failed build left invalid): [`build_txid_indexes`]
    /// builds them without blocking the application's writes.
    pub unindexed: Vec<Capture>,
    /// The sync's positions on a source, read in the install's transaction
    /// once they were started: the caller needs no round trip of its own.
    pub positions: BTreeMap<DbId, Snapshot>,
}

/// Installs (or confirms) Dugong's schema on a database of a sync, with the
/// capture triggers and positions `what` asks for; positions start now for
/// the syncs that have none yet.
pub async fn install(client: &mut Client, db: DbId, what: &Install<'_>) -> Result<Installed, ReplicaError> {
    // Four round trips whatever the number of tables (the begin, the reads,
    // the DDL, the commit; a table whose key changed adds its own): the statements of each step are sent together
    // (pipelined) and run in the order sent, and a failure aborts the
    // transaction, so the first error in that order is the one reported.
    let tx = client.transaction().await.on_db(db, || "starting the install transaction".into())?;
    let tables: Vec<&TableInfo> = what.tables.iter().chain(what.held.iter().map(|(t, _)| t)).collect();
    let keys: Vec<(Vec<String>, Vec<String>)> = tables
        .iter()
        .map(|t| (t.key.iter().map(|c| c.name.clone()).collect(), t.key.iter().map(|c| c.type_sql.clone()).collect()))
        .collect();
    let schemas: Vec<&str> = tables.iter().map(|t| t.name.schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|t| t.name.name.as_str()).collect();
    // The lock, the schema, an id for each table new to capture, and what
    // each table's capture has now.
    let schema_sql = format!("{SCHEMA_SQL}\n{STAMPS_SQL}\n{}", stamp_sql(SCHEMA_OBJECT, &schema_stamp()));
    let open = &tx;
    let (lock, schema, added, rows) = futures_util::join!(
        async { open.query_typed("SELECT pg_advisory_xact_lock($1)", &[(&INSTALL_LOCK, Type::INT8)]).await },
        open.batch_execute(&schema_sql),
        futures_util::future::join_all(tables.iter().zip(&keys).map(|(table, (key_names, key_types))| async move {
            open.query_typed(
                "INSERT INTO dugong.captured (table_schema, table_name, key_columns, key_types)
                 SELECT $1, $2, $3, $4
                 WHERE NOT EXISTS (SELECT 1 FROM dugong.captured WHERE table_schema = $1 AND table_name = $2)",
                &[
                    (&table.name.schema, Type::TEXT),
                    (&table.name.name, Type::TEXT),
                    (key_names, Type::TEXT_ARRAY),
                    (key_types, Type::TEXT_ARRAY),
                ],
            )
            .await
        })),
        async {
            open.query_typed(
                "SELECT c.id, c.key_columns, c.key_types,
                        to_regclass('dugong.' || quote_ident('delta_' || c.id)) IS NOT NULL,
                        coalesce((SELECT i.indisvalid FROM pg_index i
                                  WHERE i.indexrelid = to_regclass('dugong.' || quote_ident('delta_' || c.id || '_txid'))), false)
                 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(s, n, i)
                 JOIN dugong.captured c ON c.table_schema = u.s AND c.table_name = u.n
                 ORDER BY u.i",
                &[(&schemas, Type::TEXT_ARRAY), (&names, Type::TEXT_ARRAY)],
            )
            .await
        },
    );
    lock.on_db(db, || "waiting for the install lock".into())?;
    schema.map_err(|e| install_error(db, e))?;
    for (table, result) in tables.iter().zip(added) {
        result.on_db(db, || format!("installing capture on {}", table.name))?;
    }
    let rows = rows.on_db(db, || "reading what capture is installed".into())?;
    if rows.len() != tables.len() {
        return Err(ReplicaError::Protocol { db, message: "a captured table is missing from dugong.captured".into() });
    }
    let mut installed = Installed::default();
    let mut ddl = String::new();
    for ((table, (key_names, key_types)), row) in tables.iter().zip(&keys).zip(&rows) {
        let id: i32 = row.get(0);
        let (cols, types): (Vec<String>, Vec<String>) = (row.get(1), row.get(2));
        let (mut log_exists, indexed): (bool, bool) = (row.get(3), row.get(4));
        if cols != *key_names || types != *key_types {
            rekey(&tx, db, table, id, &cols).await?;
            log_exists = false;
        }
        // A new change log gets its index at once (it is empty). One an earlier
        // version made may hold millions of rows: building the index here would
        // block the application's writes (its triggers insert into the log) for
        // the whole build, so it is built concurrently after the install.
        let index_now = !log_exists;
        ddl.push_str(&capture_sql(id, table, index_now));
        ddl.push('\n');
        // Written here, not in `install_table` (which `dugong ddl` calls too):
        // only an install that also ran this version's SCHEMA_SQL vouches for
        // the whole of a table's capture.
        let capture = Capture { table_id: id, delta: delta_name(id) };
        ddl.push_str(&stamp_sql(&format!("delta_{id}"), &table_stamp(id, table)));
        if !(index_now || indexed) {
            installed.unindexed.push(capture.clone());
        }
        if what.held.iter().any(|(t, _)| t.name == table.name) {
            installed.held.insert(table.name.clone(), capture);
        } else {
            installed.captures.insert(table.name.clone(), capture);
        }
    }
    ddl.push_str(&hold_sql(what));
    if what.source {
        ddl.push_str(&positions_sql(what));
    }
    let (done, released, positions) = futures_util::join!(tx.batch_execute(&ddl), released(&tx, db, what), async {
        if what.source {
            read_positions(&tx, db, &what.sync).await
        } else {
            Ok(BTreeMap::new())
        }
    });
    done.map_err(|e| capture_error(db, "each replicated table", "installing capture".into(), e))?;
    installed.released = released?;
    installed.positions = positions?;
    tx.commit().await.on_db(db, || "committing the install".into())?;
    Ok(installed)
}

/// The primary key of `table` changed since capture was installed. Pending
/// keys of the old shape can't be shipped: refuses unless none are left, then
/// drops the change log (made again with the new key) and writes the key down.
async fn rekey<C: tokio_postgres::GenericClient + Sync>(
    tx: &C,
    db: DbId,
    table: &TableInfo,
    id: i32,
    old: &[String],
) -> Result<(), ReplicaError> {
    let key_names: Vec<String> = table.key.iter().map(|c| c.name.clone()).collect();
    let key_types: Vec<String> = table.key.iter().map(|c| c.type_sql.clone()).collect();
    let ctx = || format!("installing capture on {}", table.name);
    let delta = delta_name(id);
    let pending: i64 = tx.query_typed_one(&format!("SELECT count(*) FROM {delta}"), &[]).await.on_db(db, ctx)?.get(0);
    if pending > 0 {
        return Err(ReplicaError::SchemaMismatch(format!(
            "table {}: its primary key changed to ({}) on {db} while {pending} changes of the old key ({}) wait to be shipped; restore the key, let them ship, then change it",
            table.name,
            key_names.join(", "),
            old.join(", ")
        )));
    }
    tx.batch_execute(&format!("DROP TABLE {delta}")).await.on_db(db, ctx)?;
    tx.query_typed(
        "UPDATE dugong.captured SET key_columns = $2, key_types = $3 WHERE id = $1",
        &[(&id, Type::INT4), (&key_names, Type::TEXT_ARRAY), (&key_types, Type::TEXT_ARRAY)],
    )
    .await
    .on_db(db, ctx)?;
    Ok(())
}

/// The statements that write down the holds of `what` (and lift none: a
/// replicated table's hold goes with the run that ships its change log whole).
fn hold_sql(what: &Install<'_>) -> String {
    what.held
        .iter()
        .map(|(table, reason)| {
            format!(
                "INSERT INTO dugong.held (sync, table_schema, table_name, reason) VALUES ({}, {}, {}, {})
                 ON CONFLICT (sync, table_schema, table_name) DO UPDATE SET reason = excluded.reason;\n",
                quote_literal(what.sync.as_str()),
                quote_literal(&table.name.schema),
                quote_literal(&table.name.name),
                quote_literal(reason)
            )
        })
        .collect()
}

/// The statements that start each target's position where the sync's single
/// cursor of an earlier version was, or now; then that cursor has served.
fn positions_sql(what: &Install<'_>) -> String {
    let sync = quote_literal(what.sync.as_str());
    let targets: Vec<String> = what.targets.iter().map(|t| quote_literal(&t.to_string())).collect();
    let mut sql = format!(
        "INSERT INTO dugong.cursor (sync, target, snapshot)
         SELECT {sync}, t, coalesce((SELECT snapshot FROM dugong.cursor WHERE sync = {sync} AND target = '*'), pg_current_snapshot())
         FROM unnest(ARRAY[{}]::text[]) AS t
         ON CONFLICT (sync, target) DO NOTHING;\n",
        targets.join(", ")
    );
    if !targets.is_empty() {
        sql.push_str(&format!("DELETE FROM dugong.cursor WHERE sync = {sync} AND target = '*';\n"));
    }
    sql
}

/// Where each install writes down what it installed (`object`: `schema`,
/// or a change log's name, `delta_<id>`), so a restart can tell with one query
/// that there is nothing to do ([`installed`]). Kept here rather than in
/// SCHEMA_SQL so the stamp of the schema covers SCHEMA_SQL exactly.
const STAMPS_SQL: &str = "CREATE TABLE IF NOT EXISTS dugong.installed (object text PRIMARY KEY, stamp text NOT NULL);";

/// The `dugong.installed` row of the schema itself.
const SCHEMA_OBJECT: &str = "schema";

/// The names of the five capture triggers of a table.
const TRIGGERS: [&str; 5] = [
    "dugong_capture_insert",
    "dugong_capture_update",
    "dugong_capture_key",
    "dugong_capture_delete",
    "dugong_capture_truncate",
];

/// The statement that writes down `stamp` for `object`.
fn stamp_sql(object: &str, stamp: &str) -> String {
    format!(
        "INSERT INTO dugong.installed (object, stamp) VALUES ({}, {}) ON CONFLICT (object) DO UPDATE SET stamp = excluded.stamp;",
        quote_literal(object),
        quote_literal(stamp)
    )
}

/// FNV-1a over `parts`: stable across builds and Rust versions (unlike
/// `DefaultHasher`), which a stamp stored in the database needs. Not a
/// defence against anyone: whoever can write `dugong.installed` can drop
/// the triggers anyway.
fn fingerprint(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The stamp of this version's SCHEMA_SQL.
fn schema_stamp() -> String {
    fingerprint(&[SCHEMA_SQL, STAMPS_SQL])
}

/// The stamp of one table's capture as this version installs it: the
/// schema's, and everything `capture_sql` creates for the table (its key
/// columns and types, the change log, the functions, the triggers).
fn table_stamp(id: i32, table: &TableInfo) -> String {
    fingerprint(&[SCHEMA_SQL, STAMPS_SQL, &capture_sql(id, table, false)])
}

/// What [`install`] would set up, if a restart finds it all in place
/// already: this version's schema, every table of `what` captured with its
/// current key (the stamp of this version's capture, and what its DO block
/// would repair: the change log there with its insert marks, the five
/// triggers on the table, the update trigger without old rows), the
/// positions of every target, and no hold to write. `None` whenever any of
/// that is not so, or the check itself failed (no schema yet, say): then
/// [`install`] is due. Costs one round trip and takes no lock: it only reads
/// what committed installs left, which are complete or not there. What it
/// does not look at is the objects of SCHEMA_SQL and the functions' bodies
/// (covered by the stamps, as this version wrote them): whoever drops or
/// edits those by hand empties `dugong.installed`, and the next start
/// installs again.
pub async fn installed(client: &Client, db: DbId, what: &Install<'_>) -> Option<Installed> {
    if !what.held.is_empty() {
        return None;
    }
    let sync = what.sync.as_str();
    let targets: Vec<String> = what.targets.iter().map(ToString::to_string).collect();
    let schemas: Vec<&str> = what.tables.iter().map(|t| t.name.schema.as_str()).collect();
    let names: Vec<&str> = what.tables.iter().map(|t| t.name.name.as_str()).collect();
    let triggers: Vec<&str> = TRIGGERS.to_vec();
    // The schema's stamp, whether every target has its position (and the
    // cursor of an earlier version is gone), and the holds written down.
    let state = async {
        client
            .query_typed(
                "SELECT (SELECT stamp FROM dugong.installed WHERE object = 'schema'),
                        NOT EXISTS (SELECT 1 FROM dugong.cursor WHERE sync = $1 AND target = '*')
                          AND (SELECT count(*) FROM dugong.cursor WHERE sync = $1 AND target = ANY($2)) = cardinality($2),
                        ARRAY(SELECT table_schema FROM dugong.held WHERE sync = $1 ORDER BY 1, table_name),
                        ARRAY(SELECT table_name FROM dugong.held WHERE sync = $1 ORDER BY table_schema, 1)",
                &[(&sync, Type::TEXT), (&targets, Type::TEXT_ARRAY)],
            )
            .await
    };
    // Per table: its id, its stamp, whether its change log is there, how many
    // of its triggers and insert marks are as the DO block leaves them, and
    // whether the change log's index is valid.
    let tables = async {
        client
            .query_typed(
                "SELECT c.id, s.stamp, to_regclass('dugong.' || quote_ident('delta_' || c.id)) IS NOT NULL,
                        (SELECT count(DISTINCT t.tgname) FROM pg_trigger t
                         WHERE t.tgrelid = to_regclass(quote_ident(u.s) || '.' || quote_ident(u.n)) AND t.tgname = ANY($3)
                           AND (t.tgname <> 'dugong_capture_update' OR t.tgoldtable IS NULL))
                          + (SELECT count(*) FROM pg_attribute a
                             WHERE a.attrelid = to_regclass('dugong.' || quote_ident('delta_' || c.id))
                               AND a.attname = 'dugong_inserted' AND NOT a.attisdropped),
                        coalesce((SELECT i.indisvalid FROM pg_index i
                                  WHERE i.indexrelid = to_regclass('dugong.' || quote_ident('delta_' || c.id || '_txid'))), false)
                 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(s, n, i)
                 LEFT JOIN dugong.captured c ON c.table_schema = u.s AND c.table_name = u.n
                 LEFT JOIN dugong.installed s ON s.object = 'delta_' || c.id
                 ORDER BY u.i",
                &[(&schemas, Type::TEXT_ARRAY), (&names, Type::TEXT_ARRAY), (&triggers, Type::TEXT_ARRAY)],
            )
            .await
    };
    let (state, tables) = match futures_util::future::join(state, tables).await {
        (Ok(state), Ok(tables)) => (state, tables),
        (Err(e), _) | (_, Err(e)) => {
            // No schema yet, most often; the install says what is wrong if
            // anything is.
            tracing::debug!(db = %db, error = %e, "could not check what capture is installed");
            return None;
        }
    };
    let state = state.first()?;
    if state.get::<_, Option<String>>(0) != Some(schema_stamp()) || (what.source && !state.get::<_, bool>(1)) {
        return None;
    }
    if tables.len() != what.tables.len() {
        return None;
    }
    let mut installed = Installed::default();
    for (table, row) in what.tables.iter().zip(&tables) {
        let id: i32 = row.get::<_, Option<i32>>(0)?;
        let (stamp, log_exists, checks, indexed): (Option<String>, bool, i64, bool) =
            (row.get(1), row.get(2), row.get(3), row.get(4));
        if stamp != Some(table_stamp(id, table)) || !log_exists || checks != TRIGGERS.len() as i64 + 1 {
            return None;
        }
        let capture = Capture { table_id: id, delta: delta_name(id) };
        if !indexed {
            installed.unindexed.push(capture.clone());
        }
        installed.captures.insert(table.name.clone(), capture);
    }
    let (held_schemas, held_names): (Vec<String>, Vec<String>) = (state.get(2), state.get(3));
    installed.released = held_schemas
        .into_iter()
        .zip(held_names)
        .map(|(schema, name)| TableName::new(schema, name))
        .filter(|t| what.tables.iter().any(|table| table.name == *t))
        .collect();
    Some(installed)
}

/// The replicated tables of `what` that a hold was written down for.
async fn released(
    tx: &tokio_postgres::Transaction<'_>,
    db: DbId,
    what: &Install<'_>,
) -> Result<Vec<TableName>, ReplicaError> {
    let rows = tx
        .query_typed(
            "SELECT table_schema, table_name FROM dugong.held WHERE sync = $1",
            &[(&what.sync.as_str(), Type::TEXT)],
        )
        .await
        .on_db(db, || "reading the holds".into())?;
    Ok(rows
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .filter(|t| what.tables.iter().any(|table| table.name == *t))
        .collect())
}

/// The statement that lifts the holds of `tables` once their change logs
/// shipped whole, for the run's commit.
pub fn release_sql(sync: &str, tables: &[TableName]) -> String {
    tables
        .iter()
        .map(|t| {
            format!(
                "DELETE FROM dugong.held WHERE sync = {} AND table_schema = {} AND table_name = {};\n",
                quote_literal(sync),
                quote_literal(&t.schema),
                quote_literal(&t.name)
            )
        })
        .collect()
}

fn install_error(db: DbId, source: tokio_postgres::Error) -> ReplicaError {
    if source.code().map(|c| c.code()) == Some("42501") {
        return ReplicaError::Privilege {
            db,
            message: format!(
                "{}; the replicator's role needs CREATE on the database (GRANT CREATE ON DATABASE … TO …)",
                crate::describe_pg(&source)
            ),
        };
    }
    ReplicaError::Statement { db, context: "installing the dugong schema".into(), source }
}

/// Installs capture on one table, in the transaction `tx` is in (the
/// install's, or `dugong ddl`'s). Returns its change log, and whether that has
/// its transaction-id index.
pub(crate) async fn install_table<C: tokio_postgres::GenericClient + Sync>(
    tx: &C,
    db: DbId,
    table: &TableInfo,
) -> Result<(Capture, bool), ReplicaError> {
    let key_names: Vec<String> = table.key.iter().map(|c| c.name.clone()).collect();
    let key_types: Vec<String> = table.key.iter().map(|c| c.type_sql.clone()).collect();
    let ctx = || format!("installing capture on {}", table.name);
    let existing = tx
        .query_typed_opt(
            "SELECT id, key_columns, key_types FROM dugong.captured WHERE table_schema = $1 AND table_name = $2",
            &[(&table.name.schema, Type::TEXT), (&table.name.name, Type::TEXT)],
        )
        .await
        .on_db(db, ctx)?;
    let id: i32 = match existing {
        Some(row) => {
            let id: i32 = row.get(0);
            let (cols, types): (Vec<String>, Vec<String>) = (row.get(1), row.get(2));
            if cols != key_names || types != key_types {
                rekey(tx, db, table, id, &cols).await?;
            }
            id
        }
        None => tx
            .query_typed_one(
                "INSERT INTO dugong.captured (table_schema, table_name, key_columns, key_types) VALUES ($1, $2, $3, $4) RETURNING id",
                &[
                    (&table.name.schema, Type::TEXT),
                    (&table.name.name, Type::TEXT),
                    (&key_names, Type::TEXT_ARRAY),
                    (&key_types, Type::TEXT_ARRAY),
                ],
            )
            .await
            .on_db(db, ctx)?
            .get(0),
    };
    let delta = delta_name(id);
    // A new change log gets its index at once (it is empty). One an earlier
    // version made may hold millions of rows: building the index here would
    // block the application's writes (its triggers insert into the log) for
    // the whole build, so it is built concurrently after the install.
    let row = tx
        .query_typed_one(
            "SELECT to_regclass($1) IS NOT NULL,
                    COALESCE((SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($2)), false)",
            &[(&delta, Type::TEXT), (&txid_index_name(id), Type::TEXT)],
        )
        .await
        .on_db(db, ctx)?;
    let (log_exists, indexed): (bool, bool) = (row.get(0), row.get(1));
    let index_now = !log_exists;
    tx.batch_execute(&capture_sql(id, table, index_now))
        .await
        .map_err(|e| capture_error(db, &table.name.to_string(), ctx(), e))?;
    Ok((Capture { table_id: id, delta }, index_now || indexed))
}

/// An error of the statements that install capture on `tables`.
fn capture_error(db: DbId, tables: &str, context: String, source: tokio_postgres::Error) -> ReplicaError {
    match source.code().map(|c| c.code()) {
        Some("42501") => ReplicaError::Privilege {
            db,
            message: format!(
                "{}; the replicator's role must own {tables} or hold the TRIGGER privilege on it",
                crate::describe_pg(&source),
            ),
        },
        _ => ReplicaError::Statement { db, context, source },
    }
}

/// `dugong."delta_<id>"`.
pub fn delta_name(id: i32) -> String {
    format!("dugong.{}", quote_ident(&format!("delta_{id}")))
}

/// `"delta_<id>_txid"`: the change log's index on transaction ids, as named
/// when it is created (in the change log's schema).
fn txid_index(id: i32) -> String {
    quote_ident(&format!("delta_{id}_txid"))
}

/// `dugong."delta_<id>_txid"`, the index qualified.
fn txid_index_name(id: i32) -> String {
    format!("dugong.{}", txid_index(id))
}

/// Serializes concurrent index builds by replicators started together.
const INDEX_BUILD_LOCK: i64 = 0x6475_676f_6e69; // "dugoni"

/// Builds the transaction-id index of each change log in `unindexed` with
/// `CREATE INDEX CONCURRENTLY`, which lets the application's writes go on
/// (plain `CREATE INDEX` would block them for the whole build). An invalid
/// index a failed build left behind is dropped first. Until it is built, runs
/// read the change log without it: correct, only slower.
///
/// Meant for a task beside the replicator, on a connection of its own: the
/// build waits for every transaction already open on the database to end. If
/// another replicator is building them already, returns at once.
pub async fn build_txid_indexes(client: &Client, db: DbId, unindexed: &[Capture]) -> Result<(), ReplicaError> {
    let ctx = || "building the change logs' transaction-id indexes".to_string();
    let locked: bool =
        client.query_one("SELECT pg_try_advisory_lock($1)", &[&INDEX_BUILD_LOCK]).await.on_db(db, ctx)?.get(0);
    if !locked {
        return Ok(());
    }
    let mut result = Ok(());
    for capture in unindexed {
        let index = txid_index_name(capture.table_id);
        let step = async {
            let state: Option<bool> = client
                .query_one("SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1))", &[&index])
                .await
                .on_db(db, ctx)?
                .get(0);
            match state {
                Some(true) => return Ok(()),
                Some(false) => {
                    client.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}")).await.on_db(db, ctx)?
                }
                None => {}
            }
            let clock = std::time::Instant::now();
            client
                .batch_execute(&format!(
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} (dugong_txid)",
                    txid_index(capture.table_id),
                    capture.delta
                ))
                .await
                .on_db(db, ctx)?;
            tracing::info!(db = %db, index = %index, ms = clock.elapsed().as_millis() as u64, "built a change log's transaction-id index");
            Ok::<(), ReplicaError>(())
        };
        if let Err(e) = step.await {
            result = Err(e);
            break;
        }
    }
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&INDEX_BUILD_LOCK]).await.on_db(db, ctx);
    result.and(unlocked.map(|_| ()))
}

/// The key columns of `table`'s change log, `k0`, `k1`, …, one per key
/// column of the table, in its order.
pub(crate) fn delta_key_columns(table: &TableInfo) -> Vec<String> {
    (0..table.key.len()).map(|i| format!("k{i}")).collect()
}

/// The delta table, the capture function and the four triggers of one table,
/// each created only when missing (the function is replaced, which is cheap).
fn capture_sql(id: i32, table: &TableInfo, index_now: bool) -> String {
    let delta = delta_name(id);
    let function = format!("dugong.{}", quote_ident(&format!("capture_{id}")));
    let kcols = delta_key_columns(table);
    let kdefs: Vec<String> =
        table.key.iter().enumerate().map(|(i, c)| format!("k{i} {} NOT NULL", c.type_sql)).collect();
    let src_cols: Vec<String> = table.key.iter().map(|c| quote_ident(&c.name)).collect();
    let src = src_cols.join(", ");
    let into = format!("INSERT INTO {delta} ({})", kcols.join(", "));
    let into_inserted = format!("INSERT INTO {delta} ({}, dugong_inserted)", kcols.join(", "));
    let lit_delta = quote_literal(&delta);
    // Runs read a window of transaction ids: during a backlog, the index keeps
    // them from scanning every change not yet purged.
    let txid_index = if index_now {
        format!("CREATE INDEX IF NOT EXISTS {} ON {delta} (dugong_txid);", txid_index(id))
    } else {
        String::new()
    };
    let qt = table.name.quoted();
    let lit_schema = quote_literal(&table.name.schema);
    let lit_name = quote_literal(&table.name.name);
    let key_function = format!("dugong.{}", quote_ident(&format!("capture_{id}_key")));
    let old_values: Vec<String> = src_cols.iter().map(|c| format!("OLD.{c}")).collect();
    let new_values: Vec<String> = src_cols.iter().map(|c| format!("NEW.{c}")).collect();
    let capture_body = format!(
        "
BEGIN
    IF TG_OP = 'DELETE' THEN
        {into} SELECT {src} FROM dugong_old;
    ELSIF TG_OP = 'INSERT' THEN
        {into_inserted} SELECT {src}, true FROM dugong_new;
    ELSE
        {into} SELECT {src} FROM dugong_new;
    END IF;
    RETURN NULL;
END "
    );
    let key_body = format!(
        "
BEGIN
    {into} VALUES ({old_values});
    RETURN NULL;
END ",
        old_values = old_values.join(", "),
    );
    let install_body = format!(
        "
DECLARE
    rel oid := (quote_ident({lit_schema}) || '.' || quote_ident({lit_name}))::regclass;
BEGIN
    -- Change logs made before inserts were marked: unmarked rows read as
    -- maybe not new, which is always safe.
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {lit_delta}::regclass AND attname = 'dugong_inserted' AND NOT attisdropped) THEN
        ALTER TABLE {delta} ADD COLUMN dugong_inserted boolean;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'dugong_capture_insert') THEN
        CREATE TRIGGER dugong_capture_insert AFTER INSERT ON {qt} REFERENCING NEW TABLE AS dugong_new
            FOR EACH STATEMENT EXECUTE FUNCTION {function}();
    END IF;
    -- Updates log the new keys only (old ones are the same unless the key
    -- changed); an earlier version also kept the old rows: replace it.
    IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'dugong_capture_update' AND tgoldtable IS NOT NULL) THEN
        DROP TRIGGER dugong_capture_update ON {qt};
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'dugong_capture_update') THEN
        CREATE TRIGGER dugong_capture_update AFTER UPDATE ON {qt} REFERENCING NEW TABLE AS dugong_new
            FOR EACH STATEMENT EXECUTE FUNCTION {function}();
    END IF;
    -- A primary-key change also logs the old key (shipped as its deletion). The
    -- column list means it fires only when an UPDATE sets a key column.
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'dugong_capture_key') THEN
        CREATE TRIGGER dugong_capture_key AFTER UPDATE OF {src} ON {qt}
            FOR EACH ROW WHEN (({old_values}) IS DISTINCT FROM ({new_values}))
            EXECUTE FUNCTION {key_function}();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'dugong_capture_delete') THEN
        CREATE TRIGGER dugong_capture_delete AFTER DELETE ON {qt} REFERENCING OLD TABLE AS dugong_old
            FOR EACH STATEMENT EXECUTE FUNCTION {function}();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgname = 'dugong_capture_truncate') THEN
        CREATE TRIGGER dugong_capture_truncate AFTER TRUNCATE ON {qt}
            FOR EACH STATEMENT EXECUTE FUNCTION dugong.capture_truncate('{id}');
    END IF;
END ",
        old_values = old_values.join(", "),
        new_values = new_values.join(", "),
    );
    format!(
        "CREATE TABLE IF NOT EXISTS {delta} ({kdefs}, dugong_txid xid8 NOT NULL DEFAULT pg_current_xact_id(), dugong_inserted boolean);
{txid_index}
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {capture};
CREATE OR REPLACE FUNCTION {key_function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {key};
DO {install};",
        kdefs = kdefs.join(", "),
        capture = dollar_quoted(&capture_body),
        key = dollar_quoted(&key_body),
        install = dollar_quoted(&install_body),
    )
}

/// `body` in dollar quotes whose tag occurs nowhere in it — `$dugong$`, else
/// `$dugong1$`, `$dugong2$`… — so no table or column name inside (a table
/// called `a$dugong$b`, say) can end the quote early.
fn dollar_quoted(body: &str) -> String {
    let tag = (0..)
        .map(|n: u32| if n == 0 { "$dugong$".to_string() } else { format!("$dugong{n}$") })
        .find(|tag| !body.contains(tag.as_str()))
        .expect("some tag is missing from any finite text");
    format!("{tag}{body}{tag}")
}

/// Removes the triggers from every captured table and drops the `dugong`
/// schema. The application's tables and rows stay as they are.
pub async fn uninstall(client: &mut Client, db: DbId) -> Result<Uninstalled, ReplicaError> {
    let tx = client.transaction().await.on_db(db, || "starting the uninstall transaction".into())?;
    let exists: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'dugong')", &[])
        .await
        .on_db(db, || "looking for the dugong schema".into())?
        .get(0);
    if !exists {
        return Ok(Uninstalled::default());
    }
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INSTALL_LOCK])
        .await
        .on_db(db, || "waiting for the install lock".into())?;
    let rows = tx
        .query(
            "SELECT c.table_schema, c.table_name, to_regclass(quote_ident(c.table_schema) || '.' || quote_ident(c.table_name)) IS NOT NULL
             FROM dugong.captured c ORDER BY 1, 2",
            &[],
        )
        .await
        .on_db(db, || "listing captured tables".into())?;
    let mut out = Uninstalled::default();
    for row in rows {
        let table = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
        if row.get::<_, bool>(2) {
            let qt = table.quoted();
            tx.batch_execute(&format!(
                "DROP TRIGGER IF EXISTS dugong_capture_insert ON {qt};
                 DROP TRIGGER IF EXISTS dugong_capture_update ON {qt};
                 DROP TRIGGER IF EXISTS dugong_capture_key ON {qt};
                 DROP TRIGGER IF EXISTS dugong_capture_delete ON {qt};
                 DROP TRIGGER IF EXISTS dugong_capture_truncate ON {qt};"
            ))
            .await
            .on_db(db, || format!("removing the triggers of {table}"))?;
        }
        out.tables.push(table.display_name());
    }
    // The doorbell's publication lives outside the schema.
    tx.batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", super::bell::PUBLICATION))
        .await
        .on_db(db, || "dropping the doorbell's publication".into())?;
    tx.batch_execute("DROP SCHEMA dugong CASCADE").await.on_db(db, || "dropping the dugong schema".into())?;
    tx.commit().await.on_db(db, || "committing the uninstall".into())?;
    out.schema_dropped = true;
    Ok(out)
}

/// Reads the sync's positions on a source database, per target.
pub async fn read_positions<C: tokio_postgres::GenericClient + std::marker::Sync>(
    client: &C,
    id: DbId,
    sync: &dugong_core::SyncName,
) -> Result<BTreeMap<DbId, Snapshot>, ReplicaError> {
    let rows = client
        .query_typed(
            "SELECT target, snapshot::text FROM dugong.cursor WHERE sync = $1 AND target <> '*'",
            &[(&sync.as_str(), Type::TEXT)],
        )
        .await
        .on_db(id, || format!("reading the positions of {sync}"))?;
    let protocol = |message: String| ReplicaError::Protocol { db: id, message };
    let mut out = BTreeMap::new();
    for row in rows {
        let target: String = row.get(0);
        let db = target.parse::<DbId>().map_err(|_| protocol(format!("a position for {target:?}, not a database")))?;
        let text: String = row.get(1);
        out.insert(db, text.parse().map_err(|e| protocol(format!("{e}")))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::dollar_quoted;

    #[test]
    fn the_dollar_quote_tag_never_occurs_in_the_body() {
        assert_eq!(dollar_quoted("BEGIN END"), "$dugong$BEGIN END$dugong$");
        let body = r#"INSERT INTO "a$dugong$b" VALUES ('$dugong1$')"#;
        assert_eq!(dollar_quoted(body), format!("$dugong2${body}$dugong2$"));
    }
}

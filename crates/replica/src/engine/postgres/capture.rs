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

use crate::capture::{Install, Uninstalled};
use crate::error::{ReplicaError, StatementContext};
use crate::plan::TableInfo;
use dugong_core::{quote_ident, quote_literal, DbId, TableName};
use std::collections::HashMap;
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
}

/// Installs (or confirms) Dugong's schema on a database of a sync, with the
/// capture triggers and positions `what` asks for; positions start now for
/// the syncs that have none yet.
pub async fn install(client: &mut Client, db: DbId, what: &Install<'_>) -> Result<Installed, ReplicaError> {
    let tx = client.transaction().await.on_db(db, || "starting the install transaction".into())?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INSTALL_LOCK])
        .await
        .on_db(db, || "waiting for the install lock".into())?;
    tx.batch_execute(SCHEMA_SQL).await.map_err(|e| install_error(db, e))?;
    let mut installed = Installed::default();
    let held: Vec<&TableInfo> = what.held.iter().map(|(t, _)| t).collect();
    for table in what.tables.iter().chain(held) {
        let (capture, indexed) = install_table(&tx, db, table).await?;
        if !indexed {
            installed.unindexed.push(capture.clone());
        }
        if what.held.iter().any(|(t, _)| t.name == table.name) {
            installed.held.insert(table.name.clone(), capture);
        } else {
            installed.captures.insert(table.name.clone(), capture);
        }
    }
    hold(&tx, db, what).await?;
    installed.released = released(&tx, db, what).await?;
    if what.source {
        // Each target's position starts where the sync's single cursor of an
        // earlier version was, or now; then that cursor has served.
        let targets: Vec<String> = what.targets.iter().map(ToString::to_string).collect();
        let sync = what.sync.as_str();
        tx.execute(
            "INSERT INTO dugong.cursor (sync, target, snapshot)
             SELECT $1, t, coalesce((SELECT snapshot FROM dugong.cursor WHERE sync = $1 AND target = '*'), pg_current_snapshot())
             FROM unnest($2::text[]) AS t
             ON CONFLICT (sync, target) DO NOTHING",
            &[&sync, &targets],
        )
        .await
        .on_db(db, || format!("starting the positions of {sync}"))?;
        if !targets.is_empty() {
            tx.execute("DELETE FROM dugong.cursor WHERE sync = $1 AND target = '*'", &[&sync])
                .await
                .on_db(db, || format!("starting the positions of {sync}"))?;
        }
    }
    tx.commit().await.on_db(db, || "committing the install".into())?;
    Ok(installed)
}

/// Writes down the holds of `what` (and lifts none: a replicated table's hold
/// goes with the run that ships its change log whole).
async fn hold(tx: &tokio_postgres::Transaction<'_>, db: DbId, what: &Install<'_>) -> Result<(), ReplicaError> {
    for (table, reason) in &what.held {
        tx.execute(
            "INSERT INTO dugong.held (sync, table_schema, table_name, reason) VALUES ($1, $2, $3, $4)
             ON CONFLICT (sync, table_schema, table_name) DO UPDATE SET reason = excluded.reason",
            &[&what.sync.as_str(), &table.name.schema, &table.name.name, reason],
        )
        .await
        .on_db(db, || format!("holding {}", table.name))?;
    }
    Ok(())
}

/// The replicated tables of `what` that a hold was written down for.
async fn released(
    tx: &tokio_postgres::Transaction<'_>,
    db: DbId,
    what: &Install<'_>,
) -> Result<Vec<TableName>, ReplicaError> {
    let rows = tx
        .query("SELECT table_schema, table_name FROM dugong.held WHERE sync = $1", &[&what.sync.as_str()])
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
        .query_opt(
            "SELECT id, key_columns, key_types FROM dugong.captured WHERE table_schema = $1 AND table_name = $2",
            &[&table.name.schema, &table.name.name],
        )
        .await
        .on_db(db, ctx)?;
    let id: i32 = match existing {
        Some(row) => {
            let id: i32 = row.get(0);
            let (cols, types): (Vec<String>, Vec<String>) = (row.get(1), row.get(2));
            if cols != key_names || types != key_types {
                // The primary key changed since capture was installed. Pending keys
                // of the old shape can't be shipped; refuse unless none are left.
                let delta = delta_name(id);
                let pending: i64 = tx
                    .query_one(&format!("SELECT count(*) FROM {delta}"), &[])
                    .await
                    .on_db(db, ctx)?
                    .get(0);
                if pending > 0 {
                    return Err(ReplicaError::SchemaMismatch(format!(
                        "table {}: its primary key changed to ({}) on {db} while {pending} changes of the old key ({}) wait to be shipped; restore the key, let them ship, then change it",
                        table.name,
                        key_names.join(", "),
                        cols.join(", ")
                    )));
                }
                tx.batch_execute(&format!("DROP TABLE {delta}")).await.on_db(db, ctx)?;
                tx.execute("UPDATE dugong.captured SET key_columns = $2, key_types = $3 WHERE id = $1", &[&id, &key_names, &key_types])
                    .await
                    .on_db(db, ctx)?;
            }
            id
        }
        None => tx
            .query_one(
                "INSERT INTO dugong.captured (table_schema, table_name, key_columns, key_types) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&table.name.schema, &table.name.name, &key_names, &key_types],
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
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL,
                    COALESCE((SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($2)), false)",
            &[&delta, &txid_index_name(id)],
        )
        .await
        .on_db(db, ctx)?;
    let (log_exists, indexed): (bool, bool) = (row.get(0), row.get(1));
    let index_now = !log_exists;
    tx.batch_execute(&capture_sql(id, table, index_now)).await.map_err(|e| match e.code().map(|c| c.code()) {
        Some("42501") => ReplicaError::Privilege {
            db,
            message: format!(
                "{}; the replicator's role must own {} or hold the TRIGGER privilege on it",
                crate::describe_pg(&e),
                table.name
            ),
        },
        _ => ReplicaError::Statement { db, context: ctx(), source: e },
    })?;
    Ok((Capture { table_id: id, delta }, index_now || indexed))
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

/// The delta table, the capture function and the four triggers of one table,
/// each created only when missing (the function is replaced, which is cheap).
fn capture_sql(id: i32, table: &TableInfo, index_now: bool) -> String {
    let delta = delta_name(id);
    let function = format!("dugong.{}", quote_ident(&format!("capture_{id}")));
    let kcols: Vec<String> = (0..table.key.len()).map(|i| format!("k{i}")).collect();
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
    tx.batch_execute("DROP SCHEMA dugong CASCADE").await.on_db(db, || "dropping the dugong schema".into())?;
    tx.commit().await.on_db(db, || "committing the uninstall".into())?;
    out.schema_dropped = true;
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

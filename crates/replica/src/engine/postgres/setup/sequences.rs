//! Sequences on PostgreSQL: read each site's, interleave them across the
//! sites of a sync (`crate::setup::sequences` decides the values), and the
//! warning `dugong status` shows when they are not.
//!
//! Interleaving is safe while applications insert: on every site, in one
//! transaction each, `ALTER SEQUENCE … INCREMENT BY N` comes first — it
//! blocks `nextval` until the transaction ends —, then the highest value used
//! anywhere (the sequences' last values and the maximum of every column they
//! feed) is read, and each site's sequence restarts above it at its offset.

use super::super::catalog::SKIPPED_SCHEMAS;
use crate::error::{ReplicaError, StatementContext};
use crate::setup::sequences::{advice as advice_text, interleaved, start_for, SequenceState};
use dugong_core::{quote_ident, DbId, TableName};
use std::collections::BTreeMap;
use tokio_postgres::Client;

/// One sequence of one site.
#[derive(Debug, Clone)]
struct Sequence {
    name: TableName,
    state: SequenceState,
}

async fn read(client: &Client, db: DbId) -> Result<Vec<Sequence>, ReplicaError> {
    let skipped: Vec<String> = SKIPPED_SCHEMAS.iter().map(|s| s.to_string()).collect();
    let rows = client
        .query(
            "SELECT schemaname::text, sequencename::text, increment_by FROM pg_sequences
             WHERE schemaname <> ALL($1::text[]) AND schemaname NOT LIKE 'pg\\_%'
             ORDER BY 1, 2",
            &[&skipped],
        )
        .await
        .on_db(db, || "reading the sequences".into())?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name = TableName::new(r.get::<_, String>(0), r.get::<_, String>(1));
        let increment: i64 = r.get(2);
        // The sequence itself knows what nextval hands out next (the view
        // shows no last value after a RESTART).
        let Ok(row) = client.query_one(&format!("SELECT last_value, is_called FROM {}", name.quoted()), &[]).await
        else {
            continue;
        };
        let (last, called): (i64, bool) = (row.get(0), row.get(1));
        let next = if called { last.saturating_add(increment) } else { last };
        out.push(Sequence { name, state: SequenceState { db, increment, next } });
    }
    Ok(out)
}

/// Every sequence present on all of `clients` (in the sync's order) with its
/// state on each.
async fn across(clients: &[(DbId, &Client)]) -> Result<BTreeMap<TableName, Vec<Sequence>>, ReplicaError> {
    let mut by_name: BTreeMap<TableName, Vec<Sequence>> = BTreeMap::new();
    for (id, client) in clients {
        for s in read(client, *id).await? {
            by_name.entry(s.name.clone()).or_default().push(s);
        }
    }
    by_name.retain(|_, v| v.len() == clients.len());
    Ok(by_name)
}

/// Interleaves every sequence that is not yet; returns one line per
/// sequence changed (empty when all were interleaved already).
pub(crate) async fn interleave(clients: &[(DbId, &Client)]) -> Result<Vec<String>, ReplicaError> {
    let n = clients.len();
    let todo: Vec<TableName> = across(clients)
        .await?
        .into_iter()
        .filter(|(_, seqs)| {
            let states: Vec<SequenceState> = seqs.iter().map(|s| s.state.clone()).collect();
            !interleaved(&states, n)
        })
        .map(|(name, _)| name)
        .collect();
    if todo.is_empty() {
        return Ok(Vec::new());
    }
    // An application taking the same sequences in another order can deadlock
    // with the locks taken here; the server then aborts one side: try again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = interleave_locked(clients, &todo).await;
        for (id, client) in clients {
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            if let Err(e) = client.batch_execute(end).await {
                if result.is_ok() {
                    return Err(e).on_db(*id, || "committing the sequences".into());
                }
            }
        }
        match result {
            Err(e) if attempt < 5 && e.policy() == crate::error::ErrorPolicy::RetrySoon => {
                tracing::debug!(error = %e, attempt, "interleaving sequences clashed with the application; again");
            }
            other => return other,
        }
    }
}

async fn interleave_locked(clients: &[(DbId, &Client)], todo: &[TableName]) -> Result<Vec<String>, ReplicaError> {
    let n = clients.len() as i64;
    for (id, client) in clients {
        client.batch_execute("BEGIN").await.on_db(*id, || "starting to interleave sequences".into())?;
        for name in todo {
            // Blocks nextval on this sequence until the transaction ends.
            client
                .batch_execute(&format!("ALTER SEQUENCE {} INCREMENT BY {n}", name.quoted()))
                .await
                .on_db(*id, || format!("changing the step of {name}"))?;
        }
    }
    let mut lines = Vec::with_capacity(todo.len());
    for name in todo {
        let mut above = 0i64;
        let mut max_value = i64::MAX;
        for (id, client) in clients {
            let row = client
                .query_one(&format!("SELECT last_value, (SELECT max_value FROM pg_sequences WHERE schemaname = $1 AND sequencename = $2) FROM {}", name.quoted()), &[&name.schema, &name.name])
                .await
                .on_db(*id, || format!("reading {name}"))?;
            above = above.max(row.get::<_, i64>(0));
            max_value = max_value.min(row.get::<_, Option<i64>>(1).unwrap_or(i64::MAX));
            for (table, column) in fed_columns(client, *id, name).await? {
                let sql = format!("SELECT max({})::int8 FROM ONLY {}", quote_ident(&column), table.quoted());
                let max: Option<i64> = client
                    .query_one(&sql, &[])
                    .await
                    .on_db(*id, || format!("reading the largest {table}.{column}"))?
                    .get(0);
                above = above.max(max.unwrap_or(0));
            }
        }
        let mut starts = Vec::with_capacity(clients.len());
        for (k, (id, client)) in clients.iter().enumerate() {
            let start = start_for(k, clients.len(), above);
            if start > max_value {
                return Err(ReplicaError::Config(format!(
                    "sequence {name} cannot be interleaved: its next values on {id} would pass its maximum {max_value}; raise it (ALTER SEQUENCE {} MAXVALUE …, or AS bigint)",
                    name.quoted()
                )));
            }
            client
                .batch_execute(&format!("ALTER SEQUENCE {} RESTART WITH {start}", name.quoted()))
                .await
                .on_db(*id, || format!("restarting {name}"))?;
            starts.push(format!("{id} from {start}"));
        }
        lines.push(format!("{}: step {n}, {}", name.display_name(), starts.join(", ")));
    }
    Ok(lines)
}

/// The integer columns a sequence feeds: those it is owned by (serial,
/// identity) and those whose default calls it.
async fn fed_columns(client: &Client, db: DbId, seq: &TableName) -> Result<Vec<(TableName, String)>, ReplicaError> {
    let rows = client
        .query(
            "WITH s AS (SELECT to_regclass(quote_ident($1) || '.' || quote_ident($2)) AS oid),
             cols AS (
               SELECT d.refobjid AS rel, d.refobjsubid AS att FROM pg_depend d, s
                WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
               UNION
               SELECT ad.adrelid, ad.adnum FROM pg_depend d JOIN pg_attrdef ad ON ad.oid = d.objid, s
                WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = s.oid)
             SELECT n.nspname::text, c.relname::text, a.attname::text
             FROM cols JOIN pg_class c ON c.oid = cols.rel JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = cols.rel AND a.attnum = cols.att
             WHERE c.relkind = 'r' AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)",
            &[&seq.schema, &seq.name],
        )
        .await
        .on_db(db, || format!("finding the columns {seq} feeds"))?;
    Ok(rows.into_iter().map(|r| (TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)), r.get(2))).collect())
}

/// `dugong status`'s warning for a sync whose sequences are not interleaved
/// across `clients` (the sync's databases that answered, in its order; the
/// sync has `sites` in all). `None` when they are, or when fewer than two
/// sites answered.
pub async fn advice(clients: &[(DbId, &Client)], sites: usize) -> Option<String> {
    if clients.len() < 2 || sites < 2 {
        return None;
    }
    let seqs = across(clients).await.ok()?;
    let not: Vec<(TableName, Vec<SequenceState>)> = seqs
        .into_iter()
        .map(|(name, seqs)| (name, seqs.into_iter().map(|s| s.state).collect::<Vec<_>>()))
        .filter(|(_, states)| !interleaved(states, sites))
        .collect();
    advice_text(&not, sites)
}

//! `dugong repair` on PostgreSQL (`crate::repair` tells what it promises).
//!
//! Two connections per database: one streams the table's keys and row
//! hashes for the merge, the other settles the differing keys, a batch per
//! transaction: read (and lock) every database's version, decide, delete and
//! insert on the losers with `session_replication_role = replica`, log each
//! change in every database's conflict log, commit.

use super::capture;
use super::catalog;
use super::compare::{compare_table, key_streams};
use super::connect::connect_as;
use super::record::insert_conflicts;
use super::rows::{self, Version};
use crate::capture::Install;
use crate::diff::merge::Merge;
use crate::error::{ReplicaError, StatementContext};
use crate::plan::{DbOrder, TableInfo};
use crate::read::TextKey;
use crate::record::conflict::{conflict_id, ConflictKind, RunConflict};
use crate::repair::decide::{decide, Decision, Held, Loser};
use crate::repair::report::{DatabaseWrites, KeyRepair, RepairOptions, TableRepair, LISTED_KEYS};
use dugong_config::{Config, Sync};
use dugong_core::DbId;
use futures_util::future::{join_all, try_join_all};
use serde_json::value::RawValue;
use std::collections::HashSet;
use tokio_postgres::Client;

/// The connections of one sync's repair.
struct Sites {
    ids: Vec<DbId>,
    /// For the merge's streams.
    readers: Vec<(DbId, Client)>,
    /// For the versions and the writes.
    writers: Vec<(DbId, Client)>,
    /// `track_commit_timestamp` per database, in `ids` order.
    commit_times: Vec<bool>,
}

/// Repairs the tables of one PostgreSQL sync.
pub(crate) async fn repair_sync(
    config: &Config,
    sync: &Sync,
    options: &RepairOptions,
    order: &DbOrder,
) -> Result<Vec<TableRepair>, ReplicaError> {
    let ids = sync.databases();
    let open = |name: &'static str| {
        let ids = &ids;
        async move {
            let all = join_all(ids.iter().map(|id| connect_as(config, *id, name))).await;
            ids.iter().copied().zip(all).map(|(id, c)| c.map(|c| (id, c))).collect::<Result<Vec<_>, _>>()
        }
    };
    let readers = open("dugong repair").await?;
    let mut writers = open("dugong repair").await?;
    let mut commit_times = Vec::with_capacity(ids.len());
    for (id, c) in &writers {
        let on: bool = c
            .query_one("SELECT current_setting('track_commit_timestamp')::bool", &[])
            .await
            .on_db(*id, || "reading track_commit_timestamp".into())?
            .get(0);
        commit_times.push(on);
    }
    if !options.dry_run {
        // The conflict log lives in Dugong's schema.
        for (id, c) in writers.iter_mut() {
            let schema_only =
                Install { source: false, tables: &[], held: Vec::new(), sync: sync.name.clone(), targets: Vec::new() };
            capture::install(c, *id, &schema_only).await?;
        }
    }
    let refs: Vec<(DbId, &Client)> = readers.iter().map(|(id, c)| (*id, c)).collect();
    let selection = catalog::select(&refs, sync).await?;
    // A held table (its schema differs somewhere) is reported, not repaired.
    let held: Vec<(&TableInfo, Option<&str>)> =
        selection.held.iter().map(|h| (&h.on[0].1, Some(h.reason.as_str()))).collect();
    let chosen: Vec<(&TableInfo, Option<&str>)> = selection
        .tables
        .iter()
        .map(|t| (t, None))
        .chain(held)
        .filter(|(t, _)| wanted(t, options.table.as_deref()))
        .collect();
    if let (Some(name), true) = (&options.table, chosen.is_empty()) {
        return Err(ReplicaError::Config(format!("{} replicates no table named {name:?}", sync.name)));
    }
    let sites = Sites { ids, readers, writers, commit_times };
    let mut out = Vec::with_capacity(chosen.len());
    for (table, held) in chosen {
        let mut result = TableRepair {
            table: table.name.display_name(),
            key_columns: table.key.iter().map(|c| c.name.clone()).collect(),
            writes: sites
                .ids
                .iter()
                .map(|id| DatabaseWrites { database: id.to_string(), ..Default::default() })
                .collect(),
            ..Default::default()
        };
        if let Some(reason) = held {
            result.problem = Some(format!("schema differs: {reason}"));
        } else {
            repair_table(&sites, sync, table, options, order, &mut result).await?;
        }
        result.writes.retain(|w| w.inserted + w.updated + w.deleted > 0);
        out.push(result);
    }
    Ok(out)
}

fn wanted(table: &TableInfo, name: Option<&str>) -> bool {
    match name {
        None => true,
        Some(n) => match n.split_once('.') {
            Some((schema, name)) => table.name.schema == schema && table.name.name == name,
            None => table.name.name == n,
        },
    }
}

async fn repair_table(
    sites: &Sites,
    sync: &Sync,
    table: &TableInfo,
    options: &RepairOptions,
    order: &DbOrder,
    result: &mut TableRepair,
) -> Result<(), ReplicaError> {
    if compare_table(&sites.readers, table, 0).await?.identical {
        return Ok(());
    }
    let mut merge = Merge::start(key_streams(&sites.readers, table, "").await?).await?;
    let mut batch: Vec<TextKey> = Vec::with_capacity(options.batch);
    loop {
        let next = merge.next_difference().await?;
        if let Some(found) = &next {
            result.differing += 1;
            batch.push(found.key.clone());
        }
        if batch.len() >= options.batch.max(1) || (next.is_none() && !batch.is_empty()) {
            settle(sites, sync, table, &std::mem::take(&mut batch), options, order, result).await?;
        }
        if next.is_none() {
            return Ok(());
        }
    }
}

/// Settles one batch of differing keys in one transaction per database.
async fn settle(
    sites: &Sites,
    sync: &Sync,
    table: &TableInfo,
    keys: &[TextKey],
    options: &RepairOptions,
    order: &DbOrder,
    result: &mut TableRepair,
) -> Result<(), ReplicaError> {
    let write = !options.dry_run;
    if write {
        for (id, c) in &sites.writers {
            c.batch_execute("BEGIN; SET LOCAL session_replication_role = replica")
                .await
                .on_db(*id, || "starting the repair transaction".into())?;
        }
    }
    let settled = async {
        let versions = try_join_all(
            sites
                .writers
                .iter()
                .zip(&sites.commit_times)
                .map(|((id, c), times)| rows::versions(c, *id, table, keys, *times, write)),
        )
        .await?;
        let mut changing: HashSet<TextKey> = HashSet::new();
        for (id, c) in &sites.writers {
            changing.extend(rows::in_flight(c, *id, sync.name.as_str(), table, keys).await?);
        }
        let mut plan = Plan::new(sites.ids.len());
        for key in keys {
            if changing.contains(key) {
                result.changing += 1;
                continue;
            }
            let held: Vec<Held> = sites
                .ids
                .iter()
                .zip(&versions)
                .map(|(id, v)| Held { db: *id, version: v.get(key).map(|v: &Version| (v.committed, v.json.clone())) })
                .collect();
            if let Decision::Settle { winner, version, losers } = decide(&held, options.source, order) {
                plan.add(sites, sync, table, key, winner, version, losers, result);
            }
        }
        if write {
            for (i, (id, c)) in sites.writers.iter().enumerate() {
                rows::delete(c, *id, table, &plan.deletes[i]).await?;
                let inserts: Vec<&str> = plan.inserts[i].iter().map(String::as_str).collect();
                rows::insert_json(c, *id, table, &inserts).await?;
            }
            if !plan.conflicts.is_empty() {
                let clients: Vec<(DbId, &Client)> = sites.writers.iter().map(|(id, c)| (*id, c)).collect();
                insert_conflicts(&clients, sync.name.as_str(), &plan.conflicts).await?;
            }
        }
        Ok::<(), ReplicaError>(())
    }
    .await;
    if !write {
        return settled;
    }
    match settled {
        Ok(()) => {
            for (id, c) in &sites.writers {
                c.batch_execute("COMMIT").await.on_db(*id, || "committing the repair".into())?;
            }
            Ok(())
        }
        Err(e) => {
            for (_, c) in &sites.writers {
                let _ = c.batch_execute("ROLLBACK").await;
            }
            Err(e)
        }
    }
}

/// What one batch writes on each database, and logs.
struct Plan {
    deletes: Vec<Vec<TextKey>>,
    inserts: Vec<Vec<String>>,
    conflicts: Vec<RunConflict>,
}

impl Plan {
    fn new(n: usize) -> Plan {
        Plan { deletes: vec![Vec::new(); n], inserts: vec![Vec::new(); n], conflicts: Vec::new() }
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        sites: &Sites,
        sync: &Sync,
        table: &TableInfo,
        key: &TextKey,
        winner: DbId,
        version: Option<(Option<i64>, String)>,
        losers: Vec<Loser>,
        result: &mut TableRepair,
    ) {
        result.settled += 1;
        let mut listed = KeyRepair { key: key.clone(), winner: winner.to_string(), losers: Vec::new() };
        for loser in losers {
            let i = sites.ids.iter().position(|id| *id == loser.db).expect("a database of the sync");
            let w = &mut result.writes[i];
            match (&loser.version, &version) {
                (Some(_), Some(_)) => w.updated += 1,
                (None, Some(_)) => w.inserted += 1,
                (Some(_), None) => w.deleted += 1,
                (None, None) => {}
            }
            if loser.version.is_some() {
                self.deletes[i].push(key.clone());
            }
            if let Some((_, json)) = &version {
                self.inserts[i].push(json.clone());
            }
            let as_raw =
                |v: &Option<(Option<i64>, String)>| v.as_ref().and_then(|(_, j)| RawValue::from_string(j.clone()).ok());
            let winner_row = as_raw(&version);
            let loser_row = as_raw(&loser.version);
            let mut c = RunConflict {
                id: String::new(),
                table: table.name.clone(),
                key: key.clone(),
                kind: ConflictKind::of(false, &winner_row, &loser_row),
                winner,
                winner_time: version.as_ref().and_then(|(t, _)| *t),
                winner_row,
                loser: loser.db,
                loser_time: loser.version.as_ref().and_then(|(t, _)| *t),
                loser_row,
                reason: loser.reason.clone(),
            };
            c.id = conflict_id(&sync.name, &c);
            self.conflicts.push(c);
            listed.losers.push((loser.db.to_string(), loser.reason));
        }
        if result.keys.len() < LISTED_KEYS {
            result.keys.push(listed);
        }
    }
}

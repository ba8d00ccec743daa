//! `dugong setup` on PostgreSQL (`crate::setup` tells the steps and why
//! their order loses nothing).
//!
//! - `facts`: what each site is (version, settings, privileges, tables,
//!   rows, an earlier setup);
//! - `schema`: `pg_dump --schema-only` into the sites without one;
//! - `copy`: every table in one snapshot of the live site, streamed into the
//!   new sites with capture already installed everywhere;
//! - `sequences`: interleaving, and status's warning.

mod copy;
mod facts;
mod schema;
pub mod sequences;

pub use schema::PG_BIN_ENV;

use super::capture;
use super::capture::read_positions;
use super::catalog;
use super::connect::connect_as;
use super::snapshot::Snapshot;
use crate::capture::Install;
use crate::compare::SyncComparison;
use crate::error::{ReplicaError, StatementContext};
use crate::plan::SyncPlan;
use crate::run::{self, RunLimits};
use crate::setup::checks::{judge, Problem, Roles};
use crate::setup::progress::CopyProgress;
use crate::setup::report::{SetupError, SetupOptions, SetupReport, SiteCopy};
use dugong_config::{Config, OneTimeCopy, Sync};
use dugong_core::DbId;
use futures_util::future::join_all;
use std::time::Instant;
use tokio_postgres::Client;

/// Sets up `sync` (see `crate::setup`).
pub(crate) async fn run(
    config: &Config,
    sync: &Sync,
    options: &SetupOptions,
    say: &(dyn Fn(&str) + std::marker::Sync),
    ask: &(dyn Fn(&str) -> bool + std::marker::Sync),
) -> Result<SetupReport, SetupError> {
    let ids = sync.databases();
    say(&format!("checking {} sites of {}: {}", ids.len(), sync.name, names(&ids)));
    let connected = join_all(ids.iter().map(|id| connect_as(config, *id, "dugong setup"))).await;
    let mut clients: Vec<(DbId, Client)> = Vec::with_capacity(ids.len());
    let mut problems = Vec::new();
    for (id, c) in ids.iter().zip(connected) {
        match c {
            Ok(c) => clients.push((*id, c)),
            Err(e) => problems.push(Problem {
                unreachable: e.is_unreachable(),
                ..Problem::new(
                    Some(*id),
                    format!("cannot be reached: {e}"),
                    format!(
                        "start PostgreSQL there, or correct its entry in {} (host, port, dbname, user, pass)",
                        config.path.display()
                    ),
                )
            }),
        }
    }
    let mut facts = Vec::with_capacity(clients.len());
    for (id, c) in &clients {
        facts.push(facts::read(c, *id, &sync.name).await?);
    }
    let (roles, mut more) = judge(sync, &facts, options.force);
    problems.append(&mut more);
    let roles = match roles {
        Some(r) if problems.is_empty() => r,
        _ => return Err(SetupError::Refused { problems }),
    };
    let origin_facts = facts.iter().find(|f| f.id == roles.origin).expect("the origin was judged");
    let tools = if roles.targets.iter().any(|(_, schema)| *schema) {
        let major = (origin_facts.version_num / 10_000) as u32;
        Some(schema::find_tools(major, roles.origin).await.map_err(|p| SetupError::Refused { problems: vec![p] })?)
    } else {
        None
    };
    if !roles.targets.is_empty() {
        // Claimed before anything changes (and before asking): a replicator
        // running with the old configuration would not ship to the new
        // sites, and refusing after the schema copy would leave it half done.
        // The claims are held until the connections are dropped, after the
        // copy.
        for (id, client) in &clients {
            claim(client, *id, sync).await?;
        }
        let each: Vec<String> = roles
            .targets
            .iter()
            .map(|(id, schema)| {
                format!("{id} ({})", if *schema { "schema and rows" } else { "rows; its schema is there" })
            })
            .collect();
        let what = format!(
            "set up {}: copy {} into {}, with {} live throughout{}",
            sync.name,
            roles.origin,
            each.join(", "),
            roles.origin,
            if options.force { "; --force: the rows those sites hold now are replaced" } else { "" }
        );
        if !ask(&what) {
            return Err(SetupError::Declined);
        }
    }
    if sync.onetimecopy != OneTimeCopy::None {
        say(&format!(
            "note: {} has onetimecopy {}; setup copies the rows itself, so set it to 0 before starting the replicator",
            sync.name,
            sync.onetimecopy.as_number()
        ));
    }
    let mut report = SetupReport {
        sync: sync.name.to_string(),
        origin: roles.origin.to_string(),
        copied: Vec::new(),
        already: roles.ready.iter().filter(|id| **id != roles.origin).map(ToString::to_string).collect(),
        sequences: Vec::new(),
        caught_up_rows: 0,
        replicator_running: false,
        changed: false,
        compare: None,
    };

    if let Some(tools) = &tools {
        let dir =
            tempfile::tempdir().map_err(|e| SetupError::Tool(format!("cannot make a temporary directory: {e}")))?;
        let origin_db = config.database(roles.origin).expect("configured");
        for (id, _) in roles.targets.iter().filter(|(_, schema)| *schema) {
            say(&format!("copying the schema of {} to {id} (pg_dump {} --schema-only)", roles.origin, tools.major));
            schema::copy(tools, origin_db, config.database(*id).expect("configured"), dir.path()).await?;
            copy_migrations(&clients, roles.origin, *id).await?;
        }
    }
    // Every site must now describe the sync's tables alike.
    let refs: Vec<(DbId, &Client)> = clients.iter().map(|(id, c)| (*id, c)).collect();
    let selection = catalog::select(&refs, sync).await?;
    let plan = SyncPlan::new(config, sync, selection)?;
    say(&format!("schema checked: {} tables alike on every site", plan.tables.len()));

    if !roles.targets.is_empty() {
        let same_major = facts.iter().all(|f| f.version_num / 10_000 == facts[0].version_num / 10_000);
        copy_sites(sync, &plan, &roles, &mut clients, options, same_major, say, &mut report).await?;
        report.changed = true;
    } else {
        say(&format!("every site of {} is set up already: capture installed, rows copied", sync.name));
    }

    say("interleaving sequences (site k of N: values k+1, k+1+N, …)");
    let refs: Vec<(DbId, &Client)> = clients.iter().map(|(id, c)| (*id, c)).collect();
    report.sequences = sequences::interleave(&refs).await?;
    if report.sequences.is_empty() {
        say("sequences are interleaved already");
    } else {
        report.changed = true;
        for line in &report.sequences {
            say(&format!("  {line}"));
        }
    }
    drop(clients);

    if !report.copied.is_empty() {
        say("shipping what was written during the copy (one catch-up run)");
        catch_up(config, sync, &mut report).await?;
    }
    say("comparing every table across the sites (row counts and checksums)");
    report.compare = Some(checksums(config, sync).await);
    Ok(report)
}

/// `compare`'s first step on every table: row counts and checksums. While
/// the application writes, the rows written since the catch-up differ until
/// the replicator ships them, so naming keys (`dugong compare`, which streams
/// every key of a differing table) is left for when writes are quiet.
async fn checksums(config: &Config, sync: &Sync) -> SyncComparison {
    let ids = sync.databases();
    let mut out = SyncComparison {
        name: sync.name.to_string(),
        databases: ids.iter().map(ToString::to_string).collect(),
        error: None,
        unreachable: false,
        tables: Vec::new(),
    };
    let compared = async {
        let connected = join_all(ids.iter().map(|id| connect_as(config, *id, "dugong setup"))).await;
        let clients: Vec<(DbId, Client)> =
            ids.iter().copied().zip(connected).map(|(id, c)| c.map(|c| (id, c))).collect::<Result<_, _>>()?;
        let refs: Vec<(DbId, &Client)> = clients.iter().map(|(id, c)| (*id, c)).collect();
        let selection = catalog::select(&refs, sync).await?;
        let mut tables = Vec::with_capacity(selection.tables.len());
        for table in &selection.tables {
            let sums = super::compare::sums(&clients, table, "").await?;
            let mut t = crate::diff::empty(table, sums.iter().all(|s| *s == sums[0]));
            t.rows = clients
                .iter()
                .zip(&sums)
                .map(|((id, _), (n, _))| crate::diff::RowCount { database: id.to_string(), rows: *n })
                .collect();
            if !t.identical {
                t.problem = Some(
                    "checksums differ: rows written since the catch-up, until the replicator ships them; dugong compare names the keys when writes are quiet".into(),
                );
            }
            tables.push(t);
        }
        Ok::<_, ReplicaError>(tables)
    };
    match compared.await {
        Ok(tables) => out.tables = tables,
        Err(e) => {
            out.unreachable = e.is_unreachable();
            out.error = Some(e.to_string());
        }
    }
    out
}

fn names(ids: &[DbId]) -> String {
    ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Installs capture everywhere, then copies the live site's rows into every
/// new site, while the sync's claim (taken by `run`) keeps any replicator
/// with the old configuration out.
#[allow(clippy::too_many_arguments)]
async fn copy_sites(
    sync: &Sync,
    plan: &SyncPlan,
    roles: &Roles,
    clients: &mut [(DbId, Client)],
    options: &SetupOptions,
    options_same_major: bool,
    say: &(dyn Fn(&str) + std::marker::Sync),
    report: &mut SetupReport,
) -> Result<(), SetupError> {
    say(&format!(
        "installing capture on every site before copying (from now on {}'s writes are kept for the new sites)",
        roles.origin
    ));
    for (id, client) in clients.iter_mut() {
        capture::install(client, *id, &Install::for_database(plan, *id)).await?;
        client.batch_execute(facts::SETUP_TABLE_SQL).await.on_db(*id, || "creating dugong.setup".into())?;
    }
    let origin = roles.origin;
    let client_of = |id: DbId| &clients.iter().find(|(i, _)| *i == id).expect("connected").1;
    client_of(origin)
        .execute(
            "INSERT INTO dugong.setup (sync, origin) VALUES ($1, $2) ON CONFLICT (sync) DO NOTHING",
            &[&sync.name.as_str(), &origin.to_string()],
        )
        .await
        .on_db(origin, || "recording the live site".into())?;
    let targets: Vec<DbId> = roles.targets.iter().map(|(id, _)| *id).collect();
    start_positions_of_others(clients, sync, roles, &targets).await?;

    let origin_client = client_of(origin);
    let total = copy::begin_snapshot(origin_client, origin, &plan.tables).await?;
    let target_refs: Vec<(DbId, &Client)> = targets.iter().map(|id| (*id, client_of(*id))).collect();
    say(&format!("copying {total} rows of {} tables from {origin} to {}", plan.tables.len(), names(&targets)));
    let clock = Instant::now();
    let copied = async {
        copy::begin_targets(&target_refs, &plan.tables, options.force).await?;
        let mut progress = CopyProgress::new(total, options.progress_bar);
        let same_major = options_same_major;
        for table in &plan.tables {
            let format = if same_major && table.binary_copy {
                super::format::CopyFormat::Binary
            } else {
                super::format::CopyFormat::Text
            };
            copy::table((origin, origin_client), &target_refs, table, format, &mut progress).await?;
        }
        progress.finish();
        for (id, c) in &target_refs {
            c.execute(
                "INSERT INTO dugong.setup (sync, origin, tables, rows) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (sync) DO UPDATE SET origin = $2, tables = $3, rows = $4, set_up_at = now()",
                &[&sync.name.as_str(), &origin.to_string(), &(plan.tables.len() as i32), &(progress.rows() as i64)],
            )
            .await
            .on_db(*id, || "recording the setup".into())?;
            c.batch_execute("COMMIT").await.on_db(*id, || "committing the copy".into())?;
        }
        Ok::<u64, ReplicaError>(progress.rows())
    }
    .await;
    let _ = origin_client.batch_execute("COMMIT").await;
    let rows = match copied {
        Ok(rows) => rows,
        Err(e) => {
            for (_, c) in &target_refs {
                let _ = c.batch_execute("ROLLBACK").await;
            }
            return Err(e.into());
        }
    };
    let seconds = clock.elapsed().as_secs_f64();
    say(&format!("copied {rows} rows in {seconds:.1}s ({:.0} rows/s)", rows as f64 / seconds.max(0.001)));
    for (id, schema) in &roles.targets {
        report.copied.push(SiteCopy {
            database: id.to_string(),
            schema_copied: *schema,
            tables: plan.tables.len(),
            rows,
            seconds,
        });
    }
    // The claims end with the connections, which `run` drops before the
    // catch-up run claims the sync as a replicator.
    Ok(())
}

/// The other sites that were set up before (a third site joining a pair)
/// may have changes the live site has not received yet: the copy will not
/// hold them, so their positions for each new site start where their
/// position for the live site is, and those changes reach the new sites too.
async fn start_positions_of_others(
    clients: &[(DbId, Client)],
    sync: &Sync,
    roles: &Roles,
    targets: &[DbId],
) -> Result<(), ReplicaError> {
    for (id, client) in clients {
        if *id == roles.origin || targets.contains(id) || !sync.sources.contains(id) {
            continue;
        }
        let positions = read_positions(client, *id, &sync.name).await?;
        let Some(delivered) = positions.get(&roles.origin) else { continue };
        for t in targets {
            let start: Snapshot = match positions.get(t) {
                Some(p) => p.intersection(delivered),
                None => delivered.clone(),
            };
            client
                .execute(
                    "INSERT INTO dugong.cursor (sync, target, snapshot) VALUES ($1, $2, $3::text::pg_snapshot)
                     ON CONFLICT (sync, target) DO UPDATE SET snapshot = excluded.snapshot, updated_at = now()",
                    &[&sync.name.as_str(), &t.to_string(), &start.to_string()],
                )
                .await
                .on_db(*id, || format!("starting the position for {t}"))?;
        }
    }
    Ok(())
}

/// Claims the sync on one site for the copy, as a replicator does: a running
/// replicator with the old configuration would not ship to the new sites.
async fn claim(client: &Client, id: DbId, sync: &Sync) -> Result<(), SetupError> {
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock(hashtext('dugong sync ' || $1)::int8)", &[&sync.name.as_str()])
        .await
        .on_db(id, || format!("claiming {}", sync.name))?
        .get(0);
    if got {
        return Ok(());
    }
    let holder = client
        .query_opt(
            "SELECT coalesce(replicator_pid::text, '?') || ' on ' || coalesce(replicator_host, '?') FROM dugong.sync_state WHERE sync = $1",
            &[&sync.name.as_str()],
        )
        .await
        .ok()
        .flatten()
        .map(|r| r.get::<_, String>(0))
        .unwrap_or_else(|| "another process".into());
    Err(SetupError::Refused {
        problems: vec![Problem::new(
            Some(id),
            format!("a replicator ({holder}) is running {}; setup copies only while none does", sync.name),
            "stop the replicators of this sync (the applications keep writing; their changes wait in the change logs), run setup again, then start the replicators with this configuration",
        )],
    })
}

/// Dugong's application server keeps site-local state in `dugong_local`,
/// which is never replicated: the schema steps it applied
/// (`schema_migrations`) come with the schema, so the new site's server finds
/// its schema current instead of creating it again, and the change feed gets
/// the one row a server creates with its schema (with a feed id of its own).
async fn copy_migrations(clients: &[(DbId, Client)], origin: DbId, target: DbId) -> Result<(), ReplicaError> {
    let client_of = |id: DbId| &clients.iter().find(|(i, _)| *i == id).expect("connected").1;
    let ctx = || "reading the schema steps".to_string();
    let kept: bool = client_of(origin)
        .query_one("SELECT to_regclass('dugong_local.schema_migrations') IS NOT NULL", &[])
        .await
        .on_db(origin, ctx)?
        .get(0);
    let steps: Option<String> = match kept {
        true => client_of(origin)
            .query_one("SELECT json_agg(m)::text FROM dugong_local.schema_migrations m", &[])
            .await
            .on_db(origin, ctx)?
            .get(0),
        false => None,
    };
    if let Some(steps) = steps {
        client_of(target)
            .execute(
                "INSERT INTO dugong_local.schema_migrations
                 SELECT * FROM json_populate_recordset(NULL::dugong_local.schema_migrations, $1::text::json)
                 ON CONFLICT DO NOTHING",
                &[&steps],
            )
            .await
            .on_db(target, || "recording the schema steps".into())?;
        client_of(target)
            .batch_execute(
                "DO $$ BEGIN
                   IF to_regclass('dugong_local.feed') IS NOT NULL THEN
                     INSERT INTO dugong_local.feed (id) VALUES (1) ON CONFLICT DO NOTHING;
                   END IF;
                 END $$",
            )
            .await
            .on_db(target, || "starting the change feed".into())?;
    }
    Ok(())
}

/// Ships what the live site wrote during the copy, once (until a run finds
/// the backlog shipped); left to the replicator when one runs the sync.
async fn catch_up(config: &Config, sync: &Sync, report: &mut SetupReport) -> Result<(), ReplicaError> {
    let mut p = match super::prepare(config, sync).await {
        Ok(p) => p,
        Err(ReplicaError::Standby { .. }) => {
            report.replicator_running = true;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    loop {
        let outcome = run::run_once(&mut p, RunLimits::default()).await?;
        report.caught_up_rows += outcome.inserts;
        if outcome.in_flight {
            // Not caught up before every run in flight is confirmed.
            if outcome.empty {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            continue;
        }
        if outcome.empty || !outcome.more {
            break;
        }
    }
    use crate::engine::Engine;
    p.engine.record_stopped(&p.plan, &p.who).await;
    Ok(())
}

//! The baseline's schema (reference bucardo-baseline.md), the databases each
//! system replicates, and putting them back to a fresh state between runs.
//!
//! Every system gets its own database on both sites, so their capture objects
//! never meet: `kwanza_dugong`, `kwanza_bucardo`, `kwanza_lr`. `kwanza_plain`
//! on site 0 has the same schema without any trigger (the capture-overhead
//! reference) and `kwanza_copy` on site 1 takes the COPY ceiling's rows.

use crate::cluster::Sites;
use crate::system::System;

/// The database without any capture: pgbench's reference.
pub const PLAIN_DB: &str = "kwanza_plain";

/// The database on site 1 that the COPY ceiling writes into.
pub const COPY_DB: &str = "kwanza_copy";

/// The tables of the baseline: uuid keys (master-master safe), a ≈330-byte
/// jsonb payload on events.
pub const TABLES: &str = "
CREATE TABLE flows  (id uuid PRIMARY KEY, app text NOT NULL, name text NOT NULL, body text,
                     version int NOT NULL DEFAULT 1, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE events (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), client text NOT NULL, kind text NOT NULL,
                     payload jsonb, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX events_client_at ON events (client, at);";

/// The same 10,000 flows (200-byte body) on both sites, with keys pgbench can
/// compute: `md5('flow-' || n)::uuid` for n in 1..=10000.
const SEED_FLOWS: &str = "
INSERT INTO flows (id, app, name, body, version, updated_at)
SELECT md5('flow-' || g)::uuid, 'app-' || (g % 20), 'flow ' || g, rpad(md5(g::text), 200, md5((g + 1)::text)), 1,
       '2026-01-01 00:00:00+00'
FROM generate_series(1, 10000) g";

/// Empties `events` and every change log of Dugong or Bucardo in a database,
/// without firing any trigger (so nothing is captured or kicked).
const RESET: &str = r"
SET session_replication_role = replica;
DO $reset$
DECLARE t text;
BEGIN
    FOR t IN SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
             WHERE (schemaname = 'dugong' AND (tablename LIKE 'delta\_%' OR tablename = 'truncate_log'))
                OR (schemaname = 'bucardo' AND (tablename LIKE 'delta\_%' OR tablename LIKE 'track\_%'
                                                OR tablename LIKE 'stage\_%'))
    LOOP
        EXECUTE 'TRUNCATE ' || t;
    END LOOP;
END $reset$;
TRUNCATE events;
RESET session_replication_role;";

/// Creates every database the selected systems need, with the tables, and
/// flows seeded identically on both sites.
pub async fn create(sites: &Sites, systems: &[System]) -> anyhow::Result<()> {
    for system in systems {
        for site in 0..2 {
            create_db(sites, site, system.db(), true).await?;
        }
    }
    create_db(sites, 0, PLAIN_DB, true).await?;
    create_db(sites, 1, COPY_DB, false).await?;
    Ok(())
}

async fn create_db(sites: &Sites, site: usize, db: &str, seed: bool) -> anyhow::Result<()> {
    sites.exec(site, "postgres", &format!("CREATE DATABASE {db}")).await?;
    sites.exec(site, db, TABLES).await?;
    if seed {
        sites.exec(site, db, SEED_FLOWS).await?;
        sites.exec(site, db, "VACUUM ANALYZE flows").await?;
    }
    Ok(())
}

/// Puts `db` on `site` back to an empty `events` table and empty change logs.
/// The replicator must be stopped and caught up.
pub async fn reset(sites: &Sites, site: usize, db: &str) -> anyhow::Result<()> {
    sites.exec(site, db, RESET).await
}

/// Resets a system's database on both sites.
pub async fn reset_system(sites: &Sites, system: System) -> anyhow::Result<()> {
    for site in 0..2 {
        reset(sites, site, system.db()).await?;
    }
    Ok(())
}

/// A CHECKPOINT on both sites, so no run pays for the previous one's dirty pages.
pub async fn checkpoint(sites: &Sites) -> anyhow::Result<()> {
    for site in 0..2 {
        sites.exec(site, "postgres", "CHECKPOINT").await?;
    }
    Ok(())
}

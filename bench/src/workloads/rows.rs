//! Writing event rows the way an application would: many connections, each
//! committing multi-row transactions of ≈330-byte jsonb payloads.
//!
//! Every workload tags its rows with its own `client` value (indexed with `at`),
//! so arrival can be counted per workload on a table that keeps growing.

use crate::cluster::Sites;
use anyhow::Context;
use futures_util::future::try_join_all;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// One multi-row transaction: the rows' kinds and payloads as arrays; returns one
/// id of the rows written (the transaction is atomic, so one stands for all).
const INSERT_BATCH: &str = "WITH ins AS (
    INSERT INTO events (client, kind, payload)
    SELECT $1, k, p::jsonb FROM unnest($2::text[], $3::text[]) AS u(k, p)
    RETURNING id)
SELECT id::text FROM ins LIMIT 1";

/// What a set of writers did.
#[derive(Debug, Clone)]
pub struct Written {
    pub rows: u64,
    /// One row of each writer's last transaction: when all are visible somewhere,
    /// every row is (each writer commits in order).
    pub last_ids: Vec<String>,
    pub started: Instant,
    pub finished: Instant,
}

impl Written {
    pub fn elapsed(&self) -> Duration {
        self.finished - self.started
    }

    /// Rows per second the writers committed.
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed().as_secs_f64().max(1e-9)
    }
}

/// A ≈330-byte order event, varied by `rng`.
pub fn payload(rng: &mut impl Rng) -> String {
    let order: u64 = rng.random();
    let qty: u32 = rng.random_range(1..20);
    let price: f64 = f64::from(rng.random_range(100..100_000u32)) / 100.0;
    format!(
        r#"{{"order": "o-{order:016x}", "sku": "SKU-{:05}", "qty": {qty}, "price": {price:.2}, "currency": "EUR", "customer": {{"id": "c-{:08x}", "tier": "gold", "country": "DE"}}, "shipping": {{"method": "express", "zip": "{:05}", "street": "Hauptstrasse {}"}}, "tags": ["web", "promo-{}", "b2c"], "note": "please deliver between nine and five"}}"#,
        rng.random_range(0..100_000u32),
        rng.random::<u32>(),
        rng.random_range(10_000..99_999u32),
        rng.random_range(1..300u32),
        rng.random_range(1..50u32),
    )
}

/// Writes `rows` rows tagged `tag` into `db` on `site`, in transactions of
/// `txn_rows`, from `writers` connections at once. Connections are opened
/// before the clock starts.
pub async fn write(
    sites: &Sites,
    site: usize,
    db: &str,
    tag: &str,
    rows: u64,
    txn_rows: u64,
    writers: usize,
) -> anyhow::Result<Written> {
    let txns = rows.div_ceil(txn_rows.max(1));
    let mut prepared = Vec::with_capacity(writers);
    for w in 0..writers {
        let mine = (w as u64..txns).step_by(writers).count() as u64;
        if mine == 0 {
            continue;
        }
        let client = sites.connect(site, db).await?;
        let statement = client.prepare(INSERT_BATCH).await.context("preparing the batch insert")?;
        // One batch of payloads per writer, reused: ids differ, and generating
        // rows is not what is measured.
        let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64 ^ 0x5eed);
        let kinds: Vec<String> = (0..txn_rows)
            .map(|i| ["order.created", "order.paid", "order.shipped"][i as usize % 3].to_string())
            .collect();
        let payloads: Vec<String> = (0..txn_rows).map(|_| payload(&mut rng)).collect();
        prepared.push((client, statement, kinds, payloads, mine));
    }
    let started = Instant::now();
    let work = prepared.iter().map(|(client, statement, kinds, payloads, mine)| async move {
        let mut last = String::new();
        for _ in 0..*mine {
            let row = client.query_one(statement, &[&tag, kinds, payloads]).await.context("writing a batch")?;
            last = row.get(0);
        }
        Ok::<String, anyhow::Error>(last)
    });
    let last_ids = try_join_all(work).await?;
    let finished = Instant::now();
    Ok(Written { rows: txns * txn_rows, last_ids, started, finished })
}

/// A workload's tag: `<system>-r<rep>-<what>` plus the site that wrote it.
pub fn tag(system: crate::system::System, rep: usize, what: &str, site: usize) -> String {
    format!("{}-r{rep}-{what}-s{site}", system.db().trim_start_matches("kwanza_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_of_about_330_bytes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let p = payload(&mut rng);
            assert!((300..380).contains(&p.len()), "{} bytes: {p}", p.len());
            let v: serde_json::Value = serde_json::from_str(&p).expect("valid JSON");
            assert!(v.get("order").is_some());
        }
    }
}

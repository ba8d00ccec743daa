//! The three systems measured: their names, databases and labels. Each
//! system's replicator (`dugong.rs`, `bucardo.rs`, `native.rs`) and the one
//! interface over them (`replicators.rs`) build on this.

use anyhow::bail;
use serde::Serialize;

/// A replication system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum System {
    Dugong,
    Bucardo,
    Native,
}

impl System {
    pub fn parse(name: &str) -> anyhow::Result<System> {
        Ok(match name.trim() {
            "dugong" => System::Dugong,
            "bucardo" => System::Bucardo,
            "native" | "lr" => System::Native,
            other => bail!("unknown system {other:?}; use dugong, bucardo, native"),
        })
    }

    /// The database it replicates, on both sites.
    pub fn db(self) -> &'static str {
        match self {
            System::Dugong => "kwanza_dugong",
            System::Bucardo => "kwanza_bucardo",
            System::Native => "kwanza_lr",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            System::Dugong => "Dugong",
            System::Bucardo => "Bucardo 5.6",
            System::Native => "native LR",
        }
    }

    /// Master-master: native logical replication is one-way only here (PG 15
    /// cannot do both ways without loops).
    pub fn two_way(self) -> bool {
        self != System::Native
    }
}

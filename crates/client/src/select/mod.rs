//! Which server a call goes to: weighted random draws over the live servers, quarantine of the
//! failed ones, and the retry budget. Pure state machines over `Instant`s and a seeded RNG: no I/O,
//! so every rule is tested without sockets.
//!
//! - `pool` — [`Pool`]: one entry per resolved address with its names (= weight) and health.
//! - `budget` — [`RetryBudget`]: retries as a share of successes plus a floor per second.

mod budget;
mod pool;

pub(crate) use budget::RetryBudget;
pub(crate) use pool::{Draw, Mode, Pool};
pub use pool::{Health, ServerStatus};

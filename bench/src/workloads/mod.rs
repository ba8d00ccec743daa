//! The measurements. Each takes the sites and a system and returns its figures;
//! [`crate::plan`] decides the order.
//!
//! - [`rows`]: writing tagged event rows from many connections.
//! - [`arrival`]: deciding cheaply when rows have arrived on the other site.
//! - [`burst`]: sustained one-way and two-way writes, and the burst after a backlog.
//! - [`catchup`]: backlog catch-up and the COPY ceiling.
//! - [`lag`]: commit-to-visible lag at a steady rate of single-row transactions.
//! - [`overhead`]: pgbench TPS with and without capture.

pub mod arrival;
pub mod burst;
pub mod catchup;
pub mod lag;
pub mod overhead;
pub mod rows;

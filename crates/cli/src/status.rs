//! `dugong status` (being written).
use std::process::ExitCode;
#[derive(clap::Args)]
pub struct Args {}
pub async fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}

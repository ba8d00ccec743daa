//! `dugong completions SHELL`: the shell's completion script for every
//! subcommand and flag, generated from the same clap definitions the binary
//! parses with, so it never lags behind a new flag.

use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "Install, for example:\n  \
    dugong completions bash > /etc/bash_completion.d/dugong\n  \
    dugong completions zsh > \"${fpath[1]}/_dugong\"\n  \
    dugong completions fish > ~/.config/fish/completions/dugong.fish")]
pub struct Args {
    /// The shell to complete for.
    shell: clap_complete::Shell,
}

/// Writes the script for `command` (the whole `dugong` command) to stdout.
pub fn run(args: Args, mut command: clap::Command) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "dugong", &mut script);
    crate::stdout::write(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

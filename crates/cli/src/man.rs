//! `dugong man`: the manual pages, generated from the clap definitions (so
//! they say exactly what `--help` says): `dugong(1)` on stdout, or with
//! `--dir` one page per command — `dugong.1`, `dugong-replicate.1`, … — for
//! `/usr/local/share/man/man1`.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "Read it at once with: dugong man | man -l -\n\
    Install every page: dugong man --dir /usr/local/share/man/man1 && mandb")]
pub struct Args {
    /// Write `dugong.1` and a page per subcommand into this directory
    /// instead of printing `dugong(1)`.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Renders the pages of `command` (the whole `dugong` command).
pub fn run(args: Args, command: clap::Command) -> anyhow::Result<ExitCode> {
    let command = command.version(crate::version::LONG);
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("--dir {}", dir.display()))?;
            let pages = write_pages(command, &dir).with_context(|| format!("--dir {}", dir.display()))?;
            eprintln!("wrote {pages} manual pages to {}", dir.display());
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            crate::stdout::write(&String::from_utf8_lossy(&page))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the page of `command` and of each of its subcommands (named
/// `dugong-sub.1`, `dugong-sub-subsub.1`), returning how many it wrote.
fn write_pages(command: clap::Command, dir: &std::path::Path) -> std::io::Result<usize> {
    fn count(cmd: &clap::Command) -> usize {
        1 + cmd.get_subcommands().filter(|s| !s.is_hide_set()).map(count).sum::<usize>()
    }
    let command = command.disable_help_subcommand(true);
    clap_mangen::generate_to(command.clone(), dir)?;
    Ok(count(&command))
}

//! `dugong setup`: takes the sites of a sync from "site 0 live with schema
//! and data, the others empty databases" to master-master while the
//! application keeps writing on site 0, reporting each step as it runs, and
//! says what to run next. Exit codes: 0 set up (or already), 6 refused by a
//! check (each problem is printed with its fix), 3 a site cannot be reached,
//! 2 configuration, 1 anything else (`crate::exit`).

use crate::exit::Exit;
use crate::stdout;
use dugong_config::Config;
use dugong_replica::compare;
use dugong_replica::setup::{self, SetupError, SetupOptions, SetupReport};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The Bucardo-style JSON configuration, listing the live site first and
    /// the new (empty) sites after it.
    #[arg(long, env = "DUGONG_CONFIG")]
    config: PathBuf,
    /// The sync to set up (needed when the configuration has several).
    #[arg(long, env = "DUGONG_SYNC")]
    sync: Option<String>,
    /// Go ahead without asking (needed when no terminal can answer).
    #[arg(long, short = 'y', env = "DUGONG_YES")]
    yes: bool,
    /// Replace the rows that tables of a new site hold with the live site's.
    #[arg(long)]
    force: bool,
    /// Print the final report as JSON (steps still go to stderr).
    #[arg(long, env = "DUGONG_JSON")]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let interactive = std::io::stdin().is_terminal();
    if !args.yes && !interactive {
        eprintln!("dugong: setup changes databases; run it with --yes when no terminal can answer its question");
        return Ok(Exit::Config.into());
    }
    let options =
        SetupOptions { sync: args.sync.clone(), force: args.force, progress_bar: std::io::stderr().is_terminal() };
    let json = args.json;
    let say = move |line: &str| {
        if json {
            eprintln!("==> {line}");
        } else {
            let _ = stdout::write(&format!("==> {line}\n"));
        }
    };
    let yes = args.yes;
    let ask = move |what: &str| yes || confirm(what);
    match setup::setup(&config, &options, &say, &ask).await {
        Ok(report) => {
            let text = if json { serde_json::to_string_pretty(&report)? + "\n" } else { render(&report, &args.config) };
            stdout::write(&text)?;
            Ok(Exit::Ok.into())
        }
        Err(e) => {
            eprintln!("dugong: {e}");
            Ok(match &e {
                SetupError::Refused { .. } if e.is_unreachable() => Exit::Unreachable,
                SetupError::Refused { .. } | SetupError::Declined => Exit::Refused,
                SetupError::Replica(r) => Exit::of_class(r.class()),
                SetupError::Tool(_) => Exit::Failed,
            }
            .into())
        }
    }
}

/// Asks on the terminal; anything but yes is no.
fn confirm(what: &str) -> bool {
    let mut err = std::io::stderr();
    let _ = write!(err, "{what}.\nGo ahead? [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// The summary and what to run next.
fn render(r: &SetupReport, config: &Path) -> String {
    let mut out = String::new();
    if !r.changed {
        out.push_str(&format!("{} is set up already: nothing changed.\n", r.sync));
    } else {
        for c in &r.copied {
            out.push_str(&format!(
                "{}: set up from {} ({}{} tables, {} rows in {:.1}s)\n",
                c.database,
                r.origin,
                if c.schema_copied { "schema, " } else { "" },
                c.tables,
                c.rows,
                c.seconds
            ));
        }
        if !r.sequences.is_empty() {
            out.push_str(&format!("{} sequences interleaved\n", r.sequences.len()));
        }
        if r.replicator_running {
            out.push_str("a running replicator ships what was written during the copy\n");
        } else if !r.copied.is_empty() {
            out.push_str(&format!("the catch-up run shipped {} rows written during the copy\n", r.caught_up_rows));
        }
    }
    if let Some(c) = &r.compare {
        let identical = c.error.is_none() && c.tables.iter().all(|t| t.identical);
        if identical {
            out.push_str(&format!("compare: all {} tables identical on {}\n", c.tables.len(), c.databases.join(", ")));
        } else {
            let report = compare::CompareReport { identical, errors: c.error.is_some(), syncs: vec![c.clone()] };
            out.push_str("compare:\n");
            out.push_str(&compare::render_text(&report));
        }
    }
    let file = config.display();
    out.push_str(&format!(
        "\nnext:\n  dugong replicate --config {file}     # on every site: one replicator runs the sync, the others stand by\n  dugong serve --site N --db postgres://…  # the application server of each new site\n  dugong verify --config {file} --server grpc://0.ha.test:8001 --server grpc://1.ha.test:8001\n"
    ));
    out
}

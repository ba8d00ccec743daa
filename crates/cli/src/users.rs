//! `dugong users`: console users and sessions from the command line, for the
//! operator at the site's database (the first admin, a locked-out console, a
//! script). Every change is recorded in the audit log as made by the
//! operator's login at the command line; changing a password, disabling a
//! user or ending its sessions ends them on every site.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use dugong_store::{Action, DbUrl, Store, StoreOptions, UserUpdate};

#[derive(clap::Args)]
pub struct Args {
    /// The site id (as `dugong serve --site`): names the embedded database.
    #[arg(long, env = "DUGONG_SITE")]
    site: String,
    /// The site's database (as `dugong serve --db`).
    #[arg(long, env = "DUGONG_DB", hide_env_values = true)]
    db: Option<String>,
    /// New passwords: the first line of this file (else of standard input).
    #[arg(long, env = "DUGONG_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Every user, whether disabled, when last changed.
    List,
    /// A new user (its password from --password-file or standard input).
    Create { name: String },
    /// Set a user's password; ends its sessions on every site.
    Password { name: String },
    /// Disable a user; ends its sessions on every site.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// End every session of a user, on every site.
    EndSessions { name: String },
    /// Delete a user.
    Delete { name: String },
    /// This site's live sessions.
    Sessions,
    /// End one session of this site (by the hash `sessions` shows).
    Revoke { hash: String },
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    dugong_server::config::site_id(&args.site)?;
    let db = match &args.db {
        Some(url) => url.parse::<DbUrl>().context("--db")?,
        None => DbUrl::default_sqlite(&args.site),
    };
    let options = StoreOptions { site: args.site.clone(), ..StoreOptions::default() };
    let shown = db.display();
    let store = Store::open(&db, options).await.with_context(|| format!("database {shown}"))?;
    dugong_server::migrate(&store, Duration::from_secs(10)).await.with_context(|| format!("database {shown}"))?;
    let who = crate::operator::actor();
    match args.command {
        Command::List => {
            for u in store.console_users().await? {
                let state = if u.disabled { "disabled" } else { "active" };
                println!("{:<24} {:<9} changed {}", u.name, state, u.updated_at.to_rfc3339());
            }
        }
        Command::Create { name } => {
            let hash = new_password(&name, args.password_file.as_deref()).await?;
            store.create_console_user(&name, &hash, &who).await.with_context(|| format!("creating {name:?}"))?;
            eprintln!("console user {name:?} created (replicated to the other sites by dugong replicate)");
        }
        Command::Password { name } => {
            let hash = new_password(&name, args.password_file.as_deref()).await?;
            let update = UserUpdate::Password { hash, action: Action::PasswordReset };
            store.update_console_user(&name, &update, &who).await?;
            eprintln!("password of {name:?} set; its sessions end on every site");
        }
        Command::Disable { name } => {
            store.update_console_user(&name, &UserUpdate::Disabled(true), &who).await?;
            eprintln!("{name:?} disabled; its sessions end on every site");
        }
        Command::Enable { name } => {
            store.update_console_user(&name, &UserUpdate::Disabled(false), &who).await?;
            eprintln!("{name:?} enabled");
        }
        Command::EndSessions { name } => {
            store.update_console_user(&name, &UserUpdate::EndSessions, &who).await?;
            eprintln!("every session of {name:?} ends, on every site");
        }
        Command::Delete { name } => {
            store.delete_console_user(&name, &who).await?;
            eprintln!("{name:?} deleted");
        }
        Command::Sessions => {
            for s in store.console_sessions().await? {
                println!(
                    "{}  {:<24} from {:<15} since {} until {}",
                    s.token_hash,
                    s.user,
                    s.peer,
                    s.created_at.to_rfc3339(),
                    s.expires_at.to_rfc3339()
                );
            }
        }
        Command::Revoke { hash } => {
            let user = store.console_sessions().await?.into_iter().find(|s| s.token_hash == hash).map(|s| s.user);
            let Some(user) = user else { anyhow::bail!("no live session {hash} on this site") };
            store.revoke_session(&hash, &user, &who).await?;
            eprintln!("session of {user:?} ended");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The argon2id hash of the password in `file` (first line) or on standard input.
async fn new_password(name: &str, file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let password = crate::operator::read_password(name, file)?;
    tokio::task::spawn_blocking(move || dugong_server::console::password::hash(&password))
        .await
        .context("hashing the password")?
        .map_err(Into::into)
}

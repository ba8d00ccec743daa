//! The operator at the terminal: who they are for the audit log, and the
//! passwords they give (from a file, or typed without echo).

use anyhow::Context;
use dugong_store::{Actor, ActorKind};

/// The operator, as the audit log names them: their login at this machine.
pub fn actor() -> Actor {
    let name = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "operator".into());
    Actor::new(name, ActorKind::Cli, "")
}

/// A new password for `name`: the first line of `file`, or else of standard input.
pub(crate) fn read_password(name: &str, file: Option<&std::path::Path>) -> anyhow::Result<String> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("--password-file {}", path.display()))?;
            Ok(text.lines().next().unwrap_or("").to_string())
        }
        None => read_password_from_stdin(name),
    }
}

/// The first line of standard input; on a terminal, asked for without echo.
fn read_password_from_stdin(name: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let echo = if terminal {
        eprint!("password for console user {name}: ");
        EchoOff::new()
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    drop(echo);
    if terminal {
        eprintln!();
    }
    read.context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        anyhow::bail!("no password on standard input (or use --password-file)");
    }
    Ok(password)
}

/// Terminal echo turned off until dropped.
struct EchoOff(libc::termios);

impl EchoOff {
    fn new() -> Option<EchoOff> {
        // SAFETY: tcgetattr/tcsetattr on standard input with a termios we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            t.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(EchoOff(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new`.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.0);
        }
    }
}

//! Writing a command's report to stdout. A reader that went away (`dugong
//! status | head -1`) is not an error: the command ends quietly with the exit
//! code its report earned, instead of a panic or a "Broken pipe" message.

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout and flushes it; a closed stdout is not an error.
pub fn write(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

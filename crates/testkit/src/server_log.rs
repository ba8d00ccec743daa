//! Reading the server log, for error messages.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How many log lines a start error shows.
pub(crate) const TAIL_LINES: usize = 30;

/// The log's current length: what a later [`since`] starts from.
pub(crate) fn mark(log: &Path) -> u64 {
    std::fs::metadata(log).map(|meta| meta.len()).unwrap_or(0)
}

/// What the server wrote to the log after `mark`, or an empty string if there is no log.
pub(crate) fn since(log: &Path, mark: u64) -> String {
    let Ok(mut file) = std::fs::File::open(log) else {
        return String::new();
    };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(mark)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether the log shows the server failed because its port was taken.
pub(crate) fn port_was_taken(text: &str) -> bool {
    text.contains("could not bind") || text.contains("Address already in use")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn since_reads_only_what_came_after_the_mark() {
        let path = std::env::temp_dir().join(format!("dugong-log-test-{}", std::process::id()));
        std::fs::write(&path, "old line\n").unwrap();
        let mark = mark(&path);
        std::fs::write(&path, "old line\nnew line\n").unwrap();
        assert_eq!(since(&path, mark), "new line\n");
        std::fs::remove_file(&path).unwrap();
    }
}

//! How the demo talks: one line per event, stamped with the time since the demo began; colors
//! only on a terminal (and never with `NO_COLOR`).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The demo's voice.
pub struct Say {
    started: Instant,
    color: bool,
}

/// What a line reports, which picks its marker and color.
#[derive(Clone, Copy)]
pub enum Tone {
    /// A chapter of the story.
    Step,
    /// Something the demo did or saw.
    Info,
    /// An outcome the story promised.
    Ok,
    /// An outcome it did not get.
    Fail,
    /// Output of another command, shown as it printed it.
    Quote,
}

impl Say {
    pub fn new() -> Say {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Say { started: Instant::now(), color }
    }

    pub fn line(&self, tone: Tone, text: &str) {
        let stamp = format!("{:>7.3}s", self.started.elapsed().as_secs_f64());
        let (marker, code) = match tone {
            Tone::Step => ("==", "1;36"),
            Tone::Info => ("  ", "0"),
            Tone::Ok => ("ok", "32"),
            Tone::Fail => ("!!", "1;31"),
            Tone::Quote => ("  |", "2"),
        };
        let line = match tone {
            Tone::Step => format!("\n[{stamp}] {marker} {text}"),
            _ => format!("[{stamp}] {marker} {text}"),
        };
        let mut out = std::io::stdout().lock();
        // A closed stdout (demo piped into `head`) must not stop the demo from cleaning up.
        let _ = if self.color { writeln!(out, "\x1b[{code}m{line}\x1b[0m") } else { writeln!(out, "{line}") };
        let _ = out.flush();
    }

    pub fn step(&self, text: &str) {
        self.line(Tone::Step, text);
    }

    pub fn info(&self, text: &str) {
        self.line(Tone::Info, text);
    }

    pub fn ok(&self, text: &str) {
        self.line(Tone::Ok, text);
    }

    pub fn fail(&self, text: &str) {
        self.line(Tone::Fail, text);
    }

    /// Another command's output, line by line.
    pub fn quote(&self, text: &str) {
        for line in text.lines() {
            self.line(Tone::Quote, line);
        }
    }

    /// Plain text with no stamp (the closing summary).
    pub fn plain(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Bold on a terminal.
    pub fn bold(&self, text: &str) -> String {
        if self.color {
            format!("\x1b[1m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// A duration for people: `0.8 ms`, `12 ms`, `1.42 s`.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// The median and the largest of some durations (none: zero).
pub fn p50_max(samples: &[Duration]) -> (Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let p50 = sorted.get(sorted.len().saturating_sub(1) / 2).copied().unwrap_or_default();
    (p50, sorted.last().copied().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well_at_every_scale() {
        assert_eq!(ms(Duration::from_micros(830)), "0.8 ms");
        assert_eq!(ms(Duration::from_millis(12)), "12 ms");
        assert_eq!(ms(Duration::from_millis(1420)), "1.42 s");
    }

    #[test]
    fn median_and_max_of_samples() {
        let d = |n| Duration::from_millis(n);
        assert_eq!(p50_max(&[d(5), d(1), d(9)]), (d(5), d(9)));
        assert_eq!(p50_max(&[d(4), d(2)]), (d(2), d(4)));
        assert_eq!(p50_max(&[]), (Duration::ZERO, Duration::ZERO));
    }
}

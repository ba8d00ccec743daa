//! What a broken configuration reports: the file, the field, where in the file,
//! and the rule it breaks.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::span::{self, Spans};

/// A configuration that cannot be used. Its `Display` is one line for an
/// operator: `config file F, line L column C: FIELD: REASON` (the position and
/// the field when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub path: PathBuf,
    /// The field at fault, as a path into the JSON: `syncs[0].sources[1]`.
    pub field: Option<String>,
    /// 1-based line of the field in the file, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the field in the file, when known.
    pub column: Option<usize>,
    /// The rule broken, and what to write instead where that helps.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
            if let Some(column) = self.column {
                write!(f, " column {column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error about the file as a whole (unreadable, not JSON).
    pub(crate) fn file(path: &Path, reason: impl Into<String>) -> ConfigError {
        ConfigError { path: path.to_owned(), field: None, line: None, column: None, reason: reason.into() }
    }

    /// An error serde_json found while reading the file's shape.
    pub(crate) fn json(path: &Path, field: Option<String>, err: &serde_json::Error) -> ConfigError {
        let (line, column) = (err.line(), err.column());
        let mut reason = err.to_string();
        // serde_json appends the position; ours goes before the field instead.
        if let Some(bare) = reason.strip_suffix(&format!(" at line {line} column {column}")) {
            reason = bare.to_owned();
        }
        let known = line > 0;
        ConfigError {
            path: path.to_owned(),
            field,
            line: known.then_some(line),
            column: known.then_some(column),
            reason,
        }
    }

    /// A rule broken at a field, placed in `text` through the offsets in `spans`.
    pub(crate) fn located(path: &Path, text: &str, spans: &Spans, invalid: Invalid) -> ConfigError {
        let position = spans.find(&invalid.field).map(|offset| span::line_column(text, offset));
        ConfigError {
            path: path.to_owned(),
            line: position.map(|(line, _)| line),
            column: position.map(|(_, column)| column),
            field: Some(invalid.field),
            reason: invalid.reason,
        }
    }

    /// A rule broken at a field, with no position (a config built in code).
    pub(crate) fn unlocated(path: &Path, invalid: Invalid) -> ConfigError {
        ConfigError {
            path: path.to_owned(),
            field: Some(invalid.field),
            line: None,
            column: None,
            reason: invalid.reason,
        }
    }
}

/// A rule broken at one field, before the file and the position are attached.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub(crate) field: String,
    pub(crate) reason: String,
}

impl Invalid {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
        Invalid { field: field.into(), reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_puts_position_then_field_then_reason() {
        let mut err = ConfigError {
            path: PathBuf::from("/etc/bucardo.json"),
            field: Some("syncs[0].sources[1]".into()),
            line: Some(17),
            column: Some(20),
            reason: "database id 7 is not defined in \"databases\"".into(),
        };
        assert_eq!(
            err.to_string(),
            "config file /etc/bucardo.json, line 17 column 20: syncs[0].sources[1]: \
             database id 7 is not defined in \"databases\""
        );
        err.line = None;
        err.column = None;
        err.field = None;
        assert_eq!(err.to_string(), "config file /etc/bucardo.json: database id 7 is not defined in \"databases\"");
    }
}

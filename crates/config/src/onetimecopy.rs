//! `onetimecopy`: the copy a sync makes before it replicates changes, as the
//! file writes it (0, 1 or 2, a number or a string). Both the file's raw shape
//! (`raw.rs`) and the typed [`Sync`](crate::Sync) use it.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// `onetimecopy`: the copy a sync makes before it replicates changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OneTimeCopy {
    /// `0`: no copy; only changes are replicated.
    #[default]
    None,
    /// `1`: empty each target table, then copy it from the source.
    Full,
    /// `2`: copy only into target tables that are empty.
    EmptyOnly,
}

impl OneTimeCopy {
    /// The mode's number as the file writes it (0, 1 or 2).
    pub fn as_number(self) -> u8 {
        match self {
            OneTimeCopy::None => 0,
            OneTimeCopy::Full => 1,
            OneTimeCopy::EmptyOnly => 2,
        }
    }

    fn from_text(text: &str) -> Option<OneTimeCopy> {
        match text.trim() {
            "0" => Some(OneTimeCopy::None),
            "1" => Some(OneTimeCopy::Full),
            "2" => Some(OneTimeCopy::EmptyOnly),
            _ => None,
        }
    }
}

fn invalid_mode(written: &str) -> String {
    format!(
        "must be 0 (no copy), 1 (empty each target table and copy it from the source) \
         or 2 (copy only into empty target tables), not {written}"
    )
}

impl<'de> Deserialize<'de> for OneTimeCopy {
    /// Accepts 0, 1, 2 as numbers or strings.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModeVisitor;
        impl Visitor<'_> for ModeVisitor {
            type Value = OneTimeCopy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("0, 1 or 2")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<OneTimeCopy, E> {
                OneTimeCopy::from_text(&v.to_string()).ok_or_else(|| E::custom(invalid_mode(&v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<OneTimeCopy, E> {
                OneTimeCopy::from_text(&v.to_string()).ok_or_else(|| E::custom(invalid_mode(&v.to_string())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneTimeCopy, E> {
                OneTimeCopy::from_text(v).ok_or_else(|| E::custom(invalid_mode(&format!("{v:?}"))))
            }
        }
        deserializer.deserialize_any(ModeVisitor)
    }
}

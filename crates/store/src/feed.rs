//! The change feed behind Watch, engine-neutral parts.
//!
//! Every write to apps, flows, settings or contexts — by this site's servers or
//! applied by the replicator from another site — logs the changed key in a
//! site-local table (`dugong_local.change` on PostgreSQL) through triggers that
//! fire even under `session_replication_role = replica`. Each logged change
//! gets a *position*: a number that grows in commit order, so "every change
//! after position p" is exact (a plain sequence would not be: ids are taken in
//! statement order, transactions commit in another). On PostgreSQL the servers
//! assign positions after commit, one at a time under a row lock
//! (`postgres/feed.rs`); SQLite's single writer assigns them in the trigger.
//!
//! A position is only meaningful in the database that made it: it is handed to
//! clients together with the feed's id ([`Position`]), so a client that fails
//! over to another site is told to re-read instead of silently missing changes.

use std::fmt;

use crate::error::StoreError;
use crate::model::Kind;

/// Where the feed of one database stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedHead {
    /// A random id made when the feed was created: which database positions
    /// belong to.
    pub feed_id: String,
    /// The highest position assigned (0 before the first change).
    pub last: i64,
    /// Changes up to this position were purged: older positions can't resume.
    pub purged_upto: i64,
}

/// A logged change: a key of a kind changed at `pos`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    pub pos: i64,
    pub kind: Kind,
    /// `None` when the whole table changed at once (TRUNCATE).
    pub key: Option<String>,
}

/// A client's place in a feed, as it is written on the wire:
/// `<feed id>:<position>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub feed_id: String,
    pub pos: i64,
}

impl Position {
    pub fn parse(text: &str) -> Result<Position, StoreError> {
        let bad = || StoreError::invalid("position", "not a watch position (pass back one the server sent)");
        let (feed_id, pos) = text.rsplit_once(':').ok_or_else(bad)?;
        let pos: i64 = pos.parse().map_err(|_| bad())?;
        if feed_id.is_empty() || pos < 0 {
            return Err(bad());
        }
        Ok(Position { feed_id: feed_id.to_string(), pos })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.feed_id, self.pos)
    }
}

/// Whether a watch can resume from a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Every change after this position is still in the feed.
    From(i64),
    /// It can't: the client must re-read, then follow from the head.
    Reset(String),
}

impl FeedHead {
    /// This feed's head as a position.
    pub fn position(&self) -> Position {
        Position { feed_id: self.feed_id.clone(), pos: self.last }
    }

    /// Whether a watch can resume at `p` in this feed.
    pub fn resume(&self, p: &Position) -> Resume {
        if p.feed_id != self.feed_id {
            Resume::Reset("the position belongs to another database (another site?): re-read everything".into())
        } else if p.pos < self.purged_upto {
            Resume::Reset("the position is older than the changes kept here: re-read everything".into())
        } else if p.pos > self.last {
            Resume::Reset("the position is ahead of this database (restored from a backup?): re-read everything".into())
        } else {
            Resume::From(p.pos)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_resume() {
        let p = Position::parse("7c1e0d52-1111-4a2b-9c3d-000000000000:42").unwrap();
        assert_eq!(p.to_string(), "7c1e0d52-1111-4a2b-9c3d-000000000000:42");
        assert!(Position::parse("42").is_err());
        assert!(Position::parse("x:-1").is_err());
        let head = FeedHead { feed_id: p.feed_id.clone(), last: 50, purged_upto: 10 };
        assert_eq!(head.resume(&p), Resume::From(42));
        assert!(matches!(head.resume(&Position { pos: 9, ..p.clone() }), Resume::Reset(_)));
        assert!(matches!(head.resume(&Position { pos: 51, ..p.clone() }), Resume::Reset(_)));
        assert!(matches!(head.resume(&Position { feed_id: "other".into(), pos: 42 }), Resume::Reset(_)));
        assert_eq!(head.resume(&Position { pos: 10, ..p }), Resume::From(10));
    }
}

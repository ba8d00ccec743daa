//! SQLite values the replicator handles: primary-key values that can be
//! compared and hashed (conflict resolution groups changes by key), and the
//! stable byte encoding `compare` hashes.

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::ToSql;

/// One primary-key column's value, exactly as stored: SQLite keeps `1` and
/// `'1'` apart, and so does this.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyValue {
    Null,
    Integer(i64),
    /// The bits of the float, so keys can be hashed.
    Real(u64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

/// A changed key: one value per primary-key column.
pub type SqliteKey = Vec<KeyValue>;

impl From<ValueRef<'_>> for KeyValue {
    fn from(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => KeyValue::Null,
            ValueRef::Integer(i) => KeyValue::Integer(i),
            ValueRef::Real(f) => KeyValue::Real(f.to_bits()),
            ValueRef::Text(t) => KeyValue::Text(t.to_vec()),
            ValueRef::Blob(b) => KeyValue::Blob(b.to_vec()),
        }
    }
}

impl ToSql for KeyValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            KeyValue::Null => ValueRef::Null,
            KeyValue::Integer(i) => ValueRef::Integer(*i),
            KeyValue::Real(bits) => return Ok(ToSqlOutput::Owned(Value::Real(f64::from_bits(*bits)))),
            KeyValue::Text(t) => ValueRef::Text(t),
            KeyValue::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl KeyValue {
    /// The value for people (status, conflict log, compare): numbers and text
    /// as they are, blobs as `\x` and hex.
    pub fn text(&self) -> String {
        text(self.as_ref())
    }

    fn as_ref(&self) -> ValueRef<'_> {
        match self {
            KeyValue::Null => ValueRef::Null,
            KeyValue::Integer(i) => ValueRef::Integer(*i),
            KeyValue::Real(bits) => ValueRef::Real(f64::from_bits(*bits)),
            KeyValue::Text(t) => ValueRef::Text(t),
            KeyValue::Blob(b) => ValueRef::Blob(b),
        }
    }
}

/// A value as text for people.
pub fn text(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => format!("{f:?}"),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => {
            let mut s = String::with_capacity(2 + b.len() * 2);
            s.push_str("\\x");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            s
        }
    }
}

/// Appends an unambiguous encoding of `v` (type tag, length, bytes) to `out`,
/// for hashing: equal values encode equally, different ones never collide by
/// concatenation.
pub fn encode(v: ValueRef<'_>, out: &mut Vec<u8>) {
    match v {
        ValueRef::Null => out.push(b'n'),
        ValueRef::Integer(i) => {
            out.push(b'i');
            out.extend_from_slice(&i.to_be_bytes());
        }
        ValueRef::Real(f) => {
            out.push(b'r');
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        ValueRef::Text(t) => {
            out.push(b't');
            out.extend_from_slice(&(t.len() as u64).to_be_bytes());
            out.extend_from_slice(t);
        }
        ValueRef::Blob(b) => {
            out.push(b'b');
            out.extend_from_slice(&(b.len() as u64).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_storage_class() {
        assert_ne!(KeyValue::from(ValueRef::Integer(1)), KeyValue::from(ValueRef::Text(b"1")));
        assert_eq!(KeyValue::from(ValueRef::Blob(&[0xde, 0xad])).text(), "\\xdead");
        assert_eq!(KeyValue::from(ValueRef::Real(1.5)).text(), "1.5");
    }

    #[test]
    fn encodings_do_not_collide_by_concatenation() {
        let mut a = Vec::new();
        encode(ValueRef::Text(b"ab"), &mut a);
        encode(ValueRef::Text(b"c"), &mut a);
        let mut b = Vec::new();
        encode(ValueRef::Text(b"a"), &mut b);
        encode(ValueRef::Text(b"bc"), &mut b);
        assert_ne!(a, b);
    }
}

//! Where values sit in the configuration text, so that rules checked after
//! parsing (an undefined database id, a duplicate name) still report a line.
//!
//! serde_json locates only its own errors. So the file is parsed through
//! [`Counting`], an `io::Read` that records how many bytes serde_json has
//! pulled, and [`Spanned`] notes that count when its value begins. serde_json
//! pulls bytes from a reader one at a time and looks ahead at most one byte, so
//! the count is within a byte of the value; [`line_column`] steps to its first
//! character. The tests pin this down, should serde_json ever read further ahead.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

thread_local! {
    /// Bytes pulled from the text by the parse running on this thread, if any.
    static CONSUMED: Cell<Option<usize>> = const { Cell::new(None) };
}

/// A value and the byte offset in the file near which it starts (`None` when it
/// was not read from a file, or was left out and defaulted).
#[derive(Default)]
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    pub(crate) offset: Option<usize>,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let offset = CONSUMED.get();
        let value = T::deserialize(deserializer)?;
        Ok(Spanned { value, offset })
    }
}

/// A JSON error, with the path of the field being read when it happened.
pub(crate) struct JsonError {
    pub(crate) field: Option<String>,
    pub(crate) error: serde_json::Error,
}

/// Parses `text` as one JSON value of type `T`, recording offsets in every
/// [`Spanned`] inside it.
pub(crate) fn parse<T: DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CONSUMED.set(None);
        }
    }
    CONSUMED.set(Some(0));
    let _reset = Reset;
    let mut de = serde_json::Deserializer::from_reader(Counting { rest: text.as_bytes(), pos: 0 });
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        // A syntax error leaves an unknown last segment, shown as `?`.
        let path = err.path().to_string();
        let path = path.trim_end_matches(".?").trim_end_matches('?');
        let field = (!path.is_empty() && path != ".").then(|| path.to_owned());
        JsonError { field, error: err.into_inner() }
    })?;
    de.end().map_err(|error| JsonError { field: None, error })?;
    Ok(value)
}

/// Reads a byte slice and publishes how much of it has been read.
struct Counting<'a> {
    rest: &'a [u8],
    pos: usize,
}

impl io::Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        self.pos += n;
        CONSUMED.set(Some(self.pos));
        Ok(n)
    }
}

/// The 1-based line and column (in characters) of the value whose [`Spanned`]
/// offset is `offset`.
///
/// A value read as an object member starts after the `:` and any blanks that
/// were consumed before it; a value read as an array element, or through an
/// `Option`, was already peeked, so its first byte is the one before `offset`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    let mut start = offset.saturating_sub(1).min(bytes.len());
    while start < bytes.len() && matches!(bytes[start], b':' | b',' | b' ' | b'\t' | b'\n' | b'\r') {
        start += 1;
    }
    position(text, start)
}

/// The 1-based line and column (in characters) of byte `at` of `text`.
pub(crate) fn position(text: &str, at: usize) -> (usize, usize) {
    let mut start = at.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..start].chars().count() + 1;
    (line, column)
}

/// Offsets of the fields read, by field path (`syncs[0].sources[1]`).
#[derive(Default)]
pub(crate) struct Spans(BTreeMap<String, usize>);

impl Spans {
    /// Records where the value of `field` starts.
    pub(crate) fn note<T>(&mut self, field: &str, value: &Spanned<T>) {
        if let Some(offset) = value.offset {
            self.0.insert(field.to_owned(), offset);
        }
    }

    /// Records where the value of `field` starts, if it was written.
    pub(crate) fn note_opt<T>(&mut self, field: &str, value: &Option<Spanned<T>>) {
        if let Some(value) = value {
            self.note(field, value);
        }
    }

    /// Where `field` starts, or else the nearest enclosing value that was
    /// written: a defaulted `syncs[1].name` points at the sync `syncs[1]`.
    pub(crate) fn find(&self, field: &str) -> Option<usize> {
        let mut field = field;
        loop {
            if let Some(offset) = self.0.get(field) {
                return Some(*offset);
            }
            field = &field[..field.rfind(['.', '['])?];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        a: Spanned<u32>,
        list: Spanned<Vec<Spanned<String>>>,
        opt: Option<Spanned<bool>>,
        objs: Vec<Spanned<Obj>>,
    }

    #[derive(Deserialize)]
    struct Obj {
        #[allow(dead_code)]
        x: u32,
    }

    fn at<T>(text: &str, value: &Spanned<T>) -> (usize, usize) {
        line_column(text, value.offset.expect("offset recorded"))
    }

    #[test]
    fn offsets_point_at_the_first_character_of_each_value() {
        let text = "{\n  \"a\" :  7,\n  \"list\": [ \"x\",\n     \"yé\" ],\n  \"opt\": true,\n  \"objs\": [{\"x\": 1}, {\"x\": 2}]\n}";
        let doc: Doc = parse(text).map_err(|e| e.error).unwrap();
        assert_eq!(at(text, &doc.a), (2, 10));
        assert_eq!(at(text, &doc.list), (3, 11));
        assert_eq!(at(text, &doc.list.value[0]), (3, 13));
        assert_eq!(at(text, &doc.list.value[1]), (4, 6));
        assert_eq!(at(text, doc.opt.as_ref().unwrap()), (5, 10));
        assert_eq!(at(text, &doc.objs[1]), (6, 22));
        assert_eq!(CONSUMED.get(), None, "the parse leaves no offset behind");
    }

    #[test]
    fn find_falls_back_to_the_enclosing_field() {
        let mut spans = Spans::default();
        spans.0.insert("syncs[1]".into(), 40);
        spans.0.insert("syncs[1].conflict_strategy".into(), 50);
        assert_eq!(spans.find("syncs[1].conflict_strategy[2]"), Some(50));
        assert_eq!(spans.find("syncs[1].name"), Some(40));
        assert_eq!(spans.find("databases[0].id"), None);
    }
}

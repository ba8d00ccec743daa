//! A failure's cause in words, for logs and for the report that lists every server: an error and
//! its chain of causes on one line, without the words that say nothing.

use std::error::Error;

/// tonic's wrapper around every transport error; the causes below it say more.
const GENERIC: &str = "transport error";

/// Any error with its chain of causes on one line.
pub(crate) fn describe_error(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    append_sources(&mut text, err.source());
    text
}

/// Appends each cause of a chain that the text does not already say.
pub(crate) fn append_sources(text: &mut String, mut source: Option<&(dyn Error + 'static)>) {
    while let Some(err) = source {
        let part = err.to_string();
        if text == GENERIC {
            *text = part;
        } else if !part.is_empty() && part != GENERIC && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = err.source();
    }
}

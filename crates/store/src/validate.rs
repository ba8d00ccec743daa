//! The rules every write passes before it reaches a database, shared by the
//! gRPC and REST front ends so both refuse the same inputs with the same
//! words. Each error names the field and the rule.

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::event::EventInput;
use crate::model::{Input, Kind, Micros};

/// Longest setting key, user name or context entry name, in characters.
pub const MAX_KEY_CHARS: usize = 200;
/// Longest app or flow name.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest app description.
pub const MAX_DESCRIPTION_CHARS: usize = 4_000;
/// Largest flow script, in bytes of UTF-8.
pub const MAX_SCRIPT_BYTES: usize = 256 * 1024;
/// Largest setting value, as compact JSON text.
pub const MAX_SETTING_BYTES: usize = 64 * 1024;
/// Most entries in one context.
pub const MAX_CONTEXT_ENTRIES: usize = 64;
/// Longest value of a context entry.
pub const MAX_CONTEXT_VALUE_CHARS: usize = 4_096;
/// Most events in one post.
pub const MAX_EVENTS_PER_POST: usize = 1_000;
/// Longest event kind.
pub const MAX_EVENT_KIND_CHARS: usize = 100;
/// Largest event payload, as compact JSON text.
pub const MAX_EVENT_PAYLOAD_BYTES: usize = 16 * 1024;
/// Page size when none is asked for, and the largest allowed.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1_000;

impl Input {
    /// An app: `id` a UUID, a non-empty one-line `name`, any `description`.
    pub fn app(id: &str, name: &str, description: &str) -> Result<Input, StoreError> {
        let id = uuid("id", id)?;
        let name = one_line("name", name, MAX_NAME_CHARS)?;
        let description = text("description", description, MAX_DESCRIPTION_CHARS)?;
        Ok(Input { kind: Kind::App, key: id, fields: vec![name, description] })
    }

    /// A flow of the app `app_id`; `script` is its text.
    pub fn flow(id: &str, app_id: &str, name: &str, script: &str) -> Result<Input, StoreError> {
        let id = uuid("id", id)?;
        let app_id = uuid("app_id", app_id)?;
        let name = one_line("name", name, MAX_NAME_CHARS)?;
        if script.len() > MAX_SCRIPT_BYTES {
            return Err(StoreError::invalid("script", format!("longer than {MAX_SCRIPT_BYTES} bytes")));
        }
        let script = text("script", script, usize::MAX)?;
        Ok(Input { kind: Kind::Flow, key: id, fields: vec![app_id, name, script] })
    }

    /// A setting: a [`key`] and any JSON value.
    pub fn setting(key_text: &str, value: &serde_json::Value) -> Result<Input, StoreError> {
        let key = key("key", key_text)?;
        let value = json("value", value, MAX_SETTING_BYTES)?;
        Ok(Input { kind: Kind::Setting, key, fields: vec![value] })
    }

    /// A user's context: entry names follow the [`key`] rules, values are
    /// one-line texts.
    pub fn context(user: &str, values: &BTreeMap<String, String>) -> Result<Input, StoreError> {
        let user = key("user", user)?;
        if values.len() > MAX_CONTEXT_ENTRIES {
            return Err(StoreError::invalid("values", format!("more than {MAX_CONTEXT_ENTRIES} entries")));
        }
        for (name, value) in values {
            key("values", name)?;
            text(&format!("values.{name}"), value, MAX_CONTEXT_VALUE_CHARS)?;
        }
        let entries = serde_json::to_string(values)
            .map_err(|e| StoreError::invalid("values", format!("cannot be written as JSON: {e}")))?;
        Ok(Input { kind: Kind::Context, key: user, fields: vec![entries] })
    }
}

impl EventInput {
    /// Event number `index` of a post. `payload` may be `null`.
    pub fn new(
        index: usize,
        id: &str,
        kind: &str,
        user: Option<&str>,
        app_id: Option<&str>,
        occurred_at: Option<Micros>,
        payload: &serde_json::Value,
    ) -> Result<EventInput, StoreError> {
        let field = |name: &str| format!("events[{index}].{name}");
        let id = uuid(&field("id"), id)?;
        let kind = one_line(&field("kind"), kind, MAX_EVENT_KIND_CHARS)?;
        let user = user.map(|u| key(&field("user"), u)).transpose()?;
        let app_id = app_id.map(|a| uuid(&field("app_id"), a)).transpose()?;
        let payload = json(&field("payload"), payload, MAX_EVENT_PAYLOAD_BYTES)?;
        Ok(EventInput { id, kind, user, app_id, occurred_at, payload })
    }
}

/// Checks a post's size before its events are read one by one.
pub fn event_count(count: usize) -> Result<(), StoreError> {
    match count {
        0 => Err(StoreError::invalid("events", "empty: post at least one event")),
        n if n > MAX_EVENTS_PER_POST => {
            Err(StoreError::invalid("events", format!("{n} events; at most {MAX_EVENTS_PER_POST} per post")))
        }
        _ => Ok(()),
    }
}

/// A requested page size: 0 means the default.
pub fn page_size(requested: u32) -> Result<u32, StoreError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n > MAX_PAGE_SIZE => Err(StoreError::invalid("page_size", format!("at most {MAX_PAGE_SIZE}"))),
        n => Ok(n),
    }
}

/// A UUID in any of its usual spellings, returned lowercase with hyphens.
pub fn uuid(field: &str, text: &str) -> Result<String, StoreError> {
    match uuid::Uuid::try_parse(text) {
        Ok(u) => Ok(u.hyphenated().to_string()),
        Err(_) if text.is_empty() => Err(StoreError::invalid(field, "missing: a UUID is required")),
        Err(_) => Err(StoreError::invalid(field, "not a UUID (like 0b3e5a04-7c51-4e1c-9f6a-2d1f0c8b9e77)")),
    }
}

/// A natural key (setting key, user name): 1–200 characters of letters,
/// digits and `.` `_` `-` `:` `@`, so it is safe in a URL path.
pub fn key(field: &str, text: &str) -> Result<String, StoreError> {
    if text.is_empty() {
        return Err(StoreError::invalid(field, "missing: may not be empty"));
    }
    if text.chars().count() > MAX_KEY_CHARS {
        return Err(StoreError::invalid(field, format!("longer than {MAX_KEY_CHARS} characters")));
    }
    if let Some(bad) = text.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@'))) {
        return Err(StoreError::invalid(
            field,
            format!("may contain only letters, digits and . _ - : @ (found {bad:?})"),
        ));
    }
    Ok(text.to_string())
}

/// Non-empty text without control characters.
fn one_line(field: &str, value: &str, max_chars: usize) -> Result<String, StoreError> {
    if value.trim().is_empty() {
        return Err(StoreError::invalid(field, "missing: may not be empty"));
    }
    if value.chars().any(char::is_control) {
        return Err(StoreError::invalid(field, "may not contain control characters or line breaks"));
    }
    text(field, value, max_chars)
}

/// Any text up to `max_chars`, without NUL (which PostgreSQL cannot store).
fn text(field: &str, value: &str, max_chars: usize) -> Result<String, StoreError> {
    if max_chars != usize::MAX && value.chars().count() > max_chars {
        return Err(StoreError::invalid(field, format!("longer than {max_chars} characters")));
    }
    if value.contains('\0') {
        return Err(StoreError::invalid(field, "may not contain NUL characters"));
    }
    Ok(value.to_string())
}

/// A JSON value as compact text, at most `max_bytes` long.
fn json(field: &str, value: &serde_json::Value, max_bytes: usize) -> Result<String, StoreError> {
    let text = serde_json::to_string(value)
        .map_err(|e| StoreError::invalid(field, format!("cannot be written as JSON: {e}")))?;
    if text.len() > max_bytes {
        return Err(StoreError::invalid(field, format!("{} bytes of JSON; at most {max_bytes}", text.len())));
    }
    // PostgreSQL's jsonb refuses \u0000 in strings; refuse it on every engine alike.
    if text.contains("\\u0000") {
        return Err(StoreError::invalid(field, "JSON strings may not contain NUL (\\u0000)"));
    }
    Ok(text)
}

/// Parses JSON text for `field`, refusing integers that 64 bits cannot hold
/// (see [`exact_integers`]).
pub fn json_text(field: &str, text: &str) -> Result<serde_json::Value, StoreError> {
    exact_integers(text.as_bytes()).map_err(|reason| StoreError::invalid(field, reason))?;
    serde_json::from_str(text).map_err(|e| StoreError::invalid(field, format!("not JSON: {e}")))
}

/// Checks that every integer written in the JSON text `bytes` fits in 64 bits
/// (`i64` or `u64`), the range the JSON parser keeps exactly; a larger one
/// would silently become an approximate float. The error names the line and
/// column. Numbers with a fraction or exponent are floats as written, and
/// text that is not JSON is left for the parser to name.
pub fn exact_integers(bytes: &[u8]) -> Result<(), String> {
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b != b'-' && !b.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let is_float = i < bytes.len() && matches!(bytes[i], b'.' | b'e' | b'E');
        while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
            i += 1;
        }
        if is_float {
            continue;
        }
        let digits = std::str::from_utf8(&bytes[start..i]).unwrap_or_default();
        if digits.parse::<i64>().is_err()
            && digits.parse::<u64>().is_err()
            && !digits.trim_start_matches('-').is_empty()
        {
            let line = bytes[..start].iter().filter(|&&c| c == b'\n').count() + 1;
            let column = start - bytes[..start].iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1) + 1;
            return Err(format!(
                "the integer at line {line} column {column} ({} digits) does not fit in 64 bits and would not be \
                 kept exactly; write it as a string",
                digits.trim_start_matches('-').len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_beyond_64_bits_are_refused_and_the_rest_kept_exactly() {
        for ok in [
            r#"{"a": 18446744073709551615, "b": -9223372036854775808}"#,
            r#"[1.5e300, 123456789012345678901234567890.0, 1e40]"#,
            r#""123456789012345678901234567890""#,
            r#"{"k\"123456789012345678901234567890": 1}"#,
        ] {
            assert!(exact_integers(ok.as_bytes()).is_ok(), "{ok}");
        }
        let v = json_text("value", "18446744073709551615").unwrap();
        assert_eq!(v.as_u64(), Some(u64::MAX));
        for (bad, at) in [
            ("18446744073709551616", "line 1 column 1"),
            ("{\"a\":\n  [1, -9223372036854775809]}", "line 2 column 7"),
            ("123456789012345678901234567890", "(30 digits)"),
        ] {
            let err = json_text("value", bad).unwrap_err().to_string();
            assert!(err.starts_with("value: the integer at ") && err.contains(at), "{bad}: {err}");
        }
        assert!(json_text("value", "{").unwrap_err().to_string().starts_with("value: not JSON"));
    }

    #[test]
    fn uuids_are_normalized() {
        let input = Input::app("0B3E5A04-7C51-4E1C-9F6A-2D1F0C8B9E77", "A", "").unwrap();
        assert_eq!(input.key(), "0b3e5a04-7c51-4e1c-9f6a-2d1f0c8b9e77");
        let err = Input::app("nope", "A", "").unwrap_err().to_string();
        assert!(err.starts_with("id: not a UUID"), "{err}");
    }

    #[test]
    fn keys_are_url_safe() {
        assert!(key("key", "ui.theme:dark-mode_2@x").is_ok());
        assert!(key("key", "a/b").unwrap_err().to_string().contains("found '/'"));
        assert!(key("key", "").is_err());
        assert!(key("key", &"k".repeat(201)).is_err());
    }

    #[test]
    fn sizes_are_bounded() {
        let big = json!("x".repeat(MAX_SETTING_BYTES));
        let err = Input::setting("k", &big).unwrap_err().to_string();
        assert!(err.starts_with("value: 65538 bytes of JSON; at most 65536"), "{err}");
        assert!(Input::setting("k", &json!({"a": "\u{0}"})).is_err());
        let many: BTreeMap<String, String> = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(Input::context("u", &many).unwrap_err().to_string().starts_with("values: more than 64"));
        assert!(Input::app(&uuid::Uuid::new_v4().to_string(), "two\nlines", "").is_err());
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert!(page_size(1001).is_err());
    }

    #[test]
    fn event_fields_are_named_by_index() {
        let err = EventInput::new(3, "x", "k", None, None, None, &json!(null)).unwrap_err().to_string();
        assert!(err.starts_with("events[3].id:"), "{err}");
        assert!(event_count(0).is_err());
        assert!(event_count(1001).is_err());
    }
}

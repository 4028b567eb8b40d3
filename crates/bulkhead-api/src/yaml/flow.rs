//! Flow collections of the fast path, closed on the line they open: `[a, "b", {c: d}]`.

use serde_json::{Map, Value};

use super::fast::{Budget, MAX_KEY_LEN, skip_spaces};
use super::scalar::{double_quoted, plain_key_ok, resolve_plain, single_quoted};

/// A flow sequence or mapping at the start of `s` (`[` or `{`): its value and the bytes it
/// spans. `None` if it does not close on the line or uses anything beyond the subset.
pub(super) fn collection(s: &str, depth: usize, budget: &mut Budget) -> Option<(Value, usize)> {
    budget.node(depth)?;
    match s.as_bytes().first()? {
        b'[' => sequence(s, depth, budget),
        b'{' => mapping(s, depth, budget),
        _ => None,
    }
}

fn sequence(s: &str, depth: usize, budget: &mut Budget) -> Option<(Value, usize)> {
    let mut items = Vec::new();
    let mut i = skip_spaces(s, 1);
    loop {
        if s[i..].starts_with(']') {
            return Some((Value::Array(items), i + 1));
        }
        let (item, len) = node(&s[i..], depth + 1, budget)?;
        items.push(item);
        i = skip_spaces(s, i + len);
        match s.as_bytes().get(i)? {
            b',' => i = skip_spaces(s, i + 1),
            b']' => return Some((Value::Array(items), i + 1)),
            _ => return None,
        }
    }
}

fn mapping(s: &str, depth: usize, budget: &mut Budget) -> Option<(Value, usize)> {
    let mut map = Map::new();
    let mut i = skip_spaces(s, 1);
    loop {
        if s[i..].starts_with('}') {
            return Some((Value::Object(map), i + 1));
        }
        let key_start = i;
        let (key, len) = key(&s[i..])?;
        i = skip_spaces(s, i + len);
        // `key: value` only: `{a}`, `{a: }` and `{"a":b}` are left to serde-saphyr.
        if !s[i..].starts_with(": ") || i - key_start >= MAX_KEY_LEN {
            return None;
        }
        i = skip_spaces(s, i + 2);
        budget.node(depth + 1)?; // the key
        let (value, len) = node(&s[i..], depth + 1, budget)?;
        if map.insert(key, value).is_some() {
            return None;
        }
        i = skip_spaces(s, i + len);
        match s.as_bytes().get(i)? {
            b',' => i = skip_spaces(s, i + 1),
            b'}' => return Some((Value::Object(map), i + 1)),
            _ => return None,
        }
    }
}

/// A key of a flow mapping: quoted, or plain and certainly a string.
fn key(s: &str) -> Option<(String, usize)> {
    let (key, len) = match s.as_bytes().first()? {
        b'"' => double_quoted(s)?,
        b'\'' => single_quoted(s)?,
        _ => {
            let len = plain_len(s)?;
            let key = &s[..len];
            if !plain_key_ok(key) {
                return None;
            }
            (key.to_owned(), len)
        }
    };
    (key != "<<").then_some((key, len))
}

/// One item or value inside a flow collection.
fn node(s: &str, depth: usize, budget: &mut Budget) -> Option<(Value, usize)> {
    match s.as_bytes().first()? {
        b'[' | b'{' => collection(s, depth, budget),
        b'"' => {
            budget.node(depth)?;
            double_quoted(s).map(|(v, len)| (Value::String(v), len))
        }
        b'\'' => {
            budget.node(depth)?;
            single_quoted(s).map(|(v, len)| (Value::String(v), len))
        }
        _ => {
            budget.node(depth)?;
            let len = plain_len(s)?;
            Some((resolve_plain(&s[..len])?, len))
        }
    }
}

/// The length of a plain scalar at the start of `s` inside a flow collection, trailing
/// spaces excluded. `None` for an indicator at its start or a `:` inside it.
fn plain_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let first = *bytes.first()?;
    let next = bytes.get(1).copied();
    let starts_ok = match first {
        b'-' => next.is_some_and(|n| n.is_ascii_alphanumeric() || n == b'.'),
        _ => !is_indicator(first),
    };
    if !starts_ok {
        return None;
    }
    let mut end = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b',' | b'[' | b']' | b'{' | b'}' => break,
            b':' => return (i > 0 && bytes.get(i + 1) == Some(&b' ')).then_some(end),
            b'#' if bytes[i - 1] == b' ' => break,
            b' ' => {}
            _ => end = i + 1,
        }
    }
    Some(end)
}

/// YAML's indicator characters, none of which may start a plain scalar here.
pub(super) fn is_indicator(b: u8) -> bool {
    matches!(
        b,
        b'-' | b'?'
            | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
            | b' '
    )
}

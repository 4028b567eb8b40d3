//! Scalars of the fast path: plain scalars resolved as serde-saphyr resolves them (YAML 1.2
//! core, strict booleans), and single- and double-quoted scalars closed on their line.
//!
//! Every function answers `None` when it is not certain; the caller then falls back to
//! serde-saphyr.

use serde_json::Value;

/// Resolves a plain scalar (non-empty, no surrounding spaces) to its value: a boolean,
/// null, a decimal integer that fits 64 bits, or a string. `None` for every other spelling
/// that serde-saphyr might read as a number (`1.5`, `0x1F`, `010`, `1_000`, `.inf`, …).
pub(super) fn resolve_plain(s: &str) -> Option<Value> {
    Some(match classify(s)? {
        Plain::String => Value::String(s.to_owned()),
        Plain::Other(value) => value,
    })
}

/// What a plain scalar resolves to.
enum Plain {
    /// The text itself, as a string.
    String,
    /// A boolean, null or integer.
    Other(Value),
}

fn classify(s: &str) -> Option<Plain> {
    match s.as_bytes().first() {
        Some(b't' | b'T' | b'f' | b'F' | b'n' | b'N' | b'~') => {
            return Some(match s {
                "true" | "True" | "TRUE" => Plain::Other(Value::Bool(true)),
                "false" | "False" | "FALSE" => Plain::Other(Value::Bool(false)),
                "null" | "Null" | "NULL" | "~" => Plain::Other(Value::Null),
                _ => Plain::String,
            });
        }
        Some(b'0'..=b'9' | b'.' | b'+' | b'-') => {}
        _ => return Some(Plain::String),
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if !unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Some(Plain::String);
    }
    if let Some(n) = decimal_integer(s) {
        return Some(Plain::Other(n));
    }
    (!numeric_suspect(s, unsigned)).then_some(Plain::String)
}

/// `-?(0|[1-9][0-9]*)` within `i64`/`u64`, as serde-saphyr gives it to a `Value` (`-0` and
/// out-of-range integers are left to serde-saphyr).
fn decimal_integer(s: &str) -> Option<Value> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let plain_digits = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !plain_digits || (negative && digits == "0") {
        return None;
    }
    if negative {
        s.parse::<i64>().ok().map(Value::from)
    } else {
        digits.parse::<u64>().ok().map(Value::from)
    }
}

/// Whether serde-saphyr could read `s` (which starts, after a sign, with a digit or `.`) as
/// an integer (any radix, underscores) or a float (Rust's float syntax, `.inf`, `.nan`).
/// Errs on the side of `true`: `:` counts as a digit separator.
fn numeric_suspect(s: &str, unsigned: &str) -> bool {
    let integer_alphabet = s.bytes().all(|b| {
        b.is_ascii_hexdigit() || matches!(b, b'x' | b'X' | b'o' | b'O' | b'_' | b'+' | b'-' | b':')
    });
    let special = unsigned
        .strip_prefix('.')
        .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_alphabetic()));
    integer_alphabet || special || s.parse::<f64>().is_ok()
}

/// Whether a plain key is certainly a string key for serde-saphyr: not null, a boolean or
/// number-like, and not the merge key `<<`.
pub(super) fn plain_key_ok(s: &str) -> bool {
    s != "<<"
        && !s
            .bytes()
            .any(|b| matches!(b, b'[' | b']' | b'{' | b'}' | b','))
        && matches!(classify(s), Some(Plain::String))
}

/// A single-quoted scalar at the start of `s` (one line): its text and the bytes it
/// spans, quotes included. `None` if it does not close on the line.
pub(super) fn single_quoted(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix('\'')?;
    let mut out = String::new();
    let mut rest = body;
    loop {
        let i = rest.find('\'')?;
        out.push_str(&rest[..i]);
        if rest[i + 1..].starts_with('\'') {
            out.push('\'');
            rest = &rest[i + 2..];
        } else {
            let consumed = s.len() - rest.len() + i + 1;
            return Some((out, consumed));
        }
    }
}

/// A double-quoted scalar at the start of `s` (one line), escapes decoded as YAML 1.2
/// defines them: its text and the bytes it spans, quotes included. `None` if it does not
/// close on the line, or for an escape that is invalid or continues the line.
pub(super) fn double_quoted(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut rest = body;
    loop {
        let i = rest.find(['"', '\\'])?;
        out.push_str(&rest[..i]);
        if rest.as_bytes()[i] == b'"' {
            let consumed = s.len() - rest.len() + i + 1;
            return Some((out, consumed));
        }
        let escape = &rest[i + 1..];
        let code = *escape.as_bytes().first()?;
        let (c, len) = match code {
            b'0' => ('\0', 1),
            b'a' => ('\x07', 1),
            b'b' => ('\x08', 1),
            b't' => ('\t', 1),
            b'n' => ('\n', 1),
            b'v' => ('\x0b', 1),
            b'f' => ('\x0c', 1),
            b'r' => ('\r', 1),
            b'e' => ('\x1b', 1),
            b' ' => (' ', 1),
            b'"' => ('"', 1),
            b'/' => ('/', 1),
            b'\\' => ('\\', 1),
            b'N' => ('\u{85}', 1),
            b'_' => ('\u{a0}', 1),
            b'L' => ('\u{2028}', 1),
            b'P' => ('\u{2029}', 1),
            b'x' => (hex_char(escape, 2)?, 3),
            b'u' => (hex_char(escape, 4)?, 5),
            b'U' => (hex_char(escape, 8)?, 9),
            _ => return None,
        };
        out.push(c);
        rest = &escape[len..];
    }
}

/// The character of the `digits` hex digits after the escape letter at `escape[0]`.
fn hex_char(escape: &str, digits: usize) -> Option<char> {
    let hex = escape.get(1..=digits)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    char::from_u32(u32::from_str_radix(hex, 16).ok()?)
}

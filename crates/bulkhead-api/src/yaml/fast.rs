//! The fast path: one document of the block-style YAML that Kubernetes and Calico
//! manifests use, straight to a `serde_json::Value`.
//!
//! Lines are read one at a time: every node closes on the line it starts on (no block
//! scalars, no multi-line plain, quoted or flow scalars), so comment and blank lines can be
//! dropped up front and nesting follows indentation alone. Anything outside that subset,
//! and anything serde-saphyr would reject or resolve differently, gives `None`.

use serde_json::{Map, Value};

use super::flow::{collection, is_indicator};
use super::scalar::{double_quoted, plain_key_ok, resolve_plain, single_quoted};

/// Longest key, in bytes, left to the fast path (serde-saphyr caps simple keys at 1,024
/// characters).
pub(super) const MAX_KEY_LEN: usize = 512;
/// Deepest nesting left to the fast path (serde-saphyr's budget allows 64).
const MAX_DEPTH: usize = 48;
/// Most nodes and comments left to the fast path (serde-saphyr's budget allows 250,000
/// nodes and 1,000,000 events).
const MAX_NODES: usize = 100_000;
/// Longest document left to the fast path (serde-saphyr's budget allows 64 MiB of
/// scalars and 64 MiB of comments).
const MAX_TEXT: usize = 16 << 20;
/// Longest run of comment lines left to the fast path (serde-saphyr buffers at most 32
/// comments while it resolves a collection entry).
const MAX_COMMENT_RUN: usize = 16;

/// Parses one document, or `None` if it is not certainly in the subset.
pub(super) fn parse(text: &str) -> Option<Value> {
    if text.len() > MAX_TEXT || !characters_ok(text) {
        return None;
    }
    let mut budget = Budget { nodes: 0 };
    let lines = lines(text, &mut budget)?;
    let first = lines.first()?;
    let mut parser = Parser {
        lines: &lines,
        next: 0,
        budget,
    };
    let value = parser.node(0, first.indent, 0)?;
    (parser.next == lines.len()).then_some(value)
}

/// Counts nodes and checks depth against the limits above.
pub(super) struct Budget {
    nodes: usize,
}

impl Budget {
    /// Accounts for one node at `depth`; `None` past a limit.
    pub(super) fn node(&mut self, depth: usize) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= MAX_NODES && depth <= MAX_DEPTH).then_some(())
    }
}

/// No tab, no bare carriage return, no control character, byte-order mark,
/// non-characters or Unicode line separators: left to serde-saphyr.
fn characters_ok(text: &str) -> bool {
    let bytes = text.as_bytes();
    // One branch-free pass (vectorised) for the common case: printable ASCII, line feeds
    // and non-ASCII bytes only.
    let unusual = bytes.iter().fold(false, |unusual, &b| {
        unusual | ((b < 0x20 && b != b'\n') || b == 0x7f)
    });
    let ascii_ok = !unusual
        || bytes.iter().enumerate().all(|(i, &b)| match b {
            b'\n' | 0x20..=0x7e | 0x80.. => true,
            b'\r' => bytes.get(i + 1) == Some(&b'\n'),
            _ => false,
        });
    ascii_ok
        && (text.is_ascii()
            || !text.chars().any(|c| {
                ('\u{80}'..='\u{9f}').contains(&c)
                    || matches!(
                        c,
                        '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                    )
            }))
}

/// A line with content: its text (no line break, no trailing spaces) and indentation.
struct Line<'a> {
    text: &'a str,
    indent: usize,
}

/// The content lines of `text`, without comment-only and blank lines and without a
/// leading `---`. `None` for directives, other document markers, or a long comment run.
fn lines<'a>(text: &'a str, budget: &mut Budget) -> Option<Vec<Line<'a>>> {
    let mut out = Vec::new();
    let mut comments = 0;
    let mut started = false;
    let mut rest = text;
    while !rest.is_empty() {
        // A plain loop: memchr's set-up costs more than it saves on ~25-byte lines.
        let end = rest.bytes().position(|b| b == b'\n').unwrap_or(rest.len());
        let raw = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        let line = raw.trim_end_matches('\r').trim_end_matches(' ');
        let content = line.trim_start_matches(' ');
        if content.is_empty() {
            continue;
        }
        if content.starts_with('#') {
            comments += 1;
            budget.node(0)?;
            if comments > MAX_COMMENT_RUN {
                return None;
            }
            continue;
        }
        comments = 0;
        if line.starts_with("---") || line.starts_with("...") || line.starts_with('%') {
            // One `---` before any content; a second one starts another document.
            let bare_start = out.is_empty()
                && !started
                && (line == "---"
                    || line
                        .strip_prefix("--- ")
                        .is_some_and(|r| r.trim_start().starts_with('#')));
            if bare_start {
                started = true;
                continue;
            }
            return None;
        }
        out.push(Line {
            text: line,
            indent: line.len() - content.len(),
        });
    }
    Some(out)
}

/// Index of the first byte at or after `i` that is not a space.
pub(super) fn skip_spaces(s: &str, i: usize) -> usize {
    i + s.as_bytes()[i.min(s.len())..]
        .iter()
        .take_while(|&&b| b == b' ')
        .count()
}

/// Whether `s` (after a value) holds nothing more than spaces and a comment.
fn line_ends(s: &str) -> bool {
    let t = s.trim_start_matches(' ');
    t.is_empty() || (t.starts_with('#') && t.len() < s.len())
}

/// Whether `s` starts a block sequence item: `-` then a space or the end of the line.
fn is_item(s: &str) -> bool {
    s == "-" || s.starts_with("- ")
}

/// If `s` starts with `key:` (then a space or the end of the line), the key and the
/// offset just past the colon.
fn key(s: &str) -> Option<(String, usize)> {
    let first = *s.as_bytes().first()?;
    let (key, len) = match first {
        b'"' => double_quoted(s)?,
        b'\'' => single_quoted(s)?,
        _ if is_indicator(first) => return None,
        _ => {
            let end = plain_end(s);
            let key = s[..end].trim_end_matches(' ');
            if !s[end..].starts_with(':') || !plain_key_ok(key) {
                return None;
            }
            (key.to_owned(), key.len())
        }
    };
    let colon = skip_spaces(s, len);
    let after = &s[colon..];
    let is_key = after == ":" || after.starts_with(": ");
    (is_key && colon < MAX_KEY_LEN && key != "<<").then_some((key, colon + 1))
}

/// Where a plain scalar starting at `s[0]` ends in block context: at a `: ` or a final
/// `:`, at ` #`, or at the end of the line (trailing spaces included).
fn plain_end(s: &str) -> usize {
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let ends = match b {
            b':' => matches!(bytes.get(i + 1), None | Some(b' ')),
            b'#' => i > 0 && bytes[i - 1] == b' ',
            _ => false,
        };
        if ends {
            return i;
        }
    }
    bytes.len()
}

/// Walks the content lines; `next` is the first line not yet consumed.
struct Parser<'l, 'a> {
    lines: &'l [Line<'a>],
    next: usize,
    budget: Budget,
}

impl Parser<'_, '_> {
    /// The node starting at column `col` of line `at`: a block sequence, a block mapping,
    /// or a value that ends on this line.
    fn node(&mut self, at: usize, col: usize, depth: usize) -> Option<Value> {
        let s = &self.lines[at].text[col..];
        if is_item(s) {
            self.sequence(at, col, depth)
        } else if let Some(first) = key(s) {
            self.mapping(at, col, first, depth)
        } else {
            self.inline(at, col, depth)
        }
    }

    /// A value that ends on line `at`: a scalar or a flow collection.
    fn inline(&mut self, at: usize, col: usize, depth: usize) -> Option<Value> {
        let s = &self.lines[at].text[col..];
        self.budget.node(depth)?;
        let (value, len) = match *s.as_bytes().first()? {
            b'[' | b'{' => collection(s, depth, &mut self.budget)?,
            b'"' => double_quoted(s).map(|(v, len)| (Value::String(v), len))?,
            b'\'' => single_quoted(s).map(|(v, len)| (Value::String(v), len))?,
            b'-' if is_item(s) => return None,
            b if b != b'-' && is_indicator(b) => return None,
            _ => {
                let plain = s[..plain_end(s)].trim_end_matches(' ');
                (resolve_plain(plain)?, plain.len())
            }
        };
        if !line_ends(&s[len..]) {
            return None;
        }
        self.next = at + 1;
        Some(value)
    }

    /// The value of a key or item whose line ends after the indicator: a node on the
    /// next lines indented deeper than `indent`, a sequence at `indent` itself when
    /// `same_indent_sequence` (`key:` then `- item`), or null.
    fn below(&mut self, indent: usize, same_indent_sequence: bool, depth: usize) -> Option<Value> {
        let Some(line) = self.lines.get(self.next) else {
            self.budget.node(depth)?;
            return Some(Value::Null);
        };
        if line.indent > indent {
            self.node(self.next, line.indent, depth)
        } else if same_indent_sequence && line.indent == indent && is_item(&line.text[indent..]) {
            self.sequence(self.next, indent, depth)
        } else {
            self.budget.node(depth)?;
            Some(Value::Null)
        }
    }

    /// The position of the next entry of a block collection at `indent`, or `None` when the
    /// collection has ended. `Err(())` for a line indented deeper than `indent` (a
    /// continuation the fast path does not take).
    fn next_entry(&self, indent: usize) -> Result<Option<usize>, ()> {
        match self.lines.get(self.next) {
            Some(line) if line.indent == indent => Ok(Some(self.next)),
            Some(line) if line.indent > indent => Err(()),
            _ => Ok(None),
        }
    }

    /// A block sequence whose first `-` is at column `col` of line `at`.
    fn sequence(&mut self, at: usize, col: usize, depth: usize) -> Option<Value> {
        self.budget.node(depth)?;
        let mut items = Vec::new();
        let mut at = Some(at);
        while let Some(line) = at {
            let s = &self.lines[line].text[col..];
            if !is_item(s) {
                break;
            }
            let item = if line_ends(&s[1..]) {
                self.next = line + 1;
                self.below(col, false, depth + 1)?
            } else {
                self.node(line, col + skip_spaces(s, 1), depth + 1)?
            };
            items.push(item);
            at = self.next_entry(col).ok()?;
        }
        Some(Value::Array(items))
    }

    /// A block mapping whose first key, already read (`first`), is at column `col` of line
    /// `at`.
    fn mapping(
        &mut self,
        at: usize,
        col: usize,
        first: (String, usize),
        depth: usize,
    ) -> Option<Value> {
        self.budget.node(depth)?;
        let mut map = Map::new();
        let mut at = Some(at);
        let mut first = Some(first);
        while let Some(line) = at {
            let s = &self.lines[line].text[col..];
            let (key, after) = match first.take() {
                Some(first) => first,
                None => key(s)?,
            };
            self.budget.node(depth + 1)?;
            let value = if line_ends(&s[after..]) {
                self.next = line + 1;
                self.below(col, true, depth + 1)?
            } else {
                self.inline(line, col + skip_spaces(s, after), depth + 1)?
            };
            if map.insert(key, value).is_some() {
                return None;
            }
            at = self.next_entry(col).ok()?;
        }
        Some(Value::Object(map))
    }
}

//! The parse error type and the fixed wording of its messages.
//!
//! Every message says what the parser expected at that point, so that a user
//! reading `col 12: expected a quoted string` knows how to fix the selector.
//! The wording is part of the crate's observable behaviour (the CLI and the API
//! validator show it), so it lives here in one place rather than being spelled
//! out at each call site.

/// A parse error with the 1-based column where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("col {column}: {message}")]
pub struct ParseError {
    /// 1-based column (in characters) of the offending input.
    pub column: usize,
    /// What was expected or found.
    pub message: String,
}

impl ParseError {
    /// Builds an error for the byte offset `pos` of `src`, converting the
    /// offset into a 1-based character column.
    pub(crate) fn at(src: &str, pos: usize, message: impl Into<String>) -> ParseError {
        // Offsets always fall on a character boundary (the lexer only stops
        // on ASCII bytes); if one ever did not, counting bytes is a harmless
        // fallback rather than a panic.
        let column = match src.get(..pos) {
            Some(prefix) => prefix.chars().count() + 1,
            None => pos + 1,
        };
        ParseError {
            column,
            message: message.into(),
        }
    }
}

/// A string literal was opened and never closed.
pub(crate) const UNTERMINATED_STRING: &str = "unterminated string";
/// A label longer than [`crate::MAX_LABEL_LENGTH`] bytes.
pub(crate) const LABEL_TOO_LONG: &str = "label too long";
/// A label was required (inside `has(...)`).
pub(crate) const EXPECTED_LABEL: &str = "expected a label";
/// A closing parenthesis was required.
pub(crate) const EXPECTED_RPAREN: &str = "expected ')'";
/// A single `=`.
pub(crate) const EXPECTED_EQ: &str = "expected ==";
/// A single `&`.
pub(crate) const EXPECTED_AND: &str = "expected &&";
/// A single `|`.
pub(crate) const EXPECTED_OR: &str = "expected ||";
/// Something other than an operator followed a label.
pub(crate) const EXPECTED_OPERATOR: &str =
    "expected an operator (==, !=, contains, starts with, ends with, in, not in)";
/// An operand position held something that cannot start an operand.
pub(crate) const EXPECTED_OPERAND: &str = "expected a label, has(...), all(), global(), '!' or '('";
/// The right-hand side of a comparison was not a string literal.
pub(crate) const EXPECTED_STRING: &str = "expected a quoted string";
/// `in` / `not in` was not followed by `{`.
pub(crate) const EXPECTED_SET: &str = "expected a set literal like {\"a\", \"b\"}";
/// Inside a set literal, right after `{` or `,`.
pub(crate) const EXPECTED_SET_MEMBER: &str = "expected a quoted string or '}'";
/// Inside a set literal, right after a member.
pub(crate) const EXPECTED_SET_SEPARATOR: &str = "expected ',' or '}'";
/// A complete selector was followed by more tokens.
pub(crate) const TRAILING_CONTENT: &str = "unexpected content at end of selector";

/// Nesting beyond [`crate::MAX_NESTING_DEPTH`].
pub(crate) fn too_deep() -> String {
    format!(
        "selector nested too deeply (the limit is {} levels)",
        crate::MAX_NESTING_DEPTH
    )
}

/// A character that is not part of the selector grammar.
pub(crate) fn unexpected_char(c: char) -> String {
    format!("unexpected character '{}'", c.escape_debug())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_counts_characters_not_bytes() {
        let src = "é == %";
        // 'é' is two bytes; '%' is at byte 6 but character column 6.
        assert_eq!(ParseError::at(src, 6, "x").column, 6);
        assert_eq!(ParseError::at(src, 0, "x").column, 1);
    }

    #[test]
    fn column_of_a_non_boundary_offset_does_not_panic() {
        assert_eq!(ParseError::at("é", 1, "x").column, 2);
        assert_eq!(ParseError::at("", 7, "x").column, 8);
    }

    #[test]
    fn display_format() {
        let e = ParseError {
            column: 12,
            message: EXPECTED_STRING.into(),
        };
        assert_eq!(e.to_string(), "col 12: expected a quoted string");
    }

    #[test]
    fn unexpected_char_escapes_control_characters() {
        assert_eq!(unexpected_char('\n'), "unexpected character '\\n'");
        assert_eq!(unexpected_char('%'), "unexpected character '%'");
    }
}

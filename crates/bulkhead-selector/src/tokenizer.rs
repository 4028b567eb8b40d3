//! The lexer: turns selector text into tokens, one at a time, on demand.
//!
//! It reproduces the quirks of Calico's tokenizer, which decide what is a
//! valid selector:
//!
//! - whitespace is only space and tab; any other character outside a string
//!   literal that is not part of the grammar is an error;
//! - labels are runs of `[a-zA-Z0-9_./-]`, at most [`MAX_LABEL_LENGTH`] bytes;
//! - string literals use `"` or `'` and have no escapes;
//! - the keyword operators (`contains`, `starts with`, `ends with`, `in`,
//!   `not in`) are recognised only right after a label, so keywords remain
//!   usable as label names; the words of `starts with`, `ends with` and
//!   `not in` may be separated by any amount of whitespace, including none,
//!   and the keyword must not run on into further label characters;
//! - `has(`, `all(` and `global(` are single tokens: no space is allowed
//!   before the `(`, but spaces are allowed inside the parentheses.
//!
//! The lexer is pulled by the parser rather than producing a token vector, so
//! parsing allocates nothing beyond the AST, and the first error from left to
//! right is the one reported. It never panics: every byte access is checked.

use crate::MAX_LABEL_LENGTH;
use crate::error::{self, ParseError};

/// What a token is, borrowing label and string text from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind<'a> {
    /// A label name.
    Label(&'a str),
    /// The contents of a string literal, without its quotes.
    Str(&'a str),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `!`
    Not,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `contains`
    Contains,
    /// `starts with`
    StartsWith,
    /// `ends with`
    EndsWith,
    /// `in`
    In,
    /// `not in`
    NotIn,
    /// `has(label)`, carrying the label.
    Has(&'a str),
    /// `all()`
    All,
    /// `global()`
    Global,
    /// End of input.
    Eof,
}

/// A token and the byte offset where it starts (for error columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    /// What the token is.
    pub(crate) kind: TokenKind<'a>,
    /// Byte offset of its first character in the input.
    pub(crate) pos: usize,
}

/// True for the bytes allowed in a label name.
pub(crate) fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

/// A pull lexer over one selector string.
pub(crate) struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Whether the previous token was a label (enables keyword operators).
    after_label: bool,
}

impl<'a> Lexer<'a> {
    /// A lexer positioned at the start of `src`.
    pub(crate) fn new(src: &'a str) -> Lexer<'a> {
        Lexer {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            after_label: false,
        }
    }

    /// The input this lexer reads.
    pub(crate) fn src(&self) -> &'a str {
        self.src
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.bytes.get(at).copied()
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        // Only ever called with offsets of ASCII bytes, which are character
        // boundaries; the fallback is unreachable but keeps this panic-free.
        self.src.get(from..to).unwrap_or("")
    }

    fn err(&self, pos: usize, message: impl Into<String>) -> ParseError {
        ParseError::at(self.src, pos, message)
    }

    /// Offset of the first non-blank byte at or after `at`.
    fn skip_blanks(&self, mut at: usize) -> usize {
        while matches!(self.byte(at), Some(b' ' | b'\t')) {
            at += 1;
        }
        at
    }

    /// Offset just past the run of label bytes starting at `at`.
    fn label_end(&self, mut at: usize) -> usize {
        while self.byte(at).is_some_and(is_label_byte) {
            at += 1;
        }
        at
    }

    /// True when `word` appears at `at`.
    fn word_at(&self, at: usize, word: &str) -> bool {
        self.bytes
            .get(at..)
            .is_some_and(|rest| rest.starts_with(word.as_bytes()))
    }

    /// Matches a keyword operator made of `words` at `at`: blanks (or
    /// nothing) between the words, and no label byte right after the last.
    /// Returns the offset just past it.
    fn keyword_at(&self, at: usize, words: &[&str]) -> Option<usize> {
        let mut cur = at;
        for (i, word) in words.iter().enumerate() {
            if i > 0 {
                cur = self.skip_blanks(cur);
            }
            if !self.word_at(cur, word) {
                return None;
            }
            cur += word.len();
        }
        if self.byte(cur).is_some_and(is_label_byte) {
            return None;
        }
        Some(cur)
    }

    /// Reads a label starting at `start`, enforcing the length limit.
    fn read_label(&self, start: usize) -> Result<(&'a str, usize), ParseError> {
        let end = self.label_end(start);
        if end == start {
            return Err(self.err(start, error::EXPECTED_LABEL));
        }
        if end - start > MAX_LABEL_LENGTH {
            return Err(self.err(start, error::LABEL_TOO_LONG));
        }
        Ok((self.slice(start, end), end))
    }

    /// Reads the blanks and `)` that close `all(`, `global(` or `has(label`.
    fn close_paren(&self, at: usize) -> Result<usize, ParseError> {
        let at = self.skip_blanks(at);
        if self.byte(at) == Some(b')') {
            Ok(at + 1)
        } else {
            Err(self.err(at, error::EXPECTED_RPAREN))
        }
    }

    /// Returns the next token, or the error at the first character that
    /// cannot start one. After [`TokenKind::Eof`] it keeps returning `Eof`.
    pub(crate) fn next_token(&mut self) -> Result<Token<'a>, ParseError> {
        let start = self.skip_blanks(self.pos);
        let (kind, end) = self.lex_at(start)?;
        self.pos = end;
        self.after_label = matches!(kind, TokenKind::Label(_));
        Ok(Token { kind, pos: start })
    }

    fn lex_at(&self, start: usize) -> Result<(TokenKind<'a>, usize), ParseError> {
        let Some(b) = self.byte(start) else {
            return Ok((TokenKind::Eof, start));
        };
        let next = self.byte(start + 1);
        let simple = |kind| Ok((kind, start + 1));
        let double = |kind| Ok((kind, start + 2));
        match b {
            b'(' => simple(TokenKind::LParen),
            b')' => simple(TokenKind::RParen),
            b'{' => simple(TokenKind::LBrace),
            b'}' => simple(TokenKind::RBrace),
            b',' => simple(TokenKind::Comma),
            b'"' | b'\'' => self.lex_string(start, b),
            b'=' if next == Some(b'=') => double(TokenKind::Eq),
            b'=' => Err(self.err(start, error::EXPECTED_EQ)),
            b'!' if next == Some(b'=') => double(TokenKind::Ne),
            b'!' => simple(TokenKind::Not),
            b'&' if next == Some(b'&') => double(TokenKind::And),
            b'&' => Err(self.err(start, error::EXPECTED_AND)),
            b'|' if next == Some(b'|') => double(TokenKind::Or),
            b'|' => Err(self.err(start, error::EXPECTED_OR)),
            _ if self.after_label => self.lex_operator(start),
            _ => self.lex_word(start),
        }
    }

    fn lex_string(&self, start: usize, quote: u8) -> Result<(TokenKind<'a>, usize), ParseError> {
        let body = start + 1;
        let close = self
            .bytes
            .get(body..)
            .and_then(|rest| rest.iter().position(|&c| c == quote));
        match close {
            Some(len) => Ok((TokenKind::Str(self.slice(body, body + len)), body + len + 1)),
            None => Err(self.err(start, error::UNTERMINATED_STRING)),
        }
    }

    /// After a label only a keyword operator (or a symbol, handled earlier)
    /// may follow.
    fn lex_operator(&self, start: usize) -> Result<(TokenKind<'a>, usize), ParseError> {
        const OPERATORS: [(&[&str], TokenKind<'static>); 5] = [
            (&["contains"], TokenKind::Contains),
            (&["starts", "with"], TokenKind::StartsWith),
            (&["ends", "with"], TokenKind::EndsWith),
            (&["not", "in"], TokenKind::NotIn),
            (&["in"], TokenKind::In),
        ];
        for (words, kind) in OPERATORS {
            if let Some(end) = self.keyword_at(start, words) {
                return Ok((kind, end));
            }
        }
        if self.byte(start).is_some_and(is_label_byte) {
            Err(self.err(start, error::EXPECTED_OPERATOR))
        } else {
            Err(self.unexpected_char(start))
        }
    }

    /// A function call (`has(`, `all(`, `global(`), a label, or an error.
    fn lex_word(&self, start: usize) -> Result<(TokenKind<'a>, usize), ParseError> {
        if self.word_at(start, "has(") {
            let label_start = self.skip_blanks(start + "has(".len());
            let (label, end) = self.read_label(label_start)?;
            return Ok((TokenKind::Has(label), self.close_paren(end)?));
        }
        if self.word_at(start, "all(") {
            return Ok((TokenKind::All, self.close_paren(start + "all(".len())?));
        }
        if self.word_at(start, "global(") {
            return Ok((
                TokenKind::Global,
                self.close_paren(start + "global(".len())?,
            ));
        }
        if self.byte(start).is_some_and(is_label_byte) {
            let (label, end) = self.read_label(start)?;
            return Ok((TokenKind::Label(label), end));
        }
        Err(self.unexpected_char(start))
    }

    /// The error for a character that no token can start with.
    fn unexpected_char(&self, at: usize) -> ParseError {
        let c = self
            .src
            .get(at..)
            .and_then(|rest| rest.chars().next())
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        self.err(at, error::unexpected_char(c))
    }
}

#[cfg(test)]
mod tests {
    use super::TokenKind::*;
    use super::*;

    /// All tokens of `src` (without the final `Eof`), or the first error.
    fn lex(src: &str) -> Result<Vec<TokenKind<'_>>, ParseError> {
        let mut lexer = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let tok = lexer.next_token()?;
            if tok.kind == Eof {
                return Ok(out);
            }
            out.push(tok.kind);
        }
    }

    fn lex_err(src: &str) -> (usize, String) {
        match lex(src) {
            Ok(toks) => panic!("{src:?} lexed as {toks:?}, expected an error"),
            Err(e) => (e.column, e.message),
        }
    }

    #[test]
    fn symbols() {
        assert_eq!(
            lex("( ) { } , == != ! && ||").unwrap(),
            vec![LParen, RParen, LBrace, RBrace, Comma, Eq, Ne, Not, And, Or]
        );
        assert_eq!(lex("a==\"b\"").unwrap(), vec![Label("a"), Eq, Str("b")]);
    }

    #[test]
    fn only_space_and_tab_are_whitespace() {
        assert_eq!(lex(" \t a \t").unwrap(), vec![Label("a")]);
        assert_eq!(
            lex_err("a\n== \"b\""),
            (2, "unexpected character '\\n'".into())
        );
        assert_eq!(lex_err("\ra").1, "unexpected character '\\r'");
        assert_eq!(lex_err("a ==\u{a0}\"b\"").0, 5);
    }

    #[test]
    fn strings_have_no_escapes() {
        assert_eq!(lex(r#"'a"b'"#).unwrap(), vec![Str("a\"b")]);
        assert_eq!(lex(r#""a'b""#).unwrap(), vec![Str("a'b")]);
        assert_eq!(lex(r#""a\"b""#).unwrap_err().column, 6);
        assert_eq!(lex(r#""""#).unwrap(), vec![Str("")]);
        assert_eq!(lex("'é ü'").unwrap(), vec![Str("é ü")]);
    }

    #[test]
    fn unterminated_string_points_at_the_quote() {
        assert_eq!(
            lex_err("label == \"value"),
            (10, "unterminated string".into())
        );
        assert_eq!(lex_err("a == 'v\""), (6, "unterminated string".into()));
    }

    #[test]
    fn single_operator_characters() {
        assert_eq!(lex_err("a = 'b'"), (3, "expected ==".into()));
        assert_eq!(lex_err("a &"), (3, "expected &&".into()));
        assert_eq!(lex_err("a | b"), (3, "expected ||".into()));
        assert_eq!(lex_err("="), (1, "expected ==".into()));
    }

    #[test]
    fn label_characters_and_length() {
        assert_eq!(
            lex("calico/k8s_NS-.1/role").unwrap(),
            vec![Label("calico/k8s_NS-.1/role")]
        );
        assert_eq!(lex("-.9/").unwrap(), vec![Label("-.9/")]);
        let max = "a".repeat(512);
        assert_eq!(lex(&max).unwrap(), vec![Label(max.as_str())]);
        let over = "a".repeat(513);
        assert_eq!(lex_err(&over), (1, "label too long".into()));
        assert_eq!(
            lex_err(&format!("has({over})")),
            (5, "label too long".into())
        );
    }

    #[test]
    fn keywords_only_after_a_label() {
        assert_eq!(
            lex("contains contains 'contains'").unwrap(),
            vec![Label("contains"), Contains, Str("contains")]
        );
        assert_eq!(
            lex("in in {}").unwrap(),
            vec![Label("in"), In, LBrace, RBrace]
        );
        assert_eq!(
            lex("a == 'b' && in in {}").unwrap(),
            vec![
                Label("a"),
                Eq,
                Str("b"),
                And,
                Label("in"),
                In,
                LBrace,
                RBrace
            ]
        );
    }

    #[test]
    fn multi_word_keywords_allow_any_blanks_including_none() {
        for src in [
            "a startswith 'x'",
            "a starts with 'x'",
            "a starts \t with'x'",
        ] {
            assert_eq!(lex(src).unwrap(), vec![Label("a"), StartsWith, Str("x")]);
        }
        for src in ["a endswith 'x'", "a ends  with 'x'"] {
            assert_eq!(lex(src).unwrap(), vec![Label("a"), EndsWith, Str("x")]);
        }
        for src in ["a notin{}", "a not in {}", "a not\tin{}"] {
            assert_eq!(lex(src).unwrap(), vec![Label("a"), NotIn, LBrace, RBrace]);
        }
        assert_eq!(
            lex("a contains\"x\"").unwrap(),
            vec![Label("a"), Contains, Str("x")]
        );
    }

    #[test]
    fn keywords_need_a_boundary_and_exact_case() {
        for (src, col) in [
            ("label inf \"value\"", 7),
            ("label ends withs \"value\"", 7),
            ("label starts foo \"value\"", 7),
            ("label containsx \"v\"", 7),
            ("label Contains \"v\"", 7),
            ("label squiggles \"value\"", 7),
            ("a not", 3),
            ("a b", 3),
            ("a has(b)", 3),
        ] {
            assert_eq!(
                lex_err(src),
                (col, error::EXPECTED_OPERATOR.into()),
                "{src}"
            );
        }
    }

    #[test]
    fn functions() {
        assert_eq!(lex("has(a)").unwrap(), vec![Has("a")]);
        assert_eq!(lex("has( a\t)").unwrap(), vec![Has("a")]);
        assert_eq!(lex("all( )").unwrap(), vec![All]);
        assert_eq!(lex("global()").unwrap(), vec![Global]);
        // A space before '(' makes it a label followed by a parenthesis.
        // (the parser then rejects it).
        assert_eq!(
            lex("has (a)").unwrap(),
            vec![Label("has"), LParen, Label("a"), RParen]
        );
        assert_eq!(lex("all ()").unwrap(), vec![Label("all"), LParen, RParen]);
        assert_eq!(lex("hasx").unwrap(), vec![Label("hasx")]);
        assert_eq!(lex("all").unwrap(), vec![Label("all")]);
    }

    #[test]
    fn function_errors() {
        assert_eq!(lex_err("has()"), (5, "expected a label".into()));
        assert_eq!(lex_err("has(foo"), (8, "expected ')'".into()));
        assert_eq!(lex_err("has( foo "), (10, "expected ')'".into()));
        assert_eq!(lex_err("has(a b)"), (7, "expected ')'".into()));
        assert_eq!(lex_err("all("), (5, "expected ')'".into()));
        assert_eq!(lex_err("global( x)"), (9, "expected ')'".into()));
    }

    #[test]
    fn non_ascii_outside_strings_is_an_error_with_a_character_column() {
        assert_eq!(lex_err("ü"), (1, "unexpected character 'ü'".into()));
        assert_eq!(lex_err("'é' %"), (5, "unexpected character '%'".into()));
        assert_eq!(lex_err("aé").0, 2);
    }

    #[test]
    fn eof_repeats() {
        let mut lexer = Lexer::new("a");
        assert_eq!(lexer.next_token().unwrap().kind, Label("a"));
        assert_eq!(lexer.next_token().unwrap(), Token { kind: Eof, pos: 1 });
        assert_eq!(lexer.next_token().unwrap().kind, Eof);
    }
}

//! Recursive-descent parser for the grammar
//!
//! ```text
//! selector  := <empty or blank> | or_expr EOF
//! or_expr   := and_expr ( "||" and_expr )*
//! and_expr  := operation ( "&&" operation )*
//! operation := "!"* ( has(label) | all() | global()
//!                   | label ( "==" | "!=" | "contains" | "starts with" | "ends with" ) string
//!                   | label ( "in" | "not in" ) "{" [ string ( "," string )* [ "," ] ] "}"
//!                   | "(" or_expr ")" )
//! ```
//!
//! Consecutive `!`s collapse by parity, a parenthesised single operation
//! becomes that operation, and an `and_expr`/`or_expr` with one operand is
//! that operand, exactly as in Calico.
//!
//! Recursion happens only at `(`, and two limits keep it bounded so that no
//! input can exhaust the stack: at most [`MAX_NESTING_DEPTH`] open
//! parentheses, and at most [`MAX_NESTING_DEPTH`] nested `&&`/`||` groups in
//! the resulting tree. The second limit guarantees that the canonical form of
//! anything that parses (which parenthesises every group) parses again.

use crate::MAX_NESTING_DEPTH;
use crate::ast::{CmpOp, Node, SetOp};
use crate::error::{self, ParseError};
use crate::tokenizer::{Lexer, Token, TokenKind};

/// Parses a whole selector. Empty or blank input is `all()`.
pub(crate) fn parse(src: &str) -> Result<Node, ParseError> {
    let mut parser = Parser::new(src)?;
    if parser.tok.kind == TokenKind::Eof {
        return Ok(Node::All);
    }
    let (node, _) = parser.or_expr(0)?;
    if parser.tok.kind != TokenKind::Eof {
        return Err(parser.err(error::TRAILING_CONTENT));
    }
    Ok(node)
}

/// A parsed subtree and the number of nested `&&`/`||` groups in it.
type Parsed = (Node, usize);

struct Parser<'a> {
    lexer: Lexer<'a>,
    /// The current (not yet consumed) token.
    tok: Token<'a>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Result<Parser<'a>, ParseError> {
        let mut lexer = Lexer::new(src);
        let tok = lexer.next_token()?;
        Ok(Parser { lexer, tok })
    }

    /// Consumes the current token.
    fn advance(&mut self) -> Result<(), ParseError> {
        self.tok = self.lexer.next_token()?;
        Ok(())
    }

    /// An error at the current token.
    fn err(&self, message: impl Into<String>) -> ParseError {
        self.err_at(self.tok.pos, message)
    }

    fn err_at(&self, pos: usize, message: impl Into<String>) -> ParseError {
        ParseError::at(self.lexer.src(), pos, message)
    }

    /// `or_expr` at parenthesis depth `depth`.
    fn or_expr(&mut self, depth: usize) -> Result<Parsed, ParseError> {
        self.group(depth, TokenKind::Or, Self::and_expr, Node::Or)
    }

    /// `and_expr` at parenthesis depth `depth`.
    fn and_expr(&mut self, depth: usize) -> Result<Parsed, ParseError> {
        self.group(depth, TokenKind::And, Self::operation, Node::And)
    }

    /// One or more `operand`s separated by `separator`; two or more become a
    /// group node made by `make`.
    fn group(
        &mut self,
        depth: usize,
        separator: TokenKind<'static>,
        mut operand: impl FnMut(&mut Self, usize) -> Result<Parsed, ParseError>,
        make: fn(Vec<Node>) -> Node,
    ) -> Result<Parsed, ParseError> {
        let (first, mut nested) = operand(self, depth)?;
        if self.tok.kind != separator {
            return Ok((first, nested));
        }
        let separator_pos = self.tok.pos;
        let mut operands = vec![first];
        while self.tok.kind == separator {
            self.advance()?;
            let (next, next_nested) = operand(self, depth)?;
            operands.push(next);
            nested = nested.max(next_nested);
        }
        let nested = nested + 1;
        if nested > MAX_NESTING_DEPTH {
            return Err(self.err_at(separator_pos, error::too_deep()));
        }
        Ok((make(operands), nested))
    }

    /// `operation`, including its leading `!`s.
    fn operation(&mut self, depth: usize) -> Result<Parsed, ParseError> {
        let mut negated = false;
        while self.tok.kind == TokenKind::Not {
            negated = !negated;
            self.advance()?;
        }
        let (node, nested) = match self.tok.kind {
            TokenKind::Has(label) => {
                self.advance()?;
                (Node::Has(label.into()), 0)
            }
            TokenKind::All => {
                self.advance()?;
                (Node::All, 0)
            }
            TokenKind::Global => {
                self.advance()?;
                (Node::Global, 0)
            }
            TokenKind::Label(label) => {
                self.advance()?;
                (self.comparison(label)?, 0)
            }
            TokenKind::LParen => {
                if depth >= MAX_NESTING_DEPTH {
                    return Err(self.err(error::too_deep()));
                }
                self.advance()?;
                let inner = self.or_expr(depth + 1)?;
                if self.tok.kind != TokenKind::RParen {
                    return Err(self.err(error::EXPECTED_RPAREN));
                }
                self.advance()?;
                inner
            }
            _ => return Err(self.err(error::EXPECTED_OPERAND)),
        };
        Ok((if negated { node.negate() } else { node }, nested))
    }

    /// The operator and right-hand side after `label`.
    fn comparison(&mut self, label: &str) -> Result<Node, ParseError> {
        let op = match self.tok.kind {
            TokenKind::Eq => CmpOp::Eq,
            TokenKind::Ne => CmpOp::Ne,
            TokenKind::Contains => CmpOp::Contains,
            TokenKind::StartsWith => CmpOp::StartsWith,
            TokenKind::EndsWith => CmpOp::EndsWith,
            TokenKind::In => return self.set(SetOp::In, label),
            TokenKind::NotIn => return self.set(SetOp::NotIn, label),
            _ => return Err(self.err(error::EXPECTED_OPERATOR)),
        };
        self.advance()?;
        let TokenKind::Str(value) = self.tok.kind else {
            return Err(self.err(error::EXPECTED_STRING));
        };
        self.advance()?;
        Ok(Node::Cmp(op, label.into(), value.into()))
    }

    /// `{ "a", "b", }` after `in` / `not in` (the current token).
    fn set(&mut self, op: SetOp, label: &str) -> Result<Node, ParseError> {
        self.advance()?;
        if self.tok.kind != TokenKind::LBrace {
            return Err(self.err(error::EXPECTED_SET));
        }
        self.advance()?;
        let mut values = Vec::new();
        loop {
            // After `{` or `,`: a member, or the end of the set.
            match self.tok.kind {
                TokenKind::RBrace => break,
                TokenKind::Str(value) => values.push(value.to_owned()),
                _ => return Err(self.err(error::EXPECTED_SET_MEMBER)),
            }
            self.advance()?;
            // After a member: more, or the end of the set.
            match self.tok.kind {
                TokenKind::RBrace => break,
                TokenKind::Comma => self.advance()?,
                _ => return Err(self.err(error::EXPECTED_SET_SEPARATOR)),
            }
        }
        self.advance()?;
        Ok(Node::set(op, label, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> (usize, String) {
        match parse(src) {
            Ok(node) => panic!("{src:?} parsed as {node:?}, expected an error"),
            Err(e) => (e.column, e.message),
        }
    }

    fn has(l: &str) -> Node {
        Node::Has(l.into())
    }

    fn eq(l: &str, v: &str) -> Node {
        Node::Cmp(CmpOp::Eq, l.into(), v.into())
    }

    #[test]
    fn empty_and_blank_are_all() {
        assert_eq!(parse("").unwrap(), Node::All);
        assert_eq!(parse(" \t ").unwrap(), Node::All);
    }

    #[test]
    fn precedence_or_and_not() {
        // `!` binds to one operation; `&&` binds tighter than `||`.
        let n = parse("!a == 'x' && b == 'y' || has(c)").unwrap();
        assert_eq!(
            n,
            Node::Or(vec![
                Node::And(vec![eq("a", "x").negate(), eq("b", "y")]),
                has("c"),
            ])
        );
    }

    #[test]
    fn groups_are_not_flattened() {
        let n = parse("a == 'x' && (b == 'y' && has(c))").unwrap();
        assert_eq!(
            n,
            Node::And(vec![eq("a", "x"), Node::And(vec![eq("b", "y"), has("c")])])
        );
        assert_eq!(
            parse("has(a) && has(b) && has(c)").unwrap(),
            Node::And(vec![has("a"), has("b"), has("c")])
        );
    }

    #[test]
    fn parenthesised_single_operation_is_that_operation() {
        assert_eq!(parse("((has(a)))").unwrap(), has("a"));
        assert_eq!(parse(" (all() )").unwrap(), Node::All);
    }

    #[test]
    fn negation_parity() {
        assert_eq!(parse("!!has(a)").unwrap(), has("a"));
        assert_eq!(parse("! !! has(a)").unwrap(), has("a").negate());
        // Negating a negated group also collapses (Calico would keep `!!`).
        assert_eq!(parse("!(!has(a))").unwrap(), has("a"));
        assert_eq!(parse("!(!(!has(a)))").unwrap(), has("a").negate());
    }

    #[test]
    fn sets() {
        let set = |op, vals: &[&str]| Node::set(op, "a", vals.iter().map(|s| s.to_string()));
        assert_eq!(parse("a in {}").unwrap(), set(SetOp::In, &[]));
        assert_eq!(parse("a in {'x',}").unwrap(), set(SetOp::In, &["x"]));
        assert_eq!(
            parse("a not in{'y' ,\"x\" , 'y'}").unwrap(),
            set(SetOp::NotIn, &["x", "y"])
        );
    }

    #[test]
    fn keywords_as_labels() {
        assert_eq!(
            parse("contains contains 'contains'").unwrap(),
            Node::Cmp(CmpOp::Contains, "contains".into(), "contains".into())
        );
        assert_eq!(
            parse("in in {'in'} && not notin {}").unwrap(),
            Node::And(vec![
                Node::set(SetOp::In, "in", ["in".to_string()]),
                Node::set(SetOp::NotIn, "not", []),
            ])
        );
    }

    #[test]
    fn error_messages_and_columns() {
        let cases: &[(&str, usize, &str)] = &[
            ("b == b", 6, error::EXPECTED_STRING),
            ("a contains {}", 12, error::EXPECTED_STRING),
            ("'b1' == b", 1, error::EXPECTED_OPERAND),
            ("b", 2, error::EXPECTED_OPERATOR),
            ("a b", 3, error::EXPECTED_OPERATOR),
            ("has (a)", 5, error::EXPECTED_OPERATOR),
            ("a )", 3, error::EXPECTED_OPERATOR),
            ("!", 2, error::EXPECTED_OPERAND),
            ("()", 2, error::EXPECTED_OPERAND),
            (")", 1, error::EXPECTED_OPERAND),
            ("has(foo) &&", 12, error::EXPECTED_OPERAND),
            ("a == 'b' || && has(c)", 13, error::EXPECTED_OPERAND),
            ("(a == 'foo'", 12, error::EXPECTED_RPAREN),
            ("(a == 'foo' has(b))", 13, error::EXPECTED_RPAREN),
            ("all ()", 5, error::EXPECTED_OPERATOR),
            ("foo in \"\"", 8, error::EXPECTED_SET),
            ("foo in {,}", 9, error::EXPECTED_SET_MEMBER),
            ("foo in {'a',,}", 13, error::EXPECTED_SET_MEMBER),
            ("foo in {'a' 'b'}", 13, error::EXPECTED_SET_SEPARATOR),
            ("foo in {\"\", ||", 13, error::EXPECTED_SET_MEMBER),
            ("foo in {a}", 9, error::EXPECTED_SET_MEMBER),
            ("a == 'b' )", 10, error::TRAILING_CONTENT),
            ("all() all()", 7, error::TRAILING_CONTENT),
            ("a == \"b\" && %", 13, "unexpected character '%'"),
            ("a == 'x' &", 10, error::EXPECTED_AND),
        ];
        for &(src, column, message) in cases {
            assert_eq!(err(src), (column, message.to_string()), "{src:?}");
        }
    }

    #[test]
    fn error_column_counts_characters() {
        assert_eq!(err("ü == 'ü' && é"), (1, "unexpected character 'ü'".into()));
        assert_eq!(err("a == 'ü' && b"), (14, error::EXPECTED_OPERATOR.into()));
    }

    #[test]
    fn parenthesis_depth_limit() {
        let ok = format!("{}has(a){}", "(".repeat(256), ")".repeat(256));
        assert_eq!(parse(&ok).unwrap(), has("a"));
        let too_deep = format!("{}has(a){}", "(".repeat(257), ")".repeat(257));
        assert_eq!(err(&too_deep), (257, error::too_deep()));
        let huge = "(".repeat(100_000);
        assert_eq!(err(&huge).1, error::too_deep());
        let nots = "!(".repeat(100_000);
        assert_eq!(err(&nots).1, error::too_deep());
    }

    /// `depth` nested alternating groups written with as few parentheses as
    /// the grammar allows: `has(a) || (has(a) && (has(a) || ...))`.
    fn nested_groups(depth: usize) -> String {
        let mut s = String::from("has(a)");
        for level in 0..depth {
            let op = if level % 2 == 0 { "&&" } else { "||" };
            s = format!("has(a) {op} ({s})");
        }
        s
    }

    #[test]
    fn group_depth_limit_keeps_canonical_form_parseable() {
        // 256 nested groups parse; their canonical form is 256 parentheses
        // deep, which is still within the limit (checked in lib.rs tests).
        assert!(parse(&nested_groups(256)).is_ok());
        // `a || b && c` with 256 parentheses makes 257 nested groups: rejected
        // here, since its canonical form would need 257 parentheses.
        let src = format!("has(b) || has(c) && ({})", nested_groups(255));
        assert_eq!(err(&src), (8, error::too_deep()));
    }
}

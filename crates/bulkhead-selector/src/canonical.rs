//! The canonical text of a selector and the unique ID derived from it.
//!
//! The canonical form is Calico's `Selector.String()`, byte for byte, because
//! the unique ID hashes it and that ID names IP sets in the dataplane:
//!
//! - `&&`/`||` groups are always parenthesised, operands joined by
//!   ` && ` / ` || `;
//! - `!` is a prefix without a space;
//! - string literals use `"` unless the value contains `"`, then `'`;
//! - set members are printed sorted and de-duplicated (the AST keeps them so);
//! - operators print as `==`, `!=`, `contains`, `starts with`, `ends with`,
//!   `in`, `not in`.
//!
//! The only deliberate difference from Calico: a negated group that is itself
//! negated (`!(!a)`) collapses to `a` when parsed, where Calico would print
//! `!!a` (which does not re-parse to the same tree). Every canonical string
//! this crate prints is a fixed point of parse-then-print.

use std::fmt::{self, Display, Formatter, Write};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha224};

use crate::ast::Node;

/// Writes `value` as a string literal, choosing the quote character.
fn write_literal(f: &mut Formatter<'_>, value: &str) -> fmt::Result {
    let quote = if value.contains('"') { '\'' } else { '"' };
    f.write_char(quote)?;
    f.write_str(value)?;
    f.write_char(quote)
}

/// Writes `(a <sep> b <sep> ...)`.
fn write_group(f: &mut Formatter<'_>, operands: &[Node], separator: &str) -> fmt::Result {
    f.write_char('(')?;
    for (i, operand) in operands.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        operand.fmt(f)?;
    }
    f.write_char(')')
}

impl Display for Node {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Node::All => f.write_str("all()"),
            Node::Global => f.write_str("global()"),
            Node::Has(label) => write!(f, "has({label})"),
            Node::Cmp(op, label, value) => {
                write!(f, "{label} {} ", op.symbol())?;
                write_literal(f, value)
            }
            Node::Set(op, label, values) => {
                write!(f, "{label} {} {{", op.symbol())?;
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_literal(f, value)?;
                }
                f.write_char('}')
            }
            Node::Not(inner) => {
                f.write_char('!')?;
                inner.fmt(f)
            }
            Node::And(operands) => write_group(f, operands, " && "),
            Node::Or(operands) => write_group(f, operands, " || "),
        }
    }
}

/// `"s:" + base64url_nopad(SHA-224("s:" + canonical))`, as Calico's
/// `hash.MakeUniqueID("s", canonical)`.
pub(crate) fn unique_id(canonical: &str) -> String {
    let mut hasher = Sha224::new();
    hasher.update(b"s:");
    hasher.update(canonical.as_bytes());
    let digest = hasher.finalize();
    let mut id = String::with_capacity(2 + 38);
    id.push_str("s:");
    URL_SAFE_NO_PAD.encode_string(digest, &mut id);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::{CmpOp, SetOp};

    fn s(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn leaves() {
        assert_eq!(Node::All.to_string(), "all()");
        assert_eq!(Node::Global.to_string(), "global()");
        assert_eq!(Node::Has("a/b".into()).to_string(), "has(a/b)");
        for (op, text) in [
            (CmpOp::Eq, "a == \"v\""),
            (CmpOp::Ne, "a != \"v\""),
            (CmpOp::Contains, "a contains \"v\""),
            (CmpOp::StartsWith, "a starts with \"v\""),
            (CmpOp::EndsWith, "a ends with \"v\""),
        ] {
            assert_eq!(Node::Cmp(op, "a".into(), "v".into()).to_string(), text);
        }
    }

    #[test]
    fn quote_choice() {
        let eq = |v: &str| Node::Cmp(CmpOp::Eq, "a".into(), v.into()).to_string();
        assert_eq!(eq("it's"), r#"a == "it's""#);
        assert_eq!(eq(r#"say "hi""#), r#"a == 'say "hi"'"#);
        assert_eq!(eq(""), r#"a == """#);
    }

    #[test]
    fn sets() {
        assert_eq!(Node::set(SetOp::In, "a", s(&[])).to_string(), "a in {}");
        assert_eq!(
            Node::set(SetOp::NotIn, "a", s(&["b", "\"", "a", "b"])).to_string(),
            r#"a not in {'"', "a", "b"}"#
        );
    }

    #[test]
    fn groups_and_negation() {
        let has = |l: &str| Node::Has(l.into());
        let and = Node::And(vec![has("a"), has("b").negate()]);
        assert_eq!(and.to_string(), "(has(a) && !has(b))");
        let or = Node::Or(vec![and, has("c")]);
        assert_eq!(or.to_string(), "((has(a) && !has(b)) || has(c))");
        assert_eq!(or.negate().to_string(), "!((has(a) && !has(b)) || has(c))");
        // A hand-built one-operand group still prints its parentheses.
        assert_eq!(Node::And(vec![has("a")]).to_string(), "(has(a))");
    }

    #[test]
    fn pinned_unique_ids() {
        assert_eq!(
            unique_id("all()"),
            "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"
        );
        assert_eq!(
            unique_id("!(has(b) || !has(a))"),
            "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q"
        );
        assert_eq!(
            unique_id(r#"!(a == "b" && !c != "d")"#),
            "s:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w"
        );
    }
}

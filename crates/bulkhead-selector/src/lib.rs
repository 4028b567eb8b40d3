//! The Calico selector language: parse, evaluate, print canonically, identify,
//! and summarise for indexing.
//!
//! A selector such as `role == "db" && !has(quarantine)` picks endpoints by
//! their labels. This crate is the one place in Bulkhead that understands the
//! language, and it follows Calico's `libcalico-go` implementation closely
//! enough that the same text is accepted or rejected, matches the same label
//! sets, prints the same canonical form and hashes to the same unique ID (the
//! ID names IP sets in the dataplane, so it must be reproducible bit for bit).
//! One deliberate exception: a negated group that is negated again, `!(!a)`,
//! is stored and printed as `a`, where Calico prints `!!a`, a string that
//! does not parse back to the same tree.
//!
//! What it provides:
//!
//! - [`Selector::parse`] with errors that carry a 1-based character column
//!   and say what was expected ([`ParseError`]);
//! - [`Selector::matches`], evaluation against anything implementing
//!   [`Labels`], without allocating (it sits on the policy hot path);
//! - [`Selector::canonical`] (also [`Display`](std::fmt::Display)) and
//!   [`Selector::unique_id`];
//! - [`Selector::label_restrictions`] and
//!   [`Selector::possible_to_satisfy`], a necessary condition on labels that
//!   an index can use to skip selectors that cannot match;
//! - builders ([`Selector::all`], [`Selector::has`], [`Selector::and`], ...)
//!   and [`Selector::with_label_prefix`] for the selectors Bulkhead writes
//!   itself (for example namespace selectors rewritten onto endpoint labels).
//!
//! ```
//! use std::collections::BTreeMap;
//! use bulkhead_selector::Selector;
//!
//! let sel = Selector::parse("role=='db' && !has(quarantine)")?;
//! assert_eq!(sel.canonical(), r#"(role == "db" && !has(quarantine))"#);
//! let labels = BTreeMap::from([("role".to_string(), "db".to_string())]);
//! assert!(sel.matches(&labels));
//! assert_eq!(
//!     Selector::parse("role == db").unwrap_err().to_string(),
//!     "col 9: expected a quoted string"
//! );
//! # Ok::<(), bulkhead_selector::ParseError>(())
//! ```
//!
//! What it does not do: it gives `global()` no meaning of its own (it
//! evaluates to true; callers rewrite it, as Calico does for namespace
//! selectors), it does not check label keys or values against Kubernetes
//! naming rules (the API validator does), it does not intern strings, and
//! the builders do not validate their arguments: a label or value that
//! selector text cannot express (say a label with a space) gives a selector
//! that evaluates correctly but whose canonical form does not parse.
//!
//! Key design decision: one small tree (the private `ast` module) is the single source of
//! truth, and its constructors keep it normalised (set members sorted and
//! de-duplicated, no double negation). Canonical printing is then a plain
//! walk, structural equality is canonical equality (so the derived
//! `Eq`/`Hash` are meaningful for deduplicating selectors), and the canonical
//! form of every parsed selector parses back to the identical tree. The
//! alternative, normalising only when printing, would make two selectors that
//! print the same compare unequal. The parser bounds nesting at
//! [`MAX_NESTING_DEPTH`] so that no input can overflow the stack.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

mod ast;
mod canonical;
mod error;
mod parser;
mod restrictions;
mod tokenizer;

pub use error::ParseError;
pub use restrictions::LabelRestriction;

use ast::Node;

/// The longest label name, in bytes, that selector text may contain.
pub const MAX_LABEL_LENGTH: usize = 512;

/// How deeply a parsed selector may nest: both open parentheses and nested
/// `&&`/`||` groups are limited to this many levels.
pub const MAX_NESTING_DEPTH: usize = 256;

/// Read access to a set of labels.
pub trait Labels {
    /// The value of `key`, if the label is present.
    fn get_label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for HashMap<String, String> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Shared label maps (an interned map is evaluated as the map it points to).
impl<L: Labels + ?Sized> Labels for std::sync::Arc<L> {
    fn get_label(&self, key: &str) -> Option<&str> {
        (**self).get_label(key)
    }
}

/// A parsed selector.
///
/// Two selectors are equal exactly when their canonical forms are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    root: Node,
}

impl Selector {
    fn from_node(root: Node) -> Selector {
        Selector { root }
    }

    /// Parses a selector. Empty or blank input is `all()`.
    pub fn parse(input: &str) -> Result<Selector, ParseError> {
        parser::parse(input).map(Selector::from_node)
    }
    /// `all()`.
    pub fn all() -> Selector {
        Selector::from_node(Node::All)
    }
    /// `global()`.
    pub fn global() -> Selector {
        Selector::from_node(Node::Global)
    }
    /// `has(label)`.
    pub fn has(label: &str) -> Selector {
        Selector::from_node(Node::Has(label.into()))
    }
    /// `label == "value"`.
    pub fn equals(label: &str, value: &str) -> Selector {
        Selector::from_node(Node::Cmp(ast::CmpOp::Eq, label.into(), value.into()))
    }
    /// `label in {values}`.
    pub fn in_set<I: IntoIterator<Item = String>>(label: &str, values: I) -> Selector {
        Selector::from_node(Node::set(ast::SetOp::In, label, values))
    }
    /// `(self && other)`. When `self` is already an `&&` group, `other` is
    /// appended to it, so `a.and(b).and(c)` is `(a && b && c)`.
    pub fn and(self, other: Selector) -> Selector {
        Selector::from_node(match self.root {
            Node::And(mut operands) => {
                operands.push(other.root);
                Node::And(operands)
            }
            root => Node::And(vec![root, other.root]),
        })
    }
    /// `(self || other)`. When `self` is already an `||` group, `other` is
    /// appended to it, so `a.or(b).or(c)` is `(a || b || c)`.
    pub fn or(self, other: Selector) -> Selector {
        Selector::from_node(match self.root {
            Node::Or(mut operands) => {
                operands.push(other.root);
                Node::Or(operands)
            }
            root => Node::Or(vec![root, other.root]),
        })
    }
    /// `!self`; negating a negation gives back the operand.
    pub fn negate(self) -> Selector {
        Selector::from_node(self.root.negate())
    }
    /// Rewrites every label name `k` to `prefix + k`.
    pub fn with_label_prefix(&self, prefix: &str) -> Selector {
        Selector::from_node(self.root.with_label_prefix(prefix))
    }
    /// True when the whole selector is `all()`.
    pub fn is_all(&self) -> bool {
        self.root == Node::All
    }
    /// True when the whole selector is `global()`.
    pub fn is_global(&self) -> bool {
        self.root == Node::Global
    }
    /// True when `global()` appears anywhere.
    pub fn contains_global(&self) -> bool {
        self.root.contains_global()
    }
    /// Evaluates the selector. Does not allocate.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.root.matches(labels)
    }
    /// Canonical string.
    pub fn canonical(&self) -> String {
        self.root.to_string()
    }
    /// `s:` + base64url-nopad(SHA-224("s:" + canonical)).
    pub fn unique_id(&self) -> String {
        canonical::unique_id(&self.canonical())
    }
    /// Label restrictions: for each label the selector constrains, what every
    /// matching label set must satisfy. See [`LabelRestriction`].
    pub fn label_restrictions(&self) -> BTreeMap<String, LabelRestriction> {
        restrictions::restrictions(&self.root)
    }
    /// False when the selector can never match. This is conservative: it
    /// finds contradictions between label restrictions (a label required both
    /// present and absent, or no allowed value); `true` means "maybe".
    pub fn possible_to_satisfy(&self) -> bool {
        restrictions::possible_to_satisfy(&self.root)
    }
}

impl Default for Selector {
    /// `all()`, like the empty selector.
    fn default() -> Selector {
        Selector::all()
    }
}

impl fmt::Display for Selector {
    /// Writes the canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.root, f)
    }
}

impl FromStr for Selector {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Selector, ParseError> {
        Selector::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn canonical_examples() {
        for (input, output) in [
            ("", "all()"),
            ("a=='b'&&c=='d'", r#"(a == "b" && c == "d")"#),
            ("(a == 'b')", r#"a == "b""#),
            ("!(a=='b'||c=='d')", r#"!(a == "b" || c == "d")"#),
            ("a in {'b','a','b'}", r#"a in {"a", "b"}"#),
            ("a notin {}", "a not in {}"),
            (
                "a == 'b' || c == 'd' && e == 'f'",
                r#"(a == "b" || (c == "d" && e == "f"))"#,
            ),
            ("!!!has( x )", "!has(x)"),
            ("global( )", "global()"),
        ] {
            assert_eq!(sel(input).canonical(), output, "{input}");
            assert_eq!(sel(input).to_string(), output, "{input}");
        }
    }

    #[test]
    fn unique_id_of_empty_selector_is_pinned() {
        assert_eq!(
            sel("").unique_id(),
            "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"
        );
        assert_eq!(Selector::all().unique_id(), sel("all()").unique_id());
    }

    #[test]
    fn builders() {
        assert!(Selector::all().is_all());
        assert_eq!(Selector::default(), Selector::all());
        assert_eq!(Selector::has("a").canonical(), "has(a)");
        assert_eq!(Selector::equals("a", "it's").canonical(), r#"a == "it's""#);
        assert_eq!(
            Selector::in_set("a", ["y".to_string(), "x".into(), "y".into()]).canonical(),
            r#"a in {"x", "y"}"#
        );
        let abc = Selector::has("a")
            .and(Selector::has("b"))
            .and(Selector::has("c"));
        assert_eq!(abc.canonical(), "(has(a) && has(b) && has(c))");
        assert_eq!(abc, sel("has(a) && has(b) && has(c)"));
        let nested = Selector::has("a").and(Selector::has("b").and(Selector::has("c")));
        assert_eq!(nested.canonical(), "(has(a) && (has(b) && has(c)))");
        let or = Selector::has("a")
            .or(Selector::has("b"))
            .or(Selector::has("c").and(Selector::has("d")));
        assert_eq!(or.canonical(), "(has(a) || has(b) || (has(c) && has(d)))");
        assert_eq!(Selector::has("a").negate().canonical(), "!has(a)");
        assert_eq!(Selector::has("a").negate().negate(), Selector::has("a"));
        assert_eq!(
            abc.clone().negate().canonical(),
            "!(has(a) && has(b) && has(c))"
        );
        assert_eq!(Selector::all().negate().canonical(), "!all()");
        assert_eq!(Selector::global().canonical(), "global()");
    }

    #[test]
    fn and_or_do_not_merge_across_kinds() {
        let s = Selector::has("a")
            .or(Selector::has("b"))
            .and(Selector::has("c"));
        assert_eq!(s.canonical(), "((has(a) || has(b)) && has(c))");
        let s = Selector::has("a").negate().and(Selector::has("b"));
        assert_eq!(s.canonical(), "(!has(a) && has(b))");
    }

    #[test]
    fn label_prefix() {
        let s = sel("k == 'v' && x == 'y'").with_label_prefix("visited/");
        assert_eq!(s.canonical(), r#"(visited/k == "v" && visited/x == "y")"#);
        let s = sel("!has(a) || b in {'1'} || c not in {} || d != 'x' || e contains 'y' || f starts with 'z' || g ends with 'w' || all() || global()")
            .with_label_prefix("p/");
        assert_eq!(
            s.canonical(),
            r#"(!has(p/a) || p/b in {"1"} || p/c not in {} || p/d != "x" || p/e contains "y" || p/f starts with "z" || p/g ends with "w" || all() || global())"#
        );
    }

    #[test]
    fn all_and_global_predicates() {
        assert!(sel("").is_all());
        assert!(sel(" all( ) ").is_all());
        assert!(sel("(all())").is_all());
        assert!(!sel("!all()").is_all());
        assert!(!sel("all() && all()").is_all());
        assert!(sel("global()").is_global());
        assert!(!sel("!global()").is_global());
        assert!(!sel("all()").is_global());
        assert!(!sel("has(global)").contains_global());
        assert!(sel("has(a) || !global()").contains_global());
        assert!(sel("global()").contains_global());
    }

    #[test]
    fn matches_through_any_labels_impl() {
        struct Fixed;
        impl Labels for Fixed {
            fn get_label(&self, key: &str) -> Option<&str> {
                (key == "role").then_some("db")
            }
        }
        let s = sel("role == 'db' && !has(x)");
        assert!(s.matches(&Fixed));
        assert!(s.matches(&labels(&[("role", "db")])));
        let dynamic: &dyn Labels = &Fixed;
        assert!(s.matches(dynamic));
        let btree: BTreeMap<String, String> = [("role".to_string(), "web".to_string())].into();
        assert!(!s.matches(&btree));
    }

    #[test]
    fn from_str_and_errors() {
        let s: Selector = "has(a)".parse().unwrap();
        assert_eq!(s, Selector::has("a"));
        let e = "a == b".parse::<Selector>().unwrap_err();
        assert_eq!(e.to_string(), "col 6: expected a quoted string");
        assert_eq!(e.column, 6);
    }

    #[test]
    fn deepest_accepted_selector_round_trips() {
        let mut text = String::from("has(a)");
        for level in 0..MAX_NESTING_DEPTH {
            let op = if level % 2 == 0 { "&&" } else { "||" };
            text = format!("has(a) {op} ({text})");
        }
        let s = sel(&text);
        let canonical = s.canonical();
        assert!(canonical.starts_with("(has(a) || (has(a) && (has(a) || "));
        assert_eq!(sel(&canonical), s);
    }

    #[test]
    fn possible_to_satisfy() {
        assert!(sel("a == 'x'").possible_to_satisfy());
        assert!(!sel("a == 'x' && a == 'y'").possible_to_satisfy());
        assert!(!sel("has(a) && !has(a)").possible_to_satisfy());
        assert!(!sel("a in {}").possible_to_satisfy());
        // Conservative: this never matches, but restrictions cannot tell.
        assert!(sel("!all()").possible_to_satisfy());
    }
}

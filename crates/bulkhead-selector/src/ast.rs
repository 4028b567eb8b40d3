//! The selector syntax tree and its evaluation against a label set.
//!
//! The tree mirrors Calico's node types, with the comparison operators folded
//! into one variant each for scalar (`==`, `!=`, `contains`, `starts with`,
//! `ends with`) and set (`in`, `not in`) right-hand sides. Two invariants are
//! kept by the constructors here and relied on elsewhere:
//!
//! - set members are sorted and de-duplicated, so membership is a binary
//!   search and structural equality is canonical equality;
//! - a `Not` never directly wraps another `Not` (double negation collapses),
//!   so the canonical form never prints `!!` and re-parses to the same tree.
//!
//! `And`/`Or` nodes are *not* flattened when nested: Calico keeps
//! `a && (b && c)` as two nodes, and the canonical form (hence the unique ID)
//! depends on it.
//!
//! Evaluation borrows label values through [`Labels`] and never allocates.

use crate::Labels;

/// An operator with a single string on its right-hand side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CmpOp {
    /// `==`: present and equal.
    Eq,
    /// `!=`: absent, or present and different.
    Ne,
    /// `contains`: present and holding the value as a substring.
    Contains,
    /// `starts with`: present and beginning with the value.
    StartsWith,
    /// `ends with`: present and ending with the value.
    EndsWith,
}

impl CmpOp {
    /// The operator as the canonical form writes it.
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Contains => "contains",
            CmpOp::StartsWith => "starts with",
            CmpOp::EndsWith => "ends with",
        }
    }

    /// Applies the operator to a label's value (`None` when absent).
    fn eval(self, actual: Option<&str>, expected: &str) -> bool {
        match (self, actual) {
            (CmpOp::Ne, None) => true,
            (_, None) => false,
            (CmpOp::Eq, Some(v)) => v == expected,
            (CmpOp::Ne, Some(v)) => v != expected,
            (CmpOp::Contains, Some(v)) => v.contains(expected),
            (CmpOp::StartsWith, Some(v)) => v.starts_with(expected),
            (CmpOp::EndsWith, Some(v)) => v.ends_with(expected),
        }
    }
}

/// An operator with a set of strings on its right-hand side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SetOp {
    /// `in`: present and one of the values.
    In,
    /// `not in`: absent, or present and none of the values.
    NotIn,
}

impl SetOp {
    /// The operator as the canonical form writes it.
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            SetOp::In => "in",
            SetOp::NotIn => "not in",
        }
    }
}

/// One node of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Node {
    /// `all()`: matches everything.
    All,
    /// `global()`: matches everything when evaluated; its meaning comes from
    /// rewriting by the caller (namespace selectors).
    Global,
    /// `has(label)`.
    Has(Box<str>),
    /// `label <op> "value"`.
    Cmp(CmpOp, Box<str>, Box<str>),
    /// `label <op> {values}`; values sorted and de-duplicated.
    Set(SetOp, Box<str>, Box<[Box<str>]>),
    /// `!operand`; never wraps another `Not`.
    Not(Box<Node>),
    /// `(a && b && ...)`, two or more operands (one if built by hand).
    And(Vec<Node>),
    /// `(a || b || ...)`, two or more operands (one if built by hand).
    Or(Vec<Node>),
}

impl Node {
    /// A set node, sorting and de-duplicating `values`.
    pub(crate) fn set(op: SetOp, label: &str, values: impl IntoIterator<Item = String>) -> Node {
        let mut values: Vec<Box<str>> = values.into_iter().map(String::into_boxed_str).collect();
        values.sort_unstable();
        values.dedup();
        Node::Set(op, label.into(), values.into_boxed_slice())
    }

    /// The negation of `self`, collapsing double negation.
    pub(crate) fn negate(self) -> Node {
        match self {
            Node::Not(inner) => *inner,
            other => Node::Not(Box::new(other)),
        }
    }

    /// Evaluates the node; allocation-free.
    pub(crate) fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Node::All | Node::Global => true,
            Node::Has(label) => labels.get_label(label).is_some(),
            Node::Cmp(op, label, value) => op.eval(labels.get_label(label), value),
            Node::Set(op, label, values) => {
                let member = labels
                    .get_label(label)
                    .is_some_and(|v| values.binary_search_by(|m| (**m).cmp(v)).is_ok());
                match op {
                    SetOp::In => member,
                    SetOp::NotIn => !member,
                }
            }
            Node::Not(inner) => !inner.matches(labels),
            Node::And(operands) => operands.iter().all(|n| n.matches(labels)),
            Node::Or(operands) => operands.iter().any(|n| n.matches(labels)),
        }
    }

    /// A copy with every label name `k` replaced by `prefix + k`.
    pub(crate) fn with_label_prefix(&self, prefix: &str) -> Node {
        let rename = |label: &str| -> Box<str> { format!("{prefix}{label}").into_boxed_str() };
        match self {
            Node::All => Node::All,
            Node::Global => Node::Global,
            Node::Has(label) => Node::Has(rename(label)),
            Node::Cmp(op, label, value) => Node::Cmp(*op, rename(label), value.clone()),
            Node::Set(op, label, values) => Node::Set(*op, rename(label), values.clone()),
            Node::Not(inner) => Node::Not(Box::new(inner.with_label_prefix(prefix))),
            Node::And(operands) => Node::And(
                operands
                    .iter()
                    .map(|n| n.with_label_prefix(prefix))
                    .collect(),
            ),
            Node::Or(operands) => Node::Or(
                operands
                    .iter()
                    .map(|n| n.with_label_prefix(prefix))
                    .collect(),
            ),
        }
    }

    /// True when a `global()` node appears anywhere in the tree.
    pub(crate) fn contains_global(&self) -> bool {
        match self {
            Node::Global => true,
            Node::Not(inner) => inner.contains_global(),
            Node::And(operands) | Node::Or(operands) => operands.iter().any(Node::contains_global),
            Node::All | Node::Has(_) | Node::Cmp(..) | Node::Set(..) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn cmp(op: CmpOp, l: &str, v: &str) -> Node {
        Node::Cmp(op, l.into(), v.into())
    }

    #[test]
    fn absent_label_semantics() {
        let empty = labels(&[]);
        assert!(!cmp(CmpOp::Eq, "a", "x").matches(&empty));
        assert!(cmp(CmpOp::Ne, "a", "x").matches(&empty));
        assert!(!cmp(CmpOp::Contains, "a", "").matches(&empty));
        assert!(!cmp(CmpOp::StartsWith, "a", "").matches(&empty));
        assert!(!cmp(CmpOp::EndsWith, "a", "").matches(&empty));
        assert!(!Node::set(SetOp::In, "a", []).matches(&empty));
        assert!(Node::set(SetOp::NotIn, "a", []).matches(&empty));
        assert!(!Node::Has("a".into()).matches(&empty));
        assert!(Node::All.matches(&empty));
        assert!(Node::Global.matches(&empty));
    }

    #[test]
    fn present_label_semantics_are_bytewise_and_case_sensitive() {
        let l = labels(&[("a", "Hello")]);
        assert!(cmp(CmpOp::Eq, "a", "Hello").matches(&l));
        assert!(!cmp(CmpOp::Eq, "a", "hello").matches(&l));
        assert!(cmp(CmpOp::Ne, "a", "hello").matches(&l));
        assert!(cmp(CmpOp::Contains, "a", "ell").matches(&l));
        assert!(cmp(CmpOp::Contains, "a", "").matches(&l));
        assert!(cmp(CmpOp::StartsWith, "a", "He").matches(&l));
        assert!(!cmp(CmpOp::StartsWith, "a", "he").matches(&l));
        assert!(cmp(CmpOp::EndsWith, "a", "llo").matches(&l));
        assert!(Node::set(SetOp::In, "a", ["x".into(), "Hello".into()]).matches(&l));
        assert!(!Node::set(SetOp::NotIn, "a", ["x".into(), "Hello".into()]).matches(&l));
        assert!(Node::set(SetOp::NotIn, "a", ["x".into()]).matches(&l));
    }

    #[test]
    fn sets_are_sorted_and_deduplicated() {
        let n = Node::set(
            SetOp::In,
            "a",
            ["z", "a", "z", "m"].iter().map(|s| s.to_string()),
        );
        let Node::Set(_, _, values) = n else {
            panic!("not a set")
        };
        let values: Vec<&str> = values.iter().map(|v| &**v).collect();
        assert_eq!(values, ["a", "m", "z"]);
    }

    #[test]
    fn negate_collapses_double_negation() {
        let has = Node::Has("a".into());
        assert_eq!(has.clone().negate().negate(), has);
        assert_eq!(has.clone().negate(), Node::Not(Box::new(has)));
    }

    #[test]
    fn and_or_short_circuit_semantics() {
        let l = labels(&[("a", "1")]);
        let t = Node::Has("a".into());
        let f = Node::Has("b".into());
        assert!(!Node::And(vec![t.clone(), f.clone()]).matches(&l));
        assert!(Node::Or(vec![f.clone(), t.clone()]).matches(&l));
        assert!(!Node::Or(vec![f.clone(), f]).matches(&l));
        assert!(Node::And(vec![t.clone(), t]).matches(&l));
    }

    #[test]
    fn prefix_rewrites_every_label() {
        let n = Node::And(vec![
            Node::Has("a".into()),
            Node::Not(Box::new(cmp(CmpOp::Ne, "b", "v"))),
            Node::Or(vec![Node::set(SetOp::NotIn, "c", []), Node::Global]),
        ]);
        let p = n.with_label_prefix("p/");
        let expected = Node::And(vec![
            Node::Has("p/a".into()),
            Node::Not(Box::new(cmp(CmpOp::Ne, "p/b", "v"))),
            Node::Or(vec![Node::set(SetOp::NotIn, "p/c", []), Node::Global]),
        ]);
        assert_eq!(p, expected);
    }

    #[test]
    fn contains_global_looks_everywhere() {
        assert!(Node::Global.contains_global());
        assert!(!Node::All.contains_global());
        assert!(Node::Not(Box::new(Node::Global)).contains_global());
        assert!(
            Node::And(vec![Node::All, Node::Or(vec![Node::All, Node::Global])]).contains_global()
        );
        assert!(!Node::And(vec![Node::All, Node::Has("global".into())]).contains_global());
    }
}

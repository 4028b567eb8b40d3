//! Label restrictions: what a selector requires of individual labels.
//!
//! An index of selectors uses these to find, for a given endpoint, the few
//! selectors that might match it without evaluating every one (Calico's
//! `LabelRestrictions`, used by Felix's label-restriction index). They are a
//! *necessary* condition, never a sufficient one: every label map a selector
//! matches satisfies its restrictions, but a map satisfying them may still not
//! match. So the rules only ever drop information when unsure:
//!
//! - `==` and `in` require presence and one of a set of values;
//! - `has`, `contains`, `starts with` and `ends with` require presence;
//! - `!has` requires absence;
//! - `!=`, `not in`, every other negation, `all()` and `global()` say nothing;
//! - `&&` combines: union of labels, flags ORed, value sets intersected;
//! - `||` keeps a label only if every branch restricts it: flags ANDed, value
//!   sets unioned (no value restriction if any branch has none).

use std::collections::{BTreeMap, BTreeSet};

use crate::ast::{CmpOp, Node, SetOp};

/// What a selector requires of one label (for indexing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelRestriction {
    /// The label must be present for the selector to match.
    pub must_be_present: bool,
    /// The label must be absent for the selector to match.
    pub must_be_absent: bool,
    /// When set, the label's value must be one of these.
    pub must_have_one_of_values: Option<BTreeSet<String>>,
}

impl LabelRestriction {
    /// True when no label value (nor absence) can satisfy the restriction.
    pub fn is_impossible(&self) -> bool {
        (self.must_be_present && self.must_be_absent)
            || self
                .must_have_one_of_values
                .as_ref()
                .is_some_and(BTreeSet::is_empty)
    }

    /// True when a label with this value (`None`: absent) satisfies the
    /// restriction.
    pub fn allows(&self, value: Option<&str>) -> bool {
        match value {
            None => !self.must_be_present,
            Some(v) => {
                !self.must_be_absent
                    && self
                        .must_have_one_of_values
                        .as_ref()
                        .is_none_or(|values| values.contains(v))
            }
        }
    }

    fn present() -> LabelRestriction {
        LabelRestriction {
            must_be_present: true,
            ..LabelRestriction::default()
        }
    }
}

/// Restrictions keyed by label name.
pub(crate) type Restrictions = BTreeMap<String, LabelRestriction>;

fn single(label: &str, restriction: LabelRestriction) -> Restrictions {
    BTreeMap::from([(label.to_owned(), restriction)])
}

/// The restrictions `node` places on labels.
pub(crate) fn restrictions(node: &Node) -> Restrictions {
    match node {
        Node::All | Node::Global | Node::Cmp(CmpOp::Ne, ..) | Node::Set(SetOp::NotIn, ..) => {
            Restrictions::new()
        }
        Node::Has(label)
        | Node::Cmp(CmpOp::Contains | CmpOp::StartsWith | CmpOp::EndsWith, label, _) => {
            single(label, LabelRestriction::present())
        }
        Node::Cmp(CmpOp::Eq, label, value) => single(
            label,
            LabelRestriction {
                must_have_one_of_values: Some(BTreeSet::from([value.to_string()])),
                ..LabelRestriction::present()
            },
        ),
        Node::Set(SetOp::In, label, values) => single(
            label,
            LabelRestriction {
                must_have_one_of_values: Some(values.iter().map(|v| v.to_string()).collect()),
                ..LabelRestriction::present()
            },
        ),
        Node::Not(inner) => match &**inner {
            Node::Has(label) => single(
                label,
                LabelRestriction {
                    must_be_absent: true,
                    ..LabelRestriction::default()
                },
            ),
            // `a == "b"` needs `a`, but `!(a == "b")` does not need its
            // absence: nothing can be said about the other negations.
            _ => Restrictions::new(),
        },
        Node::And(operands) => {
            let mut out = Restrictions::new();
            for operand in operands {
                for (label, r) in restrictions(operand) {
                    let base = out.entry(label).or_default();
                    base.must_be_present |= r.must_be_present;
                    base.must_be_absent |= r.must_be_absent;
                    base.must_have_one_of_values = match (
                        base.must_have_one_of_values.take(),
                        r.must_have_one_of_values,
                    ) {
                        (Some(mut a), Some(b)) => {
                            a.retain(|v| b.contains(v));
                            Some(a)
                        }
                        (a, b) => a.or(b),
                    };
                }
            }
            out
        }
        Node::Or(operands) => {
            let mut iter = operands.iter();
            let Some(first) = iter.next() else {
                return Restrictions::new();
            };
            let mut out = restrictions(first);
            for operand in iter {
                if out.is_empty() {
                    break;
                }
                let mut other = restrictions(operand);
                out.retain(|label, r| {
                    let o = other.remove(label).unwrap_or_default();
                    r.must_be_present &= o.must_be_present;
                    r.must_be_absent &= o.must_be_absent;
                    r.must_have_one_of_values =
                        match (r.must_have_one_of_values.take(), o.must_have_one_of_values) {
                            (Some(mut a), Some(b)) if r.must_be_present => {
                                a.extend(b);
                                Some(a)
                            }
                            // A branch that allows any value (or absence) lifts
                            // the value restriction.
                            _ => None,
                        };
                    r.must_be_present || r.must_be_absent
                });
            }
            out
        }
    }
}

/// False when some label's restriction can never be met.
pub(crate) fn possible_to_satisfy(node: &Node) -> bool {
    !restrictions(node)
        .values()
        .any(LabelRestriction::is_impossible)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    /// A compact spelling of a restriction: `+` present, `-` absent, `+-`
    /// both, then optional `{a,b}` values (`{}` for the empty set).
    fn r(spec: &str) -> LabelRestriction {
        let (flags, values) = match spec.find('{') {
            Some(i) => (&spec[..i], Some(&spec[i..])),
            None => (spec, None),
        };
        LabelRestriction {
            must_be_present: flags.contains('+'),
            must_be_absent: flags.contains('-'),
            must_have_one_of_values: values.map(|v| {
                v.trim_matches(|c| c == '{' || c == '}')
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
        }
    }

    fn check(selector: &str, expected: &[(&str, &str)], possible: bool) {
        let node = parse(selector).unwrap();
        let want: Restrictions = expected
            .iter()
            .map(|(label, spec)| (label.to_string(), r(spec)))
            .collect();
        assert_eq!(restrictions(&node), want, "{selector}");
        assert_eq!(possible_to_satisfy(&node), possible, "{selector}");
    }

    #[test]
    fn leaves() {
        check("", &[], true);
        check("all()", &[], true);
        check("global()", &[], true);
        check("has(a)", &[("a", "+")], true);
        check("a == 'x'", &[("a", "+{x}")], true);
        check("a in {'x', 'y'}", &[("a", "+{x,y}")], true);
        check("a in {}", &[("a", "+{}")], false);
        check("a contains 'x'", &[("a", "+")], true);
        check("a starts with 'x'", &[("a", "+")], true);
        check("a ends with 'x'", &[("a", "+")], true);
        check("a != 'x'", &[], true);
        check("a not in {'x'}", &[], true);
        check("a not in {}", &[], true);
    }

    #[test]
    fn negations() {
        check("!has(a)", &[("a", "-")], true);
        check("!!has(a)", &[("a", "+")], true);
        check("!a == 'x'", &[], true);
        check("!a in {'x'}", &[], true);
        check("!a != 'x'", &[], true);
        check("!(has(a) && has(b))", &[], true);
        check("!(has(a) || has(b))", &[], true);
        check("!all()", &[], true);
    }

    #[test]
    fn and() {
        check("has(a) && has(b)", &[("a", "+"), ("b", "+")], true);
        check("has(a) && a == 'x'", &[("a", "+{x}")], true);
        check("a in {'x','y'} && a in {'y','z'}", &[("a", "+{y}")], true);
        check("a == 'x' && a == 'y'", &[("a", "+{}")], false);
        check("has(a) && !has(a)", &[("a", "+-")], false);
        check("a == 'x' && !has(a)", &[("a", "+-{x}")], false);
        check("!has(a) && a != 'x'", &[("a", "-")], true);
        check(
            "has(a) && (has(b) && b == 'v')",
            &[("a", "+"), ("b", "+{v}")],
            true,
        );
    }

    #[test]
    fn or() {
        check("has(a) || has(b)", &[], true);
        check("has(a) || a == 'x'", &[("a", "+")], true);
        check("a == 'x' || a in {'y', 'z'}", &[("a", "+{x,y,z}")], true);
        check("a == 'x' || !has(a)", &[], true);
        check("!has(a) || !has(a)", &[("a", "-")], true);
        check("a == 'x' || a != 'x'", &[], true);
        check(
            "(a == 'x' && has(b)) || (a == 'y' && b == 'z')",
            &[("a", "+{x,y}"), ("b", "+")],
            true,
        );
        check("has(a) || has(a) || has(b)", &[], true);
        // An impossible branch does not make the disjunction impossible.
        check("a in {} || has(b)", &[], true);
        check("a in {} || a == 'x'", &[("a", "+{x}")], true);
        check("(has(a) && !has(a)) || !has(a)", &[("a", "-")], true);
    }

    #[test]
    fn mixed() {
        check(
            "(has(a) || a == 'x') && (a in {'x','y'} || a == 'z')",
            &[("a", "+{x,y,z}")],
            true,
        );
        check("(a == 'x' || a == 'y') && a == 'z'", &[("a", "+{}")], false);
        check(
            "(a == 'x' && a == 'y') || (b == 'x' && b == 'y')",
            &[],
            true,
        );
    }

    #[test]
    fn allows() {
        let present_x = r("+{x}");
        assert!(present_x.allows(Some("x")));
        assert!(!present_x.allows(Some("y")));
        assert!(!present_x.allows(None));
        let absent = r("-");
        assert!(absent.allows(None));
        assert!(!absent.allows(Some("x")));
        assert!(LabelRestriction::default().allows(None));
        assert!(LabelRestriction::default().allows(Some("x")));
        assert!(r("+-").is_impossible());
        assert!(r("+{}").is_impossible());
        assert!(!r("+{x}").is_impossible());
    }
}

//! The Calico selector language (STUB: being implemented; signatures are the contract).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A parse error with the 1-based column where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("col {column}: {message}")]
pub struct ParseError {
    /// 1-based column (in characters) of the offending input.
    pub column: usize,
    /// What was expected or found.
    pub message: String,
}

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

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector(());

impl Selector {
    /// Parses a selector.
    pub fn parse(_input: &str) -> Result<Selector, ParseError> {
        unimplemented!()
    }
    /// `all()`.
    pub fn all() -> Selector {
        unimplemented!()
    }
    /// `has(label)`.
    pub fn has(_label: &str) -> Selector {
        unimplemented!()
    }
    /// `label == "value"`.
    pub fn equals(_label: &str, _value: &str) -> Selector {
        unimplemented!()
    }
    /// `label in {values}`.
    pub fn in_set<I: IntoIterator<Item = String>>(_label: &str, _values: I) -> Selector {
        unimplemented!()
    }
    /// `(self && other)`.
    pub fn and(self, _other: Selector) -> Selector {
        unimplemented!()
    }
    /// `(self || other)`.
    pub fn or(self, _other: Selector) -> Selector {
        unimplemented!()
    }
    /// `!self`.
    pub fn negate(self) -> Selector {
        unimplemented!()
    }
    /// Rewrites every label name `k` to `prefix + k`.
    pub fn with_label_prefix(&self, _prefix: &str) -> Selector {
        unimplemented!()
    }
    /// True when the whole selector is `all()`.
    pub fn is_all(&self) -> bool {
        unimplemented!()
    }
    /// True when the whole selector is `global()`.
    pub fn is_global(&self) -> bool {
        unimplemented!()
    }
    /// True when `global()` appears anywhere.
    pub fn contains_global(&self) -> bool {
        unimplemented!()
    }
    /// Evaluates the selector.
    pub fn matches<L: Labels + ?Sized>(&self, _labels: &L) -> bool {
        unimplemented!()
    }
    /// Canonical string.
    pub fn canonical(&self) -> String {
        unimplemented!()
    }
    /// `s:` + base64url-nopad(SHA-224("s:" + canonical)).
    pub fn unique_id(&self) -> String {
        unimplemented!()
    }
    /// Label restrictions.
    pub fn label_restrictions(&self) -> BTreeMap<String, LabelRestriction> {
        unimplemented!()
    }
    /// False when the selector can never match.
    pub fn possible_to_satisfy(&self) -> bool {
        unimplemented!()
    }
}

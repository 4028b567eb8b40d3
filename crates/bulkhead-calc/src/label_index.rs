//! Items (endpoints, network sets) indexed by their labels: the other direction of
//! [`SelectorIndex`](crate::selector_index::SelectorIndex).
//!
//! When an IP set becomes active, its selector must be evaluated against the items that
//! could match it. Like Felix's `LabelNameValueIndex`, this picks the cheapest strategy
//! from the selector's label restrictions: the items with `label = value` for the pinned
//! values, or the items that have a required label, or, for a selector with no usable
//! restriction, every item. Candidates are a superset; the caller evaluates each.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use bulkhead_api::LabelMap;
use bulkhead_selector::Selector;

/// Ids of type `K` by label name and value.
#[derive(Debug, Clone)]
pub(crate) struct LabelIndex<K> {
    by_label: HashMap<String, Label<K>>,
    all: HashSet<K>,
}

#[derive(Debug, Clone)]
struct Label<K> {
    values: HashMap<String, HashSet<K>>,
    count: usize,
}

impl<K> Default for LabelIndex<K> {
    fn default() -> Self {
        LabelIndex {
            by_label: HashMap::new(),
            all: HashSet::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> LabelIndex<K> {
    /// Indexes `id` under `labels`.
    pub(crate) fn insert(&mut self, id: K, labels: &LabelMap) {
        self.all.insert(id);
        for (k, v) in labels {
            let label = self.by_label.entry(k.clone()).or_insert_with(|| Label {
                values: HashMap::new(),
                count: 0,
            });
            if label.values.entry(v.clone()).or_default().insert(id) {
                label.count += 1;
            }
        }
    }

    /// Forgets `id`, which was indexed under `labels`.
    pub(crate) fn remove(&mut self, id: K, labels: &LabelMap) {
        self.all.remove(&id);
        for (k, v) in labels {
            let Some(label) = self.by_label.get_mut(k) else {
                continue;
            };
            if let Some(ids) = label.values.get_mut(v) {
                if ids.remove(&id) {
                    label.count -= 1;
                }
                if ids.is_empty() {
                    label.values.remove(v);
                }
            }
            if label.values.is_empty() {
                self.by_label.remove(k);
            }
        }
    }

    /// The ids that could match `selector` (none if it can never match).
    pub(crate) fn candidates(&self, selector: &Selector) -> Vec<K> {
        if !selector.possible_to_satisfy() {
            return Vec::new();
        }
        enum Plan<'a> {
            Values(&'a str, Vec<&'a str>),
            Present(&'a str),
            All,
        }
        let restrictions = selector.label_restrictions();
        let mut best = (self.all.len(), Plan::All);
        for (name, r) in &restrictions {
            let label = self.by_label.get(name);
            if let Some(values) = &r.must_have_one_of_values {
                let cost = values
                    .iter()
                    .map(|v| label.and_then(|l| l.values.get(v)).map_or(0, HashSet::len))
                    .sum();
                if cost < best.0 || matches!(best.1, Plan::All) {
                    best = (
                        cost,
                        Plan::Values(name, values.iter().map(String::as_str).collect()),
                    );
                }
            } else if r.must_be_present {
                let cost = label.map_or(0, |l| l.count);
                if cost < best.0 || matches!(best.1, Plan::All) {
                    best = (cost, Plan::Present(name));
                }
            }
        }
        match best.1 {
            Plan::All => self.all.iter().copied().collect(),
            Plan::Values(name, values) => {
                let Some(label) = self.by_label.get(name) else {
                    return Vec::new();
                };
                values
                    .iter()
                    .filter_map(|v| label.values.get(*v))
                    .flatten()
                    .copied()
                    .collect()
            }
            Plan::Present(name) => self
                .by_label
                .get(name)
                .map(|l| l.values.values().flatten().copied().collect())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn candidates_follow_the_most_selective_restriction() {
        let mut idx = LabelIndex::default();
        let items = [
            labels(&[("app", "a"), ("env", "prod")]),
            labels(&[("app", "b"), ("env", "prod")]),
            labels(&[("app", "a")]),
            labels(&[("other", "x")]),
        ];
        for (i, l) in items.iter().enumerate() {
            idx.insert(i, l);
        }
        fn cands(idx: &LabelIndex<usize>, s: &str) -> Vec<usize> {
            let mut c = idx.candidates(&Selector::parse(s).expect("valid"));
            c.sort();
            c
        }
        assert_eq!(cands(&idx, "app == 'a'"), vec![0, 2]);
        assert_eq!(cands(&idx, "app == 'a' && env == 'prod'"), vec![0, 2]);
        assert_eq!(cands(&idx, "has(env)"), vec![0, 1]);
        assert_eq!(cands(&idx, "!has(app)"), vec![0, 1, 2, 3]);
        assert_eq!(cands(&idx, "app == 'zz'"), Vec::<usize>::new());
        assert_eq!(cands(&idx, "has(a) && !has(a)"), Vec::<usize>::new());
        idx.remove(0, &items[0]);
        assert_eq!(cands(&idx, "has(env)"), vec![1]);
        idx.remove(1, &items[1]);
        assert!(!idx.by_label.contains_key("env"));
    }
}

//! Selectors indexed by their label restrictions, with removal.
//!
//! The filing rule of the engine's `SelectorIndex` (reference §1.6, Felix's
//! `LabelRestrictionIndex`): a selector goes under `label = value` for each allowed
//! value when it pins a label's value (the label with the fewest values), else under
//! "label present", else into the unindexed bucket that every lookup scans. One
//! refinement: between equally selective labels, an endpoint's own label is preferred to
//! the ones a whole namespace shares (`projectcalico.org/namespace`, `pcns.*`,
//! `pcsa.*`), which namespaced selectors always carry. Selectors that
//! can never match are not filed at all. Candidates are a *superset* of the matches: the
//! caller still evaluates each one.
//!
//! The engine's index is built once per snapshot; this one also forgets selectors, because
//! policies and IP sets come and go. Each id remembers where it was filed, so removal
//! touches one bucket.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use bulkhead_api::LabelMap;
use bulkhead_selector::Selector;

/// Where one selector was filed.
#[derive(Debug, Clone)]
enum Filing {
    Values(String, Vec<String>),
    Presence(String),
    Unindexed,
    Never,
}

/// Selector ids of type `K`, indexed by label restrictions.
#[derive(Debug, Clone)]
pub(crate) struct SelectorIndex<K> {
    by_value: HashMap<String, HashMap<String, HashSet<K>>>,
    by_presence: HashMap<String, HashSet<K>>,
    unindexed: HashSet<K>,
    filed: HashMap<K, Filing>,
}

impl<K> Default for SelectorIndex<K> {
    fn default() -> Self {
        SelectorIndex {
            by_value: HashMap::new(),
            by_presence: HashMap::new(),
            unindexed: HashSet::new(),
            filed: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> SelectorIndex<K> {
    /// Files `id` under `selector`'s most selective restriction, replacing any earlier
    /// filing of `id`.
    pub(crate) fn insert(&mut self, id: K, selector: &Selector) {
        self.remove(id);
        let filing = filing(selector);
        match &filing {
            Filing::Values(label, values) => {
                let bucket = self.by_value.entry(label.clone()).or_default();
                for v in values {
                    bucket.entry(v.clone()).or_default().insert(id);
                }
            }
            Filing::Presence(label) => {
                self.by_presence
                    .entry(label.clone())
                    .or_default()
                    .insert(id);
            }
            Filing::Unindexed => {
                self.unindexed.insert(id);
            }
            Filing::Never => {}
        }
        self.filed.insert(id, filing);
    }

    /// Forgets `id` (no-op if it is not filed).
    pub(crate) fn remove(&mut self, id: K) {
        let Some(filing) = self.filed.remove(&id) else {
            return;
        };
        match filing {
            Filing::Values(label, values) => {
                if let Some(bucket) = self.by_value.get_mut(&label) {
                    for v in &values {
                        if let Some(ids) = bucket.get_mut(v) {
                            ids.remove(&id);
                            if ids.is_empty() {
                                bucket.remove(v);
                            }
                        }
                    }
                    if bucket.is_empty() {
                        self.by_value.remove(&label);
                    }
                }
            }
            Filing::Presence(label) => {
                if let Some(ids) = self.by_presence.get_mut(&label) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.by_presence.remove(&label);
                    }
                }
            }
            Filing::Unindexed => {
                self.unindexed.remove(&id);
            }
            Filing::Never => {}
        }
    }

    /// Calls `f` once with every filed id whose selector could match `labels`.
    pub(crate) fn for_each_candidate(&self, labels: &LabelMap, mut f: impl FnMut(K)) {
        for (k, v) in labels {
            if let Some(ids) = self.by_value.get(k).and_then(|values| values.get(v)) {
                ids.iter().copied().for_each(&mut f);
            }
            if let Some(ids) = self.by_presence.get(k) {
                ids.iter().copied().for_each(&mut f);
            }
        }
        self.unindexed.iter().copied().for_each(f);
    }

    /// Number of filed ids (impossible selectors included).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.filed.len()
    }
}

/// Labels that every endpoint of a namespace or service account shares (inherited and
/// special ones): a poor place to file a selector when it has another choice, because
/// every endpoint of a busy namespace would then be offered it.
fn shared(label: &str) -> bool {
    label.starts_with("pcns.")
        || label.starts_with("pcsa.")
        || label.starts_with("projectcalico.org/")
}

fn filing(selector: &Selector) -> Filing {
    if !selector.possible_to_satisfy() {
        return Filing::Never;
    }
    let restrictions = selector.label_restrictions();
    // The fewest allowed values first; among equals, an endpoint's own label first.
    let by_value = restrictions
        .iter()
        .filter_map(|(label, r)| r.must_have_one_of_values.as_ref().map(|v| (label, v)))
        .min_by_key(|(label, values)| (values.len(), shared(label)));
    if let Some((label, values)) = by_value {
        return Filing::Values(label.clone(), values.iter().cloned().collect());
    }
    match restrictions
        .iter()
        .filter(|(_, r)| r.must_be_present)
        .min_by_key(|(label, _)| shared(label))
    {
        Some((label, _)) => Filing::Presence(label.clone()),
        None => Filing::Unindexed,
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

    fn candidates(idx: &SelectorIndex<usize>, l: &LabelMap) -> Vec<usize> {
        let mut got = Vec::new();
        idx.for_each_candidate(l, |i| got.push(i));
        got.sort();
        got
    }

    #[test]
    fn own_labels_are_preferred_to_namespace_wide_ones() {
        let mut idx = SelectorIndex::default();
        let sel = "projectcalico.org/namespace == 'shop' && tier == 'db'";
        idx.insert(0, &Selector::parse(sel).expect("valid"));
        let web = labels(&[("projectcalico.org/namespace", "shop"), ("tier", "web")]);
        let db = labels(&[("projectcalico.org/namespace", "shop"), ("tier", "db")]);
        assert!(candidates(&idx, &web).is_empty());
        assert_eq!(candidates(&idx, &db), vec![0]);
    }

    #[test]
    fn candidates_come_from_matching_buckets_and_removal_forgets() {
        let sels = [
            "app == 'a'",
            "app in {'a', 'b'} && has(x)",
            "has(x)",
            "!has(y)",
            "app == 'a' && app == 'b'",
        ];
        let mut idx = SelectorIndex::default();
        for (i, s) in sels.iter().enumerate() {
            idx.insert(i, &Selector::parse(s).expect("valid selector"));
        }
        let ab = labels(&[("app", "b"), ("x", "")]);
        assert_eq!(candidates(&idx, &ab), vec![1, 2, 3]);
        assert_eq!(candidates(&idx, &labels(&[("app", "a")])), vec![0, 1, 3]);
        idx.remove(1);
        idx.remove(3);
        assert_eq!(candidates(&idx, &ab), vec![2]);
        // Re-filing an id moves it.
        idx.insert(2, &Selector::parse("app == 'b'").expect("valid"));
        assert_eq!(candidates(&idx, &labels(&[("x", "")])), Vec::<usize>::new());
        assert_eq!(candidates(&idx, &ab), vec![2]);
        for i in 0..5 {
            idx.remove(i);
        }
        assert_eq!(idx.len(), 0);
        assert!(idx.by_value.is_empty() && idx.by_presence.is_empty());
    }
}

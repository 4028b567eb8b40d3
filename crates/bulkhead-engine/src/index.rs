//! An index from endpoint labels to the policies whose selectors could match them.
//!
//! Each selector is filed under one label it requires (reference §1.6, label
//! restrictions): under `label = value` for each allowed value when the selector pins the
//! value, else under "label present", else in the small unindexed list. Candidates for an
//! endpoint are the buckets of its own labels plus the unindexed list; only those are
//! evaluated, so the cost follows the policies that could apply, not all of them.

use std::collections::HashMap;

use bulkhead_api::LabelMap;
use bulkhead_selector::Selector;

/// Selectors indexed by their label restrictions.
#[derive(Debug, Default, Clone)]
pub struct SelectorIndex {
    by_value: HashMap<String, HashMap<String, Vec<usize>>>,
    by_presence: HashMap<String, Vec<usize>>,
    unindexed: Vec<usize>,
}

impl SelectorIndex {
    /// Files selector `id`. Selectors that can never match are not filed at all.
    pub fn insert(&mut self, id: usize, selector: &Selector) {
        if !selector.possible_to_satisfy() {
            return;
        }
        let restrictions = selector.label_restrictions();
        let by_value = restrictions
            .iter()
            .filter_map(|(label, r)| r.must_have_one_of_values.as_ref().map(|v| (label, v)))
            .min_by_key(|(_, values)| values.len());
        if let Some((label, values)) = by_value {
            let bucket = self.by_value.entry(label.clone()).or_default();
            for v in values {
                bucket.entry(v.clone()).or_default().push(id);
            }
            return;
        }
        match restrictions.iter().find(|(_, r)| r.must_be_present) {
            Some((label, _)) => self.by_presence.entry(label.clone()).or_default().push(id),
            None => self.unindexed.push(id),
        }
    }

    /// Calls `f` with every selector id that could match `labels` (each at most once).
    pub fn for_each_candidate(&self, labels: &LabelMap, mut f: impl FnMut(usize)) {
        for (k, v) in labels {
            if let Some(ids) = self.by_value.get(k).and_then(|vals| vals.get(v)) {
                ids.iter().copied().for_each(&mut f);
            }
            if let Some(ids) = self.by_presence.get(k) {
                ids.iter().copied().for_each(&mut f);
            }
        }
        self.unindexed.iter().copied().for_each(f);
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
    fn candidates_come_from_matching_buckets_only() {
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
        let mut got = Vec::new();
        idx.for_each_candidate(&labels(&[("app", "b"), ("x", "")]), |i| got.push(i));
        got.sort();
        assert_eq!(got, vec![1, 2, 3]);
        let mut got = Vec::new();
        idx.for_each_candidate(&labels(&[("app", "a")]), |i| got.push(i));
        got.sort();
        assert_eq!(got, vec![0, 1, 3]);
    }
}
